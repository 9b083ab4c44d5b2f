//! The JSON API client of `ftz_client::https`, set up for a test federation's users: a zone
//! user's client certificate (or none), calling one zone's node; answers that fail to arrive
//! fail the test.

use bytes::Bytes;
use ftz_client::{ClientProfile, ExpectedServer};
use ftz_core::Role;
use ftz_pki::files;
use http_body_util::Full;

pub use ftz_client::https::Answer;

use crate::Cluster;

#[derive(Clone)]
pub struct Https(ftz_client::https::Https);

impl Https {
    /// `user_zone`'s user with `role`, calling the node of `node_zone`.
    pub fn user(c: &Cluster, user_zone: &str, role: Role, node_zone: &str) -> Https {
        let p = ClientProfile::load(&c.zone(user_zone).profile_path(role)).expect("profile");
        let chain = files::read_cert_chain(&p.cert).expect("certificate");
        let key = files::read_tls_key(&p.key).expect("key");
        let cfg = ftz_client::tls::client_config(Self::expect(c, node_zone), chain, key).expect("tls config");
        Self::with(c, node_zone, cfg)
    }

    /// A client without any certificate.
    pub fn anonymous(c: &Cluster, node_zone: &str) -> Https {
        let cfg = ftz_client::tls::client_config_without_certificate(Self::expect(c, node_zone)).expect("tls");
        Self::with(c, node_zone, cfg)
    }

    fn expect(c: &Cluster, zone: &str) -> ExpectedServer {
        let z = c.zone(zone);
        ExpectedServer { zone: z.id.clone(), ca_der: z.ca.issued.cert_der.clone(), clock: c.clock.clone() }
    }

    fn with(c: &Cluster, zone: &str, cfg: rustls::ClientConfig) -> Https {
        let addr = c.local.node(zone).and_then(|n| n.http_addr()).expect("the node has an HTTPS listener").to_string();
        Https(ftz_client::https::Https::new(addr, zone, cfg))
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.0.get(path).await.expect("an answer")
    }

    pub async fn post(&self, path: &str, json: &serde_json::Value) -> Answer {
        self.0.post(path, json).await.expect("an answer")
    }

    /// Any request; `body` with `content_type`.
    pub async fn request(&self, method: http::Method, path: &str, body: Option<Vec<u8>>, content_type: &str) -> Answer {
        let body = Full::new(Bytes::from(body.unwrap_or_default()));
        self.0.send(method, path, body, content_type, &[]).await.expect("an answer")
    }

    /// A GET with extra headers (what a browser sends: `Accept-Language`, `Sec-Fetch-Site`, ...).
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.0.send(http::Method::GET, path, Full::new(Bytes::new()), "", headers).await.expect("an answer")
    }

    /// A JSON POST with extra headers.
    pub async fn post_with(&self, path: &str, json: &serde_json::Value, headers: &[(&str, &str)]) -> Answer {
        let body = Full::new(Bytes::from(json.to_string()));
        self.0.send(http::Method::POST, path, body, "application/json", headers).await.expect("an answer")
    }

    /// A JSON POST whose body starts and never ends: what a client that holds a stream open
    /// sends.
    pub async fn post_stalled(&self, path: &str) -> Answer {
        use futures_util::StreamExt;
        let frame = hyper::body::Frame::data(Bytes::from_static(b"{"));
        let first = futures_util::stream::once(async { Ok::<_, std::convert::Infallible>(frame) });
        let body = http_body_util::StreamBody::new(first.chain(futures_util::stream::pending()));
        self.0.send(http::Method::POST, path, body, "application/json", &[]).await.expect("an answer")
    }
}
