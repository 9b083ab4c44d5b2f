//! The read methods the web console is built on, against real nodes, over gRPC and the JSON
//! API: a bundle checked by the node with its own trust (and refused when changed or not
//! anchored here), privacy budgets per policy and consumer, the checkpoint history with its
//! cosignatures, another zone's uploaded log export compared with this log (and refused when
//! its checkpoint is not that zone's), and the peers with their last pings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::{Engine, engine::general_purpose::STANDARD};
use ftz_audit::{
    checkpoint::{Checkpoint, origin},
    note::{Note, Signer, TYPE_ED25519, sign},
};
use ftz_core::{Reason, Role, SigningKey};
use ftz_pki::files;
use ftz_proto::{
    AggregateFunction, AggregateQuery, AggregationRules, CrossCheckRequest, DataClass, ExchangePolicy, FieldAction,
    FieldRule, ImportRowsRequest, IndustryRow, InstallRegistryRequest, IssueCertificationRequest, ListBudgetsRequest,
    ListCheckpointsRequest, ListPeersRequest, ListPeersResponse, PingPeerRequest, QueryIndustryDataRequest, RateLimit,
    RecordStatus, VerifyBundleRequest, audit_client::AuditClient,
};
use ftz_tests::{Cluster, DAY_MS, cert_rule, certification, https::Https, reason};
use ftzctl::audit_dir::{self, ExportDir, settled_checkpoint};
use prost::Message;
use serde_json::json;
use tonic::{Code, transport::Channel};

const ZONES: [&str; 3] = ["shanghai", "hainan", "guangdong"];
const SETTLE: Duration = Duration::from_secs(20);

fn auditor(c: &Cluster, zone: &str) -> AuditClient<Channel> {
    AuditClient::new(c.user(zone, Role::Auditor))
}

async fn issue(c: &Cluster, zone: &str, id: &str) {
    c.issuer(zone)
        .issue_certification(IssueCertificationRequest { certification: Some(certification(c, id, "AEO_ADVANCED")) })
        .await
        .unwrap();
}

/// A uint64 of a proto3 JSON answer (a string there).
fn u64_of(v: &serde_json::Value) -> u64 {
    v.as_str().and_then(|s| s.parse().ok()).or_else(|| v.as_u64()).unwrap_or_else(|| panic!("not a uint64: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_is_checked_by_the_node_with_its_own_trust_and_a_changed_byte_is_refused() {
    let c = Cluster::start(&ZONES).await;
    c.agree("sh-hn", "shanghai", "hainan", vec![cert_rule(&["AEO_ADVANCED"])], 365 * DAY_MS).await;
    issue(&c, "shanghai", "SH-VB-1").await;
    let bundle = c.export_bundle("hainan", "shanghai", "SH-VB-1").await.encode_to_vec();

    let r = c.verifier("hainan").verify_bundle(VerifyBundleRequest { bundle: bundle.clone() }).await.unwrap();
    let r = r.into_inner();
    let v = r.result.clone().unwrap();
    assert!(v.valid, "{}", v.explanation);
    assert_eq!((v.authentic, v.status, v.recognised), (true, RecordStatus::Active as i32, true));
    assert_eq!(
        (v.source.as_str(), v.recognising_zone.as_str(), v.agreement_id.as_str()),
        ("bundle", "hainan", "sh-hn")
    );
    assert_eq!((v.record_id.as_str(), v.issuing_zone.as_str()), ("SH-VB-1", "shanghai"));
    assert!(v.record.is_some());
    assert_eq!((r.exporting_zone.as_str(), r.registry_version, r.agreements), ("hainan", 1, 1));
    assert_eq!(r.bundle_recognising_zone, "hainan");
    assert_eq!(r.anchor_key_id, c.authority_key("hainan").key_id().to_string(), "hainan's own authority");
    assert_eq!(r.max_status_age_ms, 600_000);
    // Any zone's node checks it with its own trust, for its own zone: at shanghai the record is
    // shanghai's own, valid without an agreement, anchored by shanghai's authority.
    let at_sh = c.verifier("shanghai").verify_bundle(VerifyBundleRequest { bundle: bundle.clone() }).await.unwrap();
    let at_sh = at_sh.into_inner();
    assert!(at_sh.result.as_ref().unwrap().valid);
    assert_eq!(at_sh.anchor_key_id, c.authority_key("shanghai").key_id().to_string());

    // One changed byte: the bundle itself is refused, with the offline check's reason.
    let mut changed = bundle.clone();
    let at = changed.len() / 2;
    changed[at] ^= 0x20;
    let res = c.verifier("hainan").verify_bundle(VerifyBundleRequest { bundle: changed.clone() }).await;
    assert_eq!(reason(res), (Code::InvalidArgument, Some(Reason::BundleInvalid)));
    let res = c.verifier("hainan").verify_bundle(VerifyBundleRequest { bundle: vec![] }).await;
    assert_eq!(reason(res), (Code::InvalidArgument, Some(Reason::InvalidArgument)));

    // The same over the JSON API, as the console sends a file.
    let ent = Https::user(&c, "hainan", Role::Enterprise, "hainan");
    let a = ent.post("/api/v1/verify/verify-bundle", &json!({"bundle": STANDARD.encode(&bundle)})).await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!((a.json["result"]["valid"].as_bool(), a.json["exporting_zone"].as_str()), (Some(true), Some("hainan")));
    let a = ent.post("/api/v1/verify/verify-bundle", &json!({"bundle": STANDARD.encode(&changed)})).await;
    assert_eq!((a.status, a.reason()), (400, Some("BUNDLE_INVALID")), "{}", a.json);

    // Registry v2, signed by shanghai's and guangdong's authorities only, installed everywhere.
    let mut doc = c.registry_doc();
    doc.version = 2;
    let v2 = c.sign_registry(&doc, &["shanghai", "guangdong"]);
    for zone in ZONES {
        c.admin(zone).install_registry(InstallRegistryRequest { registry: Some(v2.clone()) }).await.unwrap();
    }
    // A bundle with the older registry is refused: it could bring back what v2 retired.
    let res = c.verifier("hainan").verify_bundle(VerifyBundleRequest { bundle: bundle.clone() }).await;
    assert_eq!(reason(res).1, Some(Reason::RegistryNotAnchored));
    // A bundle with v2 is anchored at shanghai (its authority signed v2), not at hainan (hainan's
    // authority did not): each node trusts its own zone's authority.
    let fresh = c.export_bundle("shanghai", "shanghai", "SH-VB-1").await.encode_to_vec();
    let r = c.verifier("shanghai").verify_bundle(VerifyBundleRequest { bundle: fresh.clone() }).await.unwrap();
    assert_eq!(r.into_inner().registry_version, 2);
    let res = c.verifier("hainan").verify_bundle(VerifyBundleRequest { bundle: fresh }).await;
    let (code, why) = reason(res);
    assert_eq!((code, why), (Code::PermissionDenied, Some(Reason::RegistryNotAnchored)));
    c.shutdown().await;
}

fn uscc(i: usize) -> String {
    ftz_tests::uscc("9131011500000", i as u64)
}

fn industry_policy(c: &Cluster) -> ExchangePolicy {
    let now = c.clock.now_ms();
    ExchangePolicy {
        policy_id: "sh-hn-industry".into(),
        version: 1,
        provider_zone: "shanghai".into(),
        consumer_zones: vec!["hainan".into()],
        data_class: DataClass::IndustryData as i32,
        purposes: vec!["industrial-planning".into()],
        field_rules: vec![FieldRule {
            field: "industry_code".into(),
            action: FieldAction::Keep as i32,
            parameter: String::new(),
        }],
        aggregation: Some(AggregationRules {
            group_by: vec!["industry_code".into()],
            min_group_size: 5,
            differential_privacy: true,
            epsilon_per_query: 0.5,
            epsilon_budget: 1.0,
            budget_period_ms: 30 * DAY_MS,
            max_groups_per_enterprise: 1,
            delta_per_query: 1e-6,
            ..Default::default()
        }),
        retention_ms: 7 * DAY_MS,
        rate_limit: Some(RateLimit { max_requests: 100, per_ms: 60_000 }),
        valid_from_ms: now - 60_000,
        valid_until_ms: now + 365 * DAY_MS,
        ..Default::default()
    }
}

fn count_query() -> QueryIndustryDataRequest {
    QueryIndustryDataRequest {
        provider_zone: "shanghai".into(),
        query: Some(AggregateQuery {
            function: AggregateFunction::Count as i32,
            metric: String::new(),
            group_by: vec!["industry_code".into()],
            filters: vec![],
            purpose: "industrial-planning".into(),
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_budgets_are_listed_per_policy_and_consumer_as_the_gate_counts_them() {
    let c = Cluster::start(&["shanghai", "hainan"]).await;
    let rows = (0..20)
        .map(|i| IndustryRow {
            line: i as u64 + 2,
            enterprise_uscc: uscc(i),
            enterprise_name: format!("Enterprise {i}"),
            industry_code: "C4011".into(),
            region: "310115".into(),
            period: "2026-Q1".into(),
            output_value: 1_000_000,
            employment: 50,
            capacity: 100,
        })
        .collect();
    c.issuer("shanghai").import_rows(ImportRowsRequest { rows }).await.unwrap();
    let budgets = |zone: &str| {
        let mut admin = c.admin(zone);
        async move { admin.list_budgets(ListBudgetsRequest { limit: 0 }).await.unwrap().into_inner() }
    };
    assert!(budgets("shanghai").await.budgets.is_empty(), "nothing charged yet");

    c.local.install_policy(&industry_policy(&c)).await.unwrap();
    let before = c.clock.now_ms();
    c.verifier("hainan").query_industry_data(count_query()).await.unwrap();
    let r = budgets("shanghai").await;
    assert!(!r.truncated);
    let [b] = r.budgets.as_slice() else { panic!("one budget expected: {:?}", r.budgets) };
    assert_eq!((b.policy_id.as_str(), b.policy_version, b.consumer_zone.as_str()), ("sh-hn-industry", 1, "hainan"));
    assert_eq!((b.spent_milli, b.budget_milli), (500, 1000));
    assert_eq!((b.window_ms, b.slice_ms), (30 * DAY_MS, DAY_MS));
    assert!(!b.policy_revoked);
    // The charge made now counts for at least a period and at most a period and a slice.
    let leaves = b.oldest_charge_leaves_at_ms;
    assert!(leaves > before + 30 * DAY_MS && leaves <= c.clock.now_ms() + 31 * DAY_MS, "{leaves} vs {before}");
    // The consumer's node spends no budget of its own.
    assert!(budgets("hainan").await.budgets.is_empty());

    c.verifier("hainan").query_industry_data(count_query()).await.unwrap();
    let err = c.verifier("hainan").query_industry_data(count_query()).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    let b = &budgets("shanghai").await.budgets[0];
    assert_eq!((b.spent_milli, b.oldest_charge_leaves_at_ms), (1000, leaves), "a refused query spends nothing");

    let a = Https::user(&c, "shanghai", Role::Admin, "shanghai").get("/api/v1/admin/list-budgets").await;
    assert_eq!(a.status, 200, "{}", a.json);
    let b = &a.json["budgets"][0];
    assert_eq!((u64_of(&b["spent_milli"]), u64_of(&b["budget_milli"])), (1000, 1000), "{}", a.json);
    assert_eq!(b["consumer_zone"], "hainan");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_listed_newest_first_with_every_cosignature_and_its_time() {
    let c = Cluster::start(&ZONES).await;
    let started_s = (c.clock.now_ms() / 1000) as u64;
    let first = settled_checkpoint(&mut auditor(&c, "shanghai"), 2, SETTLE).await.unwrap();
    c.agree("sh-hn", "shanghai", "hainan", vec![cert_rule(&["AEO_ADVANCED"])], 365 * DAY_MS).await;
    let latest = settled_checkpoint(&mut auditor(&c, "shanghai"), 2, SETTLE).await.unwrap();
    assert!(latest.size > first.size);

    let r = auditor(&c, "shanghai").list_checkpoints(ListCheckpointsRequest::default()).await.unwrap().into_inner();
    let sizes: Vec<u64> = r.checkpoints.iter().map(|c| c.size).collect();
    assert!(sizes.len() >= 2 && sizes.windows(2).all(|w| w[0] > w[1]), "newest first: {sizes:?}");
    assert!(sizes.contains(&first.size), "{sizes:?}");
    assert_eq!(sizes[0], latest.size);
    assert_eq!(r.next_below_size, 0, "all of them fit in one page");
    let now_s = (c.clock.now_ms() / 1000) as u64;
    for cp in &r.checkpoints {
        let note = Note::parse(&cp.note).unwrap();
        assert_eq!(Checkpoint::parse(&note.text).unwrap().size, cp.size);
    }
    // The settled ones are cosigned by both other zones, each verified, each with its time.
    for size in [first.size, latest.size] {
        let cp = r.checkpoints.iter().find(|c| c.size == size).unwrap();
        let mut zones: Vec<&str> = cp.cosignatures.iter().map(|s| s.zone.as_str()).collect();
        zones.sort_unstable();
        assert_eq!(zones, ["guangdong", "hainan"], "{cp:?}");
        for s in &cp.cosignatures {
            assert!(s.verified, "{s:?}");
            assert_eq!(s.name, format!("ftz/{}/witness", s.zone));
            assert_eq!(s.key_id.len(), 8);
            assert!(s.timestamp + 5 >= started_s && s.timestamp <= now_s + 5, "{s:?}");
            assert_eq!(s.cosigned_at_ms, s.timestamp as i64 * 1000);
        }
    }
    // A page at a time.
    let page = ListCheckpointsRequest { limit: 1, below_size: 0 };
    let p1 = auditor(&c, "shanghai").list_checkpoints(page).await.unwrap().into_inner();
    assert_eq!((p1.checkpoints.len(), p1.next_below_size), (1, latest.size));
    let page = ListCheckpointsRequest { limit: 1, below_size: p1.next_below_size };
    let p2 = auditor(&c, "shanghai").list_checkpoints(page).await.unwrap().into_inner();
    assert_eq!(p2.checkpoints[0].size, sizes[1]);

    let a = Https::user(&c, "shanghai", Role::Auditor, "shanghai").get("/api/v1/audit/list-checkpoints?limit=2").await;
    assert_eq!(a.status, 200, "{}", a.json);
    let list = a.json["checkpoints"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{}", a.json);
    assert_eq!(u64_of(&list[0]["size"]), latest.size);
    assert!(list[0]["note"].as_str().unwrap().starts_with("ftz/shanghai/audit\n"));
    assert_eq!(list[0]["cosignatures"].as_array().unwrap().len(), 2);
    c.shutdown().await;
}

/// The request the console builds from an export's files.
fn upload(e: &ExportDir) -> CrossCheckRequest {
    CrossCheckRequest {
        checkpoint: e.checkpoint.clone(),
        entries: e.indices.iter().map(|i| e.read_entry(*i).unwrap()).collect(),
    }
}

/// `note`'s checkpoint text signed again by `key` as the log of `zone`.
fn resigned(note: &str, zone: &str, key: &SigningKey) -> String {
    let text = Note::parse(note).unwrap().text;
    sign(&text, &Signer::new(&origin(zone), TYPE_ED25519, key).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_export_is_compared_with_this_log_and_one_signed_by_another_key_is_refused() {
    let c = Cluster::start(&["shanghai", "hainan"]).await;
    c.agree("sh-hn", "shanghai", "hainan", vec![cert_rule(&["AEO_ADVANCED"])], 365 * DAY_MS).await;
    issue(&c, "shanghai", "SH-XC-1").await;
    let v = c.verifier("hainan");
    let verify = |id: &str| {
        let mut v = v.clone();
        let req = ftz_proto::VerifyRecordRequest {
            subject: Some(ftz_proto::verify_record_request::Subject::Ref(ftz_proto::RecordRef {
                issuing_zone: "shanghai".into(),
                record_id: id.into(),
            })),
            recognising_zone: String::new(),
            purpose: "customs-clearance".into(),
        };
        async move { assert!(v.verify_record(req).await.unwrap().into_inner().valid) }
    };
    verify("SH-XC-1").await;
    // Both sides have logged the transfer, and their checkpoints cover it.
    let deadline = tokio::time::Instant::now() + SETTLE;
    while c.transfer_leaves("shanghai").await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the provider never logged the transfer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    settled_checkpoint(&mut auditor(&c, "shanghai"), 1, SETTLE).await.unwrap();
    settled_checkpoint(&mut auditor(&c, "hainan"), 1, SETTLE).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    audit_dir::export(&mut auditor(&c, "hainan"), &dir.path().join("hn"), |_, _| {}).await.unwrap();
    let hn = ExportDir::open(&dir.path().join("hn")).unwrap();

    let r = auditor(&c, "shanghai").cross_check(upload(&hn)).await.unwrap().into_inner();
    assert!(r.verified, "{:?}", r.problems);
    assert_eq!((r.zone.as_str(), r.other_zone.as_str()), ("shanghai", "hainan"));
    assert_eq!((r.in_both, r.only_here_count, r.only_there_count), (1, 0, 0), "{r:?}");
    assert_eq!((r.there_size, r.problem_count), (hn.statement.size, 0));
    assert_eq!(r.there_cosigners, 1, "shanghai cosigned hainan's checkpoint");
    assert!(r.here_complete && r.here_compared == r.here_size && r.here_size > 0, "{r:?}");

    // A transfer after the export is in this log only: a finding, with its index and summary.
    issue(&c, "shanghai", "SH-XC-2").await;
    verify("SH-XC-2").await;
    while c.transfer_leaves("shanghai").await.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline + SETTLE, "the provider never logged the second transfer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    settled_checkpoint(&mut auditor(&c, "shanghai"), 1, SETTLE).await.unwrap();
    let r = auditor(&c, "shanghai").cross_check(upload(&hn)).await.unwrap().into_inner();
    assert_eq!((r.in_both, r.only_here_count, r.only_there_count), (1, 1, 0), "{r:?}");
    assert!(r.only_here[0].summary.contains("SH-XC-2"), "{:?}", r.only_here);

    // A changed entry does not give the checkpoint's root: reported, not verified.
    let mut changed = upload(&hn);
    let last = changed.entries.len() - 1;
    let tail = changed.entries[last].len() - 1;
    changed.entries[last][tail] ^= 1;
    let r = auditor(&c, "shanghai").cross_check(changed).await.unwrap().into_inner();
    assert!(!r.verified && r.problem_count > 0, "{r:?}");
    assert!(r.problems.iter().any(|p| p.contains("root")), "{:?}", r.problems);
    // Missing entries neither.
    let mut cut = upload(&hn);
    cut.entries.pop();
    assert!(!auditor(&c, "shanghai").cross_check(cut).await.unwrap().into_inner().verified);

    // A checkpoint signed by a key the registry does not list for hainan is refused, whoever's.
    let stranger = SigningKey::generate().unwrap().0;
    let sh_node = files::read_signing_key(&c.zone("shanghai").node_key_path()).unwrap();
    for key in [&stranger, &sh_node] {
        let forged = CrossCheckRequest { checkpoint: resigned(&hn.checkpoint, "hainan", key), ..upload(&hn) };
        let res = auditor(&c, "shanghai").cross_check(forged).await;
        assert_eq!(reason(res), (Code::InvalidArgument, Some(Reason::CheckpointInvalid)));
    }
    // This zone's own log is no other zone's export; nothing at all neither.
    audit_dir::export(&mut auditor(&c, "shanghai"), &dir.path().join("sh"), |_, _| {}).await.unwrap();
    let sh = ExportDir::open(&dir.path().join("sh")).unwrap();
    let res = auditor(&c, "shanghai").cross_check(upload(&sh)).await;
    assert_eq!(reason(res).1, Some(Reason::CheckpointInvalid));
    let res = auditor(&c, "shanghai").cross_check(CrossCheckRequest::default()).await;
    assert_eq!(reason(res).1, Some(Reason::CheckpointInvalid));

    // Over the JSON API, the export's files as the browser reads them.
    let entries: Vec<String> = upload(&hn).entries.iter().map(|e| STANDARD.encode(e)).collect();
    let aud = Https::user(&c, "shanghai", Role::Auditor, "shanghai");
    let a = aud.post("/api/v1/audit/cross-check", &json!({"checkpoint": hn.checkpoint, "entries": entries})).await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!((a.json["verified"].as_bool(), u64_of(&a.json["in_both"])), (Some(true), 1), "{}", a.json);
    assert_eq!(a.json["only_here"][0]["summary"].as_str().map(|s| s.contains("SH-XC-2")), Some(true));
    let forged = resigned(&hn.checkpoint, "hainan", &stranger);
    let a = aud.post("/api/v1/audit/cross-check", &json!({"checkpoint": forged, "entries": entries})).await;
    assert_eq!((a.status, a.reason()), (400, Some("CHECKPOINT_INVALID")), "{}", a.json);
    c.shutdown().await;
}

fn peer<'a>(r: &'a ListPeersResponse, zone: &str) -> &'a ftz_proto::PeerHealth {
    r.peers.iter().find(|p| p.zone_id == zone).unwrap_or_else(|| panic!("no peer {zone}: {r:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_show_their_last_ping_and_failure_and_a_refresh_pings_them_all_at_once() {
    let mut c = Cluster::start(&ZONES).await;
    let peers = |c: &Cluster, refresh: bool| {
        let mut admin = c.admin("shanghai");
        async move { admin.list_peers(ListPeersRequest { refresh }).await.unwrap().into_inner() }
    };
    let r = peers(&c, false).await;
    let mut zones: Vec<&str> = r.peers.iter().map(|p| p.zone_id.as_str()).collect();
    zones.sort_unstable();
    assert_eq!(zones, ["guangdong", "hainan"], "every other zone of the registry");
    assert!(r.peers.iter().all(|p| p.pings == 0 && p.last_ok_ms == 0 && !p.endpoint.is_empty()), "{r:?}");
    assert!(!r.refreshed);

    let before = c.clock.now_ms();
    c.admin("shanghai").ping_peer(PingPeerRequest { zone_id: "hainan".into() }).await.unwrap();
    let r = peers(&c, false).await;
    let hn = peer(&r, "hainan");
    assert!(hn.last_ok_ms >= before && hn.round_trip_us > 0, "{hn:?}");
    assert_eq!((hn.peer_registry_version, hn.pings, hn.failures, hn.last_failure_ms), (1, 1, 0, 0));
    assert!(!hn.peer_node_key_id.is_empty());
    assert_eq!(peer(&r, "guangdong").pings, 0, "guangdong was not pinged");

    // Guangdong goes down; a refresh pings both at once and says which answered.
    c.local.stop("guangdong").await.unwrap();
    let started = std::time::Instant::now();
    let r = peers(&c, true).await;
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(r.refreshed);
    let (hn, gd) = (peer(&r, "hainan"), peer(&r, "guangdong"));
    assert_eq!((hn.pings, hn.failures), (2, 0));
    assert_eq!((gd.pings, gd.failures, gd.last_ok_ms), (1, 1, 0), "{gd:?}");
    assert!(gd.last_failure_ms >= before, "{gd:?}");
    assert_eq!(gd.last_failure_reason, "PEER_UNAVAILABLE", "{gd:?}");
    assert!(gd.last_error.starts_with("PEER_UNAVAILABLE: "), "{gd:?}");

    let a = Https::user(&c, "shanghai", Role::Admin, "shanghai").get("/api/v1/admin/list-peers?refresh=true").await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["peers"].as_array().unwrap().len(), 2, "{}", a.json);
    let gd = a.json["peers"].as_array().unwrap().iter().find(|p| p["zone_id"] == "guangdong").unwrap();
    assert_eq!(u64_of(&gd["failures"]), 2, "{}", a.json);
    c.shutdown().await;
}
