//! What the node logs besides transfers, in one place: refusals (by this node, or of this node
//! by another zone), configuration changes (registry, agreements, policies, negative list, node
//! key) and deletions at the end of a retention period. None of these fails its caller: an entry
//! that cannot be logged is reported in the node's own log instead.

use ftz_audit::leaf::{Leaf, Refusing};
use ftz_core::{Reason, sha256};
use ftz_policy::exchange::class_name;

use super::log::AuditLog;
use crate::{
    caller_rate::CountedGate,
    core::Core,
    error::ApiError,
    metrics::{Decision, Direction},
};

/// Refusals involving one other zone logged per second at most, in bursts of twice that. Its
/// nodes and users can be refused as fast as they can ask; the log grows by this much at most
/// (about 150 MB a day per zone), and what is not logged is counted in the next entry.
pub(crate) const REFUSALS_PER_SECOND_PER_ZONE: u32 = 20;

/// The per-zone budget of refusal entries, and the refusals left out since the last entry.
pub(crate) struct RefusalGate(CountedGate);

impl Default for RefusalGate {
    fn default() -> Self {
        Self(CountedGate::new(REFUSALS_PER_SECOND_PER_ZONE, 2 * REFUSALS_PER_SECOND_PER_ZONE))
    }
}

impl RefusalGate {
    /// `None`: over the budget, left out (and counted). `Some(n)`: log it, `n` were left out
    /// before it.
    fn admit(&self, zone: &str, now_ms: i64) -> Option<u64> {
        self.0.admit(zone, now_ms)
    }
}

/// A refusal to log: by this node of `other`, or of this node by `other`.
pub(crate) struct Refusal<'a> {
    pub other: &'a str,
    pub refusing: Refusing,
    pub method: &'a str,
    pub error: &'a ApiError,
    pub class: Option<ftz_proto::DataClass>,
    /// What the refused request was about, as both sides name it (only its digest is logged).
    pub subject: &'a str,
}

/// A refused caller chooses the method path it calls (up to the request size): what the log
/// keeps of such a field is bounded.
const MAX_FIELD: usize = 128;

fn clip(s: &str) -> String {
    if s.len() <= MAX_FIELD {
        return s.to_string();
    }
    let mut end = MAX_FIELD;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

pub(crate) async fn log_refusal(core: &Core, log: &AuditLog, r: Refusal<'_>) {
    // Counted whether or not the log has room for it: refused data would have left this zone
    // when this zone refused, and would have come in when the other zone did.
    let direction = if r.refusing.by_us() { Direction::Outgoing } else { Direction::Incoming };
    let listed = ftz_core::ZoneId::new(r.other).is_ok_and(|z| core.registry().zone(&z).is_some());
    core.metrics.transfer(r.other, listed, direction, Decision::Refused);
    let Some(left_out) = log.refusals.admit(r.other, core.now_ms()) else { return };
    let e = r.error;
    let meta = |key: &str| e.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let policy = meta("policy_id").unwrap_or_default();
    // Refused by the other zone: log its reason, as it logs it, so the two entries pair up.
    let reason = match meta("peer_reason") {
        Some(p) if r.refusing == Refusing::RefusedByPeer && e.reason == Reason::PeerRefused => p,
        _ => e.reason.to_string(),
    };
    let leaf = Leaf::Refusal {
        at_ms: core.now_ms(),
        zone: core.zone.to_string(),
        other_zone: r.other.to_string(),
        refusing: r.refusing,
        reason: clip(&reason),
        method: if left_out > 0 {
            format!("{} (+{left_out} refusals of zone {} not logged)", clip(r.method), r.other)
        } else {
            clip(r.method)
        },
        data_class: r.class.map(class_name).unwrap_or_default().to_string(),
        policy_id: clip(&policy),
        subject_digest: if r.subject.is_empty() { [0; 32] } else { sha256(r.subject.as_bytes()) },
    };
    if let Err(err) = log.append(&leaf, None).await {
        tracing::error!(reason = %e.reason, "a refusal could not be logged: {err}");
    }
}

/// Logs something installed on the node.
pub(crate) async fn log_config(core: &Core, log: &AuditLog, what: &str, id: &str, version: u64, digest: [u8; 32]) {
    let leaf = Leaf::Config { at_ms: core.now_ms(), what: what.into(), id: id.into(), version, digest };
    if let Err(e) = log.append(&leaf, None).await {
        tracing::error!(what, id, "a configuration change could not be logged: {e}");
    }
}

/// Logs the node key in use (a configuration change) when it differs from the last one logged.
pub(crate) async fn log_node_key(core: &Core, log: &AuditLog) {
    let id = core.node_key.key_id();
    let last = core.store.meta_value("audit_node_key").ok().flatten();
    if last.as_deref() == Some(id.as_bytes()) {
        return;
    }
    let leaf = Leaf::Config {
        at_ms: core.now_ms(),
        what: "node_key".into(),
        id: id.to_string(),
        version: 0,
        digest: sha256(core.node_key.verifying_key().as_bytes()),
    };
    match log.append(&leaf, None).await {
        Ok(_) => {
            let _ = core.store.set_meta_value("audit_node_key", id.as_bytes());
        }
        Err(e) => tracing::error!("logging the node key: {e}"),
    }
}
