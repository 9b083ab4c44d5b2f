//! `ftzctl demo --serve`: after the demo, the federation stays up with everything the demo made
//! (records, agreements, policies, transfers, audit logs) for a person with a browser or for a
//! test harness, until Ctrl-C (SIGINT) or SIGTERM; then the nodes stop cleanly and the temporary
//! directory is removed (unless `--keep`).

use std::{io::Write as _, path::Path};

use anyhow::{Context, Result};
use ftz_core::Role;
use ftz_devkit::{LocalFederation, pkcs12::DEV_PASSWORD};
use serde_json::{Map, Value, json};

use super::DemoReport;

/// How `--serve` announces that it is ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServeOutput {
    /// Readable lines: each zone's console and the PKCS#12 files to import.
    Text,
    /// One JSON line on stdout (for test harnesses), flushed, then nothing more on stdout.
    Json,
}

/// What the harness needs of the running federation, as the JSON line says it.
pub(super) fn ready_document(fed: &LocalFederation, root: &Path, report: &DemoReport) -> Result<Value> {
    let root = std::fs::canonicalize(root).with_context(|| format!("{}", root.display()))?;
    let mut zones = Vec::new();
    for z in &fed.fed.zones {
        let node = fed.node(z.id.as_str()).with_context(|| format!("{} has no running node", z.id))?;
        let http = node.http_addr().with_context(|| format!("{}'s node has no HTTPS listener", z.id))?;
        let dir = root.join(z.id.as_str());
        let mut users = Map::new();
        for role in Role::ALL {
            let u = dir.join("users");
            users.insert(
                role.to_string(),
                json!({
                    "p12": u.join(format!("{role}.p12")),
                    "password": DEV_PASSWORD,
                    "cert": u.join(format!("{role}.crt")),
                    "key": u.join(format!("{role}.key")),
                    "profile": u.join(format!("{role}.toml")),
                }),
            );
        }
        zones.push(json!({
            "zone": z.id.as_str(),
            "console": format!("https://{http}/"),
            "openapi": format!("https://{http}/api/v1/openapi.json"),
            "grpc": node.local_addr().to_string(),
            "ca": dir.join("ca.crt"),
            "server_name": format!("{}.node.ftz.invalid", z.id),
            "users": users,
        }));
    }
    let failed: Vec<String> =
        report.checks.iter().filter(|c| !c.ok).map(|c| format!("{} / {}", c.step, c.what)).collect();
    Ok(json!({
        "ready": true,
        "passed": report.passed(),
        "checks": report.checks.len(),
        "failed": failed,
        "dir": root,
        "zones": zones,
    }))
}

fn text(doc: &Value) -> String {
    let mut t = String::from("\n== Serving: the federation stays up until Ctrl-C ==\n");
    let zones = doc["zones"].as_array().map(Vec::as_slice).unwrap_or_default();
    for z in zones {
        let name = z["zone"].as_str().unwrap_or("?");
        t.push_str(&format!(
            "  {name:<10} console {}   gRPC {}\n",
            z["console"].as_str().unwrap_or("?"),
            z["grpc"].as_str().unwrap_or("?")
        ));
        for role in Role::ALL {
            let p12 = z["users"][role.to_string()]["p12"].as_str().unwrap_or("?");
            t.push_str(&format!("             {:<10} {p12}\n", role.to_string()));
        }
        t.push_str(&format!("             zone CA    {}\n", z["ca"].as_str().unwrap_or("?")));
    }
    t.push_str(&format!(
        "\n  Import a user's .p12 into the browser (password {DEV_PASSWORD}): Chromium Settings > Privacy and security >\n  \
         Security > Manage certificates > Your certificates > Import; Firefox Settings > Privacy & Security >\n  \
         Certificates > View Certificates > Your Certificates > Import. Open a console address and pick the\n  \
         certificate. The page is served with the zone CA's certificate: accept the warning, or import the zone's\n  \
         ca.crt as an authority (README: \"Using the console from a browser\").\n"
    ));
    t.push_str(&format!("  Files in {}\n", doc["dir"].as_str().unwrap_or("?")));
    t
}

/// Prints where everything is, then waits for Ctrl-C or SIGTERM.
pub(super) async fn serve(fed: &LocalFederation, root: &Path, report: &DemoReport, out: ServeOutput) -> Result<()> {
    let doc = ready_document(fed, root, report)?;
    // Subscribe before announcing, so a signal sent right after the ready line is not missed.
    let stop = stop_signal()?;
    let mut stdout = std::io::stdout().lock();
    match out {
        ServeOutput::Json => writeln!(stdout, "{}", serde_json::to_string(&doc)?)?,
        ServeOutput::Text => write!(stdout, "{}", text(&doc))?,
    }
    stdout.flush()?;
    drop(stdout);
    let why = stop.await;
    if out == ServeOutput::Text {
        println!("\n  {why}: stopping the nodes");
    }
    Ok(())
}

/// A future that ends at the first SIGINT (Ctrl-C) or SIGTERM, saying which.
fn stop_signal() -> Result<impl std::future::Future<Output = &'static str>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
        let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => "interrupted",
                _ = term.recv() => "terminated",
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            "interrupted"
        })
    }
}
