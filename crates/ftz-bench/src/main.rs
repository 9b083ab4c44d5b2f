//! `ftz-bench`: the benchmark suite. Every scenario runs against real nodes (three zones on
//! 127.0.0.1, each node a child process of this binary, real mTLS, sled stores in a temporary
//! directory) or, in this process, the real storage and cryptography code, next to the baseline
//! it is compared with, in the same run. Prints a table and writes `target/bench/summary.json`.
//! See docs/performance.md.
//!
//!   cargo run --release -p ftz-bench            # the full suite (a few minutes)
//!   cargo run --release -p ftz-bench -- --quick # under a minute, for smoke use

#![forbid(unsafe_code)]

mod https;
mod measure;
mod scenarios;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context, Result};
use clap::Parser;
use measure::{Measured, Row, rss_mb};
use scenarios::{Api, FULL, Federation, NODE_MODE, QUICK, SMOKE};

/// Runs the ftz-exchange benchmark suite and writes the summary.
#[derive(Debug, Parser)]
#[command(name = "ftz-bench", version)]
struct Args {
    /// Small sizes (well under a minute), for smoke runs.
    #[arg(long)]
    quick: bool,
    /// Tiny sizes: every scenario runs a few operations (the test that keeps the suite working
    /// uses it; the figures mean nothing).
    #[arg(long, hide = true)]
    smoke: bool,
    /// Run only these groups: crypto, audit, nodes, observed (what metrics and the default log
    /// level cost), postgres (the PostgreSQL engine, one and two replicas), or one node scenario (echo, verify, proof, list, pull, push); all when not
    /// given. For profiling.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Requests in flight in the node scenarios (default 50; the log pages: 4).
    #[arg(long)]
    in_flight: Option<usize>,
    /// Where to write the summary.
    #[arg(long, default_value = "target/bench/summary.json")]
    out: PathBuf,
}

/// The APIs of a scenario and its twin, in the order they take turns.
const APIS: [Api; 2] = [Api::Grpc, Api::Json];

/// Rounds in which a scenario and its twin take turns (gRPC, JSON, gRPC, ...), so that load
/// that comes and goes on the machine falls on both alike.
const TWIN_ROUNDS: usize = 8;

/// One of two twins, over its rounds: what was measured and the CPU each process spent.
struct Twin {
    m: Measured,
    cpu: Vec<(&'static str, Duration)>,
}

impl Twin {
    fn new() -> Twin {
        Twin { m: Measured::empty(), cpu: Vec::new() }
    }

    fn add(&mut self, m: Measured, spent: &[(&'static str, Duration)]) {
        self.m.merge(m);
        if self.cpu.is_empty() {
            self.cpu = spent.to_vec();
        } else {
            for ((_, total), (_, t)) in self.cpu.iter_mut().zip(spent) {
                *total += *t;
            }
        }
    }
}

fn main() -> Result<ExitCode> {
    // `ftz-bench node --config X` is a node: the suite starts its nodes this way, so that each
    // is a process of its own (its own memory, as deployed) from the same release build.
    if std::env::args_os().nth(1).is_some_and(|a| a == NODE_MODE) {
        return Ok(ftz_node::process::main_from(std::env::args_os().skip(1)));
    }
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(suite(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn suite(args: Args) -> Result<()> {
    let mut sizes = if args.smoke {
        SMOKE
    } else if args.quick {
        QUICK
    } else {
        FULL
    };
    if let Some(n) = args.in_flight {
        sizes.in_flight = n;
        sizes.list_in_flight = n;
    }
    let run = |group: &str| args.only.is_empty() || args.only.iter().any(|g| g == group);
    // Within "nodes", each scenario can be picked alone too (for profiling).
    let node_part = |part: &str| args.only.is_empty() || args.only.iter().any(|g| g == "nodes" || g == part);
    let dir = tempfile::tempdir().context("temporary directory")?;
    let mut rows: Vec<Row> = Vec::new();
    let add = |rows: &mut Vec<Row>, r: Row| {
        eprintln!(
            "  {:<30} {:>12.0} ops/s  p50 {:>7} µs  p99 {:>7} µs  rss {:>6.1} MB  {}",
            r.scenario,
            r.ops_per_s,
            r.p50_us,
            r.p99_us,
            r.rss_mb,
            if r.baseline.is_empty() { String::new() } else { format!("{:.2}x {}", r.ratio, r.baseline) }
        );
        rows.push(r);
    };

    eprintln!("cryptographic floor");
    let floor = scenarios::crypto_floor(if run("crypto") { sizes.crypto } else { 200 })?;
    let floor_rate = floor.ops_per_s();
    add(&mut rows, Row::new("crypto_floor_per_transfer", &floor, None));

    let mut node_peaks = Vec::new();
    let nodes = ["nodes", "echo", "verify", "proof", "list", "pull", "push"].iter().any(|g| run(g));
    // The zones exist from here; the audit scenarios build their log in shanghai's store, so
    // that shanghai's node later serves (and holds in memory) the largest log.
    let mut fed = Federation::create(&dir.path().join("federation"))?;
    let mut shanghai_log = 0;

    if run("audit") {
        eprintln!("audit log");
        let (appended, plain, store, log) =
            scenarios::audit_append(&fed.data_dir("shanghai")?, dir.path(), sizes.appends, 256).await?;
        add(&mut rows, Row::new("sled_insert_flush", &plain, None));
        add(&mut rows, Row::new("audit_append_durable", &appended, Some(("sled_insert_flush", plain.ops_per_s()))));
        let mut first: Option<(f64, f64)> = None;
        for &size in sizes.proof_sizes {
            scenarios::grow(&store, &log, size).await?;
            let (make, verify) = scenarios::proofs(&store, &log, size, sizes.proofs)?;
            let (mb, vb) = *first.get_or_insert((make.ops_per_s(), verify.ops_per_s()));
            let label = |what: &str| format!("proof_{what}_{}k", size / 1000);
            let base = |what: &str| format!("proof_{what}_{}k", sizes.proof_sizes[0] / 1000);
            add(
                &mut rows,
                Row::new(&label("make"), &make, (size != sizes.proof_sizes[0]).then_some((&base("make"), mb))),
            );
            add(
                &mut rows,
                Row::new(&label("verify"), &verify, (size != sizes.proof_sizes[0]).then_some((&base("verify"), vb))),
            );
        }
        let (_, peak_log) = rss_mb();
        shanghai_log = store.audit_size()?;
        eprintln!("  process peak RSS after the {shanghai_log}-entry log: {peak_log:.1} MB");
        log.close().await;
        drop(store);
    }

    if nodes && (node_part("list") || node_part("proof")) && shanghai_log < sizes.list_log {
        // Without the audit scenarios (or with fewer entries), shanghai's log is grown in its
        // store while its node is stopped, by the node's own appender, as those scenarios do.
        let t = std::time::Instant::now();
        shanghai_log = scenarios::grow_stored_log(&fed.data_dir("shanghai")?, sizes.list_log).await?;
        eprintln!(
            "shanghai's log grown to {shanghai_log} entries before its node starts ({:.1} s)",
            t.elapsed().as_secs_f64()
        );
    }

    if nodes {
        eprintln!("three nodes on 127.0.0.1, each its own process");
        fed.start().await?;
        // Node scenarios report the largest node's peak memory so far, not this process's.
        // ... and the CPU each process spent per operation (`spent`: in the scenario's runs).
        let add = |rows: &mut Vec<Row>, fed: &Federation, spent: &[(&str, Duration)], ops: usize, mut r: Row| {
            r.rss_mb = fed.peak_rss_mb().iter().map(|(_, mb)| *mb).fold(0.0, f64::max);
            let per_op: Vec<String> = spent
                .iter()
                .map(|(who, t)| format!("{who} {:.0}", t.as_secs_f64() * 1e6 / ops.max(1) as f64))
                .collect();
            add(rows, r);
            eprintln!("    CPU µs per operation: {}", per_op.join(", "));
        };
        // The CPU each process spent since `before`.
        let spent = |fed: &Federation, before: &[(&'static str, Duration)]| -> Vec<(&'static str, Duration)> {
            fed.cpu_times().iter().zip(before).map(|((who, after), (_, b))| (*who, after.saturating_sub(*b))).collect()
        };
        let n = if node_part("echo") { sizes.echo } else { 100 };
        let before = fed.cpu_times();
        let echo = fed.echo(n, sizes.in_flight).await?;
        let echo_rate = echo.ops_per_s();
        add(&mut rows, &fed, &spent(&fed, &before), n, Row::new("raw_unary_mtls_echo", &echo, None));
        // Cached verification over gRPC and its twin over the JSON API (same record, requests
        // and in-flight count), taking turns.
        let n = if node_part("verify") { sizes.verify } else { 100 };
        fed.prepare_verify().await?;
        let mut twins = [Twin::new(), Twin::new()];
        for _ in 0..TWIN_ROUNDS {
            for (api, twin) in APIS.into_iter().zip(&mut twins) {
                let before = fed.cpu_times();
                let m = fed.verify_cached(api, n.div_ceil(TWIN_ROUNDS), sizes.in_flight).await?;
                twin.add(m, &spent(&fed, &before));
            }
        }
        let [grpc, json] = twins;
        let baseline = Some(("raw_unary_mtls_echo", echo_rate));
        add(&mut rows, &fed, &grpc.cpu, grpc.m.ops, Row::new("verify_credential_cached", &grpc.m, baseline));
        let baseline = Some(("verify_credential_cached", grpc.m.ops_per_s()));
        add(&mut rows, &fed, &json.cpu, json.m.ops, Row::new("verify_credential_cached_json", &json.m, baseline));
        let n = if node_part("proof") { sizes.proofs } else { 100 };
        let before = fed.cpu_times();
        let (served, size) = fed.entries_with_proofs(n, sizes.in_flight).await?;
        let name = format!("entry_proof_via_node_{}k", size / 1000);
        add(
            &mut rows,
            &fed,
            &spent(&fed, &before),
            n,
            Row::new(&name, &served, Some(("raw_unary_mtls_echo", echo_rate))),
        );
        // An auditor's log page over gRPC and its JSON twin, taking turns; unfiltered, then
        // refusals only. Every round reads pages of its own.
        let n = if node_part("list") { sizes.list_pages } else { 20 };
        let per_round = n.div_ceil(TWIN_ROUNDS);
        let mut seed = 0;
        for (what, decision) in [("page", ""), ("refused", "refused")] {
            let mut twins = [Twin::new(), Twin::new()];
            let mut size = 0;
            for _ in 0..TWIN_ROUNDS {
                for (api, twin) in APIS.into_iter().zip(&mut twins) {
                    let before = fed.cpu_times();
                    let m;
                    (m, size) = fed.list_pages(api, decision, per_round, sizes.list_in_flight, seed).await?;
                    seed += per_round;
                    twin.add(m, &spent(&fed, &before));
                }
            }
            let name = |api: &str| format!("list_{what}_{api}_{}k", size / 1000);
            let [grpc, json] = twins;
            let baseline = Some(("raw_unary_mtls_echo", echo_rate));
            add(&mut rows, &fed, &grpc.cpu, grpc.m.ops, Row::new(&name("grpc"), &grpc.m, baseline));
            let baseline = Some((name("grpc"), grpc.m.ops_per_s()));
            let baseline = baseline.as_ref().map(|(b, r)| (b.as_str(), *r));
            add(&mut rows, &fed, &json.cpu, json.m.ops, Row::new(&name("json"), &json.m, baseline));
        }
        let floor = Some(("crypto_floor_per_transfer", floor_rate));
        let n = if node_part("pull") { sizes.transfers } else { 50 };
        fed.prepare_pull(0, n).await?;
        let before = fed.cpu_times();
        let pull = fed.pull(0, n, sizes.in_flight).await?;
        add(&mut rows, &fed, &spent(&fed, &before), n, Row::new("cross_zone_pull_transfer", &pull, floor));
        let n = if node_part("push") { sizes.transfers } else { 50 };
        fed.prepare_push(n).await?;
        let before = fed.cpu_times();
        let push = fed.push(n, sizes.in_flight).await?;
        add(&mut rows, &fed, &spent(&fed, &before), n, Row::new("push_through_outbox", &push, floor));
        node_peaks = fed.peak_rss_mb();
        fed.shutdown();
    }

    if run("postgres") {
        postgres(&sizes, dir.path(), &mut |r| add(&mut rows, r)).await?;
    }

    if run("observed") {
        observed(&sizes, dir.path(), &mut |r| add(&mut rows, r)).await?;
    }

    let (_, peak) = rss_mb();
    for (zone, mb) in &node_peaks {
        println!("peak RSS of {zone}'s node: {mb:.1} MB");
    }
    let summary = serde_json::Value::Array(rows.iter().map(Row::to_json).collect());
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(&args.out, serde_json::to_string_pretty(&summary)?)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    println!(
        "{:<30} {:>12} {:>9} {:>9} {:>8}  {:<30} {:>7}",
        "scenario", "ops/s", "p50 µs", "p99 µs", "rss MB", "baseline", "ratio"
    );
    for r in &rows {
        println!(
            "{:<30} {:>12.0} {:>9} {:>9} {:>8.1}  {:<30} {:>7.3}",
            r.scenario, r.ops_per_s, r.p50_us, r.p99_us, r.rss_mb, r.baseline, r.ratio
        );
    }
    println!(
        "peak RSS of this process (load generator, the audit scenarios' stores): {peak:.1} MB; summary in {}",
        args.out.display()
    );
    Ok(())
}

/// What watching a node costs: the same scenarios on three federations side by side, taking
/// turns round by round (as the twins do, each round starting with another of them): one with
/// metrics off and logging off (`quiet`, the baseline), one with metrics on (an `[ops]`
/// listener; logging off), one at the default log level `info` (metrics off). A row's rate and
/// latencies are over all its rounds; its ratio is the median over the rounds of its rate over
/// `quiet`'s in the same round, which load that comes and goes on the machine moves least.
async fn observed(sizes: &scenarios::Sizes, dir: &std::path::Path, add: &mut impl FnMut(Row)) -> Result<()> {
    const VARIANTS: [(&str, bool, &str); 3] =
        [("quiet", false, "off"), ("metrics", true, "off"), ("log_info", false, "info")];
    const SCENARIOS: [&str; 3] = ["echo", "verify_cached", "pull"];
    const ROUNDS: usize = 2 * TWIN_ROUNDS;
    eprintln!("what metrics and the default log level cost: three federations taking turns");
    let mut feds = Vec::new();
    for (name, metrics, level) in VARIANTS {
        let mut fed = Federation::create_observed(&dir.join(format!("observed-{name}")), metrics, level)?;
        fed.start().await.with_context(|| format!("the {name} federation"))?;
        fed.prepare_verify().await?;
        feds.push(fed);
    }
    let per_round = |n: usize| (n * sizes.observed_factor).div_ceil(ROUNDS);
    let (echo_n, verify_n, pull_n) = (per_round(sizes.echo), per_round(sizes.verify), per_round(sizes.transfers));
    for fed in &feds {
        fed.prepare_pull(0, pull_n * ROUNDS).await?;
    }
    let log_before: Vec<u64> = feds.iter().map(Federation::node_log_bytes).collect();
    // [scenario][variant]: over all rounds, each round's rate, and the CPU its nodes spent.
    let mut measured: Vec<Vec<(Measured, Vec<f64>, Duration)>> = SCENARIOS
        .iter()
        .map(|_| feds.iter().map(|_| (Measured::empty(), Vec::new(), Duration::ZERO)).collect())
        .collect();
    let node_cpu = |fed: &Federation| -> Duration {
        fed.cpu_times().iter().filter(|(who, _)| *who != "load generator").map(|(_, t)| *t).sum()
    };
    for round in 0..ROUNDS {
        for (scenario, by_variant) in SCENARIOS.iter().zip(&mut measured) {
            for k in 0..VARIANTS.len() {
                let v = (round + k) % VARIANTS.len();
                let fed = &feds[v];
                let cpu_before = node_cpu(fed);
                let m = match *scenario {
                    "echo" => fed.echo(echo_n, sizes.in_flight).await?,
                    "verify_cached" => fed.verify_cached(Api::Grpc, verify_n, sizes.in_flight).await?,
                    _ => fed.pull(round * pull_n, pull_n, sizes.in_flight).await?,
                };
                by_variant[v].2 += node_cpu(fed).saturating_sub(cpu_before);
                by_variant[v].1.push(m.ops_per_s());
                by_variant[v].0.merge(m);
            }
        }
    }
    for (scenario, by_variant) in SCENARIOS.iter().zip(&measured) {
        let base = format!("observed_{scenario}_{}", VARIANTS[0].0);
        let cpu_per_op = |(m, _, cpu): &(Measured, Vec<f64>, Duration)| cpu.as_secs_f64() * 1e6 / m.ops.max(1) as f64;
        let base_cpu = cpu_per_op(&by_variant[0]);
        for (((name, _, _), v), fed) in VARIANTS.iter().zip(by_variant).zip(&feds) {
            let (m, rates, _) = v;
            let row = format!("observed_{scenario}_{name}");
            let baseline = (row != base).then(|| (base.as_str(), by_variant[0].0.ops_per_s()));
            let mut row = Row::new(&row, m, baseline);
            if baseline.is_some() {
                let mut ratios: Vec<f64> =
                    rates.iter().zip(&by_variant[0].1).map(|(r, b)| r / b.max(f64::MIN_POSITIVE)).collect();
                ratios.sort_by(f64::total_cmp);
                row.ratio = ratios[ratios.len() / 2];
            }
            row.rss_mb = fed.peak_rss_mb().iter().map(|(_, mb)| *mb).fold(0.0, f64::max);
            add(row);
            eprintln!(
                "    the nodes' CPU per operation: {:.1} µs ({:+.1}% against {})",
                cpu_per_op(v),
                (cpu_per_op(v) / base_cpu.max(f64::MIN_POSITIVE) - 1.0) * 100.0,
                VARIANTS[0].0
            );
        }
    }
    for (((name, _, _), fed), before) in VARIANTS.iter().zip(&feds).zip(&log_before) {
        eprintln!("    {name}: the nodes' logs grew {} bytes during the runs", fed.node_log_bytes() - before);
    }
    for fed in feds {
        fed.shutdown();
    }
    Ok(())
}

/// The PostgreSQL engine next to sled: durable audit appends through the node's appender, on
/// sled (the baseline, in this run), on one PostgreSQL database with one replica, and with two
/// replicas appending to the same log at once (each its own connection pool, as two processes
/// would have); with the database's CPU per append. The database is a throwaway cluster on
/// this machine (fsync on).
async fn postgres(sizes: &scenarios::Sizes, dir: &std::path::Path, add: &mut impl FnMut(Row)) -> Result<()> {
    eprintln!("the PostgreSQL engine (a throwaway cluster on this machine), next to sled");
    let n = sizes.appends;
    let in_flight = 256;
    let sled = ftz_store::Store::open(&dir.join("pg-baseline-sled"), Default::default())?;
    let on_sled = scenarios::appends_through(std::slice::from_ref(&sled), n, in_flight).await?;
    drop(sled);
    add(Row::new("sled_audit_append_durable", &on_sled, None));
    let pg = ftz_devkit::postgres::TempPostgres::start().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut one_replica = 0.0;
    for replicas in [1usize, 2] {
        let db = format!("append{replicas}");
        pg.create_database(&db).map_err(|e| anyhow::anyhow!("{e}"))?;
        let stores: Vec<ftz_store::Store> = (0..replicas)
            .map(|_| ftz_store::Store::open_postgres(ftz_store::PgOptions::new(pg.url(&db))))
            .collect::<Result<_, _>>()?;
        let cpu_before = pg.cpu_time().unwrap_or_default();
        let m = scenarios::appends_through(&stores, n, in_flight).await?;
        let db_cpu = pg.cpu_time().unwrap_or_default().saturating_sub(cpu_before);
        let name = if replicas == 1 {
            "pg_audit_append_durable".to_string()
        } else {
            format!("pg_audit_append_durable_{replicas}_replicas")
        };
        let baseline = if replicas == 1 {
            ("sled_audit_append_durable", on_sled.ops_per_s())
        } else {
            ("pg_audit_append_durable", one_replica)
        };
        if replicas == 1 {
            one_replica = m.ops_per_s();
        }
        add(Row::new(&name, &m, Some(baseline)));
        eprintln!("    the database's CPU per append: {:.1} µs", db_cpu.as_secs_f64() * 1e6 / m.ops.max(1) as f64);
    }
    drop(pg);

    // The nodes: the same three scenarios on a federation on sled, on PostgreSQL, and on
    // PostgreSQL with shanghai and hainan as two replicas each behind a load balancer.
    let mut sled_rates = [0.0; 3];
    let mut one_replica_rates = [0.0; 3];
    for (variant, replicas) in [("sled", 0usize), ("pg", 1), ("pg_2_replicas", 2)] {
        let path = dir.join(format!("pg-nodes-{variant}"));
        let mut fed =
            if replicas == 0 { Federation::create(&path)? } else { Federation::create_on_postgres(&path, replicas)? };
        fed.start().await.with_context(|| format!("the {variant} federation"))?;
        fed.prepare_verify().await?;
        fed.prepare_pull(0, sizes.transfers).await?;
        fed.prepare_push(sizes.transfers).await?;
        let scenarios: [(&str, usize); 3] = [
            ("verify_credential_cached", sizes.verify),
            ("cross_zone_pull_transfer", sizes.transfers),
            ("push_through_outbox", sizes.transfers),
        ];
        for (k, (scenario, n)) in scenarios.into_iter().enumerate() {
            let db_before = fed.database_cpu();
            let m = match k {
                0 => fed.verify_cached(Api::Grpc, n, sizes.in_flight).await?,
                1 => fed.pull(0, n, sizes.in_flight).await?,
                _ => fed.push(n, sizes.in_flight).await?,
            };
            let db = fed.database_cpu().zip(db_before).map(|(a, b)| a.saturating_sub(b));
            let base_sled = format!("{variant_base}_{scenario}", variant_base = "sled");
            let base_pg = format!("pg_{scenario}");
            let (name, baseline) = match replicas {
                0 => (base_sled.clone(), None),
                1 => (base_pg.clone(), Some((base_sled.as_str(), sled_rates[k]))),
                _ => (format!("pg_2_replicas_{scenario}"), Some((base_pg.as_str(), one_replica_rates[k]))),
            };
            match replicas {
                0 => sled_rates[k] = m.ops_per_s(),
                1 => one_replica_rates[k] = m.ops_per_s(),
                _ => {}
            }
            let mut row = Row::new(&name, &m, baseline);
            row.rss_mb = fed.peak_rss_mb().iter().map(|(_, mb)| *mb).fold(0.0, f64::max);
            add(row);
            if let Some(db) = db {
                eprintln!("    the database's CPU per operation: {:.0} µs", db.as_secs_f64() * 1e6 / n.max(1) as f64);
            }
        }
        fed.shutdown();
    }
    Ok(())
}
