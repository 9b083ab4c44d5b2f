//! `ftzctl`: operate, use and audit an ftz-exchange federation.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use ftz_core::{Clock, Registry, SystemClock, ZoneId, envelope};
use ftz_node::{
    client::ClientProfile,
    dev::{self, DevSpec, DevZoneSpec},
};
use ftz_proto::{
    GetNodeStatusRequest, GetRegistryRequest, InstallRegistryRequest, ListZonesRequest, PingPeerRequest,
    admin_client::AdminClient, verify_client::VerifyClient,
};
use ftzctl::{
    demo,
    output::{Format, emit, status_json, status_line, time},
    registry_file,
};
use serde_json::json;
use tonic::transport::Channel;

/// The command line of ftz-exchange: run the demo, create a development federation, operate a
/// zone's node, and handle federation registries as the zone authorities do.
///
/// Commands that talk to a node act as one of the zone's users: `--as PROFILE` names a client
/// profile (zone, node endpoint, zone CA, the user's certificate and key), such as the ones
/// `ftzctl dev init` writes to <dir>/<zone>/users/<role>.toml.
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
    Demo {
        /// Keep the federation's files (keys, certificates, stores) in this new directory.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
        /// Show the nodes' own logs too.
        #[arg(long)]
        verbose: bool,
    },
    /// Development helpers.
    #[command(subcommand)]
    Dev(DevCommand),
    /// Operate your zone's node (role admin).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Handle federation registry files offline (zone authorities).
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// List the zones of the federation as your node knows them (role enterprise).
    Zones,
}

#[derive(Debug, Subcommand)]
enum DevCommand {
    /// Create a development federation: per zone a CA, node and user certificates, authority,
    /// node and issuing keys, a node config and user profiles; one registry signed by all.
    /// Private keys are generated here (mode 0600) and must never be committed.
    Init(DevInit),
}

#[derive(Debug, Args)]
struct DevInit {
    /// Zone ids, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "shanghai,hainan,guangdong")]
    zones: Vec<String>,
    /// Directory to create (must be empty or absent).
    #[arg(long)]
    out: PathBuf,
    /// Host the nodes listen on and peers reach them at.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port of the first zone; the others follow.
    #[arg(long, default_value_t = 7443)]
    base_port: u16,
    /// Authorities needed to accept the next registry version (default: a majority).
    #[arg(long)]
    quorum: Option<u32>,
    #[arg(long, default_value = "ftz-dev")]
    federation: String,
    /// Validity of certificates and registry, in days.
    #[arg(long, default_value_t = 365)]
    valid_days: i64,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// The node's zone, registry version, keys and peers.
    Status,
    /// Ask your node to ping another zone's node (signed challenge and answer).
    Ping {
        /// The zone to ping.
        zone: String,
    },
    /// Install or read the federation registry on your node.
    #[command(subcommand)]
    Registry(AdminRegistryCommand),
}

#[derive(Debug, Subcommand)]
enum AdminRegistryCommand {
    /// Install a signed registry file; refused (with a reason) when under quorum, badly signed,
    /// not newer than the installed one, or expired.
    Install { file: PathBuf },
    /// Show the registry the node holds; `--out` saves the signed file.
    Get {
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum RegistryCommand {
    /// Describe a registry file: zones, keys, validity, signatures.
    Show { file: PathBuf },
    /// Add (or replace) your authority's signature.
    Sign {
        file: PathBuf,
        /// The authority's Ed25519 key (PEM PKCS#8).
        #[arg(long)]
        key: PathBuf,
        /// Write here instead of in place.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Start the next version of a registry: version + 1, signatures removed, for the
    /// authorities to co-sign.
    Next {
        file: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        quorum: Option<u32>,
        /// New validity from now, in days.
        #[arg(long)]
        valid_days: Option<i64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let fmt = if cli.json { Format::Json } else { Format::Text };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ftzctl: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, fmt)) {
        Ok(code) => code,
        Err(e) => {
            match e.downcast_ref::<tonic::Status>() {
                Some(s) if fmt == Format::Json => println!("{}", json!({"error": status_json(s)})),
                Some(s) => eprintln!("ftzctl: refused: {}", status_line(s)),
                None if fmt == Format::Json => println!("{}", json!({"error": {"message": format!("{e:#}")}})),
                None => eprintln!("ftzctl: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, fmt: Format) -> Result<ExitCode> {
    let timeout = Duration::from_secs(cli.timeout);
    let channel = || -> Result<Channel> {
        let path = cli
            .profile
            .as_ref()
            .ok_or_else(|| anyhow!("this command talks to a node: give --as PROFILE (or FTZ_PROFILE)"))?;
        let profile = ClientProfile::load(path)?;
        Ok(profile.channel(timeout)?)
    };
    match cli.command {
        Command::Demo { keep, verbose } => run_demo(keep, verbose, fmt).await,
        Command::Dev(DevCommand::Init(args)) => dev_init(args, fmt).map(|()| ExitCode::SUCCESS),
        Command::Admin(cmd) => admin(cmd, channel()?, fmt).await.map(|()| ExitCode::SUCCESS),
        Command::Registry(cmd) => registry(cmd, fmt).map(|()| ExitCode::SUCCESS),
        Command::Zones => zones(channel()?, fmt).await.map(|()| ExitCode::SUCCESS),
    }
}

async fn run_demo(keep: Option<PathBuf>, verbose: bool, fmt: Format) -> Result<ExitCode> {
    let level = if verbose { "info" } else { "off" };
    ftz_node::telemetry::init(&ftz_node::config::LogConfig { level: level.into(), ..Default::default() });
    let opts = demo::DemoOptions { keep };
    let report = demo::run(&opts, |s| {
        if fmt == Format::Text {
            print!("{s}");
        }
    })
    .await?;
    if fmt == Format::Json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    }
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn dev_init(a: DevInit, fmt: Format) -> Result<()> {
    let mut zones = Vec::new();
    for (i, z) in a.zones.iter().enumerate() {
        let port = a.base_port.checked_add(u16::try_from(i)?).context("port out of range")?;
        zones.push(DevZoneSpec {
            id: ZoneId::new(z.clone())?,
            display_name: dev::display_name(z),
            endpoint: format!("{}:{port}", a.host),
        });
    }
    let quorum = a.quorum.unwrap_or((zones.len() / 2 + 1) as u32);
    let spec = DevSpec {
        federation_id: a.federation.clone(),
        zones,
        quorum,
        validity_days: a.valid_days,
        now_ms: SystemClock.now_ms(),
    };
    let fed = dev::create(&spec, &a.out)?;
    emit(
        fmt,
        || {
            let mut t = format!(
                "Created development federation {} with {} zones in {}\n  registry: {} (v1, quorum {quorum}, signed by every authority)\n\nStart the nodes (one terminal each):\n",
                a.federation,
                fed.zones.len(),
                a.out.display(),
                fed.registry_path.display()
            );
            for z in &fed.zones {
                t.push_str(&format!("  ftz-node --config {}\n", z.config_path.display()));
            }
            if let (Some(first), Some(second)) = (fed.zones.first(), fed.zones.get(1)) {
                t.push_str(&format!(
                    "\nThen, for example:\n  ftzctl --as {} admin ping {}\n",
                    first.profile_path(ftz_core::Role::Admin).display(),
                    second.id
                ));
            }
            t.push_str("\nThe directory holds private keys (mode 0600): never commit it.\n");
            t
        },
        || {
            json!({
                "federation_id": a.federation,
                "registry": fed.registry_path,
                "zones": fed.zones.iter().map(|z| json!({
                    "zone_id": z.id.as_str(), "endpoint": z.endpoint, "config": z.config_path,
                    "authority_key_id": z.authority_key_id.to_string(), "node_key_id": z.node_key_id.to_string(),
                })).collect::<Vec<_>>(),
            })
        },
    );
    Ok(())
}

async fn admin(cmd: AdminCommand, channel: Channel, fmt: Format) -> Result<()> {
    let mut client = AdminClient::new(channel);
    match cmd {
        AdminCommand::Status => {
            let s = client.get_node_status(GetNodeStatusRequest {}).await?.into_inner();
            emit(
                fmt,
                || {
                    format!(
                        "zone        {}\nfederation  {}\nregistry    v{}\nnode key    {}\nlistening   {}\nstarted     {}\npeers       {}\nversion     {}\n",
                        s.zone_id,
                        s.federation_id,
                        s.registry_version,
                        s.node_key_id,
                        s.listen_address,
                        time(s.started_at_ms),
                        s.peer_zones.join(", "),
                        s.software_version
                    )
                },
                || {
                    json!({
                        "zone_id": s.zone_id, "federation_id": s.federation_id, "registry_version": s.registry_version,
                        "node_key_id": s.node_key_id, "listen_address": s.listen_address, "started_at_ms": s.started_at_ms,
                        "now_ms": s.now_ms, "peer_zones": s.peer_zones, "software_version": s.software_version,
                    })
                },
            );
        }
        AdminCommand::Ping { zone } => {
            let p = client.ping_peer(PingPeerRequest { zone_id: zone }).await?.into_inner();
            emit(
                fmt,
                || {
                    format!(
                        "{}: answered, signed by node key {}, registry v{}, round trip {:.2} ms, clock offset {} ms\n",
                        p.zone_id,
                        p.peer_node_key_id,
                        p.peer_registry_version,
                        p.round_trip_us as f64 / 1000.0,
                        p.peer_clock_offset_ms
                    )
                },
                || {
                    json!({
                        "zone_id": p.zone_id, "peer_node_key_id": p.peer_node_key_id, "peer_registry_version": p.peer_registry_version,
                        "round_trip_us": p.round_trip_us, "peer_clock_offset_ms": p.peer_clock_offset_ms,
                    })
                },
            );
        }
        AdminCommand::Registry(AdminRegistryCommand::Install { file }) => {
            let env = registry_file::read(&file)?;
            let r = client.install_registry(InstallRegistryRequest { registry: Some(env) }).await?.into_inner();
            emit(
                fmt,
                || {
                    if r.already_installed {
                        format!("registry v{} was already installed; nothing changed\n", r.installed_version)
                    } else {
                        format!(
                            "installed registry v{} (was v{}); quorum met by {} authority signatures: {}\n",
                            r.installed_version,
                            r.previous_version,
                            r.counted_signers.len(),
                            r.counted_signers.join(", ")
                        )
                    }
                },
                || {
                    json!({
                        "installed_version": r.installed_version, "previous_version": r.previous_version,
                        "already_installed": r.already_installed, "counted_signers": r.counted_signers,
                    })
                },
            );
        }
        AdminCommand::Registry(AdminRegistryCommand::Get { out }) => {
            let r = client.get_registry(GetRegistryRequest {}).await?.into_inner();
            let env = r.registry.ok_or_else(|| anyhow!("the node returned no registry"))?;
            if let Some(path) = &out {
                registry_file::write(path, &env)?;
            }
            let reg = Registry::parse(env)?;
            let (text, mut value) = registry_file::describe(&reg);
            value["installed_at_ms"] = json!(r.installed_at_ms);
            emit(fmt, || format!("installed {}\n{text}", time(r.installed_at_ms)), || value);
        }
    }
    Ok(())
}

fn registry(cmd: RegistryCommand, fmt: Format) -> Result<()> {
    match cmd {
        RegistryCommand::Show { file } => {
            let reg = Registry::parse(registry_file::read(&file)?)?;
            let (text, value) = registry_file::describe(&reg);
            emit(fmt, || text, || value);
        }
        RegistryCommand::Sign { file, key, out } => {
            let mut env = registry_file::read(&file)?;
            Registry::parse(env.clone()).with_context(|| format!("{} is not a valid registry", file.display()))?;
            let key = ftz_pki::files::read_signing_key(&key)?;
            envelope::add_signature(&mut env, &key);
            let dest = out.unwrap_or(file);
            registry_file::write(&dest, &env)?;
            emit(
                fmt,
                || {
                    format!(
                        "signed {} with key {} ({} signatures now)\n",
                        dest.display(),
                        key.key_id(),
                        env.signatures.len()
                    )
                },
                || json!({"file": dest, "key_id": key.key_id().to_string(), "signatures": env.signatures.len()}),
            );
        }
        RegistryCommand::Next { file, out, quorum, valid_days } => {
            let env = registry_file::read(&file)?;
            let next = registry_file::next_version(&env, SystemClock.now_ms(), quorum, valid_days)?;
            let reg = Registry::parse(next.clone())?;
            if out.exists() {
                bail!("{} exists; choose a new file", out.display());
            }
            registry_file::write(&out, &next)?;
            emit(
                fmt,
                || {
                    format!(
                        "wrote unsigned registry v{} to {}; each authority now runs `ftzctl registry sign`\n",
                        reg.version(),
                        out.display()
                    )
                },
                || json!({"file": out, "version": reg.version()}),
            );
        }
    }
    Ok(())
}

async fn zones(channel: Channel, fmt: Format) -> Result<()> {
    let z = VerifyClient::new(channel).list_zones(ListZonesRequest {}).await?.into_inner();
    emit(
        fmt,
        || {
            let mut t = format!("registry v{}\n", z.registry_version);
            for zone in &z.zones {
                t.push_str(&format!(
                    "{:<12} {:<45} {}  valid until {}\n",
                    zone.zone_id,
                    zone.display_name,
                    zone.endpoint,
                    time(zone.valid_until_ms)
                ));
            }
            t
        },
        || {
            json!({
                "registry_version": z.registry_version,
                "zones": z.zones.iter().map(|zone| json!({
                    "zone_id": zone.zone_id, "display_name": zone.display_name, "endpoint": zone.endpoint,
                    "valid_from_ms": zone.valid_from_ms, "valid_until_ms": zone.valid_until_ms,
                })).collect::<Vec<_>>(),
            })
        },
    );
    Ok(())
}
