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

use crate::{error::ApiError, ping::peer_failure, state::NodeState};

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
    let (store, bytes) = (state.store.clone(), env.encode_to_vec());
    tokio::task::spawn_blocking(move || store.put_pending_intent(&id, deadline, &bytes))
        .await
        .map_err(|e| ApiError::internal(format!("store task failed: {e}")))??;
    Ok(TransferSeal { intent: Some(env), nonce: nonce.to_vec() })
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
        return Err(invalid("the intent names other zones"));
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
    let receipt = TransferReceipt {
        transfer_id: intent.transfer_id.clone(),
        intent_digest: sha256(&intent_env.payload).to_vec(),
        consumer_zone: state.zone.to_string(),
        received_at_ms: state.now_ms(),
        accepted: refused.is_none(),
        reason: refused.map(|r| r.to_string()).unwrap_or_default(),
    };
    let env = envelope::seal(PayloadType::TRANSFER_RECEIPT, &receipt, &[&state.node_key]);
    state.audit.append(&transfer_leaf(intent_env, &env)?, Some(transfer_id(intent)?)).await?;
    Ok(env)
}

/// Consumer side of a pull: after `receive`, sends the receipt back (retried in the background
/// until it arrives or the node stops).
pub fn acknowledge(state: &Arc<NodeState>, provider: &ZoneId, intent: Envelope, receipt: Envelope) {
    let provider = provider.clone();
    let handle = state.clone();
    let state = state.clone();
    handle.spawn(async move {
        if state.stopping() {
            return;
        }
        let send = |s: Arc<NodeState>, p: ZoneId, i: Envelope, r: Envelope| async move {
            let mut client = s.peers.client(&s, &p)?;
            let mut req = tonic::Request::new(AcknowledgeRequest { intent: Some(i), receipt: Some(r) });
            req.set_timeout(Duration::from_secs(5));
            client.acknowledge(req).await.map_err(|st| peer_failure(&p, &st)).map(|_| ())
        };
        if let Err(e) = send(state.clone(), provider.clone(), intent.clone(), receipt.clone()).await {
            tracing::info!(provider = %provider, "receipt not delivered yet: {e}");
            crate::notify::spawn_retries(state.clone(), format!("receipt to {provider}"), move |s| {
                send(s, provider.clone(), intent.clone(), receipt.clone())
            });
        }
    });
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
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || store.take_pending_intent(&id))
        .await
        .map_err(|e| ApiError::internal(format!("store task failed: {e}")))??;
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
