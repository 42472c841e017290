//! Small helpers: clock, random ids in the formats Azure uses.

use rand::Rng as _;
use sha2::Digest as _;

/// Current Unix time in seconds.
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A Key Vault object version: 32 lowercase hex characters.
pub(crate) fn new_version() -> String {
    let bytes: [u8; 16] = rand::thread_rng().r#gen();
    hex::encode(bytes)
}

fn format_guid(b: &[u8]) -> String {
    let h = hex::encode(&b[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A random GUID (request ids, trace ids, token ids).
pub(crate) fn guid() -> String {
    let mut bytes: [u8; 16] = rand::thread_rng().r#gen();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    format_guid(&bytes)
}

/// A GUID derived from `seed`, stable across runs (default object ids).
pub(crate) fn guid_from(seed: &str) -> String {
    format_guid(&sha2::Sha256::digest(seed.as_bytes()))
}
