//! Backup and restore against real nodes (issue 14, item 4): `Admin.Backup` streamed while
//! the node works, `ftz-node restore` into an empty data directory, and the restored node's
//! refusal to fork its log when the other zones' witnesses hold more of it than the backup.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use ftz_core::{Reason, Role};
use ftz_proto::{
    GetNodeStatusRequest, InstallAgreementRequest, ListCheckpointsRequest, ListEquivocationsRequest, NodeStatus,
    PushInspectionRequest, RecordInspectionRequest, admin_client::AdminClient, audit_client::AuditClient,
};
use ftz_tests::{Cluster, DAY_MS, inspection, inspection_rule, reason};

const ZONES: [&str; 3] = ["guangdong", "shanghai", "hainan"];
/// The zone backed up, lost and restored; it pushes inspection results to shanghai.
const LOST: &str = "guangdong";

async fn status(c: &Cluster, zone: &str) -> NodeStatus {
    c.admin(zone).get_node_status(GetNodeStatusRequest {}).await.unwrap().into_inner()
}

/// One push from guangdong to shanghai (a transfer both logs record).
async fn push(c: &Cluster, i: u32) -> Result<(), tonic::Status> {
    let (id, lot) = (format!("GD-BK-{i:05}"), format!("LOT-BK-{i:05}"));
    let mut issuer = c.issuer(LOST);
    issuer.record_inspection(RecordInspectionRequest { result: Some(inspection(c, &id, &lot)) }).await?;
    let push = PushInspectionRequest { record_id: id, to_zone: "shanghai".into(), purpose: String::new() };
    issuer.push_inspection(push).await.map(|_| ())
}

/// Waits until `zone`'s latest checkpoint covers its whole log and carries a cosignature of
/// every other zone; returns its size.
async fn cosigned_by_all(c: &Cluster, zone: &str) -> u64 {
    let mut audit = AuditClient::new(c.user(zone, Role::Auditor));
    for _ in 0..300 {
        let s = status(c, zone).await;
        let latest = audit
            .list_checkpoints(ListCheckpointsRequest { limit: 1, below_size: 0 })
            .await
            .unwrap()
            .into_inner()
            .checkpoints
            .into_iter()
            .next();
        if let Some(cp) = latest {
            let by: std::collections::BTreeSet<_> = cp.cosignatures.iter().map(|c| c.zone.clone()).collect();
            if cp.size == s.audit_log_size && ZONES.iter().filter(|z| **z != zone).all(|z| by.contains(*z)) {
                return cp.size;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{zone}'s latest checkpoint was not cosigned by every other zone within 30 s");
}

async fn no_equivocation(c: &Cluster) {
    for zone in ZONES.iter().filter(|z| **z != LOST) {
        let mut audit = AuditClient::new(c.user(zone, Role::Auditor));
        let ev = audit.list_equivocations(ListEquivocationsRequest {}).await.unwrap().into_inner().evidence;
        assert!(ev.is_empty(), "witness {zone} found an equivocation: {ev:?}");
        assert_eq!(status(c, zone).await.equivocations_found, 0, "{zone}");
    }
}

/// Stops `LOST`, loses its data directory, restores `file` into it and starts it again.
async fn lose_the_disk_and_restore(c: &mut Cluster, file: &Path) -> ftz_node::restore::Restored {
    c.local.stop(LOST).await.unwrap();
    let dz = c.zone(LOST);
    let (config, data) = (dz.config_path.clone(), dz.data_dir());
    c.lose_store(LOST);
    let restored = ftz_node::restore::restore(&config, file, c.clock.now_ms()).expect("restore");
    assert_eq!(restored.data_dir, data);
    c.local.restart(LOST).await.unwrap();
    restored
}

/// Waits until the restored node has heard every witness; returns its status.
async fn witnesses_heard(c: &Cluster) -> NodeStatus {
    for _ in 0..300 {
        let s = status(c, LOST).await;
        if s.restore_witnesses.len() == 2 && s.restore_witnesses.iter().all(|w| w.answered) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the restored node did not hear its witnesses within 30 s: {:?}", status(c, LOST).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restored_from_a_backup_older_than_its_cosigned_checkpoints_refuses_to_append_and_never_forks() {
    let c = Cluster::start(&ZONES).await;
    c.agree("gd-sh", LOST, "shanghai", vec![inspection_rule("CNAS")], 365 * DAY_MS).await;
    for i in 0..5 {
        push(&c, i).await.unwrap();
    }
    // Load: pushes (issuing, logged by both sides) while the backup streams.
    let c = Arc::new(tokio::sync::RwLock::new(c));
    let (stop, next, acked) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU32::new(100)), Arc::new(AtomicU32::new(0)));
    let load = {
        let (c, stop, next, acked) = (c.clone(), stop.clone(), next.clone(), acked.clone());
        tokio::spawn(async move {
            // Paced below the issuer's 50 requests a second (a push is two), so that the
            // pushes after the load are not refused RATE_LIMITED by a bucket it emptied.
            let mut pace = tokio::time::interval(Duration::from_millis(60));
            while !stop.load(Ordering::Relaxed) {
                pace.tick().await;
                let i = next.fetch_add(1, Ordering::Relaxed);
                if push(&*c.read().await, i).await.is_ok() {
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("guangdong.ftzbackup");
    let before = acked.load(Ordering::Relaxed);
    let summary = {
        let cl = c.read().await;
        ftzctl::backup::download(&mut cl.admin(LOST), &file, |_, _| {}).await.expect("backup")
    };
    let during = acked.load(Ordering::Relaxed) - before;
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    let mut c = Arc::into_inner(c).unwrap().into_inner();
    assert!(summary.audit_log_size >= 5, "{summary:?}");
    assert!(summary.entries > 0 && summary.bytes > 0, "{summary:?}");
    eprintln!("backup: {summary:?}; {during} pushes acknowledged while it streamed");

    // Keep working: more entries, checkpoints cosigned by both other zones beyond the cut.
    for i in 10..15 {
        push(&c, i).await.unwrap();
    }
    let cosigned = cosigned_by_all(&c, LOST).await;
    assert!(cosigned > summary.audit_log_size, "cosigned {cosigned}, backup cut {}", summary.audit_log_size);

    let restored = lose_the_disk_and_restore(&mut c, &file).await;
    assert_eq!(restored.audit_log_size, summary.audit_log_size);
    assert_eq!(restored.sha256, summary.sha256);

    // It says why it refuses, and which witness holds what.
    let s = witnesses_heard(&c).await;
    assert!(s.audit_log_blocked.contains("behind"), "{s:?}");
    for w in &s.restore_witnesses {
        assert!(w.held_size >= cosigned && w.held_size > summary.audit_log_size, "{w:?}");
        assert!(w.conflict.contains("beyond"), "{w:?}");
    }
    assert_eq!(s.audit_log_size, summary.audit_log_size);
    // A real request that would log is refused with the stable reason; so is an install.
    let (code, why) = reason(push(&c, 50).await);
    assert_eq!((code, why), (tonic::Code::Unavailable, Some(Reason::LogBehindWitnesses)));
    let (_, why) = reason(c.admin(LOST).install_agreement(InstallAgreementRequest { agreement: None }).await);
    assert_eq!(why, Some(Reason::LogBehindWitnesses));
    // Reads keep working, the log stays at the cut, and nothing is signed beyond it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = status(&c, LOST).await;
    assert_eq!(s.audit_log_size, summary.audit_log_size);
    assert!(s.checkpoint_size <= summary.audit_log_size, "{s:?}");
    assert!(!s.audit_log_blocked.is_empty());
    // The witnesses were asked, and found nothing to keep as evidence.
    no_equivocation(&c).await;
    // Still so after a restart: the marker is durable.
    c.local.restart(LOST).await.unwrap();
    let s = witnesses_heard(&c).await;
    assert!(s.audit_log_blocked.contains("behind"), "{s:?}");
    no_equivocation(&c).await;
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_after_the_last_cosigned_checkpoint_restores_and_continues() {
    let mut c = Cluster::start(&ZONES).await;
    c.agree("gd-sh", LOST, "shanghai", vec![inspection_rule("CNAS")], 365 * DAY_MS).await;
    for i in 0..6 {
        push(&c, i).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("guangdong.ftzbackup");

    // Only an admin may take a backup; the file is not even created otherwise.
    let mut as_enterprise = AdminClient::new(c.user(LOST, Role::Enterprise));
    let err = ftzctl::backup::download(&mut as_enterprise, &file, |_, _| {}).await.unwrap_err();
    let refused = err.downcast_ref::<tonic::Status>().expect("a status");
    assert_eq!(ftz_tests::reason_of(refused), Some(Reason::RoleNotAllowed), "{refused}");
    assert!(!file.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no temporary file left");
    // (The refusal is an entry of the log too: the cut is taken after it.)
    let cut = cosigned_by_all(&c, LOST).await;

    let summary = ftzctl::backup::download(&mut c.admin(LOST), &file, |_, _| {}).await.expect("backup");
    assert_eq!(summary.audit_log_size, cut);
    assert_eq!(ftzctl::backup::check(&file).unwrap().sha256, summary.sha256);

    c.local.stop(LOST).await.unwrap();
    let dz = c.zone(LOST);
    let config = dz.config_path.clone();
    // A store that holds something is refused, and left as it was.
    let held = c.open_store(LOST).audit_size().unwrap();
    let err = ftz_node::restore::restore(&config, &file, 0).unwrap_err().to_string();
    assert!(err.contains("not empty") && err.contains("nothing was written"), "{err}");
    assert_eq!(c.open_store(LOST).audit_size().unwrap(), held);
    // A backup with one byte changed is refused before anything is written.
    c.lose_store(LOST);
    let bytes = std::fs::read(&file).unwrap();
    for at in [bytes.len() / 3, bytes.len() - 40] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x20;
        let corrupt = dir.path().join("corrupt.ftzbackup");
        std::fs::write(&corrupt, &bad).unwrap();
        let err = format!("{:#}", ftz_node::restore::restore(&config, &corrupt, 0).unwrap_err());
        assert!(err.contains("SHA-256") || err.contains("not valid"), "byte {at}: {err}");
        assert!(err.contains("nothing was written"), "{err}");
        assert!(!c.has_store(LOST), "byte {at}: a store was created");
    }

    // The real one restores; the witnesses hold exactly the cut with the same root: it continues.
    let restored = ftz_node::restore::restore(&config, &file, c.clock.now_ms()).expect("restore");
    assert_eq!(restored.audit_log_size, cut);
    c.local.restart(LOST).await.unwrap();
    let mut s = witnesses_heard(&c).await;
    for _ in 0..100 {
        if s.audit_log_blocked.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        s = status(&c, LOST).await;
    }
    assert!(s.audit_log_blocked.is_empty(), "{s:?}");
    assert!(s.restore_witnesses.iter().all(|w| w.held_size == cut && w.conflict.is_empty()), "{s:?}");
    for i in 10..14 {
        push(&c, i).await.unwrap();
    }
    let after = cosigned_by_all(&c, LOST).await;
    assert!(after > cut, "{after} after, {cut} restored");
    no_equivocation(&c).await;
    c.shutdown().await;
}

/// Each backup copies the whole store into a temporary file first: a caller (a compromised
/// admin certificate) asking for many at once would fill the node's disk. One at a time; the
/// next one is refused `RATE_LIMITED` until the first stream is read or dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_backup_at_a_time() {
    let c = Cluster::start(&ZONES).await;
    // A store of a few MB (industry rows), so that a backup is more than the node can send
    // before its client reads (HTTP/2 flow control, and the node's own queue of 4 chunks).
    for part in 0..10u32 {
        let rows = ftz_tests::bulk_rows(part, "9144010000", "440104", " with a name long enough to take some room");
        c.issuer(LOST).import_rows(ftz_proto::ImportRowsRequest { rows }).await.unwrap();
    }
    let mut admin = c.admin(LOST);
    // Not read: the node cannot send more than the flow-control window, and holds the slot.
    let first = admin.backup(ftz_proto::BackupRequest {}).await.unwrap().into_inner();
    let (code, why) = reason(c.admin(LOST).backup(ftz_proto::BackupRequest {}).await);
    assert_eq!((code, why), (tonic::Code::ResourceExhausted, Some(Reason::RateLimited)));
    drop(first);
    let dir = tempfile::tempdir().unwrap();
    for attempt in 0.. {
        match ftzctl::backup::download(&mut c.admin(LOST), &dir.path().join("b"), |_, _| {}).await {
            Ok(s) => {
                assert!(s.bytes > 0);
                break;
            }
            Err(e) if attempt < 100 => {
                let status = e.downcast_ref::<tonic::Status>().expect("a refusal");
                assert_eq!(ftz_tests::reason_of(status), Some(Reason::RateLimited), "{status}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the slot was not given back after the first stream was dropped: {e:#}"),
        }
    }
    c.shutdown().await;
}
