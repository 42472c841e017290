//! A local stand-in for Azure Key Vault, Entra ID, a cluster OIDC issuer and IMDS.
#![forbid(unsafe_code)]
