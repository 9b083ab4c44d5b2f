//! Records as the node keeps them, for every role that touches one (issuer, provider, verifier):
//! decoding what the store holds, this zone's own records and its signed word on their status,
//! what an exchange policy sees of a record, and replacing a held status by a newer one.

use ftz_core::{
    Reason, Registry, ZoneId,
    envelope::{self, PayloadType},
    records::{Record, record_digest},
};
use ftz_policy::{Agreement, VerdictContext};
use ftz_proto::{Envelope, RecordStatus, StatusStatement};
use ftz_store::StoredRecord;
use prost::Message;

use crate::{config::RecognitionConfig, core::Core, error::ApiError};

/// An envelope as the store keeps it.
pub(crate) fn decode_envelope(bytes: &[u8]) -> Result<Envelope, ApiError> {
    Envelope::decode(bytes).map_err(|e| ApiError::internal(format!("stored envelope does not decode: {e}")))
}

/// The status statement inside an envelope, if it is one.
pub(crate) fn statement_of(env: &Envelope) -> Option<StatusStatement> {
    envelope::decode_payload(env, PayloadType::STATUS_STATEMENT).ok()
}

/// `[a-z0-9_.-]{1,64}`.
pub(crate) fn check_purpose(p: &str) -> Result<(), ApiError> {
    let ok = !p.is_empty()
        && p.len() <= 64
        && p.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'.' | b'-'));
    if ok { Ok(()) } else { Err(ApiError::invalid(format!("purpose {p:?} must be 1-64 characters of [a-z0-9_.-]"))) }
}

/// An own record as stored, with its envelope decoded.
pub(crate) fn own_record(core: &Core, record_id: &str) -> Result<(StoredRecord, Envelope, Record), ApiError> {
    let stored = core.store.get_record(core.zone.as_str(), record_id)?.ok_or_else(|| {
        ApiError::new(Reason::RecordNotFound, format!("zone {} has issued no record {record_id:?}", core.zone))
    })?;
    let env = decode_envelope(&stored.envelope)?;
    let rec = Record::from_envelope(&env)?;
    Ok((stored, env, rec))
}

/// This node's signed statement of an own record's status now.
pub(crate) fn own_statement(
    core: &Core,
    stored: &StoredRecord,
    env: &Envelope,
    rec: &Record,
) -> Result<Envelope, ApiError> {
    let now = core.now_ms();
    let (status, revocation) = if !stored.revocation.is_empty() {
        (RecordStatus::Revoked, Some(decode_envelope(&stored.revocation)?))
    } else if rec.expires_at_ms().is_some_and(|e| now >= e) {
        (RecordStatus::Expired, None)
    } else {
        (RecordStatus::Active, None)
    };
    let stmt = StatusStatement {
        record_id: rec.record_id().to_string(),
        issuing_zone: rec.issuing_zone().to_string(),
        record_digest: record_digest(env).to_vec(),
        status: status as i32,
        as_of_ms: now,
        revocation,
    };
    Ok(envelope::seal(PayloadType::STATUS_STATEMENT, &stmt, &[&core.node_key]))
}

/// The data class of a record, for exchange policies.
pub(crate) fn class_of(rec: &Record) -> ftz_proto::DataClass {
    match rec {
        Record::Certification(_) => ftz_proto::DataClass::Certification,
        Record::Inspection(_) => ftz_proto::DataClass::InspectionResult,
    }
}

/// What an exchange policy's filter sees of a record.
pub(crate) fn subject_of(rec: &Record) -> ftz_policy::exchange::Subject<'_> {
    match rec {
        Record::Certification(c) => {
            ftz_policy::exchange::Subject { record_type: Some(&c.cert_type), ..Default::default() }
        }
        Record::Inspection(r) => ftz_policy::exchange::Subject { hs_code: Some(&r.hs_code), ..Default::default() },
    }
}

/// The context a verdict is reached in at this node, now.
pub(crate) fn verdict_context<'a>(
    core: &Core,
    recognition: &RecognitionConfig,
    registry: &'a Registry,
    agreements: &'a [Agreement],
    zone: &'a ZoneId,
) -> VerdictContext<'a> {
    VerdictContext {
        registry,
        agreements,
        recognising_zone: zone,
        now: core.now_ms(),
        max_status_age_ms: recognition.max_status_age_ms,
        max_clock_skew_ms: core.limits.max_clock_skew_ms,
    }
}

/// Replaces the stored status of a held record by a newer one; never replaces a revocation.
pub(crate) async fn store_status(
    core: &Core,
    zone: &ZoneId,
    record_id: &str,
    status: &Envelope,
) -> Result<(), ApiError> {
    let Some(new) = statement_of(status) else { return Ok(()) };
    let bytes = status.encode_to_vec();
    let now = core.now_ms();
    let (store, z, id) = (core.store.clone(), zone.to_string(), record_id.to_string());
    tokio::task::spawn_blocking(move || {
        store.update_record(&z, &id, |old| {
            let old_stmt = (!old.status.is_empty())
                .then(|| Envelope::decode(old.status.as_slice()).ok())
                .flatten()
                .as_ref()
                .and_then(statement_of);
            let replace = match old_stmt {
                Some(o) if o.status == RecordStatus::Revoked as i32 => false,
                Some(o) => new.status == RecordStatus::Revoked as i32 || new.as_of_ms > o.as_of_ms,
                None => true,
            };
            replace.then(|| StoredRecord { status: bytes.clone(), updated_at_ms: now, ..old.clone() })
        })
    })
    .await
    .map_err(|e| ApiError::internal(format!("store task failed: {e}")))??;
    Ok(())
}

/// A record and its status as another zone sent them.
pub(crate) fn split_record(rws: ftz_proto::RecordWithStatus, zone: &ZoneId) -> Result<(Envelope, Envelope), ApiError> {
    match (rws.record, rws.status) {
        (Some(r), Some(s)) => Ok((r, s)),
        _ => Err(ApiError::new(
            Reason::PeerAnswerInvalid,
            format!("zone {zone} answered without the record and its status"),
        )),
    }
}
