//! The durable outbox: every message to another zone that must arrive (a transfer receipt, a
//! revocation notice, a policy revocation, a pushed delivery) is written to the store before
//! the first attempt and removed only when the peer has taken it. A crash or a broken link
//! delays it, never loses it. Retries back off exponentially with jitter (1 s doubling up to
//! 5 min); a peer's definitive refusal ends them. Delivery is at least once; each message kind
//! is idempotent at the receiver (a receipt or a delivery by transfer id, a revocation by
//! record or policy), so the effect is exactly once.
//!
//! The queue knows nothing of what it carries: each kind has a [`Courier`], registered by the
//! module that owns the message (receipts and deliveries: `transfer`; revocation notices:
//! `issuing`; policy revocations: `policies`), and what the queue does with an item after an
//! attempt is the pure [`decide`].

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use ftz_core::{Reason, ZoneId};
use ftz_store::OutboxItem;
use prost::Message;
use ring::rand::{SecureRandom, SystemRandom};

use ftz_proto::peer_client::PeerClient;
use tonic::transport::Channel;

use ftz_audit::leaf::Refusing;

use crate::{
    audit::{
        AuditLog,
        events::{Refusal, log_refusal},
    },
    core::Core,
    error::ApiError,
    peers::{PeerClients, peer_failure},
};

/// What a message is; the byte kept in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Receipt = 1,
    RevocationNotice = 2,
    PolicyRevocation = 3,
    Delivery = 4,
}

impl Kind {
    pub(crate) const ALL: [Kind; 4] = [Kind::Receipt, Kind::RevocationNotice, Kind::PolicyRevocation, Kind::Delivery];

    fn from_byte(b: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u8 == b)
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

pub(crate) fn kind_name(b: u8) -> &'static str {
    Kind::from_byte(b).map_or("unknown", Kind::as_str)
}

/// A message to send: its kind, its peer, the encoded request, and an id that is the same
/// whenever the same message is queued again.
#[derive(Debug, Clone)]
pub(crate) struct Outgoing {
    pub id: [u8; 16],
    pub kind: Kind,
    pub to: ZoneId,
    pub body: Vec<u8>,
}

impl Outgoing {
    /// An id derived from what the message is, for kinds without a transfer id.
    pub(crate) fn derived_id(kind: Kind, to: &ZoneId, body: &[u8]) -> [u8; 16] {
        let mut m = vec![kind as u8];
        m.extend_from_slice(to.as_str().as_bytes());
        m.push(0);
        m.extend_from_slice(body);
        let d = ftz_core::sha256(&m);
        let mut id = [0u8; 16];
        id.copy_from_slice(&d[..16]);
        id
    }

    /// The outbox item for this message, first due at `now_ms` and claimed by the replica that
    /// makes it, which attempts it at once (see [`CLAIM_MS`]).
    pub(crate) fn item(self, now_ms: i64) -> OutboxItem {
        OutboxItem {
            id: self.id,
            kind: self.kind as u8,
            to_zone: self.to.to_string(),
            body: self.body,
            created_at_ms: now_ms,
            attempts: 0,
            next_attempt_ms: now_ms,
            last_error: String::new(),
            claimed_until_ms: now_ms + CLAIM_MS,
        }
    }
}

/// What one attempt to hand a message over came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Handover {
    /// The peer took it; for a delivery, whether it held it already.
    Taken { already: bool },
    /// Not to be sent yet (a receipt whose transfer is not durable in this log yet): kept and
    /// tried again later, like a peer that cannot be reached.
    NotYet(String),
    /// It failed: the error decides whether it is worth trying again.
    Failed(ApiError),
    /// It can never be sent (it does not decode, or names no zone): dropped.
    Undeliverable(String),
}

/// Carries the messages of one kind to their peer.
#[tonic::async_trait]
pub(crate) trait Courier: Send + Sync {
    async fn carry(&self, item: &OutboxItem) -> Handover;
}

/// Decodes a stored message body; one that does not decode is undeliverable.
pub(crate) fn decode_body<M: Message + Default>(item: &OutboxItem) -> Result<M, Handover> {
    M::decode(item.body.as_slice())
        .map_err(|e| Handover::Undeliverable(format!("{} does not decode: {e}", kind_name(item.kind))))
}

/// How long a courier waits for the peer's answer.
pub(crate) const CARRY_TIMEOUT: Duration = Duration::from_secs(5);

/// Carries `msg` to the item's zone with one call, `call(client, request)`, whose answer says
/// only that the peer took it.
pub(crate) async fn carry_call<M, R, F, Fut>(peers: &PeerClients, item: &OutboxItem, msg: M, call: F) -> Handover
where
    F: FnOnce(PeerClient<Channel>, tonic::Request<M>) -> Fut,
    Fut: std::future::Future<Output = Result<R, tonic::Status>>,
{
    let Ok(to) = ZoneId::new(item.to_zone.as_str()) else {
        return Handover::Undeliverable(format!("no zone {:?}", item.to_zone));
    };
    let client = match peers.client(&to) {
        Ok(c) => c,
        Err(e) => return Handover::Failed(e),
    };
    let mut req = tonic::Request::new(msg);
    req.set_timeout(CARRY_TIMEOUT);
    match call(client, req).await {
        Ok(_) => Handover::Taken { already: false },
        Err(s) => Handover::Failed(peer_failure(&to, &s)),
    }
}

/// How a send ended for the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Taken by the peer; for a delivery, whether it already held it.
    Delivered { already: bool },
    /// Not delivered yet (the peer is unreachable or busy): kept, and retried.
    Queued { error: String },
}

/// What the queue does with an item after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    /// Delivered: removed.
    Done { already: bool },
    /// Kept, tried again at this time.
    RetryAt { at_ms: i64, error: String },
    /// Kept as it is (the node is stopping; tried again after the restart).
    Keep { error: String },
    /// Removed undelivered: the peer refused it for good, or it can never be sent.
    Drop { error: ApiError },
    /// Removed undelivered after [`GIVE_UP_AFTER_MS`] of retries, and logged as such.
    GiveUp,
}

/// A failure worth retrying: the peer could not be reached or asked us to slow down, its store
/// failed (a database restarting: nothing was changed), or a registry (ours or the peer's) is
/// not in force until the next is installed. Anything else (a
/// refusal, an answer that does not verify) would fail the same way again.
pub(crate) fn transient(e: &ApiError) -> bool {
    let busy = |r: Reason| {
        matches!(
            r,
            Reason::PeerUnavailable
                | Reason::RateLimited
                | Reason::Internal
                | Reason::OutboxFull
                | Reason::StatusUnavailable
                | Reason::RegistryExpired
                | Reason::LogBehindWitnesses
                | Reason::StoreFailure
        )
    };
    let peer_reason = e.metadata.iter().find(|(k, _)| k == "peer_reason").and_then(|(_, v)| Reason::from_code(v));
    busy(e.reason) || (e.reason == Reason::PeerRefused && peer_reason.is_some_and(busy))
}

/// What to do after `handover` of an item tried `attempts` times before, at `now_ms`.
pub(crate) fn decide(handover: Handover, attempts: u64, now_ms: i64, stopping: bool) -> Next {
    let retry = |error: String| {
        if stopping { Next::Keep { error } } else { Next::RetryAt { at_ms: now_ms + backoff_ms(attempts), error } }
    };
    match handover {
        Handover::Taken { already } => Next::Done { already },
        Handover::NotYet(why) => retry(why),
        Handover::Failed(e) if transient(&e) => retry(e.message),
        Handover::Failed(error) => Next::Drop { error },
        Handover::Undeliverable(why) => Next::Drop { error: ApiError::new(Reason::MalformedPayload, why) },
    }
}

/// The delay before attempt `attempts + 1`: 1 s doubling to 5 min, drawn uniformly from its
/// upper half so that many queued messages do not retry in lockstep.
pub(crate) fn backoff_ms(attempts: u64) -> i64 {
    let ceiling: i64 = 1_000i64.saturating_mul(1 << attempts.min(20)).min(300_000);
    let mut b = [0u8; 4];
    let r = if SystemRandom::new().fill(&mut b).is_ok() { u32::from_be_bytes(b) } else { u32::MAX / 2 };
    ceiling / 2 + (ceiling / 2) * i64::from(r) / i64::from(u32::MAX)
}

/// How long an attempt holds its claim on an item: well beyond one attempt (a peer's answer
/// comes within [`CARRY_TIMEOUT`]), so no two replicas attempt an item at once; a replica that
/// dies holding a claim delays that item by at most this much.
pub(crate) const CLAIM_MS: i64 = 3 * CARRY_TIMEOUT.as_millis() as i64;

/// At most this many messages are sent at once.
const PARALLEL: usize = 16;

/// How often due messages are looked for.
const RETRY_EVERY: Duration = Duration::from_millis(500);

/// How long a message is retried before the outbox gives up on it (as long as a receiver
/// accepts an intent: `limits.max_intent_age_ms` by default).
pub(crate) const GIVE_UP_AFTER_MS: i64 = 7 * 86_400_000;

pub(crate) struct Outbox {
    core: Arc<Core>,
    log: AuditLog,
    couriers: HashMap<u8, Arc<dyn Courier>>,
    /// Messages (other than receipts, which go with their transfer) waiting per destination,
    /// and how many one destination may have: one zone that never answers cannot take the
    /// whole outbox and block what other zones must be told.
    per_zone: Mutex<HashMap<String, usize>>,
    max_per_zone: usize,
    /// Zones the outbox could not reach on its last attempt: a sign of life from one of them
    /// makes its queued messages due at once instead of at their backed-off time.
    unreachable: Mutex<HashSet<ZoneId>>,
}

impl Outbox {
    /// The outbox with one courier per kind, at most `max_per_zone` messages (receipts aside)
    /// waiting for one destination.
    pub(crate) fn new(
        core: Arc<Core>,
        log: AuditLog,
        couriers: impl IntoIterator<Item = (Kind, Arc<dyn Courier>)>,
        max_per_zone: usize,
    ) -> Self {
        let couriers = couriers.into_iter().map(|(k, c)| (k as u8, c)).collect();
        // Claims in a store only this process holds are those of its previous run.
        if !core.store.is_shared()
            && let Err(e) = core.store.outbox_release_all()
        {
            tracing::warn!("outbox: releasing the claims of the last run: {e}");
        }
        let mut per_zone: HashMap<String, usize> = HashMap::new();
        for item in core.store.outbox_items(usize::MAX).unwrap_or_default() {
            if item.kind != Kind::Receipt as u8 {
                *per_zone.entry(item.to_zone).or_default() += 1;
            }
        }
        Self { core, log, couriers, per_zone: Mutex::new(per_zone), max_per_zone, unreachable: Mutex::default() }
    }

    fn forget(&self, item: &OutboxItem) {
        if item.kind == Kind::Receipt as u8 {
            return;
        }
        let mut per_zone = self.per_zone.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_zone.get_mut(&item.to_zone) {
            *n = n.saturating_sub(1);
        }
    }

    /// Queues `msg` durably and tries it once now. A definitive refusal is returned as an error
    /// (and the message dropped); an unreachable peer leaves it queued for the retry task.
    pub(crate) async fn send(&self, msg: Outgoing) -> Result<Sent, ApiError> {
        let item = self.put(msg).await?;
        self.attempt(&item).await
    }

    /// Tries an item already stored (queued with an audit batch), in the background.
    pub(crate) fn try_soon(self: &Arc<Self>, item: OutboxItem) {
        let me = self.clone();
        self.core.tasks.spawn(async move {
            if let Err(e) = me.attempt(&item).await {
                tracing::debug!(kind = kind_name(item.kind), "not delivered: {e}");
            }
        });
    }

    /// Writes the message to the outbox (flushed) unless it is there already.
    async fn put(&self, msg: Outgoing) -> Result<OutboxItem, ApiError> {
        let item = msg.item(self.core.now_ms());
        let fresh = !self.core.store.outbox_contains(&item.id)?;
        if fresh {
            let mut per_zone = self.per_zone.lock().unwrap_or_else(|e| e.into_inner());
            let n = per_zone.entry(item.to_zone.clone()).or_default();
            if *n >= self.max_per_zone {
                return Err(ApiError::new(
                    Reason::OutboxFull,
                    format!("{n} messages wait for zone {} already", item.to_zone),
                ));
            }
            *n += 1;
        }
        let stored = self.core.store.write_durably(|s| s.outbox_put(&item)).await;
        if fresh && !matches!(stored, Ok(true)) {
            self.forget(&item);
        }
        let stored = stored?;
        if !stored {
            return Err(ApiError::new(
                Reason::OutboxFull,
                format!("{} messages wait for other zones already", ftz_store::MAX_OUTBOX_ITEMS),
            ));
        }
        Ok(item)
    }

    /// One attempt, and what it means for the stored item.
    async fn attempt(&self, item: &OutboxItem) -> Result<Sent, ApiError> {
        let handover = match self.couriers.get(&item.kind) {
            Some(c) => c.carry(item).await,
            None => Handover::Undeliverable(format!("no courier for outbox kind {}", item.kind)),
        };
        let zone = ZoneId::new(item.to_zone.as_str()).ok();
        let store = &self.core.store;
        let now = self.core.now_ms();
        let mut next = decide(handover, item.attempts, now, self.core.stopping());
        if matches!(next, Next::RetryAt { .. }) && now.saturating_sub(item.created_at_ms) > GIVE_UP_AFTER_MS {
            next = Next::GiveUp;
        }
        match next {
            Next::Done { already } => {
                // Not waited for on disk: if a crash loses the removal, the message goes again and
                // the other zone answers it as the repeat it is (every kind is idempotent).
                store.without_flush().outbox_remove(&item.id)?;
                self.forget(item);
                if let Some(zone) = zone {
                    self.peer_is_back(&zone);
                }
                Ok(Sent::Delivered { already })
            }
            Next::RetryAt { at_ms, error } => {
                if let Some(zone) = zone {
                    self.unreachable.lock().unwrap_or_else(|e| e.into_inner()).insert(zone);
                }
                store.write_durably(|s| s.outbox_retry_later(&item.id, at_ms, &error)).await?;
                Ok(Sent::Queued { error })
            }
            Next::Keep { error } => {
                store.outbox_release(&item.id)?;
                Ok(Sent::Queued { error })
            }
            Next::Drop { error } => {
                tracing::warn!(kind = kind_name(item.kind), to = %item.to_zone, "message refused, not retried: {error}");
                store.write_durably(|s| s.outbox_remove(&item.id)).await?;
                self.forget(item);
                Err(error)
            }
            Next::GiveUp => {
                let e = ApiError::new(
                    Reason::PeerUnavailable,
                    format!(
                        "gave up on a {} for zone {} after {} attempts in {} days: {}",
                        kind_name(item.kind),
                        item.to_zone,
                        item.attempts + 1,
                        now.saturating_sub(item.created_at_ms) / 86_400_000,
                        item.last_error
                    ),
                );
                tracing::error!(to = %item.to_zone, kind = kind_name(item.kind), "{}", e.message);
                let refusal = Refusal {
                    other: &item.to_zone,
                    refusing: Refusing::RefusedByPeer,
                    method: kind_name(item.kind),
                    error: &e,
                    class: None,
                    subject: "outbox",
                };
                log_refusal(&self.core, &self.log, refusal).await;
                store.write_durably(|s| s.outbox_remove(&item.id)).await?;
                self.forget(item);
                Err(e)
            }
        }
    }

    /// `zone` answered (a delivery went through, or its node called this one): if the outbox
    /// had given up on it for a while, what waits for it is due now rather than at its
    /// backed-off time.
    pub(crate) fn peer_is_back(&self, zone: &ZoneId) {
        if !self.unreachable.lock().unwrap_or_else(|e| e.into_inner()).remove(zone) {
            return;
        }
        let (store, z, now) = (self.core.store.clone(), zone.to_string(), self.core.now_ms());
        self.core.tasks.spawn(async move {
            match tokio::task::spawn_blocking(move || store.outbox_make_due(&z, now)).await {
                Ok(Ok(n)) if n > 0 => {
                    tracing::info!(messages = n, "a zone is reachable again: its queued messages are due")
                }
                Ok(Err(e)) => tracing::warn!("outbox: {e}"),
                _ => {}
            }
        });
    }

    /// Retries what is due, every half second, until the node stops.
    pub(crate) fn spawn_retries(self: &Arc<Self>) {
        let me = self.clone();
        self.core.tasks.every(RETRY_EVERY, move || {
            let me = me.clone();
            async move { me.retry_due().await }
        });
    }

    async fn retry_due(&self) {
        let now = self.core.now_ms();
        let store = self.core.store.clone();
        let Ok(Ok(items)) = tokio::task::spawn_blocking(move || store.outbox_items(usize::MAX)).await else { return };
        let due: Vec<OutboxItem> =
            items.into_iter().filter(|i| i.next_attempt_ms <= now && i.claimed_until_ms <= now).collect();
        for chunk in due.chunks(PARALLEL) {
            if self.core.stopping() {
                return;
            }
            let tries = chunk.iter().map(|item| async move {
                // Another replica of this node may be looking at the same item: one claims it.
                let (store, id, now) = (self.core.store.clone(), item.id, self.core.now_ms());
                let claimed = tokio::task::spawn_blocking(move || store.outbox_claim(&id, now, now + CLAIM_MS)).await;
                let item = match claimed {
                    Ok(Ok(Some(item))) => item,
                    Ok(Ok(None)) => return,
                    Ok(Err(e)) => return tracing::warn!("outbox: {e}"),
                    Err(_) => return,
                };
                let item = &item;
                match self.attempt(item).await {
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
        for k in Kind::ALL {
            assert_eq!(Kind::from_byte(k as u8), Some(k));
        }
        assert_eq!(Kind::from_byte(0), None);
        let z = ZoneId::new("hainan").unwrap();
        let a = Outgoing::derived_id(Kind::RevocationNotice, &z, b"x");
        assert_eq!(a, Outgoing::derived_id(Kind::RevocationNotice, &z, b"x"));
        assert_ne!(a, Outgoing::derived_id(Kind::PolicyRevocation, &z, b"x"));
        assert_ne!(a, Outgoing::derived_id(Kind::RevocationNotice, &ZoneId::new("guangdong").unwrap(), b"x"));
    }

    fn refused(r: Reason) -> ApiError {
        ApiError::new(Reason::PeerRefused, "no").with_meta("peer_reason", r.as_str())
    }

    #[test]
    fn what_is_retried_and_what_is_dropped() {
        let now = 1_000_000;
        assert_eq!(decide(Handover::Taken { already: true }, 3, now, false), Next::Done { already: true });
        // Unreachable, rate limited, a peer that is busy, a receipt not durable yet: retried later.
        for h in [
            Handover::Failed(ApiError::new(Reason::PeerUnavailable, "down")),
            Handover::Failed(ApiError::new(Reason::RateLimited, "slow")),
            Handover::Failed(refused(Reason::OutboxFull)),
            Handover::Failed(refused(Reason::Internal)),
            // The peer's database is restarting: nothing was changed there.
            Handover::Failed(refused(Reason::StoreFailure)),
            Handover::NotYet("not durable yet".into()),
        ] {
            match decide(h.clone(), 2, now, false) {
                Next::RetryAt { at_ms, .. } => assert!((now + 2_000..=now + 4_000).contains(&at_ms), "{h:?}: {at_ms}"),
                other => panic!("{h:?} gave {other:?}"),
            }
            // While the node stops, kept as it is.
            assert!(matches!(decide(h, 2, now, true), Next::Keep { .. }));
        }
        // A refusal for good, or a message that can never be sent: dropped.
        for h in [
            Handover::Failed(refused(Reason::NoPolicy)),
            Handover::Failed(ApiError::new(Reason::TransferInvalid, "bad receipt")),
            Handover::Undeliverable("does not decode".into()),
        ] {
            assert!(matches!(decide(h.clone(), 0, now, false), Next::Drop { .. }), "{h:?}");
            assert!(matches!(decide(h, 0, now, true), Next::Drop { .. }));
        }
    }

    /// A courier that answers with what the test queued, in order.
    struct Scripted(Mutex<Vec<Handover>>);

    #[tonic::async_trait]
    impl Courier for Scripted {
        async fn carry(&self, _item: &OutboxItem) -> Handover {
            self.0.lock().unwrap().remove(0)
        }
    }

    fn message(n: u8) -> Outgoing {
        Outgoing { id: [n; 16], kind: Kind::RevocationNotice, to: ZoneId::new("hainan").unwrap(), body: vec![n] }
    }

    #[tokio::test]
    async fn the_queue_keeps_what_may_still_go_and_drops_what_never_will() {
        let script = Arc::new(Scripted(Mutex::new(vec![
            Handover::Taken { already: false },
            Handover::Failed(ApiError::new(Reason::PeerUnavailable, "down")),
            Handover::NotYet("not durable yet".into()),
            Handover::Failed(refused(Reason::NoPolicy)),
            Handover::Undeliverable("does not decode".into()),
            Handover::Failed(ApiError::new(Reason::PeerUnavailable, "down")),
            Handover::Failed(ApiError::new(Reason::PeerUnavailable, "down")),
        ])));
        let kit =
            crate::testkit::Kit::with_couriers(Some(vec![(Kind::RevocationNotice, script as Arc<dyn Courier>)])).await;
        let (outbox, store) = (&kit.outbox, &kit.core.store);
        let ids =
            |store: &ftz_store::Store| store.outbox_items(10).unwrap().iter().map(|i| i.id[0]).collect::<Vec<_>>();

        assert_eq!(outbox.send(message(1)).await.unwrap(), Sent::Delivered { already: false });
        assert!(ids(store).is_empty());
        // Unreachable: kept, due later, its error noted.
        assert!(matches!(outbox.send(message(2)).await.unwrap(), Sent::Queued { .. }));
        let kept = &store.outbox_items(10).unwrap()[0];
        assert_eq!((kept.attempts, kept.last_error.as_str()), (1, "down"));
        assert!(kept.next_attempt_ms > kit.now());
        // Not yet: kept as well.
        assert!(matches!(outbox.send(message(3)).await.unwrap(), Sent::Queued { .. }));
        assert_eq!(ids(store), vec![2, 3]);
        // Refused for good, or impossible to send: the caller hears it, the queue forgets it.
        assert_eq!(outbox.send(message(4)).await.err().unwrap().reason, Reason::PeerRefused);
        assert_eq!(outbox.send(message(5)).await.err().unwrap().reason, Reason::MalformedPayload);
        assert_eq!(ids(store), vec![2, 3]);
        // A kind nobody carries is undeliverable, not retried for ever.
        let orphan = Outgoing { kind: Kind::Delivery, ..message(6) };
        assert_eq!(outbox.send(orphan).await.err().unwrap().reason, Reason::MalformedPayload);
        assert_eq!(ids(store), vec![2, 3]);
        // One destination holds at most its quota (3 here): the next is refused, and nothing
        // is stored for it; another destination is not affected.
        assert!(matches!(outbox.send(message(7)).await.unwrap(), Sent::Queued { .. }));
        assert_eq!(outbox.send(message(8)).await.err().unwrap().reason, Reason::OutboxFull);
        assert_eq!(ids(store), vec![2, 3, 7]);
        let elsewhere = Outgoing { to: ZoneId::new("guangdong").unwrap(), ..message(9) };
        assert!(matches!(outbox.send(elsewhere).await.unwrap(), Sent::Queued { .. }));
    }

    #[tokio::test]
    async fn a_message_retried_for_a_week_is_given_up_and_logged() {
        let script = Arc::new(Scripted(Mutex::new(vec![
            Handover::Failed(ApiError::new(Reason::PeerUnavailable, "down")),
            Handover::Failed(ApiError::new(Reason::PeerUnavailable, "still down")),
        ])));
        let kit =
            crate::testkit::Kit::with_couriers(Some(vec![(Kind::RevocationNotice, script as Arc<dyn Courier>)])).await;
        assert!(matches!(kit.outbox.send(message(1)).await.unwrap(), Sent::Queued { .. }));
        let size = kit.log.durable_size();
        kit.clock.advance_ms(GIVE_UP_AFTER_MS + 1);
        kit.outbox.retry_due().await;
        assert!(kit.core.store.outbox_items(10).unwrap().is_empty(), "given up");
        // The give-up is in the audit log, as a refusal by the peer that never answered.
        assert_eq!(kit.log.durable_size(), size + 1);
        let (_, entry) = kit.log.reader().entries(size, 1).unwrap().remove(0);
        let (_, e) = ftz_audit::entry::describe(&entry).unwrap();
        assert!(e.summary.contains("hainan") && e.summary.contains("PEER_UNAVAILABLE"), "{}", e.summary);
    }
}
