//! The provider's side of receipts that do not come: intents past their deadline are logged as
//! unacknowledged, and at start receipts a crash queued without their transfer are dropped.

use std::{sync::Arc, time::Duration};

use ftz_audit::leaf::Leaf;
use ftz_core::ZoneId;
use ftz_proto::{AcknowledgeRequest, Envelope, TransferIntent};
use ftz_store::{Store, StoreError};
use prost::Message;

use super::{acknowledged_transfer, part};
use crate::{
    audit::{AuditLog, reader::logged_transfer},
    core::Core,
    metrics::{Decision, Direction},
    outbox::Kind,
};

/// How often overdue intents are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// Logs intents whose receipt did not arrive in time as unacknowledged, now and every few
/// seconds while the node runs.
pub(crate) fn spawn_unacknowledged_sweeper(core: Arc<Core>, log: AuditLog) {
    let c = core.clone();
    core.tasks.every(SWEEP_EVERY, move || {
        let (core, log) = (c.clone(), log.clone());
        async move { sweep(&core, &log).await }
    });
}

async fn sweep(core: &Core, log: &AuditLog) {
    let store = &core.store;
    let Ok(due) = store.overdue_intents(core.now_ms()) else { return };
    for (id, bytes) in due {
        // A delivery still in the outbox is not unacknowledged: it has not arrived yet.
        if store.outbox_contains(&id).unwrap_or(false) {
            continue;
        }
        // Acknowledged, and only the cleanup was lost (a crash before it was durable).
        if logged_transfer(store, &id).ok().flatten().is_some() {
            let _ = store.take_pending_intent(&id);
            continue;
        }
        // Another replica of this node may be sweeping too: one declares it.
        let now = core.now_ms();
        if !store.claim_overdue_intent(&id, now, now + 10 * SWEEP_EVERY.as_millis() as i64).unwrap_or(false) {
            continue;
        }
        let Ok(env) = Envelope::decode(bytes.as_slice()) else { continue };
        let Ok(intent) = part(&env) else { continue };
        let consumer = TransferIntent::decode(intent.payload.as_slice()).map(|i| i.consumer_zone).unwrap_or_default();
        let leaf = Leaf::Unacknowledged { intent, declared_at_ms: core.now_ms() };
        if log.append(&leaf, None).await.is_ok() {
            let listed = ZoneId::new(consumer.as_str()).is_ok_and(|z| core.registry().zone(&z).is_some());
            core.metrics.transfer(&consumer, listed, Direction::Outgoing, Decision::Unacknowledged);
            let _ = store.take_pending_intent(&id);
            tracing::warn!(transfer = %hex::encode(id), "no receipt in time: logged as unacknowledged");
        }
    }
}

/// At start, before anything runs: drops receipts queued without their transfer in the log (a
/// crash cut their batch short, see `ftz_store::AuditBatch::outbox`), so that no zone is told of
/// a transfer this log does not hold. Returns how many.
pub(crate) fn drop_orphan_receipts(store: &Store) -> Result<usize, StoreError> {
    let mut dropped = 0;
    for item in store.outbox_items(usize::MAX)? {
        if item.kind != Kind::Receipt as u8 {
            continue;
        }
        let id = AcknowledgeRequest::decode(item.body.as_slice()).ok().as_ref().and_then(acknowledged_transfer);
        let logged = match id {
            Some(id) => logged_transfer(store, &id)?.is_some(),
            None => false,
        };
        if !logged {
            store.outbox_remove(&item.id)?;
            dropped += 1;
        }
    }
    if dropped > 0 {
        tracing::warn!(dropped, "receipts queued for transfers the log does not hold (a crash) were dropped");
    }
    Ok(dropped)
}
