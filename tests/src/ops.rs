//! A plain HTTP/1.1 client for a node's ops listener, and a reader of the Prometheus text it
//! serves: what a test needs to scrape a node as Prometheus would.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` on `addr`: the status and the body. HTTP/1.0, so that the body is not chunked.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("the listener accepts");
    let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("request sent");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await.expect("answered in time").unwrap();
    let text = String::from_utf8(buf).expect("UTF-8");
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// One scrape: every sample, `name{labels}` (labels as written) to its value.
pub struct Scrape(pub BTreeMap<String, f64>);

impl Scrape {
    pub async fn of(addr: SocketAddr) -> Scrape {
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200, "{body}");
        assert!(body.trim_end().ends_with("# EOF"), "not OpenMetrics text: {body}");
        let samples = body
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                Some((series.to_string(), value.parse().ok()?))
            })
            .collect();
        Scrape(samples)
    }

    /// The value of the one series `name` whose labels include every `key="value"` given.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        let found: Vec<f64> = self
            .0
            .iter()
            .filter(|(series, _)| {
                let (n, rest) = series.split_once('{').unwrap_or((series.as_str(), ""));
                n == name && wanted.iter().all(|w| rest.contains(w.as_str()))
            })
            .map(|(_, v)| *v)
            .collect();
        match found.as_slice() {
            [] => None,
            [one] => Some(*one),
            many => panic!("{} series {name} with {labels:?}: {many:?}", many.len()),
        }
    }

    /// Series of `name`, however labelled.
    pub fn count(&self, name: &str) -> usize {
        self.0.keys().filter(|s| s.split_once('{').map_or(s.as_str(), |(n, _)| n) == name).count()
    }
}
