//! What the issuing zone does with its records: sign and store them, state their status,
//! revoke them and tell every zone holding them, push inspection results to another zone.

use std::sync::Arc;

use ftz_core::{
    Reason, SigningKey, ZoneId,
    envelope::{self, PayloadType},
    records::{Record, check_text, record_digest},
};
use ftz_proto::{
    Certification, DeliverRequest, Envelope, InspectionResult, KeyPurpose, NotifyRevocationRequest, RecordWithStatus,
    Revocation,
};
use ftz_store::{InsertOutcome, RecordSource, StoredRecord};
use prost::Message;

use crate::{
    core::Core,
    error::ApiError,
    outbox::{Courier, Handover, Kind, Outbox, Outgoing, Sent, carry_call, decode_body},
    peers::PeerClients,
    records::{check_purpose, class_of, decode_envelope, own_record, own_statement, subject_of},
    transfer::Transfers,
};

/// The issuing role of this zone: its issuing key, and what it needs to tell other zones.
pub(crate) struct Issuer {
    core: Arc<Core>,
    /// Signs this zone's records; `None`: this node issues nothing.
    key: Option<SigningKey>,
    transfers: Arc<Transfers>,
    outbox: Arc<Outbox>,
}

impl Issuer {
    pub(crate) fn new(
        core: Arc<Core>,
        key: Option<SigningKey>,
        transfers: Arc<Transfers>,
        outbox: Arc<Outbox>,
    ) -> Self {
        Self { core, key, transfers, outbox }
    }

    /// The issuing key, if this node has one the registry lists as valid now.
    fn issuing_key(&self) -> Result<&SigningKey, ApiError> {
        let state = &*self.core;
        let key = self.key.as_ref().ok_or_else(|| {
            ApiError::new(Reason::NoIssuingKey, "this node has no issuing key configured (keys.issuing_key)")
        })?;
        let listed = state
            .registry()
            .zone(&state.zone)
            .is_some_and(|z| z.key_valid_at(KeyPurpose::Issuing, &key.key_id(), state.now_ms()).is_some());
        if !listed {
            return Err(ApiError::new(
                Reason::IssuingKeyNotListed,
                format!("issuing key {} is not a valid issuing key of {} in the registry", key.key_id(), state.zone),
            ));
        }
        Ok(key)
    }

    /// Fills in (or checks) the issuing zone of a certification about to be issued here.
    pub(crate) fn own_certification(&self, mut c: Certification) -> Result<Record, ApiError> {
        let state = &*self.core;
        c.issuing_zone = Self::own_zone_field(state, &c.issuing_zone)?;
        ftz_core::records::check_certification(&c)?;
        Ok(Record::Certification(c))
    }

    pub(crate) fn own_inspection(&self, mut r: InspectionResult) -> Result<Record, ApiError> {
        let state = &*self.core;
        r.issuing_zone = Self::own_zone_field(state, &r.issuing_zone)?;
        ftz_core::records::check_inspection(&r)?;
        Ok(Record::Inspection(r))
    }

    fn own_zone_field(state: &Core, given: &str) -> Result<String, ApiError> {
        if given.is_empty() || given == state.zone.as_str() {
            Ok(state.zone.to_string())
        } else {
            Err(ApiError::new(
                Reason::RecordMalformed,
                format!("issuing_zone {given:?}: this node issues records of zone {} only", state.zone),
            ))
        }
    }

    /// Signs and stores a record of this zone. The same id with the same content again returns the
    /// stored record; with other content it is refused and nothing changes.
    pub(crate) async fn issue(&self, record: Record) -> Result<IssueOutcome, ApiError> {
        let state = &*self.core;
        let key = self.issuing_key()?;
        let now = state.now_ms();
        let at = record.issued_at_ms();
        if at > now.saturating_add(state.limits.max_clock_skew_ms) {
            return Err(ApiError::new(Reason::RecordMalformed, "the record's issue time is in the future"));
        }
        let registry = state.registry();
        let key_valid_then = registry
            .zone(&state.zone)
            .is_some_and(|z| z.key_valid_at(KeyPurpose::Issuing, &key.key_id(), at).is_some());
        if !key_valid_then {
            return Err(ApiError::new(
                Reason::RecordMalformed,
                format!(
                    "the record's issue time {} is outside the validity of issuing key {}",
                    ftz_core::time::format_ms(at),
                    key.key_id()
                ),
            ));
        }
        let env = match &record {
            Record::Certification(c) => envelope::seal(PayloadType::CERTIFICATION, c, &[key]),
            Record::Inspection(r) => envelope::seal(PayloadType::INSPECTION_RESULT, r, &[key]),
        };
        let stored = StoredRecord {
            source: RecordSource::Own,
            envelope: env.encode_to_vec(),
            status: Vec::new(),
            revocation: Vec::new(),
            updated_at_ms: now,
            retain_until_ms: 0,
        };
        let outcome = state
            .store
            .write_durably(|s| s.insert_record(state.zone.as_str(), record.record_id(), &stored, record.lot_id()))
            .await?;
        match outcome {
            InsertOutcome::Inserted => {
                tracing::info!(record = record.record_id(), kind = ?record.kind(), "record issued");
                Ok(IssueOutcome { envelope: env, already_issued: false })
            }
            InsertOutcome::Unchanged(existing) | InsertOutcome::Conflict(existing) => {
                let existing = decode_envelope(&existing.envelope)?;
                // Same content (whatever key signed it then): the same record.
                if existing.payload == env.payload {
                    Ok(IssueOutcome { envelope: existing, already_issued: true })
                } else {
                    Err(ApiError::new(
                        Reason::RecordConflict,
                        format!("record {} was issued before with other content", record.record_id()),
                    ))
                }
            }
        }
    }

    /// Revokes an own record and tells every zone that holds it.
    pub(crate) async fn revoke(&self, record_id: &str, reason: &str) -> Result<RevokeOutcome, ApiError> {
        let state = &*self.core;
        check_text("reason", reason, 512, true)?;
        let (stored, env, rec) = own_record(state, record_id)?;
        if !stored.revocation.is_empty() {
            return Ok(RevokeOutcome {
                revocation: decode_envelope(&stored.revocation)?,
                already_revoked: true,
                notified: Vec::new(),
                pending: Vec::new(),
            });
        }
        let key = self.issuing_key()?;
        let now = state.now_ms();
        let rev = Revocation {
            record_id: record_id.to_string(),
            issuing_zone: state.zone.to_string(),
            record_digest: record_digest(&env).to_vec(),
            reason: reason.to_string(),
            revoked_at_ms: now,
        };
        let rev_env = envelope::seal(PayloadType::REVOCATION, &rev, &[key]);
        let rev_bytes = rev_env.encode_to_vec();
        let (store, zone, id) = (state.store.clone(), state.zone.to_string(), record_id.to_string());
        let after = tokio::task::spawn_blocking(move || {
            store.update_record(&zone, &id, |old| {
                old.revocation.is_empty().then(|| StoredRecord {
                    revocation: rev_bytes.clone(),
                    updated_at_ms: now,
                    ..old.clone()
                })
            })
        })
        .await
        .map_err(|e| ApiError::internal(format!("store task failed: {e}")))??
        .ok_or_else(|| ApiError::new(Reason::RecordNotFound, format!("record {record_id:?} disappeared")))?;
        let stored_rev = decode_envelope(&after.revocation)?;
        if stored_rev != rev_env {
            // Revoked concurrently by another call: that revocation stands.
            return Ok(RevokeOutcome {
                revocation: stored_rev,
                already_revoked: true,
                notified: Vec::new(),
                pending: Vec::new(),
            });
        }
        tracing::info!(record = record_id, "record revoked");
        let statement = own_statement(state, &after, &env, &rec)?;
        let (notified, pending) = self.notify_holders(record_id, statement).await?;
        Ok(RevokeOutcome { revocation: rev_env, already_revoked: false, notified, pending })
    }

    /// Sends the revocation statement to every holder at once, through the outbox: those that
    /// cannot be reached now keep it queued (durable) and get it when they can be.
    async fn notify_holders(
        &self,
        record_id: &str,
        statement: Envelope,
    ) -> Result<(Vec<String>, Vec<String>), ApiError> {
        let state = &*self.core;
        let holders: Vec<String> =
            state.store.holders(record_id)?.into_iter().filter(|z| z != state.zone.as_str()).collect();
        let body = NotifyRevocationRequest { status: Some(statement) }.encode_to_vec();
        let sends = holders.iter().map(|z| {
            let body = body.clone();
            async move {
                let to = ZoneId::new(z.as_str()).map_err(|e| ApiError::internal(e.to_string()))?;
                let id = Outgoing::derived_id(Kind::RevocationNotice, &to, &body);
                self.outbox.send(Outgoing { id, kind: Kind::RevocationNotice, to, body }).await
            }
        });
        let mut notified = Vec::new();
        let mut pending = Vec::new();
        for (zone, res) in holders.iter().zip(futures_util::future::join_all(sends).await) {
            match res {
                Ok(Sent::Delivered { .. }) => notified.push(zone.clone()),
                Ok(Sent::Queued { error }) => {
                    tracing::warn!(record = record_id, zone = %zone, "revocation notice queued: {error}");
                    pending.push(zone.clone());
                }
                Err(e) => {
                    tracing::warn!(record = record_id, zone = %zone, "revocation notice refused: {e}");
                    pending.push(zone.clone());
                }
            }
        }
        Ok((notified, pending))
    }

    /// The purpose of a push when the issuer names none.
    pub(crate) const DEFAULT_PUSH_PURPOSE: &str = "import-clearance";

    /// Sends an own inspection result to `to_zone` (Peer.Deliver) under an exchange policy that
    /// allows it. Returns whether that zone already held it.
    pub(crate) async fn push(&self, record_id: &str, to_zone: &str, purpose: &str) -> Result<PushOutcome, ApiError> {
        let state = &*self.core;
        let to = ZoneId::new(to_zone).map_err(|e| ApiError::invalid(e.to_string()))?;
        if to == state.zone {
            return Err(ApiError::invalid("an inspection result is pushed to another zone"));
        }
        if state.registry().zone(&to).is_none() {
            return Err(ApiError::new(Reason::NoSuchZone, format!("zone {to} is not listed in the registry")));
        }
        let (stored, env, rec) = own_record(state, record_id)?;
        if !matches!(rec, Record::Inspection(_)) {
            return Err(ApiError::invalid(
                "only inspection results are pushed; certifications are verified on request",
            ));
        }
        let purpose = if purpose.is_empty() { Self::DEFAULT_PUSH_PURPOSE } else { purpose };
        check_purpose(purpose)?;
        let req = ftz_policy::exchange::TransferRequest {
            provider: &state.zone,
            consumer: &to,
            class: class_of(&rec),
            subject: subject_of(&rec),
            purpose,
            fields: &[],
            onward_to: None,
            now: state.now_ms(),
        };
        let permit =
            self.transfers.permit(&req, "/ftz.v1.Peer/Deliver", format!("record {}/{record_id}", state.zone), |_| 0)?;
        // A holder first, so that a revocation racing with the delivery still reaches it.
        state.store.write_durably(|s| s.add_holder(record_id, to.as_str())).await?;
        let status = own_statement(state, &stored, &env, &rec)?;
        let record = RecordWithStatus { record: Some(env), status: Some(status) }.encode_to_vec();
        let seal = self.transfers.seal(&permit, &record, None).await?;
        let policy = &permit.policy;
        let transfer_id = seal
            .intent
            .as_ref()
            .and_then(|i| ftz_proto::TransferIntent::decode(i.payload.as_slice()).ok())
            .and_then(|i| <[u8; 16]>::try_from(i.transfer_id.as_slice()).ok())
            .ok_or_else(|| ApiError::internal("a sealed intent without a transfer id"))?;
        let body = DeliverRequest {
            seal: Some(seal),
            record,
            policy_id: policy.id().to_string(),
            policy_version: policy.version(),
            purpose: purpose.to_string(),
        }
        .encode_to_vec();
        let sent = self.outbox.send(Outgoing { id: transfer_id, kind: Kind::Delivery, to: to.clone(), body }).await?;
        tracing::info!(record = record_id, to = %to, outcome = ?sent, "inspection result pushed");
        Ok(match sent {
            Sent::Delivered { already } => PushOutcome { already_delivered: already, queued: false },
            Sent::Queued { .. } => PushOutcome { already_delivered: false, queued: true },
        })
    }
}

pub(crate) struct IssueOutcome {
    pub envelope: Envelope,
    pub already_issued: bool,
}

pub(crate) struct RevokeOutcome {
    pub revocation: Envelope,
    pub already_revoked: bool,
    pub notified: Vec<String>,
    pub pending: Vec<String>,
}

/// How a push ended: delivered (perhaps already held), or queued for a zone not reachable now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PushOutcome {
    pub already_delivered: bool,
    pub queued: bool,
}

/// Carries revocation notices to the zones that hold a record (`Peer.NotifyRevocation`).
pub(crate) struct NoticeCourier(pub Arc<PeerClients>);

#[tonic::async_trait]
impl Courier for NoticeCourier {
    async fn carry(&self, item: &ftz_store::OutboxItem) -> Handover {
        match decode_body::<NotifyRevocationRequest>(item) {
            Ok(msg) => carry_call(&self.0, item, msg, |mut c, r| async move { c.notify_revocation(r).await }).await,
            Err(h) => h,
        }
    }
}

#[cfg(test)]
mod tests {
    use ftz_core::Reason;
    use ftz_policy::examples::sample_certification;

    use crate::testkit::Kit;

    #[tokio::test]
    async fn issuing_is_idempotent_by_id_and_other_content_changes_nothing() {
        let kit = Kit::new().await;
        let c = sample_certification("SH-1", "AEO_ADVANCED", kit.now());
        let first = kit.issuer.issue(kit.issuer.own_certification(c.clone()).unwrap()).await.unwrap();
        assert!(!first.already_issued);
        let again = kit.issuer.issue(kit.issuer.own_certification(c.clone()).unwrap()).await.unwrap();
        assert!(again.already_issued);
        assert_eq!(again.envelope, first.envelope);

        let other = ftz_proto::Certification { scope: "another scope".into(), ..c.clone() };
        let e = kit.issuer.issue(kit.issuer.own_certification(other).unwrap()).await.err().unwrap();
        assert_eq!(e.reason, Reason::RecordConflict);
        let stored = kit.core.store.get_record("shanghai", "SH-1").unwrap().unwrap();
        assert_eq!(stored.envelope, prost::Message::encode_to_vec(&first.envelope));
    }

    #[tokio::test]
    async fn records_of_other_zones_or_from_the_future_are_refused_and_not_stored() {
        let kit = Kit::new().await;
        let foreign = ftz_proto::Certification {
            issuing_zone: "hainan".into(),
            ..sample_certification("HN-1", "AEO_ADVANCED", kit.now())
        };
        assert_eq!(kit.issuer.own_certification(foreign).err().unwrap().reason, Reason::RecordMalformed);
        let mut later = sample_certification("SH-2", "AEO_ADVANCED", kit.now());
        later.issued_at_ms = kit.now() + 3_600_000;
        let e = kit.issuer.issue(kit.issuer.own_certification(later).unwrap()).await.err().unwrap();
        assert_eq!(e.reason, Reason::RecordMalformed);
        assert!(kit.core.store.get_record("shanghai", "SH-2").unwrap().is_none());
    }

    #[tokio::test]
    async fn a_revocation_is_stored_once_and_needs_no_peer_without_holders() {
        let kit = Kit::new().await;
        let c = sample_certification("SH-3", "AEO_ADVANCED", kit.now());
        kit.issuer.issue(kit.issuer.own_certification(c).unwrap()).await.unwrap();
        let r = kit.issuer.revoke("SH-3", "failed audit").await.unwrap();
        assert!(!r.already_revoked);
        assert!(r.notified.is_empty() && r.pending.is_empty());
        let again = kit.issuer.revoke("SH-3", "another reason").await.unwrap();
        assert!(again.already_revoked);
        assert_eq!(again.revocation, r.revocation);
        assert_eq!(kit.issuer.revoke("SH-404", "x").await.err().unwrap().reason, Reason::RecordNotFound);
    }
}
