//! `ftzctl admin`: operate your zone's node (role admin).

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use clap::Subcommand;
use ftz_core::Registry;
use ftz_proto::{
    GetNodeStatusRequest, GetRegistryRequest, InstallAgreementRequest, InstallRegistryRequest, ListAgreementsRequest,
    ListBudgetsRequest, ListOutboxRequest, ListPeersRequest, PingPeerRequest, admin_client::AdminClient,
};
use ftzctl::{
    output::{Format, emit, time},
    registry_file,
};
use serde_json::json;
use tonic::transport::Channel;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
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
    /// Install or list mutual-recognition agreements on your node.
    #[command(subcommand)]
    Agreement(AdminAgreementCommand),
    /// Messages to other zones not delivered yet (receipts, revocation notices, policy
    /// revocations, pushed results): kept on disk and retried with backoff until they arrive.
    Outbox {
        /// Show at most this many (at most 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Privacy budgets spent on your node as provider, per exchange policy and consumer zone, in
    /// the sliding window of each policy's budget period.
    Budgets {
        /// Show at most this many (at most 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// An online backup of your node's store into FILE: a manifest (zone, store format, the
    /// audit log's size, root and latest checkpoint at the cut, every tree's count and SHA-256),
    /// the keys, and a trailer with the SHA-256 of all before it. Written to a temporary file
    /// beside FILE, checked, fsynced and renamed: FILE never holds half a backup. Restore it
    /// with `ftz-node restore --config node.toml --from FILE` (docs/operations.md).
    Backup {
        /// Where to write the backup.
        #[arg(long)]
        out: PathBuf,
    },
    /// Every other zone with your node's last successful and last failed ping of it.
    Peers {
        /// Ping them all now (at once, a few seconds each at most) first.
        #[arg(long)]
        refresh: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminAgreementCommand {
    /// Install an agreement file signed by both zones' authorities; refused (with a reason) when
    /// under-signed, expired, naming a zone the registry does not list, or not involving your zone.
    Install { file: PathBuf },
    /// The agreements installed on your node.
    List,
}

#[derive(Debug, Subcommand)]
pub enum AdminRegistryCommand {
    /// Install a signed registry file; refused (with a reason) when under quorum, badly signed,
    /// not newer than the installed one, or expired.
    Install { file: PathBuf },
    /// Show the registry the node holds; `--out` saves the signed file.
    Get {
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub async fn run(cmd: AdminCommand, channel: Channel, fmt: Format) -> Result<()> {
    let mut client = AdminClient::new(channel);
    match cmd {
        AdminCommand::Status => {
            let s = client.get_node_status(GetNodeStatusRequest {}).await?.into_inner();
            emit(
                fmt,
                || {
                    format!(
                        "zone        {}\nfederation  {}\nregistry    v{}\nnode key    {}\nlistening   {}\nstarted     {}\npeers       {}\nversion     {}\naudit log   {} entries, checkpoint at {}\noutbox      {} message(s) waiting\nwitness     {} equivocation(s) found\n",
                        s.zone_id,
                        s.federation_id,
                        s.registry_version,
                        s.node_key_id,
                        s.listen_address,
                        time(s.started_at_ms),
                        s.peer_zones.join(", "),
                        s.software_version,
                        s.audit_log_size,
                        s.checkpoint_size,
                        s.outbox_items,
                        s.equivocations_found
                    ) + &blocked_lines(&s)
                },
                || {
                    json!({
                        "zone_id": s.zone_id, "federation_id": s.federation_id, "registry_version": s.registry_version,
                        "node_key_id": s.node_key_id, "listen_address": s.listen_address, "started_at_ms": s.started_at_ms,
                        "now_ms": s.now_ms, "peer_zones": s.peer_zones, "software_version": s.software_version,
                        "audit_log_size": s.audit_log_size, "checkpoint_size": s.checkpoint_size,
                        "outbox_items": s.outbox_items, "equivocations_found": s.equivocations_found,
                        "audit_log_blocked": s.audit_log_blocked,
                        "restore_witnesses": s.restore_witnesses.iter().map(|w| json!({
                            "zone_id": w.zone_id, "answered": w.answered, "held_size": w.held_size, "conflict": w.conflict,
                        })).collect::<Vec<_>>(),
                    })
                },
            );
        }
        AdminCommand::Backup { out } => {
            let bar = if fmt == Format::Text && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                let b = indicatif::ProgressBar::new(0);
                if let Ok(style) =
                    indicatif::ProgressStyle::with_template("backup [{bar:30}] {bytes}/{total_bytes} ({eta})")
                {
                    b.set_style(style.progress_chars("=> "));
                }
                b
            } else {
                indicatif::ProgressBar::hidden()
            };
            let s = ftzctl::backup::download(&mut client, &out, |done, total| {
                if total > 0 {
                    bar.set_length(total);
                }
                bar.set_position(done);
            })
            .await;
            bar.finish_and_clear();
            let s = s?;
            emit(
                fmt,
                || {
                    format!(
                        "backup of zone {} written to {}: {} bytes, {} keys, audit log of {} entries (latest checkpoint at {}), sha256 {}\n",
                        s.zone,
                        s.path.display(),
                        s.bytes,
                        s.entries,
                        s.audit_log_size,
                        s.checkpoint_size,
                        s.sha256
                    )
                },
                || {
                    json!({
                        "path": s.path.display().to_string(), "zone": s.zone, "bytes": s.bytes, "entries": s.entries,
                        "audit_log_size": s.audit_log_size, "checkpoint_size": s.checkpoint_size, "sha256": s.sha256,
                    })
                },
            );
        }
        AdminCommand::Outbox { limit } => {
            let r = client.list_outbox(ListOutboxRequest { limit }).await?.into_inner();
            emit(
                fmt,
                || {
                    let mut t = String::new();
                    for e in &r.entries {
                        t.push_str(&format!(
                            "{}  {:<18} to {:<12} since {}  {} attempt(s), next {}  {}\n",
                            &e.id[..12.min(e.id.len())],
                            e.kind,
                            e.to_zone,
                            time(e.created_at_ms),
                            e.attempts,
                            time(e.next_attempt_ms),
                            e.last_error
                        ));
                    }
                    t.push_str(&format!("{} message(s) waiting\n", r.total));
                    t
                },
                || {
                    let entries: Vec<_> = r
                        .entries
                        .iter()
                        .map(|e| {
                            json!({"id": e.id, "kind": e.kind, "to_zone": e.to_zone, "created_at_ms": e.created_at_ms,
                                "attempts": e.attempts, "next_attempt_ms": e.next_attempt_ms, "last_error": e.last_error})
                        })
                        .collect();
                    json!({"entries": entries, "total": r.total})
                },
            );
        }
        AdminCommand::Budgets { limit } => {
            let r = client.list_budgets(ListBudgetsRequest { limit }).await?.into_inner();
            let eps = |milli: u64| milli as f64 / 1000.0;
            emit(
                fmt,
                || {
                    let mut t = String::new();
                    for b in &r.budgets {
                        let leaves = if b.oldest_charge_leaves_at_ms > 0 {
                            format!(", the oldest charge leaves the window at {}", time(b.oldest_charge_leaves_at_ms))
                        } else {
                            String::new()
                        };
                        t.push_str(&format!(
                            "{} v{}{}  to {:<12} epsilon {:.3} of {:.3} spent in the last {} days{leaves}\n",
                            b.policy_id,
                            b.policy_version,
                            if b.policy_revoked { " (revoked)" } else { "" },
                            b.consumer_zone,
                            eps(b.spent_milli),
                            eps(b.budget_milli),
                            b.window_ms as f64 / 86_400_000.0,
                        ));
                    }
                    if r.budgets.is_empty() {
                        t.push_str("no privacy budget has been charged\n");
                    } else if r.truncated {
                        t.push_str(&format!("(the first {}; there are more)\n", r.budgets.len()));
                    }
                    t
                },
                || {
                    let budgets: Vec<_> = r
                        .budgets
                        .iter()
                        .map(|b| {
                            json!({"policy_id": b.policy_id, "policy_version": b.policy_version,
                                "consumer_zone": b.consumer_zone, "spent_milli": b.spent_milli,
                                "budget_milli": b.budget_milli, "window_ms": b.window_ms, "slice_ms": b.slice_ms,
                                "oldest_charge_leaves_at_ms": b.oldest_charge_leaves_at_ms,
                                "policy_revoked": b.policy_revoked})
                        })
                        .collect();
                    json!({"budgets": budgets, "truncated": r.truncated})
                },
            );
        }
        AdminCommand::Peers { refresh } => {
            let r = client.list_peers(ListPeersRequest { refresh }).await?.into_inner();
            emit(
                fmt,
                || {
                    let mut t = String::new();
                    for p in &r.peers {
                        let ok = if p.last_ok_ms > 0 {
                            format!(
                                "answered {} in {:.2} ms, registry v{}, clock offset {} ms",
                                time(p.last_ok_ms),
                                p.round_trip_us as f64 / 1000.0,
                                p.peer_registry_version,
                                p.peer_clock_offset_ms
                            )
                        } else {
                            "no answer since the node started".to_string()
                        };
                        let failed = if p.last_failure_ms > 0 {
                            format!("; last failure {}: {}", time(p.last_failure_ms), p.last_error)
                        } else {
                            String::new()
                        };
                        t.push_str(&format!(
                            "{:<12} {ok}{failed} ({} ping(s), {} failed)\n",
                            p.zone_id, p.pings, p.failures
                        ));
                    }
                    t
                },
                || {
                    let peers: Vec<_> = r
                        .peers
                        .iter()
                        .map(|p| {
                            json!({"zone_id": p.zone_id, "endpoint": p.endpoint, "last_ok_ms": p.last_ok_ms,
                                "round_trip_us": p.round_trip_us, "peer_registry_version": p.peer_registry_version,
                                "peer_node_key_id": p.peer_node_key_id, "peer_clock_offset_ms": p.peer_clock_offset_ms,
                                "last_failure_ms": p.last_failure_ms, "last_failure_reason": p.last_failure_reason,
                                "last_error": p.last_error, "pings": p.pings, "failures": p.failures})
                        })
                        .collect();
                    json!({"peers": peers, "refreshed": r.refreshed})
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
        AdminCommand::Agreement(AdminAgreementCommand::Install { file }) => {
            let env = crate::cmd::agreement::read(&file)?;
            let r = client.install_agreement(InstallAgreementRequest { agreement: Some(env) }).await?.into_inner();
            emit(
                fmt,
                || {
                    if r.already_installed {
                        format!("agreement {} v{} was already installed; nothing changed\n", r.agreement_id, r.version)
                    } else {
                        format!("installed agreement {} v{}\n", r.agreement_id, r.version)
                    }
                },
                || json!({"agreement_id": r.agreement_id, "version": r.version, "already_installed": r.already_installed}),
            );
        }
        AdminCommand::Agreement(AdminAgreementCommand::List) => {
            let list = client.list_agreements(ListAgreementsRequest {}).await?.into_inner().agreements;
            emit(
                fmt,
                || {
                    let mut t = String::new();
                    for a in &list {
                        t.push_str(&format!(
                            "{} v{}  {} -> {}  valid {} .. {}\n",
                            a.agreement_id,
                            a.version,
                            a.from_zone,
                            a.to_zone,
                            time(a.valid_from_ms),
                            time(a.valid_until_ms)
                        ));
                        for r in &a.rules {
                            t.push_str(&format!("    {r}\n"));
                        }
                    }
                    if list.is_empty() {
                        t.push_str("no agreements installed\n");
                    }
                    t
                },
                || {
                    json!(list.iter().map(|a| json!({
                    "agreement_id": a.agreement_id, "version": a.version, "from_zone": a.from_zone, "to_zone": a.to_zone,
                    "valid_from_ms": a.valid_from_ms, "valid_until_ms": a.valid_until_ms, "rules": a.rules,
                })).collect::<Vec<_>>())
                },
            );
        }
    }
    Ok(())
}

/// The status's lines about a log that refuses to grow (after a restore), if it does.
fn blocked_lines(s: &ftz_proto::NodeStatus) -> String {
    let mut out = String::new();
    if !s.audit_log_blocked.is_empty() {
        out.push_str(&format!("LOG BLOCKED {}\n", s.audit_log_blocked));
    }
    for w in &s.restore_witnesses {
        let held = if w.answered { format!("holds size {}", w.held_size) } else { "not heard yet".into() };
        let conflict = if w.conflict.is_empty() { String::new() } else { format!(": {}", w.conflict) };
        out.push_str(&format!("  witness {} {held}{conflict}\n", w.zone_id));
    }
    out
}
