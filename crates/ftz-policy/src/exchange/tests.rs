//! Exchange policies: structure, install rules, and every decision of the evaluation.

use ftz_core::{
    Reason, SigningKey, ZoneId,
    envelope::{self, PayloadType},
};
use ftz_proto::{
    AggregationRules, DataClass, Envelope, ExchangePolicy, ExportNegativeList, FieldAction, FieldRule, MetricBound,
    PolicyFilter, PolicyRevocation, RateLimit,
};

use super::*;
use crate::testkit::*;

fn z(s: &str) -> ZoneId {
    ZoneId::new(s).unwrap()
}

pub(crate) fn industry_policy() -> ExchangePolicy {
    let rule = |f: &str, a: FieldAction, p: &str| FieldRule { field: f.into(), action: a as i32, parameter: p.into() };
    ExchangePolicy {
        policy_id: "sh-hn-industry".into(),
        version: 1,
        previous_digest: vec![],
        provider_zone: "shanghai".into(),
        consumer_zones: vec!["hainan".into()],
        data_class: DataClass::IndustryData as i32,
        filter: Some(PolicyFilter { industry_prefixes: vec!["C".into()], ..Default::default() }),
        purposes: vec!["industrial-planning".into()],
        field_rules: vec![
            rule("enterprise_uscc", FieldAction::Pseudonymise, ""),
            rule("enterprise_name", FieldAction::Drop, ""),
            rule("industry_code", FieldAction::Keep, ""),
            rule("region", FieldAction::Generalise, "prefix:4"),
            rule("period", FieldAction::Generalise, "year"),
            rule("output_value", FieldAction::Generalise, "range:1000000"),
            rule("employment", FieldAction::Keep, ""),
        ],
        aggregation: Some(AggregationRules {
            group_by: vec!["industry_code".into(), "region".into(), "period".into()],
            min_group_size: 3,
            differential_privacy: true,
            epsilon_per_query: 0.5,
            epsilon_budget: 1.0,
            budget_period_ms: DAY,
            sum_bounds: vec![MetricBound { metric: "output_value".into(), bound: 100_000_000 }],
            row_level: true,
            max_groups_per_enterprise: 1,
            delta_per_query: 1e-6,
        }),
        retention_ms: 30 * DAY,
        onward_zones: vec![],
        rate_limit: Some(RateLimit { max_requests: 10, per_ms: 60_000 }),
        valid_from_ms: NOW - DAY,
        valid_until_ms: NOW + 30 * DAY,
    }
}

pub(crate) fn cert_policy() -> ExchangePolicy {
    ExchangePolicy {
        policy_id: "sh-hn-certs".into(),
        data_class: DataClass::Certification as i32,
        filter: Some(PolicyFilter { record_types: vec!["AEO_ADVANCED".into()], ..Default::default() }),
        purposes: vec!["verification".into()],
        field_rules: vec![],
        aggregation: None,
        onward_zones: vec!["guangdong".into()],
        ..industry_policy()
    }
}

fn signed(f: &Fixture, doc: &ExchangePolicy, by: &[&str]) -> CompiledPolicy {
    let keys: Vec<&SigningKey> = by.iter().map(|s| &f.z(s).authority).collect();
    CompiledPolicy::compile(envelope::seal(PayloadType::EXCHANGE_POLICY, doc, &keys)).unwrap()
}

fn req<'a>(provider: &'a ZoneId, consumer: &'a ZoneId, class: DataClass, purpose: &'a str) -> TransferRequest<'a> {
    TransferRequest {
        provider,
        consumer,
        class,
        subject: Subject { record_type: Some("AEO_ADVANCED"), ..Default::default() },
        purpose,
        fields: &[],
        onward_to: None,
        now: NOW,
    }
}

fn reason(d: &Decision) -> Option<Reason> {
    match d {
        Decision::Allow { .. } => None,
        Decision::Deny { reason, .. } => Some(*reason),
    }
}

#[test]
fn structural_rules() {
    let cases: Vec<(&str, ExchangePolicy)> = vec![
        ("version 0", ExchangePolicy { version: 0, ..industry_policy() }),
        ("v2 without predecessor", ExchangePolicy { version: 2, ..industry_policy() }),
        ("provider as consumer", ExchangePolicy { consumer_zones: vec!["shanghai".into()], ..industry_policy() }),
        ("no purposes", ExchangePolicy { purposes: vec![], ..industry_policy() }),
        ("bad purpose", ExchangePolicy { purposes: vec!["Planning!".into()], ..industry_policy() }),
        ("no class", ExchangePolicy { data_class: 0, ..industry_policy() }),
        ("field rules on records", ExchangePolicy { field_rules: industry_policy().field_rules, ..cert_policy() }),
        ("unknown field", {
            let mut p = industry_policy();
            p.field_rules[0].field = "salary".into();
            p
        }),
        ("group by a dropped field", {
            let mut p = industry_policy();
            p.aggregation.as_mut().unwrap().group_by.push("enterprise_name".into());
            p
        }),
        ("k of 1", {
            let mut p = industry_policy();
            p.aggregation.as_mut().unwrap().min_group_size = 1;
            p
        }),
        ("epsilon above budget", {
            let mut p = industry_policy();
            p.aggregation.as_mut().unwrap().epsilon_per_query = 2.0;
            p
        }),
        ("differential privacy without delta", {
            let mut p = industry_policy();
            p.aggregation.as_mut().unwrap().delta_per_query = 0.0;
            p
        }),
        ("delta too large", {
            let mut p = industry_policy();
            p.aggregation.as_mut().unwrap().delta_per_query = 0.01;
            p
        }),
        ("bad generalisation", {
            let mut p = industry_policy();
            p.field_rules[4].parameter = "range:10".into();
            p
        }),
        ("no retention", ExchangePolicy { retention_ms: 0, ..industry_policy() }),
        ("no rate", ExchangePolicy { rate_limit: None, ..industry_policy() }),
        ("onward to a party", ExchangePolicy { onward_zones: vec!["hainan".into()], ..cert_policy() }),
        ("inverted validity", ExchangePolicy { valid_until_ms: NOW - 2 * DAY, ..industry_policy() }),
    ];
    let k = key();
    for (name, doc) in cases {
        let err = CompiledPolicy::compile(envelope::seal(PayloadType::EXCHANGE_POLICY, &doc, &[&k])).expect_err(name);
        assert_eq!(err.reason(), Reason::PolicyMalformed, "{name}: {err}");
    }
}

#[test]
fn install_rules_and_version_chain() {
    let f = Fixture::new();
    let hn = z("hainan");
    let v1 = signed(&f, &industry_policy(), &["shanghai", "hainan"]);
    assert_eq!(check_policy_install(&v1, &f.registry, &hn, None, None, NOW), Ok(InstallOutcome::Install));
    assert_eq!(check_policy_install(&v1, &f.registry, &hn, Some(&v1), None, NOW), Ok(InstallOutcome::AlreadyInstalled));

    let one_side = signed(&f, &industry_policy(), &["shanghai"]);
    let err = check_policy_install(&one_side, &f.registry, &hn, None, None, NOW).unwrap_err();
    assert_eq!((err.reason(), err.to_string().contains("missing: hainan")), (Reason::PolicyUnderSigned, true), "{err}");
    let unsigned =
        CompiledPolicy::compile(envelope::seal(PayloadType::EXCHANGE_POLICY, &industry_policy(), &[])).unwrap();
    assert_eq!(
        check_policy_install(&unsigned, &f.registry, &hn, None, None, NOW).unwrap_err().reason(),
        Reason::PolicyUnderSigned
    );

    let gd = z("guangdong");
    assert_eq!(
        check_policy_install(&v1, &f.registry, &gd, None, None, NOW).unwrap_err().reason(),
        Reason::PolicyNotForThisZone
    );
    let macau =
        signed(&f, &ExchangePolicy { consumer_zones: vec!["macau".into()], ..industry_policy() }, &["shanghai"]);
    assert_eq!(
        check_policy_install(&macau, &f.registry, &hn, None, None, NOW).unwrap_err().reason(),
        Reason::PolicyUnknownZone
    );
    assert_eq!(
        check_policy_install(&v1, &f.registry, &hn, None, None, NOW + 31 * DAY).unwrap_err().reason(),
        Reason::PolicyExpired
    );
    assert_eq!(
        check_policy_install(&v1, &f.registry, &hn, None, Some(1), NOW).unwrap_err().reason(),
        Reason::PolicyRevoked
    );

    // v2 must name v1's digest; v3 cannot skip v2.
    let v2_doc = ExchangePolicy {
        version: 2,
        previous_digest: v1.digest.to_vec(),
        purposes: vec!["statistics".into()],
        ..industry_policy()
    };
    let v2 = signed(&f, &v2_doc, &["shanghai", "hainan"]);
    assert_eq!(check_policy_install(&v2, &f.registry, &hn, Some(&v1), None, NOW), Ok(InstallOutcome::Install));
    let forged =
        signed(&f, &ExchangePolicy { previous_digest: vec![9; 32], ..v2_doc.clone() }, &["shanghai", "hainan"]);
    assert_eq!(
        check_policy_install(&forged, &f.registry, &hn, Some(&v1), None, NOW).unwrap_err().reason(),
        Reason::PolicyChainBroken
    );
    let v3 = signed(
        &f,
        &ExchangePolicy { version: 3, previous_digest: v2.digest.to_vec(), ..industry_policy() },
        &["shanghai", "hainan"],
    );
    assert_eq!(
        check_policy_install(&v3, &f.registry, &hn, Some(&v1), None, NOW).unwrap_err().reason(),
        Reason::PolicyChainBroken
    );
    assert_eq!(
        check_policy_install(&v1, &f.registry, &hn, Some(&v2), None, NOW).unwrap_err().reason(),
        Reason::PolicyOlderVersion
    );
}

#[test]
fn every_decision() {
    let f = Fixture::new();
    let (sh, hn, gd) = (z("shanghai"), z("hainan"), z("guangdong"));
    let mut set = PolicySet::default();
    let none = |_: &CompiledPolicy| Usage::default();

    // Deny by default.
    let d = set.evaluate(&req(&sh, &hn, DataClass::Certification, "verification"), none);
    assert_eq!(reason(&d), Some(Reason::NoPolicy));

    set.insert(signed(&f, &cert_policy(), &["shanghai", "hainan"]));
    set.insert(signed(&f, &industry_policy(), &["shanghai", "hainan"]));
    let allow = set.evaluate(&req(&sh, &hn, DataClass::Certification, "verification"), none);
    assert!(allow.is_allow(), "{:?}", allow.steps());

    let cases: Vec<(&str, TransferRequest<'_>, Reason)> = vec![
        ("other consumer", req(&sh, &gd, DataClass::Certification, "verification"), Reason::NoPolicy),
        ("other direction", req(&hn, &sh, DataClass::Certification, "verification"), Reason::NoPolicy),
        (
            "filter",
            TransferRequest {
                subject: Subject { record_type: Some("CCC"), ..Default::default() },
                ..req(&sh, &hn, DataClass::Certification, "verification")
            },
            Reason::NoPolicy,
        ),
        ("purpose", req(&sh, &hn, DataClass::Certification, "marketing"), Reason::PurposeNotAllowed),
        (
            "expired",
            TransferRequest { now: NOW + 31 * DAY, ..req(&sh, &hn, DataClass::Certification, "verification") },
            Reason::PolicyExpired,
        ),
        (
            "not yet",
            TransferRequest { now: NOW - 2 * DAY, ..req(&sh, &hn, DataClass::Certification, "verification") },
            Reason::PolicyExpired,
        ),
        (
            "onward to a named zone is fine, elsewhere not",
            TransferRequest { onward_to: Some(&sh), ..req(&sh, &hn, DataClass::Certification, "verification") },
            Reason::OnwardTransfer,
        ),
        (
            "dropped field",
            TransferRequest {
                fields: &["enterprise_name"],
                subject: Subject { industry_code: Some("C4011"), ..Default::default() },
                ..req(&sh, &hn, DataClass::IndustryData, "industrial-planning")
            },
            Reason::FieldNotAllowed,
        ),
        (
            "field without a rule",
            TransferRequest {
                fields: &["capacity"],
                subject: Subject { industry_code: Some("C4011"), ..Default::default() },
                ..req(&sh, &hn, DataClass::IndustryData, "industrial-planning")
            },
            Reason::FieldNotAllowed,
        ),
    ];
    for (name, r, want) in cases {
        let d = set.evaluate(&r, none);
        assert_eq!(reason(&d), Some(want), "{name}: {:?}", d.steps());
    }
    let onward_ok = TransferRequest { onward_to: Some(&gd), ..req(&sh, &hn, DataClass::Certification, "verification") };
    assert!(set.evaluate(&onward_ok, none).is_allow());

    // Rate and budget come from the node's usage counters.
    let r = req(&sh, &hn, DataClass::Certification, "verification");
    let d = set.evaluate(&r, |_| Usage { requests_in_window: 10, ..Usage::default() });
    assert_eq!(reason(&d), Some(Reason::RateLimited));
    let q = TransferRequest {
        subject: Subject { industry_code: Some("C4011"), ..Default::default() },
        ..req(&sh, &hn, DataClass::IndustryData, "industrial-planning")
    };
    assert!(
        set.evaluate(&q, |_| Usage { epsilon_spent_milli: 500, epsilon_needed_milli: 500, ..Usage::default() })
            .is_allow()
    );
    let d = set.evaluate(&q, |_| Usage { epsilon_spent_milli: 600, epsilon_needed_milli: 500, ..Usage::default() });
    assert_eq!(reason(&d), Some(Reason::BudgetExhausted));

    // A revocation takes effect at once.
    set.revoke("sh-hn-certs", 1);
    assert_eq!(reason(&set.evaluate(&r, none)), Some(Reason::PolicyRevoked));

    // The negative list comes before any policy.
    let neg = NegativeList {
        envelope: None,
        version: 1,
        classes: [DataClass::IndustryData as i32].into(),
        fields: Default::default(),
    };
    set.set_negative_list(sh.clone(), neg);
    assert_eq!(reason(&set.evaluate(&q, none)), Some(Reason::NegativeList));
    let neg = NegativeList {
        envelope: None,
        version: 2,
        classes: Default::default(),
        fields: ["employment".to_string()].into(),
    };
    set.set_negative_list(sh.clone(), neg);
    let q2 = TransferRequest { fields: &["employment"], ..q };
    assert_eq!(reason(&set.evaluate(&q2, none)), Some(Reason::NegativeList));
    assert!(set.evaluate(&q, none).is_allow());
}

#[test]
fn revocations_and_negative_lists_are_signed_by_the_right_authority() {
    let f = Fixture::new();
    let p = signed(&f, &industry_policy(), &["shanghai", "hainan"]);
    let rev = |by: &str, signer: &str| {
        let r = PolicyRevocation {
            policy_id: "sh-hn-industry".into(),
            version: 1,
            revoked_by_zone: by.into(),
            reason: "consent withdrawn".into(),
            revoked_at_ms: NOW,
        };
        envelope::seal(PayloadType::POLICY_REVOCATION, &r, &[&f.z(signer).authority])
    };
    assert!(check_revocation(&rev("hainan", "hainan"), &p, &f.registry, NOW).is_ok());
    assert!(check_revocation(&rev("shanghai", "shanghai"), &p, &f.registry, NOW).is_ok());
    assert_eq!(
        check_revocation(&rev("hainan", "shanghai"), &p, &f.registry, NOW).unwrap_err().reason(),
        Reason::PolicyUnderSigned
    );
    assert_eq!(
        check_revocation(&rev("guangdong", "guangdong"), &p, &f.registry, NOW).unwrap_err().reason(),
        Reason::PolicyMalformed
    );

    let sh = z("shanghai");
    let list = |signer: &str, version: u64| -> Envelope {
        let doc = ExportNegativeList {
            zone_id: "shanghai".into(),
            version,
            data_classes: vec![],
            fields: vec!["enterprise_name".into()],
            issued_at_ms: NOW,
        };
        envelope::seal(PayloadType::EXPORT_NEGATIVE_LIST, &doc, &[&f.z(signer).authority])
    };
    let got = check_negative_list(&list("shanghai", 1), &f.registry, &sh, 0, NOW).unwrap().unwrap();
    assert!(got.fields.contains("enterprise_name"));
    assert!(check_negative_list(&list("shanghai", 1), &f.registry, &sh, 1, NOW).unwrap().is_none());
    assert_eq!(
        check_negative_list(&list("shanghai", 1), &f.registry, &sh, 2, NOW).unwrap_err().reason(),
        Reason::PolicyOlderVersion
    );
    assert_eq!(
        check_negative_list(&list("hainan", 3), &f.registry, &sh, 0, NOW).unwrap_err().reason(),
        Reason::PolicyUnderSigned
    );
    assert_eq!(
        check_negative_list(&list("shanghai", 3), &f.registry, &z("hainan"), 0, NOW).unwrap_err().reason(),
        Reason::PolicyNotForThisZone
    );
}

/// Durations are said in words (issue 14: `2592000 s` was printed), without rounding away.
#[test]
fn durations_are_in_words_in_the_largest_exact_unit() {
    assert_eq!(duration_words(30 * 86_400_000), "30 days");
    assert_eq!(duration_words(86_400_000), "1 day");
    assert_eq!(duration_words(60_000), "1 minute");
    assert_eq!(duration_words(90_000), "90 seconds");
    assert_eq!(duration_words(7_200_000), "2 hours");
    assert_eq!(duration_words(1_500), "1500 ms");
    assert_eq!(duration_words(0), "0 seconds");
    assert_eq!(age_words(13_456), "13 seconds");
    assert_eq!(age_words(600_400), "10 minutes");
    assert_eq!(age_words(-5), "0 seconds");
    assert_eq!(FieldTreatment::Generalise(Generalisation::Year).to_string(), "generalised to the year");
    assert_eq!(FieldTreatment::Pseudonymise.to_string(), "pseudonymised (a keyed hash per zone pair)");
}
