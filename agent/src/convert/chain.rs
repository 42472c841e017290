//! Certificate chain ordering for the PFX→PEM path (`docs/reference-provider.md` §2.6), step by
//! step as the reference does it: parents by SubjectKeyId = AuthorityKeyId only (no DN match,
//! no signature check), the first certificate that is nobody's parent is the leaf, and an
//! incomplete walk falls back to the original order with a warning.

use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

use super::ConvertError;

/// The warning the reference logs when it keeps the original order (§2.6 step 5).
pub const INCOMPLETE_CHAIN_WARNING: &str = "certificate chain is not complete due to missing intermediate/root certificates in the cert from key vault";

/// Key identifiers of one certificate; `None` when the extension (or its keyIdentifier) is absent.
struct Ids {
    ski: Option<Vec<u8>>,
    aki: Option<Vec<u8>>,
}

fn key_ids(index: usize, der: &[u8]) -> Result<Ids, ConvertError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| ConvertError::Certificate {
        index,
        reason: e.to_string(),
    })?;
    let mut ids = Ids {
        ski: None,
        aki: None,
    };
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => ids.ski = Some(k.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                ids.aki = a.key_identifier.as_ref().map(|k| k.0.to_vec());
            }
            _ => {}
        }
    }
    Ok(ids)
}

/// What [`order`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Ordered {
    /// Leaf → intermediates → root: indexes into the input.
    Chain(Vec<usize>),
    /// Not every certificate is on the leaf's path: keep the input order (the caller warns).
    Incomplete,
}

/// Parent links (§2.6 step 2): `parent[i]` is the first other certificate whose SKI equals
/// `i`'s AKI; `is_parent[j]` is set only by such first matches.
fn links(certs: &[Vec<u8>]) -> Result<(Vec<Option<usize>>, Vec<bool>), ConvertError> {
    let ids = certs
        .iter()
        .enumerate()
        .map(|(i, der)| key_ids(i, der))
        .collect::<Result<Vec<_>, _>>()?;
    let n = ids.len();
    let mut parent: Vec<Option<usize>> = vec![None; n];
    let mut is_parent = vec![false; n];
    for i in 0..n {
        for j in 0..n {
            if i == j {
                continue;
            }
            // A certificate without AKI never matches one without SKI (Go compares nil
            // slices as equal, hence this explicit skip); otherwise absent equals empty.
            if ids[i].aki.is_none() && ids[j].ski.is_none() {
                continue;
            }
            let aki = ids[i].aki.as_deref().unwrap_or_default();
            let ski = ids[j].ski.as_deref().unwrap_or_default();
            if aki == ski {
                is_parent[j] = true;
                parent[i] = Some(j);
                break;
            }
        }
    }
    Ok((parent, is_parent))
}

/// Orders DER certificates leaf → root.
pub fn order(certs: &[Vec<u8>]) -> Result<Ordered, ConvertError> {
    let (parent, is_parent) = links(certs)?;
    let n = certs.len();
    let Some(leaf) = (0..n).find(|&i| !is_parent[i]) else {
        // An empty input has no leaf either, as in the reference.
        return Err(ConvertError::NoLeaf);
    };
    let mut walk = Vec::new();
    let mut node = Some(leaf);
    while let Some(i) = node {
        if walk.len() == n {
            return Err(ConvertError::ChainCycle);
        }
        walk.push(i);
        node = parent[i];
    }
    if walk.len() != n {
        return Ok(Ordered::Incomplete);
    }
    Ok(Ordered::Chain(walk))
}

/// Orders `certs` leaf → root, or returns them unchanged (with the reference's warning, naming
/// `object` only) when the chain is incomplete.
pub fn order_or_keep(object: &str, certs: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, ConvertError> {
    if certs.is_empty() {
        // The reference fails here with `no leaf found`; a PFX with only a key is better
        // written as just the key.
        return Ok(certs);
    }
    match order(&certs)? {
        Ordered::Chain(idx) => {
            let mut slots: Vec<Option<Vec<u8>>> = certs.into_iter().map(Some).collect();
            Ok(idx.into_iter().filter_map(|i| slots[i].take()).collect())
        }
        Ordered::Incomplete => {
            tracing::warn!(object, "{INCOMPLETE_CHAIN_WARNING}");
            Ok(certs)
        }
    }
}

/// Index of the leaf (§2.6 step 3), whether or not the chain is complete.
pub fn leaf_index(certs: &[Vec<u8>]) -> Option<usize> {
    let (_, is_parent) = links(certs).ok()?;
    is_parent.iter().position(|p| !p)
}
