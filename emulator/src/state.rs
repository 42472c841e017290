//! State shared by every route: endpoints, signing keys, the store, identities, faults and
//! counters. Locks are `std::sync::Mutex`, held only for short synchronous sections.

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::faults::{Counts, Faults};
use crate::jwt::SigningKey;
use crate::seed::IdentitySeed;
use crate::store::Store;
use crate::throttle::Throttle;

/// The Key Vault resource (AAD v1 resource) the emulator's vaults belong to.
pub const VAULT_RESOURCE: &str = "https://vault.localhost";

/// Shared server state.
#[derive(Debug)]
pub struct Shared {
    /// Tenant id.
    pub tenant_id: String,
    /// HTTPS listener address.
    pub addr: SocketAddr,
    /// Plain-HTTP IMDS listener address.
    pub imds_addr: SocketAddr,
    /// `https://localhost:PORT/`.
    pub authority: String,
    /// `https://localhost:PORT/issuer`.
    pub issuer: String,
    /// Cluster issuer signing key.
    pub issuer_key: SigningKey,
    /// Entra access-token signing key.
    pub entra_key: SigningKey,
    /// Lifetime of issued access tokens.
    pub token_ttl: Duration,
    /// Override for the `api-version` written into `nextLink` (None = the request's).
    pub next_link_api_version: Option<String>,
    /// Vault contents.
    pub store: Mutex<Store>,
    /// Identities.
    pub identities: Mutex<Vec<IdentitySeed>>,
    /// Active faults.
    pub faults: Mutex<Faults>,
    /// Counters.
    pub counts: Mutex<Counts>,
    /// Per-vault, per-family token buckets (429 `Throttled` when empty).
    pub throttle: Mutex<Throttle>,
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the state stays
/// consistent because no invariant spans an unlock).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Authority URL without the trailing slash (for the challenge's `authorization`).
    pub fn authority_base(&self) -> &str {
        self.authority.trim_end_matches('/')
    }

    /// The identity with `client_id` (case-insensitive).
    pub fn identity(&self, client_id: &str) -> Option<IdentitySeed> {
        lock(&self.identities)
            .iter()
            .find(|i| i.client_id.eq_ignore_ascii_case(client_id))
            .cloned()
    }

    /// The resource the challenge names: `https://vault.localhost`, plus `:PORT` when the
    /// listener is not on 443. The port is needed because the Python SDK compares the request's
    /// netloc (host:port) with the resource's; Rust compares hosts only, so both pass.
    pub fn challenge_resource(&self) -> String {
        match self.addr.port() {
            443 => VAULT_RESOURCE.to_string(),
            p => format!("{VAULT_RESOURCE}:{p}"),
        }
    }

    /// Audiences the data plane accepts: the bare resource and the port form, each with or
    /// without a trailing slash (Key Vault accepts both slash forms).
    pub fn accepted_audiences(&self) -> Vec<String> {
        let with_port = self.challenge_resource();
        vec![
            VAULT_RESOURCE.to_string(),
            format!("{VAULT_RESOURCE}/"),
            with_port.clone(),
            format!("{with_port}/"),
        ]
    }

    /// The Entra access-token issuer (`https://sts.windows.net/<tid>/`).
    pub fn sts_issuer(&self) -> String {
        format!("https://sts.windows.net/{}/", self.tenant_id)
    }

    /// Mints an Entra-style access token for `identity` and `resource`.
    pub fn mint_access_token(&self, identity: &IdentitySeed, resource: &str) -> (String, u64) {
        let now = crate::util::now();
        // A zero TTL is a test seam: the token is expired as soon as it is issued.
        let ttl = self.token_ttl.as_secs();
        let oid = identity.object_id();
        let claims = serde_json::json!({
            "aud": resource,
            "iss": self.sts_issuer(),
            "iat": now,
            "nbf": now - 300,
            "exp": now + ttl as i64,
            "aio": "emulator",
            "appid": identity.client_id,
            "appidacr": "2",
            "idp": self.sts_issuer(),
            "oid": oid,
            "rh": "0.emulator.",
            "sub": oid,
            "tid": self.tenant_id,
            "uti": crate::util::guid(),
            "ver": "1.0",
            "xms_mirid": identity.resource_id(),
        });
        lock(&self.counts).count_token(&identity.client_id);
        (self.entra_key.sign(&claims), ttl)
    }
}
