//! Demo step 11: operating the nodes. Each node's ops listener answers its probes and serves
//! Prometheus metrics (the transfers of the steps above counted by zone pair), and guangdong's
//! admin takes an online backup that checks out offline.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use ftz_core::Role;
use ftz_devkit::LocalFederation;
use ftz_proto::admin_client::AdminClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::DemoReport;

/// `GET path` over plain HTTP/1.0 (the ops listener has no TLS): status and body.
async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.with_context(|| format!("ops listener {addr}"))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await?;
    let mut text = String::new();
    tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_string(&mut text)).await??;
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

/// The sum of the samples of `name` whose labels contain every one of `labels`.
fn sum(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .fold(0.0, |a, b| a + b)
}

pub(super) async fn step(fed: &LocalFederation, r: &mut DemoReport) -> Result<()> {
    r.say("\n== 11. Operating the nodes: probes, Prometheus metrics, an online backup ==");
    for z in super::ZONES {
        let Some(addr) = fed.node(z).and_then(|n| n.ops_addr()) else {
            r.check("ops", format!("{z}'s ops listener"), false, "none configured");
            continue;
        };
        let (ready, body) = get(addr, "/readyz").await?;
        r.check("ops", format!("{z} http://{addr}/readyz"), ready == 200, body.trim().to_string());
        let (status, metrics) = get(addr, "/metrics").await?;
        let out = sum(&metrics, "ftz_transfers_total", &["direction=\"outgoing\"", "decision=\"transferred\""]);
        let refused = sum(&metrics, "ftz_requests_total", &["code=\"PermissionDenied\""]);
        r.check(
            "ops",
            format!("{z}'s /metrics counts what it did"),
            status == 200 && metrics.trim_end().ends_with("# EOF") && sum(&metrics, "ftz_registry_version", &[]) == 1.0,
            format!(
                "{out} transfers out, {refused} requests refused for their role, log of {} entries",
                sum(&metrics, "ftz_audit_log_entries", &[])
            ),
        );
    }
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("guangdong.ftzbackup");
    let mut admin = AdminClient::new(fed.user_channel("guangdong", Role::Admin)?);
    let taken = crate::backup::download(&mut admin, &file, |_, _| {}).await?;
    let checked = crate::backup::check(&file)?;
    r.check(
        "ops",
        "guangdong's admin backs up the running node; the file checks out offline",
        checked.sha256 == taken.sha256 && taken.audit_log_size > 0 && taken.zone == "guangdong",
        format!(
            "{} bytes, {} keys, audit log cut at {} entries (checkpoint {}), sha256 {}…",
            taken.bytes,
            taken.entries,
            taken.audit_log_size,
            taken.checkpoint_size,
            &taken.sha256[..16]
        ),
    );
    Ok(())
}
