//! Table-driven tests of the recognition rules: every reason, each from one changed input.

use ftz_core::{
    Reason, SigningKey, ZoneId,
    envelope::{self, PayloadType},
    records::record_digest,
};
use ftz_proto::{Certification, Envelope, RecordStatus, Revocation, StatusStatement};

use crate::testkit::*;

use super::*;
use crate::agreement::{AgreementDecision, check_install};

fn cert(zone: &str, cert_type: &str) -> Certification {
    Certification {
        record_id: "R-1".into(),
        issuing_zone: zone.into(),
        cert_type: cert_type.into(),
        holder_uscc: "9144030071526726XG".into(),
        holder_name: "Example Co.".into(),
        scope: "customs".into(),
        issuing_body: "Customs".into(),
        accreditation_scheme: String::new(),
        issued_at_ms: NOW - 10 * DAY,
        expires_at_ms: NOW + 100 * DAY,
    }
}

fn status(rec: &Envelope, st: RecordStatus, as_of: i64, by: &SigningKey, revocation: Option<Envelope>) -> Envelope {
    let c: Certification = envelope::decode_payload(rec, PayloadType::CERTIFICATION).unwrap();
    let s = StatusStatement {
        record_id: c.record_id,
        issuing_zone: c.issuing_zone,
        record_digest: record_digest(rec).to_vec(),
        status: st as i32,
        as_of_ms: as_of,
        revocation,
    };
    envelope::seal(PayloadType::STATUS_STATEMENT, &s, &[by])
}

fn revocation(rec: &Envelope, by: &SigningKey) -> Envelope {
    let c: Certification = envelope::decode_payload(rec, PayloadType::CERTIFICATION).unwrap();
    let r = Revocation {
        record_id: c.record_id,
        issuing_zone: c.issuing_zone,
        record_digest: record_digest(rec).to_vec(),
        reason: "fraud".into(),
        revoked_at_ms: NOW - DAY,
    };
    envelope::seal(PayloadType::REVOCATION, &r, &[by])
}

struct Case {
    name: &'static str,
    record: Envelope,
    status: Option<Envelope>,
    recognising: &'static str,
    agreements: Vec<Agreement>,
    authentic: Option<Reason>,
    status_is: RecordStatus,
    status_reason: Option<Reason>,
    recognition: Result<Recognition, Reason>,
}

#[test]
fn every_rule_and_reason() {
    let f = Fixture::new();
    let sh = f.z("shanghai");
    let seal = |c: &Certification, k: &SigningKey| envelope::seal(PayloadType::CERTIFICATION, c, &[k]);
    let good = seal(&cert("shanghai", "AEO_ADVANCED"), &sh.issuing);
    let fresh = |rec: &Envelope| Some(status(rec, RecordStatus::Active, NOW - 1_000, &sh.node, None));
    let agreement =
        || vec![f.agreement("sh-hn", "shanghai", "hainan", &["AEO_ADVANCED"], NOW + 30 * DAY, &["shanghai", "hainan"])];
    let under = Ok(Recognition::Agreement { id: "sh-hn".into(), version: 1 });
    let base = |name, record: Envelope, status| Case {
        name,
        record,
        status,
        recognising: "hainan",
        agreements: agreement(),
        authentic: None,
        status_is: RecordStatus::Active,
        status_reason: None,
        recognition: under.clone(),
    };

    let mut bad_sig = good.clone();
    bad_sig.signatures[0].sig[3] ^= 1;
    let expired_rec = seal(&Certification { expires_at_ms: NOW - 1, ..cert("shanghai", "AEO_ADVANCED") }, &sh.issuing);
    let title = seal(&cert("shanghai", "PROFESSIONAL_TITLE"), &sh.issuing);
    let macau = seal(&cert("macau", "AEO_ADVANCED"), &sh.issuing);
    let stranger = seal(&cert("shanghai", "AEO_ADVANCED"), &key());
    let too_early = seal(&cert("shanghai", "AEO_ADVANCED"), &f.late_issuing);
    let gd = seal(&cert("guangdong", "AEO_ADVANCED"), &f.z("guangdong").issuing);
    let other_rec = seal(&Certification { record_id: "R-2".into(), ..cert("shanghai", "AEO_ADVANCED") }, &sh.issuing);
    let wrong_type = envelope::seal(PayloadType::PING_ANSWER, &cert("shanghai", "AEO_ADVANCED"), &[&sh.issuing]);
    let malformed = seal(&Certification { holder_uscc: "123".into(), ..cert("shanghai", "AEO_ADVANCED") }, &sh.issuing);

    let cases = vec![
        base("valid under the agreement", good.clone(), fresh(&good)),
        Case {
            recognising: "shanghai",
            recognition: Ok(Recognition::Native),
            agreements: vec![],
            ..base("native", good.clone(), fresh(&good))
        },
        Case {
            authentic: Some(Reason::IssuingZoneUnknown),
            status_is: RecordStatus::Unknown,
            status_reason: Some(Reason::IssuingZoneUnknown),
            recognition: Err(Reason::NoAgreement),
            ..base("zone not in registry", macau, None)
        },
        Case {
            authentic: Some(Reason::IssuerKeyUnknown),
            status_is: RecordStatus::Unknown,
            status_reason: Some(Reason::IssuerKeyUnknown),
            ..base("key not listed", stranger.clone(), fresh(&stranger))
        },
        Case {
            authentic: Some(Reason::IssuerKeyNotValid),
            status_is: RecordStatus::Unknown,
            status_reason: Some(Reason::IssuerKeyNotValid),
            ..base("key not valid when signed", too_early.clone(), fresh(&too_early))
        },
        Case {
            authentic: Some(Reason::BadSignature),
            status_is: RecordStatus::Unknown,
            status_reason: Some(Reason::BadSignature),
            ..base("failing signature", bad_sig.clone(), fresh(&bad_sig))
        },
        Case {
            status_is: RecordStatus::Expired,
            status_reason: Some(Reason::RecordExpired),
            ..base("expired record", expired_rec.clone(), fresh(&expired_rec))
        },
        Case {
            status_is: RecordStatus::Unknown,
            status_reason: Some(Reason::StatusStale),
            ..base(
                "stale status",
                good.clone(),
                Some(status(&good, RecordStatus::Active, NOW - MAX_AGE - 1, &sh.node, None)),
            )
        },
        base(
            "status just within the maximum age",
            good.clone(),
            Some(status(&good, RecordStatus::Active, NOW - MAX_AGE, &sh.node, None)),
        ),
        Case {
            status_is: RecordStatus::Unknown,
            status_reason: Some(Reason::StatusUnavailable),
            ..base("no status", good.clone(), None)
        },
        Case {
            status_is: RecordStatus::Revoked,
            status_reason: Some(Reason::RecordRevoked),
            ..base(
                "revoked",
                good.clone(),
                Some(status(
                    &good,
                    RecordStatus::Revoked,
                    NOW - 2 * MAX_AGE,
                    &sh.node,
                    Some(revocation(&good, &sh.issuing)),
                )),
            )
        },
        Case {
            status_is: RecordStatus::Unknown,
            status_reason: Some(Reason::StatusInvalid),
            ..base(
                "revocation signed by the node key",
                good.clone(),
                Some(status(&good, RecordStatus::Revoked, NOW, &sh.node, Some(revocation(&good, &sh.node)))),
            )
        },
        Case {
            status_is: RecordStatus::Unknown,
            status_reason: Some(Reason::StatusInvalid),
            ..base(
                "status signed by the issuing key",
                good.clone(),
                Some(status(&good, RecordStatus::Active, NOW, &sh.issuing, None)),
            )
        },
        Case {
            status_is: RecordStatus::Unknown,
            status_reason: Some(Reason::StatusInvalid),
            ..base("status of another record", good.clone(), fresh(&other_rec))
        },
        Case {
            status_is: RecordStatus::Unknown,
            status_reason: Some(Reason::StatusInvalid),
            ..base(
                "status from the future",
                good.clone(),
                Some(status(&good, RecordStatus::Active, NOW + 3_600_000, &sh.node, None)),
            )
        },
        Case { recognition: Err(Reason::NotCovered), ..base("type no agreement covers", title.clone(), fresh(&title)) },
        Case {
            recognition: Err(Reason::NoAgreement),
            recognising: "hainan",
            ..base(
                "no agreement between the zones",
                gd.clone(),
                Some(status(&gd, RecordStatus::Active, NOW, &f.z("guangdong").node, None)),
            )
        },
        Case {
            recognition: Err(Reason::AgreementExpired),
            agreements: vec![f.agreement(
                "sh-hn",
                "shanghai",
                "hainan",
                &["AEO_ADVANCED"],
                NOW - 1,
                &["shanghai", "hainan"],
            )],
            ..base("expired agreement", good.clone(), fresh(&good))
        },
        Case {
            recognition: Err(Reason::NoAgreement),
            agreements: vec![f.agreement(
                "hn-sh",
                "hainan",
                "shanghai",
                &["AEO_ADVANCED"],
                NOW + DAY,
                &["shanghai", "hainan"],
            )],
            ..base("agreement in the other direction only", good.clone(), fresh(&good))
        },
        Case {
            authentic: Some(Reason::WrongPayloadType),
            status_is: RecordStatus::Unknown,
            status_reason: Some(Reason::WrongPayloadType),
            recognition: Err(Reason::WrongPayloadType),
            ..base("not a record", wrong_type, None)
        },
        Case {
            authentic: Some(Reason::RecordMalformed),
            status_is: RecordStatus::Unknown,
            status_reason: Some(Reason::RecordMalformed),
            recognition: Err(Reason::RecordMalformed),
            ..base("malformed record", malformed, None)
        },
    ];

    for c in cases {
        let zone = ZoneId::new(c.recognising).unwrap();
        let ctx = VerdictContext {
            registry: &f.registry,
            agreements: &c.agreements,
            recognising_zone: &zone,
            now: NOW,
            max_status_age_ms: MAX_AGE,
            max_clock_skew_ms: 60_000,
        };
        let v = evaluate(&c.record, c.status.as_ref(), &ctx);
        assert_eq!(v.authentic.err(), c.authentic, "{}: authenticity", c.name);
        assert_eq!((v.status, v.status_reason), (c.status_is, c.status_reason), "{}: status", c.name);
        assert_eq!(v.recognition, c.recognition, "{}: recognition", c.name);
        let expect_valid = c.authentic.is_none() && c.status_is == RecordStatus::Active && c.recognition.is_ok();
        assert_eq!(v.valid(), expect_valid, "{}: {}", c.name, v.explanation());
        assert!(v.explanation().starts_with(if expect_valid { "VALID" } else { "NOT VALID" }), "{}", c.name);
    }
}

#[test]
fn scope_body_and_scheme_lists_narrow_a_rule() {
    let f = Fixture::new();
    let sh = f.z("shanghai");
    let mut doc = f.agreement("a", "shanghai", "hainan", &["CCC"], NOW + DAY, &["shanghai", "hainan"]).doc;
    doc.rules[0].scope_prefixes = vec!["8507".into()];
    doc.rules[0].issuing_bodies = vec!["CQC".into()];
    doc.rules[0].accreditation_schemes = vec!["CNCA".into()];
    let a = Agreement::parse(envelope::seal(PayloadType::RECOGNITION_AGREEMENT, &doc, &[&sh.authority])).unwrap();
    let ok = Certification {
        cert_type: "CCC".into(),
        scope: "850760 lithium cells".into(),
        issuing_body: "CQC".into(),
        accreditation_scheme: "CNCA".into(),
        ..cert("shanghai", "CCC")
    };
    let rec = |c: Certification| ftz_core::records::Record::Certification(c);
    assert!(a.covers(&rec(ok.clone())));
    assert!(!a.covers(&rec(Certification { scope: "8471 computers".into(), ..ok.clone() })));
    assert!(!a.covers(&rec(Certification { issuing_body: "Other".into(), ..ok.clone() })));
    assert!(!a.covers(&rec(Certification { accreditation_scheme: String::new(), ..ok.clone() })));
    assert!(!a.covers(&rec(Certification { cert_type: "ISO_9001".into(), ..ok })));
}

#[test]
fn agreement_install_rules() {
    let f = Fixture::new();
    let hn = ZoneId::new("hainan").unwrap();
    let sh_hn = f.agreement("sh-hn", "shanghai", "hainan", &["AEO_ADVANCED"], NOW + DAY, &["shanghai", "hainan"]);
    assert!(matches!(check_install(&sh_hn, &f.registry, &hn, None, NOW), Ok(AgreementDecision::Install { .. })));
    assert_eq!(check_install(&sh_hn, &f.registry, &hn, Some(&sh_hn), NOW), Ok(AgreementDecision::AlreadyInstalled));

    let one_side = f.agreement("sh-hn", "shanghai", "hainan", &["AEO_ADVANCED"], NOW + DAY, &["shanghai"]);
    let err = check_install(&one_side, &f.registry, &hn, None, NOW).unwrap_err();
    assert_eq!(err.reason(), Reason::AgreementUnderSigned);
    assert!(err.to_string().contains("missing: hainan"), "{err}");
    let third_party =
        f.agreement("sh-hn", "shanghai", "hainan", &["AEO_ADVANCED"], NOW + DAY, &["shanghai", "guangdong"]);
    assert_eq!(
        check_install(&third_party, &f.registry, &hn, None, NOW).unwrap_err().reason(),
        Reason::AgreementUnderSigned
    );

    let expired = f.agreement("sh-hn", "shanghai", "hainan", &["AEO_ADVANCED"], NOW - 1, &["shanghai", "hainan"]);
    assert_eq!(check_install(&expired, &f.registry, &hn, None, NOW).unwrap_err().reason(), Reason::AgreementExpired);

    let unknown = f.agreement("x", "shanghai", "macau", &["AEO_ADVANCED"], NOW + DAY, &["shanghai"]);
    assert_eq!(
        check_install(&unknown, &f.registry, &hn, None, NOW).unwrap_err().reason(),
        Reason::AgreementUnknownZone
    );

    let not_ours = f.agreement("x", "shanghai", "guangdong", &["AEO_ADVANCED"], NOW + DAY, &["shanghai", "guangdong"]);
    assert_eq!(
        check_install(&not_ours, &f.registry, &hn, None, NOW).unwrap_err().reason(),
        Reason::AgreementNotForThisZone
    );

    let mut v2doc = sh_hn.doc.clone();
    v2doc.version = 2;
    let keys = [&f.z("shanghai").authority, &f.z("hainan").authority];
    let v2 = Agreement::parse(envelope::seal(PayloadType::RECOGNITION_AGREEMENT, &v2doc, &keys)).unwrap();
    assert!(matches!(check_install(&v2, &f.registry, &hn, Some(&sh_hn), NOW), Ok(AgreementDecision::Install { .. })));
    assert_eq!(
        check_install(&sh_hn, &f.registry, &hn, Some(&v2), NOW).unwrap_err().reason(),
        Reason::AgreementOlderVersion
    );

    let mut bad = sh_hn.doc.clone();
    bad.rules[0].record_types.clear();
    let env = envelope::seal(PayloadType::RECOGNITION_AGREEMENT, &bad, &keys);
    assert_eq!(Agreement::parse(env).unwrap_err().reason(), Reason::AgreementMalformed);
    let mut same = sh_hn.doc.clone();
    same.to_zone = "shanghai".into();
    let env = envelope::seal(PayloadType::RECOGNITION_AGREEMENT, &same, &keys);
    assert_eq!(Agreement::parse(env).unwrap_err().reason(), Reason::AgreementMalformed);
}
