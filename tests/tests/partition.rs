//! A network partition: the link between guangdong and shanghai is cut for 30 seconds while
//! guangdong keeps pushing inspection results to shanghai. Nothing is lost and nothing arrives
//! twice: after the link heals every result is delivered once, both logs hold every transfer
//! once with the same leaf, and the exported logs verify and cross-check.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use ftz_core::{Role, SystemClock};
use ftz_devkit::LocalFederation;
use ftz_proto::{
    FindInspectionsRequest, ListEntriesRequest, PushInspectionRequest, RecordInspectionRequest,
    admin_client::AdminClient, audit_client::AuditClient, issuer_client::IssuerClient, verify_client::VerifyClient,
};
use ftz_tests::FaultyLink;
use ftzctl::audit_dir::{self, ExportDir, settled_checkpoint};

const PARTITION: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thirty_second_partition_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut gd_link, mut sh_link) = (FaultyLink::bind().await, FaultyLink::bind().await);
    let fronts = BTreeMap::from([
        ("guangdong".to_string(), gd_link.addr.to_string()),
        ("shanghai".to_string(), sh_link.addr.to_string()),
    ]);
    let fed = LocalFederation::start_with_fronts(
        &["guangdong", "shanghai"],
        &dir.path().join("fed"),
        Arc::new(SystemClock),
        &fronts,
    )
    .await
    .unwrap();
    gd_link.forward_to(fed.node("guangdong").unwrap().local_addr());
    sh_link.forward_to(fed.node("shanghai").unwrap().local_addr());
    let now = ftz_core::Clock::now_ms(&SystemClock);
    fed.install_agreement(&ftz_devkit::dev::agreement_doc(
        "gd-sh",
        "guangdong",
        "shanghai",
        ftz_devkit::dev::inspection_rule("CNAS"),
        now,
    ))
    .await
    .unwrap();
    let policy = ftz_devkit::dev::record_policy(
        "gd-sh",
        "guangdong",
        "shanghai",
        ftz_proto::DataClass::InspectionResult,
        &["import-clearance"],
        now,
    );
    fed.install_policy(&policy).await.unwrap();

    // Guangdong's users reach their own node directly; the proxies only carry zone-to-zone
    // traffic (and shanghai's users, who are not needed while it is cut).
    let direct = |zone: &str, role: Role| {
        let mut p = fed.profile(zone, role).unwrap();
        p.endpoint = fed.node(zone).unwrap().local_addr().to_string();
        p.channel(Duration::from_secs(10)).unwrap()
    };
    let mut issuer = IssuerClient::new(direct("guangdong", Role::Issuer));
    let start = tokio::time::Instant::now();
    let (cut_at, heal_at, end_at) =
        (Duration::from_secs(3), Duration::from_secs(3) + PARTITION, PARTITION + Duration::from_secs(8));
    let (mut pushed, mut queued, mut cut, mut healed) = (0u32, 0u32, false, false);
    while start.elapsed() < end_at {
        if !cut && start.elapsed() >= cut_at {
            gd_link.cut();
            sh_link.cut();
            cut = true;
        }
        if cut && !healed && start.elapsed() >= heal_at {
            gd_link.heal();
            sh_link.heal();
            healed = true;
        }
        let id = format!("GD-PART-{pushed:03}");
        let result = ftz_devkit::dev::sample_inspection(
            &id,
            &format!("LOT-PART-{pushed:03}"),
            ftz_core::Clock::now_ms(&SystemClock),
        );
        issuer.record_inspection(RecordInspectionRequest { result: Some(result) }).await.unwrap();
        let r = issuer
            .push_inspection(PushInspectionRequest {
                record_id: id,
                to_zone: "shanghai".into(),
                purpose: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        pushed += 1;
        queued += u32::from(r.queued);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(queued >= 10, "{queued} of {pushed} pushes were queued during the partition");

    // Everything waiting goes out once the link is back.
    let mut admin = AdminClient::new(direct("guangdong", Role::Admin));
    ftzctl::outbox::drained(&mut admin, Duration::from_secs(60)).await.unwrap();

    // Shanghai holds every result once.
    let mut verifier = VerifyClient::new(fed.user_channel("shanghai", Role::Enterprise).unwrap());
    for i in 0..pushed {
        let found = verifier
            .find_inspections(FindInspectionsRequest {
                lot_id: format!("LOT-PART-{i:03}"),
                recognising_zone: String::new(),
                purpose: "import-clearance".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .results;
        assert_eq!(found.len(), 1, "lot {i}");
    }
    // Both logs hold every transfer once, with the same leaf; none declared unacknowledged.
    let mut dirs = Vec::new();
    for zone in ["guangdong", "shanghai"] {
        let mut audit = AuditClient::new(fed.user_channel(zone, Role::Auditor).unwrap());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let req = ListEntriesRequest { limit: 1000, decision: "transfer".into(), ..Default::default() };
            let n = audit.list_entries(req).await.unwrap().into_inner().entries.len() as u32;
            assert!(n <= pushed, "{zone}: {n} transfers for {pushed} pushes");
            if n == pushed {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{zone}: {n} of {pushed} transfers logged");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let req = ListEntriesRequest { decision: "unacknowledged".into(), ..Default::default() };
        assert!(audit.list_entries(req).await.unwrap().into_inner().entries.is_empty(), "{zone}");
        settled_checkpoint(&mut audit, 1, Duration::from_secs(30)).await.unwrap();
        let out = dir.path().join(format!("export-{zone}"));
        audit_dir::export(&mut audit, &out, |_, _| {}).await.unwrap();
        dirs.push(ExportDir::open(&out).unwrap());
    }
    let (ra, rb, x) = audit_dir::cross_check(&dirs[0], &dirs[1], |_| {}).unwrap();
    assert_eq!((ra.problems.len(), rb.problems.len()), (0, 0), "{:?} {:?}", ra.problems, rb.problems);
    assert_eq!((x.in_both, x.only_a.len(), x.only_b.len()), (u64::from(pushed), 0, 0));
    println!(
        "partition: {pushed} pushes, {queued} queued during the 30 s cut, all delivered once, lost 0, duplicated 0"
    );
    fed.shutdown().await;
}
