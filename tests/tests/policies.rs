//! Exchange policies enforced at the source, across real nodes: industry data aggregates with
//! small groups suppressed and a durable privacy budget, minimised rows with pseudonyms, purpose
//! binding, rate limits with a retry hint, the negative list, revocation at once, retention at
//! the consumer, onward transfer, explain.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use ftz_client::status_meta;
use ftz_core::{Clock, ManualClock, Reason, SystemClock, ZoneId, envelope};
use ftz_proto::{
    AggregateFunction, AggregateQuery, AggregationRules, DataClass, ExchangePolicy, ExplainPolicyRequest,
    ExportNegativeList, FetchIndustryRowsRequest, FetchRecordRequest, FieldAction, FieldRule, ImportRowsRequest,
    IndustryRow, InstallNegativeListRequest, InstallPolicyRequest, IssueCertificationRequest, MetricBound,
    PolicyRevocation, QueryIndustryDataRequest, RateLimit, RecordRef, RevokePolicyRequest, VerifyRecordRequest,
    peer_client::PeerClient, verify_record_request::Subject,
};
use ftz_tests::{Cluster, DAY_MS, certification, reason, reason_of};
use tonic::Code;

const ZONES: [&str; 3] = ["shanghai", "hainan", "guangdong"];

fn uscc(i: usize) -> String {
    ftz_tests::uscc("9131011500000", i as u64)
}

/// Enterprises in C4011: enough that, under differential privacy, the group is released whatever
/// the noise of partition selection (its threshold is about 54 above the minimum here).
const C4011: usize = 150;

/// 150 enterprises in C4011 and 3 in C4012, two quarters each.
fn dataset() -> Vec<IndustryRow> {
    let mut rows = Vec::new();
    for i in 0..C4011 + 3 {
        for (q, period) in ["2026-Q1", "2026-Q2"].iter().enumerate() {
            rows.push(IndustryRow {
                line: (i * 2 + q + 2) as u64,
                enterprise_uscc: uscc(i),
                enterprise_name: format!("Enterprise {i}"),
                industry_code: if i < C4011 { "C4011".into() } else { "C4012".into() },
                region: "310115".into(),
                period: period.to_string(),
                output_value: 1_000_000 * (i as i64 + 1),
                employment: 50 + i as i64,
                capacity: 100,
            });
        }
    }
    rows
}

fn industry_policy(c: &Cluster, id: &str, consumer: &str) -> ExchangePolicy {
    let rule = |f: &str, a: FieldAction, p: &str| FieldRule { field: f.into(), action: a as i32, parameter: p.into() };
    let now = c.clock.now_ms();
    ExchangePolicy {
        policy_id: id.into(),
        version: 1,
        previous_digest: vec![],
        provider_zone: "shanghai".into(),
        consumer_zones: vec![consumer.into()],
        data_class: DataClass::IndustryData as i32,
        filter: None,
        purposes: vec!["industrial-planning".into()],
        field_rules: vec![
            rule("enterprise_uscc", FieldAction::Pseudonymise, ""),
            rule("enterprise_name", FieldAction::Drop, ""),
            rule("industry_code", FieldAction::Keep, ""),
            rule("region", FieldAction::Generalise, "prefix:4"),
            rule("period", FieldAction::Generalise, "year"),
            rule("employment", FieldAction::Keep, ""),
        ],
        aggregation: Some(AggregationRules {
            group_by: vec!["industry_code".into(), "period".into()],
            min_group_size: 5,
            differential_privacy: true,
            epsilon_per_query: 0.5,
            epsilon_budget: 1.0,
            budget_period_ms: 30 * DAY_MS,
            sum_bounds: vec![MetricBound { metric: "employment".into(), bound: 1000 }],
            row_level: true,
            max_groups_per_enterprise: 1,
            delta_per_query: 1e-6,
        }),
        retention_ms: 7 * DAY_MS,
        onward_zones: vec![],
        rate_limit: Some(RateLimit { max_requests: 100, per_ms: 60_000 }),
        valid_from_ms: now - 60_000,
        valid_until_ms: now + 365 * DAY_MS,
    }
}

async fn import(c: &Cluster) {
    let r = c.issuer("shanghai").import_rows(ImportRowsRequest { rows: dataset() }).await.unwrap().into_inner();
    let n = 2 * (C4011 as u64 + 3);
    assert_eq!((u64::from(r.imported), r.total_rows), (n, n));
}

fn count_by_industry(purpose: &str) -> QueryIndustryDataRequest {
    QueryIndustryDataRequest {
        provider_zone: "shanghai".into(),
        query: Some(AggregateQuery {
            function: AggregateFunction::Count as i32,
            metric: String::new(),
            group_by: vec!["industry_code".into()],
            filters: vec![],
            purpose: purpose.into(),
        }),
    }
}

/// The provider's reason for a refusal relayed by the consumer's node.
fn peer_reason(s: &tonic::Status) -> Option<String> {
    let relayed = reason_of(s);
    assert!(matches!(relayed, Some(Reason::PeerRefused | Reason::RateLimited | Reason::BudgetExhausted)), "{s:?}");
    status_meta(s, "peer_reason")
}

#[tokio::test]
async fn aggregates_suppress_small_groups_and_spend_a_durable_budget() {
    let mut c = Cluster::start(&ZONES).await;
    import(&c).await;

    // Deny by default: no policy, nothing leaves.
    let err = c.verifier("hainan").query_industry_data(count_by_industry("industrial-planning")).await.unwrap_err();
    assert_eq!(peer_reason(&err).as_deref(), Some("NO_POLICY"));

    c.local.install_policy(&industry_policy(&c, "sh-hn-industry", "hainan")).await.unwrap();
    let a =
        c.verifier("hainan").query_industry_data(count_by_industry("industrial-planning")).await.unwrap().into_inner();
    // C4012 has 3 enterprises, under the minimum of 5: never released. C4011's count is noised;
    // how many groups were held back is not told under differential privacy.
    assert_eq!((a.groups.len(), a.suppressed_groups, a.noised), (1, 0, true));
    assert_eq!(a.groups[0].key, vec!["C4011".to_string()]);
    assert!((a.groups[0].value - C4011 as f64).abs() < 60.0, "{}", a.groups[0].value);
    assert_eq!((a.epsilon_charged, a.epsilon_remaining), (0.5, 0.5));
    assert!(a.retain_until_ms > c.clock.now_ms());

    // A purpose the policy does not name, a group-by it does not allow: refused, no budget spent.
    let err = c.verifier("hainan").query_industry_data(count_by_industry("marketing")).await.unwrap_err();
    assert_eq!(peer_reason(&err).as_deref(), Some("PURPOSE_NOT_ALLOWED"));
    let mut by_name = count_by_industry("industrial-planning");
    by_name.query.as_mut().unwrap().group_by = vec!["enterprise_name".into()];
    let err = c.verifier("hainan").query_industry_data(by_name).await.unwrap_err();
    assert_eq!(peer_reason(&err).as_deref(), Some("FIELD_NOT_ALLOWED"));

    c.verifier("hainan").query_industry_data(count_by_industry("industrial-planning")).await.unwrap();
    let err = c.verifier("hainan").query_industry_data(count_by_industry("industrial-planning")).await.unwrap_err();
    assert_eq!((err.code(), reason_of(&err)), (Code::ResourceExhausted, Some(Reason::BudgetExhausted)));
    assert_eq!(peer_reason(&err).as_deref(), Some("BUDGET_EXHAUSTED"));

    // The budget survives a restart of the provider.
    c.local.restart("shanghai").await.unwrap();
    let err = c.verifier("hainan").query_industry_data(count_by_industry("industrial-planning")).await.unwrap_err();
    assert_eq!(peer_reason(&err).as_deref(), Some("BUDGET_EXHAUSTED"));
    c.shutdown().await;
}

/// Finding: budget periods were cut at multiples of their length from the epoch, so a consumer
/// could spend a period's budget just before one ended and a whole new budget just after: twice
/// the epsilon in a few minutes.
#[tokio::test]
async fn a_privacy_budget_holds_across_the_end_of_a_calendar_period() {
    let period = 30 * DAY_MS;
    // Two minutes before the end of an epoch-aligned period (in the past, so that every
    // certificate made now is already valid).
    let start = SystemClock.now_ms().div_euclid(period) * period - 120_000;
    let clock = ManualClock::new(start);
    let c = Cluster::start_with_clock(&["shanghai", "hainan"], Arc::new(clock.clone())).await;
    import(&c).await;
    c.local.install_policy(&industry_policy(&c, "sh-hn-industry", "hainan")).await.unwrap();
    for _ in 0..2 {
        c.verifier("hainan").query_industry_data(count_by_industry("industrial-planning")).await.unwrap();
    }
    clock.advance_ms(240_000);
    let err = c.verifier("hainan").query_industry_data(count_by_industry("industrial-planning")).await.unwrap_err();
    assert_eq!(peer_reason(&err).as_deref(), Some("BUDGET_EXHAUSTED"), "a new calendar period is no new budget");
    // A whole period after the two queries, the budget is back.
    clock.advance_ms(period);
    let a =
        c.verifier("hainan").query_industry_data(count_by_industry("industrial-planning")).await.unwrap().into_inner();
    assert_eq!(a.epsilon_remaining, 0.5);
    c.shutdown().await;
}

#[tokio::test]
async fn rows_leave_minimised_with_pseudonyms_per_zone_pair_and_the_negative_list_wins() {
    let c = Cluster::start(&ZONES).await;
    import(&c).await;
    c.local.install_policy(&industry_policy(&c, "sh-hn-industry", "hainan")).await.unwrap();
    c.local.install_policy(&industry_policy(&c, "sh-gd-industry", "guangdong")).await.unwrap();
    let fetch = |zone: &'static str| {
        let mut v = c.verifier(zone);
        async move {
            v.fetch_industry_rows(FetchIndustryRowsRequest {
                provider_zone: "shanghai".into(),
                filters: vec![ftz_proto::RowFilter { field: "industry_code".into(), prefix: "C4011".into() }],
                purpose: "industrial-planning".into(),
                limit: 100,
            })
            .await
        }
    };
    let rows = fetch("hainan").await.unwrap().into_inner();
    assert_eq!(rows.rows.len(), 100, "the limit");
    let first = &rows.rows[0].fields;
    assert!(first["enterprise_uscc"].starts_with("p:"));
    assert!(!first.contains_key("enterprise_name") && !first.contains_key("output_value"));
    assert_eq!((first["region"].as_str(), first["period"].as_str()), ("3101", "2026"));
    assert_eq!(rows.dropped_fields, vec!["capacity", "enterprise_name", "output_value"]);
    // The same enterprise has the same pseudonym for hainan every time, another one for guangdong.
    let again = fetch("hainan").await.unwrap().into_inner();
    assert_eq!(again.rows[0].fields["enterprise_uscc"], first["enterprise_uscc"]);
    let gd = fetch("guangdong").await.unwrap().into_inner();
    assert_ne!(gd.rows[0].fields["enterprise_uscc"], first["enterprise_uscc"]);
    let raw: Vec<String> = dataset().iter().map(|r| r.enterprise_uscc.clone()).collect();
    assert!(rows.rows.iter().all(|r| !raw.contains(&r.fields["enterprise_uscc"])));

    // Shanghai's negative list: employment never leaves, whatever the policy says.
    let list = ExportNegativeList {
        zone_id: "shanghai".into(),
        version: 1,
        data_classes: vec![],
        fields: vec!["employment".into()],
        issued_at_ms: c.clock.now_ms(),
    };
    let env = envelope::seal(envelope::PayloadType::EXPORT_NEGATIVE_LIST, &list, &[&c.authority_key("shanghai")]);
    c.admin("shanghai").install_negative_list(InstallNegativeListRequest { negative_list: Some(env) }).await.unwrap();
    let rows = fetch("hainan").await.unwrap().into_inner();
    assert!(rows.rows.iter().all(|r| !r.fields.contains_key("employment")));
    assert!(rows.dropped_fields.contains(&"employment".to_string()));
    let mut mean = count_by_industry("industrial-planning");
    mean.query.as_mut().unwrap().function = AggregateFunction::Mean as i32;
    mean.query.as_mut().unwrap().metric = "employment".into();
    let err = c.verifier("hainan").query_industry_data(mean).await.unwrap_err();
    assert_eq!(peer_reason(&err).as_deref(), Some("NEGATIVE_LIST"));
    // A negative list signed by another zone's authority is refused.
    let forged = envelope::seal(
        envelope::PayloadType::EXPORT_NEGATIVE_LIST,
        &ExportNegativeList { version: 2, ..list },
        &[&c.authority_key("hainan")],
    );
    let res =
        c.admin("shanghai").install_negative_list(InstallNegativeListRequest { negative_list: Some(forged) }).await;
    assert_eq!(reason(res), (Code::PermissionDenied, Some(Reason::PolicyUnderSigned)));
    c.shutdown().await;
}

#[tokio::test]
async fn requests_above_the_rate_get_resource_exhausted_with_a_retry_hint() {
    let c = Cluster::start(&["shanghai", "hainan"]).await;
    // The only policy for certifications: two requests a minute.
    let mut doc = ftz_devkit::dev::record_policy(
        "sh-hn-strict",
        "shanghai",
        "hainan",
        DataClass::Certification,
        &["verification"],
        c.clock.now_ms(),
    );
    doc.rate_limit = Some(RateLimit { max_requests: 2, per_ms: 60_000 });
    doc.filter = Some(ftz_proto::PolicyFilter { record_types: vec!["CCC".into()], ..Default::default() });
    c.local.install_policy(&doc).await.unwrap();
    for i in 0..3 {
        c.issuer("shanghai")
            .issue_certification(IssueCertificationRequest {
                certification: Some(certification(&c, &format!("SH-CCC-{i}"), "CCC")),
            })
            .await
            .unwrap();
    }
    let verify = |id: String| {
        let mut v = c.verifier("hainan");
        async move {
            v.verify_record(VerifyRecordRequest {
                subject: Some(Subject::Ref(RecordRef { issuing_zone: "shanghai".into(), record_id: id })),
                recognising_zone: String::new(),
                purpose: "verification".into(),
            })
            .await
        }
    };
    verify("SH-CCC-0".into()).await.unwrap();
    verify("SH-CCC-1".into()).await.unwrap();
    let err = verify("SH-CCC-2".into()).await.unwrap_err();
    assert_eq!((err.code(), reason_of(&err)), (Code::ResourceExhausted, Some(Reason::RateLimited)));
    assert_eq!(peer_reason(&err).as_deref(), Some("RATE_LIMITED"));
    let retry: i64 = status_meta(&err, "retry_after_ms").unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 60_000, "{retry}");
    c.shutdown().await;
}

#[tokio::test]
async fn a_revocation_by_the_consumer_takes_effect_at_the_provider_at_once() {
    let c = Cluster::start(&ZONES).await;
    import(&c).await;
    c.local.install_policy(&industry_policy(&c, "sh-hn-industry", "hainan")).await.unwrap();
    c.verifier("hainan").query_industry_data(count_by_industry("industrial-planning")).await.unwrap();

    let rev = PolicyRevocation {
        policy_id: "sh-hn-industry".into(),
        version: 1,
        revoked_by_zone: "hainan".into(),
        reason: "consent withdrawn".into(),
        revoked_at_ms: c.clock.now_ms(),
    };
    let env = envelope::seal(envelope::PayloadType::POLICY_REVOCATION, &rev, &[&c.authority_key("hainan")]);
    let r = c
        .admin("hainan")
        .revoke_policy(RevokePolicyRequest { revocation: Some(env.clone()) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.already_revoked, r.notified_zones), (false, vec!["shanghai".to_string()]));
    let err = c.verifier("hainan").query_industry_data(count_by_industry("industrial-planning")).await.unwrap_err();
    assert_eq!(peer_reason(&err).as_deref(), Some("POLICY_REVOKED"));

    // The same version cannot be installed again.
    let policy = ftz_devkit::dev::sign_policy(&c.local.fed, &industry_policy(&c, "sh-hn-industry", "hainan")).unwrap();
    let res = c.admin("shanghai").install_policy(InstallPolicyRequest { policy: Some(policy) }).await;
    assert_eq!(reason(res), (Code::FailedPrecondition, Some(Reason::PolicyOlderVersion)));
    // A revocation signed by a zone that is not a party is refused.
    let forged = PolicyRevocation { revoked_by_zone: "guangdong".into(), ..rev };
    let env = envelope::seal(envelope::PayloadType::POLICY_REVOCATION, &forged, &[&c.authority_key("guangdong")]);
    let res = c.admin("shanghai").revoke_policy(RevokePolicyRequest { revocation: Some(env) }).await;
    assert_eq!(reason(res), (Code::InvalidArgument, Some(Reason::PolicyMalformed)));
    c.shutdown().await;
}

#[tokio::test]
async fn received_records_are_deleted_when_the_retention_is_up_and_each_deletion_is_recorded() {
    let clock = ManualClock::new(SystemClock.now_ms());
    let mut c = Cluster::start_with_clock(&["shanghai", "hainan"], Arc::new(clock.clone())).await;
    c.agree("sh-hn", "shanghai", "hainan", vec![ftz_tests::cert_rule(&["AEO_ADVANCED"])], 365 * DAY_MS).await;
    for id in ["SH-AEO-R1", "SH-AEO-R2"] {
        c.issuer("shanghai")
            .issue_certification(IssueCertificationRequest {
                certification: Some(certification(&c, id, "AEO_ADVANCED")),
            })
            .await
            .unwrap();
        let mut v = c.verifier("hainan");
        v.verify_record(VerifyRecordRequest {
            subject: Some(Subject::Ref(RecordRef { issuing_zone: "shanghai".into(), record_id: id.into() })),
            recognising_zone: String::new(),
            purpose: "verification".into(),
        })
        .await
        .unwrap();
    }
    fn hainan(c: &Cluster) -> &ftz_node::RunningNode {
        c.local.node("hainan").unwrap()
    }
    assert!(hainan(&c).store().get_record("shanghai", "SH-AEO-R1").unwrap().is_some());

    // The record policy keeps received records 30 days: after 29 nothing goes ...
    clock.advance_ms(29 * DAY_MS);
    assert_eq!(hainan(&c).run_retention().await, 0);
    // ... after 31 both go, by the background rule (run here directly) ...
    clock.advance_ms(2 * DAY_MS);
    assert_eq!(hainan(&c).run_retention().await, 2);
    assert!(hainan(&c).store().get_record("shanghai", "SH-AEO-R1").unwrap().is_none());
    let deletions = hainan(&c).store().deletions().unwrap();
    assert_eq!(
        deletions.iter().map(|d| d.what.as_str()).collect::<Vec<_>>(),
        vec!["record shanghai/SH-AEO-R1", "record shanghai/SH-AEO-R2"]
    );
    // The issuing zone still holds its own record.
    assert!(c.local.node("shanghai").unwrap().store().get_record("shanghai", "SH-AEO-R1").unwrap().is_some());

    // Data that comes due while the node is down is deleted at start-up, before it serves.
    c.issuer("shanghai")
        .issue_certification(IssueCertificationRequest {
            certification: Some(certification(&c, "SH-AEO-R3", "AEO_ADVANCED")),
        })
        .await
        .unwrap();
    c.verifier("hainan")
        .verify_record(VerifyRecordRequest {
            subject: Some(Subject::Ref(RecordRef { issuing_zone: "shanghai".into(), record_id: "SH-AEO-R3".into() })),
            recognising_zone: String::new(),
            purpose: "verification".into(),
        })
        .await
        .unwrap();
    c.local.stop("hainan").await.unwrap();
    clock.advance_ms(31 * DAY_MS);
    c.local.restart("hainan").await.unwrap();
    assert!(hainan(&c).store().get_record("shanghai", "SH-AEO-R3").unwrap().is_none());
    assert_eq!(hainan(&c).store().deletions().unwrap().len(), 3);
    c.shutdown().await;
}

#[tokio::test]
async fn data_from_one_zone_goes_on_to_a_third_only_if_its_policy_names_it() {
    let c = Cluster::start(&ZONES).await;
    c.agree("sh-hn", "shanghai", "hainan", vec![ftz_tests::cert_rule(&["AEO_ADVANCED", "CCC"])], 365 * DAY_MS).await;
    // AEO certifications may go on from hainan to guangdong; CCC ones may not.
    let mut onward = ftz_devkit::dev::record_policy(
        "sh-hn-onward",
        "shanghai",
        "hainan",
        DataClass::Certification,
        &["verification"],
        c.clock.now_ms(),
    );
    onward.onward_zones = vec!["guangdong".into()];
    onward.filter = Some(ftz_proto::PolicyFilter { record_types: vec!["AEO_ADVANCED".into()], ..Default::default() });
    c.local.install_policy(&onward).await.unwrap();
    for (id, t) in [("SH-AEO-O1", "AEO_ADVANCED"), ("SH-CCC-O1", "CCC")] {
        c.issuer("shanghai")
            .issue_certification(IssueCertificationRequest { certification: Some(certification(&c, id, t)) })
            .await
            .unwrap();
        c.verifier("hainan")
            .verify_record(VerifyRecordRequest {
                subject: Some(Subject::Ref(RecordRef { issuing_zone: "shanghai".into(), record_id: id.into() })),
                recognising_zone: String::new(),
                purpose: "verification".into(),
            })
            .await
            .unwrap();
    }
    // Guangdong's node asks hainan's node for shanghai's records.
    let v = c.zone("guangdong").validity;
    let gd_node = c.zone("guangdong").ca.issue_node(&ZoneId::new("guangdong").unwrap(), &[], v).unwrap();
    let mut peer = PeerClient::new(c.channel_as("hainan", Some(&gd_node)));
    let ask = |id: &str| FetchRecordRequest {
        record_id: id.into(),
        purpose: "verification".into(),
        issuing_zone: "shanghai".into(),
    };
    let got = peer.fetch_record(ask("SH-AEO-O1")).await.unwrap().into_inner();
    assert_eq!(got.policy_id, "sh-hn-onward");
    let rws: ftz_proto::RecordWithStatus = prost::Message::decode(got.record.as_slice()).unwrap();
    assert!(rws.record.is_some());
    // Sealed: the intent of hainan's node, for guangdong, under shanghai's policy.
    let intent = got.seal.unwrap().intent.unwrap();
    let intent: ftz_proto::TransferIntent = prost::Message::decode(intent.payload.as_slice()).unwrap();
    assert_eq!(
        (intent.provider_zone.as_str(), intent.consumer_zone.as_str(), intent.policy_id.as_str()),
        ("hainan", "guangdong", "sh-hn-onward")
    );
    // The CCC record travelled under the other policy (no onward transfer): refused.
    assert_eq!(
        reason(peer.fetch_record(ask("SH-CCC-O1")).await),
        (Code::PermissionDenied, Some(Reason::OnwardTransfer))
    );
    c.shutdown().await;
}

#[tokio::test]
async fn explain_says_which_policy_decides_and_why() {
    let c = Cluster::start(&ZONES).await;
    c.local.install_policy(&industry_policy(&c, "sh-hn-industry", "hainan")).await.unwrap();
    let ask = |to: &str, purpose: &str, field: &str| ExplainPolicyRequest {
        provider_zone: "shanghai".into(),
        consumer_zone: to.into(),
        data_class: "industry_data".into(),
        purpose: purpose.into(),
        field: field.into(),
    };
    let mut admin = c.admin("shanghai");
    let ok = admin.explain_policy(ask("hainan", "industrial-planning", "period")).await.unwrap().into_inner();
    assert!(ok.allowed && ok.policy_id == "sh-hn-industry", "{:?}", ok.steps);
    assert!(ok.steps.iter().any(|s| s.contains("field period")), "{:?}", ok.steps);
    assert!(ok.steps.iter().any(|s| s.contains("[consumer-promised")), "{:?}", ok.steps);
    let no = admin.explain_policy(ask("hainan", "industrial-planning", "enterprise_name")).await.unwrap().into_inner();
    assert_eq!((no.allowed, no.reason.as_str()), (false, "FIELD_NOT_ALLOWED"));
    let none = admin.explain_policy(ask("guangdong", "industrial-planning", "")).await.unwrap().into_inner();
    assert_eq!(none.reason, "NO_POLICY");
    c.shutdown().await;
}

#[tokio::test]
async fn a_bad_row_is_refused_with_its_line_and_nothing_is_stored() {
    let c = Cluster::start(&["shanghai", "hainan"]).await;
    let mut rows = dataset();
    rows[5].period = "2026-Q9".into();
    let err = c.issuer("shanghai").import_rows(ImportRowsRequest { rows }).await.unwrap_err();
    assert_eq!((err.code(), reason_of(&err)), (Code::InvalidArgument, Some(Reason::RowInvalid)));
    assert!(err.message().contains("line 7") && err.message().contains("period"), "{}", err.message());
    assert_eq!(c.local.node("shanghai").unwrap().store().row_count().unwrap(), 0);
    c.shutdown().await;
}

#[tokio::test]
async fn policies_need_every_party_and_versions_chain() {
    let c = Cluster::start(&ZONES).await;
    let doc = industry_policy(&c, "sh-hn-industry", "hainan");
    let one_side = envelope::seal(envelope::PayloadType::EXCHANGE_POLICY, &doc, &[&c.authority_key("shanghai")]);
    let res = c.admin("shanghai").install_policy(InstallPolicyRequest { policy: Some(one_side) }).await;
    assert_eq!(reason(res), (Code::PermissionDenied, Some(Reason::PolicyUnderSigned)));
    let v1 = c.local.install_policy(&doc).await.unwrap();
    let v2 = ExchangePolicy {
        version: 2,
        previous_digest: ftz_core::sha256(&v1.payload).to_vec(),
        purposes: vec!["statistics".into()],
        ..doc.clone()
    };
    c.local.install_policy(&v2).await.unwrap();
    let skip = ExchangePolicy { version: 4, previous_digest: vec![7; 32], ..doc };
    let env = ftz_devkit::dev::sign_policy(&c.local.fed, &skip).unwrap();
    let res = c.admin("hainan").install_policy(InstallPolicyRequest { policy: Some(env) }).await;
    assert_eq!(reason(res), (Code::FailedPrecondition, Some(Reason::PolicyChainBroken)));
    c.shutdown().await;
}
