//! Who a certificate names, and whether it chains to a given CA.
//!
//! The two questions are separate on purpose: the node first reads which zone a certificate
//! *claims*, then checks the chain against the one CA the registry lists for *that* zone. A
//! certificate of zone A's CA naming zone B therefore never passes, even though both CAs are
//! trusted for something.

use std::time::Duration;

use ftz_core::{Identity, Reason, UnixMillis, identity::IdentityError};
use rustls_pki_types::{CertificateDer, UnixTime};
use thiserror::Error;
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PkiError {
    #[error("the chain is empty")]
    EmptyChain,
    #[error("certificate does not parse: {0}")]
    Parse(String),
    #[error("certificate carries no ftz:// identity in its subject alternative names")]
    NoIdentity,
    #[error("certificate carries {0} ftz:// identities; exactly one is allowed")]
    ManyIdentities(usize),
    #[error("certificate identity: {0}")]
    BadIdentity(#[from] IdentityError),
    #[error("CA certificate is not usable as a trust anchor: {0}")]
    BadCa(String),
    #[error("certificate does not chain to the expected CA: {0}")]
    Untrusted(String),
}

impl PkiError {
    pub fn reason(&self) -> Reason {
        match self {
            PkiError::Untrusted(_) | PkiError::BadCa(_) => Reason::UntrustedCertificate,
            _ => Reason::BadCertificateIdentity,
        }
    }
}

/// What the certificate is used for in this handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertUsage {
    Client,
    Server,
}

/// The identity in a certificate and the end of its validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCert {
    pub identity: Identity,
    pub not_after_ms: UnixMillis,
}

/// Reads the single `ftz://` SAN URI of a certificate (no chain check).
pub fn identity_of(cert_der: &[u8]) -> Result<VerifiedCert, PkiError> {
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(|e| PkiError::Parse(e.to_string()))?;
    let san = cert.subject_alternative_name().map_err(|e| PkiError::Parse(e.to_string()))?;
    let uris: Vec<&str> = san
        .map(|ext| {
            ext.value
                .general_names
                .iter()
                .filter_map(|g| match g {
                    GeneralName::URI(u) if u.starts_with("ftz://") => Some(*u),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    let uri = match uris.as_slice() {
        [] => return Err(PkiError::NoIdentity),
        [one] => *one,
        many => return Err(PkiError::ManyIdentities(many.len())),
    };
    let identity = Identity::parse_uri(uri)?;
    let not_after_ms = cert.validity().not_after.timestamp().saturating_mul(1000);
    Ok(VerifiedCert { identity, not_after_ms })
}

/// The end of a certificate's validity (any certificate: a CA's too).
pub fn not_after_ms(cert_der: &[u8]) -> Result<UnixMillis, PkiError> {
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(|e| PkiError::Parse(e.to_string()))?;
    Ok(cert.validity().not_after.timestamp().saturating_mul(1000))
}

/// Checks only that `der` parses as an end-entity certificate.
pub fn check_parses(der: &[u8]) -> Result<(), PkiError> {
    let der = CertificateDer::from(der);
    EndEntityCert::try_from(&der).map(|_| ()).map_err(|e| PkiError::Parse(e.to_string()))
}

/// Checks that `der` is usable as a trust anchor (a CA certificate webpki accepts).
pub fn check_ca(der: &[u8]) -> Result<(), PkiError> {
    let der = CertificateDer::from(der);
    webpki::anchor_from_trusted_cert(&der).map(|_| ()).map_err(|e| PkiError::BadCa(e.to_string()))
}

/// Checks that `chain` (leaf first) chains to `ca_der` for `usage` at time `now_ms`.
pub fn verify_chain(
    chain: &[CertificateDer<'_>],
    ca_der: &[u8],
    usage: CertUsage,
    now_ms: UnixMillis,
) -> Result<(), PkiError> {
    let (leaf, intermediates) = chain.split_first().ok_or(PkiError::EmptyChain)?;
    let ca = CertificateDer::from(ca_der);
    let anchor = webpki::anchor_from_trusted_cert(&ca).map_err(|e| PkiError::BadCa(e.to_string()))?;
    let ee = EndEntityCert::try_from(leaf).map_err(|e| PkiError::Parse(e.to_string()))?;
    let now = UnixTime::since_unix_epoch(Duration::from_millis(u64::try_from(now_ms).unwrap_or(0)));
    let eku = match usage {
        CertUsage::Client => KeyUsage::client_auth(),
        CertUsage::Server => KeyUsage::server_auth(),
    };
    ee.verify_for_usage(webpki::ALL_VERIFICATION_ALGS, &[anchor], intermediates, now, eku, None, None)
        .map(|_| ())
        .map_err(|e| PkiError::Untrusted(format!("{e:?}")))
}

impl ftz_core::Refusal for PkiError {
    fn refusal_reason(&self) -> Reason {
        self.reason()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::issue::{Validity, ZoneCa};
    use ftz_core::{Role, ZoneId};

    const NOW: i64 = 1_800_000_000_000;
    const V: Validity = Validity { not_before_ms: NOW - 3_600_000, not_after_ms: NOW + 86_400_000 };

    fn z(s: &str) -> ZoneId {
        ZoneId::new(s).unwrap()
    }

    fn der(c: &crate::issue::Issued) -> CertificateDer<'static> {
        CertificateDer::from(c.cert_der.clone())
    }

    #[test]
    fn node_and_user_certificates_chain_to_their_ca_only() {
        let sh = ZoneCa::generate(&z("shanghai"), V).unwrap();
        let hn = ZoneCa::generate(&z("hainan"), V).unwrap();
        let node = sh.issue_node(&z("shanghai"), &["localhost".into(), "127.0.0.1".into()], V).unwrap();
        let alice = Identity::user(z("shanghai"), Role::Admin, "alice").unwrap();
        let user = sh.issue_user(&alice, V).unwrap();

        assert_eq!(identity_of(&node.cert_der).unwrap().identity, Identity::node(z("shanghai")));
        assert_eq!(identity_of(&user.cert_der).unwrap().identity, alice);
        assert_eq!(identity_of(&user.cert_der).unwrap().not_after_ms, V.not_after_ms);

        verify_chain(&[der(&node)], &sh.issued.cert_der, CertUsage::Server, NOW).unwrap();
        verify_chain(&[der(&node)], &sh.issued.cert_der, CertUsage::Client, NOW).unwrap();
        verify_chain(&[der(&user)], &sh.issued.cert_der, CertUsage::Client, NOW).unwrap();
        // A user certificate is not a server certificate.
        assert!(matches!(
            verify_chain(&[der(&user)], &sh.issued.cert_der, CertUsage::Server, NOW),
            Err(PkiError::Untrusted(_))
        ));
        // Another zone's CA does not vouch for it.
        let err = verify_chain(&[der(&node)], &hn.issued.cert_der, CertUsage::Client, NOW).unwrap_err();
        assert_eq!(err.reason(), Reason::UntrustedCertificate);
        // Outside its validity.
        assert!(verify_chain(&[der(&node)], &sh.issued.cert_der, CertUsage::Client, V.not_after_ms + 1_000).is_err());
        assert!(verify_chain(&[], &sh.issued.cert_der, CertUsage::Client, NOW).is_err());
    }

    #[test]
    fn identities_must_be_exactly_one_well_formed_uri() {
        let ca = ZoneCa::generate(&z("shanghai"), V).unwrap();
        let none = ca.issue_with_uris(&["https://example.org/"], V).unwrap();
        assert_eq!(identity_of(&none.cert_der).unwrap_err(), PkiError::NoIdentity);
        let two = ca.issue_with_uris(&["ftz://shanghai/node", "ftz://hainan/node"], V).unwrap();
        assert_eq!(identity_of(&two.cert_der).unwrap_err(), PkiError::ManyIdentities(2));
        let bad = ca.issue_with_uris(&["ftz://shanghai/root/eve"], V).unwrap();
        assert!(matches!(identity_of(&bad.cert_der), Err(PkiError::BadIdentity(_))));
        assert!(matches!(identity_of(b"garbage"), Err(PkiError::Parse(_))));
    }

    #[test]
    fn ca_round_trips_through_pem() {
        let ca = ZoneCa::generate(&z("shanghai"), V).unwrap();
        let again = ZoneCa::from_pem(&ca.issued.cert_pem, &ca.issued.key_pem).unwrap();
        let node = again.issue_node(&z("shanghai"), &[], V).unwrap();
        verify_chain(&[der(&node)], &ca.issued.cert_der, CertUsage::Server, NOW).unwrap();
    }
}
