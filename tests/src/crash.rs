//! The crash harness's load and its checks, shared by `tests/crash.rs` (node processes killed
//! with SIGKILL) and `tests/replicas.rs` (replicas killed, the database restarted).
//!
//! The load: records fetched from shanghai by hainan (shanghai issues a certification,
//! hainan's enterprise verifies it and hainan's node fetches it), inspection results pushed from
//! guangdong to shanghai, and a client watching shanghai's checkpoints. The checks, once it is
//! over ([`check`]):
//!
//! - every transfer a client saw acknowledged is in both zones' logs exactly once, with the
//!   same leaf; no transfer is in a log twice;
//! - every checkpoint of shanghai a client saw is consistent with its log at the end;
//! - every exported log verifies (`verify-log`) and the pairs cross-check (`cross-check`):
//!   no transfer is in one log only.

use std::{
    collections::BTreeMap,
    path::Path,
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
use ftz_devkit::{LocalError, ProcessFederation, ProcessOptions};
use ftz_proto::{
    GetCheckpointRequest, GetConsistencyProofRequest, IssueCertificationRequest, ListEntriesRequest,
    PushInspectionRequest, RecordInspectionRequest, RecordRef, TransferIntent, VerifyRecordRequest,
    admin_client::AdminClient, audit_client::AuditClient, issuer_client::IssuerClient, verify_client::VerifyClient,
    verify_record_request::Subject,
};
use ftzctl::audit_dir::{self, ExportDir, settled_checkpoint};
use futures_util::FutureExt;
use prost::Message;
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::watch;
use tonic::transport::Channel;

/// The zones of the harness: shanghai provides the fetched records and receives the pushes.
pub const ZONES: [&str; 3] = ["shanghai", "hainan", "guangdong"];

pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub fn random_below(n: u64) -> u64 {
    let mut b = [0u8; 8];
    SystemRandom::new().fill(&mut b).unwrap();
    u64::from_be_bytes(b) % n.max(1)
}

/// What every harness federation has: rates without a practical limit (a load test, not a rate
/// test), and every zone on PostgreSQL when `FTZ_TEST_STORE=postgres` ([`crate::on_postgres`]).
pub fn process_options() -> ProcessOptions {
    let o =
        ProcessOptions::new().limit("user_requests_per_second", 1_000_000).limit("peer_requests_per_second", 1_000_000);
    if crate::on_postgres() { o.postgres(&ZONES) } else { o }
}

/// Installs what the load needs: shanghai's AEO certifications recognised by hainan, guangdong's
/// CNAS inspections by shanghai, and the record policies (without a practical rate limit).
pub async fn install_exchange(fed: &ProcessFederation) -> Result<(), LocalError> {
    let now = SystemClock.now_ms();
    let agreement = |id: &str, from: &str, to: &str, rule| ftz_devkit::dev::agreement_doc(id, from, to, rule, now);
    fed.install_agreement(&agreement("sh-hn", "shanghai", "hainan", crate::cert_rule(&["AEO_ADVANCED"]))).await?;
    fed.install_agreement(&agreement("gd-sh", "guangdong", "shanghai", crate::inspection_rule("CNAS"))).await?;
    use ftz_proto::DataClass::{Certification, InspectionResult};
    let unlimited = |mut p: ftz_proto::ExchangePolicy| {
        p.rate_limit = Some(ftz_proto::RateLimit { max_requests: 1_000_000, per_ms: 1_000 });
        p
    };
    let p = ftz_devkit::dev::record_policy("sh-hn", "shanghai", "hainan", Certification, &["verification"], now);
    fed.install_policy(&unlimited(p)).await?;
    let p =
        ftz_devkit::dev::record_policy("gd-sh", "guangdong", "shanghai", InspectionResult, &["import-clearance"], now);
    fed.install_policy(&unlimited(p)).await
}

/// Makes a client channel to a zone as its user with a role.
pub type Channels = Arc<dyn Fn(&str, Role) -> Channel + Send + Sync>;

/// The channels of `fed` (its zones' endpoints: a node, or a zone's balancer).
pub fn channels_of(fed: &ProcessFederation) -> Channels {
    let make = fed.channels();
    Arc::new(move |zone: &str, role| make(zone, role).unwrap_or_else(|e| panic!("a channel to {zone}: {e}")))
}

#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Transfers to acknowledge: half fetches, half pushes.
    pub total: u64,
    /// Client channels are made anew every this many requests (and looks of the watcher) on
    /// average (None: once each). Through a balancer a new channel is a new connection, which
    /// lands on the next replica.
    pub fresh_channels_every: Option<u64>,
    /// Whether a failed push (or record) fails the run (guangdong's node runs throughout and
    /// queues what it cannot deliver) or is counted as refused, not acknowledged, and the next
    /// one tried (guangdong's database may be down).
    pub pushes_must_succeed: bool,
}

/// How far the load is.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Transfers acknowledged.
    pub done: u64,
    /// Calls answered with an error.
    pub refused: u64,
    /// Workers (fetches, pushes) that ended, and those that failed (panicked).
    pub ended: u32,
    pub failed: u32,
}

/// What the load saw.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Subjects of the acknowledged transfers ("record shanghai/SH-C-00001").
    pub acked: Vec<String>,
    pub attempts: u64,
    pub refused: u64,
    /// The first refusals (call, code, message), for the report.
    pub refusals: Vec<String>,
    /// Checkpoints of shanghai the watcher saw, in order.
    pub checkpoints: Vec<String>,
}

/// The running load.
pub struct Load {
    progress: watch::Receiver<Progress>,
    state: Arc<Shared>,
    fetches: tokio::task::JoinHandle<()>,
    pushes: tokio::task::JoinHandle<()>,
    watcher: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Shared {
    acked: Mutex<Vec<String>>,
    attempts: AtomicU64,
    refusals: Mutex<Vec<String>>,
    checkpoints: Mutex<Vec<String>>,
    finished: AtomicBool,
}

/// What a worker tells of its progress.
struct Worker(Arc<watch::Sender<Progress>>);

/// Runs a worker's `body`, counting it as ended when it returns and as failed when it panics
/// (the panic is then the task's).
fn spawn_worker(
    tx: &Arc<watch::Sender<Progress>>,
    body: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let tx = tx.clone();
    tokio::spawn(async move {
        let r = std::panic::AssertUnwindSafe(body).catch_unwind().await;
        tx.send_modify(|p| {
            p.ended += 1;
            p.failed += u32::from(r.is_err());
        });
        if let Err(panic) = r {
            std::panic::resume_unwind(panic);
        }
    })
}

const REFUSALS_KEPT: usize = 20;

impl Worker {
    fn acked(&self, state: &Shared, subject: String) {
        state.acked.lock().unwrap().push(subject);
        self.0.send_modify(|p| p.done += 1);
    }

    fn refused(&self, state: &Shared, call: &str, s: &tonic::Status) {
        let mut r = state.refusals.lock().unwrap();
        if r.len() < REFUSALS_KEPT {
            r.push(format!("{call}: {:?} {:?} {}", s.code(), crate::reason_of(s), s.message()));
        }
        self.0.send_modify(|p| p.refused += 1);
    }
}

/// A channel made anew every `every` requests on average: after a random number of them, from
/// 1 to twice that, so that the connections of the load's clients and the nodes' own do not
/// fall into step with a balancer's round-robin (and land on the same replica every time).
struct Fresh {
    make: Box<dyn Fn() -> Channel + Send>,
    every: Option<u64>,
    left: u64,
    channel: Channel,
}

impl Fresh {
    fn new(make: impl Fn() -> Channel + Send + 'static, every: Option<u64>) -> Fresh {
        let left = every.map_or(0, |n| 1 + random_below(2 * n.max(1)));
        Fresh { channel: make(), make: Box::new(make), every, left }
    }

    fn get(&mut self) -> Channel {
        if let Some(n) = self.every {
            if self.left == 0 {
                self.channel = (self.make)();
                self.left = 1 + random_below(2 * n.max(1));
            }
            self.left -= 1;
        }
        self.channel.clone()
    }
}

impl Load {
    pub fn start(channels: Channels, o: LoadOptions) -> Load {
        let (tx, progress) = watch::channel(Progress::default());
        let tx = Arc::new(tx);
        let state = Arc::new(Shared::default());
        let fresh = |zone: &'static str, role: Role| {
            let c = channels.clone();
            Fresh::new(move || c(zone, role), o.fresh_channels_every)
        };
        let half = o.total / 2;
        // Half the transfers: shanghai issues a certification, hainan's enterprise verifies it
        // (hainan's node fetches it from shanghai). Acknowledged: the answer says valid, fetched.
        let fetches = {
            let (worker, state) = (Worker(tx.clone()), state.clone());
            let (mut issuer, mut verifier) = (fresh("shanghai", Role::Issuer), fresh("hainan", Role::Enterprise));
            spawn_worker(&tx, async move {
                let (mut i, mut ok) = (0u64, 0u64);
                while ok < half {
                    i += 1;
                    state.attempts.fetch_add(1, Ordering::Relaxed);
                    let id = format!("SH-C-{i:05}");
                    let cert = ftz_devkit::dev::sample_certification(&id, "AEO_ADVANCED", SystemClock.now_ms());
                    let req = IssueCertificationRequest { certification: Some(cert) };
                    if let Err(s) = IssuerClient::new(issuer.get()).issue_certification(req).await {
                        worker.refused(&state, "shanghai issue", &s);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    let req = VerifyRecordRequest {
                        subject: Some(Subject::Ref(RecordRef {
                            issuing_zone: "shanghai".into(),
                            record_id: id.clone(),
                        })),
                        recognising_zone: String::new(),
                        purpose: "verification".into(),
                    };
                    match VerifyClient::new(verifier.get()).verify_record(req).await {
                        Ok(v) if v.get_ref().valid && v.get_ref().source == "fetched" => {
                            worker.acked(&state, format!("record shanghai/{id}"));
                            ok += 1;
                        }
                        // A node down: wait for it rather than issue records in a tight loop.
                        Err(s) => {
                            worker.refused(&state, "hainan verify", &s);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            })
        };
        // The other half: guangdong records a result and pushes it to shanghai. Acknowledged:
        // the push answered (delivered, or queued in guangdong's outbox).
        let pushes = {
            let (worker, state) = (Worker(tx.clone()), state.clone());
            let mut issuer = fresh("guangdong", Role::Issuer);
            let must = o.pushes_must_succeed;
            spawn_worker(&tx, async move {
                let (mut i, mut ok) = (0u64, 0u64);
                while ok < o.total - half {
                    state.attempts.fetch_add(1, Ordering::Relaxed);
                    let id = format!("GD-I-{i:05}");
                    let result = ftz_devkit::dev::sample_inspection(&id, &format!("LOT-{i:05}"), SystemClock.now_ms());
                    i += 1;
                    let mut client = IssuerClient::new(issuer.get());
                    let pushed = match client.record_inspection(RecordInspectionRequest { result: Some(result) }).await
                    {
                        Ok(_) => {
                            let push = PushInspectionRequest {
                                record_id: id.clone(),
                                to_zone: "shanghai".into(),
                                purpose: String::new(),
                            };
                            client.push_inspection(push).await.map(|_| ()).map_err(|s| ("guangdong push", s))
                        }
                        Err(s) => Err(("guangdong record", s)),
                    };
                    match pushed {
                        Ok(()) => {
                            worker.acked(&state, format!("record guangdong/{id}"));
                            ok += 1;
                        }
                        Err((call, s)) if must => panic!("{call} {id}: {s:?}"),
                        Err((call, s)) => {
                            // Not acknowledged; the next result is another record.
                            worker.refused(&state, call, &s);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            })
        };
        // A client watching shanghai's checkpoints.
        let watcher = {
            let state = state.clone();
            let mut audit = fresh("shanghai", Role::Auditor);
            tokio::spawn(async move {
                while !state.finished.load(Ordering::Relaxed) {
                    if let Ok(cp) = AuditClient::new(audit.get()).get_checkpoint(GetCheckpointRequest {}).await {
                        let mut s = state.checkpoints.lock().unwrap();
                        if s.last() != Some(&cp.get_ref().checkpoint) {
                            s.push(cp.into_inner().checkpoint);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        Load { progress, state, fetches, pushes, watcher }
    }

    /// Subjects of the transfers acknowledged so far.
    pub fn acked(&self) -> Vec<String> {
        self.state.acked.lock().unwrap().clone()
    }

    pub fn progress(&self) -> Progress {
        *self.progress.borrow()
    }

    /// Waits until `f` holds of the progress (true), or the workers have ended or one failed
    /// before it does (false).
    pub async fn until(&mut self, mut f: impl FnMut(&Progress) -> bool) -> bool {
        let p = *self.progress.wait_for(|p| p.failed > 0 || p.ended >= 2 || f(p)).await.expect("the load's progress");
        f(&p)
    }

    /// Waits until `n` transfers are acknowledged (see [`Load::until`]).
    pub async fn reached(&mut self, n: u64) -> bool {
        self.until(|p| p.done >= n).await
    }

    /// Waits for the workers to finish (the watcher stops then): what the load saw, or why a
    /// worker failed.
    pub async fn finish(self) -> Result<Outcome, String> {
        let fetches = self.fetches.await;
        let pushes = self.pushes.await;
        self.state.finished.store(true, Ordering::Relaxed);
        let _ = self.watcher.await;
        for (what, r) in [("fetches", fetches), ("pushes", pushes)] {
            if let Err(e) = r {
                let why = match e.try_into_panic() {
                    Ok(p) => p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default(),
                    Err(e) => e.to_string(),
                };
                return Err(format!("the {what} worker failed: {why}"));
            }
        }
        let s = &self.state;
        Ok(Outcome {
            acked: s.acked.lock().unwrap().clone(),
            attempts: s.attempts.load(Ordering::Relaxed),
            refused: self.progress.borrow().refused,
            refusals: s.refusals.lock().unwrap().clone(),
            checkpoints: s.checkpoints.lock().unwrap().clone(),
        })
    }
}

/// Subjects of the transfer leaves in `zone`'s log, with how often each appears and its leaf.
/// Also the log's size, as the node that answered gave it.
pub async fn transfer_subjects(
    fed: &ProcessFederation,
    zone: &str,
) -> Result<(BTreeMap<String, (u32, Vec<u8>)>, u64), String> {
    let mut audit = AuditClient::new(fed.channel(zone, Role::Auditor).map_err(|e| e.to_string())?);
    let mut out: BTreeMap<String, (u32, Vec<u8>)> = BTreeMap::new();
    let mut from = 0;
    loop {
        let req =
            ListEntriesRequest { from_index: from, limit: 1000, decision: "transfer".into(), ..Default::default() };
        let page = audit.list_entries(req).await.map_err(|s| format!("listing {zone}'s log from {from}: {s:?}"))?;
        let page = page.into_inner();
        for e in &page.entries {
            if let Ok(Leaf::Transfer { intent, .. }) = Leaf::decode(&e.leaf) {
                let i = TransferIntent::decode(intent.payload.as_slice()).map_err(|e| e.to_string())?;
                let slot = out.entry(i.subject).or_insert((0, e.leaf.clone()));
                slot.0 += 1;
            }
        }
        if page.next_index >= page.log_size {
            return Ok((out, page.log_size));
        }
        from = page.next_index;
    }
}

/// What [`check`] found (when it found nothing wrong).
#[derive(Debug, Clone)]
pub struct Checked {
    /// Transfer entries in each zone's log.
    pub transfers: BTreeMap<String, usize>,
    /// Checkpoints seen during the run, each proved consistent with the last.
    pub checkpoints: usize,
    /// shanghai's log size at the end.
    pub shanghai_size: u64,
}

/// Lines of a report, the first `n` of them and how many more.
fn first_lines(lines: &[String], n: usize) -> String {
    let mut s = lines.iter().take(n).cloned().collect::<Vec<_>>().join("\n");
    if lines.len() > n {
        s.push_str(&format!("\n... and {} more", lines.len() - n));
    }
    s
}

/// Waits until every zone's outbox is empty (at most 2 minutes each): everything queued went out.
pub async fn drain(fed: &ProcessFederation) -> Result<(), String> {
    for zone in ["guangdong", "hainan", "shanghai"] {
        let mut admin = AdminClient::new(fed.channel(zone, Role::Admin).map_err(|e| e.to_string())?);
        ftzctl::outbox::drained(&mut admin, Duration::from_secs(120))
            .await
            .map_err(|e| format!("{zone}'s outbox: {e}"))?;
    }
    Ok(())
}

/// The checks of the harness once the load is over (see the module's documentation); exports
/// go into new directories under `dir`. Every node must be running. Err says what failed.
pub async fn check(fed: &ProcessFederation, outcome: &Outcome, dir: &Path) -> Result<Checked, String> {
    drain(fed).await?;

    // Every acknowledged transfer in both logs exactly once, the same leaf.
    let (mut logs, mut sizes) = (BTreeMap::new(), BTreeMap::new());
    for zone in ZONES {
        let (subjects, size) = transfer_subjects(fed, zone).await?;
        logs.insert(zone, subjects);
        sizes.insert(zone, size);
    }
    let (mut lost, mut duplicated) = (Vec::new(), Vec::new());
    for subject in &outcome.acked {
        let other = if subject.starts_with("record shanghai/") { "hainan" } else { "guangdong" };
        let (a, b) = (logs["shanghai"].get(subject), logs[other].get(subject));
        match (a, b) {
            (Some((1, la)), Some((1, lb))) if la == lb => {}
            (None, _) | (_, None) => lost.push(format!(
                "lost: {subject}: in shanghai's log {} times, in {other}'s {} times",
                a.map_or(0, |x| x.0),
                b.map_or(0, |x| x.0)
            )),
            (Some((na, la)), Some((nb, lb))) => duplicated.push(format!(
                "duplicated or different: {subject}: shanghai {na} times, {other} {nb} times, same leaf: {}",
                la == lb
            )),
        }
    }
    for (zone, log) in &logs {
        for (subject, (n, _)) in log.iter().filter(|(_, (n, _))| *n > 1) {
            duplicated.push(format!("{zone}'s log holds {subject} {n} times"));
        }
    }
    if !lost.is_empty() || !duplicated.is_empty() {
        return Err(format!(
            "of {} acknowledged transfers, {} lost, {} duplicated (the logs listed: {sizes:?} entries):\n{}\n{}",
            outcome.acked.len(),
            lost.len(),
            duplicated.len(),
            first_lines(&lost, 20),
            first_lines(&duplicated, 20)
        ));
    }

    // Every checkpoint seen during the run is consistent with the log now.
    let mut audit = AuditClient::new(fed.channel("shanghai", Role::Auditor).map_err(|e| e.to_string())?);
    let last = settled_checkpoint(&mut audit, 0, Duration::from_secs(30))
        .await
        .map_err(|e| format!("shanghai's last checkpoint: {e}"))?;
    let ring = KeyRing::parse(&last.keys.join("\n")).map_err(|e| e.to_string())?;
    let b = audit_dir::checkpoint_of(&last.checkpoint).map_err(|e| e.to_string())?;
    for old in &outcome.checkpoints {
        let a = audit_dir::checkpoint_of(old).map_err(|e| e.to_string())?;
        let p = audit
            .get_consistency_proof(GetConsistencyProofRequest { size1: a.size, size2: b.size })
            .await
            .map_err(|s| format!("a consistency proof from {} to {}: {s:?}", a.size, b.size))?
            .into_inner();
        let hashes: Vec<[u8; 32]> = p.proof.iter().map(|h| h.as_slice().try_into().unwrap()).collect();
        verify_consistency_files(old, &last.checkpoint, &consistency_text(&hashes), &ring.keys[0]).map_err(|e| {
            format!(
                "shanghai's checkpoint at {} seen during the run is not consistent with its log at {}: {e}",
                a.size, b.size
            )
        })?;
    }

    // verify-log and cross-check on the exports.
    let mut exports = BTreeMap::new();
    for zone in ZONES {
        let mut audit = AuditClient::new(fed.channel(zone, Role::Auditor).map_err(|e| e.to_string())?);
        settled_checkpoint(&mut audit, 0, Duration::from_secs(30))
            .await
            .map_err(|e| format!("{zone}'s last checkpoint: {e}"))?;
        let out = dir.join(format!("export-{zone}"));
        audit_dir::export(&mut audit, &out, |_, _| {}).await.map_err(|e| format!("exporting {zone}'s log: {e:#}"))?;
        let e = ExportDir::open(&out).map_err(|e| format!("{zone}'s export: {e:#}"))?;
        let r = e.verify(None, 0, |_| {}).map_err(|e| format!("verify-log {zone}: {e:#}"))?;
        if !r.problems.is_empty() {
            return Err(format!("verify-log {zone}: {}", first_lines(&r.problems, 20)));
        }
        exports.insert(zone, e);
    }
    for (a, b) in [("shanghai", "hainan"), ("guangdong", "shanghai")] {
        let (_, _, x) = audit_dir::cross_check(&exports[a], &exports[b], |_| {})
            .map_err(|e| format!("cross-check {a}/{b}: {e:#}"))?;
        if x.one_sided() {
            return Err(format!("cross-check {a}/{b}: only in {a}'s: {:?}; only in {b}'s: {:?}", x.only_a, x.only_b));
        }
    }
    Ok(Checked {
        transfers: logs.iter().map(|(z, l)| (z.to_string(), l.values().map(|(n, _)| *n as usize).sum())).collect(),
        checkpoints: outcome.checkpoints.len(),
        shanghai_size: b.size,
    })
}
