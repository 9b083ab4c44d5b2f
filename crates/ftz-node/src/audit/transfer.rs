//! Two-sided receipts. The provider seals what it sends with a signed intent that commits to
//! the payload (SHA-256 of a nonce and the payload) without containing it; the consumer checks
//! the seal, signs a receipt over the intent, and both append the byte-identical transfer leaf
//! (intent, provider signature, receipt, consumer signature). An intent whose receipt does not
//! arrive in time is logged as unacknowledged.

use std::{sync::Arc, time::Duration};

use ftz_audit::leaf::{Leaf, LeafSignature, Refusing, SignedPart};
use ftz_core::{
    Reason, ZoneId,
    envelope::{self, PayloadType},
    sha256,
};
use ftz_policy::exchange::{CompiledPolicy, class_name};
use ftz_proto::{AcknowledgeRequest, Envelope, KeyPurpose, TransferIntent, TransferReceipt, TransferSeal};
use prost::Message;
use ring::rand::{SecureRandom, SystemRandom};

use crate::{
    error::ApiError,
    outbox::{Kind, Outgoing},
    state::NodeState,
};

fn random<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut b = [0u8; N];
    SystemRandom::new().fill(&mut b).map_err(|_| ApiError::internal("system random number generator failed"))?;
    Ok(b)
}

/// What a provider needs to seal a payload.
pub struct Sending<'a> {
    pub consumer: &'a ZoneId,
    pub policy: &'a CompiledPolicy,
    pub purpose: &'a str,
    pub subject: String,
    pub method: &'static str,
    /// An own record the consumer becomes a holder of (so that a revocation reaches it),
    /// written durably with the pending intent, before anything is sent.
    pub holder_of: Option<&'a str>,
}

/// Provider side: the seal for `payload`, remembered as pending until the receipt arrives.
pub async fn seal(state: &NodeState, s: Sending<'_>, payload: &[u8]) -> Result<TransferSeal, ApiError> {
    let nonce: [u8; 32] = random()?;
    let now = state.now_ms();
    let intent = TransferIntent {
        transfer_id: random::<16>()?.to_vec(),
        provider_zone: state.zone.to_string(),
        consumer_zone: s.consumer.to_string(),
        policy_id: s.policy.id().to_string(),
        policy_version: s.policy.version(),
        policy_digest: s.policy.digest.to_vec(),
        data_class: s.policy.class as i32,
        purpose: s.purpose.to_string(),
        subject: s.subject,
        payload_commitment: sha256(&[nonce.as_slice(), payload].concat()).to_vec(),
        payload_size: payload.len() as u64,
        created_at_ms: now,
        method: s.method.to_string(),
    };
    let env = envelope::seal(PayloadType::TRANSFER_INTENT, &intent, &[&state.node_key]);
    let id: [u8; 16] = intent.transfer_id.as_slice().try_into().map_err(|_| ApiError::internal("transfer id"))?;
    let deadline = now + state.audit_config.ack_timeout_ms;
    let (bytes, holder) = (env.encode_to_vec(), s.holder_of.map(|r| (r, s.consumer.as_str())));
    state
        .store
        .write_durably(|st| {
            if let Some((record, zone)) = holder {
                st.add_holder(record, zone)?;
            }
            st.put_pending_intent(&id, deadline, &bytes)
        })
        .await?;
    Ok(TransferSeal { intent: Some(env), nonce: nonce.to_vec() })
}

/// The index of the transfer leaf with this id in the log, if logged. The store's transfer
/// index may name an entry that another leaf took after a crash cut a batch short, even one
/// that carries the same intent (an unacknowledged declaration): only a transfer leaf whose
/// intent has this id counts.
pub fn logged_transfer(store: &ftz_store::Store, id: &[u8; 16]) -> Result<Option<u64>, ftz_store::StoreError> {
    let Some(index) = store.audit_transfer(id)? else { return Ok(None) };
    let Some(bytes) = store.audit_entry(index)? else { return Ok(None) };
    let same = match Leaf::decode(&bytes) {
        Ok(Leaf::Transfer { intent, .. }) => {
            TransferIntent::decode(intent.payload.as_slice()).is_ok_and(|i| i.transfer_id.as_slice() == id)
        }
        _ => false,
    };
    Ok(same.then_some(index))
}

/// The transfer a queued receipt acknowledges.
pub fn acknowledged_transfer(ack: &AcknowledgeRequest) -> Option<[u8; 16]> {
    let intent = TransferIntent::decode(ack.intent.as_ref()?.payload.as_slice()).ok()?;
    intent.transfer_id.as_slice().try_into().ok()
}

/// When the outbox's own retries may first pick up a receipt queued with its transfer: the
/// first attempt is the consumer's, right after the transfer is durable in its log.
const RECEIPT_RETRY_AFTER_MS: i64 = 5_000;

/// At start, before anything runs: drops receipts queued without their transfer in the log (a
/// crash cut their batch short, see `ftz_store::AuditBatch::outbox`), so that no zone is told of
/// a transfer this log does not hold. Returns how many.
pub fn drop_orphan_receipts(store: &ftz_store::Store) -> Result<usize, ftz_store::StoreError> {
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

fn invalid(m: impl Into<String>) -> ApiError {
    ApiError::new(Reason::TransferInvalid, m)
}

/// Consumer side: checks that `seal` is the provider's signed intent for exactly `payload`,
/// sent to this zone under `policy_id`. Returns the intent.
pub fn check_seal(
    state: &NodeState,
    provider: &ZoneId,
    seal: Option<&TransferSeal>,
    payload: &[u8],
    policy_id: &str,
) -> Result<(Envelope, TransferIntent), ApiError> {
    let seal = seal.ok_or_else(|| invalid(format!("zone {provider} sent data without a transfer intent")))?;
    let env = seal.intent.clone().ok_or_else(|| invalid("the seal carries no intent"))?;
    let registry = state.registry();
    let now = state.now_ms();
    let (intent, _): (TransferIntent, _) = envelope::open(&env, PayloadType::TRANSFER_INTENT, |id| {
        registry.zone(provider).and_then(|z| z.key_valid_at(KeyPurpose::Node, id, now))
    })
    .map_err(|e| invalid(format!("intent of zone {provider}: {e}")))?;
    if intent.provider_zone != provider.as_str() || intent.consumer_zone != state.zone.as_str() {
        return Err(ApiError::new(
            Reason::ZoneMismatch,
            format!(
                "the intent is from {} to {}, but {provider} sent it to {}",
                intent.provider_zone, intent.consumer_zone, state.zone
            ),
        ));
    }
    // Far in the future: a wrong clock or a forgery. Very old: a replay (a delivery retried
    // from a sender's outbox is younger than this).
    if intent.created_at_ms > now + state.limits.max_clock_skew_ms
        || intent.created_at_ms < now - state.limits.max_intent_age_ms
    {
        return Err(ApiError::new(
            Reason::StaleRequest,
            format!(
                "the intent was made at {}, outside what this node accepts at {}",
                ftz_core::time::format_ms(intent.created_at_ms),
                ftz_core::time::format_ms(now)
            ),
        ));
    }
    if intent.transfer_id.len() != 16 || seal.nonce.len() != 32 {
        return Err(invalid("malformed transfer id or nonce"));
    }
    if intent.payload_commitment != sha256(&[seal.nonce.as_slice(), payload].concat())
        || intent.payload_size != payload.len() as u64
    {
        return Err(invalid("the payload does not match the intent's commitment"));
    }
    if intent.policy_id != policy_id {
        return Err(invalid("the intent names another policy"));
    }
    Ok((env, intent))
}

fn part(env: &Envelope) -> Result<SignedPart, ApiError> {
    let s = env.signatures.first().ok_or_else(|| invalid("unsigned"))?;
    Ok(SignedPart {
        payload: env.payload.clone(),
        signature: LeafSignature {
            key_id: s.key_id.as_slice().try_into().map_err(|_| invalid("key id"))?,
            sig: s.sig.as_slice().try_into().map_err(|_| invalid("signature"))?,
        },
    })
}

/// The transfer leaf both sides append.
pub fn transfer_leaf(intent: &Envelope, receipt: &Envelope) -> Result<Leaf, ApiError> {
    Ok(Leaf::Transfer { intent: part(intent)?, receipt: part(receipt)? })
}

fn transfer_id(intent: &TransferIntent) -> Result<[u8; 16], ApiError> {
    intent.transfer_id.as_slice().try_into().map_err(|_| invalid("transfer id"))
}

/// Consumer side: signs the receipt and logs the transfer. `accepted == false` with a reason
/// when this node received the data but refused to keep it.
pub async fn receive(
    state: &NodeState,
    intent_env: &Envelope,
    intent: &TransferIntent,
    refused: Option<Reason>,
) -> Result<Envelope, ApiError> {
    Ok(receive_and_queue(state, intent_env, intent, refused, false).await?.0)
}

/// Consumer side of a pull: signs the receipt, logs the transfer and queues the receipt for the
/// provider in one transaction (see [`acknowledge`]).
pub async fn receive_pulled(
    state: &Arc<NodeState>,
    intent_env: &Envelope,
    intent: &TransferIntent,
    refused: Option<Reason>,
) -> Result<Envelope, ApiError> {
    let (receipt, queued) = receive_and_queue(state, intent_env, intent, refused, true).await?;
    if let Some(item) = queued {
        crate::outbox::try_soon(state, item);
    }
    Ok(receipt)
}

async fn receive_and_queue(
    state: &NodeState,
    intent_env: &Envelope,
    intent: &TransferIntent,
    refused: Option<Reason>,
    send_back: bool,
) -> Result<(Envelope, Option<ftz_store::OutboxItem>), ApiError> {
    let receipt = TransferReceipt {
        transfer_id: intent.transfer_id.clone(),
        intent_digest: sha256(&intent_env.payload).to_vec(),
        consumer_zone: state.zone.to_string(),
        received_at_ms: state.now_ms(),
        accepted: refused.is_none(),
        reason: refused.map(|r| r.to_string()).unwrap_or_default(),
    };
    let id = transfer_id(intent)?;
    // A transfer received before (the provider retried after a lost answer): the receipt
    // logged then, so that both logs keep one and the same leaf.
    if let Some(index) = logged_transfer(&state.store, &id)? {
        // Its batch may still be on its way to disk.
        state.store.flush_async().await?;
        return Ok((logged_receipt(state, index)?, None));
    }
    let env = envelope::seal(PayloadType::TRANSFER_RECEIPT, &receipt, &[&state.node_key]);
    let leaf = transfer_leaf(intent_env, &env)?;
    let provider = ZoneId::new(intent.provider_zone.as_str()).map_err(|e| invalid(e.to_string()))?;
    let item = send_back.then(|| {
        let body = AcknowledgeRequest { intent: Some(intent_env.clone()), receipt: Some(env.clone()) }.encode_to_vec();
        let msg = Outgoing {
            id: Outgoing::derived_id(Kind::Receipt, &provider, &intent.transfer_id),
            kind: Kind::Receipt,
            to: provider.clone(),
            body,
        };
        let mut item = msg.item(state.now_ms());
        item.next_attempt_ms += RECEIPT_RETRY_AFTER_MS;
        item
    });
    let index = state.audit.append_with_outbox(&leaf, Some(id), item.clone()).await?;
    if state.store.audit_entry(index)?.as_deref() != Some(leaf.encode().as_slice()) {
        // A concurrent retry was logged first (and queued its own receipt).
        return Ok((logged_receipt(state, index)?, None));
    }
    Ok((env, item))
}

/// The receipt of the transfer leaf at `index`, as an envelope.
fn logged_receipt(state: &NodeState, index: u64) -> Result<Envelope, ApiError> {
    let bytes = state.store.audit_entry(index)?.ok_or_else(|| ApiError::internal(format!("entry {index} is gone")))?;
    match Leaf::decode(&bytes) {
        Ok(Leaf::Transfer { receipt, .. }) => Ok(Envelope {
            payload_type: PayloadType::TRANSFER_RECEIPT.to_string(),
            payload: receipt.payload,
            signatures: vec![ftz_proto::Signature {
                key_id: receipt.signature.key_id.to_vec(),
                sig: receipt.signature.sig.to_vec(),
            }],
        }),
        _ => Err(ApiError::internal(format!("entry {index} is not a transfer"))),
    }
}

/// Provider side: a receipt for an intent this node signed. Logs the transfer (once).
pub async fn accept_receipt(
    state: &NodeState,
    caller: &ZoneId,
    intent_env: &Envelope,
    receipt_env: &Envelope,
) -> Result<(), ApiError> {
    let own = state.node_key.verifying_key();
    let (intent, _): (TransferIntent, _) =
        envelope::open(intent_env, PayloadType::TRANSFER_INTENT, |id| (*id == own.key_id()).then_some(own))
            .map_err(|e| invalid(format!("not an intent this node signed: {e}")))?;
    let registry = state.registry();
    let now = state.now_ms();
    let (receipt, _): (TransferReceipt, _) = envelope::open(receipt_env, PayloadType::TRANSFER_RECEIPT, |id| {
        registry.zone(caller).and_then(|z| z.key_valid_at(KeyPurpose::Node, id, now))
    })
    .map_err(|e| invalid(format!("receipt of zone {caller}: {e}")))?;
    if intent.consumer_zone != caller.as_str() || receipt.consumer_zone != caller.as_str() {
        return Err(ApiError::new(Reason::ZoneMismatch, "the receipt is not from the intent's consumer"));
    }
    if receipt.transfer_id != intent.transfer_id || receipt.intent_digest != sha256(&intent_env.payload) {
        return Err(invalid("the receipt is not for this intent"));
    }
    let id = transfer_id(&intent)?;
    state.audit.append(&transfer_leaf(intent_env, receipt_env)?, Some(id)).await?;
    // Not waited for on disk: a pending intent whose transfer is logged is only cleaned up by
    // the sweeper, never declared unacknowledged.
    state.store.without_flush().take_pending_intent(&id)?;
    Ok(())
}

/// Logs intents whose receipt did not arrive in time as unacknowledged, now and every few
/// seconds while the node runs.
pub(crate) fn spawn_unacknowledged_sweeper(state: Arc<NodeState>) {
    state.clone().spawn(async move {
        let mut shutdown = state.shutdown.clone();
        loop {
            sweep(&state).await;
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
    });
}

pub async fn sweep(state: &NodeState) {
    let Ok(due) = state.store.overdue_intents(state.now_ms()) else { return };
    for (id, bytes) in due {
        // A delivery still in the outbox is not unacknowledged: it has not arrived yet.
        if state.store.outbox_contains(&id).unwrap_or(false) {
            continue;
        }
        // Acknowledged, and only the cleanup was lost (a crash before it was durable).
        if logged_transfer(&state.store, &id).ok().flatten().is_some() {
            let _ = state.store.take_pending_intent(&id);
            continue;
        }
        let Ok(env) = Envelope::decode(bytes.as_slice()) else { continue };
        let Ok(intent) = part(&env) else { continue };
        let leaf = Leaf::Unacknowledged { intent, declared_at_ms: state.now_ms() };
        if state.audit.append(&leaf, None).await.is_ok() {
            let _ = state.store.take_pending_intent(&id);
            tracing::warn!(transfer = %hex::encode(id), "no receipt in time: logged as unacknowledged");
        }
    }
}

/// Logs a refusal, by this node of `other` or of this node by `other`. Never fails the caller:
/// a refusal that cannot be logged is reported in the node's log instead.
pub async fn log_refusal(
    state: &NodeState,
    other: &str,
    refusing: Refusing,
    method: &str,
    e: &ApiError,
    class: Option<ftz_proto::DataClass>,
    subject: &str,
) {
    let meta = |key: &str| e.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let policy = meta("policy_id").unwrap_or_default();
    // Refused by the other zone: log its reason, as it logs it, so the two entries pair up.
    let reason = match meta("peer_reason") {
        Some(r) if refusing == Refusing::RefusedByPeer && e.reason == Reason::PeerRefused => r,
        _ => e.reason.to_string(),
    };
    let leaf = Leaf::Refusal {
        at_ms: state.now_ms(),
        zone: state.zone.to_string(),
        other_zone: other.to_string(),
        refusing,
        reason,
        method: method.to_string(),
        data_class: class.map(class_name).unwrap_or_default().to_string(),
        policy_id: policy,
        subject_digest: if subject.is_empty() { [0; 32] } else { sha256(subject.as_bytes()) },
    };
    if let Err(err) = state.audit.append(&leaf, None).await {
        tracing::error!(reason = %e.reason, "a refusal could not be logged: {err}");
    }
}

#[cfg(test)]
mod tests {
    use ftz_store::{AuditBatch, OutboxItem, Store};

    use super::*;

    fn receipt_for(id: [u8; 16], item_id: u8) -> OutboxItem {
        let intent = TransferIntent { transfer_id: id.to_vec(), ..Default::default() };
        let body = AcknowledgeRequest {
            intent: Some(Envelope { payload: intent.encode_to_vec(), ..Default::default() }),
            receipt: None,
        };
        OutboxItem {
            id: [item_id; 16],
            kind: Kind::Receipt as u8,
            to_zone: "shanghai".into(),
            body: body.encode_to_vec(),
            created_at_ms: 1,
            attempts: 0,
            next_attempt_ms: 1,
            last_error: String::new(),
        }
    }

    fn signed(payload: Vec<u8>) -> SignedPart {
        SignedPart { payload, signature: LeafSignature { key_id: [1; 16], sig: [2; 64] } }
    }

    fn intent(id: [u8; 16]) -> SignedPart {
        signed(TransferIntent { transfer_id: id.to_vec(), ..Default::default() }.encode_to_vec())
    }

    fn transfer(id: [u8; 16]) -> Vec<u8> {
        Leaf::Transfer { intent: intent(id), receipt: signed(b"receipt".to_vec()) }.encode()
    }

    #[test]
    fn a_transfer_counts_as_logged_only_if_its_indexed_entry_is_that_transfer() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Default::default()).unwrap();
        let (t, u) = ([3u8; 16], [4u8; 16]);
        // Transfer t at 0. A crash cut short a batch that indexed u at 1; after the restart,
        // index 1 went to the unacknowledged declaration of u's intent (same intent bytes).
        let unacknowledged = Leaf::Unacknowledged { intent: intent(u), declared_at_ms: 5 }.encode();
        let batch = AuditBatch {
            old_size: 0,
            leaves: vec![transfer(t), unacknowledged],
            transfers: vec![(t, 0), (u, 1)],
            ..Default::default()
        };
        store.audit_append(&batch).unwrap();
        assert_eq!(store.audit_transfer(&u).unwrap(), Some(1));
        assert_eq!(logged_transfer(&store, &t).unwrap(), Some(0));
        assert_eq!(logged_transfer(&store, &u).unwrap(), None);
        assert_eq!(logged_transfer(&store, &[5; 16]).unwrap(), None);
    }

    #[test]
    fn receipts_whose_transfer_a_crash_left_out_of_the_log_are_dropped_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), Default::default()).unwrap();
        // A transfer logged with its receipt queued.
        let logged = [7u8; 16];
        let batch = AuditBatch {
            old_size: 0,
            leaves: vec![transfer(logged)],
            transfers: vec![(logged, 0)],
            outbox: vec![receipt_for(logged, 1)],
            ..Default::default()
        };
        store.audit_append(&batch).unwrap();
        // What a crash before a batch's size leaves: a receipt queued, its transfer not logged.
        assert!(store.outbox_put(&receipt_for([8; 16], 2)).unwrap());
        // Another kind of message is none of this check's business.
        let notice = OutboxItem { kind: Kind::RevocationNotice as u8, ..receipt_for([9; 16], 3) };
        assert!(store.outbox_put(&notice).unwrap());
        assert_eq!(drop_orphan_receipts(&store).unwrap(), 1);
        let left: Vec<[u8; 16]> = store.outbox_items(10).unwrap().iter().map(|i| i.id).collect();
        assert_eq!(left, vec![[1; 16], [3; 16]]);
        assert_eq!(drop_orphan_receipts(&store).unwrap(), 0);
    }
}
