//! The couriers of the two outbox kinds a transfer sends: receipts going back to providers, and
//! pushed deliveries (whose answer carries the consumer's receipt).

use std::sync::Arc;

use ftz_audit::leaf::Refusing;
use ftz_core::{Reason, ZoneId};
use ftz_proto::{AcknowledgeRequest, DataClass, DeliverRequest, DeliverResponse, Envelope, TransferIntent};
use ftz_store::OutboxItem;
use prost::Message;

use super::{acknowledged, acknowledged_transfer};
use crate::{
    audit::{
        AuditLog,
        events::{Refusal, log_refusal},
    },
    core::Core,
    error::ApiError,
    outbox::{CARRY_TIMEOUT, Courier, Handover, carry_call, decode_body, transient},
    peers::{PeerClients, peer_failure},
};

/// How long a queued receipt may wait for its transfer to be durable in this log before it is
/// taken for one a failed or crashed append left behind.
const ORPHAN_RECEIPT_AFTER_MS: i64 = 60_000;

fn peer_of(item: &OutboxItem) -> Result<ZoneId, Handover> {
    ZoneId::new(item.to_zone.as_str()).map_err(|_| Handover::Undeliverable(format!("no zone {:?}", item.to_zone)))
}

/// Carries receipts back to providers (`Peer.Acknowledge`), but only once their transfer is
/// durable in this node's log: a receipt is queued with the transfer's batch, before that
/// batch's size and flush, and could otherwise be picked up (a zone that comes back makes
/// everything for it due) before the batch is on disk, or after it failed. Not yet: later.
/// Still not after a minute: dropped, not sent.
pub(crate) struct ReceiptCourier {
    pub core: Arc<Core>,
    pub log: AuditLog,
    pub peers: Arc<PeerClients>,
}

#[tonic::async_trait]
impl Courier for ReceiptCourier {
    async fn carry(&self, item: &OutboxItem) -> Handover {
        let ack: AcknowledgeRequest = match decode_body(item) {
            Ok(a) => a,
            Err(h) => return h,
        };
        let Some(id) = acknowledged_transfer(&ack) else {
            return Handover::Undeliverable("a queued receipt without a transfer id".into());
        };
        match self.log.reader().transfer(&id) {
            Ok(Some(_)) => {}
            Ok(None) if self.core.now_ms() - item.created_at_ms < ORPHAN_RECEIPT_AFTER_MS => {
                return Handover::NotYet("the receipt's transfer is not durable in this log yet".into());
            }
            Ok(None) => return Handover::Undeliverable("the receipt's transfer is not in this log: not sent".into()),
            Err(e) => return Handover::Failed(e.into()),
        }
        carry_call(&self.peers, item, ack, |mut c, r| async move { c.acknowledge(r).await }).await
    }
}

/// Carries pushed deliveries (`Peer.Deliver`); the answer's receipt is checked and logged here.
/// A delivery the receiving zone refuses for good is logged as a refusal, and its intent is no
/// longer pending (the outcome is known; it is not "unacknowledged").
pub(crate) struct DeliveryCourier {
    pub core: Arc<Core>,
    pub log: AuditLog,
    pub peers: Arc<PeerClients>,
}

impl DeliveryCourier {
    async fn refused(&self, to: &ZoneId, intent: &Envelope, e: &ApiError) {
        let i = TransferIntent::decode(intent.payload.as_slice()).unwrap_or_default();
        let refusal = Refusal {
            other: to.as_str(),
            refusing: Refusing::RefusedByPeer,
            method: "/ftz.v1.Peer/Deliver",
            error: e,
            class: DataClass::try_from(i.data_class).ok(),
            subject: &i.subject,
        };
        log_refusal(&self.core, &self.log, refusal).await;
        if let Ok(id) = <[u8; 16]>::try_from(i.transfer_id.as_slice()) {
            let store = self.core.store.clone();
            let _ = tokio::task::spawn_blocking(move || store.take_pending_intent(&id)).await;
        }
    }
}

#[tonic::async_trait]
impl Courier for DeliveryCourier {
    async fn carry(&self, item: &OutboxItem) -> Handover {
        let deliver: DeliverRequest = match decode_body(item) {
            Ok(d) => d,
            Err(h) => return h,
        };
        let to = match peer_of(item) {
            Ok(z) => z,
            Err(h) => return h,
        };
        let mut client = match self.peers.client(&to) {
            Ok(c) => c,
            Err(e) => return Handover::Failed(e),
        };
        let intent = deliver.seal.as_ref().and_then(|s| s.intent.clone()).unwrap_or_default();
        let mut req = tonic::Request::new(deliver);
        req.set_timeout(CARRY_TIMEOUT);
        let resp: DeliverResponse = match client.deliver(req).await {
            Ok(r) => r.into_inner(),
            Err(st) => {
                let e = peer_failure(&to, &st);
                if !transient(&e) {
                    self.refused(&to, &intent, &e).await;
                }
                return Handover::Failed(e);
            }
        };
        let Some(receipt) = resp.receipt else {
            return Handover::Failed(ApiError::new(Reason::TransferInvalid, format!("zone {to} sent no receipt")));
        };
        match acknowledged(&self.core, &self.log, &to, &intent, &receipt).await {
            Ok(()) => Handover::Taken { already: resp.already_delivered },
            Err(e) => Handover::Failed(e),
        }
    }
}
