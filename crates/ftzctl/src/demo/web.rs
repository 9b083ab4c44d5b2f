//! Demo step: the same system over HTTPS. An enterprise's ERP system verifies over the JSON API
//! and gets the gRPC verdict; refusals are problem details with the same reason; an auditor
//! pages the log; the web console renders the verdict and an entry with its proof for the
//! browser to check; another site's page cannot post with the browser's certificate.

use std::sync::Arc;

use anyhow::{Context, Result};
use ftz_core::{Role, SystemClock};
use ftz_devkit::{LocalFederation, dev};
use serde_json::json;

use super::DemoReport;

fn client(fed: &LocalFederation, user_zone: &str, role: Role, node_zone: &str) -> Result<ftz_client::https::Https> {
    let addr = fed
        .node(node_zone)
        .and_then(|n| n.http_addr())
        .with_context(|| format!("{node_zone}'s node has no HTTPS listener"))?;
    Ok(fed.profile(user_zone, role)?.https(&addr.to_string(), Arc::new(SystemClock))?)
}

pub(super) async fn step(fed: &LocalFederation, r: &mut DemoReport) -> Result<()> {
    r.say("\n== 10. The same system over HTTPS: the JSON API and the web console ==");
    for z in super::ZONES {
        if let Some(a) = fed.node(z).and_then(|n| n.http_addr()) {
            r.say(format!("  {z:<10} https://{a}/  (console)   https://{a}/api/v1/openapi.json"));
        }
    }
    // shanghai's issuer issues over the JSON API (as a registry office's own system would).
    let c = dev::sample_certification("SH-AEO-2026-0100", "AEO_ADVANCED", super::now());
    let cert = json!({"certification": {
        "record_id": c.record_id, "issuing_zone": c.issuing_zone, "cert_type": c.cert_type,
        "holder_uscc": c.holder_uscc, "holder_name": c.holder_name, "scope": c.scope,
        "issuing_body": c.issuing_body, "accreditation_scheme": c.accreditation_scheme,
        "issued_at_ms": c.issued_at_ms.to_string(), "expires_at_ms": c.expires_at_ms.to_string(),
    }});
    let a =
        client(fed, "shanghai", Role::Issuer, "shanghai")?.post("/api/v1/issuer/issue-certification", &cert).await?;
    r.check(
        "http",
        "shanghai's issuer issues SH-AEO-2026-0100 with POST /api/v1/issuer/issue-certification",
        a.status == 200 && a.json["already_issued"] == false,
        format!("{} {}, record digest {}", a.status, a.content_type(), a.json["record_digest"].as_str().unwrap_or("?")),
    );
    let ent = client(fed, "hainan", Role::Enterprise, "hainan")?;
    let body = json!({
        "ref": {"issuing_zone": "shanghai", "record_id": "SH-AEO-2026-0100"},
        "purpose": "verification",
    });
    let a = ent.post("/api/v1/verify/verify-record", &body).await?;
    r.check(
        "http",
        "hainan's ERP system verifies it with POST /api/v1/verify/verify-record (JSON)",
        a.status == 200 && a.json["valid"] == true,
        format!("{} {}: valid {}, {}", a.status, a.content_type(), a.json["valid"], a.json["explanation"]),
    );

    let a = ent.get("/api/v1/admin/get-node-status").await?;
    r.check(
        "http",
        "the same enterprise asks for the admin's status: refused as RFC 9457 problem details",
        a.status == 403 && a.reason() == Some("ROLE_NOT_ALLOWED") && a.content_type() == "application/problem+json",
        format!("{} {} {}", a.status, a.json["type"], a.json["detail"]),
    );

    let aud = client(fed, "shanghai", Role::Auditor, "shanghai")?;
    let a = aud.get("/api/v1/audit/list-entries?decision=allowed&limit=3").await?;
    let entries = a.json["entries"].as_array().map(Vec::len).unwrap_or(0);
    r.check(
        "http",
        "shanghai's auditor pages the log with GET /api/v1/audit/list-entries?decision=allowed",
        a.status == 200 && entries > 0,
        format!("{entries} transfer(s) on the page, {} entries in the log", a.json["log_size"].as_str().unwrap_or("?")),
    );
    let doc = aud.get("/api/v1/openapi.json").await?;
    let paths = doc.json["paths"].as_object().map(|p| p.len()).unwrap_or(0);
    r.check(
        "http",
        "the API describes itself: OpenAPI 3.1, generated from the gRPC descriptors",
        doc.json["openapi"] == "3.1.0" && paths > 30,
        format!("{paths} routes"),
    );

    let page = ent.get("/verify?zone=shanghai&id=SH-AEO-2026-0100&lang=en").await?;
    r.check(
        "http",
        "the console's verify page shows the verdict and its three parts",
        page.status == 200
            && page.text.contains(r#"data-verdict="VALID""#)
            && page.text.matches(r#"data-ok="true""#).count() >= 3,
        format!("{} {}, {} bytes", page.status, page.content_type(), page.text.len()),
    );
    let entry = aud.get("/audit/entry/0?lang=en").await?;
    r.check(
        "http",
        "the console's entry page carries the proof for the browser's own check (WebCrypto)",
        entry.status == 200 && entry.text.contains("c2sp.org/tlog-proof@v1") && entry.text.contains("/static/proof.js"),
        format!("{} {}", entry.status, entry.content_type()),
    );

    let evil = ent
        .send(
            http::Method::POST,
            "/api/v1/verify/verify-record",
            http_body_util::Full::new(bytes::Bytes::from(body.to_string())),
            "application/json",
            &[("origin", "https://evil.example")],
        )
        .await?;
    r.check(
        "http",
        "a POST from another site's page, with the browser's certificate, is refused",
        evil.status == 403 && evil.reason() == Some("CROSS_ORIGIN"),
        format!("{} {}", evil.status, evil.reason().unwrap_or("")),
    );
    Ok(())
}
