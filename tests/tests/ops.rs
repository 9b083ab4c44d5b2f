//! The ops listener of real nodes: `/metrics` as Prometheus scrapes it (requests, latency,
//! transfers by zone pair, the log and its witnesses, the outbox, the store, the registry and
//! certificates), `/healthz` and `/readyz` (with draining), and series that a caller cannot
//! multiply by inventing names.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use ftz_core::Role;
use ftz_proto::{GetNodeStatusRequest, PushInspectionRequest, RecordInspectionRequest, admin_client::AdminClient};
use ftz_tests::{
    Cluster, DAY_MS, inspection, inspection_rule,
    ops::{Scrape, get},
};

/// Scrapes `addr` until `ready` holds of the scrape (at most 30 s).
async fn scrape_until(addr: std::net::SocketAddr, what: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let started = Instant::now();
    loop {
        let s = Scrape::of(addr).await;
        if ready(&s) {
            return s;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no {what} after 30 s: {:#?}", s.0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_shows_requests_transfers_the_log_and_expiry() {
    let c = Cluster::start(&["guangdong", "shanghai"]).await;
    c.agree("gd-sh", "guangdong", "shanghai", vec![inspection_rule("CNAS")], 365 * DAY_MS).await;
    let mut issuer = c.issuer("guangdong");
    issuer
        .record_inspection(RecordInspectionRequest { result: Some(inspection(&c, "GD-M-1", "LOT-M-1")) })
        .await
        .unwrap();
    let push = PushInspectionRequest { record_id: "GD-M-1".into(), to_zone: "shanghai".into(), purpose: String::new() };
    issuer.push_inspection(push).await.unwrap();
    // A refusal: an enterprise asks for the admin's status.
    let refused =
        AdminClient::new(c.user("guangdong", Role::Enterprise)).get_node_status(GetNodeStatusRequest {}).await;
    assert_eq!(refused.unwrap_err().code(), tonic::Code::PermissionDenied);

    let gd = c.local.node("guangdong").unwrap().ops_addr().expect("an ops listener");
    let sh = c.local.node("shanghai").unwrap().ops_addr().expect("an ops listener");
    let s = scrape_until(gd, "cosignature of shanghai", |s| {
        s.value("ftz_witness_cosignature_age_seconds", &[("witness", "shanghai")]).is_some()
    })
    .await;
    let transfer = [("peer_zone", "shanghai"), ("direction", "outgoing"), ("decision", "transferred")];
    assert_eq!(s.value("ftz_transfers_total", &transfer), Some(1.0), "{:#?}", s.0);
    let ok = [("service", "Issuer"), ("method", "PushInspection"), ("code", "Ok")];
    assert_eq!(s.value("ftz_requests_total", &ok), Some(1.0));
    let denied = [("service", "Admin"), ("method", "GetNodeStatus"), ("code", "PermissionDenied")];
    assert_eq!(s.value("ftz_requests_total", &denied), Some(1.0), "{:#?}", s.0);
    let count = [("service", "Issuer"), ("method", "PushInspection")];
    assert_eq!(s.value("ftz_request_duration_seconds_count", &count), Some(1.0));
    assert!(s.value("ftz_audit_log_entries", &[]).unwrap() >= 2.0);
    assert!(s.value("ftz_store_size_bytes", &[]).unwrap() > 0.0);
    assert_eq!(s.value("ftz_registry_version", &[]), Some(1.0));
    assert_eq!(s.value("ftz_ready", &[]), Some(1.0));
    assert_eq!(s.value("ftz_outbox_messages", &[("destination", "shanghai")]), Some(0.0));
    assert_eq!(s.value("ftz_witness_equivocations_found_total", &[]), Some(0.0));
    let now = c.clock.now_ms() as f64 / 1000.0;
    let year = 365.0 * 86_400.0;
    let registry_expiry = s.value("ftz_registry_expiry_timestamp_seconds", &[]).unwrap();
    assert!(registry_expiry > now && registry_expiry < now + 2.0 * year, "{registry_expiry}");
    assert!(s.value("ftz_tls_certificate_expiry_timestamp_seconds", &[]).unwrap() > now);
    for zone in ["guangdong", "shanghai"] {
        assert!(s.value("ftz_zone_ca_expiry_timestamp_seconds", &[("zone", zone)]).unwrap() > now);
    }
    let age = s.value("ftz_witness_cosignature_age_seconds", &[("witness", "shanghai")]).unwrap();
    assert!((0.0..60.0).contains(&age), "{age}");

    // The other side counts the same transfer as incoming.
    let s = scrape_until(sh, "the incoming transfer", |s| {
        s.value("ftz_transfers_total", &[("peer_zone", "guangdong"), ("direction", "incoming")]).is_some()
    })
    .await;
    let incoming = [("peer_zone", "guangdong"), ("direction", "incoming"), ("decision", "transferred")];
    assert_eq!(s.value("ftz_transfers_total", &incoming), Some(1.0));
    assert_eq!(s.value("ftz_requests_total", &[("service", "Peer"), ("method", "Deliver"), ("code", "Ok")]), Some(1.0));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_draining() {
    let c = Cluster::start(&["guangdong", "shanghai"]).await;
    let node = c.local.node("guangdong").unwrap();
    let ops = node.ops_addr().unwrap();
    assert_eq!(get(ops, "/healthz").await, (200, "ok\n".to_string()));
    let (status, body) = get(ops, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], true);
    for check in ["store", "registry", "checkpoint", "draining"] {
        assert_eq!(v["checks"][check], "ok", "{body}");
    }
    assert_eq!(get(ops, "/nope").await.0, 404);

    node.drain();
    let (status, body) = get(ops, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], false);
    assert_eq!(v["checks"]["draining"], "the node is stopping");
    assert_eq!(v["checks"]["store"], "ok");
    // Draining, the node still serves and is alive.
    assert_eq!(get(ops, "/healthz").await.0, 200);
    AdminClient::new(c.user("guangdong", Role::Admin)).get_node_status(GetNodeStatusRequest {}).await.unwrap();
    assert_eq!(Scrape::of(ops).await.value("ftz_ready", &[]), Some(0.0));
    c.shutdown().await;
}

/// A caller (here any client that reaches the node, authenticated or not) cannot grow the
/// number of series by calling methods that do not exist: they all count as one `unknown`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_methods_do_not_grow_the_series() {
    let c = Cluster::start(&["guangdong", "shanghai"]).await;
    let ops = c.local.node("guangdong").unwrap().ops_addr().unwrap();
    let before = Scrape::of(ops).await.count("ftz_requests_total");
    let mut grpc = tonic::client::Grpc::new(c.user("guangdong", Role::Admin));
    for i in 0..50 {
        grpc.ready().await.unwrap();
        let path: http::uri::PathAndQuery = format!("/ftz.v1.Admin/Invented{i}").parse().unwrap();
        let codec = tonic_prost::ProstCodec::<ftz_proto::GetNodeStatusRequest, ftz_proto::NodeStatus>::default();
        let res = grpc.unary(tonic::Request::new(GetNodeStatusRequest {}), path, codec).await;
        assert_eq!(res.unwrap_err().code(), tonic::Code::Unimplemented);
    }
    let s = Scrape::of(ops).await;
    assert!(s.count("ftz_requests_total") <= before + 1, "{:#?}", s.0);
    let unknown = [("service", "unknown"), ("method", "unknown"), ("code", "Unimplemented")];
    assert_eq!(s.value("ftz_requests_total", &unknown), Some(50.0));
    c.shutdown().await;
}
