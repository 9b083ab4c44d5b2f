//! Mutual recognition across real nodes: issue in one zone, verify in another, revoke and see it
//! everywhere, fail closed when status is lost, export and check offline, push inspection results.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use ftz_core::{Clock, ManualClock, Reason, Role, SigningKey, SystemClock, envelope};
use ftz_policy::bundle::{OfflineInputs, verify_bundle};
use ftz_proto::{
    Certification, FindInspectionsRequest, InstallAgreementRequest, IssueCertificationRequest, PushInspectionRequest,
    RecordInspectionRequest, RecordRef, RecordStatus, RevokeRequest, VerificationResult, VerifyRecordRequest,
    verify_record_request::Subject,
};
use ftz_tests::{Cluster, DAY_MS, cert_rule, certification, inspection, inspection_rule, reason};
use tonic::Code;

const ZONES: [&str; 3] = ["shanghai", "hainan", "guangdong"];
const MAX_AGE: i64 = 600_000; // the node default

async fn verify_ref(c: &Cluster, at: &str, zone: &str, id: &str) -> Result<VerificationResult, tonic::Status> {
    c.verifier(at)
        .verify_record(VerifyRecordRequest {
            subject: Some(Subject::Ref(RecordRef { issuing_zone: zone.into(), record_id: id.into() })),
            recognising_zone: String::new(),
            purpose: "customs-clearance".into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn verify_supplied(c: &Cluster, at: &str, record: ftz_proto::Envelope) -> VerificationResult {
    c.verifier(at)
        .verify_record(VerifyRecordRequest {
            subject: Some(Subject::Record(record)),
            recognising_zone: String::new(),
            purpose: "customs-clearance".into(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn issue(c: &Cluster, zone: &str, cert: Certification) -> ftz_proto::IssueResponse {
    c.issuer(zone)
        .issue_certification(IssueCertificationRequest { certification: Some(cert) })
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn a_certification_issued_in_shanghai_is_verified_and_recognised_in_hainan() {
    let c = Cluster::start(&ZONES).await;
    c.agree(
        "sh-hn-aeo",
        "shanghai",
        "hainan",
        vec![cert_rule(&["AEO_ADVANCED", "HIGH_TECH_ENTERPRISE"])],
        365 * DAY_MS,
    )
    .await;
    let issued = issue(&c, "shanghai", certification(&c, "SH-AEO-0001", "AEO_ADVANCED")).await;
    assert!(!issued.already_issued);

    let v = verify_ref(&c, "hainan", "shanghai", "SH-AEO-0001").await.unwrap();
    assert!(v.valid, "{}", v.explanation);
    assert!(v.authentic && v.recognised);
    assert_eq!(v.status, RecordStatus::Active as i32);
    assert_eq!((v.agreement_id.as_str(), v.agreement_version), ("sh-hn-aeo", 1));
    assert_eq!(v.source, "fetched");
    assert!(v.status_age_ms >= 0 && v.status_age_ms < MAX_AGE);
    // The fetched record is kept: the next check needs no transfer.
    let again = verify_ref(&c, "hainan", "shanghai", "SH-AEO-0001").await.unwrap();
    assert_eq!(again.source, "cached");
    assert!(again.valid);

    // In shanghai itself it is recognised natively.
    let home = verify_ref(&c, "shanghai", "shanghai", "SH-AEO-0001").await.unwrap();
    assert!(home.valid && home.agreement_id.is_empty(), "{}", home.explanation);

    // A type the agreement does not cover: authentic and active, but not recognised.
    issue(&c, "shanghai", certification(&c, "SH-TITLE-9", "PROFESSIONAL_TITLE")).await;
    let title = verify_ref(&c, "hainan", "shanghai", "SH-TITLE-9").await.unwrap();
    assert!(title.authentic && !title.recognised && !title.valid);
    assert_eq!(title.recognition_reason, "NOT_COVERED");

    // Without an exchange policy from shanghai to guangdong, the record does not leave shanghai.
    let refused = verify_ref(&c, "guangdong", "shanghai", "SH-AEO-0001").await.unwrap_err();
    assert_eq!(ftz_tests::reason_of(&refused), Some(Reason::PeerRefused));
    assert_eq!(ftz_client::status_meta(&refused, "peer_reason").as_deref(), Some("NO_POLICY"));
    assert!(c.local.node("guangdong").unwrap().store().get_record("shanghai", "SH-AEO-0001").unwrap().is_none());
    // With one, it does, but no agreement recognises it in guangdong.
    c.allow("sh-gd-certs", "shanghai", "guangdong", ftz_proto::DataClass::Certification).await;
    let gd = verify_ref(&c, "guangdong", "shanghai", "SH-AEO-0001").await.unwrap();
    assert_eq!((gd.authentic, gd.recognised, gd.recognition_reason.as_str()), (true, false, "NO_AGREEMENT"));
    c.shutdown().await;
}

#[tokio::test]
async fn issuing_is_idempotent_and_conflicts_change_nothing() {
    let c = Cluster::start(&["shanghai", "hainan"]).await;
    let cert = certification(&c, "SH-CCC-1", "CCC");
    let first = issue(&c, "shanghai", cert.clone()).await;
    let second = issue(&c, "shanghai", cert.clone()).await;
    assert!(second.already_issued);
    assert_eq!(first.record, second.record);

    let changed = Certification { holder_name: "Someone Else Ltd.".into(), ..cert };
    let res =
        c.issuer("shanghai").issue_certification(IssueCertificationRequest { certification: Some(changed) }).await;
    assert_eq!(reason(res), (Code::AlreadyExists, Some(Reason::RecordConflict)));
    let v = verify_ref(&c, "shanghai", "shanghai", "SH-CCC-1").await.unwrap();
    assert_eq!(v.record, first.record);

    // Bad fields and wrong zones are refused with the field named.
    let bad = Certification { holder_uscc: "12345".into(), ..certification(&c, "SH-X", "CCC") };
    let err = c
        .issuer("shanghai")
        .issue_certification(IssueCertificationRequest { certification: Some(bad) })
        .await
        .unwrap_err();
    assert_eq!(ftz_tests::reason_of(&err), Some(Reason::RecordMalformed));
    assert!(err.message().contains("holder_uscc"), "{}", err.message());
    let foreign = Certification { issuing_zone: "hainan".into(), ..certification(&c, "SH-Y", "CCC") };
    let res =
        c.issuer("shanghai").issue_certification(IssueCertificationRequest { certification: Some(foreign) }).await;
    assert_eq!(reason(res), (Code::InvalidArgument, Some(Reason::RecordMalformed)));
    // Only the issuer role issues.
    let mut as_enterprise = ftz_proto::issuer_client::IssuerClient::new(c.user("shanghai", Role::Enterprise));
    let res = as_enterprise
        .issue_certification(IssueCertificationRequest { certification: Some(certification(&c, "SH-Z", "CCC")) })
        .await;
    assert_eq!(reason(res), (Code::PermissionDenied, Some(Reason::RoleNotAllowed)));
    c.shutdown().await;
}

#[tokio::test]
async fn a_revocation_reaches_the_zone_that_holds_the_record() {
    let c = Cluster::start(&ZONES).await;
    c.agree("sh-hn", "shanghai", "hainan", vec![cert_rule(&["AEO_ADVANCED"])], 365 * DAY_MS).await;
    issue(&c, "shanghai", certification(&c, "SH-AEO-7", "AEO_ADVANCED")).await;
    assert!(verify_ref(&c, "hainan", "shanghai", "SH-AEO-7").await.unwrap().valid);

    let r = c
        .issuer("shanghai")
        .revoke(RevokeRequest { record_id: "SH-AEO-7".into(), reason: "certificate obtained by fraud".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(!r.already_revoked);
    assert_eq!((r.notified_zones, r.pending_zones), (vec!["hainan".to_string()], vec![]));

    // Hainan knows without asking again: its stored status is the signed revocation.
    let v = verify_ref(&c, "hainan", "shanghai", "SH-AEO-7").await.unwrap();
    assert_eq!(v.status, RecordStatus::Revoked as i32, "{}", v.explanation);
    assert_eq!((v.valid, v.status_reason.as_str(), v.source.as_str()), (false, "RECORD_REVOKED", "cached"));
    assert!(v.revocation.is_some());

    // Revoking again changes nothing; unknown ids are refused.
    let again = c
        .issuer("shanghai")
        .revoke(RevokeRequest { record_id: "SH-AEO-7".into(), reason: "again".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(again.already_revoked);
    let res = c.issuer("shanghai").revoke(RevokeRequest { record_id: "SH-NOPE".into(), reason: "x".into() }).await;
    assert_eq!(reason(res), (Code::NotFound, Some(Reason::RecordNotFound)));
    c.shutdown().await;
}

#[tokio::test]
async fn a_lost_revocation_notice_leaves_the_status_unknown_after_the_maximum_age() {
    let clock = ManualClock::new(SystemClock.now_ms());
    let mut c = Cluster::start_with_clock(&["shanghai", "hainan"], Arc::new(clock.clone())).await;
    c.agree("sh-hn", "shanghai", "hainan", vec![cert_rule(&["AEO_ADVANCED"])], 365 * DAY_MS).await;
    issue(&c, "shanghai", certification(&c, "SH-AEO-8", "AEO_ADVANCED")).await;
    assert!(verify_ref(&c, "hainan", "shanghai", "SH-AEO-8").await.unwrap().valid);

    // Hainan is down while shanghai revokes: the notice cannot be delivered ...
    c.local.stop("hainan").await.unwrap();
    let r = c
        .issuer("shanghai")
        .revoke(RevokeRequest { record_id: "SH-AEO-8".into(), reason: "fraud".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.pending_zones, vec!["hainan".to_string()]);
    // ... and shanghai goes down before any retry, so the notice is lost for good.
    c.local.stop("shanghai").await.unwrap();
    c.local.restart("hainan").await.unwrap();

    // Within the maximum age hainan still reports the status it was told, with its age.
    clock.advance_ms(MAX_AGE / 2);
    let v = verify_ref(&c, "hainan", "shanghai", "SH-AEO-8").await.unwrap();
    assert_eq!(v.status, RecordStatus::Active as i32, "{}", v.explanation);
    assert_eq!(v.status_age_ms, MAX_AGE / 2);

    // Past it, the refresh fails (shanghai is down) and the status is unknown: never valid.
    clock.advance_ms(MAX_AGE / 2 + 1);
    let v = verify_ref(&c, "hainan", "shanghai", "SH-AEO-8").await.unwrap();
    assert_eq!(v.status, RecordStatus::Unknown as i32, "{}", v.explanation);
    assert_eq!((v.valid, v.status_reason.as_str()), (false, "STATUS_STALE"));
    assert!(v.authentic && v.recognised);
    c.shutdown().await;
}

#[tokio::test]
async fn an_exported_bundle_checks_offline_and_any_changed_byte_is_detected() {
    let c = Cluster::start(&ZONES).await;
    c.agree("sh-hn", "shanghai", "hainan", vec![cert_rule(&["AEO_ADVANCED"])], 365 * DAY_MS).await;
    issue(&c, "shanghai", certification(&c, "SH-AEO-9", "AEO_ADVANCED")).await;
    let bundle = c.export_bundle("hainan", "shanghai", "SH-AEO-9").await;
    let bytes = prost::Message::encode_to_vec(&bundle);
    let anchor = c.zone("hainan").authority_key_id;
    let hainan = ftz_core::ZoneId::new("hainan").unwrap();
    let now = c.clock.now_ms();
    let inputs = OfflineInputs {
        anchor: &anchor,
        recognising_zone: &hainan,
        at: now,
        max_status_age_ms: None,
        min_registry_version: None,
    };

    let ok = verify_bundle(&bytes, inputs).unwrap();
    assert!(ok.verdict.valid(), "{}", ok.verdict.explanation());
    assert_eq!((ok.exporting_zone.as_str(), ok.agreements), ("hainan", 1));

    // Later than the maximum status age, offline too the status is unknown.
    let late = verify_bundle(&bytes, OfflineInputs { at: now + MAX_AGE + 1, ..inputs }).unwrap();
    assert_eq!(late.verdict.status_reason, Some(Reason::StatusStale));
    // An anchor that did not sign the registry is refused.
    let stranger = SigningKey::generate().unwrap().0.key_id();
    let err = verify_bundle(&bytes, OfflineInputs { anchor: &stranger, ..inputs }).unwrap_err();
    assert_eq!(err.reason(), Reason::RegistryNotAnchored);

    // Every single changed byte is caught.
    for i in 0..bytes.len() {
        let mut t = bytes.clone();
        t[i] ^= 0x01;
        assert!(verify_bundle(&t, inputs).is_err(), "flipping byte {i} of {} went unnoticed", bytes.len());
    }
    c.shutdown().await;
}

#[tokio::test]
async fn an_inspection_result_pushed_to_shanghai_is_found_there_once_despite_a_retry() {
    let mut c = Cluster::start(&ZONES).await;
    c.agree("gd-sh-cnas", "guangdong", "shanghai", vec![inspection_rule("CNAS")], 365 * DAY_MS).await;
    let result = inspection(&c, "GD-RPT-2026-001", "LOT-8507-42");
    c.issuer("guangdong").record_inspection(RecordInspectionRequest { result: Some(result) }).await.unwrap();

    let push = PushInspectionRequest {
        record_id: "GD-RPT-2026-001".into(),
        to_zone: "shanghai".into(),
        purpose: String::new(),
    };
    let first = c.issuer("guangdong").push_inspection(push.clone()).await.unwrap().into_inner();
    let retry = c.issuer("guangdong").push_inspection(push).await.unwrap().into_inner();
    assert!(!first.already_delivered && retry.already_delivered);

    // Guangdong goes away: shanghai's enterprise finds the result without calling it.
    c.local.stop("guangdong").await.unwrap();
    let found = c
        .verifier("shanghai")
        .find_inspections(FindInspectionsRequest {
            lot_id: "LOT-8507-42".into(),
            recognising_zone: String::new(),
            purpose: "import-clearance".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(found.len(), 1, "exactly one delivered result");
    let v = &found[0];
    assert!(v.valid, "{}", v.explanation);
    assert_eq!((v.source.as_str(), v.agreement_id.as_str()), ("delivered", "gd-sh-cnas"));
    c.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_a_distinct_reason_and_stores_nothing() {
    let clock = ManualClock::new(SystemClock.now_ms());
    let c = Cluster::start_with_clock(&ZONES, Arc::new(clock.clone())).await;
    c.agree("sh-hn", "shanghai", "hainan", vec![cert_rule(&["AEO_ADVANCED"])], 2 * DAY_MS).await;
    let good = issue(&c, "shanghai", certification(&c, "SH-AEO-10", "AEO_ADVANCED")).await.record.unwrap();
    let hainan_store = c.local.node("hainan").unwrap().store().clone();

    // Unknown record.
    let res = verify_ref(&c, "hainan", "shanghai", "SH-NOT-THERE").await;
    assert_eq!(reason(res), (Code::NotFound, Some(Reason::RecordNotFound)));
    assert!(hainan_store.get_record("shanghai", "SH-NOT-THERE").unwrap().is_none());

    // A record of a zone the registry does not list.
    let sh_issuing = ftz_pki::files::read_signing_key(&c.zone("shanghai").dir.join("issuing.key")).unwrap();
    let macau = Certification { issuing_zone: "macau".into(), ..certification(&c, "MO-1", "AEO_ADVANCED") };
    let env = envelope::seal(envelope::PayloadType::CERTIFICATION, &macau, &[&sh_issuing]);
    let v = verify_supplied(&c, "hainan", env).await;
    assert_eq!((v.authentic, v.authenticity_reason.as_str()), (false, "ISSUING_ZONE_UNKNOWN"));

    // Signed by a key the registry does not list as shanghai's issuing key.
    let rogue = SigningKey::generate().unwrap().0;
    let forged = Certification { issuing_zone: "shanghai".into(), ..certification(&c, "SH-FORGED", "AEO_ADVANCED") };
    let env = envelope::seal(envelope::PayloadType::CERTIFICATION, &forged, &[&rogue]);
    let v = verify_supplied(&c, "hainan", env).await;
    assert_eq!((v.valid, v.authenticity_reason.as_str()), (false, "ISSUER_KEY_UNKNOWN"));
    assert!(hainan_store.get_record("shanghai", "SH-FORGED").unwrap().is_none());

    // A failing signature on the real record.
    let mut tampered = good.clone();
    tampered.signatures[0].sig[0] ^= 0x80;
    let v = verify_supplied(&c, "hainan", tampered).await;
    assert_eq!((v.valid, v.authenticity_reason.as_str()), (false, "BAD_SIGNATURE"));

    // The untouched record is valid today ...
    assert!(verify_supplied(&c, "hainan", good.clone()).await.valid);
    // ... and three days later the agreement has expired.
    clock.advance_ms(3 * DAY_MS);
    let v = verify_supplied(&c, "hainan", good.clone()).await;
    assert_eq!((v.valid, v.recognition_reason.as_str()), (false, "AGREEMENT_EXPIRED"), "{}", v.explanation);

    // An expired record.
    let mut short = certification(&c, "SH-SHORT", "AEO_ADVANCED");
    short.expires_at_ms = c.clock.now_ms() + 1_000;
    issue(&c, "shanghai", short).await;
    clock.advance_ms(2_000);
    let v = verify_ref(&c, "shanghai", "shanghai", "SH-SHORT").await.unwrap();
    assert_eq!((v.status, v.status_reason.as_str()), (RecordStatus::Expired as i32, "RECORD_EXPIRED"));

    // An agreement signed by one side only is refused over the API too.
    let doc = ftz_proto::RecognitionAgreement {
        agreement_id: "one-sided".into(),
        version: 1,
        from_zone: "shanghai".into(),
        to_zone: "guangdong".into(),
        rules: vec![cert_rule(&["CCC"])],
        valid_from_ms: c.clock.now_ms(),
        valid_until_ms: c.clock.now_ms() + DAY_MS,
    };
    let env = envelope::seal(envelope::PayloadType::RECOGNITION_AGREEMENT, &doc, &[&c.authority_key("shanghai")]);
    let res = c.admin("guangdong").install_agreement(InstallAgreementRequest { agreement: Some(env) }).await;
    assert_eq!(reason(res), (Code::PermissionDenied, Some(Reason::AgreementUnderSigned)));
    c.shutdown().await;
}
