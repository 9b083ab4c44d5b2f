//! TLS for calling a node: rustls with the ring provider, TLS 1.3 only, mutual.
//!
//! A node's server certificate must chain to the CA that the registry (or the user's profile)
//! lists for the zone we meant to reach, and name `ftz://<zone>/node`. Host names play no part:
//! the identity is the zone, wherever it runs. Used by `ftzctl`, by the tests and by a node's
//! own calls to other zones.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use ftz_core::{Clock, Identity, ZoneId};
use ftz_pki::CertUsage;
use hyper_util::rt::TokioIo;
use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime},
};
use tokio::net::TcpStream;

/// Installs ring as the process-wide rustls provider. The one place that does so; idempotent.
/// Every config also names the provider explicitly, so nothing depends on the default.
pub fn install_crypto_provider() {
    // Err means a provider is installed already: by us, earlier, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The ALPN protocol of every connection: HTTP/2 for gRPC.
pub const ALPN_H2: &[u8] = b"h2";

/// A client config that trusts exactly one zone's node.
pub fn client_config(
    expect: ExpectedServer,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = provider();
    let verifier = ZoneServerVerifier { expect, provider: provider.clone() };
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(chain, key)?;
    cfg.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(cfg)
}

/// A client config that presents no certificate: nodes refuse it on the first call. Exists for
/// probes and for tests of that refusal.
pub fn client_config_without_certificate(expect: ExpectedServer) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = provider();
    let verifier = ZoneServerVerifier { expect, provider: provider.clone() };
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(cfg)
}

/// Which node a client expects to reach.
#[derive(Debug, Clone)]
pub struct ExpectedServer {
    pub zone: ZoneId,
    pub ca_der: Vec<u8>,
    pub clock: Arc<dyn Clock>,
}

#[derive(Debug)]
struct ZoneServerVerifier {
    expect: ExpectedServer,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ZoneServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone());
        chain.extend(intermediates.iter().cloned());
        ftz_pki::verify_chain(&chain, &self.expect.ca_der, CertUsage::Server, self.expect.clock.now_ms())
            .map_err(|e| rustls::Error::General(format!("server of zone {}: {e}", self.expect.zone)))?;
        let got = ftz_pki::identity_of(end_entity)
            .map_err(|e| rustls::Error::General(format!("server of zone {}: {e}", self.expect.zone)))?;
        let want = Identity::node(self.expect.zone.clone());
        if got.identity != want {
            return Err(rustls::Error::General(format!("server is {}, expected {want}", got.identity)));
        }
        Ok(ServerCertVerified::assertion())
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

/// A tonic connector: TCP to the endpoint, then TLS with `config`. The URI tonic passes carries
/// only the address; who is on the other end is settled by the config's verifier.
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
}

impl TlsConnector {
    pub fn new(config: rustls::ClientConfig, zone: &ZoneId) -> Self {
        // SNI carries only the zone-derived name; the verifier ignores it.
        let server_name = ServerName::try_from(format!("{zone}.node.ftz.invalid"))
            .unwrap_or_else(|_| ServerName::try_from("node.ftz.invalid").expect("static name is valid"));
        Self { config: Arc::new(config), server_name }
    }
}

type ConnectFuture =
    Pin<Box<dyn Future<Output = io::Result<TokioIo<tokio_rustls::client::TlsStream<TcpStream>>>> + Send>>;

impl tower::Service<http::Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let config = self.config.clone();
        let name = self.server_name.clone();
        Box::pin(async move {
            let host = uri.host().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "endpoint has no host"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port =
                uri.port_u16().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "endpoint has no port"))?;
            let tcp = TcpStream::connect((host, port)).await?;
            tcp.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}
