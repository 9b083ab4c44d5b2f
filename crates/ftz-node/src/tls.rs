//! TLS of the node's listener: rustls with the ring provider, TLS 1.3 only.
//!
//! The handshake asks for a client certificate and checks only that the client holds the key
//! of the certificate it presents (the CertificateVerify signature). Whether the certificate
//! chains to the right CA is decided per request by the `auth` module, against the registry in
//! force at that moment. That keeps the decision in one place, lets a registry update change
//! who is trusted without a restart, and lets a refused caller learn *why* (a status with a
//! reason code) instead of seeing a bare TLS alert. The client side (how this node checks the
//! nodes it calls) is `ftz_client::tls`.

use std::sync::Arc;

use ftz_client::tls::{ALPN_H2, provider};
use rustls::{
    DigitallySignedStruct, DistinguishedName, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, PrivateKeyDer, UnixTime},
    server::danger::{ClientCertVerified, ClientCertVerifier},
};

/// The server config of a node: its certificate chain, client certificates requested but
/// judged later (see the module doc).
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = provider();
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(ProofOfPossession { provider }))
        .with_single_cert(chain, key)
        .map_err(|e| match e {
            // rustls says only `InconsistentKeys(KeyMismatch)`.
            rustls::Error::InconsistentKeys(_) => rustls::Error::General(
                "the TLS private key does not belong to the TLS certificate (`tls.key` and `tls.cert` of the node config): \
                 give the key that was issued with that certificate"
                    .into(),
            ),
            e => e,
        })?;
    cfg.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(cfg)
}

/// The same for the HTTPS listener: browsers and HTTP clients speak HTTP/2 or HTTP/1.1.
pub fn http_server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut cfg = server_config(chain, key)?;
    cfg.alpn_protocols = vec![ALPN_H2.to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Asks for a client certificate and checks the handshake signature against it; the chain is
/// checked by `auth` on every request.
#[derive(Debug)]
struct ProofOfPossession {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for ProofOfPossession {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // Optional so that a caller without a certificate gets UNAUTHENTICATED with a reason on
        // its first RPC instead of an opaque alert. No request is served without one.
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Refuse what is not even a certificate; judge everything else per request.
        ftz_pki::check_parses(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use ftz_core::ZoneId;
    use ftz_pki::issue::{Validity, ZoneCa};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

    /// rustls says only `InconsistentKeys(KeyMismatch)`; the node says which settings disagree.
    #[test]
    fn a_tls_key_of_another_certificate_is_said_in_words() {
        let zone = ZoneId::new("shanghai").unwrap();
        let validity = Validity { not_before_ms: 0, not_after_ms: 4_000_000_000_000 };
        let ca = ZoneCa::generate(&zone, validity).unwrap();
        let (a, b) = (
            ca.issue_node(&zone, &["127.0.0.1".into()], validity).unwrap(),
            ca.issue_node(&zone, &["127.0.0.1".into()], validity).unwrap(),
        );
        let chain = vec![CertificateDer::from(a.cert_der.clone())];
        let key = PrivateKeyDer::from_pem_slice(b.key_pem.as_bytes()).unwrap();
        let e = super::server_config(chain, key).unwrap_err().to_string();
        assert!(e.contains("the TLS private key does not belong to the TLS certificate"), "{e}");
        assert!(e.contains("`tls.key` and `tls.cert`") && !e.contains("KeyMismatch"), "{e}");
    }
}
