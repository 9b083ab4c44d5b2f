//! The JSON API over HTTPS, against real nodes: each role's calls answered as over gRPC, each
//! refusal (no certificate, wrong role, another zone's user, bad input, limits) as RFC 9457
//! problem details with the same stable reason code and a fitting HTTP status.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ftz_core::Role;
use ftz_proto::IssueCertificationRequest;
use ftz_tests::{Cluster, DAY_MS, cert_rule, certification, https::Https};
use serde_json::json;

async fn issued(c: &Cluster, id: &str) {
    let cert = certification(c, id, "AEO_ADVANCED");
    c.issuer("shanghai").issue_certification(IssueCertificationRequest { certification: Some(cert) }).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_calls_the_api_as_it_calls_grpc() {
    let c = Cluster::start(&["shanghai", "hainan"]).await;
    c.agree("sh-hn", "shanghai", "hainan", vec![cert_rule(&["AEO_ADVANCED"])], 365 * DAY_MS).await;
    issued(&c, "SH-HTTP-1").await;

    // An enterprise of hainan verifies shanghai's record through its own node.
    let ent = Https::user(&c, "hainan", Role::Enterprise, "hainan");
    let body = json!({
        "ref": {"issuing_zone": "shanghai", "record_id": "SH-HTTP-1"},
        "purpose": "customs-clearance",
    });
    let a = ent.post("/api/v1/verify/verify-record", &body).await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.content_type(), "application/json");
    assert_eq!(a.json["valid"], true, "{}", a.json);
    assert_eq!(a.json["record_id"], "SH-HTTP-1", "{}", a.json);
    // Security headers on every answer.
    assert_eq!(a.headers["content-security-policy"], "default-src 'none'; frame-ancestors 'none'");
    assert!(a.headers.contains_key("strict-transport-security"));

    // An auditor pages through the log with GET and query parameters.
    let aud = Https::user(&c, "shanghai", Role::Auditor, "shanghai");
    let a = aud.get("/api/v1/audit/list-entries?limit=2").await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["entries"].as_array().unwrap().len(), 2, "{}", a.json);
    // The admin's status; the issuer's keys.
    let a = Https::user(&c, "shanghai", Role::Admin, "shanghai").get("/api/v1/admin/get-node-status").await;
    assert_eq!((a.status, a.json["zone_id"].as_str()), (200, Some("shanghai")), "{}", a.json);
    let a = Https::user(&c, "shanghai", Role::Issuer, "shanghai").get("/api/v1/issuer/list-issuing-keys").await;
    assert_eq!(a.status, 200, "{}", a.json);

    // The API's description, generated from the same routes, for authenticated callers.
    let a = aud.get("/api/v1/openapi.json").await;
    assert_eq!((a.status, a.json["openapi"].as_str()), (200, Some("3.1.0")));
    assert!(a.json["paths"]["/api/v1/verify/verify-record"]["post"].is_object());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_problem_details_with_the_grpc_reason() {
    let c = Cluster::start(&["shanghai", "hainan"]).await;
    let problem = |a: &ftz_tests::https::Answer, status: u16, reason: &str| {
        assert_eq!((a.status, a.reason()), (status, Some(reason)), "{}", a.json);
        assert_eq!(a.content_type(), "application/problem+json");
        assert_eq!(a.json["type"], format!("urn:ftz:reason:{reason}"));
        assert!(a.json["detail"].as_str().is_some_and(|d| !d.is_empty()), "{}", a.json);
    };
    let status = "/api/v1/admin/get-node-status";
    // No certificate: the same refusal as gRPC's first call.
    let anon = Https::anonymous(&c, "shanghai");
    problem(&anon.get(status).await, 401, "NO_CLIENT_CERTIFICATE");
    problem(&anon.get("/api/v1/openapi.json").await, 401, "NO_CLIENT_CERTIFICATE");
    // Nor is a body read for a caller that has not shown who it is (else an outsider holds a
    // message's worth of memory, or a stream until the deadline, per stream it opens): a body
    // that never ends is refused at once.
    let started = std::time::Instant::now();
    problem(&anon.post_stalled("/api/v1/audit/list-entries").await, 401, "NO_CLIENT_CERTIFICATE");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "waited {:?} for the body", started.elapsed());
    // The wrong role; another zone's user.
    problem(&Https::user(&c, "shanghai", Role::Enterprise, "shanghai").get(status).await, 403, "ROLE_NOT_ALLOWED");
    problem(&Https::user(&c, "hainan", Role::Admin, "shanghai").get(status).await, 403, "FOREIGN_USER");
    // Bad input: not JSON, a field of the wrong type, a field that does not exist.
    let aud = Https::user(&c, "shanghai", Role::Auditor, "shanghai");
    let entries = "/api/v1/audit/list-entries";
    let not_json = aud.request(http::Method::POST, entries, Some(b"{".to_vec()), "application/json").await;
    problem(&not_json, 400, "MALFORMED_REQUEST");
    problem(&aud.post(entries, &json!({"limit": "many"})).await, 400, "MALFORMED_REQUEST");
    problem(&aud.post(entries, &json!({"no_such_field": 1})).await, 400, "MALFORMED_REQUEST");
    problem(&aud.get(&format!("{entries}?no_such_field=1")).await, 400, "INVALID_ARGUMENT");
    // Not a JSON content type (a cross-site form could send that): refused before anything.
    let form = aud.request(http::Method::POST, entries, Some(b"limit=1".to_vec()), "application/x-www-form-urlencoded");
    let form = form.await;
    problem(&form, 415, "UNSUPPORTED_MEDIA_TYPE");
    // Its body was not read: over HTTP/1.1 the connection cannot go on, and the answer says so
    // (a client would otherwise send its next request into a connection about to close).
    assert_eq!(form.headers.get("connection").map(|v| v.to_str().unwrap()), Some("close"));
    // GET of a method that changes state; a path that is no route.
    let issuer = Https::user(&c, "shanghai", Role::Issuer, "shanghai");
    problem(&issuer.get("/api/v1/issuer/issue-certification").await, 405, "METHOD_NOT_ALLOWED");
    problem(&aud.get("/api/v1/peer/ping").await, 404, "NOT_FOUND");
    // A body over the message limit (4 MiB).
    let huge = vec![b' '; 5 * 1024 * 1024];
    problem(&aud.request(http::Method::POST, entries, Some(huge), "application/json").await, 413, "PAYLOAD_TOO_LARGE");
    // A refusal of the service itself keeps its reason: an entry that does not exist.
    let a = aud.post("/api/v1/audit/get-entry", &json!({"index": "999999"})).await;
    problem(&a, 404, "ENTRY_NOT_FOUND");
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_per_caller_rate_holds_over_http_with_a_retry_hint() {
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn ftz_core::Clock> = Arc::new(ftz_core::SystemClock);
    let tune: ftz_devkit::local::Tune = Arc::new(|cfg| cfg.limits.user_requests_per_second = 1);
    let local = ftz_devkit::LocalFederation::start_tuned(&["shanghai"], &dir.path().join("fed"), clock.clone(), tune)
        .await
        .unwrap();
    let c = Cluster::from_local(local, clock, dir);
    let admin = Https::user(&c, "shanghai", Role::Admin, "shanghai");
    let mut limited = None;
    for _ in 0..5 {
        let a = admin.get("/api/v1/admin/get-node-status").await;
        if a.status != 200 {
            limited = Some(a);
            break;
        }
    }
    let a = limited.expect("a burst of 2 then refused");
    assert_eq!((a.status, a.reason()), (429, Some("RATE_LIMITED")), "{}", a.json);
    assert!(a.headers.contains_key(http::header::RETRY_AFTER), "{:?}", a.headers);
    c.shutdown().await;
}
