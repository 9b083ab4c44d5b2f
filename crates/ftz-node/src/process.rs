//! The `ftz-node` process: arguments, configuration, runtime, serving until SIGTERM or Ctrl-C.
//! In the library so that test harnesses can build the same process under another name.

use std::{path::PathBuf, process::ExitCode};

use crate::{
    config::{self, NodeConfig},
    server::{NodeOptions, start},
    telemetry,
};
use clap::Parser;

/// Runs the ftz-exchange node of one free trade zone.
///
/// The node serves its zone's users (issuers, enterprises, auditors, admins) and the other
/// zones' nodes over gRPC with mutual TLS, and trusts exactly the zones its signed federation
/// registry lists. It stops gracefully on SIGTERM or Ctrl-C: in-flight calls finish, the store
/// is flushed.
#[derive(Debug, Parser)]
#[command(name = "ftz-node", version, after_help = env_help())]
struct Args {
    /// Path of the node's TOML config (see `ftzctl dev init` for an example).
    #[arg(long, short, env = "FTZ_CONFIG", global = true)]
    config: Option<PathBuf>,

    /// Load and check everything (config, keys, certificate, store, registry, listen
    /// addresses), then exit without serving. Changes nothing: no store is created, no registry
    /// installed.
    #[arg(long)]
    check: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Writes a backup file (`ftzctl admin backup`) into the node's data directory, which must
    /// be empty or missing, then exits. Every checksum is verified before anything is written.
    /// The node started on it appends nothing to its audit log until the other zones'
    /// witnesses have confirmed they hold no more of it (docs/operations.md, "Back up and
    /// restore").
    Restore {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
    },
    /// Copies a zone's sled store into an empty PostgreSQL database and verifies the copy:
    /// the step that moves a zone from the sled engine to PostgreSQL (docs/operations.md,
    /// "Moving a zone from sled to PostgreSQL"). Needs no --config.
    ///
    /// Stop the zone's node first: a running node holds the sled directory's lock, and the
    /// migration is refused while it does (nothing may change under the copy). The sled store's
    /// data is not changed.
    ///
    /// The target database must be empty: new (createdb), or with an ftz schema that holds no
    /// entry. A database that already holds a store is refused: a migration never merges into
    /// or overwrites one.
    ///
    /// Every tree is copied in batches, and the id sequence is moved above every id the sled
    /// store handed out. Then the PostgreSQL store is opened again and compared with sled key by
    /// key and value by value, and the audit log's root at its size and the latest signed
    /// checkpoint are checked on the copy. Only then does it report success (trees, rows,
    /// bytes, audit log size and root, time) and exit 0. Progress goes to stderr.
    ///
    /// Exit 1: refused or failed (what and why on stderr). Exit 3: the copy differs from the
    /// sled store (each difference listed); then drop the database, create it empty and run the
    /// migration again. After success, set `[store] engine = "postgres"` and `url` in the
    /// node's config and start it; keep the sled directory until it runs.
    #[command(name = "migrate-store")]
    MigrateStore {
        /// The zone's sled store: the node's data directory (`data_dir` in its config).
        #[arg(long, value_name = "SLED_DIR")]
        from: PathBuf,
        /// The empty target database, `postgresql://user@host:port/db`. FTZ_STORE_URL instead
        /// keeps a password off the command line; it is never printed.
        #[arg(long, value_name = "POSTGRES_URL", env = "FTZ_STORE_URL", hide_env_values = true)]
        to: String,
        /// Speak TLS to the database and verify it against this CA (PEM), as `[store]
        /// postgres_ca` does; without it, no TLS (a database on this host or a trusted link).
        #[arg(long, value_name = "PATH")]
        postgres_ca: Option<PathBuf>,
        /// Print the report (or the failure) as one JSON object on stdout.
        #[arg(long)]
        json: bool,
    },
}

fn env_help() -> String {
    let mut s = String::from("Environment overrides of config fields:\n");
    for (var, field) in config::ENV_OVERRIDES {
        s.push_str(&format!("  {var:<20} {field}\n"));
    }
    s
}

/// The whole process: what `main` of `ftz-node` runs.
pub fn main() -> ExitCode {
    main_from(std::env::args_os())
}

/// The same with these arguments (the first is the program's name): for binaries that also run
/// a node (the benchmark runs each node as a child process of itself).
pub fn main_from(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let args = Args::parse_from(args);
    if let Some(Command::MigrateStore { from, to, postgres_ca, json }) = &args.command {
        return migrate_store_main(from, to, postgres_ca.as_deref(), *json);
    }
    let Some(config) = args.config.clone() else {
        use clap::CommandFactory;
        Args::command().error(clap::error::ErrorKind::MissingRequiredArgument, "--config <CONFIG> is required").exit()
    };
    if let Some(Command::Restore { from }) = &args.command {
        return restore_main(&config, from);
    }
    let cfg = match NodeConfig::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ftz-node: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&cfg.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ftz-node: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cfg, args.check))
}

/// `ftz-node restore`: what it wrote on stdout, or why not on stderr.
fn restore_main(config: &std::path::Path, from: &std::path::Path) -> ExitCode {
    match crate::restore::restore(config, from, ftz_core::Clock::now_ms(&ftz_core::SystemClock)) {
        Ok(r) => {
            println!(
                "ftz-node: restored zone {} into {}: {} keys, audit log of {} entries (latest checkpoint at {}), backup sha256 {}",
                r.zone,
                r.data_dir.display(),
                r.keys,
                r.audit_log_size,
                r.checkpoint_size,
                r.sha256
            );
            println!(
                "ftz-node: at its next start the node asks the other zones' witnesses what they hold of its log; it appends nothing until they confirm it (ftzctl admin status shows why)"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ftz-node: restore refused: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `ftz-node migrate-store`: the report on stdout (text or JSON), or why not on stderr (and as
/// JSON on stdout with `--json`).
fn migrate_store_main(from: &std::path::Path, to: &str, ca: Option<&std::path::Path>, json: bool) -> ExitCode {
    use crate::migrate_store::{MigrateOptions, migrate};
    let mut target = ftz_store::PgOptions::new(to);
    target.tls_ca = ca.map(std::path::Path::to_path_buf);
    let mut options = MigrateOptions::new(from, target);
    options.progress = true;
    match migrate(&options) {
        Ok(m) => {
            if json {
                let mut v = serde_json::to_value(&m).unwrap_or_default();
                v["ok"] = serde_json::Value::Bool(true);
                println!("{v}");
            } else {
                let checkpoint = match m.checkpoint_size {
                    Some(size) => format!("the latest signed checkpoint (size {size}) matches"),
                    None => "no checkpoint signed yet".into(),
                };
                println!(
                    "ftz-node: migrated {} into {} and verified it: {} trees, {} rows, {} bytes; audit log of {} entries, root {}; {checkpoint}; ids above {}; in {:.1} s",
                    m.from.display(),
                    m.to,
                    m.trees,
                    m.rows,
                    m.bytes,
                    m.audit_size,
                    m.audit_root,
                    m.ids_above,
                    m.elapsed_ms as f64 / 1000.0
                );
                println!(
                    "ftz-node: now set [store] engine = \"postgres\" and url in the node's config and start it; keep {} until it runs",
                    m.from.display()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ftz-node: migrate-store: {e}");
            if json {
                let v = serde_json::json!({"ok": false, "error": e.to_string(), "differences": e.differences()});
                println!("{v}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cfg: NodeConfig, check: bool) -> ExitCode {
    if check {
        return match crate::node::check(&cfg, ftz_core::Clock::now_ms(&ftz_core::SystemClock)) {
            Ok(found) => {
                for line in found {
                    println!("ftz-node: {line}");
                }
                println!("ftz-node: configuration OK (zone {}, would listen on {})", cfg.zone_id, cfg.listen);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ftz-node: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let node = match start(&cfg, NodeOptions::default()).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("ftz-node: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One line on stdout when the node serves, with the address it bound (FTZ_LISTEN may say
    // port 0): what scripts and supervisors wait for.
    println!("ftz-node: zone {} listening on {}", cfg.zone_id, node.local_addr());
    wait_for_signal().await;
    // Draining: not ready (for the load balancer's probe) while still serving; a second signal
    // ends it early. Without an ops listener nobody probes, so there is nothing to wait for.
    if node.ops_addr().is_some() && cfg.ops.drain_ms > 0 {
        node.drain();
        tracing::info!(drain_ms = cfg.ops.drain_ms, "draining: /readyz answers 503, calls are still served");
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_millis(cfg.ops.drain_ms)) => {}
            () = wait_for_signal() => tracing::info!("a second signal: stopping now"),
        }
    }
    tracing::info!("shutting down: finishing in-flight calls, flushing the store");
    match node.shutdown().await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ftz-node: flushing the store failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
