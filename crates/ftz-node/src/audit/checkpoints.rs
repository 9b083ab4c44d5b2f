//! Checkpoints: signed by one task over the durable size only, at most once per interval while
//! busy and once after the last append, stored (flushed) before anyone sees them, and published
//! to whoever has them witnessed (the `witness` module). At start, the latest one must be
//! reproducible from the durable log, or the node refuses to run. Replicas of one node on one
//! database each sign what they see of the shared log; the store keeps one checkpoint per size
//! and the latest only moves forward, and only the replica whose checkpoint it kept has it
//! witnessed ([`ftz_store::Store::advance_checkpoint`]).

use std::{sync::Arc, time::Duration};

use ftz_audit::{
    checkpoint::Checkpoint,
    merkle::Nodes,
    note::{self, Note, Signer, TYPE_ED25519, Verifier},
};
use ftz_core::{SigningKey, ZoneId};
use ftz_store::Store;
use tokio::sync::watch;

use super::{
    log::AuditLog,
    log_name,
    plan::{frontier, root_of},
    tree::TreeReader,
};
use crate::{core::Core, error::ApiError};

/// A checkpoint as signed: its size and the note's text.
pub(crate) type Signed = Option<(u64, String)>;

/// Signs a checkpoint of the durable tree of `size` leaves.
pub fn sign_checkpoint<N: Nodes>(
    tree: &N,
    zone: &ZoneId,
    key: &SigningKey,
    size: u64,
) -> Result<(Checkpoint, String), ApiError>
where
    ApiError: From<N::Error>,
{
    let root = root_of(&frontier(tree, size)?);
    let cp = Checkpoint { origin: log_name(zone), size, root };
    let signer = Signer::new(&cp.origin, TYPE_ED25519, key).map_err(|e| ApiError::internal(e.to_string()))?;
    let note = note::sign(&cp.to_text(), &signer).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((cp, note))
}

/// Why a node must not serve the log it holds.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HistoryError(String);

/// At start: the latest signed checkpoint must be reproducible from the durable log (same root
/// at its size), or the node refuses to run: it would contradict what it signed.
/// The checkpoint may have been signed by an earlier node key of the zone (before a rotation):
/// any node key the registry lists for the zone, or the key in use, counts.
pub(crate) fn check_signed_history(
    store: &Store,
    zone: &ZoneId,
    key: &SigningKey,
    registry: &ftz_core::Registry,
) -> Result<(), HistoryError> {
    check(store, zone, key, registry).map_err(HistoryError)
}

fn check(store: &Store, zone: &ZoneId, key: &SigningKey, registry: &ftz_core::Registry) -> Result<(), String> {
    let Some((size, text)) = store.latest_checkpoint().map_err(|e| e.to_string())? else { return Ok(()) };
    let durable = store.audit_size().map_err(|e| e.to_string())?;
    if durable < size {
        return Err(format!("the audit log holds {durable} entries, but a checkpoint was signed at size {size}"));
    }
    let listed = registry
        .zone(zone)
        .map(|z| z.keys.iter().filter(|k| k.purpose == ftz_proto::KeyPurpose::Node).map(|k| k.key).collect::<Vec<_>>())
        .unwrap_or_default();
    let verifiers: Vec<Verifier> = std::iter::once(key.verifying_key())
        .chain(listed)
        .filter_map(|k| Verifier::new(&log_name(zone), TYPE_ED25519, k).ok())
        .collect();
    let note = Note::parse(&text).map_err(|e| e.to_string())?;
    note.verify(&verifiers).map_err(|e| format!("the stored checkpoint: {e}"))?;
    let cp = Checkpoint::parse(&note.text).map_err(|e| e.to_string())?;
    let root = ftz_audit::merkle::root(&TreeReader::uncached(store), size).map_err(|e| e.to_string())?;
    if root != cp.root || cp.size != size {
        return Err(format!("the audit log's root at size {size} is not the one its signed checkpoint states"));
    }
    Ok(())
}

/// Signs checkpoints as the log grows, and publishes each one signed (for witnessing).
pub(crate) fn spawn_signer(core: Arc<Core>, log: AuditLog, interval: Duration) -> watch::Receiver<Signed> {
    let latest = core.store.latest_checkpoint().ok().flatten();
    let (tx, rx) = watch::channel(None);
    let mut signed = latest.as_ref().map_or(0, |(s, _)| *s);
    let mut unsigned = latest.is_none();
    let c = core.clone();
    core.tasks.spawn(async move {
        let mut size_rx = log.size();
        let stopped = c.tasks.stopped();
        tokio::pin!(stopped);
        loop {
            let size = *size_rx.borrow_and_update();
            // Nothing is signed while the log is shut (a restore its witnesses have not confirmed).
            if (size > signed || unsigned) && log.writable().is_ok() {
                let stored = sign_checkpoint(&log.tree(), &c.zone, &c.node_key, size).and_then(|(_, note)| {
                    c.store.advance_checkpoint(size, &note).map(|advanced| (note, advanced)).map_err(Into::into)
                });
                match stored {
                    Ok((note, true)) => {
                        (signed, unsigned) = (size, false);
                        c.metrics.checkpoint_signed(c.now_ms());
                        tracing::debug!(size, "checkpoint signed");
                        tx.send_replace(Some((size, note)));
                    }
                    Ok((_, false)) => {
                        // Another replica of this node signed this size, or a larger one, first:
                        // its checkpoint stands and it has it witnessed.
                        (signed, unsigned) = (size, false);
                        tracing::debug!(size, "checkpoint signed by another replica");
                    }
                    Err(e) => tracing::error!("checkpoint: {e}"),
                }
                // At most one checkpoint per interval while busy.
                tokio::select! {
                    () = &mut stopped => return,
                    () = tokio::time::sleep(interval) => {}
                }
                continue;
            }
            tokio::select! {
                () = &mut stopped => return,
                changed = size_rx.changed() => if changed.is_err() { return },
            }
        }
    });
    rx
}
