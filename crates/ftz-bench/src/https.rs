//! The JSON API's load client: HTTP/2 over TLS 1.3 with a zone user's client certificate, the
//! node's certificate checked against its zone CA (the verifier gRPC clients use), and one
//! connection that every request in flight shares, as a tonic channel does: the fair twin of
//! the gRPC scenarios' client.

use std::{path::Path, sync::Arc};

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use ftz_client::{ClientProfile, ExpectedServer};
use ftz_core::{SystemClock, ZoneId};
use ftz_pki::files;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// One HTTP/2 connection to a node's HTTPS listener, as the user of a client profile.
#[derive(Clone)]
pub struct Https {
    send: SendRequest<Full<Bytes>>,
    /// The `authority` of every request (the listener's address).
    authority: Arc<str>,
}

impl Https {
    /// Connects to `addr` ("host:port") as the user of `profile`; the server must be the node of
    /// the profile's zone, certified by the profile's zone CA, and is named
    /// `<zone>.node.ftz.invalid`.
    pub async fn connect(profile: &Path, addr: &str) -> Result<Https> {
        let p = ClientProfile::load(profile).with_context(|| format!("profile {}", profile.display()))?;
        let zone = ZoneId::new(p.zone.clone()).map_err(|e| anyhow!("zone {}: {e}", p.zone))?;
        let ca = files::read_cert_chain(&p.ca)?;
        let ca_der = ca.first().ok_or_else(|| anyhow!("{}: no certificate", p.ca.display()))?.to_vec();
        let chain = files::read_cert_chain(&p.cert)?;
        let key = files::read_tls_key(&p.key)?;
        let expect = ExpectedServer { zone: zone.clone(), ca_der, clock: Arc::new(SystemClock) };
        ftz_client::tls::install_crypto_provider();
        // ALPN h2 only, as for gRPC: the listener also speaks HTTP/1.1, which this twin must not
        // fall back to.
        let cfg = ftz_client::tls::client_config(expect, chain, key)?;
        let tcp = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from(format!("{zone}.node.ftz.invalid"))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS handshake with {addr}"))?;
        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
            return Err(anyhow!("{addr} did not agree to HTTP/2"));
        }
        let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .context("HTTP/2 handshake")?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                eprintln!("  the HTTPS connection ended: {e}");
            }
        });
        Ok(Https { send, authority: addr.into() })
    }

    /// `GET path_and_query`: the status and the body.
    pub async fn get(&self, path_and_query: &str) -> Result<(u16, Bytes)> {
        self.send(http::Method::GET, path_and_query, None).await
    }

    /// `POST path` with a JSON body: the status and the body.
    pub async fn post_json(&self, path: &str, body: Bytes) -> Result<(u16, Bytes)> {
        self.send(http::Method::POST, path, Some(body)).await
    }

    async fn send(&self, method: http::Method, path: &str, body: Option<Bytes>) -> Result<(u16, Bytes)> {
        let uri = http::Uri::builder().scheme("https").authority(&*self.authority).path_and_query(path).build()?;
        let mut b = http::Request::builder().method(method).uri(uri);
        if body.is_some() {
            b = b.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = b.body(Full::new(body.unwrap_or_default()))?;
        let mut send = self.send.clone();
        send.ready().await.context("the HTTPS connection")?;
        let resp = send.send_request(req).await.context("HTTPS request")?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.context("HTTPS answer")?.to_bytes();
        Ok((status, bytes))
    }
}
