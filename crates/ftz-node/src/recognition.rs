//! Verification for this zone's enterprises: get the record and its freshest status (from the
//! store, or from the issuing zone over `Peer`), then judge it with `ftz_policy::evaluate`;
//! find the inspection results of a lot; export a signed bundle for offline checks.

use std::sync::Arc;

use ftz_core::{
    KeyId, Reason, ZoneId,
    envelope::{self, PayloadType},
    records::{Record, record_digest},
};
use ftz_policy::exchange::TransferRequest;
use ftz_policy::{
    Verdict,
    bundle::{BundleError, OfflineCheck, OfflineInputs, verify_bundle},
    evaluate,
};
use ftz_proto::{Envelope, FetchRecordRequest, KeyPurpose, RecordStatus, RecordWithStatus, VerificationBundle};
use ftz_store::{RecordSource, StoredRecord};
use prost::Message;

use crate::{
    agreements::Agreements,
    config::RecognitionConfig,
    core::Core,
    error::ApiError,
    provider::FETCH,
    records::{
        check_purpose, class_of, decode_envelope, own_record, own_statement, split_record, statement_of, store_status,
        subject_of, verdict_context,
    },
    transfer::{Pull, Sealed, Transfers},
};

/// What an enterprise asks about.
#[derive(Debug, Clone)]
pub(crate) enum Subject {
    Ref { zone: ZoneId, record_id: String },
    Supplied(Envelope),
}

/// A verdict with the evidence it was reached on.
pub(crate) struct Checked {
    pub verdict: Verdict,
    pub record: Envelope,
    pub status: Option<Envelope>,
    pub source: &'static str,
}

pub(crate) struct Verifier {
    core: Arc<Core>,
    agreements: Arc<Agreements>,
    transfers: Arc<Transfers>,
    config: RecognitionConfig,
}

impl Verifier {
    pub(crate) fn new(
        core: Arc<Core>,
        agreements: Arc<Agreements>,
        transfers: Arc<Transfers>,
        config: RecognitionConfig,
    ) -> Self {
        Self { core, agreements, transfers, config }
    }

    /// The verdict on `subject` in `recognising_zone`.
    pub(crate) async fn check(
        &self,
        subject: Subject,
        recognising_zone: &ZoneId,
        purpose: &str,
    ) -> Result<Checked, ApiError> {
        check_purpose(purpose)?;
        let (record, status, source) = self.obtain(subject, purpose).await?;
        let registry = self.core.registry();
        let agreements = self.agreements.all();
        let verdict = evaluate(
            &record,
            status.as_ref(),
            &verdict_context(&self.core, &self.config, &registry, &agreements, recognising_zone),
        );
        // One line per verification would fill a disk under load: at debug.
        tracing::debug!(
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
        &self,
        subject: Subject,
        purpose: &str,
    ) -> Result<(Envelope, Option<Envelope>, &'static str), ApiError> {
        let state = &*self.core;
        match subject {
            Subject::Ref { zone, record_id } if zone == state.zone => {
                let (stored, env, rec) = own_record(state, &record_id)?;
                let st = own_statement(state, &stored, &env, &rec)?;
                Ok((env, Some(st), "own"))
            }
            Subject::Ref { zone, record_id } => self.foreign(&zone, &record_id, purpose).await,
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
                    match self.foreign(&zone, rec.record_id(), purpose).await {
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

    /// A foreign record with the freshest status obtainable: cached if young enough, refreshed from
    /// the issuing zone if not (the cached one is kept if the refresh fails: the verdict then ages
    /// it out after the maximum status age), fetched if not held at all.
    async fn foreign(
        &self,
        zone: &ZoneId,
        record_id: &str,
        purpose: &str,
    ) -> Result<(Envelope, Option<Envelope>, &'static str), ApiError> {
        let state = &*self.core;
        let Some(stored) = state.store.get_record(zone.as_str(), record_id)? else {
            let (record, status, retain_until) = self.fetch(zone, record_id, purpose).await?;
            self.keep_fetched(zone, record_id, &record, &status, retain_until).await?;
            return Ok((record, Some(status), "fetched"));
        };
        let record = decode_envelope(&stored.envelope)?;
        let cached = (!stored.status.is_empty()).then(|| decode_envelope(&stored.status)).transpose()?;
        let cached_stmt = cached.as_ref().and_then(statement_of);
        let final_status = cached_stmt.as_ref().is_some_and(|s| s.status == RecordStatus::Revoked as i32);
        let age = cached_stmt.as_ref().map(|s| state.now_ms().saturating_sub(s.as_of_ms));
        let source = match stored.source {
            RecordSource::Delivered => "delivered",
            _ => "cached",
        };
        if final_status || age.is_some_and(|a| a <= self.config.refresh_after_ms) {
            return Ok((record, cached, source));
        }
        match self.fetch(zone, record_id, purpose).await {
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

    /// Fetches a record from its issuing zone and checks, as consumer, that it came under a policy
    /// this node holds and that allows it here. Returns the record, its status and when this node
    /// must delete it.
    async fn fetch(
        &self,
        zone: &ZoneId,
        record_id: &str,
        purpose: &str,
    ) -> Result<(Envelope, Envelope, i64), ApiError> {
        let core = &self.core;
        let req = FetchRecordRequest {
            record_id: record_id.to_string(),
            purpose: purpose.to_string(),
            issuing_zone: String::new(),
        };
        let answer = match self.transfers.peers().client(zone) {
            Ok(mut client) => client.fetch_record(req).await.map(|r| {
                let r = r.into_inner();
                (Sealed { payload: r.record, seal: r.seal, policy_id: Some(r.policy_id) }, r.retain_until_ms)
            }),
            Err(e) => return Err(e),
        };
        let promised = answer.as_ref().map(|(_, r)| *r).unwrap_or(0);
        let pull = Pull {
            provider: zone,
            method: FETCH,
            class: None,
            subject: format!("record {zone}/{record_id}"),
            purpose,
            not_found_is_an_answer: true,
        };
        self.transfers
            .pull(pull, answer.map(|(s, _)| s), |sealed, _intent| {
                let rws = RecordWithStatus::decode(sealed.payload.as_slice())
                    .map_err(|e| ApiError::new(Reason::TransferInvalid, format!("record of zone {zone}: {e}")))?;
                let (record, status) = split_record(rws, zone)?;
                let rec = Record::from_envelope(&record)?;
                let now = core.now_ms();
                let req = TransferRequest {
                    provider: zone,
                    consumer: &core.zone,
                    class: class_of(&rec),
                    subject: subject_of(&rec),
                    purpose,
                    fields: &[],
                    onward_to: None,
                    now,
                };
                let policy = self
                    .transfers
                    .policies()
                    .consumer_accepts(sealed.policy_id.as_deref().unwrap_or_default(), &req)?;
                let promised = if promised > 0 { promised } else { i64::MAX };
                let retain_until = now.saturating_add(policy.doc.retention_ms).min(promised);
                Ok((record, status, retain_until))
            })
            .await
    }

    /// Stores a fetched record, but only what is authentic and is what was asked for: a failed
    /// verification leaves nothing behind.
    async fn keep_fetched(
        &self,
        zone: &ZoneId,
        record_id: &str,
        record: &Envelope,
        status: &Envelope,
        retain_until_ms: i64,
    ) -> Result<(), ApiError> {
        let state = &*self.core;
        let registry = state.registry();
        let v = evaluate(record, Some(status), &verdict_context(state, &self.config, &registry, &[], &state.zone));
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

    /// The verdicts on every inspection result this zone holds for `lot`.
    pub(crate) async fn find_inspections(
        &self,
        lot: &str,
        recognising: &ZoneId,
        purpose: &str,
    ) -> Result<Vec<Checked>, ApiError> {
        let state = &*self.core;
        ftz_core::records::check_id("lot_id", lot)?;
        let mut out = Vec::new();
        for (zone, id) in state.store.records_for_lot(lot, 1000)? {
            let zone = ZoneId::new(zone).map_err(|e| ApiError::internal(e.to_string()))?;
            out.push(self.check(Subject::Ref { zone, record_id: id }, recognising, purpose).await?);
        }
        Ok(out)
    }

    /// A signed bundle with everything needed to check the record offline.
    pub(crate) async fn export_bundle(
        &self,
        zone: ZoneId,
        record_id: String,
        recognising: &ZoneId,
        purpose: &str,
    ) -> Result<Envelope, ApiError> {
        let state = &*self.core;
        let issuing = zone.clone();
        let checked = self.check(Subject::Ref { zone, record_id }, recognising, purpose).await?;
        let status = checked.status.ok_or_else(|| {
            ApiError::new(Reason::StatusUnavailable, "no status statement from the issuing zone: nothing to bundle")
        })?;
        let agreements = self
            .agreements
            .all()
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
            max_status_age_ms: self.config.max_status_age_ms,
        };
        Ok(envelope::seal(PayloadType::VERIFICATION_BUNDLE, &bundle, &[&state.node_key]))
    }
}

impl Verifier {
    /// Checks a bundle file with no network, as `ftzctl verify offline` does, with this node's
    /// trust in place of the verifier's arguments: the anchor is an authority key of this zone
    /// that the node's registry lists as valid now (the bundle's registry must be signed by one
    /// of them, and by its own quorum), the oldest registry version accepted is the one this
    /// node holds (a bundle cannot bring back a key or zone a newer registry retired), the
    /// record is judged now, for this zone, with this node's maximum status age. Nothing is
    /// stored. Returns the check and the anchor that held.
    pub(crate) fn verify_bundle(&self, bytes: &[u8]) -> Result<(OfflineCheck, KeyId), ApiError> {
        let core = &*self.core;
        let registry = core.registry();
        let now = core.now_ms();
        let anchors: Vec<KeyId> = registry
            .zone(&core.zone)
            .map(|z| z.keys_valid_at(KeyPurpose::Authority, now).map(|k| k.id).collect())
            .unwrap_or_default();
        let mut refused: Option<BundleError> = None;
        for anchor in &anchors {
            let inputs = OfflineInputs {
                anchor,
                recognising_zone: &core.zone,
                at: now,
                max_status_age_ms: Some(self.config.max_status_age_ms),
                min_registry_version: Some(registry.version()),
            };
            match verify_bundle(bytes, inputs) {
                Ok(check) => {
                    tracing::debug!(
                        record = %check.verdict.record_id,
                        exporting_zone = %check.exporting_zone,
                        valid = check.verdict.valid(),
                        "bundle checked"
                    );
                    return Ok((check, *anchor));
                }
                // Only the anchor differs between attempts: another key of this zone may be the
                // one that signed.
                Err(e @ BundleError::NotAnchored(_)) => {
                    refused.get_or_insert(e);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(match refused {
            Some(e) if anchors.len() > 1 => {
                let ids: Vec<String> = anchors.iter().map(ToString::to_string).collect();
                ApiError::new(e.reason(), format!("{e} (this zone's authority keys: {})", ids.join(", ")))
            }
            Some(e) => e.into(),
            None => ApiError::new(
                Reason::RegistryNotAnchored,
                format!("registry v{} lists no authority key of zone {} valid now", registry.version(), core.zone),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use ftz_core::{Reason, ZoneId, envelope::PayloadType};
    use ftz_policy::examples::sample_certification;
    use ftz_proto::RecordStatus;

    use super::Subject;
    use crate::testkit::{Kit, ZONES};

    fn own(id: &str) -> Subject {
        Subject::Ref { zone: ZoneId::new(ZONES[0]).unwrap(), record_id: id.into() }
    }

    #[tokio::test]
    async fn an_own_record_is_valid_until_revoked_and_a_changed_copy_never_is() {
        let kit = Kit::new().await;
        let sh = ZoneId::new("shanghai").unwrap();
        let c = sample_certification("SH-1", "AEO_ADVANCED", kit.now());
        let issued = kit.issuer.issue(kit.issuer.own_certification(c).unwrap()).await.unwrap();

        let v = kit.verifier.check(own("SH-1"), &sh, "verification").await.unwrap();
        assert!(v.verdict.valid(), "{}", v.verdict.explanation());
        assert_eq!(v.source, "own");

        // A copy whose payload was changed and signed again by someone else: not authentic.
        let mut forged = issued.envelope.clone();
        forged.payload.push(0);
        let f = kit.verifier.check(Subject::Supplied(forged), &sh, "verification").await.unwrap();
        assert!(!f.verdict.valid());
        assert!(f.verdict.authentic.is_err());

        kit.issuer.revoke("SH-1", "failed audit").await.unwrap();
        let r = kit.verifier.check(own("SH-1"), &sh, "verification").await.unwrap();
        assert!(!r.verdict.valid());
        assert_eq!(r.verdict.status, RecordStatus::Revoked);
        assert_eq!(r.verdict.status_reason, Some(Reason::RecordRevoked));
        // The genuine record supplied by hand is judged by the issuing zone's word: revoked.
        let s = kit.verifier.check(Subject::Supplied(issued.envelope), &sh, "verification").await.unwrap();
        assert_eq!(s.verdict.status, RecordStatus::Revoked);
    }

    #[tokio::test]
    async fn a_record_of_another_zone_is_not_recognised_here_without_an_agreement() {
        let kit = Kit::new().await;
        let c = sample_certification("SH-2", "AEO_ADVANCED", kit.now());
        kit.issuer.issue(kit.issuer.own_certification(c).unwrap()).await.unwrap();
        // Judged for hainan (a zone recognising shanghai's records) at shanghai's node.
        let hn = ZoneId::new("hainan").unwrap();
        let v = kit.verifier.check(own("SH-2"), &hn, "verification").await.unwrap();
        assert!(v.verdict.authentic.is_ok());
        assert_eq!(v.verdict.recognition.err(), Some(Reason::NoAgreement));
        // A signed record of a zone the registry does not list is not authentic.
        let doc = ftz_proto::Certification {
            issuing_zone: "atlantis".into(),
            ..sample_certification("AT-1", "AEO_ADVANCED", kit.now())
        };
        let env = kit.signed(PayloadType::CERTIFICATION, &doc, &["shanghai"]);
        let a = kit.verifier.check(Subject::Supplied(env), &hn, "verification").await.unwrap();
        assert_eq!(a.verdict.authentic.err(), Some(Reason::IssuingZoneUnknown));
    }

    #[tokio::test]
    async fn a_bundle_is_checked_with_the_nodes_own_trust_and_a_changed_byte_is_refused() {
        use ftz_core::envelope;
        use ftz_proto::{FederationRegistry, VerificationBundle};
        use prost::Message;

        let kit = Kit::new().await;
        let sh = ZoneId::new("shanghai").unwrap();
        let c = sample_certification("SH-B-1", "AEO_ADVANCED", kit.now());
        kit.issuer.issue(kit.issuer.own_certification(c).unwrap()).await.unwrap();
        let bundle = kit.verifier.export_bundle(sh.clone(), "SH-B-1".into(), &sh, "verification").await.unwrap();
        let bytes = bundle.encode_to_vec();

        let (check, anchor) = kit.verifier.verify_bundle(&bytes).unwrap();
        assert!(check.verdict.valid(), "{}", check.verdict.explanation());
        assert_eq!(anchor, kit.keys["shanghai"].authority.key_id(), "this zone's authority is the anchor");
        assert_eq!((check.exporting_zone.as_str(), check.registry_version), ("shanghai", 1));
        // Judged now: eleven minutes on, the status is older than the node's maximum age.
        kit.clock.advance_ms(11 * 60_000);
        let (stale, _) = kit.verifier.verify_bundle(&bytes).unwrap();
        assert_eq!(stale.verdict.status_reason, Some(Reason::StatusStale));

        // One changed byte: the bundle itself is refused.
        let mut changed = bytes.clone();
        let at = changed.len() / 2;
        changed[at] ^= 1;
        assert_eq!(kit.verifier.verify_bundle(&changed).err().unwrap().reason, Reason::BundleInvalid);
        assert_eq!(kit.verifier.verify_bundle(b"not a bundle").err().unwrap().reason, Reason::BundleInvalid);

        // A registry signed by a quorum of other zones but not by this zone's authority is not
        // anchored here, even inside a bundle a listed node signed.
        let mut doc: VerificationBundle = envelope::decode_payload(&bundle, PayloadType::VERIFICATION_BUNDLE).unwrap();
        let reg: FederationRegistry =
            envelope::decode_payload(doc.registry.as_ref().unwrap(), PayloadType::FEDERATION_REGISTRY).unwrap();
        doc.registry = Some(kit.signed(PayloadType::FEDERATION_REGISTRY, &reg, &["hainan", "guangdong"]));
        let resealed = envelope::seal(PayloadType::VERIFICATION_BUNDLE, &doc, &[&kit.core.node_key]);
        let e = kit.verifier.verify_bundle(&resealed.encode_to_vec()).err().unwrap();
        assert_eq!(e.reason, Reason::RegistryNotAnchored, "{}", e.message);
    }

    #[tokio::test]
    async fn a_foreign_record_from_an_unreachable_zone_is_refused_and_nothing_is_kept() {
        let kit = Kit::new().await;
        let subject = Subject::Ref { zone: ZoneId::new("hainan").unwrap(), record_id: "HN-1".into() };
        let e = kit.verifier.check(subject, &ZoneId::new("shanghai").unwrap(), "verification").await.err().unwrap();
        assert_eq!(e.reason, Reason::PeerUnavailable);
        assert!(kit.core.store.get_record("hainan", "HN-1").unwrap().is_none());
        // Bad purposes never reach the network.
        let e = kit.verifier.check(own("X"), &ZoneId::new("shanghai").unwrap(), "Not A Purpose").await.err().unwrap();
        assert_eq!(e.reason, Reason::InvalidArgument);
    }
}
