//! Crash safety of the audit log: the `ftz-node` binary is killed with SIGKILL while it appends
//! entries and signs checkpoints, and restarted on the same data directory, several times.
//! After each crash the node must start (its latest signed checkpoint is reproducible from
//! its store), every checkpoint a client saw before the crash must still be there or be
//! extended consistently, and the whole log must rebuild to the checkpoint's root.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use ftz_audit::{
    checkpoint::Checkpoint,
    note::Note,
    offline::{KeyRing, consistency_text, verify_consistency_files, verify_log},
};
use ftz_client::ClientProfile;
use ftz_core::{Clock, Role, SystemClock, ZoneId};
use ftz_devkit::dev::{self, DevSpec, DevZoneSpec};
use ftz_proto::{
    GetCheckpointRequest, GetCheckpointResponse, GetConsistencyProofRequest, GetNodeStatusRequest, ListEntriesRequest,
    admin_client::AdminClient, audit_client::AuditClient,
};
use tonic::transport::Channel;

const ZONES: [&str; 2] = ["shanghai", "hainan"];

/// A node process, killed (SIGKILL) when dropped, so a failing test leaves none behind.
struct Node(Child);

impl Node {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts the binary on shanghai's config and data, port from the OS; returns it and its address
/// once it says it listens.
fn start(config: &std::path::Path) -> (Node, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ftz-node"))
        .arg("--config")
        .arg(config)
        .env("FTZ_LISTEN", "127.0.0.1:0")
        .env("FTZ_LOG_LEVEL", "error")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(addr) = line.split(" listening on ").nth(1) {
                let _ = tx.send(addr.to_string());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(addr) => (Node(child), addr),
        Err(_) => {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("the node did not start: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

fn channel(profile: &std::path::Path, addr: &str) -> Channel {
    let mut p = ClientProfile::load(profile).unwrap();
    p.endpoint = addr.to_string();
    p.channel(Duration::from_secs(10)).unwrap()
}

fn statement(cp: &GetCheckpointResponse) -> Checkpoint {
    Checkpoint::parse(&Note::parse(&cp.checkpoint).unwrap().text).unwrap()
}

async fn latest(audit: &mut AuditClient<Channel>) -> Option<GetCheckpointResponse> {
    audit.get_checkpoint(GetCheckpointRequest {}).await.ok().map(|r| r.into_inner())
}

async fn all_entries(audit: &mut AuditClient<Channel>) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        let page = audit
            .list_entries(ListEntriesRequest { from_index: out.len() as u64, limit: 1000, ..Default::default() })
            .await
            .unwrap()
            .into_inner();
        if page.entries.is_empty() {
            return out;
        }
        out.extend(page.entries.into_iter().map(|e| (e.index, e.leaf)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_logging_the_node_restarts_on_a_history_it_can_reproduce() {
    let dir = tempfile::tempdir().unwrap();
    let spec = DevSpec {
        federation_id: "ftz-crash-test".into(),
        zones: ZONES
            .iter()
            .map(|z| DevZoneSpec {
                id: ZoneId::new(*z).unwrap(),
                display_name: dev::display_name(z),
                // Hainan is never started: shanghai's witnessing fails and is retried; the log
                // does not depend on it.
                endpoint: "127.0.0.1:9".into(),
                http_endpoint: None,
                ops_endpoint: None,
            })
            .collect(),
        quorum: 2,
        validity_days: 30,
        now_ms: SystemClock.now_ms(),
    };
    let fed = dev::create(&spec, dir.path()).unwrap();
    let sh = fed.zone("shanghai").unwrap();
    let mut seen: Option<GetCheckpointResponse> = None;

    // Three crashes; the fourth start only checks what the third left.
    for round in 0..4 {
        let (mut node, addr) = start(&sh.config_path);
        let mut audit = AuditClient::new(channel(&sh.profile_path(Role::Auditor), &addr));

        // What survived the last crash: every checkpoint a client saw, or a consistent extension.
        let now = latest(&mut audit).await;
        if let Some(before) = &seen {
            let now = now.as_ref().expect("a checkpoint was seen before the crash; the node has none");
            let (a, b) = (statement(before), statement(now));
            assert!(b.size >= a.size, "round {round}: checkpoint went back from {} to {}", a.size, b.size);
            let proof = audit
                .get_consistency_proof(GetConsistencyProofRequest { size1: a.size, size2: b.size })
                .await
                .unwrap()
                .into_inner();
            let hashes: Vec<[u8; 32]> = proof.proof.iter().map(|h| h.as_slice().try_into().unwrap()).collect();
            let ring = KeyRing::parse(&now.keys.join("\n")).unwrap();
            verify_consistency_files(&before.checkpoint, &now.checkpoint, &consistency_text(&hashes), &ring.keys[0])
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            let entries = all_entries(&mut audit).await;
            let report = verify_log(&entries, &now.checkpoint, &ring.keys[0], &ring);
            assert_eq!(report.problems, Vec::<String>::new(), "round {round}");
        }

        if round == 3 {
            assert!(seen.is_some());
            node.kill();
            return;
        }

        // Four clients make refusals (each one a log entry) as fast as they can, until the kill.
        let target = now.as_ref().map_or(0, |c| statement(c).size) + 40;
        let mut clients = Vec::new();
        for _ in 0..4 {
            let mut wrong_role = AdminClient::new(channel(&sh.profile_path(Role::Enterprise), &addr));
            clients.push(tokio::spawn(async move {
                loop {
                    let res = wrong_role.get_node_status(GetNodeStatusRequest {}).await;
                    match res {
                        Err(s) if s.code() == tonic::Code::PermissionDenied => {}
                        // Over the per-user rate: wait a little and go on.
                        Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        _ => return,
                    }
                }
            }));
        }
        loop {
            if let Some(cp) = latest(&mut audit).await
                && statement(&cp).size >= target
            {
                seen = Some(cp);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        node.kill();
        for c in clients {
            c.await.unwrap();
        }
    }
}
