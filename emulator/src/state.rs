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
pub(crate) const VAULT_RESOURCE: &str = "https://vault.localhost";

/// Shared server state.
#[derive(Debug)]
pub(crate) struct Shared {
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
    /// The vaults' tenant when it is not the home tenant (a vault in another tenant).
    pub guest: Mutex<Option<GuestTenant>>,
}

/// A vault tenant other than the home tenant (`PUT /admin/tenant`): challenges name it
/// (at `authority` when set, else at the emulator's own authority), Entra issues tokens in
/// it too, and the data plane accepts only its tokens, as Key Vault does for a vault whose
/// tenant is not the caller's home tenant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GuestTenant {
    /// The vault's tenant id.
    pub tenant_id: String,
    /// The authority URL the challenge names instead of the emulator's (e.g. another host).
    #[serde(default)]
    pub authority: Option<String>,
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the state stays
/// consistent because no invariant spans an unlock).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Authority URL without the trailing slash (for the challenge's `authorization`).
    pub(crate) fn authority_base(&self) -> &str {
        self.authority.trim_end_matches('/')
    }

    /// The tenant the vaults belong to: the guest tenant when set, else the home tenant.
    pub(crate) fn vault_tenant(&self) -> String {
        lock(&self.guest)
            .as_ref()
            .map(|g| g.tenant_id.clone())
            .unwrap_or_else(|| self.tenant_id.clone())
    }

    /// The authority URL (no trailing slash) the challenge names.
    pub(crate) fn challenge_authority(&self) -> String {
        lock(&self.guest)
            .as_ref()
            .and_then(|g| g.authority.clone())
            .map(|a| a.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| self.authority_base().to_owned())
    }

    /// Whether `tenant` is the guest tenant.
    pub(crate) fn is_guest_tenant(&self, tenant: &str) -> bool {
        lock(&self.guest)
            .as_ref()
            .is_some_and(|g| g.tenant_id.eq_ignore_ascii_case(tenant))
    }

    /// The identity with `client_id` (case-insensitive).
    pub(crate) fn identity(&self, client_id: &str) -> Option<IdentitySeed> {
        lock(&self.identities)
            .iter()
            .find(|i| i.client_id.eq_ignore_ascii_case(client_id))
            .cloned()
    }

    /// The resource the challenge names: `https://vault.localhost`, plus `:PORT` when the
    /// listener is not on 443. The port is needed because the Python SDK compares the request's
    /// netloc (host:port) with the resource's; Rust compares hosts only, so both pass.
    pub(crate) fn challenge_resource(&self) -> String {
        match self.addr.port() {
            443 => VAULT_RESOURCE.to_string(),
            p => format!("{VAULT_RESOURCE}:{p}"),
        }
    }

    /// Audiences the data plane accepts: the bare resource and the port form, each with or
    /// without a trailing slash (Key Vault accepts both slash forms).
    pub(crate) fn accepted_audiences(&self) -> Vec<String> {
        let with_port = self.challenge_resource();
        vec![
            VAULT_RESOURCE.to_string(),
            format!("{VAULT_RESOURCE}/"),
            with_port.clone(),
            format!("{with_port}/"),
        ]
    }

    /// The Entra access-token issuer (`https://sts.windows.net/<tid>/`) of the vaults'
    /// tenant: the only issuer the data plane accepts.
    pub(crate) fn sts_issuer(&self) -> String {
        sts_issuer_of(&self.vault_tenant())
    }

    /// Mints an Entra-style access token for `identity` and `resource` in the home tenant.
    pub(crate) fn mint_access_token(
        &self,
        identity: &IdentitySeed,
        resource: &str,
    ) -> (String, u64) {
        self.mint_access_token_in(identity, resource, &self.tenant_id.clone())
    }

    /// Mints an Entra-style access token for `identity` and `resource` in `tenant`.
    pub(crate) fn mint_access_token_in(
        &self,
        identity: &IdentitySeed,
        resource: &str,
        tenant: &str,
    ) -> (String, u64) {
        let issuer = sts_issuer_of(tenant);
        let now = crate::util::now();
        // A zero TTL is a test seam: the token is expired as soon as it is issued.
        let ttl = self.token_ttl.as_secs();
        let oid = identity.object_id();
        let claims = serde_json::json!({
            "aud": resource,
            "iss": issuer,
            "iat": now,
            "nbf": now - 300,
            "exp": now + ttl as i64,
            "aio": "emulator",
            "appid": identity.client_id,
            "appidacr": "2",
            "idp": issuer,
            "oid": oid,
            "rh": "0.emulator.",
            "sub": oid,
            "tid": tenant,
            "uti": crate::util::guid(),
            "ver": "1.0",
            "xms_mirid": identity.resource_id(),
        });
        lock(&self.counts).count_token(&identity.client_id);
        (self.entra_key.sign(&claims), ttl)
    }
}

/// `https://sts.windows.net/<tenant>/`.
fn sts_issuer_of(tenant: &str) -> String {
    format!("https://sts.windows.net/{tenant}/")
}
