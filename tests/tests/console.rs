//! The web console against real nodes: each role's pages rendered from the same calls as the
//! JSON API, refusals as pages with the reason, the language from the browser, what a user
//! typed escaped, no inline script, and another site's page neither posting nor making a
//! page call anything. (The pages in a real browser: tests/browser.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::{Engine, engine::general_purpose::STANDARD};
use ftz_core::Role;
use ftz_proto::IssueCertificationRequest;
use ftz_tests::{Cluster, DAY_MS, cert_rule, certification, https::Https};
use serde_json::json;

async fn federation() -> Cluster {
    let c = Cluster::start(&["shanghai", "hainan"]).await;
    c.agree("sh-hn", "shanghai", "hainan", vec![cert_rule(&["AEO_ADVANCED"])], 365 * DAY_MS).await;
    let cert = certification(&c, "SH-WEB-1", "AEO_ADVANCED");
    c.issuer("shanghai").issue_certification(IssueCertificationRequest { certification: Some(cert) }).await.unwrap();
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_sees_its_pages_and_a_refusal_elsewhere() {
    let c = federation().await;
    let ent = Https::user(&c, "hainan", Role::Enterprise, "hainan");
    let en = [("accept-language", "en-US,en;q=0.9")];

    let a = ent.get_with("/verify?zone=shanghai&id=SH-WEB-1", &en).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.text.contains(r#"<html lang="en">"#), "{}", a.text);
    assert!(a.text.contains(r#"id="verdict" data-verdict="VALID""#), "{}", a.text);
    for part in ["authentic", "current", "recognised"] {
        assert!(a.text.contains(&format!(r#"data-part="{part}" data-ok="true""#)), "{part}: {}", a.text);
    }
    let csp = a.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(a.text.matches("<script").count(), a.text.matches("<script src=").count(), "inline script");

    // Chinese by default, and from the browser.
    let zh = ent.get_with("/verify", &[("accept-language", "zh-CN,zh;q=0.9")]).await;
    assert!(zh.text.contains(r#"<html lang="zh-CN">"#) && zh.text.contains("核验"), "{}", zh.text);
    // The switch sets a cookie.
    let sw = ent.get_with("/verify?lang=en", &[]).await;
    assert!(sw.headers["set-cookie"].to_str().unwrap().starts_with("ftz_lang=en;"));

    // A lot nobody inspected: an empty table, not an error.
    let lot = ent.get_with("/lot?lot=LOT-NONE", &en).await;
    assert_eq!(lot.status, 200, "{}", lot.text);
    assert!(lot.text.contains(r#"id="lot-results""#));

    // Another role's page is a refusal page with the reason the API gives.
    let a = ent.get_with("/admin", &en).await;
    assert_eq!(a.status, 403, "{}", a.text);
    assert!(a.text.contains(r#"class="refusal" data-reason="ROLE_NOT_ALLOWED""#), "{}", a.text);

    // The auditor's log, an entry with its proof for the browser to check, the witnesses.
    let aud = Https::user(&c, "shanghai", Role::Auditor, "shanghai");
    let a = aud.get_with("/audit", &en).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.text.contains(r#"<a href="/audit/entry/0">0</a>"#), "{}", a.text);
    let a = aud.get_with("/audit?decision=config", &en).await;
    assert!(a.text.contains(r#"data-decision="""#), "{}", a.text);
    // Checkpoints are signed in the background: wait until one covers entry 0.
    let mut a = aud.get_with("/audit/entry/0", &en).await;
    for _ in 0..200 {
        if a.text.contains("tlog-proof") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        a = aud.get_with("/audit/entry/0", &en).await;
    }
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.text.contains(r#"<script id="proof-data" type="application/json">"#), "{}", a.text);
    assert!(a.text.contains(r#""proof":"c2sp.org/tlog-proof@v1\nindex 0\n"#), "{}", a.text);
    assert!(a.text.contains(r#"<script src="/static/proof.js" defer>"#));
    let js = aud.get("/static/proof.js").await;
    assert_eq!(js.status, 200);
    assert!(js.text.contains("crypto.subtle.verify"));
    let a = aud.get_with("/audit/charts", &en).await;
    assert!(a.text.contains(r#"id="chart-transfers""#), "{}", a.text);
    let a = aud.get_with("/audit/equivocations", &en).await;
    assert!(a.text.contains(r#"id="equivocations" data-count="0""#), "{}", a.text);
    assert_eq!(aud.get_with("/audit/entry/999999", &en).await.status, 404);
    let a = aud.get_with("/audit/registry", &en).await;
    assert!(a.text.contains(r#"id="registry-history""#) && a.text.contains("<td>v1</td>"), "{}", a.text);

    // The admin's overview; the issuer's forms.
    let adm = Https::user(&c, "shanghai", Role::Admin, "shanghai");
    let a = adm.get_with("/admin", &en).await;
    assert_eq!(a.status, 200, "{}", a.text);
    for id in ["status", "peers", "registry", "agreements", "policies", "outbox", "budgets"] {
        assert!(a.text.contains(&format!(r#"id="{id}""#)), "{id}: {}", a.text);
    }
    assert!(a.text.contains("sh-hn"), "the agreement is listed: {}", a.text);
    let a = Https::user(&c, "shanghai", Role::Issuer, "shanghai").get_with("/issuer", &en).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.text.contains(r#"id="issue-form""#) && a.text.contains(r#"id="import-file""#));

    // No certificate: refused before any page.
    let anon = Https::anonymous(&c, "shanghai").get_with("/", &en).await;
    assert_eq!(anon.status, 401, "{}", anon.text);
    assert!(anon.text.contains(r#"data-reason="NO_CLIENT_CERTIFICATE""#), "{}", anon.text);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_sites_page_cannot_act_with_the_browsers_certificate() {
    let c = federation().await;
    let ent = Https::user(&c, "hainan", Role::Enterprise, "hainan");
    // What a user typed comes back escaped.
    let a = ent.get_with("/verify?zone=%3Cscript%3Ealert(1)%3C/script%3E&id=x", &[]).await;
    assert!(!a.text.contains("<script>alert"), "{}", a.text);
    assert!(a.text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{}", a.text);

    // A link from another site opens a page that asks first, and verifies nothing (a
    // verification fetches from the other zone and is logged on both sides).
    let audit_size = || async {
        let a = Https::user(&c, "shanghai", Role::Auditor, "shanghai").get("/api/v1/audit/list-entries?limit=1").await;
        a.json["log_size"].as_str().unwrap().parse::<u64>().unwrap()
    };
    let before = audit_size().await;
    let a = ent.get_with("/verify?zone=shanghai&id=SH-WEB-1", &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(a.status, 200);
    assert!(a.text.contains(r#"data-reason="CROSS_ORIGIN""#) && !a.text.contains("data-verdict"), "{}", a.text);
    assert_eq!(audit_size().await, before, "a cross-site link made the node fetch a record");

    // A POST from another site's page is refused, to the API and to the console alike.
    for path in ["/api/v1/verify/verify-record", "/console/verify-bundle"] {
        let a = ent.post_with(path, &json!({}), &[("origin", "https://evil.example")]).await;
        assert_eq!((a.status, a.reason()), (403, Some("CROSS_ORIGIN")), "{path}: {}", a.text);
        let a = ent.post_with(path, &json!({}), &[("sec-fetch-site", "cross-site")]).await;
        assert_eq!((a.status, a.reason()), (403, Some("CROSS_ORIGIN")), "{path}: {}", a.text);
    }
    // Nor a GET of the API that acts (a refreshed peer list pings every peer).
    let adm = Https::user(&c, "hainan", Role::Admin, "hainan");
    let a = adm.get_with("/api/v1/admin/list-peers?refresh=true", &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!((a.status, a.reason()), (403, Some("CROSS_ORIGIN")), "{}", a.text);
    // The node's own page may.
    let a = ent.post_with("/api/v1/verify/list-zones", &json!({}), &[("origin", "https://node")]).await;
    assert_eq!(a.status, 200, "{}", a.text);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_checked_and_refusals_shown() {
    let c = federation().await;
    let adm = Https::user(&c, "shanghai", Role::Admin, "shanghai");
    // A garbage file is no signed document: refused, nothing installed.
    let garbage = json!({"kind": "agreement", "file": STANDARD.encode(b"not an envelope")});
    let a = adm.post("/console/install", &garbage).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(a.text.contains(r#"data-state="failed""#) && a.text.contains("MALFORMED_REQUEST"), "{}", a.text);
    // An enterprise may not install anything.
    let ent = Https::user(&c, "shanghai", Role::Enterprise, "shanghai");
    let a = ent.post("/console/install", &json!({"kind": "registry", "file": ""})).await;
    assert_eq!(a.status, 403, "{}", a.text);
    assert!(a.text.contains("ROLE_NOT_ALLOWED"), "{}", a.text);

    // A bundle file dropped on the verify page is checked offline by the node: the three
    // parts shown; a changed byte is refused with the bundle's reason.
    let mut verify =
        ftz_proto::verify_client::VerifyClient::new(c.local.user_channel("hainan", Role::Enterprise).unwrap());
    let bundle = verify
        .export_bundle(ftz_proto::ExportBundleRequest {
            r#ref: Some(ftz_proto::RecordRef { issuing_zone: "shanghai".into(), record_id: "SH-WEB-1".into() }),
            recognising_zone: String::new(),
            purpose: "verification".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .bundle
        .unwrap();
    let mut bytes = prost::Message::encode_to_vec(&bundle);
    let ent = Https::user(&c, "hainan", Role::Enterprise, "hainan");
    let a = ent.post("/console/verify-bundle", &json!({"bundle": STANDARD.encode(&bytes)})).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert!(a.text.contains(r#"id="bundle-result" data-verdict="VALID""#), "{}", a.text);
    let at = bytes.len() / 2;
    bytes[at] ^= 1;
    let a = ent.post("/console/verify-bundle", &json!({"bundle": STANDARD.encode(&bytes)})).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(a.text.contains("BUNDLE_INVALID") && a.text.contains(r#"data-state="failed""#), "{}", a.text);

    // The issuer's CSV import: bad rows are named by line and nothing is imported.
    let iss = Https::user(&c, "shanghai", Role::Issuer, "shanghai");
    let header = ftz_policy::rows::FIELDS.join(",");
    let bad = json!({"csv": format!("{header}\nnot,a,row"), "first_line": "41", "check_only": true});
    let a = iss.post("/console/import-rows", &bad).await;
    assert_eq!(a.status, 400, "{}", a.text);
    assert!(a.json["detail"].as_str().unwrap().contains("line 42"), "{}", a.text);
    // A part is at most 1,000 rows, whatever the page says (parsing is work before any limit).
    let row = "91310115MA1H7XQ200,Pudong,C3841,310115,2026-Q3,1,1,1\n".repeat(1001);
    let big = json!({"csv": format!("{header}\n{row}"), "first_line": "1", "check_only": true});
    let a = iss.post("/console/import-rows", &big).await;
    assert_eq!((a.status, a.reason()), (400, Some("INVALID_ARGUMENT")), "{}", a.text);
    // Nor may any other role have a file checked.
    let a = Https::user(&c, "shanghai", Role::Auditor, "shanghai").post("/console/import-rows", &bad).await;
    assert_eq!((a.status, a.reason()), (403, Some("ROLE_NOT_ALLOWED")), "{}", a.text);
    c.shutdown().await;
}
