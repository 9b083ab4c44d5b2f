//! `ftzctl agreement`: mutual-recognition agreement files, offline (zone authorities).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use ftz_core::{
    Clock, SystemClock,
    envelope::{self, PayloadType},
};
use ftz_policy::Agreement;
use ftz_proto::{RecognitionAgreement, RecognitionRule, RecordKind};
use ftzctl::output::{Format, emit, time};
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum AgreementCommand {
    /// Write a new, unsigned agreement: records of --from recognised in --to. Both authorities
    /// then sign it, and both zones' admins install it.
    New(NewAgreement),
    /// Add (or replace) your authority's signature.
    Sign {
        file: PathBuf,
        /// The authority's Ed25519 key (PEM PKCS#8).
        #[arg(long)]
        key: PathBuf,
    },
    /// Describe an agreement file.
    Show { file: PathBuf },
}

#[derive(Debug, Args)]
pub struct NewAgreement {
    #[arg(long)]
    id: String,
    /// The zone whose records are recognised.
    #[arg(long)]
    from: String,
    /// The zone that recognises them.
    #[arg(long)]
    to: String,
    /// Certification types recognised (one rule), comma-separated, e.g. AEO_ADVANCED,CCC.
    #[arg(long, value_delimiter = ',')]
    certifications: Vec<String>,
    /// Also recognise inspection results (one rule), narrowed by the lists below.
    #[arg(long)]
    inspections: bool,
    /// Scope prefixes (certification scope, or the inspected goods' HS code); empty: any.
    #[arg(long, value_delimiter = ',')]
    scopes: Vec<String>,
    /// Issuing bodies or laboratories; empty: any.
    #[arg(long, value_delimiter = ',')]
    bodies: Vec<String>,
    /// Accreditation schemes, e.g. CNAS; empty: any.
    #[arg(long, value_delimiter = ',')]
    schemes: Vec<String>,
    #[arg(long, default_value_t = 1)]
    version: u64,
    /// Valid from now for this many days.
    #[arg(long, default_value_t = 365)]
    valid_days: i64,
    #[arg(long)]
    out: PathBuf,
}

pub use ftzctl::signed_file::{read, write};

fn describe(a: &Agreement) -> (String, serde_json::Value) {
    let signers: Vec<String> = a.envelope.signatures.iter().map(|s| hex::encode(&s.key_id)).collect();
    let mut t = format!(
        "agreement {} v{}: records of {} recognised in {}\nvalid {} .. {}\n",
        a.id(),
        a.version(),
        a.from,
        a.to,
        time(a.doc.valid_from_ms),
        time(a.doc.valid_until_ms)
    );
    for r in a.describe_rules() {
        t.push_str(&format!("  rule: {r}\n"));
    }
    t.push_str(&format!("signatures: {} ({})\n", signers.len(), signers.join(", ")));
    let v = json!({
        "agreement_id": a.id(), "version": a.version(), "from_zone": a.from.as_str(), "to_zone": a.to.as_str(),
        "valid_from_ms": a.doc.valid_from_ms, "valid_until_ms": a.doc.valid_until_ms,
        "rules": a.describe_rules(), "signatures": signers,
    });
    (t, v)
}

pub fn run(cmd: AgreementCommand, fmt: Format) -> Result<()> {
    match cmd {
        AgreementCommand::New(n) => {
            if n.out.exists() {
                bail!("{} exists; choose a new file", n.out.display());
            }
            let mut rules = Vec::new();
            let narrow = |kind: RecordKind, types: Vec<String>| RecognitionRule {
                kind: kind as i32,
                record_types: types,
                scope_prefixes: n.scopes.clone(),
                issuing_bodies: n.bodies.clone(),
                accreditation_schemes: n.schemes.clone(),
            };
            if !n.certifications.is_empty() {
                rules.push(narrow(RecordKind::Certification, n.certifications.clone()));
            }
            if n.inspections {
                rules.push(narrow(RecordKind::Inspection, Vec::new()));
            }
            if rules.is_empty() {
                bail!("name what is recognised: --certifications TYPES and/or --inspections");
            }
            let now = SystemClock.now_ms();
            let doc = RecognitionAgreement {
                agreement_id: n.id.clone(),
                version: n.version,
                from_zone: n.from.clone(),
                to_zone: n.to.clone(),
                rules,
                valid_from_ms: now,
                valid_until_ms: now + n.valid_days * 86_400_000,
            };
            let env = envelope::seal(PayloadType::RECOGNITION_AGREEMENT, &doc, &[]);
            let a = Agreement::parse(env.clone())?;
            write(&n.out, &env)?;
            let (text, value) = describe(&a);
            emit(fmt, || format!("wrote unsigned {}\n{text}", n.out.display()), || value);
        }
        AgreementCommand::Sign { file, key } => {
            ftzctl::signed_file::sign(&file, &key, None, |env| Ok(Agreement::parse(env.clone()).map(|_| ())?), fmt)?;
        }
        AgreementCommand::Show { file } => {
            let a = Agreement::parse(read(&file)?)?;
            let (text, value) = describe(&a);
            emit(fmt, || text, || value);
        }
    }
    Ok(())
}
