//! X.509 and key files for ftz-exchange.
//!
//! - [`issue`]: make a zone CA and the node and user certificates it signs (dev PKI, tests).
//! - [`verify`]: read the `ftz://` identity out of a certificate and check its chain against
//!   exactly one CA: the one the registry lists for the zone the certificate names.
//! - [`files`]: read and write key and certificate files, private keys with mode 0600.

#![forbid(unsafe_code)]

pub mod files;
pub mod issue;
pub mod verify;

pub use rustls_pki_types::{CertificateDer, PrivateKeyDer};
pub use verify::{CertUsage, PkiError, VerifiedCert, check_ca, check_parses, identity_of, not_after_ms, verify_chain};
