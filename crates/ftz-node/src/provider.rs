//! The providing side of record exchange: what other zones' nodes ask of this one and hand to
//! it. Serving a fetch (an own record, or onward under the owner's policy), accepting a pushed
//! inspection result, accepting a revocation notice of a record this zone holds.

use std::sync::Arc;

use ftz_core::{Reason, ZoneId, records::Record};
use ftz_policy::evaluate;
use ftz_policy::exchange::TransferRequest;
use ftz_proto::{DeliverRequest, Envelope, FetchRecordRequest, FetchRecordResponse, RecordStatus, RecordWithStatus};
use ftz_store::{InsertOutcome, RecordSource, StoredRecord};
use prost::Message;

use crate::{
    config::RecognitionConfig,
    core::Core,
    error::ApiError,
    records::{
        check_purpose, class_of, decode_envelope, own_record, own_statement, split_record, statement_of, store_status,
        subject_of, verdict_context,
    },
    transfer::{Expected, Transfers},
};

pub(crate) const FETCH: &str = "/ftz.v1.Peer/FetchRecord";

pub(crate) struct Provider {
    core: Arc<Core>,
    transfers: Arc<Transfers>,
    recognition: RecognitionConfig,
}

impl Provider {
    pub(crate) fn new(core: Arc<Core>, transfers: Arc<Transfers>, recognition: RecognitionConfig) -> Self {
        Self { core, transfers, recognition }
    }

    /// Peer side: an issuing zone delivers an inspection result (with its status) to this zone.
    /// Returns whether exactly this record was here already.
    pub(crate) async fn accept_delivery(
        &self,
        from: &ZoneId,
        req: DeliverRequest,
    ) -> Result<(bool, Envelope), ApiError> {
        let state = &*self.core;
        let (intent_env, intent) =
            self.transfers.check_seal(from, req.seal.as_ref(), &req.record, Some(&req.policy_id))?;
        let rws = RecordWithStatus::decode(req.record.as_slice())
            .map_err(|e| ApiError::new(Reason::TransferInvalid, format!("record of zone {from}: {e}")))?;
        let (record, status) = split_record(rws, from)?;
        let rec = Record::from_envelope(&record)?;
        if rec.issuing_zone() != from.as_str() {
            return Err(ApiError::new(
                Reason::ZoneMismatch,
                format!(
                    "zone {from} delivered a record of zone {}: only the issuing zone delivers its records",
                    rec.issuing_zone()
                ),
            ));
        }
        if !matches!(rec, Record::Inspection(_)) {
            return Err(ApiError::invalid("only inspection results are delivered"));
        }
        check_purpose(&req.purpose)?;
        let expected = Expected {
            method: "/ftz.v1.Peer/Deliver",
            subject: &format!("record {from}/{}", rec.record_id()),
            purpose: &req.purpose,
            made_within_ms: state.limits.max_intent_age_ms,
        };
        self.transfers.check_claims(&intent, &expected)?;
        self.transfers.check_unused(&intent_env, &intent)?;
        let now = state.now_ms();
        let transfer = TransferRequest {
            provider: from,
            consumer: &state.zone,
            class: class_of(&rec),
            subject: subject_of(&rec),
            purpose: &req.purpose,
            fields: &[],
            onward_to: None,
            now,
        };
        // Refused before anything is kept: both sides log the refusal (this one in the Peer
        // service, the sender when the answer arrives), and no transfer is logged.
        let policy = self.transfers.policies().consumer_accepts(&req.policy_id, &transfer)?;
        let registry = state.registry();
        let v =
            evaluate(&record, Some(&status), &verdict_context(state, &self.recognition, &registry, &[], &state.zone));
        if let Err(r) = v.authentic {
            return Err(ApiError::new(r, format!("delivered record {} is not authentic: {r}", rec.record_id())));
        }
        if v.status_reason == Some(Reason::StatusInvalid) {
            return Err(ApiError::new(Reason::StatusInvalid, "the delivered status statement does not verify"));
        }
        let stored = StoredRecord {
            source: RecordSource::Delivered,
            envelope: record.encode_to_vec(),
            status: status.encode_to_vec(),
            revocation: Vec::new(),
            updated_at_ms: now,
            retain_until_ms: now.saturating_add(policy.doc.retention_ms),
        };
        let outcome = state
            .store
            .write_durably(|s| s.insert_record(from.as_str(), rec.record_id(), &stored, rec.lot_id()))
            .await?;
        let already = match outcome {
            InsertOutcome::Inserted => {
                tracing::info!(record = rec.record_id(), from = %from, lot = ?rec.lot_id(), "inspection result delivered");
                false
            }
            InsertOutcome::Unchanged(_) => true,
            InsertOutcome::Conflict(_) => {
                return Err(ApiError::new(
                    Reason::RecordConflict,
                    format!("record {} of zone {from} is held here with other content", rec.record_id()),
                ));
            }
        };
        let receipt = self.transfers.receive(&intent_env, &intent, None).await?;
        Ok((already, receipt))
    }

    /// Peer side: the issuing zone says a record this zone holds is revoked.
    pub(crate) async fn accept_revocation(&self, from: &ZoneId, status: Envelope) -> Result<(), ApiError> {
        let state = &*self.core;
        let stmt =
            statement_of(&status).ok_or_else(|| ApiError::new(Reason::StatusInvalid, "not a status statement"))?;
        if stmt.issuing_zone != from.as_str() {
            return Err(ApiError::new(
                Reason::ZoneMismatch,
                format!("zone {from} cannot revoke a record of zone {}", stmt.issuing_zone),
            ));
        }
        let stored = state.store.get_record(from.as_str(), &stmt.record_id)?.ok_or_else(|| {
            ApiError::new(Reason::RecordNotFound, format!("this zone holds no record {:?} of {from}", stmt.record_id))
        })?;
        let record = decode_envelope(&stored.envelope)?;
        let registry = state.registry();
        let v =
            evaluate(&record, Some(&status), &verdict_context(state, &self.recognition, &registry, &[], &state.zone));
        if v.status != RecordStatus::Revoked {
            return Err(ApiError::new(
                Reason::StatusInvalid,
                "the notice is not a valid revocation of the record held here",
            ));
        }
        store_status(state, from, &stmt.record_id, &status).await?;
        tracing::info!(record = %stmt.record_id, from = %from, "revocation received");
        Ok(())
    }

    /// Peer side: another zone fetches a record under an exchange policy. An own record: the caller
    /// becomes a holder (durably, before the answer) so that a revocation reaches it. Another zone's
    /// record held here: served only if its issuing zone's policy lets this zone pass it on to the
    /// caller (onward transfer), with the status this node holds.
    pub(crate) async fn serve_fetch(
        &self,
        caller: &ZoneId,
        req: FetchRecordRequest,
    ) -> Result<FetchRecordResponse, ApiError> {
        let state = &*self.core;
        check_purpose(&req.purpose)?;
        let issuing = if req.issuing_zone.is_empty() {
            state.zone.clone()
        } else {
            ZoneId::new(req.issuing_zone.as_str()).map_err(|e| ApiError::invalid(format!("issuing_zone: {e}")))?
        };
        let now = state.now_ms();
        let found = self.lookup(&issuing, &req.record_id);
        if let Err(e) = &found
            && e.reason == Reason::RecordNotFound
        {
            // Whether a record exists is itself data: a zone no policy lets receive records of
            // this zone for this purpose is told that, not whether the id exists.
            self.may_receive_any(caller, &issuing, &req.purpose, now)?;
        }
        let (env, status, rec) = found?;
        let onward = issuing != state.zone;
        let transfer = TransferRequest {
            provider: &issuing,
            consumer: if onward { &state.zone } else { caller },
            class: class_of(&rec),
            subject: subject_of(&rec),
            purpose: &req.purpose,
            fields: &[],
            onward_to: onward.then_some(caller),
            now,
        };
        let subject = format!("record {issuing}/{}", req.record_id);
        let permit = self.transfers.permit(&transfer, FETCH, subject, |_| 0)?;
        let policy = &permit.policy;
        let status = status
            .ok_or_else(|| ApiError::new(Reason::StatusUnavailable, "no status statement is held for this record"))?;
        tracing::debug!(record = %req.record_id, to = %caller, purpose = %req.purpose, policy = policy.id(), onward, "record served");
        let record = RecordWithStatus { record: Some(env), status: Some(status) }.encode_to_vec();
        // An own record: the caller becomes a holder (durably, before the answer).
        let seal = self.transfers.seal(&permit, &record, (!onward).then_some(req.record_id.as_str())).await?;
        Ok(FetchRecordResponse {
            record,
            seal: Some(seal),
            policy_id: policy.id().to_string(),
            policy_version: policy.version(),
            retain_until_ms: now.saturating_add(policy.doc.retention_ms),
        })
    }

    /// The record asked for: an own one with this node's word on its status, or one of another
    /// zone held here with the status held.
    fn lookup(&self, issuing: &ZoneId, record_id: &str) -> Result<(Envelope, Option<Envelope>, Record), ApiError> {
        let state = &*self.core;
        if *issuing == state.zone {
            let (stored, env, rec) = own_record(state, record_id)?;
            let status = own_statement(state, &stored, &env, &rec)?;
            return Ok((env, Some(status), rec));
        }
        let stored = state.store.get_record(issuing.as_str(), record_id)?.ok_or_else(|| {
            ApiError::new(Reason::RecordNotFound, format!("this zone holds no record {record_id:?} of {issuing}"))
        })?;
        let env = decode_envelope(&stored.envelope)?;
        let status = (!stored.status.is_empty()).then(|| decode_envelope(&stored.status)).transpose()?;
        let rec = Record::from_envelope(&env)?;
        Ok((env, status, rec))
    }

    /// Refuses, with the policy's reason, a caller no policy lets receive any record of
    /// `issuing` for `purpose` (without counting it against a rate).
    fn may_receive_any(&self, caller: &ZoneId, issuing: &ZoneId, purpose: &str, now: i64) -> Result<(), ApiError> {
        let onward = *issuing != self.core.zone;
        let mut refusal = None;
        for class in [ftz_proto::DataClass::Certification, ftz_proto::DataClass::InspectionResult] {
            let req = TransferRequest {
                provider: issuing,
                consumer: if onward { &self.core.zone } else { caller },
                class,
                subject: Default::default(),
                purpose,
                fields: &[],
                onward_to: onward.then_some(caller),
                now,
            };
            match self.transfers.policies().explain(&req) {
                ftz_policy::exchange::Decision::Allow { .. } => return Ok(()),
                ftz_policy::exchange::Decision::Deny { reason, detail, .. } => {
                    refusal.get_or_insert(ApiError::new(reason, detail));
                }
            }
        }
        Err(refusal.unwrap_or_else(|| ApiError::new(Reason::NoPolicy, "no policy allows this")))
    }
}
