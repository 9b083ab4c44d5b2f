//! What the node counts as it works, for Prometheus: requests, their latency, transfers and
//! signed checkpoints. The state an operator watches (log size, outbox backlog, certificate
//! expiry, ...) is read when Prometheus scrapes (`ops::state`), not kept here.
//!
//! Every label value is from a bounded set, whatever callers send: a method path is one of the
//! methods the node serves or `unknown`, a zone is one the registry lists or `other`, a reason is
//! from the stable vocabulary. A dishonest zone or an outsider cannot grow the number of series
//! (and with it the memory of this node and of the zone's Prometheus) by inventing names.
//!
//! Off (`Metrics::off`, when no `[ops] listen` is configured) every call here returns at once:
//! what the benchmark compares against.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        RwLock,
        atomic::{AtomicI64, Ordering},
    },
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, histogram::Histogram},
    registry::Registry,
};

/// Labels of a request: the gRPC service and method, the gRPC status code's name and the
/// stable reason of a refusal (empty for a success).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub service: String,
    pub method: String,
    pub code: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct MethodLabels {
    pub service: String,
    pub method: String,
}

/// Labels of a transfer as this zone logged it: the other zone, whether the data went out of
/// this zone or came in, and what became of it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TransferLabels {
    pub peer_zone: String,
    pub direction: &'static str,
    pub decision: &'static str,
}

/// Which way the data of a transfer went, seen from this zone.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Direction {
    /// This zone provided (or was asked to provide) the data.
    Outgoing,
    /// This zone received (or asked for) the data.
    Incoming,
}

/// What became of a transfer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Decision {
    /// Both sides signed it: logged as a transfer.
    Transferred,
    /// The consumer's receipt said it refused the data.
    RefusedOnReceipt,
    /// Refused before any data moved (by this zone or by the other).
    Refused,
    /// Declared unacknowledged: the receipt did not come in time.
    Unacknowledged,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Self::Outgoing => "outgoing",
            Self::Incoming => "incoming",
        }
    }
}

impl Decision {
    fn name(self) -> &'static str {
        match self {
            Self::Transferred => "transferred",
            Self::RefusedOnReceipt => "refused_on_receipt",
            Self::Refused => "refused",
            Self::Unacknowledged => "unacknowledged",
        }
    }
}

/// The node's counters and histograms, and the registry they are encoded from.
pub(crate) struct Metrics {
    on: bool,
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<MethodLabels, Histogram>,
    transfers: Family<TransferLabels, Counter>,
    /// When this node last signed a checkpoint (ms), or 0.
    checkpoint_signed_ms: AtomicI64,
    /// Every method path the node serves.
    methods: HashSet<String>,
    /// The series of each served method's successes, looked up by path: a success (nearly every
    /// request) is counted without allocating label strings or hashing a label set.
    answered: RwLock<HashMap<String, Answered>>,
}

/// One method's success counter and latency histogram (handles onto the families' series).
struct Answered {
    ok: Counter,
    latency: Histogram,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").field("on", &self.on).finish_non_exhaustive()
    }
}

/// Latency buckets in seconds: 0.25 ms to about 8 s, doubling.
fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(0.000_25, 2.0, 16)
}

/// Method paths of the services beside ftz's own that the node serves.
const OTHER_METHODS: &[&str] = &[
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

fn served_methods() -> HashSet<String> {
    let mut set: HashSet<String> = OTHER_METHODS.iter().map(|m| m.to_string()).collect();
    match prost_reflect::DescriptorPool::decode(ftz_proto::v1::FILE_DESCRIPTOR_SET) {
        Ok(pool) => {
            for s in pool.services() {
                for m in s.methods() {
                    set.insert(format!("/{}/{}", s.full_name(), m.name()));
                }
            }
        }
        Err(e) => tracing::error!("metrics: the service descriptors do not decode: {e}"),
    }
    set
}

impl Metrics {
    /// Counting, with every metric registered.
    pub(crate) fn on() -> Self {
        let mut registry = Registry::with_prefix("ftz");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<MethodLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(latency_buckets())) as fn() -> Histogram,
        );
        let transfers = Family::<TransferLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by service, method, gRPC status code and refusal reason (JSON API calls included)",
            requests.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time from an authenticated request's arrival to its answer",
            prometheus_client::registry::Unit::Seconds,
            latency.clone(),
        );
        registry.register(
            "transfers",
            "Transfers and refusals this zone logged, by the other zone, direction of the data and decision",
            transfers.clone(),
        );
        Self::with(true, registry, requests, latency, transfers)
    }

    /// Counting nothing: every record call returns at once.
    pub(crate) fn off() -> Self {
        Self::with(
            false,
            Registry::default(),
            Family::default(),
            Family::new_with_constructor(|| Histogram::new(latency_buckets())),
            Family::default(),
        )
    }

    fn with(
        on: bool,
        registry: Registry,
        requests: Family<RequestLabels, Counter>,
        latency: Family<MethodLabels, Histogram>,
        transfers: Family<TransferLabels, Counter>,
    ) -> Self {
        let methods = if on { served_methods() } else { HashSet::new() };
        Self {
            on,
            registry,
            requests,
            latency,
            transfers,
            checkpoint_signed_ms: AtomicI64::new(0),
            methods,
            answered: RwLock::default(),
        }
    }

    pub(crate) fn is_on(&self) -> bool {
        self.on
    }

    /// The registry of what is counted here.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// `(service, method)` of a path the node serves, or `unknown` for anything else.
    fn method_of(&self, path: &str) -> (String, String) {
        if self.methods.contains(path)
            && let Some((service, method)) = path.trim_start_matches('/').split_once('/')
        {
            let service = service.rsplit('.').next().unwrap_or(service);
            return (service.to_string(), method.to_string());
        }
        ("unknown".into(), "unknown".into())
    }

    /// One request answered: its path, gRPC status code and refusal reason (if any), and how
    /// long it took (`None` for a request refused before it reached a service).
    pub(crate) fn request(&self, path: &str, code: tonic::Code, reason: Option<ftz_core::Reason>, took: Option<f64>) {
        if !self.on {
            return;
        }
        if code == tonic::Code::Ok && reason.is_none() && self.answered_fast(path, took) {
            return;
        }
        let (service, method) = self.method_of(path);
        if let Some(seconds) = took {
            self.latency
                .get_or_create(&MethodLabels { service: service.clone(), method: method.clone() })
                .observe(seconds);
        }
        let code = format!("{code:?}");
        let reason = reason.map(|r| r.to_string()).unwrap_or_default();
        self.requests.get_or_create(&RequestLabels { service, method, code, reason }).inc();
    }

    /// Counts a success of a served method through its cached series; false for a path the
    /// node does not serve (counted as `unknown` by the caller).
    fn answered_fast(&self, path: &str, took: Option<f64>) -> bool {
        let count = |a: &Answered| {
            a.ok.inc();
            if let Some(seconds) = took {
                a.latency.observe(seconds);
            }
        };
        if let Some(a) = self.answered.read().unwrap_or_else(|e| e.into_inner()).get(path) {
            count(a);
            return true;
        }
        if !self.methods.contains(path) {
            return false;
        }
        let (service, method) = self.method_of(path);
        let labels = MethodLabels { service: service.clone(), method: method.clone() };
        let latency = self.latency.get_or_create(&labels).clone();
        let ok = self
            .requests
            .get_or_create(&RequestLabels {
                service,
                method,
                code: format!("{:?}", tonic::Code::Ok),
                reason: String::new(),
            })
            .clone();
        let mut answered = self.answered.write().unwrap_or_else(|e| e.into_inner());
        count(answered.entry(path.to_string()).or_insert(Answered { ok, latency }));
        true
    }

    /// A transfer (or refusal, or unacknowledged intent) logged with `peer`, which must be a
    /// zone of the registry (else counted as `other`).
    pub(crate) fn transfer(&self, peer: &str, listed: bool, direction: Direction, decision: Decision) {
        if !self.on {
            return;
        }
        let peer_zone = if listed { peer.to_string() } else { "other".into() };
        self.transfers
            .get_or_create(&TransferLabels { peer_zone, direction: direction.name(), decision: decision.name() })
            .inc();
    }

    /// This node signed a checkpoint at `now_ms`.
    pub(crate) fn checkpoint_signed(&self, now_ms: i64) {
        self.checkpoint_signed_ms.store(now_ms, Ordering::Relaxed);
    }

    /// When this node last signed a checkpoint since it started (ms), if it did.
    pub(crate) fn last_checkpoint_signed_ms(&self) -> Option<i64> {
        Some(self.checkpoint_signed_ms.load(Ordering::Relaxed)).filter(|t| *t > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &Metrics) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, m.registry()).unwrap();
        s
    }

    #[test]
    fn invented_method_names_do_not_make_new_series() {
        let m = Metrics::on();
        for i in 0..1000 {
            m.request(&format!("/ftz.v1.Verify/Nope{i}"), tonic::Code::Unimplemented, None, Some(0.001));
        }
        m.request("/ftz.v1.Verify/VerifyRecord", tonic::Code::Ok, None, Some(0.002));
        let out = text(&m);
        let series = out.lines().filter(|l| l.starts_with("ftz_requests_total{")).count();
        assert_eq!(series, 2, "{out}");
        assert!(
            out.contains(
                r#"ftz_requests_total{service="unknown",method="unknown",code="Unimplemented",reason=""} 1000"#
            ),
            "{out}"
        );
        assert!(out.contains(r#"service="Verify",method="VerifyRecord",code="Ok""#), "{out}");
        assert!(out.contains("ftz_request_duration_seconds_bucket"), "{out}");
    }

    #[test]
    fn successes_and_refusals_of_a_method_are_counted_in_their_series() {
        let m = Metrics::on();
        let path = "/ftz.v1.Verify/VerifyRecord";
        for _ in 0..3 {
            m.request(path, tonic::Code::Ok, None, Some(0.002));
        }
        m.request(path, tonic::Code::NotFound, Some(ftz_core::Reason::RecordNotFound), Some(0.001));
        m.request(path, tonic::Code::Ok, None, None);
        let out = text(&m);
        let ok = r#"ftz_requests_total{service="Verify",method="VerifyRecord",code="Ok",reason=""} 4"#;
        assert!(out.contains(ok), "{out}");
        assert!(out.contains(r#"code="NotFound",reason="RECORD_NOT_FOUND"} 1"#), "{out}");
        let timed = r#"ftz_request_duration_seconds_count{service="Verify",method="VerifyRecord"} 4"#;
        assert!(out.contains(timed), "{out}");
        assert_eq!(out.lines().filter(|l| l.starts_with("ftz_requests_total{")).count(), 2, "{out}");
    }

    #[test]
    fn zones_outside_the_registry_are_one_label() {
        let m = Metrics::on();
        for i in 0..100 {
            m.transfer(&format!("zone{i}"), false, Direction::Outgoing, Decision::Refused);
        }
        m.transfer("hainan", true, Direction::Outgoing, Decision::Transferred);
        let out = text(&m);
        assert!(
            out.contains(r#"ftz_transfers_total{peer_zone="other",direction="outgoing",decision="refused"} 100"#),
            "{out}"
        );
        assert!(
            out.contains(r#"ftz_transfers_total{peer_zone="hainan",direction="outgoing",decision="transferred"} 1"#),
            "{out}"
        );
    }

    #[test]
    fn off_counts_nothing() {
        let m = Metrics::off();
        m.request("/ftz.v1.Verify/VerifyRecord", tonic::Code::Ok, None, Some(0.002));
        assert!(!text(&m).contains("ftz_requests"));
    }
}
