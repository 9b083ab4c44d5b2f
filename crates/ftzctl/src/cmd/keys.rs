//! `ftzctl keys show`: the C2SP verifier keys (vkeys) of zones' audit logs and witnesses, which
//! auditors pass to the offline checks.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::Subcommand;
use ftz_audit::offline::{log_verifier, witness_verifier};
use ftz_proto::{GetCheckpointRequest, KeyPurpose, audit_client::AuditClient};
use ftzctl::{
    output::{Format, emit},
    registry_file,
};
use serde_json::json;
use tonic::transport::Channel;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print verifier keys, one per line: `ftz/<zone>/audit` (the zone's log, signature type
    /// 0x01) and `ftz/<zone>/witness` (its cosignatures, type 0x04). Offline from a signed
    /// registry file with `--registry`; otherwise your node's log key and its witnesses' (role
    /// auditor). Every node key the registry lists is shown, retired ones too.
    Show {
        /// A signed federation registry file.
        #[arg(long, value_name = "FILE")]
        registry: Option<PathBuf>,
        /// Only this zone's keys (with --registry).
        #[arg(long)]
        zone: Option<String>,
    },
}

pub async fn run(cmd: KeysCommand, channel: impl FnOnce() -> Result<Channel>, fmt: Format) -> Result<()> {
    let KeysCommand::Show { registry, zone } = cmd;
    let keys: Vec<String> = match registry {
        Some(path) => {
            let reg = ftz_core::Registry::parse(registry_file::read(&path)?)?;
            let mut keys = Vec::new();
            for z in reg.zones().filter(|z| zone.as_deref().is_none_or(|want| z.id.as_str() == want)) {
                // Retired node keys too: entries signed before a rotation need them.
                for k in z.keys.iter().filter(|k| k.purpose == KeyPurpose::Node) {
                    keys.extend(log_verifier(z.id.as_str(), k.key).map(|v| v.to_vkey()));
                    keys.extend(witness_verifier(z.id.as_str(), k.key).map(|v| v.to_vkey()));
                }
            }
            if keys.is_empty() {
                return Err(anyhow!(
                    "the registry lists no node key valid now{}",
                    zone.map(|z| format!(" for {z}")).unwrap_or_default()
                ));
            }
            keys
        }
        None => AuditClient::new(channel()?).get_checkpoint(GetCheckpointRequest {}).await?.into_inner().keys,
    };
    emit(fmt, || keys.iter().map(|k| format!("{k}\n")).collect(), || json!({"keys": keys}));
    Ok(())
}
