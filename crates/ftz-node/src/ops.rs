//! The operations listener (`[ops] listen`): plain HTTP/1.1 for Prometheus and for the probes of
//! a load balancer or cluster scheduler. Three read-only routes, no input, no TLS:
//!
//! - `/metrics`: what `metrics` counted, and the state an operator watches, read at scrape time
//!   (log size, checkpoint and cosignature ages, outbox backlog, store size, budgets, registry
//!   and certificate expiry): nothing is kept up to date between scrapes.
//! - `/healthz`: the process answers (liveness).
//! - `/readyz`: the node can do its work (readiness): the store answers, the registry in force
//!   is valid now, entries do not wait too long for a checkpoint, and it is not draining.
//!
//! Bounded like every listener: a few connections at a time, a deadline on each request's
//! headers and on each connection.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::{Registry, Unit},
};
use tokio::{net::TcpListener, sync::watch};

use crate::{audit::auditor, listen::stopped, node::Node};

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 16;
/// Time to send a request's headers, and to hold a connection at all.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Checkpoints looked at for the newest cosignature of each witness.
const RECENT_CHECKPOINTS: usize = 16;
/// Budgets exported at most (one series each).
const MAX_BUDGET_SERIES: usize = 1000;

/// What the ops routes read: the node, its TLS certificate's end of validity, and whether it is
/// draining.
pub(crate) struct Ops {
    node: Arc<Node>,
    tls_not_after_ms: Option<i64>,
    draining: Arc<AtomicBool>,
    max_checkpoint_delay_ms: i64,
}

impl Ops {
    pub(crate) fn new(
        node: Arc<Node>,
        tls_not_after_ms: Option<i64>,
        draining: Arc<AtomicBool>,
        max_checkpoint_delay_ms: u64,
    ) -> Self {
        let max_checkpoint_delay_ms = i64::try_from(max_checkpoint_delay_ms).unwrap_or(i64::MAX);
        Self { node, tls_not_after_ms, draining, max_checkpoint_delay_ms }
    }
}

/// Serves the ops routes on `listener` until shutdown.
pub(crate) fn serve(listener: TcpListener, ops: Ops, shutdown: watch::Receiver<bool>) {
    let ops = Arc::new(ops);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        let mut stop = shutdown.clone();
        loop {
            let permit = tokio::select! {
                () = stopped(&mut stop) => break,
                p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            };
            let stream = tokio::select! {
                () = stopped(&mut stop) => break,
                accepted = listener.accept() => match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::debug!("ops listener: accept failed: {e}");
                        continue;
                    }
                },
            };
            let ops = ops.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let ops = ops.clone();
                    async move { Ok::<_, Infallible>(ops.handle(req.method(), req.uri().path()).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(16 * 1024)
                    .serve_connection(TokioIo::new(stream), svc);
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
                drop(permit);
            });
        }
    });
}

type Response = http::Response<Full<Bytes>>;

fn answer(status: http::StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response {
    let mut r = http::Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    r.headers_mut().insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    r
}

const TEXT: &str = "text/plain; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Ops {
    async fn handle(&self, method: &http::Method, path: &str) -> Response {
        if method != http::Method::GET && method != http::Method::HEAD {
            return answer(http::StatusCode::METHOD_NOT_ALLOWED, TEXT, "only GET\n");
        }
        match path {
            "/healthz" => answer(http::StatusCode::OK, TEXT, "ok\n"),
            "/readyz" => {
                let checks = self.readiness().await;
                let ready = checks.values().all(|v| v == "ok");
                let body = serde_json::json!({ "ready": ready, "checks": checks });
                let status = if ready { http::StatusCode::OK } else { http::StatusCode::SERVICE_UNAVAILABLE };
                answer(status, "application/json", format!("{body}\n"))
            }
            "/metrics" => {
                // Store reads and signature checks of recent checkpoints: off the async threads.
                let node = self.node.clone();
                let ready = self.readiness().await.values().all(|v| v == "ok");
                let tls = self.tls_not_after_ms;
                match tokio::task::spawn_blocking(move || encode(&node, tls, ready)).await {
                    Ok(Ok(text)) => answer(http::StatusCode::OK, OPENMETRICS, text),
                    Ok(Err(e)) => answer(http::StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n")),
                    Err(e) => answer(http::StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n")),
                }
            }
            _ => answer(http::StatusCode::NOT_FOUND, TEXT, "not found: /metrics, /healthz, /readyz\n"),
        }
    }

    /// Each readiness check by name: "ok", or why not.
    async fn readiness(&self) -> BTreeMap<&'static str, String> {
        // The store's answer may take up to its deadline (a database that does not answer):
        // off the async threads.
        let (node, draining, max_delay) =
            (self.node.clone(), self.draining.load(Ordering::Relaxed), self.max_checkpoint_delay_ms);
        tokio::task::spawn_blocking(move || readiness(&node, draining, max_delay))
            .await
            .unwrap_or_else(|e| BTreeMap::from([("store", format!("the readiness check failed: {e}"))]))
    }
}

/// Each readiness check by name: "ok", or why not.
fn readiness(node: &Node, draining: bool, max_checkpoint_delay_ms: i64) -> BTreeMap<&'static str, String> {
    let core = &node.core;
    let now = core.now_ms();
    let mut checks = BTreeMap::new();
    checks
        .insert("draining", if draining || core.stopping() { "the node is stopping".to_string() } else { "ok".into() });
    let (store, waiting) = match (core.store.audit_size(), core.store.latest_checkpoint()) {
        (Ok(_), Ok(cp)) => ("ok".to_string(), node.log.durable_size().saturating_sub(cp.map_or(0, |(s, _)| s))),
        (Err(e), _) | (_, Err(e)) => (format!("the store failed: {e}"), 0),
    };
    checks.insert("store", store);
    let registry = core.registry();
    checks.insert(
        "registry",
        if registry.valid_at(now) {
            "ok".into()
        } else {
            format!("registry v{} is not valid now (valid until {} ms)", registry.version(), registry.valid_until_ms())
        },
    );
    let since = core.metrics.last_checkpoint_signed_ms().unwrap_or(node.started_at_ms);
    checks.insert(
        "checkpoint",
        if waiting > 0 && now.saturating_sub(since) > max_checkpoint_delay_ms {
            format!("{waiting} entries have waited more than {max_checkpoint_delay_ms} ms for a checkpoint")
        } else {
            "ok".into()
        },
    );
    checks
}

fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

fn gauge(registry: &mut Registry, name: &str, help: &str, unit: Option<Unit>, value: f64) {
    let g = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    g.set(value);
    match unit {
        Some(u) => registry.register_with_unit(name, help, u, g),
        None => registry.register(name, help, g),
    }
}

fn family(
    registry: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    values: impl IntoIterator<Item = (Vec<(String, String)>, f64)>,
) {
    let f = Family::<Vec<(String, String)>, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    for (labels, v) in values {
        f.get_or_create(&labels).set(v);
    }
    match unit {
        Some(u) => registry.register_with_unit(name, help, u, f),
        None => registry.register(name, help, f),
    }
}

fn label(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_string(), v.into())
}

/// The whole exposition: what was counted, then the state read now.
fn encode(node: &Node, tls_not_after_ms: Option<i64>, ready: bool) -> Result<String, String> {
    let core = &node.core;
    let now = core.now_ms();
    let age = |t: i64| seconds(now.saturating_sub(t).max(0));
    let mut r = Registry::with_prefix("ftz");
    let e = |e: ftz_store::StoreError| e.to_string();

    family(
        &mut r,
        "build_info",
        "The node's software version",
        None,
        [(vec![label("version", env!("CARGO_PKG_VERSION"))], 1.0)],
    );
    gauge(&mut r, "ready", "1 when /readyz answers ready", None, if ready { 1.0 } else { 0.0 });
    gauge(&mut r, "start_time", "When the node started", Some(Unit::Seconds), seconds(node.started_at_ms));

    // The audit log and its checkpoints.
    let size = node.log.durable_size();
    let cp_size = core.store.latest_checkpoint().map_err(e)?.map_or(0, |(s, _)| s);
    gauge(&mut r, "audit_log_entries", "Entries in the audit log (durable)", None, size as f64);
    gauge(&mut r, "audit_checkpoint_entries", "Size of the latest signed checkpoint", None, cp_size as f64);
    gauge(
        &mut r,
        "audit_unsigned_entries",
        "Entries not yet under a signed checkpoint",
        None,
        size.saturating_sub(cp_size) as f64,
    );
    let (recent, _) = auditor::checkpoint_history(core, None, RECENT_CHECKPOINTS).map_err(|e| e.message)?;
    let mut newest: BTreeMap<String, i64> = BTreeMap::new();
    let mut cosigned: BTreeMap<String, u64> = BTreeMap::new();
    for c in &recent {
        for s in c.cosignatures.iter().filter(|s| s.verified) {
            let t = newest.entry(s.zone.clone()).or_insert(i64::MIN);
            *t = (*t).max(s.cosigned_at_ms);
            let n = cosigned.entry(s.zone.clone()).or_insert(0);
            *n = (*n).max(c.size);
        }
    }
    // The latest checkpoint's age: since this node signed it, or (signed before a restart) since
    // its newest cosignature, or since the node started.
    let signed_at = core
        .metrics
        .last_checkpoint_signed_ms()
        .or_else(|| recent.first().and_then(|c| c.cosignatures.iter().map(|s| s.cosigned_at_ms).max()))
        .unwrap_or(node.started_at_ms);
    gauge(
        &mut r,
        "audit_checkpoint_age",
        "Time since the latest checkpoint was signed (or, signed before a restart, first cosigned)",
        Some(Unit::Seconds),
        age(signed_at),
    );
    let registry = core.registry();
    let witnesses: Vec<String> = registry.zones().filter(|z| z.id != core.zone).map(|z| z.id.to_string()).collect();
    family(
        &mut r,
        "witness_cosignature_age",
        "Time since each witness's newest verified cosignature of this log (absent: none in the recent checkpoints)",
        Some(Unit::Seconds),
        witnesses.iter().filter_map(|w| newest.get(w).map(|t| (vec![label("witness", w.clone())], age(*t)))),
    );
    family(
        &mut r,
        "witness_cosigned_entries",
        "Size of the newest checkpoint of this log each witness cosigned (0: none of the recent ones)",
        None,
        witnesses.iter().map(|w| (vec![label("witness", w.clone())], cosigned.get(w).copied().unwrap_or(0) as f64)),
    );
    let found = Counter::<u64>::default();
    found.inc_by(node.witness.equivocations_found());
    r.register(
        "witness_equivocations_found",
        "Equivocations this node found as a witness since it started (two signed checkpoints of one log that cannot both be true)",
        found,
    );
    gauge(
        &mut r,
        "witness_equivocation_evidence",
        "Pieces of equivocation evidence held in the store",
        None,
        core.store.evidence_count().map_err(e)? as f64,
    );

    // The outbox: backlog and oldest message per destination.
    let items = core.store.outbox_items(ftz_store::MAX_OUTBOX_ITEMS).map_err(e)?;
    let mut backlog: BTreeMap<String, (u64, i64)> = BTreeMap::new();
    for i in &items {
        let dest = if registry
            .zone(&ftz_core::ZoneId::new(i.to_zone.as_str()).unwrap_or_else(|_| core.zone.clone()))
            .is_some()
        {
            i.to_zone.clone()
        } else {
            "other".into()
        };
        let b = backlog.entry(dest).or_insert((0, i64::MAX));
        b.0 += 1;
        b.1 = b.1.min(i.created_at_ms);
    }
    for w in &witnesses {
        backlog.entry(w.clone()).or_insert((0, i64::MAX));
    }
    family(
        &mut r,
        "outbox_messages",
        "Messages waiting in the outbox, per destination zone",
        None,
        backlog.iter().map(|(d, (n, _))| (vec![label("destination", d.clone())], *n as f64)),
    );
    family(
        &mut r,
        "outbox_oldest_message_age",
        "Age of the oldest message waiting for each destination (0: none waits)",
        Some(Unit::Seconds),
        backlog
            .iter()
            .map(|(d, (_, t))| (vec![label("destination", d.clone())], if *t == i64::MAX { 0.0 } else { age(*t) })),
    );

    gauge(
        &mut r,
        "store_size",
        "The store's size on disk",
        Some(Unit::Bytes),
        core.store.size_on_disk().map_err(e)? as f64,
    );

    // Privacy budgets.
    let (budgets, _) = node.policies.budgets(MAX_BUDGET_SERIES).map_err(|e| e.message)?;
    let key = |b: &ftz_proto::BudgetSummary| {
        vec![label("policy", b.policy_id.clone()), label("consumer", b.consumer_zone.clone())]
    };
    family(
        &mut r,
        "privacy_budget_spent_epsilon",
        "Privacy budget (epsilon) spent per policy and consumer zone in the window that ends now",
        None,
        budgets.iter().map(|b| (key(b), b.spent_milli as f64 / 1000.0)),
    );
    family(
        &mut r,
        "privacy_budget_limit_epsilon",
        "Privacy budget (epsilon) per window of each policy and consumer zone",
        None,
        budgets.iter().map(|b| (key(b), b.budget_milli as f64 / 1000.0)),
    );

    // Registry and certificates.
    gauge(&mut r, "registry_version", "Version of the registry in force", None, registry.version() as f64);
    gauge(
        &mut r,
        "registry_expiry_timestamp",
        "End of the registry's validity",
        Some(Unit::Seconds),
        seconds(registry.valid_until_ms()),
    );
    if let Some(t) = tls_not_after_ms {
        gauge(
            &mut r,
            "tls_certificate_expiry_timestamp",
            "End of validity of this node's TLS certificate",
            Some(Unit::Seconds),
            seconds(t),
        );
    }
    family(
        &mut r,
        "zone_ca_expiry_timestamp",
        "End of validity of each zone's CA certificate in the registry",
        Some(Unit::Seconds),
        registry.zones().filter_map(|z| {
            ftz_pki::not_after_ms(&z.ca_cert_der).ok().map(|t| (vec![label("zone", z.id.to_string())], seconds(t)))
        }),
    );

    let mut out = String::new();
    let fmt = |e: std::fmt::Error| e.to_string();
    if core.metrics.is_on() {
        prometheus_client::encoding::text::encode_registry(&mut out, core.metrics.registry()).map_err(fmt)?;
    }
    prometheus_client::encoding::text::encode_registry(&mut out, &r).map_err(fmt)?;
    prometheus_client::encoding::text::encode_eof(&mut out).map_err(fmt)?;
    Ok(out)
}
