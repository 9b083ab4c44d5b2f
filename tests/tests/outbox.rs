//! The durable outbox across real nodes: messages to a zone that cannot be reached wait on
//! disk, survive a restart of the sender, and arrive once when the zone is back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ftz_core::Role;
use ftz_proto::{
    FindInspectionsRequest, IssueCertificationRequest, ListEntriesRequest, ListOutboxRequest, ListOutboxResponse,
    PushInspectionRequest, RecordInspectionRequest, RecordRef, RevokeRequest, VerifyRecordRequest,
    audit_client::AuditClient, verify_record_request::Subject,
};
use ftz_tests::{Cluster, DAY_MS, cert_rule, certification, inspection, inspection_rule};

async fn outbox(c: &Cluster, zone: &str) -> ListOutboxResponse {
    c.admin(zone).list_outbox(ListOutboxRequest { limit: 0 }).await.unwrap().into_inner()
}

/// Polls until `zone`'s outbox is empty.
async fn drained(c: &Cluster, zone: &str) {
    ftzctl::outbox::drained(&mut c.admin(zone), Duration::from_secs(30)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_to_an_unreachable_zone_waits_on_disk_across_a_restart_and_arrives_once() {
    let mut c = Cluster::start(&["guangdong", "shanghai"]).await;
    c.agree("gd-sh", "guangdong", "shanghai", vec![inspection_rule("CNAS")], 365 * DAY_MS).await;
    let result = inspection(&c, "GD-OUT-1", "LOT-OUT-1");
    c.issuer("guangdong").record_inspection(RecordInspectionRequest { result: Some(result) }).await.unwrap();

    c.local.stop("shanghai").await.unwrap();
    let push =
        PushInspectionRequest { record_id: "GD-OUT-1".into(), to_zone: "shanghai".into(), purpose: String::new() };
    let r = c.issuer("guangdong").push_inspection(push).await.unwrap().into_inner();
    assert!(r.queued && !r.already_delivered, "{r:?}");
    let o = outbox(&c, "guangdong").await;
    assert_eq!((o.total, o.entries[0].kind.as_str(), o.entries[0].to_zone.as_str()), (1, "delivery", "shanghai"));
    assert!(o.entries[0].last_error.contains("unreachable"), "{:?}", o.entries[0]);

    // The sender goes down and up: the delivery is still there, and retried.
    c.local.restart("guangdong").await.unwrap();
    assert_eq!(outbox(&c, "guangdong").await.total, 1);
    c.local.restart("shanghai").await.unwrap();
    drained(&c, "guangdong").await;

    let found = c
        .verifier("shanghai")
        .find_inspections(FindInspectionsRequest {
            lot_id: "LOT-OUT-1".into(),
            recognising_zone: String::new(),
            purpose: "import-clearance".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.results.len(), 1);
    assert!(found.results[0].valid, "{}", found.results[0].explanation);
    // One transfer, the same leaf in both logs; the pending intent was not declared unacknowledged.
    let (gd, sh) = (c.transfer_leaves("guangdong").await, c.transfer_leaves("shanghai").await);
    assert_eq!((gd.len(), sh.len()), (1, 1));
    assert_eq!(gd[0], sh[0]);
    let req = ListEntriesRequest { decision: "unacknowledged".into(), ..Default::default() };
    let unack = AuditClient::new(c.user("guangdong", Role::Auditor)).list_entries(req).await.unwrap().into_inner();
    assert!(unack.entries.is_empty());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_notice_for_an_unreachable_holder_is_delivered_when_it_is_back() {
    let mut c = Cluster::start(&["shanghai", "hainan"]).await;
    c.agree("sh-hn", "shanghai", "hainan", vec![cert_rule(&["AEO_ADVANCED"])], 365 * DAY_MS).await;
    let cert = certification(&c, "SH-OUT-1", "AEO_ADVANCED");
    c.issuer("shanghai").issue_certification(IssueCertificationRequest { certification: Some(cert) }).await.unwrap();
    let verify = VerifyRecordRequest {
        subject: Some(Subject::Ref(RecordRef { issuing_zone: "shanghai".into(), record_id: "SH-OUT-1".into() })),
        recognising_zone: String::new(),
        purpose: "customs-clearance".into(),
    };
    assert!(c.verifier("hainan").verify_record(verify.clone()).await.unwrap().into_inner().valid);
    drained(&c, "hainan").await; // its receipt went back

    c.local.stop("hainan").await.unwrap();
    let revoked = c
        .issuer("shanghai")
        .revoke(RevokeRequest { record_id: "SH-OUT-1".into(), reason: "audit".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(revoked.pending_zones, vec!["hainan"]);
    assert_eq!(outbox(&c, "shanghai").await.entries[0].kind, "revocation_notice");
    c.local.restart("shanghai").await.unwrap();
    c.local.restart("hainan").await.unwrap();
    drained(&c, "shanghai").await;
    // Hainan learnt it from the notice: shanghai is down again and hainan says revoked.
    c.local.stop("shanghai").await.unwrap();
    let v = c.verifier("hainan").verify_record(verify).await.unwrap().into_inner();
    assert!(!v.valid && v.status == ftz_proto::RecordStatus::Revoked as i32, "{}", v.explanation);
    c.shutdown().await;
}
