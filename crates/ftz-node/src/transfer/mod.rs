//! Transfers between zones, both roles, and the receipt's whole life.
//!
//! The provider seals what it sends with a signed intent that commits to the payload (SHA-256
//! of a nonce and the payload) without containing it ([`Transfers::permit`] then
//! [`Transfers::seal`]); the consumer checks the seal, keeps the data only under a policy it
//! holds, signs a receipt over the intent and logs the transfer leaf ([`Transfers::pull`] for
//! what it asked for, [`Transfers::receive`] for what was pushed to it); the receipt goes back
//! through the outbox and the provider logs the byte-identical leaf ([`acknowledged`]). An
//! intent whose receipt does not arrive in time is logged as unacknowledged (the sweeper).

use std::sync::Arc;

use ftz_audit::leaf::{Leaf, LeafSignature, Refusing, SignedPart};
use ftz_core::{
    Reason, ZoneId,
    envelope::{self, PayloadType},
    sha256,
};
use ftz_policy::exchange::{CompiledPolicy, TransferRequest};
use ftz_proto::{AcknowledgeRequest, DataClass, Envelope, KeyPurpose, TransferIntent, TransferReceipt, TransferSeal};
use ftz_store::{OutboxItem, Store};
use prost::Message;
use ring::rand::{SecureRandom, SystemRandom};

mod bounds;
mod couriers;
mod unacknowledged;

pub(crate) use couriers::{DeliveryCourier, ReceiptCourier};
pub(crate) use unacknowledged::{drop_orphan_receipts, spawn_unacknowledged_sweeper};

use crate::{
    audit::{
        AuditLog,
        events::{Refusal, log_refusal},
        reader::logged_transfer,
    },
    core::Core,
    error::{ApiError, reason_of},
    metrics::{Decision, Direction},
    outbox::{Kind, Outbox, Outgoing},
    peers::{PeerClients, peer_failure},
    policies::Policies,
};

fn random<const N: usize>() -> Result<[u8; N], ApiError> {
    let mut b = [0u8; N];
    SystemRandom::new().fill(&mut b).map_err(|_| ApiError::internal("system random number generator failed"))?;
    Ok(b)
}

fn invalid(m: impl Into<String>) -> ApiError {
    ApiError::new(Reason::TransferInvalid, m)
}

/// A provider's permission to send one payload: the policy that allows it, and what the intent
/// will say.
pub(crate) struct Permit {
    pub policy: Arc<CompiledPolicy>,
    consumer: ZoneId,
    purpose: String,
    subject: String,
    method: &'static str,
}

/// What a consumer pulls, for its refusal entries: from whom, by which call, about what.
pub(crate) struct Pull<'a> {
    pub provider: &'a ZoneId,
    pub method: &'static str,
    pub class: Option<DataClass>,
    /// As the provider names it in its own refusal entry, so the two pair up; the intent must
    /// name the same.
    pub subject: String,
    /// The purpose asked for; the intent must name the same.
    pub purpose: &'a str,
    /// A provider that says it has no such record: told to the caller as RECORD_NOT_FOUND,
    /// not logged as a refusal here (the provider logs it).
    pub not_found_is_an_answer: bool,
}

/// What the consumer knows of a transfer it is about to sign a receipt for: every claim of the
/// intent must match it (a receipt is this zone's word on the intent's claims).
pub(crate) struct Expected<'a> {
    pub method: &'a str,
    pub subject: &'a str,
    pub purpose: &'a str,
    /// How old the intent may be: a pull's is made now (the clock skew); a delivery may come
    /// from a sender's outbox (the maximum intent age).
    pub made_within_ms: i64,
}

/// A provider's sealed answer.
pub(crate) struct Sealed {
    pub payload: Vec<u8>,
    pub seal: Option<TransferSeal>,
    /// The policy the answer says it came under, where the answer says so outside the payload
    /// (the intent must name the same); `None`: the payload says it, and `keep` checks it.
    pub policy_id: Option<String>,
}

pub(crate) struct Transfers {
    core: Arc<Core>,
    log: AuditLog,
    outbox: Arc<Outbox>,
    policies: Arc<Policies>,
    peers: Arc<PeerClients>,
    /// How long a provider waits for a receipt before logging the intent as unacknowledged.
    ack_timeout_ms: i64,
}

impl Transfers {
    pub(crate) fn new(
        core: Arc<Core>,
        log: AuditLog,
        outbox: Arc<Outbox>,
        policies: Arc<Policies>,
        peers: Arc<PeerClients>,
        ack_timeout_ms: i64,
    ) -> Self {
        Self { core, log, outbox, policies, peers, ack_timeout_ms }
    }

    pub(crate) fn policies(&self) -> &Policies {
        &self.policies
    }

    pub(crate) fn peers(&self) -> &PeerClients {
        &self.peers
    }

    /// Provider side, first step: may this data leave (negative list, policy, purpose, rate,
    /// and the privacy budget `epsilon_needed_milli` says it needs)? A request that is allowed
    /// counts against the rate limit.
    pub(crate) fn permit(
        &self,
        req: &TransferRequest<'_>,
        method: &'static str,
        subject: String,
        epsilon_needed_milli: impl Fn(&CompiledPolicy) -> u64,
    ) -> Result<Permit, ApiError> {
        // Nothing leaves that this log could not record (after a restore not yet confirmed).
        self.log.writable()?;
        let policy = self.policies.authorize(req, epsilon_needed_milli)?;
        Ok(Permit {
            policy,
            consumer: req.onward_to.unwrap_or(req.consumer).clone(),
            purpose: req.purpose.to_string(),
            subject,
            method,
        })
    }

    /// Provider side, second step: the seal for `payload`, remembered as pending until the
    /// receipt arrives. `holder_of`: an own record the consumer becomes a holder of (so that a
    /// revocation reaches it), written durably with the pending intent, before anything is sent.
    pub(crate) async fn seal(
        &self,
        permit: &Permit,
        payload: &[u8],
        holder_of: Option<&str>,
    ) -> Result<TransferSeal, ApiError> {
        let core = &self.core;
        let nonce: [u8; 32] = random()?;
        let now = core.now_ms();
        let p = &permit.policy;
        let intent = TransferIntent {
            transfer_id: random::<16>()?.to_vec(),
            provider_zone: core.zone.to_string(),
            consumer_zone: permit.consumer.to_string(),
            policy_id: p.id().to_string(),
            policy_version: p.version(),
            policy_digest: p.digest.to_vec(),
            data_class: p.class as i32,
            purpose: permit.purpose.clone(),
            subject: permit.subject.clone(),
            payload_commitment: sha256(&[nonce.as_slice(), payload].concat()).to_vec(),
            payload_size: payload.len() as u64,
            created_at_ms: now,
            method: permit.method.to_string(),
        };
        let env = envelope::seal(PayloadType::TRANSFER_INTENT, &intent, &[&core.node_key]);
        let id: [u8; 16] = intent.transfer_id.as_slice().try_into().map_err(|_| ApiError::internal("transfer id"))?;
        let deadline = now + self.ack_timeout_ms;
        let (bytes, holder) = (env.encode_to_vec(), holder_of.map(|r| (r, permit.consumer.as_str())));
        core.store.write_durably(|st| st.put_pending_intent_for(&id, deadline, &bytes, holder)).await?;
        Ok(TransferSeal { intent: Some(env), nonce: nonce.to_vec() })
    }

    /// Consumer side of a pull: the provider's answer (or failure) to a request this node made.
    /// A failure is logged as a refusal by the provider. An answer is checked against its seal;
    /// `keep` decides whether this node keeps the data (a policy it holds must allow it), and
    /// either way a receipt is signed, the transfer logged and the receipt queued for the
    /// provider; a refusal to keep is the receipt's reason and the caller's error.
    pub(crate) async fn pull<T>(
        &self,
        p: Pull<'_>,
        answer: Result<Sealed, tonic::Status>,
        keep: impl FnOnce(&Sealed, &TransferIntent) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let sealed = match answer {
            Ok(s) => s,
            Err(s) if p.not_found_is_an_answer && reason_of(&s) == Some(Reason::RecordNotFound) => {
                return Err(ApiError::new(
                    Reason::RecordNotFound,
                    format!("zone {} has no such record: {}", p.provider, s.message()),
                ));
            }
            Err(s) => {
                let e = peer_failure(p.provider, &s);
                let refusal = Refusal {
                    other: p.provider.as_str(),
                    refusing: Refusing::RefusedByPeer,
                    method: p.method,
                    error: &e,
                    class: p.class,
                    subject: &p.subject,
                };
                log_refusal(&self.core, &self.log, refusal).await;
                return Err(e);
            }
        };
        let (intent_env, intent) =
            self.check_seal(p.provider, sealed.seal.as_ref(), &sealed.payload, sealed.policy_id.as_deref())?;
        let expected = Expected {
            method: p.method,
            subject: &p.subject,
            purpose: p.purpose,
            made_within_ms: self.core.limits.max_clock_skew_ms,
        };
        if let Err(e) = self.check_claims(&intent, &expected) {
            // Nothing is signed for an intent whose claims are not what was asked.
            let refusal = Refusal {
                other: p.provider.as_str(),
                refusing: Refusing::RefusedPeer,
                method: p.method,
                error: &e,
                class: p.class,
                subject: &p.subject,
            };
            log_refusal(&self.core, &self.log, refusal).await;
            return Err(e);
        }
        self.check_unused(&intent_env, &intent)?;
        let kept = keep(&sealed, &intent);
        let (_, queued) = self.receipt(&intent_env, &intent, kept.as_ref().err().map(|e| e.reason), true).await?;
        if let Some(item) = queued {
            self.outbox.try_soon(item);
        }
        kept
    }

    /// Consumer side of a push: signs the receipt and logs the transfer; the receipt goes back
    /// in the answer. `refused`: this node received the data but refused to keep it.
    pub(crate) async fn receive(
        &self,
        intent_env: &Envelope,
        intent: &TransferIntent,
        refused: Option<Reason>,
    ) -> Result<Envelope, ApiError> {
        Ok(self.receipt(intent_env, intent, refused, false).await?.0)
    }

    /// Signs the receipt and logs the transfer leaf; with `send_back`, the receipt is queued
    /// for the provider in the same batch as the leaf (it goes if and only if the transfer is
    /// in this log). A transfer logged before (the provider retried after a lost answer) keeps
    /// the receipt logged then, so that both logs hold one and the same leaf.
    async fn receipt(
        &self,
        intent_env: &Envelope,
        intent: &TransferIntent,
        refused: Option<Reason>,
        send_back: bool,
    ) -> Result<(Envelope, Option<OutboxItem>), ApiError> {
        let core = &self.core;
        let receipt = TransferReceipt {
            transfer_id: intent.transfer_id.clone(),
            intent_digest: sha256(&intent_env.payload).to_vec(),
            consumer_zone: core.zone.to_string(),
            received_at_ms: core.now_ms(),
            accepted: refused.is_none(),
            reason: refused.map(|r| r.to_string()).unwrap_or_default(),
        };
        let id = transfer_id(intent)?;
        let env = envelope::seal(PayloadType::TRANSFER_RECEIPT, &receipt, &[&core.node_key]);
        let leaf = transfer_leaf(intent_env, &env)?;
        let provider = ZoneId::new(intent.provider_zone.as_str()).map_err(|e| invalid(e.to_string()))?;
        let item = send_back.then(|| {
            let body =
                AcknowledgeRequest { intent: Some(intent_env.clone()), receipt: Some(env.clone()) }.encode_to_vec();
            let msg = Outgoing {
                id: Outgoing::derived_id(Kind::Receipt, &provider, &intent.transfer_id),
                kind: Kind::Receipt,
                to: provider.clone(),
                body,
            };
            let mut item = msg.item(core.now_ms());
            item.next_attempt_ms += RECEIPT_RETRY_AFTER_MS;
            item
        });
        let placed = self.log.append_with_outbox(&leaf, Some(id), item.clone()).await?;
        if placed.duplicate {
            return Ok((logged_receipt(&core.store, placed.index)?, None));
        }
        count(core, &provider, Direction::Incoming, receipt.accepted);
        Ok((env, item))
    }

    /// Consumer side: a transfer id is one transfer. The same intent again is a retry (answered
    /// with the receipt logged the first time); another intent under a logged id would let data
    /// be kept without its own entry in the log.
    pub(crate) fn check_unused(&self, intent_env: &Envelope, intent: &TransferIntent) -> Result<(), ApiError> {
        let id = transfer_id(intent)?;
        let Some(index) = logged_transfer(&self.core.store, &id)? else { return Ok(()) };
        let same = match self.core.store.audit_entry(index)?.map(|b| Leaf::decode(&b)) {
            Some(Ok(Leaf::Transfer { intent: logged, .. })) => logged.payload == intent_env.payload,
            _ => false,
        };
        if same {
            Ok(())
        } else {
            Err(invalid(format!("transfer id {} is taken by another transfer", hex::encode(id))))
        }
    }

    /// Consumer side: the intent claims what this node knows of the transfer (method, subject,
    /// purpose, a fresh time) and the terms of the policy it names as this node holds them
    /// (version, digest, data class).
    pub(crate) fn check_claims(&self, intent: &TransferIntent, e: &Expected<'_>) -> Result<(), ApiError> {
        let claim = |what: &str, said: &str, known: &str| {
            if said == known {
                Ok(())
            } else {
                Err(invalid(format!("the intent says {what} {said:?}, this transfer's is {known:?}")))
            }
        };
        claim("method", &intent.method, e.method)?;
        claim("subject", &intent.subject, e.subject)?;
        claim("purpose", &intent.purpose, e.purpose)?;
        let now = self.core.now_ms();
        if intent.created_at_ms < now.saturating_sub(e.made_within_ms) {
            return Err(ApiError::new(
                Reason::StaleRequest,
                format!("the intent was made at {}, too long ago", ftz_core::time::format_ms(intent.created_at_ms)),
            ));
        }
        if let Some(p) = self.policies.current().get(&intent.policy_id) {
            let same = intent.policy_version == p.version()
                && intent.policy_digest.as_slice() == p.digest.as_slice()
                && intent.data_class == p.class as i32;
            if !same {
                return Err(invalid(format!(
                    "the intent's terms (policy {} v{}) are not the ones this node holds (v{})",
                    intent.policy_id,
                    intent.policy_version,
                    p.version()
                )));
            }
        }
        Ok(())
    }

    /// Consumer side: checks that `seal` is the provider's signed intent for exactly `payload`,
    /// sent to this zone under `policy_id`. Returns the intent.
    pub(crate) fn check_seal(
        &self,
        provider: &ZoneId,
        seal: Option<&TransferSeal>,
        payload: &[u8],
        policy_id: Option<&str>,
    ) -> Result<(Envelope, TransferIntent), ApiError> {
        let state = &*self.core;
        let seal = seal.ok_or_else(|| invalid(format!("zone {provider} sent data without a transfer intent")))?;
        let env = seal.intent.clone().ok_or_else(|| invalid("the seal carries no intent"))?;
        bounds::one_signature(&env, "the intent")?;
        let registry = state.registry();
        let now = state.now_ms();
        // The time it claims first: a far-future one is a wrong clock or a forgery, a very old
        // one a replay (a delivery retried from a sender's outbox is younger than this).
        let intent: TransferIntent = envelope::decode_payload(&env, PayloadType::TRANSFER_INTENT)
            .map_err(|e| invalid(format!("intent of zone {provider}: {e}")))?;
        if intent.created_at_ms > now.saturating_add(state.limits.max_clock_skew_ms)
            || intent.created_at_ms < now.saturating_sub(state.limits.max_intent_age_ms)
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
        // Then judged by the key the provider had when it signed, so a delivery queued before
        // the provider rotated its node key still arrives.
        verify_signed_at(&registry, provider, &env, PayloadType::TRANSFER_INTENT, intent.created_at_ms)
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
        bounds::check_intent(&intent)?;
        if intent.transfer_id.len() != 16 || seal.nonce.len() != 32 {
            return Err(invalid("malformed transfer id or nonce"));
        }
        if intent.payload_commitment != sha256(&[seal.nonce.as_slice(), payload].concat())
            || intent.payload_size != payload.len() as u64
        {
            return Err(invalid("the payload does not match the intent's commitment"));
        }
        if policy_id.is_some_and(|p| p != intent.policy_id) {
            return Err(invalid("the intent names another policy"));
        }
        Ok((env, intent))
    }
}

/// A part as the leaf keeps it: its payload and its one signature.
fn part(env: &Envelope) -> Result<SignedPart, ApiError> {
    let [s] = env.signatures.as_slice() else {
        return Err(invalid("a logged part carries exactly one signature"));
    };
    Ok(SignedPart {
        payload: env.payload.clone(),
        signature: LeafSignature {
            key_id: s.key_id.as_slice().try_into().map_err(|_| invalid("key id"))?,
            sig: s.sig.as_slice().try_into().map_err(|_| invalid("signature"))?,
        },
    })
}

/// A transfer logged with `peer`, for the metrics.
fn count(core: &Core, peer: &ZoneId, direction: Direction, accepted: bool) {
    let decision = if accepted { Decision::Transferred } else { Decision::RefusedOnReceipt };
    core.metrics.transfer(peer.as_str(), core.registry().zone(peer).is_some(), direction, decision);
}

/// The transfer leaf both sides append.
pub(crate) fn transfer_leaf(intent: &Envelope, receipt: &Envelope) -> Result<Leaf, ApiError> {
    Ok(Leaf::Transfer { intent: part(intent)?, receipt: part(receipt)? })
}

fn transfer_id(intent: &TransferIntent) -> Result<[u8; 16], ApiError> {
    intent.transfer_id.as_slice().try_into().map_err(|_| invalid("transfer id"))
}

/// The receipt of the transfer leaf at `index`, as an envelope.
fn logged_receipt(store: &Store, index: u64) -> Result<Envelope, ApiError> {
    let bytes = store.audit_entry(index)?.ok_or_else(|| ApiError::internal(format!("entry {index} is gone")))?;
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
pub(crate) async fn acknowledged(
    core: &Core,
    log: &AuditLog,
    caller: &ZoneId,
    intent_env: &Envelope,
    receipt_env: &Envelope,
) -> Result<(), ApiError> {
    bounds::one_signature(intent_env, "the intent")?;
    bounds::one_signature(receipt_env, "the receipt")?;
    let registry = core.registry();
    // By this zone's node key of the time the intent was made (only this zone holds its node
    // keys): a receipt for a delivery queued before a rotation is still taken.
    let not_ours = |e: envelope::EnvelopeError| invalid(format!("not an intent this zone signed: {e}"));
    let intent: TransferIntent =
        envelope::decode_payload(intent_env, PayloadType::TRANSFER_INTENT).map_err(not_ours)?;
    verify_signed_at(&registry, &core.zone, intent_env, PayloadType::TRANSFER_INTENT, intent.created_at_ms)
        .map_err(not_ours)?;
    let theirs = |e: envelope::EnvelopeError| invalid(format!("receipt of zone {caller}: {e}"));
    let receipt: TransferReceipt =
        envelope::decode_payload(receipt_env, PayloadType::TRANSFER_RECEIPT).map_err(theirs)?;
    verify_signed_at(&registry, caller, receipt_env, PayloadType::TRANSFER_RECEIPT, receipt.received_at_ms)
        .map_err(theirs)?;
    bounds::check_receipt(&receipt)?;
    let skew = core.limits.max_clock_skew_ms;
    if receipt.received_at_ms < intent.created_at_ms.saturating_sub(skew)
        || receipt.received_at_ms > core.now_ms().saturating_add(skew)
    {
        return Err(ApiError::new(Reason::StaleRequest, "the receipt's time is before its intent or in the future"));
    }
    if intent.consumer_zone != caller.as_str() || receipt.consumer_zone != caller.as_str() {
        return Err(ApiError::new(Reason::ZoneMismatch, "the receipt is not from the intent's consumer"));
    }
    if receipt.transfer_id != intent.transfer_id || receipt.intent_digest != sha256(&intent_env.payload) {
        return Err(invalid("the receipt is not for this intent"));
    }
    let id = transfer_id(&intent)?;
    if !log.append(&transfer_leaf(intent_env, receipt_env)?, Some(id)).await?.duplicate {
        count(core, caller, Direction::Outgoing, receipt.accepted);
    }
    // Not waited for on disk: a pending intent whose transfer is logged is only cleaned up by
    // the sweeper, never declared unacknowledged.
    core.store.without_flush().take_pending_intent(&id)?;
    Ok(())
}

/// Checks that an intent or a receipt is signed by the node key of `zone` the registry says was
/// valid at `t`, the time the document gives for its own signing. That time is the signer's
/// claim, so every caller bounds it (an intent's age, a receipt's time against its intent); a
/// key the registry no longer lists at all (withdrawn after a compromise, not retired) counts
/// for nothing.
fn verify_signed_at(
    registry: &ftz_core::registry::Registry,
    zone: &ZoneId,
    env: &Envelope,
    payload_type: &str,
    t: i64,
) -> Result<(), envelope::EnvelopeError> {
    envelope::verify(env, payload_type, |id| registry.zone(zone).and_then(|z| z.key_valid_at(KeyPurpose::Node, id, t)))
        .map(|_| ())
}

/// The transfer a queued receipt acknowledges.
pub(crate) fn acknowledged_transfer(ack: &AcknowledgeRequest) -> Option<[u8; 16]> {
    let intent = TransferIntent::decode(ack.intent.as_ref()?.payload.as_slice()).ok()?;
    intent.transfer_id.as_slice().try_into().ok()
}

/// When the outbox's own retries may first pick up a receipt queued with its transfer: the
/// first attempt is the consumer's, right after the transfer is durable in its log.
const RECEIPT_RETRY_AFTER_MS: i64 = 5_000;

#[cfg(test)]
mod tests {
    use ftz_store::{AuditBatch, OutboxItem, Store};

    use super::*;
    use crate::audit::reader::logged_transfer;

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
            claimed_until_ms: 0,
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

    /// Finding: the consumer signed receipts for claims of the intent it never checked. Each
    /// claim that is not what this node asked for gets no receipt and no transfer in the log.
    #[tokio::test]
    async fn a_consumer_signs_nothing_for_claims_it_did_not_ask_for() {
        use ftz_policy::examples::record_policy;
        use ftz_proto::DataClass;

        let kit = crate::testkit::Kit::new().await;
        let doc = record_policy("hn-sh", "hainan", "shanghai", DataClass::Certification, &["verification"], kit.now());
        kit.policies.install(kit.signed(PayloadType::EXCHANGE_POLICY, &doc, &["hainan", "shanghai"])).await.unwrap();
        let policy = kit.policies.current().get("hn-sh").unwrap().clone();
        let hainan = ZoneId::new("hainan").unwrap();
        let (payload, nonce) = (b"the record".to_vec(), [7u8; 32]);
        let fetch = "/ftz.v1.Peer/FetchRecord";
        let honest = TransferIntent {
            transfer_id: vec![1; 16],
            provider_zone: "hainan".into(),
            consumer_zone: "shanghai".into(),
            policy_id: "hn-sh".into(),
            policy_version: policy.version(),
            policy_digest: policy.digest.to_vec(),
            data_class: policy.class as i32,
            purpose: "verification".into(),
            subject: "record hainan/HN-1".into(),
            payload_commitment: sha256(&[nonce.as_slice(), &payload].concat()).to_vec(),
            payload_size: payload.len() as u64,
            created_at_ms: kit.now(),
            method: fetch.into(),
        };
        let sealed = |i: &TransferIntent| Sealed {
            payload: payload.clone(),
            seal: Some(TransferSeal {
                intent: Some(envelope::seal(PayloadType::TRANSFER_INTENT, i, &[&kit.keys["hainan"].node])),
                nonce: nonce.to_vec(),
            }),
            policy_id: Some("hn-sh".into()),
        };
        let pull = || Pull {
            provider: &hainan,
            method: fetch,
            class: None,
            subject: "record hainan/HN-1".into(),
            purpose: "verification",
            not_found_is_an_answer: true,
        };
        let lies = [
            TransferIntent { transfer_id: vec![2; 16], purpose: "marketing".into(), ..honest.clone() },
            TransferIntent { transfer_id: vec![3; 16], method: "/ftz.v1.Peer/ExportRows".into(), ..honest.clone() },
            TransferIntent { transfer_id: vec![4; 16], subject: "record hainan/HN-2".into(), ..honest.clone() },
            TransferIntent { transfer_id: vec![5; 16], created_at_ms: kit.now() - 3_600_000, ..honest.clone() },
            TransferIntent { transfer_id: vec![6; 16], policy_version: 9, ..honest.clone() },
            TransferIntent { transfer_id: vec![7; 16], policy_digest: vec![0; 32], ..honest.clone() },
            TransferIntent { transfer_id: vec![8; 16], data_class: DataClass::IndustryData as i32, ..honest.clone() },
        ];
        for lie in &lies {
            let e = kit.transfers.pull(pull(), Ok(sealed(lie)), |_, _| Ok(())).await.unwrap_err();
            assert!(matches!(e.reason, Reason::TransferInvalid | Reason::StaleRequest), "{lie:?}: {e}");
        }
        kit.transfers.pull(pull(), Ok(sealed(&honest)), |_, _| Ok(())).await.unwrap();
        let log = kit.log.reader();
        assert!(log.transfer(&[1; 16]).unwrap().is_some(), "the honest transfer is logged");
        for lie in &lies {
            let id: [u8; 16] = lie.transfer_id.as_slice().try_into().unwrap();
            assert!(log.transfer(&id).unwrap().is_none(), "no receipt for {lie:?}");
        }
        // The same intent again is a retry; another transfer under the same id keeps nothing.
        kit.transfers.pull(pull(), Ok(sealed(&honest)), |_, _| Ok(())).await.unwrap();
        let reuse = TransferIntent { created_at_ms: kit.now() - 1, ..honest.clone() };
        let mut kept = false;
        let e = kit
            .transfers
            .pull(pull(), Ok(sealed(&reuse)), |_, _| {
                kept = true;
                Ok(())
            })
            .await
            .unwrap_err();
        assert_eq!(e.reason, Reason::TransferInvalid, "{e}");
        assert!(!kept, "data under a reused transfer id is not kept");
    }
}
