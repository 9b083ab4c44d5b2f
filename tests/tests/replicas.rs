//! Replicas: shanghai's node as three processes on one PostgreSQL database, behind a TCP load
//! balancer on shanghai's registry endpoint (TLS passed through: the replicas share the zone's
//! certificate); hainan and guangdong single nodes (sled, or PostgreSQL with
//! `FTZ_TEST_STORE=postgres`). The crash harness's load runs through it (`ftz_tests::crash`):
//! records fetched from shanghai by hainan, inspection results pushed from guangdong to
//! shanghai, a client watching shanghai's checkpoints; client channels are made anew every few
//! requests, so that they land on every replica, and shanghai's replicas send the other zones'
//! connections away after a second (`limits.max_connection_age_ms`; closed after the request
//! deadline, 3 s), so that the fetches and pushes move between replicas too. Then the crash harness's checks: every acknowledged transfer exactly once in
//! both zones' logs, every checkpoint a client saw consistent with the final log, verify-log and
//! cross-check; and every replica serves the same log and checkpoint.
//!
//! - a replica is SIGKILLed at random points several times and restarted
//!   (`FTZ_REPLICA_TRANSFERS`, default 300; `FTZ_REPLICA_KILLS`, default 3);
//! - the database is stopped mid-run and started again: while it is down every replica answers
//!   `/readyz` 503 (its store check failing) and calls are refused with an error, not answered
//!   from a guess; once it is back the replicas are ready again and the load goes on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{collections::BTreeSet, net::SocketAddr, time::Duration};

use ftz_core::{Clock, Role, SystemClock};
use ftz_devkit::ProcessFederation;
use ftz_proto::{
    GetCheckpointRequest, IssueCertificationRequest, ListAgreementsRequest, ListEntriesRequest, ListPoliciesRequest,
    RecordRef, VerifyRecordRequest, admin_client::AdminClient, audit_client::AuditClient, issuer_client::IssuerClient,
    verify_client::VerifyClient, verify_record_request::Subject,
};
use ftz_tests::crash::{self, Load, LoadOptions, Outcome, ZONES, env_number, random_below};
use ftzctl::audit_dir::checkpoint_of;

const REPLICAS: usize = 3;

/// The federation: shanghai's node as [`REPLICAS`] replicas behind a balancer.
fn federation(dir: &std::path::Path) -> ProcessFederation {
    let options = crash::process_options()
        .replicas("shanghai", REPLICAS)
        // The other zones' connections to shanghai are sent away (GOAWAY) after a second and
        // closed after the request deadline, 3 s, then made again through the balancer: their
        // fetches and pushes go to every replica in turn.
        .set_in("shanghai", "limits", "max_connection_age_ms", 1_000)
        .set_in("shanghai", "limits", "request_timeout_ms", 3_000)
        // A database that does not answer fails calls after 2 s, not 10.
        .set("store", "timeout_ms", 2_000);
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_crash-node"));
    let mut fed = ProcessFederation::create_with(dir, &ZONES, bin, &[], options).unwrap();
    // What the nodes did, for a failure's report.
    fed.log_level = "info".into();
    for z in ZONES {
        fed.start(z).unwrap_or_else(|e| panic!("{e}"));
    }
    fed
}

/// `what`, then the last warnings and errors of every node's log, and the lines of any log that
/// name a record `what` names: what a failure is reported with.
fn report(fed: &ProcessFederation, what: impl std::fmt::Display) -> String {
    let what = what.to_string();
    let logs: String =
        ZONES.iter().map(|z| fed.log_tail(z, 15, |l| l.contains(" WARN ") || l.contains(" ERROR "))).collect();
    let records: BTreeSet<&str> = what
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("SH-C-") || w.starts_with("GD-I-"))
        .take(10)
        .collect();
    let mut named = String::new();
    for id in records {
        for z in ZONES {
            for r in fed.replicas(z) {
                let text = std::fs::read_to_string(&r.log_path).unwrap_or_default();
                for l in text.lines().filter(|l| l.contains(id)).take(10) {
                    named.push_str(&format!("{}: {l}\n", r.log_path.display()));
                }
            }
        }
    }
    format!("{what}\nthe nodes' warnings and errors:\n{logs}\nlines that name those records:\n{named}")
}

/// Asks `probe` every 100 ms until it answers Ok (then its value), for at most `within`; then
/// fails with its last answer (and the report).
async fn eventually<T>(
    fed: &ProcessFederation,
    within: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(why) if tokio::time::Instant::now() >= deadline => panic!("{}", report(fed, why)),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Installs the agreements and policies (through the balancer: on one replica) and checks that
/// every replica of shanghai has them within a second (replicas poll the database's digest of
/// what installs change every 250 ms).
async fn install(fed: &ProcessFederation) {
    crash::install_exchange(fed).await.unwrap_or_else(|e| panic!("{}", report(fed, e)));
    let wanted: BTreeSet<String> = ["sh-hn", "gd-sh"].into_iter().map(String::from).collect();
    for i in 0..REPLICAS {
        let mut admin = AdminClient::new(fed.replica_channel("shanghai", i, Role::Admin).unwrap());
        eventually(fed, Duration::from_secs(1), async || {
            let listing = |s: tonic::Status| format!("replica {i}: {:?} {}", s.code(), s.message());
            let agreements: BTreeSet<String> = admin
                .list_agreements(ListAgreementsRequest {})
                .await
                .map_err(listing)?
                .into_inner()
                .agreements
                .into_iter()
                .map(|a| a.agreement_id)
                .collect();
            let policies: BTreeSet<String> = admin
                .list_policies(ListPoliciesRequest {})
                .await
                .map_err(listing)?
                .into_inner()
                .policies
                .into_iter()
                .map(|p| p.policy_id)
                .collect();
            if wanted.is_subset(&agreements) && wanted.is_subset(&policies) {
                return Ok(());
            }
            Err(format!(
                "shanghai's replica {i} does not have what was installed through the balancer a second later: agreements {agreements:?}, policies {policies:?}, wanted {wanted:?} of each"
            ))
        })
        .await;
    }
}

/// The load, with client channels made anew every 5 requests.
fn load(fed: &ProcessFederation, total: u64, pushes_must_succeed: bool) -> Load {
    Load::start(crash::channels_of(fed), LoadOptions { total, fresh_channels_every: Some(5), pushes_must_succeed })
}

/// What replica `i` of shanghai serves: its log's size, and its latest checkpoint's size and
/// root (the first bytes, in hex).
async fn view(fed: &ProcessFederation, i: usize) -> (Result<u64, String>, Result<(u64, String), String>) {
    let mut audit = AuditClient::new(fed.replica_channel("shanghai", i, Role::Auditor).unwrap());
    let size = audit
        .list_entries(ListEntriesRequest { from_index: u64::MAX, limit: 1, ..Default::default() })
        .await
        .map(|r| r.into_inner().log_size)
        .map_err(|s| format!("{:?} {}", s.code(), s.message()));
    let cp = audit
        .get_checkpoint(GetCheckpointRequest {})
        .await
        .map_err(|s| format!("{:?} {}", s.code(), s.message()))
        .and_then(|cp| checkpoint_of(&cp.into_inner().checkpoint).map_err(|e| e.to_string()))
        .map(|c| (c.size, c.root.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>()));
    (size, cp)
}

/// Waits until every replica of shanghai serves the same log, and a checkpoint of all of it
/// (at most 5 s: replicas follow the shared log within a second); its size, and how long that
/// took.
async fn replicas_agree(fed: &ProcessFederation) -> (u64, Duration) {
    let start = tokio::time::Instant::now();
    let size = eventually(fed, Duration::from_secs(5), async || {
        let mut views = Vec::new();
        for i in 0..REPLICAS {
            views.push(view(fed, i).await);
        }
        if let (Ok(size), Ok((cp, _))) = &views[0]
            && cp == size
            && views.iter().all(|v| v == &views[0])
        {
            return Ok(*size);
        }
        let views: Vec<String> = views
            .iter()
            .enumerate()
            .map(|(i, (size, cp))| format!("replica {i}: log size {size:?}, checkpoint (size, root) {cp:?}"))
            .collect();
        Err(format!(
            "5 s after the load ended (outboxes drained), shanghai's replicas do not serve the same log: {}",
            views.join("; ")
        ))
    })
    .await;
    (size, start.elapsed())
}

/// Every replica of shanghai serves the same log, then the harness's checks (through the
/// balancer), which see that log.
async fn check(fed: &ProcessFederation, outcome: &Outcome, dir: &std::path::Path) -> (crash::Checked, Duration) {
    crash::drain(fed).await.unwrap_or_else(|e| panic!("{}", report(fed, e)));
    let (size, waited) = replicas_agree(fed).await;
    let checked = crash::check(fed, outcome, dir).await.unwrap_or_else(|e| panic!("{}", report(fed, e)));
    assert_eq!(
        checked.shanghai_size,
        size,
        "{}",
        report(fed, "the checks saw a final checkpoint of shanghai other than the one every replica served")
    );
    (checked, waited)
}

/// The transfers replica `i` of shanghai logged since it started (`ftz_transfers_total`).
async fn transfers_logged(fed: &ProcessFederation, i: usize) -> u64 {
    let Some(ops) = fed.replicas("shanghai")[i].ops.filter(|_| fed.is_replica_running("shanghai", i)) else { return 0 };
    let scrape = ftz_tests::ops::Scrape::of(ops).await;
    scrape.0.iter().filter(|(k, _)| k.starts_with("ftz_transfers_total")).map(|(_, v)| *v as u64).sum()
}

/// How the load spread: the balancer's connections to each replica, the transfers each logged
/// (`logged`, what it had logged before each kill, plus what it logged since) and the pushes it
/// received (its log says so at level info).
async fn spread(fed: &ProcessFederation, logged: &[u64]) -> String {
    let mut out = Vec::new();
    let connections = fed.balancer("shanghai").map(|b| b.forwarded()).unwrap_or_default();
    for i in 0..REPLICAS {
        let transfers = logged.get(i).copied().unwrap_or(0) + transfers_logged(fed, i).await;
        let log = std::fs::read_to_string(&fed.replicas("shanghai")[i].log_path).unwrap_or_default();
        let pushes = log.lines().filter(|l| l.contains("inspection result delivered")).count();
        out.push(format!(
            "replica {i}: {} connections, {transfers} transfers logged, {pushes} pushes received",
            connections.get(i).unwrap_or(&0)
        ));
    }
    out.join("; ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_through_three_replicas_survive_replicas_killed_at_random() {
    let started = std::time::Instant::now();
    let total = env_number("FTZ_REPLICA_TRANSFERS", 300);
    let kills = env_number("FTZ_REPLICA_KILLS", 3);
    let dir = tempfile::tempdir().unwrap();
    let mut fed = federation(dir.path());
    install(&fed).await;
    let mut load = load(&fed, total, true);
    let (mut killed, mut logged) = (Vec::new(), vec![0; REPLICAS]);
    for k in 0..kills {
        let at = total * (k + 1) / (kills + 1) + random_below(total / (2 * (kills + 1)).max(1));
        load.reached(at.min(total - 1)).await;
        tokio::time::sleep(Duration::from_millis(random_below(200))).await;
        let victim = random_below(REPLICAS as u64) as usize;
        logged[victim] += transfers_logged(&fed, victim).await;
        fed.kill_replica("shanghai", victim);
        killed.push(victim);
        tokio::time::sleep(Duration::from_millis(200 + random_below(800))).await;
        tokio::task::block_in_place(|| fed.start_replica("shanghai", victim))
            .unwrap_or_else(|e| panic!("{}", report(&fed, e)));
    }
    let outcome = load.finish().await.unwrap_or_else(|e| panic!("{}", report(&fed, e)));
    let connections = fed.balancer("shanghai").unwrap().forwarded();
    assert!(
        connections.iter().all(|n| *n > 0),
        "{}",
        report(&fed, format!("the balancer did not spread connections: {connections:?}"))
    );
    let (checked, agreed_after) = check(&fed, &outcome, dir.path()).await;
    println!(
        "replicas ({}): {} transfers acknowledged ({} attempts, {} refused), replicas killed {killed:?}, shanghai started {} times; {} checkpoints checked; shanghai's log {} entries, every replica serving it {} ms after the outboxes drained; {}; {:.0} s",
        if ftz_tests::on_postgres() {
            "every zone on PostgreSQL"
        } else {
            "shanghai on PostgreSQL, the others on sled"
        },
        outcome.acked.len(),
        outcome.attempts,
        outcome.refused,
        fed.starts["shanghai"],
        checked.checkpoints,
        checked.shanghai_size,
        agreed_after.as_millis(),
        spread(&fed, &logged).await,
        started.elapsed().as_secs_f64(),
    );
}

/// `/readyz` of each of shanghai's replicas, until `ready(status, body)` holds of every one (at
/// most `within` each): what each answered then. Failing, says `when`.
async fn replicas_become(
    fed: &ProcessFederation,
    when: &str,
    ready: impl Fn(u16, &str) -> bool,
    within: Duration,
) -> Vec<String> {
    let mut answers = Vec::new();
    for (i, r) in fed.replicas("shanghai").iter().enumerate() {
        let ops: SocketAddr = r.ops.expect("an ops listener");
        let answer = eventually(fed, within, async || {
            let (status, body) = ftz_tests::ops::get(ops, "/readyz").await;
            let answer = format!("replica {i}: {status} {}", body.trim());
            if ready(status, &body) { Ok(answer) } else { Err(format!("{when}, after {within:?}, {answer}")) }
        })
        .await;
        answers.push(answer);
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_makes_replicas_unready_refuses_calls_and_loses_nothing() {
    let started = std::time::Instant::now();
    let total = env_number("FTZ_REPLICA_TRANSFERS", 300);
    let dir = tempfile::tempdir().unwrap();
    let fed = federation(dir.path());
    install(&fed).await;
    // Guangdong's pushes are refused while shanghai's database is down (and its own calls
    // fail too when it is on the same cluster): not acknowledged, the next one tried.
    let mut load = load(&fed, total, false);
    if !load.reached(total / 3).await {
        panic!("{}", report(&fed, format!("before the database was stopped: {:?}", load.finish().await.err())));
    }
    // A record of shanghai's that hainan verified.
    let known = load
        .acked()
        .iter()
        .find_map(|s| s.strip_prefix("record shanghai/").map(str::to_string))
        .expect("a fetched record acknowledged");

    let pg = fed.postgres().expect("shanghai's replicas are on PostgreSQL");
    let down_at = std::time::Instant::now();
    tokio::task::block_in_place(|| pg.stop()).unwrap();
    let refused_before = load.progress().refused;

    // Not ready, because the store fails.
    let unready = replicas_become(
        &fed,
        "with the database down",
        |status, body| status == 503 && body.contains("\"store\"") && !body.contains("\"store\":\"ok\""),
        Duration::from_secs(30),
    )
    .await;
    // Calls refused with an error, through the balancer and at each replica.
    let mut refusals = Vec::new();
    for i in 0..REPLICAS {
        let cert = ftz_devkit::dev::sample_certification(&format!("SH-DOWN-{i}"), "AEO_ADVANCED", SystemClock.now_ms());
        let mut issuer = IssuerClient::new(fed.replica_channel("shanghai", i, Role::Issuer).unwrap());
        match issuer.issue_certification(IssueCertificationRequest { certification: Some(cert) }).await {
            Ok(r) => panic!("{}", report(&fed, format!("replica {i} issued a record with its database down: {r:?}"))),
            Err(s) => refusals.push(format!("replica {i} issue: {:?} {:?}", s.code(), ftz_tests::reason_of(&s))),
        }
        let mut verifier = VerifyClient::new(fed.replica_channel("shanghai", i, Role::Enterprise).unwrap());
        let req = VerifyRecordRequest {
            subject: Some(Subject::Ref(RecordRef { issuing_zone: "shanghai".into(), record_id: known.clone() })),
            recognising_zone: String::new(),
            purpose: "verification".into(),
        };
        match verifier.verify_record(req).await {
            Ok(v) if v.get_ref().valid => panic!(
                "{}",
                report(&fed, format!("replica {i} answered {known} valid with its database down: {:?}", v.get_ref()))
            ),
            Ok(v) => refusals.push(format!("replica {i} verify: not valid ({})", v.get_ref().source)),
            Err(s) => refusals.push(format!("replica {i} verify: {:?} {:?}", s.code(), ftz_tests::reason_of(&s))),
        }
    }
    // The load's own calls are refused too (at least 3 more than before).
    if !load.until(|p| p.refused >= refused_before + 3).await {
        panic!("{}", report(&fed, format!("while the database was down: {:?}", load.finish().await.err())));
    }
    tokio::task::block_in_place(|| pg.start_server()).unwrap();
    let down_for = down_at.elapsed();

    // Ready again, and the load goes on.
    let back_at = std::time::Instant::now();
    replicas_become(&fed, "with the database back", |status, _| status == 200, Duration::from_secs(60)).await;
    let ready_after = back_at.elapsed();
    let outcome = load.finish().await.unwrap_or_else(|e| panic!("{}", report(&fed, e)));
    let (checked, agreed_after) = check(&fed, &outcome, dir.path()).await;
    println!(
        "database restart ({}): down {:.1} s, ready again {:.1} s after it was back; while down: {}; {}; the load: {} acknowledged ({} attempts, {} refused, first: {:?}); {} checkpoints checked; shanghai's log {} entries, every replica serving it {} ms after the outboxes drained; {}; {:.0} s",
        if ftz_tests::on_postgres() {
            "every zone on PostgreSQL"
        } else {
            "shanghai on PostgreSQL, the others on sled"
        },
        down_for.as_secs_f64(),
        ready_after.as_secs_f64(),
        unready.join("; "),
        refusals.join("; "),
        outcome.acked.len(),
        outcome.attempts,
        outcome.refused,
        outcome.refusals.iter().take(3).collect::<Vec<_>>(),
        checked.checkpoints,
        checked.shanghai_size,
        agreed_after.as_millis(),
        spread(&fed, &[]).await,
        started.elapsed().as_secs_f64(),
    );
}
