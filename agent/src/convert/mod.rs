//! Pure conversions from Key Vault bundles to the exact bytes the reference writes
//! (`reference-provider.md` §2). No I/O.
//!
//! (Placeholder API; the implementation lands with the conversion work.)

use crate::config::ObjectSpec;
use crate::keyvault::model::Fetched;
use crate::secret::SecretBytes;

/// A conversion failure; the caller wraps it with the object's label.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// Placeholder.
    #[error("{0}")]
    Invalid(String),
}

/// Converts one fetched object into file contents according to `spec`
/// (format, then encoding last).
pub fn convert(_spec: &ObjectSpec, _fetched: &Fetched) -> Result<SecretBytes, ConvertError> {
    Err(ConvertError::Invalid("not implemented".into()))
}
