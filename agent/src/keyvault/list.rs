//! Collection lists (`GET /secrets`, `/keys`, `/certificates`, `maxresults=25`) reduced to
//! what change detection compares: each object's current-version attributes (and `x5t` for
//! certificates), keyed by name. A list page costs one request for 25 objects, against one
//! GET per object (`docs/protocol.md` §1.3, §1.5).

use std::collections::HashMap;

use serde::Deserialize;
use tokio::time::Instant;

use super::model::{Attributes, Fetched, ListPage, version_of};
use super::{KeyVaultClient, KeyVaultError};
use crate::config::ObjectType;

/// What a list entry says about an object's current version. Two equal fingerprints mean
/// "no visible change"; `updated` has one-second resolution, so two edits within one second
/// look alike (the periodic full sweep bounds that).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint {
    /// `attributes.enabled`.
    pub enabled: Option<bool>,
    /// `attributes.nbf`.
    pub nbf: Option<i64>,
    /// `attributes.exp`.
    pub exp: Option<i64>,
    /// `attributes.created`.
    pub created: Option<i64>,
    /// `attributes.updated`.
    pub updated: Option<i64>,
    /// Certificate thumbprint (certificates only).
    pub x5t: Option<String>,
}

impl Fingerprint {
    fn new(a: Option<&Attributes>, x5t: Option<&str>) -> Self {
        let a = a.cloned().unwrap_or_default();
        Fingerprint {
            enabled: a.enabled,
            nbf: a.nbf,
            exp: a.exp,
            created: a.created,
            updated: a.updated,
            x5t: x5t.map(str::to_owned),
        }
    }

    /// The fingerprint of what a GET returned: the same attributes a list shows for the
    /// current version.
    pub fn of(fetched: &Fetched) -> Self {
        match fetched {
            Fetched::Secret(s) => Self::new(s.attributes.as_ref(), None),
            Fetched::Key(k) => Self::new(k.attributes.as_ref(), None),
            Fetched::Certificate(c) => Self::new(c.attributes.as_ref(), c.x5t.as_deref()),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Item {
    id: Option<String>,
    kid: Option<String>,
    x5t: Option<String>,
    attributes: Option<Attributes>,
}

/// The listing of one object type.
#[derive(Debug)]
pub enum Listing {
    /// Every object, by lowercase name (Key Vault names are case-insensitive), and the
    /// number of pages it took.
    Complete {
        /// Fingerprints by lowercase name.
        entries: HashMap<String, Fingerprint>,
        /// Pages read.
        pages: usize,
    },
    /// The list had more than the page budget; reading on would cost more than GETs.
    OverBudget {
        /// Pages read before stopping.
        pages: usize,
    },
}

impl KeyVaultClient {
    /// Lists every object of type `t`, reading at most `max_pages` pages.
    pub async fn list_current(
        &self,
        t: ObjectType,
        max_pages: usize,
        deadline: Instant,
    ) -> Result<Listing, KeyVaultError> {
        let mut url = self.collection_url(t);
        let mut entries = HashMap::new();
        let mut pages = 0usize;
        loop {
            if pages >= max_pages {
                return Ok(Listing::OverBudget { pages });
            }
            let body = self.get_body(t, url.clone(), deadline).await?;
            pages += 1;
            let page: ListPage<Item> =
                serde_json::from_slice(&body).map_err(|e| KeyVaultError::Decode {
                    message: format!("{} list is not the documented json: {e}", t.as_str()),
                })?;
            for it in page.value {
                let Some(name) = it.id.as_deref().or(it.kid.as_deref()).and_then(version_of) else {
                    continue;
                };
                entries.insert(
                    name.to_ascii_lowercase(),
                    Fingerprint::new(it.attributes.as_ref(), it.x5t.as_deref()),
                );
            }
            match page.next_link.filter(|l| !l.trim().is_empty()) {
                None => return Ok(Listing::Complete { entries, pages }),
                Some(link) => url = self.next_url(&link)?,
            }
        }
    }
}
