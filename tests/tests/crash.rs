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
//! With `FTZ_TEST_STORE=postgres` every node stores in a database of its own of one throwaway
//! PostgreSQL cluster (the default is sled). The load and the checks are in `ftz_tests::crash`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ftz_devkit::ProcessFederation;
use ftz_tests::crash::{self, Load, LoadOptions, ZONES, env_number, random_below};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_transfers_and_sigkills_lose_nothing_and_duplicate_nothing() {
    let started = std::time::Instant::now();
    let total = env_number("FTZ_CRASH_TRANSFERS", 600);
    let kills = env_number("FTZ_CRASH_KILLS", 3);
    let dir = tempfile::tempdir().unwrap();
    let mut fed = ProcessFederation::create_with(
        dir.path(),
        &ZONES,
        std::path::Path::new(env!("CARGO_BIN_EXE_crash-node")),
        &[],
        crash::process_options(),
    )
    .unwrap();
    for z in ZONES {
        fed.start(z).unwrap();
    }
    crash::install_exchange(&fed).await.unwrap();

    let mut load = Load::start(
        crash::channels_of(&fed),
        LoadOptions { total, fresh_channels_every: None, pushes_must_succeed: true },
    );
    // The killer: at random points spread over the run, SIGKILL shanghai or hainan (in turn),
    // restart it a moment later.
    for k in 0..kills {
        let victim = if k % 2 == 0 { "shanghai" } else { "hainan" };
        let at = total * (k + 1) / (kills + 1) + random_below(total / (2 * (kills + 1)).max(1));
        // A worker that failed ends the run at once (its error is reported below).
        load.reached(at.min(total - 1)).await;
        tokio::time::sleep(Duration::from_millis(random_below(200))).await;
        fed.kill(victim);
        tokio::time::sleep(Duration::from_millis(200 + random_below(800))).await;
        // Waits for it to listen; the load goes on on the runtime's other threads.
        tokio::task::block_in_place(|| fed.start(victim)).unwrap();
    }
    let report = |what: String| -> String {
        let logs: String = ZONES.iter().map(|z| fed.log_tail(z, 20, |_| true)).collect();
        format!(
            "{what}
the nodes' logs:
{logs}"
        )
    };
    let outcome = load.finish().await.unwrap_or_else(|e| panic!("{}", report(e)));
    let checked = crash::check(&fed, &outcome, dir.path()).await.unwrap_or_else(|e| panic!("{}", report(e)));
    println!(
        "crash harness ({}): {} transfers acknowledged ({} attempts, {} refused), {kills} SIGKILLs, starts: shanghai {}, hainan {}; {} checkpoints checked; shanghai's log {} entries; lost 0, duplicated 0; {:.0} s",
        if ftz_tests::on_postgres() { "PostgreSQL" } else { "sled" },
        outcome.acked.len(),
        outcome.attempts,
        outcome.refused,
        fed.starts["shanghai"],
        fed.starts["hainan"],
        checked.checkpoints,
        checked.shanghai_size,
        started.elapsed().as_secs_f64(),
    );
}
