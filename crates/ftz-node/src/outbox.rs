//! The durable outbox: every message to another zone that must arrive (a transfer receipt, a
//! revocation notice, a policy revocation, a pushed delivery) is written to the store before
//! the first attempt and removed only when the peer has taken it. A crash or a broken link
//! delays it, never loses it. Retries back off exponentially with jitter (1 s doubling up to
//! 5 min); a peer's definitive refusal ends them. Delivery is at least once; each message kind
//! is idempotent at the receiver (a receipt or a delivery by transfer id, a revocation by
//! record or policy), so the effect is exactly once.

use std::{sync::Arc, time::Duration};

use ftz_core::{Reason, ZoneId};
use ftz_proto::{
    AcknowledgeRequest, DeliverRequest, DeliverResponse, NotifyPolicyRevocationRequest, NotifyRevocationRequest,
};
use ftz_store::OutboxItem;
use prost::Message;
use ring::rand::{SecureRandom, SystemRandom};

use crate::{error::ApiError, ping::peer_failure, state::NodeState};

/// What a message is; the byte kept in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Receipt = 1,
    RevocationNotice = 2,
    PolicyRevocation = 3,
    Delivery = 4,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Self> {
        [Kind::Receipt, Kind::RevocationNotice, Kind::PolicyRevocation, Kind::Delivery]
            .into_iter()
            .find(|k| *k as u8 == b)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Receipt => "receipt",
            Kind::RevocationNotice => "revocation_notice",
            Kind::PolicyRevocation => "policy_revocation",
            Kind::Delivery => "delivery",
        }
    }
}

pub fn kind_name(b: u8) -> &'static str {
    Kind::from_byte(b).map_or("unknown", Kind::as_str)
}

/// A message to send: its kind, its peer, the encoded request, and an id that is the same
/// whenever the same message is queued again.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub id: [u8; 16],
    pub kind: Kind,
    pub to: ZoneId,
    pub body: Vec<u8>,
}

impl Outgoing {
    /// An id derived from what the message is, for kinds without a transfer id.
    pub fn derived_id(kind: Kind, to: &ZoneId, body: &[u8]) -> [u8; 16] {
        let mut m = vec![kind as u8];
        m.extend_from_slice(to.as_str().as_bytes());
        m.push(0);
        m.extend_from_slice(body);
        let d = ftz_core::sha256(&m);
        let mut id = [0u8; 16];
        id.copy_from_slice(&d[..16]);
        id
    }
}

impl Outgoing {
    /// The outbox item for this message, first due at `now_ms`.
    pub fn item(self, now_ms: i64) -> OutboxItem {
        OutboxItem {
            id: self.id,
            kind: self.kind as u8,
            to_zone: self.to.to_string(),
            body: self.body,
            created_at_ms: now_ms,
            attempts: 0,
            next_attempt_ms: now_ms,
            last_error: String::new(),
        }
    }
}

/// Tries an item already stored in the outbox, in the background.
pub fn try_soon(state: &Arc<NodeState>, item: OutboxItem) {
    let s = state.clone();
    state.spawn(async move {
        if let Err(e) = attempt_and_record(&s, &item).await {
            tracing::debug!(kind = kind_name(item.kind), "not delivered: {e}");
        }
    });
}

/// How a send ended for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// Taken by the peer; for a delivery, whether it already held it.
    Delivered { already: bool },
    /// Not delivered yet (the peer is unreachable or busy): kept, and retried.
    Queued { error: String },
}

/// A failure worth retrying: the peer could not be reached or asked us to slow down. Anything
/// else (a refusal, an answer that does not verify) would fail the same way again.
/// How long a queued receipt may wait for its transfer to be durable in this log before it is
/// taken for one a failed or crashed append left behind.
const ORPHAN_RECEIPT_AFTER_MS: i64 = 60_000;

/// A receipt goes to the provider only once its transfer is durable in this node's log: it is
/// queued with the transfer's batch, before that batch's size and flush, and could otherwise be
/// picked up (a zone that comes back makes everything for it due) before the batch is on disk,
/// or after it failed. Not yet: retried later. Still not after a minute: dropped, not sent.
fn receipt_may_go(state: &NodeState, item: &OutboxItem, ack: &AcknowledgeRequest) -> Result<(), ApiError> {
    let id = crate::audit::transfer::acknowledged_transfer(ack)
        .ok_or_else(|| ApiError::new(Reason::TransferInvalid, "a queued receipt without a transfer id"))?;
    let durable = state.audit.durable_size();
    if crate::audit::transfer::logged_transfer(&state.store, &id)?.is_some_and(|i| i < durable) {
        return Ok(());
    }
    if state.now_ms() - item.created_at_ms < ORPHAN_RECEIPT_AFTER_MS {
        return Err(ApiError::new(Reason::Internal, "the receipt's transfer is not durable in this log yet"));
    }
    Err(ApiError::new(Reason::TransferInvalid, "the receipt's transfer is not in this log: not sent"))
}

fn transient(e: &ApiError) -> bool {
    let busy = |r: Reason| {
        matches!(
            r,
            Reason::PeerUnavailable
                | Reason::RateLimited
                | Reason::Internal
                | Reason::OutboxFull
                | Reason::StatusUnavailable
        )
    };
    let peer_reason = e.metadata.iter().find(|(k, _)| k == "peer_reason").and_then(|(_, v)| Reason::from_code(v));
    busy(e.reason) || (e.reason == Reason::PeerRefused && peer_reason.is_some_and(busy))
}

/// The delay before attempt `attempts + 1`: 1 s doubling to 5 min, drawn uniformly from its
/// upper half so that many queued messages do not retry in lockstep.
pub fn backoff_ms(attempts: u64) -> i64 {
    let ceiling: i64 = 1_000i64.saturating_mul(1 << attempts.min(20)).min(300_000);
    let mut b = [0u8; 4];
    let r = if SystemRandom::new().fill(&mut b).is_ok() { u32::from_be_bytes(b) } else { u32::MAX / 2 };
    ceiling / 2 + (ceiling / 2) * i64::from(r) / i64::from(u32::MAX)
}

/// Queues `msg` durably and tries it once now. A definitive refusal is returned as an error
/// (and the message dropped); an unreachable peer leaves it queued for the outbox task.
pub async fn send(state: &Arc<NodeState>, msg: Outgoing) -> Result<Sent, ApiError> {
    let item = put(state, msg).await?;
    attempt_and_record(state, &item).await
}

/// Writes the message to the outbox (flushed) unless it is there already.
async fn put(state: &Arc<NodeState>, msg: Outgoing) -> Result<OutboxItem, ApiError> {
    let now = state.now_ms();
    let item = msg.item(now);
    let stored = state.store.write_durably(|s| s.outbox_put(&item)).await?;
    if !stored {
        return Err(ApiError::new(
            Reason::OutboxFull,
            format!("{} messages wait for other zones already", ftz_store::MAX_OUTBOX_ITEMS),
        ));
    }
    Ok(item)
}

/// Queues `msg` durably and tries it in the background: for messages the caller need not wait
/// for (a receipt sent back after the user has their answer).
pub async fn send_later(state: &Arc<NodeState>, msg: Outgoing) -> Result<(), ApiError> {
    let item = put(state, msg).await?;
    try_soon(state, item);
    Ok(())
}

/// One attempt, and what it means for the stored item.
async fn attempt_and_record(state: &Arc<NodeState>, item: &OutboxItem) -> Result<Sent, ApiError> {
    let store = state.store.clone();
    let id = item.id;
    match attempt(state, item).await {
        Ok(already) => {
            // Not waited for on disk: if a crash loses the removal, the message goes again and
            // the other zone answers it as the repeat it is (every kind is idempotent).
            store.without_flush().outbox_remove(&id)?;
            if let Ok(zone) = ZoneId::new(item.to_zone.as_str()) {
                peer_is_back(state, &zone);
            }
            Ok(Sent::Delivered { already })
        }
        Err(e) if transient(&e) && !state.stopping() => {
            if let Ok(zone) = ZoneId::new(item.to_zone.as_str()) {
                state.unreachable.lock().unwrap_or_else(|e| e.into_inner()).insert(zone);
            }
            let next = state.now_ms() + backoff_ms(item.attempts);
            store.write_durably(|s| s.outbox_retry_later(&id, next, &e.message)).await?;
            Ok(Sent::Queued { error: e.message })
        }
        // Stopping: the item stays as it is and is tried again after the restart.
        Err(e) if transient(&e) => Ok(Sent::Queued { error: e.message }),
        Err(e) => {
            tracing::warn!(kind = kind_name(item.kind), to = %item.to_zone, "message refused, not retried: {e}");
            store.write_durably(|s| s.outbox_remove(&id)).await?;
            Err(e)
        }
    }
}

/// `zone` answered (a delivery went through, or its node called this one): if the outbox had
/// given up on it for a while, what waits for it is due now rather than at its backed-off time.
pub fn peer_is_back(state: &Arc<NodeState>, zone: &ZoneId) {
    if !state.unreachable.lock().unwrap_or_else(|e| e.into_inner()).remove(zone) {
        return;
    }
    let (store, z, now) = (state.store.clone(), zone.to_string(), state.now_ms());
    state.spawn(async move {
        match tokio::task::spawn_blocking(move || store.outbox_make_due(&z, now)).await {
            Ok(Ok(n)) if n > 0 => {
                tracing::info!(messages = n, "a zone is reachable again: its queued messages are due")
            }
            Ok(Err(e)) => tracing::warn!("outbox: {e}"),
            _ => {}
        }
    });
}

fn decode<M: Message + Default>(body: &[u8]) -> Result<M, ApiError> {
    M::decode(body).map_err(|e| ApiError::internal(format!("outbox item does not decode: {e}")))
}

/// Sends one item. `Ok(true)`: a delivery the peer already held.
async fn attempt(state: &Arc<NodeState>, item: &OutboxItem) -> Result<bool, ApiError> {
    let to = ZoneId::new(item.to_zone.as_str()).map_err(|e| ApiError::internal(e.to_string()))?;
    let kind = Kind::from_byte(item.kind).ok_or_else(|| ApiError::internal(format!("outbox kind {}", item.kind)))?;
    let mut client = state.peers.client(state, &to)?;
    let timeout = Duration::from_secs(5);
    match kind {
        Kind::Receipt => {
            let ack = decode::<AcknowledgeRequest>(&item.body)?;
            receipt_may_go(state, item, &ack)?;
            let mut req = tonic::Request::new(ack);
            req.set_timeout(timeout);
            client.acknowledge(req).await.map_err(|s| peer_failure(&to, &s))?;
            Ok(false)
        }
        Kind::RevocationNotice => {
            let mut req = tonic::Request::new(decode::<NotifyRevocationRequest>(&item.body)?);
            req.set_timeout(timeout);
            client.notify_revocation(req).await.map_err(|s| peer_failure(&to, &s))?;
            Ok(false)
        }
        Kind::PolicyRevocation => {
            let mut req = tonic::Request::new(decode::<NotifyPolicyRevocationRequest>(&item.body)?);
            req.set_timeout(timeout);
            client.notify_policy_revocation(req).await.map_err(|s| peer_failure(&to, &s))?;
            Ok(false)
        }
        Kind::Delivery => {
            let deliver = decode::<DeliverRequest>(&item.body)?;
            let intent = deliver.seal.as_ref().and_then(|s| s.intent.clone()).unwrap_or_default();
            let mut req = tonic::Request::new(deliver);
            req.set_timeout(timeout);
            let resp: DeliverResponse = match client.deliver(req).await {
                Ok(r) => r.into_inner(),
                Err(st) => {
                    let e = peer_failure(&to, &st);
                    if !transient(&e) {
                        delivery_refused(state, &to, &intent, &e).await;
                    }
                    return Err(e);
                }
            };
            let receipt = resp
                .receipt
                .ok_or_else(|| ApiError::new(Reason::TransferInvalid, format!("zone {to} sent no receipt")))?;
            crate::audit::transfer::accept_receipt(state, &to, &intent, &receipt).await?;
            Ok(resp.already_delivered)
        }
    }
}

/// The receiving zone refused a delivery for good: logged as a refusal, and its intent is no
/// longer pending (the outcome is known; it is not "unacknowledged").
async fn delivery_refused(state: &Arc<NodeState>, to: &ZoneId, intent: &ftz_proto::Envelope, e: &ApiError) {
    let i = ftz_proto::TransferIntent::decode(intent.payload.as_slice()).unwrap_or_default();
    let class = ftz_proto::DataClass::try_from(i.data_class).ok();
    crate::audit::transfer::log_refusal(
        state,
        to.as_str(),
        ftz_audit::leaf::Refusing::RefusedByPeer,
        "/ftz.v1.Peer/Deliver",
        e,
        class,
        &i.subject,
    )
    .await;
    if let Ok(id) = <[u8; 16]>::try_from(i.transfer_id.as_slice()) {
        let store = state.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.take_pending_intent(&id)).await;
    }
}

/// Retries what is due, every half second, until the node stops.
pub(crate) fn spawn(state: Arc<NodeState>) {
    state.clone().spawn(async move {
        let mut shutdown = state.shutdown.clone();
        loop {
            retry_due(&state).await;
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    });
}

/// At most this many messages are sent at once.
const PARALLEL: usize = 16;

async fn retry_due(state: &Arc<NodeState>) {
    let now = state.now_ms();
    let store = state.store.clone();
    let Ok(Ok(items)) = tokio::task::spawn_blocking(move || store.outbox_items(usize::MAX)).await else { return };
    let due: Vec<OutboxItem> = items.into_iter().filter(|i| i.next_attempt_ms <= now).collect();
    for chunk in due.chunks(PARALLEL) {
        if state.stopping() {
            return;
        }
        let tries = chunk.iter().map(|item| async move {
            match attempt_and_record(state, item).await {
                Ok(Sent::Delivered { .. }) => {
                    tracing::info!(kind = kind_name(item.kind), to = %item.to_zone, attempts = item.attempts + 1, "delivered from the outbox");
                }
                Ok(Sent::Queued { error }) => {
                    tracing::debug!(kind = kind_name(item.kind), to = %item.to_zone, "still not delivered: {error}");
                }
                Err(_) => {}
            }
        });
        futures_util::future::join_all(tries).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_five_minutes() {
        for attempts in 0..40 {
            let ceiling = (1_000i64 << attempts.min(20)).min(300_000);
            for _ in 0..20 {
                let d = backoff_ms(attempts);
                assert!(
                    d >= ceiling / 2 && d <= ceiling,
                    "attempt {attempts}: {d} not in [{}, {ceiling}]",
                    ceiling / 2
                );
            }
        }
    }

    #[test]
    fn kinds_round_trip_and_ids_depend_on_content() {
        for k in [Kind::Receipt, Kind::RevocationNotice, Kind::PolicyRevocation, Kind::Delivery] {
            assert_eq!(Kind::from_byte(k as u8), Some(k));
        }
        let z = ZoneId::new("hainan").unwrap();
        let a = Outgoing::derived_id(Kind::RevocationNotice, &z, b"x");
        assert_eq!(a, Outgoing::derived_id(Kind::RevocationNotice, &z, b"x"));
        assert_ne!(a, Outgoing::derived_id(Kind::PolicyRevocation, &z, b"x"));
        assert_ne!(a, Outgoing::derived_id(Kind::RevocationNotice, &ZoneId::new("guangdong").unwrap(), b"x"));
    }
}
