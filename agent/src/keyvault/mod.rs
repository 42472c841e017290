//! The Key Vault data-plane client: the only code that speaks HTTP to the vault.
//!
//! URLs and api-version, the 401 challenge and its resource check, paging, retries with
//! backoff and `Retry-After`, and mapping of error bodies into [`KeyVaultError`].

pub mod model;
