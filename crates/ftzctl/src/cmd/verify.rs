//! `ftzctl verify` and `ftzctl zones`: what enterprises ask (role enterprise), and offline checks.
//!
//! Exit codes of the verify commands: 0 the record is valid, 3 it is not (the answer says why),
//! 1 the question could not be answered.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use clap::{Args, Subcommand};
use ftz_client::reason_of;
use ftz_core::{Clock, KeyId, Reason, SystemClock, ZoneId};
use ftz_policy::bundle::{OfflineInputs, verify_bundle};
use ftz_proto::{
    Envelope, ExportBundleRequest, FindInspectionsRequest, ListZonesRequest, RecordRef, VerifyBundleRequest,
    VerifyRecordRequest, verify_client::VerifyClient, verify_record_request::Subject,
};
use ftzctl::output::{Format, emit, parse_time, time, verification_json, verification_text};
use prost::Message;
use serde_json::json;
use tonic::transport::Channel;

/// Exit code when the record was judged and is not valid.
pub const NOT_VALID: u8 = 3;

#[derive(Debug, Subcommand)]
pub enum VerifyCommand {
    /// Is a record authentic, current and recognised? Named by issuing zone and id; a foreign
    /// record is fetched by your node from its issuing zone.
    Record {
        /// The issuing zone.
        #[arg(long)]
        zone: String,
        #[arg(long)]
        id: String,
        #[command(flatten)]
        ask: Ask,
    },
    /// The same for a signed record file you hold.
    File {
        file: PathBuf,
        #[command(flatten)]
        ask: Ask,
    },
    /// Inspection results your zone holds for a lot, with verdicts.
    Lot {
        lot: String,
        #[command(flatten)]
        ask: Ask,
    },
    /// Write one signed file with the record, its status statement, the registry and the
    /// agreements that apply, for checking offline.
    Export {
        #[arg(long)]
        zone: String,
        #[arg(long)]
        id: String,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        ask: Ask,
    },
    /// Ask your node to check an exported file as `offline` does, with the node's trust: the
    /// file's registry must be signed by your zone's authority and be no older than the node's;
    /// the record is judged now, for your zone. Nothing is stored.
    Bundle { file: PathBuf },
    /// Check an exported file with no network: prints the verdict and why.
    Offline {
        file: PathBuf,
        /// The zone in which the record must be recognised.
        #[arg(long)]
        zone: String,
        /// An authority key id you trust (e.g. your zone authority's); it must have signed the
        /// registry in the file.
        #[arg(long)]
        anchor: String,
        /// Judge as of this time, RFC 3339 (default: now).
        #[arg(long)]
        at: Option<String>,
        /// Accept status statements up to this age, in seconds (default 600, as strict as a
        /// node; a smaller bound in the bundle wins, a larger one does not).
        #[arg(long)]
        max_status_age: Option<i64>,
        /// Refuse a bundle whose registry is older than this version (one you know of may have
        /// retired a key or a zone).
        #[arg(long)]
        min_registry_version: Option<u64>,
    },
}

#[derive(Debug, Args)]
pub struct Ask {
    /// The zone in which it must be recognised (default: your node's zone).
    #[arg(long = "in", default_value = "")]
    recognising_zone: String,
    /// Why you ask, [a-z0-9_.-]{1,64}.
    #[arg(long, default_value = "verification")]
    purpose: String,
}

fn verdict_exit(valid: bool) -> u8 {
    if valid { 0 } else { NOT_VALID }
}

pub async fn run(cmd: VerifyCommand, channel: impl FnOnce() -> Result<Channel>, fmt: Format) -> Result<u8> {
    if let VerifyCommand::Offline { file, zone, anchor, at, max_status_age, min_registry_version } = cmd {
        let limits = OfflineLimits { max_age: max_status_age, min_registry_version };
        return offline(file, zone, anchor, at, limits, fmt);
    }
    let mut client = VerifyClient::new(channel()?);
    match cmd {
        VerifyCommand::Record { zone, id, ask } => {
            let subject = Subject::Ref(RecordRef { issuing_zone: zone, record_id: id });
            one(&mut client, subject, ask, fmt).await
        }
        VerifyCommand::File { file, ask } => {
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let env = Envelope::decode(bytes.as_slice())
                .with_context(|| format!("{} is not a signed record", file.display()))?;
            one(&mut client, Subject::Record(env), ask, fmt).await
        }
        VerifyCommand::Lot { lot, ask } => {
            let r = client
                .find_inspections(FindInspectionsRequest {
                    lot_id: lot.clone(),
                    recognising_zone: ask.recognising_zone,
                    purpose: ask.purpose,
                })
                .await?
                .into_inner();
            let all_valid = !r.results.is_empty() && r.results.iter().all(|v| v.valid);
            emit(
                fmt,
                || {
                    let mut t = format!("lot {lot}: {} inspection result(s)\n", r.results.len());
                    for v in &r.results {
                        t.push_str(&verification_text(v));
                    }
                    t
                },
                || json!({"lot_id": lot, "results": r.results.iter().map(verification_json).collect::<Vec<_>>()}),
            );
            Ok(verdict_exit(all_valid))
        }
        VerifyCommand::Export { zone, id, out, ask } => {
            let r = client
                .export_bundle(ExportBundleRequest {
                    r#ref: Some(RecordRef { issuing_zone: zone, record_id: id.clone() }),
                    recognising_zone: ask.recognising_zone,
                    purpose: ask.purpose,
                })
                .await?
                .into_inner();
            let bundle = r.bundle.ok_or_else(|| anyhow!("the node returned no bundle"))?;
            let bytes = bundle.encode_to_vec();
            std::fs::write(&out, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
            emit(
                fmt,
                || {
                    format!(
                        "wrote {} ({} bytes): record {id} with its status, registry and agreements, signed by your node\n",
                        out.display(),
                        bytes.len()
                    )
                },
                || json!({"file": out, "bytes": bytes.len(), "record_id": id}),
            );
            Ok(0)
        }
        VerifyCommand::Bundle { file } => {
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            bundle(&mut client, bytes, fmt).await
        }
        VerifyCommand::Offline { .. } => Ok(1),
    }
}

/// `verify bundle`: the node's verdict on a bundle file. A bundle the node refuses as such (a
/// changed byte, a registry not anchored in your zone or out of force) is not valid, as offline.
async fn bundle(client: &mut VerifyClient<Channel>, bundle: Vec<u8>, fmt: Format) -> Result<u8> {
    let r = match client.verify_bundle(VerifyBundleRequest { bundle }).await {
        Ok(r) => r.into_inner(),
        Err(s)
            if matches!(
                reason_of(&s),
                Some(Reason::BundleInvalid | Reason::RegistryNotAnchored | Reason::RegistryExpired)
            ) =>
        {
            let reason = reason_of(&s).map(Reason::as_str).unwrap_or_default();
            emit(
                fmt,
                || format!("NOT VALID: {reason}: {}\n", s.message()),
                || json!({"valid": false, "reason": reason, "message": s.message()}),
            );
            return Ok(NOT_VALID);
        }
        Err(s) => return Err(s.into()),
    };
    let v = r.result.clone().ok_or_else(|| anyhow!("the node answered without a verdict"))?;
    emit(
        fmt,
        || {
            format!(
                "{}  checked by your node as of {}; bundle exported by {} at {} for {}; registry v{} (anchored by your zone's authority {}); {} agreement(s); maximum status age {}\n",
                verification_text(&v),
                time(v.checked_at_ms),
                r.exporting_zone,
                time(r.exported_at_ms),
                r.bundle_recognising_zone,
                r.registry_version,
                r.anchor_key_id,
                r.agreements,
                ftz_policy::exchange::duration_words(r.max_status_age_ms)
            )
        },
        || {
            let mut j = verification_json(&v);
            j["exporting_zone"] = json!(r.exporting_zone);
            j["exported_at_ms"] = json!(r.exported_at_ms);
            j["bundle_recognising_zone"] = json!(r.bundle_recognising_zone);
            j["registry_version"] = json!(r.registry_version);
            j["anchor_key_id"] = json!(r.anchor_key_id);
            j["agreements"] = json!(r.agreements);
            j["max_status_age_ms"] = json!(r.max_status_age_ms);
            j
        },
    );
    Ok(verdict_exit(v.valid))
}

async fn one(client: &mut VerifyClient<Channel>, subject: Subject, ask: Ask, fmt: Format) -> Result<u8> {
    let v = client
        .verify_record(VerifyRecordRequest {
            subject: Some(subject),
            recognising_zone: ask.recognising_zone,
            purpose: ask.purpose,
        })
        .await?
        .into_inner();
    emit(fmt, || verification_text(&v), || verification_json(&v));
    Ok(verdict_exit(v.valid))
}

/// What the verifier requires of a bundle beyond its signatures.
struct OfflineLimits {
    max_age: Option<i64>,
    min_registry_version: Option<u64>,
}

fn offline(
    file: PathBuf,
    zone: String,
    anchor: String,
    at: Option<String>,
    limits: OfflineLimits,
    fmt: Format,
) -> Result<u8> {
    let bytes = std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let zone = ZoneId::new(zone)?;
    let anchor: KeyId = anchor.parse().map_err(|_| anyhow!("--anchor must be a 32-digit hex key id"))?;
    let at = match at {
        Some(s) => parse_time(&s)?,
        None => SystemClock.now_ms(),
    };
    let inputs = OfflineInputs {
        anchor: &anchor,
        recognising_zone: &zone,
        at,
        max_status_age_ms: limits.max_age.map(|s| s.saturating_mul(1000)),
        min_registry_version: limits.min_registry_version,
    };
    match verify_bundle(&bytes, inputs) {
        Ok(check) => {
            let v = &check.verdict;
            emit(
                fmt,
                || {
                    format!(
                        "{}\n  checked offline as of {}; bundle exported by {} at {}; registry v{}; {} agreement(s); maximum status age {}\n",
                        v.explanation(),
                        time(at),
                        check.exporting_zone,
                        time(check.exported_at_ms),
                        check.registry_version,
                        check.agreements,
                        ftz_policy::exchange::duration_words(check.max_status_age_ms)
                    )
                },
                || {
                    json!({
                        "valid": v.valid(),
                        "explanation": v.explanation(),
                        "record_id": v.record_id,
                        "issuing_zone": v.issuing_zone,
                        "authenticity_reason": v.authentic.as_ref().err().map(ToString::to_string),
                        "status": v.status.as_str_name(),
                        "status_reason": v.status_reason.map(|r| r.to_string()),
                        "recognition_reason": v.recognition.as_ref().err().map(ToString::to_string),
                        "checked_at_ms": at,
                        "exporting_zone": check.exporting_zone,
                        "exported_at_ms": check.exported_at_ms,
                        "registry_version": check.registry_version,
                    })
                },
            );
            Ok(verdict_exit(v.valid()))
        }
        Err(e) => {
            emit(
                fmt,
                || format!("NOT VALID: {}: {e}\n", e.reason()),
                || json!({"valid": false, "reason": e.reason().as_str(), "message": e.to_string()}),
            );
            Ok(NOT_VALID)
        }
    }
}

pub async fn zones(channel: Channel, fmt: Format) -> Result<()> {
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
