//! A small HTTPS client for tests of a node's JSON API: HTTP/1.1 over TLS 1.3 with a zone
//! user's client certificate (or none), one connection per request.

use std::sync::Arc;

use bytes::Bytes;
use ftz_client::{ClientProfile, ExpectedServer};
use ftz_core::Role;
use ftz_pki::files;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

use crate::Cluster;

/// An answer: status, headers and the body as JSON (Null when it is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub json: serde_json::Value,
    /// The body as text (an HTML page, a fragment).
    pub text: String,
}

impl Answer {
    /// The reason code of a problem-details answer.
    pub fn reason(&self) -> Option<&str> {
        self.json.get("reason").and_then(|r| r.as_str())
    }

    pub fn content_type(&self) -> &str {
        self.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

#[derive(Clone)]
pub struct Https {
    addr: String,
    zone: String,
    tls: Arc<rustls::ClientConfig>,
}

impl Https {
    /// `user_zone`'s user with `role`, calling the node of `node_zone`.
    pub fn user(c: &Cluster, user_zone: &str, role: Role, node_zone: &str) -> Https {
        let p = ClientProfile::load(&c.zone(user_zone).profile_path(role)).expect("profile");
        let chain = files::read_cert_chain(&p.cert).expect("certificate");
        let key = files::read_tls_key(&p.key).expect("key");
        let expect = Self::expect(c, node_zone);
        let mut cfg = ftz_client::tls::client_config(expect, chain, key).expect("tls config");
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self::with(c, node_zone, cfg)
    }

    /// A client without any certificate.
    pub fn anonymous(c: &Cluster, node_zone: &str) -> Https {
        let mut cfg = ftz_client::tls::client_config_without_certificate(Self::expect(c, node_zone)).expect("tls");
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self::with(c, node_zone, cfg)
    }

    fn expect(c: &Cluster, zone: &str) -> ExpectedServer {
        let z = c.zone(zone);
        ExpectedServer { zone: z.id.clone(), ca_der: z.ca.issued.cert_der.clone(), clock: c.clock.clone() }
    }

    fn with(c: &Cluster, zone: &str, cfg: rustls::ClientConfig) -> Https {
        let addr = c.local.node(zone).and_then(|n| n.http_addr()).expect("the node has an HTTPS listener").to_string();
        Https { addr, zone: zone.to_string(), tls: Arc::new(cfg) }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.request(http::Method::GET, path, None, "").await
    }

    pub async fn post(&self, path: &str, json: &serde_json::Value) -> Answer {
        self.request(http::Method::POST, path, Some(json.to_string().into_bytes()), "application/json").await
    }

    /// Any request; `body` with `content_type`.
    pub async fn request(&self, method: http::Method, path: &str, body: Option<Vec<u8>>, content_type: &str) -> Answer {
        self.send(method, path, Full::new(Bytes::from(body.unwrap_or_default())), content_type, &[]).await
    }

    /// A GET with extra headers (what a browser sends: `Accept-Language`, `Sec-Fetch-Site`, ...).
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.send(http::Method::GET, path, Full::new(Bytes::new()), "", headers).await
    }

    /// A JSON POST with extra headers.
    pub async fn post_with(&self, path: &str, json: &serde_json::Value, headers: &[(&str, &str)]) -> Answer {
        let body = Full::new(Bytes::from(json.to_string().into_bytes()));
        self.send(http::Method::POST, path, body, "application/json", headers).await
    }

    /// A JSON POST whose body starts and never ends: what a client that holds a stream open
    /// sends.
    pub async fn post_stalled(&self, path: &str) -> Answer {
        use futures_util::StreamExt;
        let frame = hyper::body::Frame::data(Bytes::from_static(b"{"));
        let first = futures_util::stream::once(async { Ok::<_, std::convert::Infallible>(frame) });
        let body = http_body_util::StreamBody::new(first.chain(futures_util::stream::pending()));
        self.send(http::Method::POST, path, body, "application/json", &[]).await
    }

    async fn send<B>(
        &self,
        method: http::Method,
        path: &str,
        body: B,
        content_type: &str,
        headers: &[(&str, &str)],
    ) -> Answer
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        ftz_client::tls::install_crypto_provider();
        let tcp = tokio::net::TcpStream::connect(&self.addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from(format!("{}.node.ftz.invalid", self.zone)).expect("name");
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp).await.expect("TLS handshake");
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.expect("HTTP handshake");
        tokio::spawn(conn);
        let mut b = http::Request::builder().method(method).uri(path).header(http::header::HOST, "node");
        if !content_type.is_empty() {
            b = b.header(http::header::CONTENT_TYPE, content_type);
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(body).expect("request");
        let resp = send.send_request(req).await.expect("answer");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Answer { status, headers, json, text }
    }
}
