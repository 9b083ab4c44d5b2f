//! The node's metrics and alerting rules with the real tools: Debian's `promtool` checks and
//! unit-tests `deploy/prometheus/ftz-alerts.yml`, and Debian's `prometheus` scrapes a running
//! three-zone federation with those rules loaded; the series are read back through its HTTP API.
//!
//! Needs `promtool` and `prometheus` on PATH (Debian: `apt-get install prometheus`; `.ci/run`
//! installs it). Without them the tests fail and say so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ftz_proto::{PushInspectionRequest, RecordInspectionRequest};
use ftz_tests::{Cluster, DAY_MS, inspection, inspection_rule, ops::get};

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus")
}

/// Runs `tool args` in `dir`; panics with its output (or how to install it) unless it succeeds.
fn run(tool: &str, args: &[&str], dir: &Path) -> String {
    let out = Command::new(tool).args(args).current_dir(dir).output().unwrap_or_else(|e| {
        panic!("cannot run {tool} ({e}): install Debian's prometheus package (apt-get install prometheus)")
    });
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{tool} {args:?} failed:\n{text}");
    text
}

#[test]
fn promtool_checks_and_unit_tests_the_alerting_rules() {
    let dir = rules_dir();
    let out = run("promtool", &["check", "rules", "ftz-alerts.yml"], &dir);
    assert!(out.contains("SUCCESS: 11 rules found"), "{out}");
    run("promtool", &["check", "config", "prometheus.yml"], &dir);
    let out = run("promtool", &["test", "rules", "ftz-alerts.test.yml"], &dir);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// A Prometheus server in a temporary directory, stopped when dropped.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    async fn start(targets: &[SocketAddr]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let rules = rules_dir().join("ftz-alerts.yml").canonicalize().unwrap();
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: ftz-node\n    static_configs:\n      - targets: [{}]\n",
            rules.display(),
            targets.join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start prometheus ({e}): install Debian's prometheus package (apt-get install prometheus)"
                )
            });
        let p = Prometheus { child, addr, _dir: dir };
        let started = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(addr).await.is_ok() && get(addr, "/-/ready").await.0 == 200 {
                return p;
            }
            let log = std::fs::read_to_string(p._dir.path().join("prometheus.log")).unwrap_or_default();
            assert!(started.elapsed() < Duration::from_secs(30), "prometheus did not become ready:\n{log}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET /api/v1/<path>` as JSON, `data` of a successful answer.
    async fn api(&self, path: &str) -> serde_json::Value {
        let (status, body) = get(self.addr, &format!("/api/v1/{path}")).await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "success", "{body}");
        v["data"].clone()
    }

    /// An instant query's result vector.
    async fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let q: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        self.api(&format!("query?query={q}")).await["result"].as_array().cloned().unwrap_or_default()
    }

    /// Queries until `done` holds of the result (at most 60 s).
    async fn query_until(&self, promql: &str, done: impl Fn(&[serde_json::Value]) -> bool) -> Vec<serde_json::Value> {
        let started = Instant::now();
        loop {
            let r = self.query(promql).await;
            if done(&r) {
                return r;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{promql}: {r:?} after 60 s");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn value(sample: &serde_json::Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_running_federation_with_the_rules_loaded() {
    let c = Cluster::start(&["guangdong", "shanghai", "hainan"]).await;
    let targets: Vec<SocketAddr> =
        ["guangdong", "shanghai", "hainan"].iter().map(|z| c.local.node(z).unwrap().ops_addr().unwrap()).collect();
    let prom = Prometheus::start(&targets).await;

    c.agree("gd-sh", "guangdong", "shanghai", vec![inspection_rule("CNAS")], 365 * DAY_MS).await;
    let mut issuer = c.issuer("guangdong");
    issuer
        .record_inspection(RecordInspectionRequest { result: Some(inspection(&c, "GD-P-1", "LOT-P-1")) })
        .await
        .unwrap();
    let push = PushInspectionRequest { record_id: "GD-P-1".into(), to_zone: "shanghai".into(), purpose: String::new() };
    issuer.push_inspection(push).await.unwrap();

    let up = prom.query_until("up{job=\"ftz-node\"} == 1", |r| r.len() == 3).await;
    assert_eq!(up.len(), 3);
    let versions = prom.query("ftz_registry_version").await;
    assert_eq!(versions.len(), 3, "{versions:?}");
    assert!(versions.iter().all(|s| value(s) == 1.0), "{versions:?}");
    let moved = prom
        .query_until(
            "ftz_transfers_total{peer_zone=\"shanghai\",direction=\"outgoing\",decision=\"transferred\"}",
            |r| r.len() == 1 && value(&r[0]) == 1.0,
        )
        .await;
    assert_eq!(moved[0]["metric"]["instance"], targets[0].to_string());
    let pushes = prom.query("sum(ftz_requests_total{service=\"Issuer\",method=\"PushInspection\",code=\"Ok\"})").await;
    assert_eq!(pushes.len(), 1);
    assert_eq!(value(&pushes[0]), 1.0);
    let latency = prom.query("ftz_request_duration_seconds_count{method=\"PushInspection\"}").await;
    assert_eq!(latency.len(), 1, "{latency:?}");
    // Every zone's log cosigned by the two others.
    prom.query_until("ftz_witness_cosigned_entries > 0", |r| r.len() == 6).await;
    let ready = prom.query("ftz_ready").await;
    assert_eq!(ready.len(), 3);

    // The rules load and evaluate against the real series without errors, and none fires on a
    // healthy federation.
    let started = Instant::now();
    let groups = loop {
        let g = prom.api("rules").await["groups"].clone();
        let rules = g[0]["rules"].as_array().cloned().unwrap_or_default();
        if rules.len() == 11
            && rules.iter().all(|r| r["lastEvaluation"].as_str().is_some_and(|t| !t.starts_with("0001")))
        {
            break g;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "rules not evaluated: {g}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    for rule in groups[0]["rules"].as_array().unwrap() {
        assert_eq!(rule["health"], "ok", "{rule}");
    }
    let alerts = prom.api("alerts").await["alerts"].as_array().cloned().unwrap_or_default();
    let firing: Vec<_> = alerts.iter().filter(|a| a["state"] == "firing").collect();
    assert!(firing.is_empty(), "alerts fire on a healthy federation: {firing:?}");
    drop(prom);
    c.shutdown().await;
}
