//! The crash harness: three node processes, thousands of mixed transfers (records fetched from
//! shanghai by hainan, inspection results pushed from guangdong to shanghai), and a node killed
//! with SIGKILL at random points several times and restarted: shanghai (provider of the fetches,
//! consumer of the pushes) and hainan (consumer of the fetches, which queues their receipts) in
//! turn. Afterwards:
//!
//! - every transfer a client saw acknowledged is in both zones' logs exactly once, with the
//!   same leaf; no transfer is in one log only (nothing half-applied);
//! - every checkpoint shanghai signed (and a client saw) before a crash is consistent with its
//!   log after the last restart;
//! - every exported log verifies (`verify-log`) and the pairs cross-check (`cross-check`).
//!
//! `FTZ_CRASH_TRANSFERS` sets the number of transfers (default 600, which CI runs; the figures
//! in docs/reliability.md are from 10,000), `FTZ_CRASH_KILLS` the number of kills (default 3).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use ftz_audit::{
    leaf::Leaf,
    offline::{KeyRing, consistency_text, verify_consistency_files},
};
use ftz_core::{Clock, Role, SystemClock};
use ftz_devkit::ProcessFederation;
use ftz_proto::{
    GetCheckpointRequest, GetConsistencyProofRequest, IssueCertificationRequest, ListEntriesRequest,
    PushInspectionRequest, RecordInspectionRequest, RecordRef, TransferIntent, VerifyRecordRequest,
    admin_client::AdminClient, audit_client::AuditClient, issuer_client::IssuerClient, verify_client::VerifyClient,
    verify_record_request::Subject,
};
use ftzctl::audit_dir::{self, ExportDir, settled_checkpoint};
use prost::Message;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::Mutex as AsyncMutex;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn random_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    SystemRandom::new().fill(&mut b).unwrap();
    u64::from_be_bytes(b) % n.max(1)
}

/// Subjects of the transfer leaves in `zone`'s log, with how often each appears.
async fn transfer_subjects(fed: &ProcessFederation, zone: &str) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut audit = AuditClient::new(fed.channel(zone, Role::Auditor).unwrap());
    let mut out: BTreeMap<String, (u32, Vec<u8>)> = BTreeMap::new();
    let mut from = 0;
    loop {
        let req =
            ListEntriesRequest { from_index: from, limit: 1000, decision: "transfer".into(), ..Default::default() };
        let page = audit.list_entries(req).await.unwrap().into_inner();
        for e in &page.entries {
            if let Ok(Leaf::Transfer { intent, .. }) = Leaf::decode(&e.leaf) {
                let i = TransferIntent::decode(intent.payload.as_slice()).unwrap();
                let slot = out.entry(i.subject).or_insert((0, e.leaf.clone()));
                slot.0 += 1;
            }
        }
        if page.next_index >= page.log_size {
            return out;
        }
        from = page.next_index;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_transfers_and_sigkills_lose_nothing_and_duplicate_nothing() {
    let total = env_number("FTZ_CRASH_TRANSFERS", 600);
    let kills = env_number("FTZ_CRASH_KILLS", 3);
    let dir = tempfile::tempdir().unwrap();
    let limits = [("user_requests_per_second", 1_000_000), ("peer_requests_per_second", 1_000_000)];
    let mut fed = ProcessFederation::create(
        dir.path(),
        &["shanghai", "hainan", "guangdong"],
        std::path::Path::new(env!("CARGO_BIN_EXE_crash-node")),
        &[],
        &limits,
    )
    .unwrap();
    for z in ["shanghai", "hainan", "guangdong"] {
        fed.start(z).unwrap();
    }
    let now = SystemClock.now_ms();
    let agreement = |id: &str, from: &str, to: &str, rule| ftz_devkit::dev::agreement_doc(id, from, to, rule, now);
    fed.install_agreement(&agreement("sh-hn", "shanghai", "hainan", ftz_tests::cert_rule(&["AEO_ADVANCED"])))
        .await
        .unwrap();
    fed.install_agreement(&agreement("gd-sh", "guangdong", "shanghai", ftz_tests::inspection_rule("CNAS")))
        .await
        .unwrap();
    use ftz_proto::DataClass::{Certification, InspectionResult};
    // Policies without a practical rate limit: this is a load test, not a rate test.
    let unlimited = |mut p: ftz_proto::ExchangePolicy| {
        p.rate_limit = Some(ftz_proto::RateLimit { max_requests: 1_000_000, per_ms: 1_000 });
        p
    };
    let p = ftz_devkit::dev::record_policy("sh-hn", "shanghai", "hainan", Certification, &["verification"], now);
    fed.install_policy(&unlimited(p)).await.unwrap();
    let p =
        ftz_devkit::dev::record_policy("gd-sh", "guangdong", "shanghai", InspectionResult, &["import-clearance"], now);
    fed.install_policy(&unlimited(p)).await.unwrap();

    let fed = Arc::new(AsyncMutex::new(fed));
    let done = Arc::new(AtomicU64::new(0));
    let finished = Arc::new(AtomicBool::new(false));
    // What clients saw acknowledged: subjects of transfers.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let attempts = Arc::new(AtomicU64::new(0));
    // Checkpoints of shanghai a client saw, in order.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();

    let (sh_issuer, hn_verifier, gd_issuer, sh_audit) = {
        let f = fed.lock().await;
        (
            f.channel("shanghai", Role::Issuer).unwrap(),
            f.channel("hainan", Role::Enterprise).unwrap(),
            f.channel("guangdong", Role::Issuer).unwrap(),
            f.channel("shanghai", Role::Auditor).unwrap(),
        )
    };

    // Half the transfers: shanghai issues a certification, hainan's enterprise verifies it
    // (hainan's node fetches it from shanghai). Acknowledged: the answer says valid, fetched.
    let fetches = {
        let (done, acked, attempts) = (done.clone(), acked.clone(), attempts.clone());
        tokio::spawn(async move {
            let mut issuer = IssuerClient::new(sh_issuer);
            let mut verifier = VerifyClient::new(hn_verifier);
            let mut i = 0u64;
            let mut ok = 0u64;
            while ok < total / 2 {
                i += 1;
                attempts.fetch_add(1, Ordering::Relaxed);
                let id = format!("SH-C-{i:05}");
                let cert = ftz_devkit::dev::sample_certification(&id, "AEO_ADVANCED", SystemClock.now_ms());
                if issuer.issue_certification(IssueCertificationRequest { certification: Some(cert) }).await.is_err() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                let req = VerifyRecordRequest {
                    subject: Some(Subject::Ref(RecordRef { issuing_zone: "shanghai".into(), record_id: id.clone() })),
                    recognising_zone: String::new(),
                    purpose: "verification".into(),
                };
                match verifier.verify_record(req).await {
                    Ok(v) if v.get_ref().valid && v.get_ref().source == "fetched" => {
                        acked.lock().unwrap().push(format!("record shanghai/{id}"));
                        ok += 1;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    // Hainan down: wait for it rather than issue records in a tight loop.
                    _ => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
    };
    // The other half: guangdong records a result and pushes it to shanghai. Acknowledged: the
    // push answered (delivered, or queued in guangdong's outbox on disk).
    let pushes = {
        let (done, acked, attempts) = (done.clone(), acked.clone(), attempts.clone());
        tokio::spawn(async move {
            let mut issuer = IssuerClient::new(gd_issuer);
            for i in 0..(total - total / 2) {
                attempts.fetch_add(1, Ordering::Relaxed);
                let id = format!("GD-I-{i:05}");
                let result = ftz_devkit::dev::sample_inspection(&id, &format!("LOT-{i:05}"), SystemClock.now_ms());
                issuer.record_inspection(RecordInspectionRequest { result: Some(result) }).await.unwrap();
                let push =
                    PushInspectionRequest { record_id: id.clone(), to_zone: "shanghai".into(), purpose: String::new() };
                issuer.push_inspection(push).await.unwrap();
                acked.lock().unwrap().push(format!("record guangdong/{id}"));
                done.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // A client watching shanghai's checkpoints.
    let watcher = {
        let (seen, finished) = (seen.clone(), finished.clone());
        tokio::spawn(async move {
            let mut audit = AuditClient::new(sh_audit);
            while !finished.load(Ordering::Relaxed) {
                if let Ok(cp) = audit.get_checkpoint(GetCheckpointRequest {}).await {
                    let mut s = seen.lock().unwrap();
                    if s.last() != Some(&cp.get_ref().checkpoint) {
                        s.push(cp.into_inner().checkpoint);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    // The killer: at random points spread over the run, SIGKILL shanghai or hainan (in turn),
    // restart it a moment later.
    for k in 0..kills {
        let victim = if k % 2 == 0 { "shanghai" } else { "hainan" };
        let at = total * (k + 1) / (kills + 1) + random_below(total / (2 * (kills + 1)).max(1));
        while done.load(Ordering::Relaxed) < at.min(total - 1) {
            // A worker that failed ends the run at once (its error is reported below).
            if fetches.is_finished() || pushes.is_finished() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(random_below(200))).await;
        fed.lock().await.kill(victim);
        tokio::time::sleep(Duration::from_millis(200 + random_below(800))).await;
        fed.lock().await.start(victim).unwrap();
    }
    fetches.await.unwrap();
    pushes.await.unwrap();
    finished.store(true, Ordering::Relaxed);
    watcher.await.unwrap();

    // Everything queued goes out.
    let fed = fed.lock().await;
    for zone in ["guangdong", "hainan", "shanghai"] {
        let mut admin = AdminClient::new(fed.channel(zone, Role::Admin).unwrap());
        ftzctl::outbox::drained(&mut admin, Duration::from_secs(120)).await.unwrap_or_else(|e| panic!("{zone}: {e}"));
    }

    // Every acknowledged transfer in both logs exactly once, the same leaf.
    let acked = acked.lock().unwrap().clone();
    let logs: BTreeMap<&str, _> = [
        ("shanghai", transfer_subjects(&fed, "shanghai").await),
        ("hainan", transfer_subjects(&fed, "hainan").await),
        ("guangdong", transfer_subjects(&fed, "guangdong").await),
    ]
    .into_iter()
    .collect();
    let (mut lost, mut duplicated) = (0, 0);
    for subject in &acked {
        let other = if subject.starts_with("record shanghai/") { "hainan" } else { "guangdong" };
        let (a, b) = (logs["shanghai"].get(subject), logs[other].get(subject));
        match (a, b) {
            (Some((1, la)), Some((1, lb))) if la == lb => {}
            (None, _) | (_, None) => {
                lost += 1;
                eprintln!("lost: {subject}: shanghai {a:?}, {other} {b:?}");
            }
            _ => {
                duplicated += 1;
                eprintln!("duplicated or different: {subject}");
            }
        }
    }
    for log in logs.values() {
        duplicated += log.values().filter(|(n, _)| *n > 1).count();
    }
    assert_eq!((lost, duplicated), (0, 0), "lost {lost}, duplicated {duplicated}");

    // Every checkpoint seen before a crash is consistent with the log now.
    let mut audit = AuditClient::new(fed.channel("shanghai", Role::Auditor).unwrap());
    let last = settled_checkpoint(&mut audit, 0, Duration::from_secs(30)).await.unwrap();
    let ring = KeyRing::parse(&last.keys.join("\n")).unwrap();
    let seen = seen.lock().unwrap().clone();
    for old in &seen {
        let a = ftzctl::audit_dir::checkpoint_of(old).unwrap();
        let b = ftzctl::audit_dir::checkpoint_of(&last.checkpoint).unwrap();
        let p = audit
            .get_consistency_proof(GetConsistencyProofRequest { size1: a.size, size2: b.size })
            .await
            .unwrap()
            .into_inner();
        let hashes: Vec<[u8; 32]> = p.proof.iter().map(|h| h.as_slice().try_into().unwrap()).collect();
        verify_consistency_files(old, &last.checkpoint, &consistency_text(&hashes), &ring.keys[0])
            .unwrap_or_else(|e| panic!("checkpoint at {} seen before a crash: {e}", a.size));
    }

    // verify-log and cross-check on the exports.
    let mut exports = BTreeMap::new();
    for zone in ["shanghai", "hainan", "guangdong"] {
        let mut audit = AuditClient::new(fed.channel(zone, Role::Auditor).unwrap());
        settled_checkpoint(&mut audit, 0, Duration::from_secs(30)).await.unwrap();
        let out = dir.path().join(format!("export-{zone}"));
        audit_dir::export(&mut audit, &out, |_, _| {}).await.unwrap();
        let e = ExportDir::open(&out).unwrap();
        let r = e.verify(None, 0, |_| {}).unwrap();
        assert_eq!(r.problems, Vec::<String>::new(), "{zone}");
        exports.insert(zone, e);
    }
    for (a, b) in [("shanghai", "hainan"), ("guangdong", "shanghai")] {
        let (_, _, x) = audit_dir::cross_check(&exports[a], &exports[b], |_| {}).unwrap();
        assert!(!x.one_sided(), "{a}/{b}: {:?} {:?}", x.only_a, x.only_b);
    }
    println!(
        "crash harness: {} transfers acknowledged ({} attempts), {kills} SIGKILLs, starts: shanghai {}, hainan {}; {} checkpoints checked; lost {lost}, duplicated {duplicated}",
        acked.len(),
        attempts.load(Ordering::Relaxed),
        fed.starts["shanghai"],
        fed.starts["hainan"],
        seen.len()
    );
}
