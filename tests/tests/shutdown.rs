//! Graceful shutdown under load: guangdong pushes results to shanghai as fast as it can while
//! shanghai's node, then guangdong's, is stopped (in-flight calls finish, the store is flushed)
//! and started again. Every push guangdong acknowledged arrives once; nothing is half-written.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use ftz_core::Role;
use ftz_proto::{
    FindInspectionsRequest, ListEntriesRequest, PushInspectionRequest, RecordInspectionRequest,
    audit_client::AuditClient,
};
use ftz_tests::{Cluster, DAY_MS, inspection, inspection_rule};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_nodes_under_load_loses_and_duplicates_nothing() {
    let c = Cluster::start(&["guangdong", "shanghai"]).await;
    c.agree("gd-sh", "guangdong", "shanghai", vec![inspection_rule("CNAS")], 365 * DAY_MS).await;
    let c = Arc::new(tokio::sync::RwLock::new(c));
    let acked: Arc<Mutex<Vec<u32>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (c, acked, stop) = (c.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let (id, lot) = (format!("GD-SD-{i:04}"), format!("LOT-SD-{i:04}"));
                let cl = c.read().await;
                let mut issuer = cl.issuer("guangdong");
                let result = inspection(&cl, &id, &lot);
                drop(cl);
                if issuer.record_inspection(RecordInspectionRequest { result: Some(result) }).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let push = PushInspectionRequest { record_id: id, to_zone: "shanghai".into(), purpose: String::new() };
                if issuer.push_inspection(push).await.is_ok() {
                    acked.lock().unwrap().push(i);
                }
            }
        })
    };
    for zone in ["shanghai", "guangdong", "shanghai"] {
        tokio::time::sleep(Duration::from_millis(700)).await;
        c.write().await.local.restart(zone).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();

    let c = c.read().await;
    ftzctl::outbox::drained(&mut c.admin("guangdong"), Duration::from_secs(60)).await.unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 20, "only {} pushes acknowledged", acked.len());
    let mut verifier = c.verifier("shanghai");
    for i in &acked {
        let req = FindInspectionsRequest {
            lot_id: format!("LOT-SD-{i:04}"),
            recognising_zone: String::new(),
            purpose: "import-clearance".into(),
        };
        let found = loop {
            match verifier.find_inspections(req.clone()).await {
                Ok(r) => break r.into_inner().results,
                // The user's own rate: wait as told.
                Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                    let ms = ftz_client::status_meta(&s, "retry_after_ms").and_then(|v| v.parse().ok()).unwrap_or(100);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                Err(s) => panic!("lot {i}: {s}"),
            }
        };
        assert_eq!(found.len(), 1, "lot {i}");
    }
    // Both logs: each acknowledged push once, and the same number on both sides.
    let mut counts = Vec::new();
    for zone in ["guangdong", "shanghai"] {
        let mut audit = AuditClient::new(c.user(zone, Role::Auditor));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let req = ListEntriesRequest { limit: 1000, decision: "transfer".into(), ..Default::default() };
            let entries = audit.list_entries(req).await.unwrap().into_inner().entries;
            let n = entries.len();
            if n >= acked.len() || tokio::time::Instant::now() >= deadline {
                counts.push(entries.into_iter().map(|e| e.leaf).collect::<Vec<_>>());
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (gd, sh) = (&counts[0], &counts[1]);
    assert!(gd.len() >= acked.len(), "guangdong logged {} of {} transfers", gd.len(), acked.len());
    let mut a = gd.clone();
    let mut b = sh.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b, "the two logs hold different transfers");
    let mut dedup = a.clone();
    dedup.dedup();
    assert_eq!(dedup.len(), a.len(), "a transfer logged twice");
    println!(
        "graceful shutdown under load: {} pushes acknowledged, 3 restarts, {} transfers in each log",
        acked.len(),
        a.len()
    );
}
