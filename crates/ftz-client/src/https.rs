//! Calling a node's JSON API: HTTP/1.1 over TLS 1.3 with a zone user's client certificate (or
//! none), the node's certificate pinned to its zone as for gRPC (`tls::ExpectedServer`). One
//! connection per request: for scripts, the demo and tests, not for load.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// An answer: status, headers, the body as text and, when it is JSON, parsed.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    /// `Null` when the body is not JSON.
    pub json: serde_json::Value,
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

#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    #[error("cannot connect to {addr}: {detail}")]
    Connect { addr: String, detail: String },
    #[error("HTTP: {0}")]
    Http(String),
}

/// A client of one node's HTTPS listener.
#[derive(Clone)]
pub struct Https {
    addr: String,
    zone: String,
    tls: Arc<rustls::ClientConfig>,
}

impl Https {
    /// A client of `zone`'s node at `addr` ("host:port") with a TLS configuration from
    /// [`crate::tls::client_config`] (or `client_config_without_certificate`).
    pub fn new(addr: impl Into<String>, zone: impl Into<String>, mut tls: rustls::ClientConfig) -> Self {
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self { addr: addr.into(), zone: zone.into(), tls: Arc::new(tls) }
    }

    pub async fn get(&self, path: &str) -> Result<Answer, HttpsError> {
        self.send(http::Method::GET, path, Full::new(Bytes::new()), "", &[]).await
    }

    pub async fn post(&self, path: &str, json: &serde_json::Value) -> Result<Answer, HttpsError> {
        self.send(http::Method::POST, path, Full::new(Bytes::from(json.to_string())), "application/json", &[]).await
    }

    /// Any request: a body of any kind with `content_type` (none when empty), extra headers.
    pub async fn send<B>(
        &self,
        method: http::Method,
        path: &str,
        body: B,
        content_type: &str,
        headers: &[(&str, &str)],
    ) -> Result<Answer, HttpsError>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        crate::tls::install_crypto_provider();
        let connect =
            |e: &dyn std::fmt::Display| HttpsError::Connect { addr: self.addr.clone(), detail: e.to_string() };
        let tcp = tokio::net::TcpStream::connect(&self.addr).await.map_err(|e| connect(&e))?;
        let name = rustls::pki_types::ServerName::try_from(format!("{}.node.ftz.invalid", self.zone))
            .map_err(|e| connect(&e))?;
        let tls =
            tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp).await.map_err(|e| connect(&e))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| connect(&e))?;
        tokio::spawn(conn);
        let mut b = http::Request::builder().method(method).uri(path).header(http::header::HOST, "node");
        if !content_type.is_empty() {
            b = b.header(http::header::CONTENT_TYPE, content_type);
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(body).map_err(|e| HttpsError::Http(e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(|e| HttpsError::Http(e.to_string()))?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.map_err(|e| HttpsError::Http(e.to_string()))?.to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Ok(Answer { status, headers, json, text })
    }
}
