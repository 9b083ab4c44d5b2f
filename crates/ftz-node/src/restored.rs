//! After a restore: is the restored log behind what the other zones' witnesses hold?
//!
//! A backup holds the log up to its cut `N`. The node that made it may have appended beyond `N`,
//! signed checkpoints at larger sizes and had them cosigned before its disk was lost. If the
//! restored node appended now, its entry `N` would differ from the one the witnesses have
//! already cosigned a checkpoint over: two signed histories for the same sizes (equivocation).
//! So a store marked restored starts with its log shut (`audit::gate`), and this task asks every
//! other zone's node what it holds of this log, through `Peer.Witness` with an old size no
//! witness can hold (`u64::MAX`): the witness refuses `WITNESS_CONFLICT` with the size
//! (`witness_size`) and root (`witness_root`) it holds, and changes nothing (no cosignature, no
//! evidence, no entry). Then:
//!
//! - a witness holds a larger size, or another root at a size at or below `N`: the log stays
//!   shut for good (until the operator acts: docs/operations.md, "Back up and restore"), and
//!   the node says so in its log and in `Admin.GetNodeStatus`;
//! - a majority of the other zones answered (more than half of them), each with a size at or
//!   below `N` and our root at that size: the marker is removed (durably) and the log opens;
//! - fewer answered (zones down): the log stays shut and the others are asked again every few
//!   seconds. A majority, not all: one zone gone for good must not keep the node shut for
//!   ever. The price: a witness that did not answer and holds more would find the new
//!   checkpoints inconsistent and keep them as equivocation evidence, which is what it is for.

use std::{sync::Arc, time::Duration};

use ftz_audit::merkle::{Hash, root};
use ftz_core::{Reason, ZoneId};
use ftz_proto::WitnessRequest;

use crate::{
    audit::{AuditLog, checkpoints::sign_checkpoint, gate::WitnessView},
    core::Core,
    error::{ApiError, reason_of, status_meta},
    peers::{PeerClients, peer_failure},
};

/// How often witnesses that did not answer are asked again.
const RETRY: Duration = Duration::from_secs(2);

/// What a witness said it holds.
#[derive(Debug, Clone, Copy)]
struct Held {
    size: u64,
    root: Option<Hash>,
}

/// Starts the check if the store was restored and not yet confirmed.
pub(crate) fn spawn(core: Arc<Core>, log: AuditLog, peers: Arc<PeerClients>) {
    let marker = match core.store.restored_marker() {
        Ok(Some(m)) => m,
        Ok(None) => return,
        Err(e) => {
            tracing::error!("reading the restore marker: {e}; the log stays shut");
            return;
        }
    };
    let c = core.clone();
    core.tasks.spawn(async move {
        let stopped = c.tasks.stopped();
        tokio::select! {
            () = stopped => {}
            () = confirm(&c, &log, &peers, marker.audit_size) => {}
        }
    });
}

async fn confirm(core: &Core, log: &AuditLog, peers: &PeerClients, restored: u64) {
    let size = log.durable_size();
    tracing::warn!(
        restored_size = restored,
        size,
        "restored from a backup: the audit log appends nothing until the other zones' witnesses say what they hold of it"
    );
    let note = match core.store.latest_checkpoint() {
        Ok(Some((_, note))) => note,
        // No checkpoint in the backup: a checkpoint of the empty log (true of any history)
        // carries the question.
        _ => match sign_checkpoint(&log.tree(), &core.zone, &core.node_key, 0) {
            Ok((_, note)) => note,
            Err(e) => {
                tracing::error!("cannot ask the witnesses: {e}; the log stays shut");
                return;
            }
        },
    };
    let mut answers: std::collections::BTreeMap<ZoneId, Held> = Default::default();
    loop {
        let others: Vec<ZoneId> = core.registry().zones().map(|z| z.id.clone()).filter(|z| *z != core.zone).collect();
        let needed = if others.is_empty() { 0 } else { others.len() / 2 + 1 };
        for zone in &others {
            if answers.contains_key(zone) {
                continue;
            }
            match ask(peers, zone, &note).await {
                Ok(held) => {
                    tracing::info!(witness = %zone, held_size = held.size, "witness holds this log at size {}", held.size);
                    answers.insert(zone.clone(), held);
                }
                Err(e) => tracing::info!(witness = %zone, "witness not heard yet: {e}"),
            }
        }
        let mut views = Vec::new();
        let mut conflicts = Vec::new();
        for zone in &others {
            let Some(held) = answers.get(zone) else {
                views.push(WitnessView {
                    zone: zone.to_string(),
                    answered: false,
                    held_size: 0,
                    conflict: String::new(),
                });
                continue;
            };
            let conflict = judge(log, size, *held);
            if !conflict.is_empty() {
                conflicts.push(format!("witness {zone} {conflict}"));
            }
            views.push(WitnessView { zone: zone.to_string(), answered: true, held_size: held.size, conflict });
        }
        let heard = answers.len();
        if !conflicts.is_empty() {
            let why = format!(
                "this node was restored from a backup of its log at size {size}, and its log is behind what the witnesses hold: {}. It appends nothing and signs no checkpoint (that would fork the log); an operator must act (docs/operations.md, \"Back up and restore\")",
                conflicts.join("; ")
            );
            tracing::error!("{why}");
            log.gate.set(Some(why), views);
            return;
        }
        if heard >= needed {
            if let Err(e) = core.store.clear_restored_marker() {
                tracing::error!("the witnesses confirmed the restored log, but the marker could not be removed: {e}");
                log.gate.set(Some(format!("the restore marker could not be removed: {e}")), views);
                return;
            }
            tracing::info!(
                size,
                heard,
                of = others.len(),
                "the witnesses hold no more of this log than the backup restored: the log continues"
            );
            log.gate.set(None, views);
            return;
        }
        log.gate.set(
            Some(format!(
                "this node was restored from a backup of its log at size {size}; {heard} of the {needed} witnesses needed (a majority of the {} other zones) have said what they hold of it: it appends nothing and signs no checkpoint until they have (asked again every {} s)",
                others.len(),
                RETRY.as_secs()
            )),
            views,
        );
        tokio::time::sleep(RETRY).await;
    }
}

/// Why what `held` says blocks a log of `size` leaves (empty: it does not).
fn judge(log: &AuditLog, size: u64, held: Held) -> String {
    if held.size > size {
        return format!("holds size {}, beyond the {size} entries restored", held.size);
    }
    let Some(theirs) = held.root else {
        tracing::warn!(held_size = held.size, "a witness did not say which root it holds: compared by size only");
        return String::new();
    };
    match root(&log.tree(), held.size) {
        Ok(ours) if ours == theirs => String::new(),
        Ok(_) => format!("holds another root at size {} than this log has", held.size),
        Err(e) => format!("could not be compared at size {}: {e}", held.size),
    }
}

/// What `zone`'s witness holds of this log: asked with an old size it cannot hold, so that it
/// refuses, saying what it holds, and changes nothing.
async fn ask(peers: &PeerClients, zone: &ZoneId, note: &str) -> Result<Held, ApiError> {
    let mut client = peers.client(zone)?;
    let mut req = tonic::Request::new(WitnessRequest {
        old_size: u64::MAX,
        checkpoint: note.to_string(),
        consistency_proof: Vec::new(),
    });
    req.set_timeout(Duration::from_secs(5));
    match client.witness(req).await {
        Ok(_) => Err(ApiError::internal("the witness cosigned a question; its answer is not used")),
        Err(s) if reason_of(&s) == Some(Reason::WitnessConflict) => {
            let size = status_meta(&s, "witness_size")
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| ApiError::internal("the witness did not say which size it holds"))?;
            let root = status_meta(&s, "witness_root")
                .and_then(|h| hex::decode(h).ok())
                .and_then(|b| <[u8; 32]>::try_from(b).ok());
            Ok(Held { size, root })
        }
        Err(s) => Err(peer_failure(zone, &s)),
    }
}
