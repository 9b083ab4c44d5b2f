//! `ftzctl ca`: certificates signed by a zone CA, offline on the machine that holds the CA's
//! key: a new TLS certificate for the zone's node before the old one expires, and users'
//! certificates. The shapes are the ones the nodes require (docs/architecture.md, "Identities"),
//! so nobody has to get X.509 extensions right by hand.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use ftz_core::{Clock, Identity, Role, SystemClock, ZoneId};
use ftz_pki::{
    files,
    issue::{Issued, Validity, ZoneCa},
};
use ftzctl::output::{Format, emit, time};
use serde_json::json;

/// Certificates start this long before now, for clocks a little behind.
const BACKDATE_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// A new TLS certificate and key for your zone's node: identity ftz://<zone>/node, usable
    /// as TLS server and client, the hosts as DNS or IP names. Point the node's `[tls]` files
    /// at them and restart it (docs/operations.md, "Rotate keys and certificates").
    IssueNode {
        #[command(flatten)]
        ca: CaFiles,
        /// A DNS name or IP address the node is reached at (repeat for several).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        #[command(flatten)]
        out: OutFiles,
    },
    /// A certificate and key for one of your zone's users: identity ftz://<zone>/<role>/<name>,
    /// TLS client only. Give it to the user with a profile; withdraw a leaked one with
    /// `ftzctl user-revocations`.
    IssueUser {
        #[command(flatten)]
        ca: CaFiles,
        /// admin, issuer, enterprise or auditor.
        #[arg(long)]
        role: Role,
        /// The user's name (letters, digits, `-`, `_`, `.`).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        out: OutFiles,
    },
}

#[derive(Debug, Args)]
pub struct CaFiles {
    /// Your zone's id.
    #[arg(long)]
    zone: String,
    /// The zone CA's certificate (PEM), as the registry lists it.
    #[arg(long, value_name = "FILE")]
    ca_cert: PathBuf,
    /// The zone CA's private key (PEM PKCS#8; mode 0600).
    #[arg(long, value_name = "FILE")]
    ca_key: PathBuf,
    /// Validity from now, in days (at most until the CA itself expires).
    #[arg(long, default_value_t = 90)]
    days: i64,
}

#[derive(Debug, Args)]
pub struct OutFiles {
    /// Where to write the certificate (a new file: never overwritten).
    #[arg(long, value_name = "FILE")]
    out_cert: PathBuf,
    /// Where to write its private key (a new file, mode 0600).
    #[arg(long, value_name = "FILE")]
    out_key: PathBuf,
}

pub fn run(cmd: CaCommand, fmt: Format) -> Result<()> {
    let (ca, identity, hosts, out) = match cmd {
        CaCommand::IssueNode { ca, hosts, out } => {
            let zone = ZoneId::new(ca.zone.as_str())?;
            (ca, Identity::node(zone), hosts, out)
        }
        CaCommand::IssueUser { ca, role, name, out } => {
            let zone = ZoneId::new(ca.zone.as_str())?;
            let id = Identity::user(zone, role, &name)?;
            (ca, id, Vec::new(), out)
        }
    };
    for path in [&out.out_cert, &out.out_key] {
        if path.exists() {
            bail!("{} exists; choose a new file (the node keeps using the old one until you switch)", path.display());
        }
    }
    let zone_ca = load_ca(&ca.ca_cert, &ca.ca_key)?;
    let ca_until = ftz_pki::verify::not_after_ms(&zone_ca.issued.cert_der)
        .with_context(|| format!("the CA certificate {}", ca.ca_cert.display()))?;
    let now = SystemClock.now_ms();
    if ca.days < 1 {
        bail!("--days must be at least 1");
    }
    let until = now.saturating_add(ca.days.saturating_mul(86_400_000));
    if until > ca_until {
        bail!(
            "the certificate would outlive its CA ({} < {}): give fewer --days, or rotate the zone CA first",
            time(ca_until),
            time(until)
        );
    }
    let validity = Validity { not_before_ms: now - BACKDATE_MS, not_after_ms: until };
    let issued: Issued = if identity.is_node() {
        zone_ca.issue_node(&identity.zone, &hosts, validity)?
    } else {
        zone_ca.issue_user(&identity, validity)?
    };
    // A key that is not the CA certificate's would sign certificates no node accepts.
    let usage = if identity.is_node() { ftz_pki::CertUsage::Server } else { ftz_pki::CertUsage::Client };
    ftz_pki::verify_chain(&[issued.cert_der.clone().into()], &zone_ca.issued.cert_der, usage, now).map_err(|e| {
        anyhow::anyhow!("{} is not the key of the CA certificate {} ({e})", ca.ca_key.display(), ca.ca_cert.display())
    })?;
    files::write_secret(&out.out_key, issued.key_pem.as_bytes())?;
    files::write_public(&out.out_cert, issued.cert_pem.as_bytes())?;
    let digest = hex::encode(ftz_core::sha256(&issued.cert_der));
    emit(
        fmt,
        || {
            format!(
                "issued {identity} until {}{}\ncertificate {} (sha256 {digest})\nkey {} (mode 0600)\n",
                time(until),
                if hosts.is_empty() { String::new() } else { format!(" for {}", hosts.join(", ")) },
                out.out_cert.display(),
                out.out_key.display(),
            )
        },
        || {
            json!({
                "identity": identity.to_uri(),
                "hosts": hosts,
                "not_after_ms": until,
                "certificate": out.out_cert,
                "key": out.out_key,
                "sha256": digest,
            })
        },
    );
    Ok(())
}

fn load_ca(cert: &Path, key: &Path) -> Result<ZoneCa> {
    let cert_pem =
        std::fs::read_to_string(cert).with_context(|| format!("cannot read the CA certificate {}", cert.display()))?;
    let key_pem = files::read_secret_text(key)?;
    ZoneCa::from_pem(&cert_pem, &key_pem).map_err(|e| {
        anyhow::anyhow!("{} and {} are not a CA certificate and its key: {e}", cert.display(), key.display())
    })
}
