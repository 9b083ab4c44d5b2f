//! `ftzctl dev`: development helpers.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use ftz_core::{Clock, SystemClock, ZoneId};
use ftz_devkit::dev::{self, DevSpec, DevZoneSpec};
use ftzctl::output::{Format, emit};
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Create a development federation: per zone a CA, node and user certificates, authority,
    /// node and issuing keys, a node config and user profiles; one registry signed by all.
    /// Private keys are generated here (mode 0600) and must never be committed.
    Init(DevInit),
}

#[derive(Debug, Args)]
pub struct DevInit {
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

/// Each zone's HTTPS listener (JSON API) is on its gRPC port plus this.
const HTTP_PORT_OFFSET: u16 = 1000;
/// Each zone's ops listener (metrics, health; plain HTTP, always on loopback) is on its gRPC
/// port plus this.
const OPS_PORT_OFFSET: u16 = 2000;

pub fn run(cmd: DevCommand, fmt: Format) -> Result<()> {
    let DevCommand::Init(a) = cmd;
    let mut zones = Vec::new();
    for (i, z) in a.zones.iter().enumerate() {
        let port = a.base_port.checked_add(u16::try_from(i)?).context("port out of range")?;
        zones.push(DevZoneSpec {
            id: ZoneId::new(z.clone())?,
            display_name: dev::display_name(z),
            endpoint: format!("{}:{port}", a.host),
            http_endpoint: Some(format!(
                "{}:{}",
                a.host,
                port.checked_add(HTTP_PORT_OFFSET).context("port out of range")?
            )),
            ops_endpoint: Some(format!(
                "127.0.0.1:{}",
                port.checked_add(OPS_PORT_OFFSET).context("port out of range")?
            )),
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
            t.push_str(&format!(
                "\nFor a browser, each user's certificate, key and zone CA as PKCS#12 (password {}):\n",
                ftz_devkit::pkcs12::DEV_PASSWORD
            ));
            for z in &fed.zones {
                t.push_str(&format!(
                    "  {}  (console: https://{}/)\n",
                    z.pkcs12_path(ftz_core::Role::Admin).with_file_name("<role>.p12").display(),
                    z.http_endpoint.as_deref().unwrap_or("-")
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
                    "http_endpoint": z.http_endpoint, "ca": z.ca_cert_path(),
                    "users": ftz_core::Role::ALL.iter().map(|r| (r.to_string(), json!({
                        "profile": z.profile_path(*r), "p12": z.pkcs12_path(*r),
                    }))).collect::<serde_json::Map<_, _>>(),
                })).collect::<Vec<_>>(),
                "pkcs12_password": ftz_devkit::pkcs12::DEV_PASSWORD,
            })
        },
    );
    Ok(())
}
