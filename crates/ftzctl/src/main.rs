//! `ftzctl`: operate, use and audit an ftz-exchange federation.

mod cmd;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand};
use ftz_client::ClientProfile;
#[cfg(feature = "dev")]
use ftzctl::demo;
use ftzctl::output::{Format, status_json, status_line};
use serde_json::json;
use tonic::transport::Channel;

/// The command line of ftz-exchange: run the demo, create a development federation, operate a
/// zone's node, issue and verify records, and handle registries and agreements as the zone
/// authorities do.
///
/// Commands that talk to a node act as one of the zone's users: `--as PROFILE` names a client
/// profile (zone, node endpoint, zone CA, the user's certificate and key), such as the ones
/// `ftzctl dev init` writes to <dir>/<zone>/users/<role>.toml. Each service checks the role in
/// the certificate: admin, issuer, enterprise or auditor.
///
/// Exit codes: 0 success (for verify: the record is valid; for the audit checks: OK); 1 an error
/// or a refusal (the reason code is printed); 3 verify answered that the record is not valid, or
/// an audit check failed (the reason is printed).
#[derive(Debug, Parser)]
#[command(name = "ftzctl", version)]
struct Cli {
    /// Print one JSON document instead of text (for scripts).
    #[arg(long, global = true)]
    json: bool,

    /// Client profile to act as (TOML: zone, endpoint, ca, cert, key).
    #[arg(long = "as", global = true, env = "FTZ_PROFILE", value_name = "PROFILE")]
    profile: Option<PathBuf>,

    /// Deadline for each call to the node, in seconds.
    #[arg(long, global = true, default_value_t = 15)]
    timeout: u64,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a three-zone federation on 127.0.0.1, show every flow, check every expectation,
    /// clean up. Exits non-zero if any expectation fails.
    ///
    /// With --serve the federation stays up after the demo, with everything the demo made, for
    /// the web console: it prints each zone's console address (https://127.0.0.1:PORT/) and
    /// the users' PKCS#12 files to import into a browser (password ftz-dev), and stops the
    /// nodes cleanly on Ctrl-C or SIGTERM.
    ///
    /// With --serve --json it prints exactly one JSON line on stdout once every node serves
    /// (for test harnesses), and nothing else: "ready", "passed" (whether every demo check
    /// held), "failed" (those that did not), "dir" (the federation's files), and "zones": per
    /// zone "zone", "console" (https://127.0.0.1:PORT/), "openapi", "grpc", "ca" (the zone CA's
    /// certificate) and "users": per role (admin, issuer, enterprise, auditor) "p12",
    /// "password", "cert", "key" and "profile", as absolute paths.
    #[cfg(feature = "dev")]
    Demo {
        /// Keep the federation's files (keys, certificates, stores) in this new directory.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
        /// Show the nodes' own logs too.
        #[arg(long)]
        verbose: bool,
        /// After the demo, keep the federation up for the web console until Ctrl-C or SIGTERM.
        #[arg(long)]
        serve: bool,
    },
    /// Development helpers.
    #[cfg(feature = "dev")]
    #[command(subcommand)]
    Dev(cmd::dev::DevCommand),
    /// Operate your zone's node (role admin).
    #[command(subcommand)]
    Admin(cmd::admin::AdminCommand),
    /// Issue, revoke and push records (role issuer).
    #[command(subcommand)]
    Issue(cmd::issue::IssueCommand),
    /// Verify records (role enterprise), or check an exported bundle offline.
    #[command(subcommand)]
    Verify(cmd::verify::VerifyCommand),
    /// List the zones of the federation as your node knows them (role enterprise).
    Zones,
    /// Handle federation registry files offline (zone authorities).
    #[command(subcommand)]
    Registry(cmd::registry::RegistryCommand),
    /// Handle mutual-recognition agreement files offline (zone authorities).
    #[command(subcommand)]
    Agreement(cmd::agreement::AgreementCommand),
    /// Exchange policies: write and sign them (authorities), install, list, revoke and explain
    /// them (role admin).
    #[command(subcommand)]
    Policy(cmd::policy::PolicyCommand),
    /// Your zone's export negative list: what never leaves, whatever a policy says.
    #[command(subcommand)]
    NegativeList(cmd::policy::NegativeListCommand),
    /// Withdraw leaked user certificates of your zone (zone authority, then admin).
    #[command(subcommand)]
    UserRevocations(cmd::policy::UserRevocationsCommand),
    /// Industry data: import your zone's (role issuer), query other zones' (role enterprise).
    #[command(subcommand)]
    Data(cmd::data::DataCommand),
    /// The verifiable audit log: export a node's (role auditor), check exports offline.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCommand),
    /// Verifier keys of audit logs and witnesses.
    #[command(subcommand)]
    Keys(cmd::keys::KeysCommand),
    /// Certificates from your zone CA, offline where its key is: the node's TLS certificate
    /// (renewed before it expires) and users' certificates.
    #[command(subcommand)]
    Ca(cmd::ca::CaCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let fmt = if cli.json { Format::Json } else { Format::Text };
    // For a message that says where the node was looked for, when it cannot be reached.
    let endpoint = cli.profile.as_ref().and_then(|p| ClientProfile::load(p).ok()).map(|p| p.endpoint);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ftzctl: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, fmt)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            match e.downcast_ref::<tonic::Status>() {
                Some(s) if fmt == Format::Json => println!("{}", json!({"error": status_json(s)})),
                Some(s) if s.code() == tonic::Code::Unavailable && ftz_client::reason_of(s).is_none() => eprintln!(
                    "ftzctl: cannot reach the node at {} ({}): is it running, and is `endpoint` in the profile right?",
                    endpoint.as_deref().unwrap_or("the profile's endpoint"),
                    s.message()
                ),
                Some(s) => eprintln!("ftzctl: refused: {}", status_line(s)),
                None if fmt == Format::Json => println!("{}", json!({"error": {"message": format!("{e:#}")}})),
                None => eprintln!("ftzctl: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, fmt: Format) -> Result<u8> {
    let timeout = Duration::from_secs(cli.timeout);
    let profile = cli.profile.clone();
    let channel = move || -> Result<Channel> {
        let path = profile
            .as_ref()
            .ok_or_else(|| anyhow!("this command talks to a node: give --as PROFILE (or FTZ_PROFILE)"))?;
        // The profile's files are read here: an error names the profile (the setting and file
        // are in the message).
        ClientProfile::load(path)?.channel(timeout).with_context(|| format!("profile {}", path.display()))
    };
    match cli.command {
        #[cfg(feature = "dev")]
        Command::Demo { keep, verbose, serve } => run_demo(keep, verbose, serve, fmt).await,
        #[cfg(feature = "dev")]
        Command::Dev(c) => cmd::dev::run(c, fmt).map(|()| 0),
        Command::Admin(c) => cmd::admin::run(c, channel()?, fmt).await.map(|()| 0),
        Command::Issue(c) => cmd::issue::run(c, channel()?, fmt).await.map(|()| 0),
        Command::Verify(c) => cmd::verify::run(c, channel, fmt).await,
        Command::Zones => cmd::verify::zones(channel()?, fmt).await.map(|()| 0),
        Command::Registry(c) => cmd::registry::run(c, fmt).map(|()| 0),
        Command::Agreement(c) => cmd::agreement::run(c, fmt).map(|()| 0),
        Command::Policy(c) => cmd::policy::run(c, channel, fmt).await.map(|()| 0),
        Command::NegativeList(c) => cmd::policy::run_negative_list(c, channel, fmt).await.map(|()| 0),
        Command::UserRevocations(c) => cmd::policy::run_user_revocations(c, channel, fmt).await.map(|()| 0),
        Command::Data(c) => cmd::data::run(c, channel()?, fmt).await.map(|()| 0),
        Command::Audit(c) => cmd::audit::run(c, channel, fmt).await,
        Command::Keys(c) => cmd::keys::run(c, channel, fmt).await.map(|()| 0),
        Command::Ca(c) => cmd::ca::run(c, fmt).map(|()| 0),
    }
}

#[cfg(feature = "dev")]
async fn run_demo(keep: Option<PathBuf>, verbose: bool, serve: bool, fmt: Format) -> Result<u8> {
    let level = if verbose { "info" } else { "off" };
    ftz_node::telemetry::init(&ftz_node::config::LogConfig { level: level.into(), ..Default::default() });
    let serve = serve.then_some(if fmt == Format::Json { demo::ServeOutput::Json } else { demo::ServeOutput::Text });
    let opts = demo::DemoOptions { keep, serve };
    let report = demo::run(&opts, |s| {
        if fmt == Format::Text {
            print!("{s}");
        }
    })
    .await?;
    // With --serve --json the one line printed when ready was the whole output.
    if fmt == Format::Json && serve.is_none() {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    }
    Ok(if report.passed() { 0 } else { 1 })
}
