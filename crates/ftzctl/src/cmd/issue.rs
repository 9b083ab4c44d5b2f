//! `ftzctl issue`: certifications, inspection results, revocations, pushes (role issuer).

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use ftz_core::{Clock, SystemClock};
use ftz_proto::{
    Certification, InspectionResult, IssueCertificationRequest, IssueResponse, PushInspectionRequest,
    RecordInspectionRequest, RevokeRequest, TestItem, Verdict, issuer_client::IssuerClient,
};
use ftzctl::output::{Format, emit, parse_time};
use prost::Message;
use serde_json::json;
use tonic::transport::Channel;

#[derive(Debug, Subcommand)]
pub enum IssueCommand {
    /// Issue a certification signed with your zone's issuing key. Issuing the same id with the
    /// same content again is harmless; with other content it is refused.
    Certification(NewCertification),
    /// Record an inspection result (test report) for a lot of goods.
    Inspection(NewInspection),
    /// Revoke a record your zone issued; every zone holding it is told.
    Revoke {
        #[arg(long)]
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Send an inspection result to the zone its lot moves to, under an exchange policy that
    /// allows it. Safe to repeat.
    Push {
        #[arg(long)]
        id: String,
        #[arg(long)]
        to: String,
        #[arg(long, default_value = "import-clearance")]
        purpose: String,
    },
}

#[derive(Debug, Args)]
pub struct NewCertification {
    #[arg(long)]
    id: String,
    /// E.g. AEO_ADVANCED, HIGH_TECH_ENTERPRISE, CCC, ISO_9001, PROFESSIONAL_TITLE.
    #[arg(long = "type")]
    cert_type: String,
    /// The holder's unified social credit code.
    #[arg(long)]
    holder: String,
    #[arg(long)]
    holder_name: String,
    #[arg(long)]
    scope: String,
    /// The issuing body, e.g. "Shanghai Customs".
    #[arg(long)]
    body: String,
    #[arg(long, default_value = "")]
    scheme: String,
    /// Issue time, RFC 3339 (default: now).
    #[arg(long)]
    issued: Option<String>,
    /// Expiry, RFC 3339 (default: --valid-days after issue).
    #[arg(long)]
    expires: Option<String>,
    #[arg(long, default_value_t = 365)]
    valid_days: i64,
    /// Also write the signed record to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct NewInspection {
    /// The report id.
    #[arg(long)]
    id: String,
    #[arg(long)]
    lot: String,
    #[arg(long)]
    hs_code: String,
    /// A test item, NAME:VALUE:UNIT:LIMIT:PASS|FAIL (repeat for each; UNIT and LIMIT may be empty).
    #[arg(long = "item", required = true)]
    items: Vec<String>,
    #[arg(long)]
    lab: String,
    /// The laboratory's accreditation number, e.g. "CNAS L1234".
    #[arg(long)]
    accreditation: String,
    #[arg(long, default_value = "CNAS")]
    scheme: String,
    /// The holder's unified social credit code.
    #[arg(long)]
    holder: String,
    /// Test time, RFC 3339 (default: now).
    #[arg(long)]
    tested: Option<String>,
    #[arg(long)]
    expires: Option<String>,
    #[arg(long)]
    out: Option<PathBuf>,
}

fn parse_item(s: &str) -> Result<TestItem> {
    let parts: Vec<&str> = s.split(':').collect();
    let [name, value, unit, limit, verdict] = parts.as_slice() else {
        bail!("item {s:?} is not NAME:VALUE:UNIT:LIMIT:PASS|FAIL");
    };
    let verdict = match verdict.to_ascii_uppercase().as_str() {
        "PASS" => Verdict::Pass,
        "FAIL" => Verdict::Fail,
        other => bail!("item {s:?}: verdict {other:?} is not PASS or FAIL"),
    };
    Ok(TestItem {
        name: name.to_string(),
        value: value.to_string(),
        unit: unit.to_string(),
        limit: limit.to_string(),
        verdict: verdict as i32,
    })
}

fn time_or(v: &Option<String>, default: i64) -> Result<i64> {
    match v {
        Some(s) => parse_time(s),
        None => Ok(default),
    }
}

fn show_issued(r: IssueResponse, out: Option<PathBuf>, fmt: Format) -> Result<()> {
    let env = r.record.ok_or_else(|| anyhow!("the node returned no record"))?;
    if let Some(path) = &out {
        std::fs::write(path, env.encode_to_vec()).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let key = env.signatures.first().map(|s| hex::encode(&s.key_id)).unwrap_or_default();
    emit(
        fmt,
        || {
            format!(
                "{} {}: {} (signed by issuing key {key}, digest {}){}\n",
                env.payload_type,
                if r.already_issued { "already issued" } else { "issued" },
                if r.already_issued { "nothing changed" } else { "stored" },
                hex::encode(&r.record_digest),
                out.as_ref().map(|p| format!("; written to {}", p.display())).unwrap_or_default()
            )
        },
        || json!({"payload_type": env.payload_type, "already_issued": r.already_issued, "record_digest": hex::encode(&r.record_digest), "signing_key_id": key}),
    );
    Ok(())
}

pub async fn run(cmd: IssueCommand, channel: Channel, fmt: Format) -> Result<()> {
    let mut client = IssuerClient::new(channel);
    let now = SystemClock.now_ms();
    match cmd {
        IssueCommand::Certification(c) => {
            let issued = time_or(&c.issued, now)?;
            let expires = time_or(&c.expires, issued + c.valid_days * 86_400_000)?;
            let cert = Certification {
                record_id: c.id,
                issuing_zone: String::new(),
                cert_type: c.cert_type,
                holder_uscc: c.holder,
                holder_name: c.holder_name,
                scope: c.scope,
                issuing_body: c.body,
                accreditation_scheme: c.scheme,
                issued_at_ms: issued,
                expires_at_ms: expires,
            };
            let r =
                client.issue_certification(IssueCertificationRequest { certification: Some(cert) }).await?.into_inner();
            show_issued(r, c.out, fmt)?;
        }
        IssueCommand::Inspection(i) => {
            let items = i.items.iter().map(|s| parse_item(s)).collect::<Result<Vec<_>>>()?;
            let overall =
                if items.iter().all(|it| it.verdict == Verdict::Pass as i32) { Verdict::Pass } else { Verdict::Fail };
            let result = InspectionResult {
                record_id: i.id,
                issuing_zone: String::new(),
                lot_id: i.lot,
                hs_code: i.hs_code,
                items,
                overall: overall as i32,
                laboratory: i.lab,
                accreditation_number: i.accreditation,
                accreditation_scheme: i.scheme,
                tested_at_ms: time_or(&i.tested, now)?,
                expires_at_ms: time_or(&i.expires, 0)?,
                holder_uscc: i.holder,
            };
            let r = client.record_inspection(RecordInspectionRequest { result: Some(result) }).await?.into_inner();
            show_issued(r, i.out, fmt)?;
        }
        IssueCommand::Revoke { id, reason } => {
            let r = client.revoke(RevokeRequest { record_id: id.clone(), reason }).await?.into_inner();
            emit(
                fmt,
                || {
                    if r.already_revoked {
                        format!("{id} was already revoked; nothing changed\n")
                    } else {
                        format!(
                            "{id} revoked; told: {}; still to tell (retried, and their cached status expires on its own): {}\n",
                            list(&r.notified_zones),
                            list(&r.pending_zones)
                        )
                    }
                },
                || json!({"record_id": id, "already_revoked": r.already_revoked, "notified_zones": r.notified_zones, "pending_zones": r.pending_zones}),
            );
        }
        IssueCommand::Push { id, to, purpose } => {
            let r = client
                .push_inspection(PushInspectionRequest { record_id: id.clone(), to_zone: to, purpose })
                .await?
                .into_inner();
            emit(
                fmt,
                || {
                    if r.queued {
                        format!(
                            "{id}: {} cannot be reached now; the delivery waits in the outbox and is retried until it arrives (ftzctl admin outbox)\n",
                            r.to_zone
                        )
                    } else if r.already_delivered {
                        format!("{id}: {} already held it; nothing changed\n", r.to_zone)
                    } else {
                        format!("{id}: delivered to {}\n", r.to_zone)
                    }
                },
                || json!({"record_id": id, "to_zone": r.to_zone, "already_delivered": r.already_delivered, "queued": r.queued}),
            );
        }
    }
    Ok(())
}

fn list(v: &[String]) -> String {
    if v.is_empty() { "none".into() } else { v.join(", ") }
}
