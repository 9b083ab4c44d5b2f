//! `ftzctl audit`: what auditors do. `export` and the listing commands ask a node (role
//! auditor); the `verify-*` and `cross-check` commands work offline on files alone.
//!
//! Exit codes of the offline checks: 0 the check passed (prints OK), 3 it failed (prints why),
//! 1 it could not be run (a file missing or unreadable).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use ftz_audit::{
    note::Verifier,
    offline::{KeyRing, consistency_text, verify_consistency_files, verify_proof},
};
use ftz_proto::{
    CrossCheckRequest, GetCheckpointRequest, GetConsistencyProofRequest, GetEntryRequest, ListCheckpointsRequest,
    ListEntriesRequest, ListEquivocationsRequest, ListRegistryHistoryRequest, audit_client::AuditClient,
};
use ftzctl::{
    audit_dir::{self, ExportDir, checkpoint_of},
    output::{Format, emit, parse_time, time},
};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use tonic::transport::Channel;

/// Exit code when an offline check ran and failed.
pub const CHECK_FAILED: u8 = 3;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Export the node's log up to its latest checkpoint into a new directory: the cosigned
    /// checkpoint, the verifier keys, every entry and its inclusion proof (C2SP formats).
    Export {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// List entries of the node's log, filtered.
    Entries {
        /// First index to look at.
        #[arg(long, default_value_t = 0)]
        from_index: u64,
        /// At most this many entries (at most 1000).
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Entries at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<String>,
        /// Entries before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Entries involving this zone.
        #[arg(long)]
        zone: Option<String>,
        /// certification, inspection_result or industry_data.
        #[arg(long)]
        class: Option<String>,
        /// allowed, refused or unacknowledged; or a kind: transfer, refusal, config, deletion.
        #[arg(long)]
        decision: Option<String>,
    },
    /// One entry, with its inclusion proof under the latest checkpoint.
    Entry {
        index: u64,
        /// Write the entry's leaf bytes here.
        #[arg(long, value_name = "FILE")]
        out_entry: Option<PathBuf>,
        /// Write its c2sp.org/tlog-proof here.
        #[arg(long, value_name = "FILE")]
        out_proof: Option<PathBuf>,
    },
    /// The node's latest checkpoint with its cosignatures, and the keys that verify them.
    Checkpoint {
        /// Write the checkpoint note here.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Ask the node for a consistency proof between two checkpoints you hold (e.g. from two
    /// exports), and write it as a file for `verify-consistency`.
    ConsistencyProof {
        #[arg(long, value_name = "FILE")]
        old: PathBuf,
        #[arg(long, value_name = "FILE")]
        new: PathBuf,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// The node's signed checkpoints, newest first, with who cosigned each and when.
    Checkpoints {
        /// At most this many (at most 100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Only checkpoints of a size below this (the next page; 0: from the latest).
        #[arg(long, default_value_t = 0)]
        below_size: u64,
    },
    /// Upload another zone's export (a directory `export` wrote) to your node, which compares
    /// it with its own log as `cross-check` does, with the keys of the node's registry: the
    /// export's checkpoint must be signed by that zone's node key. Prints OK and exits 0 when
    /// the export verifies and every transfer between the zones is in both logs. For exports
    /// within the node's message limit (4 MiB by default); `cross-check` checks any size.
    Compare { dir: PathBuf },
    /// Evidence the node found, as a witness, of logs that signed incompatible checkpoints.
    Equivocations,
    /// Every registry version the node installed.
    RegistryHistory,
    /// Offline: is the entry included under a checkpoint signed by the log key and cosigned by
    /// a quorum of the witness keys? Prints OK and exits 0 only then.
    VerifyProof {
        /// The entry's leaf bytes (DIR/entries/<index> of an export).
        #[arg(long, value_name = "FILE")]
        entry: PathBuf,
        /// Its c2sp.org/tlog-proof (DIR/proofs/<index>.tlog-proof).
        #[arg(long, value_name = "FILE")]
        proof: PathBuf,
        /// The log's verifier key (vkey: name+hex id+base64 key), e.g. from `ftzctl keys show`.
        #[arg(long, value_name = "VKEY")]
        log_key: String,
        /// A witness's verifier key; repeat for each witness you trust.
        #[arg(long = "witness-key", value_name = "VKEY")]
        witness_keys: Vec<String>,
        /// Cosignatures required from the given witnesses (default: all of them).
        #[arg(long)]
        quorum: Option<usize>,
    },
    /// Offline: the old checkpoint's tree is a prefix of the new one's, both signed by the log.
    VerifyConsistency {
        #[arg(long, value_name = "FILE")]
        old: PathBuf,
        #[arg(long, value_name = "FILE")]
        new: PathBuf,
        /// One base64 hash per line (from `consistency-proof`).
        #[arg(long, value_name = "FILE")]
        proof: PathBuf,
        #[arg(long, value_name = "VKEY")]
        log_key: String,
    },
    /// Offline: rebuild the tree from every entry of an export and check it against the
    /// checkpoint; check every transfer's sender and receiver signatures; no duplicate transfers.
    VerifyLog {
        dir: PathBuf,
        /// Pin the log's key instead of trusting DIR/keys for it.
        #[arg(long, value_name = "VKEY")]
        log_key: Option<String>,
        /// Witness cosignatures required on the checkpoint (keys from DIR/keys, or from
        /// --registry).
        #[arg(long, default_value_t = 0)]
        quorum: usize,
        #[command(flatten)]
        trust: Trust,
    },
    /// Offline: every transfer between two zones is in both zones' logs with the same leaf;
    /// lists one-sided entries. Both exports are verified first.
    CrossCheck {
        dir_a: PathBuf,
        dir_b: PathBuf,
        #[command(flatten)]
        trust: Trust,
    },
}

/// Where the keys an export is checked with come from, said every time: with `--registry` every
/// key (the log's, the witnesses', the signers of each transfer) comes from a signed federation
/// registry the auditor supplies, anchored on an authority key it trusts; with
/// `--trust-export-keys` from the export's own DIR/keys, which the exporting node wrote (fine
/// for a zone checking its own export, worthless against a zone that lies).
#[derive(Debug, clap::Args)]
pub struct Trust {
    /// A signed federation registry file to take every verifier key from.
    #[arg(long, value_name = "FILE", requires = "anchor")]
    registry: Option<PathBuf>,
    /// An authority key id you trust; it must have signed the registry (with its quorum).
    #[arg(long, value_name = "KEY_ID")]
    anchor: Option<String>,
    /// Take the keys from the export itself (DIR/keys): only for a zone checking its own log.
    #[arg(long, conflicts_with = "registry")]
    trust_export_keys: bool,
}

impl Trust {
    /// The key ring the auditor supplies, if any.
    fn ring(&self) -> Result<Option<KeyRing>> {
        match &self.registry {
            Some(path) => Ok(Some(audit_dir::keys_from_registry(path, self.anchor.as_deref().unwrap_or_default())?)),
            None => Ok(None),
        }
    }

    fn open(&self, dir: &Path) -> Result<ExportDir> {
        if self.registry.is_none() && !self.trust_export_keys {
            bail!(
                "say where the keys come from: --registry FILE --anchor KEY_ID (an auditor: keys from the signed registry), or --trust-export-keys (a zone checking its own export: keys the exporting node wrote)"
            );
        }
        let mut export = ExportDir::open(dir)?;
        if let Some(ring) = self.ring()? {
            export.keys = ring;
        }
        Ok(export)
    }
}

fn vkey(s: &str) -> Result<Verifier> {
    Verifier::from_vkey(s.trim()).map_err(|e| anyhow!("{s:?} is not a verifier key: {e}"))
}

fn read_text(p: &Path) -> Result<String> {
    std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))
}

fn write(p: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(p, bytes).with_context(|| format!("cannot write {}", p.display()))
}

/// A bar on stderr for text output; hidden for `--json` and when not on a terminal.
fn bar(fmt: Format, len: u64, what: &str) -> ProgressBar {
    if fmt == Format::Json {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta})") {
        b.set_style(style.progress_chars("=> "));
    }
    b.set_message(what.to_string());
    b
}

/// Prints a check's outcome and gives its exit code.
fn outcome(fmt: Format, result: Result<String, String>, details: serde_json::Value) -> u8 {
    match result {
        Ok(line) => {
            emit(fmt, || format!("OK {line}\n"), || json!({"ok": true, "result": line, "details": details}));
            0
        }
        Err(why) => {
            emit(fmt, || format!("FAILED {why}\n"), || json!({"ok": false, "reason": why, "details": details}));
            CHECK_FAILED
        }
    }
}

pub async fn run(cmd: AuditCommand, channel: impl FnOnce() -> Result<Channel>, fmt: Format) -> Result<u8> {
    match cmd {
        AuditCommand::VerifyProof { entry, proof, log_key, witness_keys, quorum } => {
            let leaf = std::fs::read(&entry).with_context(|| format!("cannot read {}", entry.display()))?;
            let proof = read_text(&proof)?;
            let log = vkey(&log_key)?;
            let witnesses = witness_keys.iter().map(|k| vkey(k)).collect::<Result<Vec<_>>>()?;
            let quorum = quorum.unwrap_or(witnesses.len());
            let r = verify_proof(&leaf, &proof, &log, &witnesses, quorum);
            let details = match &r {
                Ok((cp, index, n)) => json!({"origin": cp.origin, "size": cp.size, "index": index, "cosigners": n}),
                Err(_) => json!({}),
            };
            let r = r
                .map(|(cp, index, n)| {
                    format!(
                        "entry {index} is in {} of size {}, cosigned by {n} of {} witnesses (quorum {quorum})",
                        cp.origin,
                        cp.size,
                        witnesses.len()
                    )
                })
                .map_err(|e| e.to_string());
            Ok(outcome(fmt, r, details))
        }
        AuditCommand::VerifyConsistency { old, new, proof, log_key } => {
            let r =
                verify_consistency_files(&read_text(&old)?, &read_text(&new)?, &read_text(&proof)?, &vkey(&log_key)?);
            let details = r.as_ref().map(|(a, b)| json!({"old_size": a, "new_size": b})).unwrap_or(json!({}));
            let r = r
                .map(|(a, b)| format!("the log at size {a} is a prefix of the log at size {b}"))
                .map_err(|e| e.to_string());
            Ok(outcome(fmt, r, details))
        }
        AuditCommand::VerifyLog { dir, log_key, quorum, trust } => verify_log(&trust.open(&dir)?, log_key, quorum, fmt),
        AuditCommand::CrossCheck { dir_a, dir_b, trust } => cross_check(trust.open(&dir_a)?, trust.open(&dir_b)?, fmt),
        online => run_online(online, AuditClient::new(channel()?), fmt).await,
    }
}

fn verify_log(export: &ExportDir, log_key: Option<String>, quorum: usize, fmt: Format) -> Result<u8> {
    let pinned = log_key.as_deref().map(vkey).transpose()?;
    let b = bar(fmt, export.indices.len() as u64, "verifying");
    let r = export.verify(pinned.as_ref(), quorum, |n| b.inc(n))?;
    b.finish_and_clear();
    let details = json!({
        "zone": export.zone,
        "entries": r.entries,
        "checkpoint_size": r.checkpoint_size,
        "cosigners": r.cosigners,
        "transfers": r.transfers,
        "refusals": r.refusals,
        "by_kind": r.by_kind,
        "problem_count": r.problem_count,
        "problems": r.problems,
    });
    let kinds = r.by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ");
    let result = if r.problem_count == 0 {
        Ok(format!(
            "{}'s log: {} entries ({kinds}) give the checkpoint's root at size {}, cosigned by {}; every transfer signed by both sides, none twice",
            export.zone, r.entries, r.checkpoint_size, r.cosigners
        ))
    } else {
        Err(format!(
            "{}'s log: {} problem(s):\n{}",
            export.zone,
            r.problem_count,
            r.problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
        ))
    };
    Ok(outcome(fmt, result, details))
}

fn cross_check(a: ExportDir, b: ExportDir, fmt: Format) -> Result<u8> {
    let bar = bar(fmt, (a.indices.len() + b.indices.len()) as u64, "cross-checking");
    let (ra, rb, c) = audit_dir::cross_check(&a, &b, |n| bar.inc(n))?;
    bar.finish_and_clear();
    let list = |v: &[(u64, String)]| v.iter().map(|(i, s)| json!({"index": i, "summary": s})).collect::<Vec<_>>();
    let details = json!({
        "zone_a": a.zone, "zone_b": b.zone,
        "transfers_in_both": c.in_both,
        "only_in_a": list(&c.only_a), "only_in_b": list(&c.only_b),
        "refusals_in_both": c.refusals_in_both,
        "refusals_only_in_a": list(&c.refusals_only_a), "refusals_only_in_b": list(&c.refusals_only_b),
        "problems_a": ra.problems, "problems_b": rb.problems,
    });
    let mut text = String::new();
    for (zone, r) in [(&a.zone, &ra), (&b.zone, &rb)] {
        for p in &r.problems {
            text.push_str(&format!("\n  {zone}'s log: {p}"));
        }
    }
    for (zone, other, only) in [(&a.zone, &b.zone, &c.only_a), (&b.zone, &a.zone, &c.only_b)] {
        for (i, s) in only {
            text.push_str(&format!("\n  only in {zone}'s log (entry {i}), not in {other}'s: {s}"));
        }
    }
    let mut notes = String::new();
    for (zone, only) in [(&a.zone, &c.refusals_only_a), (&b.zone, &c.refusals_only_b)] {
        for (i, s) in only {
            notes.push_str(&format!("\n  note: refusal logged by {zone} only (entry {i}): {s}"));
        }
    }
    let result = if text.is_empty() {
        Ok(format!(
            "{} and {}: {} transfer(s) between them, each in both logs with the same leaf; {} refusal(s) logged by both{notes}",
            a.zone, b.zone, c.in_both, c.refusals_in_both
        ))
    } else {
        Err(format!("{} and {}:{text}{notes}", a.zone, b.zone))
    };
    Ok(outcome(fmt, result, details))
}

/// `compare`: the node's cross-check of an uploaded export against its own log.
async fn compare(client: &mut AuditClient<Channel>, dir: &Path, fmt: Format) -> Result<u8> {
    let export = ExportDir::open(dir)?;
    let entries = export.indices.iter().map(|i| export.read_entry(*i)).collect::<Result<Vec<_>>>()?;
    let req = CrossCheckRequest { checkpoint: export.checkpoint.clone(), entries };
    let r = match client.cross_check(req).await {
        Ok(r) => r.into_inner(),
        // Refused before the method ran: larger than the node's message limit.
        Err(s)
            if ftz_client::reason_of(&s).is_none()
                && matches!(s.code(), tonic::Code::ResourceExhausted | tonic::Code::OutOfRange) =>
        {
            bail!(
                "the node did not take {}'s export ({}): it is larger than a node compares in one call; check it offline with `ftzctl audit cross-check`",
                export.zone,
                s.message()
            )
        }
        Err(s) => return Err(s.into()),
    };
    let list = |v: &[ftz_proto::CrossCheckItem]| {
        v.iter().map(|i| json!({"index": i.index, "summary": i.summary})).collect::<Vec<_>>()
    };
    let details = json!({
        "zone": r.zone, "other_zone": r.other_zone, "verified": r.verified,
        "problems": r.problems, "problem_count": r.problem_count,
        "there_size": r.there_size, "there_cosigners": r.there_cosigners,
        "here_size": r.here_size, "here_compared": r.here_compared, "here_complete": r.here_complete,
        "transfers_in_both": r.in_both, "refusals_in_both": r.refusals_in_both,
        "only_here": list(&r.only_here), "only_there": list(&r.only_there),
        "refusals_only_here": list(&r.refusals_only_here), "refusals_only_there": list(&r.refusals_only_there),
        "only_here_count": r.only_here_count, "only_there_count": r.only_there_count,
        "refusals_only_here_count": r.refusals_only_here_count,
        "refusals_only_there_count": r.refusals_only_there_count,
    });
    let (here, there) = (&r.zone, &r.other_zone);
    let mut text = String::new();
    for p in &r.problems {
        text.push_str(&format!("\n  {there}'s log: {p}"));
    }
    for (zone, other, only, n) in
        [(here, there, &r.only_here, r.only_here_count), (there, here, &r.only_there, r.only_there_count)]
    {
        for i in only {
            text.push_str(&format!("\n  only in {zone}'s log (entry {}), not in {other}'s: {}", i.index, i.summary));
        }
        if n > only.len() as u64 {
            text.push_str(&format!("\n  ... {} more only in {zone}'s log", n - only.len() as u64));
        }
    }
    let mut notes = String::new();
    for (zone, only) in [(here, &r.refusals_only_here), (there, &r.refusals_only_there)] {
        for i in only {
            notes.push_str(&format!("\n  note: refusal logged by {zone} only (entry {}): {}", i.index, i.summary));
        }
    }
    if !r.here_complete {
        notes.push_str(&format!(
            "\n  note: the node compared the first {} of its {} entries; check the rest offline",
            r.here_compared, r.here_size
        ));
    }
    let result = if text.is_empty() && r.verified {
        Ok(format!(
            "{here} and {there}: {} transfer(s) between them, each in both logs with the same leaf; {} refusal(s) logged by both; {there}'s export verified against its checkpoint (size {}, {} cosignature(s)){notes}",
            r.in_both, r.refusals_in_both, r.there_size, r.there_cosigners
        ))
    } else {
        Err(format!("{here} and {there}:{text}{notes}"))
    };
    Ok(outcome(fmt, result, details))
}

async fn run_online(cmd: AuditCommand, mut client: AuditClient<Channel>, fmt: Format) -> Result<u8> {
    match cmd {
        AuditCommand::Export { out } => {
            let b = bar(fmt, 0, "exporting");
            let s = audit_dir::export(&mut client, &out, |done, total| {
                b.set_length(total);
                b.set_position(done);
            })
            .await?;
            b.finish_and_clear();
            emit(
                fmt,
                || {
                    format!(
                        "exported {}'s log: {} entries with proofs under a checkpoint cosigned by {} witness(es), {} keys, into {}\n",
                        s.zone,
                        s.size,
                        s.cosigners,
                        s.keys,
                        out.display()
                    )
                },
                || json!({"zone": s.zone, "size": s.size, "cosigners": s.cosigners, "keys": s.keys, "dir": out}),
            );
        }
        AuditCommand::Entries { from_index, limit, since, until, zone, class, decision } => {
            let req = ListEntriesRequest {
                from_index,
                limit,
                from_ms: since.as_deref().map(parse_time).transpose()?.unwrap_or(0),
                until_ms: until.as_deref().map(parse_time).transpose()?.unwrap_or(0),
                zone: zone.unwrap_or_default(),
                data_class: class.unwrap_or_default(),
                decision: decision.unwrap_or_default(),
            };
            let r = client.list_entries(req).await?.into_inner();
            emit(
                fmt,
                || {
                    let mut t = String::new();
                    for e in &r.entries {
                        t.push_str(&format!("{:>6}  {}  {:<14} {}\n", e.index, time(e.at_ms), e.kind, e.summary));
                    }
                    t.push_str(&format!(
                        "{} entries shown; the log has {}; next page from {}\n",
                        r.entries.len(),
                        r.log_size,
                        r.next_index
                    ));
                    t
                },
                || {
                    let entries: Vec<_> = r
                        .entries
                        .iter()
                        .map(|e| {
                            json!({"index": e.index, "kind": e.kind, "at_ms": e.at_ms, "zones": e.zones,
                                "data_class": e.data_class, "decision": e.decision, "summary": e.summary,
                                "leaf_hex": hex::encode(&e.leaf)})
                        })
                        .collect();
                    json!({"entries": entries, "next_index": r.next_index, "log_size": r.log_size})
                },
            );
        }
        AuditCommand::Entry { index, out_entry, out_proof } => {
            let r = client.get_entry(GetEntryRequest { index }).await?.into_inner();
            let e = r.entry.ok_or_else(|| anyhow!("the node answered without the entry"))?;
            if let Some(p) = &out_entry {
                write(p, &e.leaf)?;
            }
            if let Some(p) = &out_proof {
                if r.proof.is_empty() {
                    return Err(anyhow!("no checkpoint covers entry {index} yet; try again in a second"));
                }
                write(p, &r.proof)?;
            }
            emit(
                fmt,
                || format!("{:>6}  {}  {:<14} {}\n\n{}", e.index, time(e.at_ms), e.kind, e.summary, r.proof),
                || json!({"index": e.index, "kind": e.kind, "summary": e.summary, "leaf_hex": hex::encode(&e.leaf), "proof": r.proof}),
            );
        }
        AuditCommand::Checkpoint { out } => {
            let r = client.get_checkpoint(GetCheckpointRequest {}).await?.into_inner();
            if let Some(p) = &out {
                write(p, &r.checkpoint)?;
            }
            let n = audit_dir::cosigners(&r)?;
            emit(
                fmt,
                || format!("{}\ncosigned by {n} witness(es); keys:\n{}\n", r.checkpoint, r.keys.join("\n")),
                || json!({"checkpoint": r.checkpoint, "size": r.size, "cosigners": n, "keys": r.keys}),
            );
        }
        AuditCommand::ConsistencyProof { old, new, out } => {
            let (a, b) = (checkpoint_of(&read_text(&old)?)?, checkpoint_of(&read_text(&new)?)?);
            let r = client
                .get_consistency_proof(GetConsistencyProofRequest { size1: a.size, size2: b.size })
                .await?
                .into_inner();
            let hashes = r
                .proof
                .iter()
                .map(|h| h.as_slice().try_into().map_err(|_| anyhow!("the node sent a hash that is not 32 bytes")))
                .collect::<Result<Vec<[u8; 32]>>>()?;
            write(&out, consistency_text(&hashes))?;
            emit(
                fmt,
                || {
                    format!(
                        "consistency proof from size {} to {}: {} hashes, in {}\n",
                        a.size,
                        b.size,
                        hashes.len(),
                        out.display()
                    )
                },
                || json!({"old_size": a.size, "new_size": b.size, "hashes": hashes.len(), "file": out}),
            );
        }
        AuditCommand::Checkpoints { limit, below_size } => {
            let r = client.list_checkpoints(ListCheckpointsRequest { limit, below_size }).await?.into_inner();
            emit(
                fmt,
                || {
                    let mut t = String::new();
                    for cp in &r.checkpoints {
                        let cosigned: Vec<String> = cp
                            .cosignatures
                            .iter()
                            .map(|c| {
                                format!(
                                    "{} at {}{}",
                                    c.zone,
                                    time(c.cosigned_at_ms),
                                    if c.verified { "" } else { " (does not verify)" }
                                )
                            })
                            .collect();
                        let by = if cosigned.is_empty() { "no cosignature".to_string() } else { cosigned.join(", ") };
                        t.push_str(&format!("size {:>8}  cosigned by {by}\n", cp.size));
                    }
                    if r.checkpoints.is_empty() {
                        t.push_str("no checkpoint\n");
                    }
                    if r.next_below_size > 0 {
                        t.push_str(&format!("older ones: --below-size {}\n", r.next_below_size));
                    }
                    t
                },
                || {
                    let list: Vec<_> = r
                        .checkpoints
                        .iter()
                        .map(|cp| {
                            let cosignatures: Vec<_> = cp
                                .cosignatures
                                .iter()
                                .map(|c| {
                                    json!({"name": c.name, "zone": c.zone, "key_id": c.key_id, "timestamp": c.timestamp,
                                        "cosigned_at_ms": c.cosigned_at_ms, "verified": c.verified})
                                })
                                .collect();
                            json!({"size": cp.size, "note": cp.note, "cosignatures": cosignatures})
                        })
                        .collect();
                    json!({"checkpoints": list, "next_below_size": r.next_below_size})
                },
            );
        }
        AuditCommand::Compare { dir } => return compare(&mut client, &dir, fmt).await,
        AuditCommand::Equivocations => {
            let r = client.list_equivocations(ListEquivocationsRequest {}).await?.into_inner();
            emit(
                fmt,
                || {
                    if r.evidence.is_empty() {
                        "no equivocation found\n".to_string()
                    } else {
                        r.evidence.iter().map(|e| format!("{e}\n---\n")).collect()
                    }
                },
                || json!({"evidence": r.evidence}),
            );
        }
        AuditCommand::RegistryHistory => {
            let r = client.list_registry_history(ListRegistryHistoryRequest {}).await?.into_inner();
            emit(
                fmt,
                || {
                    r.installs
                        .iter()
                        .map(|i| {
                            format!(
                                "v{:<4} installed {}  digest {}  signed by {}\n",
                                i.version,
                                time(i.installed_at_ms),
                                hex::encode(&i.envelope_digest),
                                i.counted_signers.join(", ")
                            )
                        })
                        .collect()
                },
                || {
                    let v: Vec<_> = r.installs.iter().map(|i| json!({"version": i.version, "installed_at_ms": i.installed_at_ms, "envelope_digest": hex::encode(&i.envelope_digest), "counted_signers": i.counted_signers})).collect();
                    json!({"installs": v})
                },
            );
        }
        _ => return Err(anyhow!("this command works offline")),
    }
    Ok(0)
}
