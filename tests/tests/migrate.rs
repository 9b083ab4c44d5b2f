//! `ftz-node migrate-store` against a real zone (issue 15): a node's sled store, written by the
//! node at work (records, transfers, industry rows, checkpoints cosigned by the other zone), is
//! moved into PostgreSQL by the binary, and the node started on PostgreSQL serves the same
//! audit log (size, root, entries), the same records, and goes on working. Refused while the
//! node runs, and into a database that already holds a store.
//!
//! The nodes always run on sled here (the migration's source), whatever `FTZ_TEST_STORE` says.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, process::Command, sync::Arc, time::Duration};

use ftz_core::Role;
use ftz_proto::{
    GetCheckpointRequest, GetNodeStatusRequest, ListEntriesRequest, NodeStatus, PushInspectionRequest,
    RecordInspectionRequest, RecordRef, VerifyRecordRequest, audit_client::AuditClient, verify_record_request::Subject,
};
use ftz_tests::{Cluster, DAY_MS, inspection, inspection_rule};

const ZONES: [&str; 2] = ["shanghai", "hainan"];
/// The zone moved to PostgreSQL; it pushes inspection results to hainan.
const MOVED: &str = "shanghai";

/// `ftz-node migrate-store ARGS` as a process of its own (the binary under the harness's name):
/// (exit code, stdout, stderr).
fn migrate_store(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_crash-node"))
        .arg("migrate-store")
        .args(args)
        .env_remove("FTZ_STORE_URL")
        .env_remove("FTZ_CONFIG")
        .output()
        .expect("ftz-node runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn status(c: &Cluster, zone: &str) -> NodeStatus {
    c.admin(zone).get_node_status(GetNodeStatusRequest {}).await.unwrap().into_inner()
}

/// One inspection result recorded by shanghai and pushed to hainan (a transfer both log).
async fn push(c: &Cluster, i: u32) -> String {
    let (id, lot) = (format!("SH-MG-{i:05}"), format!("LOT-MG-{i:05}"));
    let mut issuer = c.issuer(MOVED);
    issuer.record_inspection(RecordInspectionRequest { result: Some(inspection(c, &id, &lot)) }).await.unwrap();
    let push = PushInspectionRequest { record_id: id.clone(), to_zone: "hainan".into(), purpose: String::new() };
    issuer.push_inspection(push).await.unwrap();
    id
}

/// Industry rows (the dataset tree), more than one batch of the copy.
async fn import_rows(c: &Cluster, parts: u32) {
    for part in 0..parts {
        let rows = ftz_tests::bulk_rows(part, "9131010000", "310115", "");
        c.issuer(MOVED).import_rows(ftz_proto::ImportRowsRequest { rows }).await.unwrap();
    }
}

/// Waits until shanghai's latest checkpoint covers its whole log; returns its status.
async fn checkpointed(c: &Cluster) -> NodeStatus {
    for _ in 0..300 {
        let s = status(c, MOVED).await;
        if s.audit_log_size > 0 && s.checkpoint_size == s.audit_log_size {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("shanghai's log was not checkpointed within 30 s: {:?}", status(c, MOVED).await);
}

/// What shanghai's node serves of its log and records: (size, checkpoint size and root hex,
/// every entry's leaf, each record as verified).
async fn served(c: &Cluster, records: &[String]) -> (u64, u64, String, Vec<Vec<u8>>, Vec<ftz_proto::Envelope>) {
    let s = status(c, MOVED).await;
    let mut audit = AuditClient::new(c.user(MOVED, Role::Auditor));
    let cp = audit.get_checkpoint(GetCheckpointRequest {}).await.unwrap().into_inner();
    let note = ftz_audit::note::Note::parse(&cp.checkpoint).unwrap();
    let root = ftz_audit::checkpoint::Checkpoint::parse(&note.text).unwrap().root;
    let root: String = root.iter().map(|b| format!("{b:02x}")).collect();
    let entries = audit
        .list_entries(ListEntriesRequest { limit: 1000, ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .entries
        .into_iter()
        .map(|e| e.leaf)
        .collect();
    let mut verified = Vec::new();
    for id in records {
        let r = c
            .verifier(MOVED)
            .verify_record(VerifyRecordRequest {
                subject: Some(Subject::Ref(RecordRef { issuing_zone: MOVED.into(), record_id: id.clone() })),
                recognising_zone: String::new(),
                purpose: "audit".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.authentic, "{id}: {r:?}");
        verified.push(r.record.expect("the record"));
    }
    (s.audit_log_size, cp.size, root, entries, verified)
}

/// Points `zone`'s config at `url` on PostgreSQL (what an operator changes after migrating).
fn use_postgres(c: &Cluster, zone: &str, url: &str) {
    let path = &c.zone(zone).config_path;
    let mut doc: toml::Table = std::fs::read_to_string(path).unwrap().parse().unwrap();
    let mut store = toml::Table::new();
    store.insert("engine".into(), toml::Value::String("postgres".into()));
    store.insert("url".into(), toml::Value::String(url.into()));
    doc.insert("store".into(), toml::Value::Table(store));
    std::fs::write(path, toml::to_string(&doc).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sled_zone_moved_to_postgres_serves_the_same_log_and_records_and_continues() {
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn ftz_core::Clock> = Arc::new(ftz_core::SystemClock);
    let local = ftz_devkit::LocalFederation::start(&ZONES, &dir.path().join("federation"), clock.clone())
        .await
        .expect("federation starts");
    let mut c = Cluster::from_local(local, clock, dir);
    c.agree("sh-hn", MOVED, "hainan", vec![inspection_rule("CNAS")], 365 * DAY_MS).await;
    let mut records = Vec::new();
    for i in 0..4 {
        records.push(push(&c, i).await);
    }
    import_rows(&c, 3).await;
    checkpointed(&c).await;
    let before = served(&c, &records).await;
    assert!(before.0 >= 4 && before.1 == before.0, "size {}, checkpoint {}", before.0, before.1);

    let pg = ftz_devkit::postgres::TempPostgres::start().unwrap_or_else(|e| panic!("{e}"));
    pg.create_database(MOVED).unwrap();
    let url = pg.url(MOVED);
    let data = c.zone(MOVED).data_dir();
    let from = data.to_str().unwrap();

    // While the node runs, its store is locked: refused, saying so, and nothing is written.
    let (code, out, err) = migrate_store(&["--from", from, "--to", &url]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("in use") && err.contains("Stop the zone's node"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");

    c.local.stop(MOVED).await.unwrap();
    let (code, out, err) = migrate_store(&["--from", from, "--to", &url, "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    eprintln!("migrated: {report}");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["audit_size"], before.0, "{report}");
    assert_eq!(report["checkpoint_size"], before.1, "{report}");
    assert_eq!(report["audit_root"], before.2.as_str(), "the root the node signed: {report}");
    assert!(report["rows"].as_u64().unwrap() > 3000, "the industry rows at least: {report}");
    assert!(report["bytes"].as_u64().unwrap() > 0 && report["elapsed_ms"].is_u64(), "{report}");
    let trees = ftz_store::Store::open(&data, ftz_store::StoreOptions::default()).unwrap().backup_trees().len();
    assert_eq!(report["trees"], trees, "{report}");
    assert!(!report["to"].as_str().unwrap().is_empty());

    // Again into the same database: refused, and the copy is left as it was.
    let (code, out, err) = migrate_store(&["--from", from, "--to", &url]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("already holds a store") && err.contains("never merges"), "{err}");

    // The node of the zone, on PostgreSQL now: the same log, root and records.
    use_postgres(&c, MOVED, &url);
    c.local.restart(MOVED).await.unwrap();
    let after = served(&c, &records).await;
    assert_eq!(after.0, before.0, "audit log size");
    assert_eq!((after.1, &after.2), (before.1, &before.2), "latest checkpoint size and root");
    assert_eq!(after.3, before.3, "every entry");
    assert_eq!(after.4, before.4, "every record, byte for byte");

    // And it goes on: a new transfer is logged, in the database (not in the sled directory).
    let id = push(&c, 10).await;
    let s = checkpointed(&c).await;
    assert!(s.audit_log_size > before.0, "{s:?}");
    let mut o = ftz_store::PgOptions::new(url.clone());
    o.create = false;
    assert_eq!(ftz_store::Store::open_postgres(o).unwrap().audit_size().unwrap(), s.audit_log_size);
    let sled = ftz_store::Store::open(&data, ftz_store::StoreOptions::default()).expect("sled is not in use");
    assert_eq!(sled.audit_size().unwrap(), before.0, "the sled store is as it was");
    drop(sled);
    records.push(id);
    served(&c, &records).await;
    c.shutdown().await;
}

/// What `--help` tells an operator before they run it.
#[test]
fn help_says_what_it_does_and_what_it_needs() {
    let (code, out, err) = migrate_store(&["--help"]);
    assert_eq!(code, 0, "{err}");
    for needed in
        ["sled", "PostgreSQL", "Stop the zone's node", "must be empty", "never merges", "--postgres-ca", "--json"]
    {
        assert!(out.contains(needed), "{needed:?} missing from:\n{out}");
    }
}

/// A path that holds no sled store is refused before anything is created there.
#[test]
fn a_directory_without_a_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-a-store");
    let (code, out, err) =
        migrate_store(&["--from", missing.to_str().unwrap(), "--to", "postgresql://ftz@127.0.0.1:1/x", "--json"]);
    assert_eq!(code, 1, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["error"].as_str().unwrap().contains("holds no sled store"), "{v}");
    assert!(!Path::new(&missing).exists());
}
