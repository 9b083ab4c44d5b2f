//! Issuing certificates with rcgen (ring backend). TLS keys are ECDSA P-256: the algorithm every
//! TLS stack and HSM speaks; the project's own signatures (registry, intents, checkpoints) use
//! Ed25519 keys in `ftz-core`.

use std::net::IpAddr;

use ftz_core::{Identity, UnixMillis, ZoneId};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use time::OffsetDateTime;

pub use rcgen::Error as IssueError;

/// A certificate and the PEM of its private key (PKCS#8).
pub struct Issued {
    pub cert_der: Vec<u8>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").field("cert_der_len", &self.cert_der.len()).finish_non_exhaustive()
    }
}

/// A zone CA able to sign certificates.
pub struct ZoneCa {
    issuer: Issuer<'static, KeyPair>,
    pub issued: Issued,
}

impl std::fmt::Debug for ZoneCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZoneCa").finish_non_exhaustive()
    }
}

/// Validity window in Unix milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub not_before_ms: UnixMillis,
    pub not_after_ms: UnixMillis,
}

fn odt(ms: UnixMillis) -> Result<OffsetDateTime, IssueError> {
    OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).map_err(|_| IssueError::Time)
}

fn params(cn: &str, validity: Validity) -> Result<CertificateParams, IssueError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "ftz-exchange");
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.not_before = odt(validity.not_before_ms)?;
    p.not_after = odt(validity.not_after_ms)?;
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

impl ZoneCa {
    /// A new self-signed CA for `zone` that may sign end-entity certificates only.
    pub fn generate(zone: &ZoneId, validity: Validity) -> Result<Self, IssueError> {
        Self::generate_named(&format!("ftz-exchange {zone} zone CA"), validity)
    }

    /// A CA with an arbitrary common name (tests use this for CAs no registry lists).
    pub fn generate_named(common_name: &str, validity: Validity) -> Result<Self, IssueError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut p = params(common_name, validity)?;
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = p.self_signed(&key)?;
        let issued = Issued { cert_der: cert.der().to_vec(), cert_pem: cert.pem(), key_pem: key.serialize_pem() };
        Ok(Self { issuer: Issuer::new(p, key), issued })
    }

    /// Loads an existing CA (certificate PEM and PKCS#8 key PEM) to sign more certificates.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, IssueError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        let der = rustls_pki_types::pem::PemObject::from_pem_slice(cert_pem.as_bytes())
            .map(|c: rustls_pki_types::CertificateDer<'_>| c.to_vec())
            .map_err(|_| IssueError::CouldNotParseCertificate)?;
        Ok(Self {
            issuer,
            issued: Issued { cert_der: der, cert_pem: cert_pem.to_string(), key_pem: key_pem.to_string() },
        })
    }

    /// A node certificate: identity `ftz://<zone>/node`, usable as TLS server and client.
    /// `hosts` become DNS or IP SANs so ordinary tools can also reach the node by name.
    pub fn issue_node(&self, zone: &ZoneId, hosts: &[String], validity: Validity) -> Result<Issued, IssueError> {
        let id = Identity::node(zone.clone());
        let mut sans = vec![SanType::URI(id.to_uri().try_into()?)];
        for h in hosts {
            sans.push(match h.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(h.clone().try_into()?),
            });
        }
        self.issue_leaf(
            &format!("{zone} node"),
            sans,
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
            validity,
        )
    }

    /// A certificate for a zone user (or any identity: tests make deliberately wrong ones).
    pub fn issue_user(&self, identity: &Identity, validity: Validity) -> Result<Issued, IssueError> {
        let sans = vec![SanType::URI(identity.to_uri().try_into()?)];
        self.issue_leaf(&identity.to_uri(), sans, vec![ExtendedKeyUsagePurpose::ClientAuth], validity)
    }

    /// A leaf with arbitrary SAN URIs, for tests of malformed identities.
    pub fn issue_with_uris(&self, uris: &[&str], validity: Validity) -> Result<Issued, IssueError> {
        let sans = uris.iter().map(|u| Ok(SanType::URI((*u).try_into()?))).collect::<Result<Vec<_>, IssueError>>()?;
        self.issue_leaf("test", sans, vec![ExtendedKeyUsagePurpose::ClientAuth], validity)
    }

    fn issue_leaf(
        &self,
        cn: &str,
        sans: Vec<SanType>,
        ekus: Vec<ExtendedKeyUsagePurpose>,
        validity: Validity,
    ) -> Result<Issued, IssueError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut p = params(cn, validity)?;
        p.subject_alt_names = sans;
        p.extended_key_usages = ekus;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok(Issued { cert_der: cert.der().to_vec(), cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}
