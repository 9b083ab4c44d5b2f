//! Verification for this zone's enterprises: get the record and its freshest status (from the
//! store, or from the issuing zone over `Peer`), then judge it with `ftz_policy::evaluate`.
//! Also the other side of the exchange: what this node accepts from issuing zones (delivered
//! inspection results, revocation notices).

use std::sync::Arc;

use ftz_core::{
    Reason, ZoneId,
    envelope::{self, PayloadType},
    records::{Record, record_digest},
};
use ftz_policy::exchange::TransferRequest;
use ftz_policy::{Verdict, VerdictContext, evaluate};
use ftz_proto::{
    DeliverRequest, Envelope, FetchRecordRequest, FetchRecordResponse, RecordStatus, RecordWithStatus, StatusStatement,
    VerificationBundle,
};
use ftz_store::{InsertOutcome, RecordSource, StoredRecord};
use prost::Message;

use ftz_audit::leaf::Refusing;

use crate::{
    audit::transfer::{self, Sending, log_refusal},
    error::ApiError,
    issuing::{class_of, decode_envelope, own_record, own_statement, subject_of},
    ping::peer_failure,
    state::NodeState,
};

const FETCH: &str = "/ftz.v1.Peer/FetchRecord";

/// What an enterprise asks about.
#[derive(Debug, Clone)]
pub enum Subject {
    Ref { zone: ZoneId, record_id: String },
    Supplied(Envelope),
}

/// A verdict with the evidence it was reached on.
pub struct Checked {
    pub verdict: Verdict,
    pub record: Envelope,
    pub status: Option<Envelope>,
    pub source: &'static str,
}

/// `[a-z0-9_.-]{1,64}`.
pub fn check_purpose(p: &str) -> Result<(), ApiError> {
    let ok = !p.is_empty()
        && p.len() <= 64
        && p.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'.' | b'-'));
    if ok { Ok(()) } else { Err(ApiError::invalid(format!("purpose {p:?} must be 1-64 characters of [a-z0-9_.-]"))) }
}

pub fn context<'a>(
    state: &NodeState,
    registry: &'a ftz_core::Registry,
    agreements: &'a [ftz_policy::Agreement],
    zone: &'a ZoneId,
) -> VerdictContext<'a> {
    VerdictContext {
        registry,
        agreements,
        recognising_zone: zone,
        now: state.now_ms(),
        max_status_age_ms: state.recognition.max_status_age_ms,
        max_clock_skew_ms: state.limits.max_clock_skew_ms,
    }
}

/// The verdict on `subject` in `recognising_zone`.
pub async fn check(
    state: &Arc<NodeState>,
    subject: Subject,
    recognising_zone: &ZoneId,
    purpose: &str,
) -> Result<Checked, ApiError> {
    check_purpose(purpose)?;
    let (record, status, source) = obtain(state, subject, purpose).await?;
    let registry = state.registry();
    let agreements = state.agreements();
    let verdict = evaluate(&record, status.as_ref(), &context(state, &registry, &agreements, recognising_zone));
    tracing::info!(
        record = %verdict.record_id,
        issuing_zone = %verdict.issuing_zone,
        recognising_zone = %recognising_zone,
        purpose,
        valid = verdict.valid(),
        "verified"
    );
    Ok(Checked { verdict, record, status, source })
}

async fn obtain(
    state: &Arc<NodeState>,
    subject: Subject,
    purpose: &str,
) -> Result<(Envelope, Option<Envelope>, &'static str), ApiError> {
    match subject {
        Subject::Ref { zone, record_id } if zone == state.zone => {
            let (stored, env, rec) = own_record(state, &record_id)?;
            let st = own_statement(state, &stored, &env, &rec)?;
            Ok((env, Some(st), "own"))
        }
        Subject::Ref { zone, record_id } => foreign(state, &zone, &record_id, purpose).await,
        Subject::Supplied(env) => {
            let Ok(rec) = Record::from_envelope(&env) else {
                return Ok((env, None, "supplied"));
            };
            let Ok(zone) = ZoneId::new(rec.issuing_zone()) else {
                return Ok((env, None, "supplied"));
            };
            // The issuing zone's word on the record it holds under this id: a supplied copy that
            // differs from it fails the digest check of the status.
            let status = if zone == state.zone {
                match own_record(state, rec.record_id()) {
                    Ok((stored, own_env, own_rec)) => Some(own_statement(state, &stored, &own_env, &own_rec)?),
                    Err(e) if e.reason == Reason::RecordNotFound => None,
                    Err(e) => return Err(e),
                }
            } else if state.registry().zone(&zone).is_some() {
                match foreign(state, &zone, rec.record_id(), purpose).await {
                    Ok((_, status, _)) => status,
                    Err(e) => {
                        tracing::info!(record = rec.record_id(), zone = %zone, "no status for a supplied record: {e}");
                        None
                    }
                }
            } else {
                None
            };
            Ok((env, status, "supplied"))
        }
    }
}

fn statement_of(env: &Envelope) -> Option<StatusStatement> {
    envelope::decode_payload(env, PayloadType::STATUS_STATEMENT).ok()
}

/// A foreign record with the freshest status obtainable: cached if young enough, refreshed from
/// the issuing zone if not (the cached one is kept if the refresh fails: the verdict then ages
/// it out after the maximum status age), fetched if not held at all.
async fn foreign(
    state: &Arc<NodeState>,
    zone: &ZoneId,
    record_id: &str,
    purpose: &str,
) -> Result<(Envelope, Option<Envelope>, &'static str), ApiError> {
    let Some(stored) = state.store.get_record(zone.as_str(), record_id)? else {
        let (record, status, retain_until) = fetch(state, zone, record_id, purpose).await?;
        keep_fetched(state, zone, record_id, &record, &status, retain_until).await?;
        return Ok((record, Some(status), "fetched"));
    };
    let record = decode_envelope(&stored.envelope)?;
    let cached = (!stored.status.is_empty()).then(|| decode_envelope(&stored.status)).transpose()?;
    let cached_stmt = cached.as_ref().and_then(statement_of);
    let final_status = cached_stmt.as_ref().is_some_and(|s| s.status == RecordStatus::Revoked as i32);
    let age = cached_stmt.as_ref().map(|s| state.now_ms() - s.as_of_ms);
    let source = match stored.source {
        RecordSource::Delivered => "delivered",
        _ => "cached",
    };
    if final_status || age.is_some_and(|a| a <= state.recognition.refresh_after_ms) {
        return Ok((record, cached, source));
    }
    match fetch(state, zone, record_id, purpose).await {
        Ok((fresh_record, fresh_status, _)) if record_digest(&fresh_record) == record_digest(&record) => {
            store_status(state, zone, record_id, &fresh_status).await?;
            Ok((record, Some(fresh_status), "refreshed"))
        }
        Ok(_) => {
            tracing::warn!(record = record_id, zone = %zone, "the issuing zone now serves other content under this id; keeping what was received");
            Ok((record, cached, source))
        }
        Err(e) => {
            tracing::info!(record = record_id, zone = %zone, "status refresh failed, using the cached status: {e}");
            Ok((record, cached, source))
        }
    }
}

fn split(rws: RecordWithStatus, zone: &ZoneId) -> Result<(Envelope, Envelope), ApiError> {
    match (rws.record, rws.status) {
        (Some(r), Some(s)) => Ok((r, s)),
        _ => Err(ApiError::new(
            Reason::PeerAnswerInvalid,
            format!("zone {zone} answered without the record and its status"),
        )),
    }
}

/// Fetches a record from its issuing zone and checks, as consumer, that it came under a policy
/// this node holds and that allows it here. Returns the record, its status and when this node
/// must delete it.
async fn fetch(
    state: &Arc<NodeState>,
    zone: &ZoneId,
    record_id: &str,
    purpose: &str,
) -> Result<(Envelope, Envelope, i64), ApiError> {
    let mut client = state.peers.client(state, zone)?;
    let req = FetchRecordRequest {
        record_id: record_id.to_string(),
        purpose: purpose.to_string(),
        issuing_zone: String::new(),
    };
    let resp: FetchRecordResponse = match client.fetch_record(req).await {
        Ok(r) => r.into_inner(),
        Err(s) if crate::error::reason_of(&s) == Some(Reason::RecordNotFound) => {
            return Err(ApiError::new(Reason::RecordNotFound, format!("zone {zone} has no record {record_id:?}")));
        }
        Err(s) => {
            let e = peer_failure(zone, &s);
            log_refusal(
                state,
                zone.as_str(),
                Refusing::RefusedByPeer,
                FETCH,
                &e,
                None,
                &format!("record {zone}/{record_id}"),
            )
            .await;
            return Err(e);
        }
    };
    let (intent_env, intent) = transfer::check_seal(state, zone, resp.seal.as_ref(), &resp.record, &resp.policy_id)?;
    let rws = RecordWithStatus::decode(resp.record.as_slice())
        .map_err(|e| ApiError::new(Reason::TransferInvalid, format!("record of zone {zone}: {e}")))?;
    let (record, status) = split(rws, zone)?;
    let rec = Record::from_envelope(&record)?;
    let now = state.now_ms();
    let req = TransferRequest {
        provider: zone,
        consumer: &state.zone,
        class: class_of(&rec),
        subject: subject_of(&rec),
        purpose,
        fields: &[],
        onward_to: None,
        now,
    };
    let accepted = crate::policies::consumer_accepts(state, &resp.policy_id, &req);
    transfer::receive_pulled(state, &intent_env, &intent, accepted.as_ref().err().map(|e| e.reason)).await?;
    let policy = accepted?;
    let promised = if resp.retain_until_ms > 0 { resp.retain_until_ms } else { i64::MAX };
    let retain_until = now.saturating_add(policy.doc.retention_ms).min(promised);
    Ok((record, status, retain_until))
}

/// Stores a fetched record, but only what is authentic and is what was asked for: a failed
/// verification leaves nothing behind.
async fn keep_fetched(
    state: &NodeState,
    zone: &ZoneId,
    record_id: &str,
    record: &Envelope,
    status: &Envelope,
    retain_until_ms: i64,
) -> Result<(), ApiError> {
    let registry = state.registry();
    let v = evaluate(record, Some(status), &context(state, &registry, &[], &state.zone));
    if v.authentic.is_err() || v.record_id != record_id || v.issuing_zone != zone.as_str() {
        return Ok(());
    }
    let stored = StoredRecord {
        source: RecordSource::Fetched,
        envelope: record.encode_to_vec(),
        status: status.encode_to_vec(),
        revocation: Vec::new(),
        updated_at_ms: state.now_ms(),
        retain_until_ms,
    };
    let lot = v.record.as_ref().and_then(|r| r.lot_id());
    state.store.write_durably(|s| s.insert_record(zone.as_str(), record_id, &stored, lot)).await?;
    Ok(())
}

/// Replaces the stored status by a newer one; never replaces a revocation.
async fn store_status(state: &NodeState, zone: &ZoneId, record_id: &str, status: &Envelope) -> Result<(), ApiError> {
    let Some(new) = statement_of(status) else { return Ok(()) };
    let bytes = status.encode_to_vec();
    let now = state.now_ms();
    let (store, z, id) = (state.store.clone(), zone.to_string(), record_id.to_string());
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

/// Peer side: an issuing zone delivers an inspection result (with its status) to this zone.
/// Returns whether exactly this record was here already.
pub async fn accept_delivery(
    state: &NodeState,
    from: &ZoneId,
    req: DeliverRequest,
) -> Result<(bool, Envelope), ApiError> {
    let (intent_env, intent) = transfer::check_seal(state, from, req.seal.as_ref(), &req.record, &req.policy_id)?;
    let rws = RecordWithStatus::decode(req.record.as_slice())
        .map_err(|e| ApiError::new(Reason::TransferInvalid, format!("record of zone {from}: {e}")))?;
    let (record, status) = split(rws, from)?;
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
    let policy = crate::policies::consumer_accepts(state, &req.policy_id, &transfer)?;
    let registry = state.registry();
    let v = evaluate(&record, Some(&status), &context(state, &registry, &[], &state.zone));
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
    let outcome =
        state.store.write_durably(|s| s.insert_record(from.as_str(), rec.record_id(), &stored, rec.lot_id())).await?;
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
    let receipt = transfer::receive(state, &intent_env, &intent, None).await?;
    Ok((already, receipt))
}

/// Peer side: the issuing zone says a record this zone holds is revoked.
pub async fn accept_revocation(state: &NodeState, from: &ZoneId, status: Envelope) -> Result<(), ApiError> {
    let stmt = statement_of(&status).ok_or_else(|| ApiError::new(Reason::StatusInvalid, "not a status statement"))?;
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
    let v = evaluate(&record, Some(&status), &context(state, &registry, &[], &state.zone));
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
pub async fn serve_fetch(
    state: &NodeState,
    caller: &ZoneId,
    req: FetchRecordRequest,
) -> Result<FetchRecordResponse, ApiError> {
    check_purpose(&req.purpose)?;
    let issuing = if req.issuing_zone.is_empty() {
        state.zone.clone()
    } else {
        ZoneId::new(req.issuing_zone.as_str()).map_err(|e| ApiError::invalid(format!("issuing_zone: {e}")))?
    };
    let now = state.now_ms();
    let (env, status, rec) = if issuing == state.zone {
        let (stored, env, rec) = own_record(state, &req.record_id)?;
        (env.clone(), Some(own_statement(state, &stored, &env, &rec)?), rec)
    } else {
        let stored = state.store.get_record(issuing.as_str(), &req.record_id)?.ok_or_else(|| {
            ApiError::new(Reason::RecordNotFound, format!("this zone holds no record {:?} of {issuing}", req.record_id))
        })?;
        let env = decode_envelope(&stored.envelope)?;
        let status = (!stored.status.is_empty()).then(|| decode_envelope(&stored.status)).transpose()?;
        let rec = Record::from_envelope(&env)?;
        (env, status, rec)
    };
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
    let policy = crate::policies::authorize(state, &transfer, |_| 0)?;
    let status = status
        .ok_or_else(|| ApiError::new(Reason::StatusUnavailable, "no status statement is held for this record"))?;
    tracing::info!(record = %req.record_id, to = %caller, purpose = %req.purpose, policy = policy.id(), onward, "record served");
    let record = RecordWithStatus { record: Some(env), status: Some(status) }.encode_to_vec();
    let sending = Sending {
        consumer: caller,
        policy: &policy,
        purpose: &req.purpose,
        subject: format!("record {issuing}/{}", req.record_id),
        method: FETCH,
        // An own record: the caller becomes a holder (durably, before the answer).
        holder_of: (!onward).then_some(req.record_id.as_str()),
    };
    let seal = transfer::seal(state, sending, &record).await?;
    Ok(FetchRecordResponse {
        record,
        seal: Some(seal),
        policy_id: policy.id().to_string(),
        policy_version: policy.version(),
        retain_until_ms: now.saturating_add(policy.doc.retention_ms),
    })
}

/// The verdicts on every inspection result this zone holds for `lot`.
pub async fn find_inspections(
    state: &Arc<NodeState>,
    lot: &str,
    recognising: &ZoneId,
    purpose: &str,
) -> Result<Vec<Checked>, ApiError> {
    ftz_core::records::check_id("lot_id", lot)?;
    let mut out = Vec::new();
    for (zone, id) in state.store.records_for_lot(lot, 1000)? {
        let zone = ZoneId::new(zone).map_err(|e| ApiError::internal(e.to_string()))?;
        out.push(check(state, Subject::Ref { zone, record_id: id }, recognising, purpose).await?);
    }
    Ok(out)
}

/// A signed bundle with everything needed to check the record offline.
pub async fn export_bundle(
    state: &Arc<NodeState>,
    zone: ZoneId,
    record_id: String,
    recognising: &ZoneId,
    purpose: &str,
) -> Result<Envelope, ApiError> {
    let issuing = zone.clone();
    let checked = check(state, Subject::Ref { zone, record_id }, recognising, purpose).await?;
    let status = checked.status.ok_or_else(|| {
        ApiError::new(Reason::StatusUnavailable, "no status statement from the issuing zone: nothing to bundle")
    })?;
    let agreements = state
        .agreements()
        .iter()
        .filter(|a| a.from == issuing && a.to == *recognising)
        .map(|a| a.envelope.clone())
        .collect();
    let bundle = VerificationBundle {
        record: Some(RecordWithStatus { record: Some(checked.record), status: Some(status) }),
        registry: Some(state.registry().envelope().clone()),
        agreements,
        exporting_zone: state.zone.to_string(),
        recognising_zone: recognising.to_string(),
        exported_at_ms: state.now_ms(),
        max_status_age_ms: state.recognition.max_status_age_ms,
    };
    Ok(envelope::seal(PayloadType::VERIFICATION_BUNDLE, &bundle, &[&state.node_key]))
}
