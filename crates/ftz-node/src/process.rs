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
    #[arg(long, short, env = "FTZ_CONFIG")]
    config: PathBuf,

    /// Load and check everything (config, keys, certificate, store, registry, listen address),
    /// then exit without serving.
    #[arg(long)]
    check: bool,
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
    let cfg = match NodeConfig::load(&args.config) {
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

async fn run(cfg: NodeConfig, check: bool) -> ExitCode {
    let node = match start(&cfg, NodeOptions::default()).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("ftz-node: {e}");
            return ExitCode::FAILURE;
        }
    };
    if check {
        let addr = node.local_addr();
        let _ = node.shutdown().await;
        println!("ftz-node: configuration OK (zone {}, would listen on {addr})", cfg.zone_id);
        return ExitCode::SUCCESS;
    }
    // One line on stdout when the node serves, with the address it bound (FTZ_LISTEN may say
    // port 0): what scripts and supervisors wait for.
    println!("ftz-node: zone {} listening on {}", cfg.zone_id, node.local_addr());
    wait_for_signal().await;
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
