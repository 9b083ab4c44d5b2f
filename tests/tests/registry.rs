//! Installing federation registries on a running node: what is refused and why, what is
//! installed and that it stays installed across a restart, and that trust follows at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ftz_core::Reason;
use ftz_proto::{
    GetRegistryRequest, InstallRegistryRequest, ListRegistryHistoryRequest, PingPeerRequest, audit_client::AuditClient,
};
use ftz_tests::{Cluster, reason};
use tonic::Code;

const ZONES: [&str; 3] = ["shanghai", "hainan", "guangdong"];
const ALL: [&str; 3] = ZONES;

async fn installed_version(c: &Cluster, zone: &str) -> u64 {
    c.admin(zone).get_registry(GetRegistryRequest {}).await.unwrap().into_inner().version
}

async fn history(c: &Cluster, zone: &str) -> Vec<u64> {
    AuditClient::new(c.user(zone, ftz_core::Role::Auditor))
        .list_registry_history(ListRegistryHistoryRequest {})
        .await
        .unwrap()
        .into_inner()
        .installs
        .iter()
        .map(|i| i.version)
        .collect()
}

#[tokio::test]
async fn bad_registries_are_refused_with_reasons_and_change_nothing() {
    let c = Cluster::start(&ZONES).await;
    let mut admin = c.admin("shanghai");
    let base = c.registry_doc();

    // Under quorum: one authority of three, quorum 2.
    let mut doc = base.clone();
    doc.version = 2;
    let env = c.sign_registry(&doc, &["hainan"]);
    assert_eq!(
        reason(admin.install_registry(InstallRegistryRequest { registry: Some(env) }).await),
        (Code::PermissionDenied, Some(Reason::RegistryUnderQuorum))
    );

    // A bad signature, even with the quorum otherwise met.
    let mut env = c.sign_registry(&doc, &ALL);
    env.signatures[1].sig[10] ^= 0x40;
    assert_eq!(
        reason(admin.install_registry(InstallRegistryRequest { registry: Some(env) }).await),
        (Code::InvalidArgument, Some(Reason::BadSignature))
    );

    // Expired.
    let mut expired = doc.clone();
    expired.valid_until_ms = c.clock.now_ms() - 1;
    expired.valid_from_ms = expired.valid_until_ms - 1000;
    let env = c.sign_registry(&expired, &ALL);
    assert_eq!(
        reason(admin.install_registry(InstallRegistryRequest { registry: Some(env) }).await),
        (Code::FailedPrecondition, Some(Reason::RegistryExpired))
    );

    // Not newer: version 1 again with other content.
    let mut same = base.clone();
    same.quorum = 3;
    let env = c.sign_registry(&same, &ALL);
    assert_eq!(
        reason(admin.install_registry(InstallRegistryRequest { registry: Some(env) }).await),
        (Code::FailedPrecondition, Some(Reason::RegistryVersionConflict))
    );

    // Malformed and missing.
    let mut garbage = c.sign_registry(&doc, &ALL);
    garbage.payload = vec![0xff; 7];
    assert_eq!(
        reason(admin.install_registry(InstallRegistryRequest { registry: Some(garbage) }).await),
        (Code::InvalidArgument, Some(Reason::RegistryMalformed))
    );
    assert_eq!(
        reason(admin.install_registry(InstallRegistryRequest { registry: None }).await),
        (Code::InvalidArgument, Some(Reason::InvalidArgument))
    );

    // Nothing of the above was stored.
    assert_eq!(installed_version(&c, "shanghai").await, 1);
    assert_eq!(history(&c, "shanghai").await, vec![1]);
    c.shutdown().await;
}

#[tokio::test]
async fn a_good_registry_is_installed_survives_restart_and_older_ones_are_refused() {
    let mut c = Cluster::start(&ZONES).await;
    let v1 = std::fs::read(&c.local.fed.registry_path).unwrap();
    let mut doc = c.registry_doc();
    doc.version = 2;
    doc.zones[0].display_name = "Shanghai FTZ (renamed in v2)".into();
    let v2 = c.sign_registry(&doc, &["shanghai", "guangdong"]);

    let r = c
        .admin("shanghai")
        .install_registry(InstallRegistryRequest { registry: Some(v2.clone()) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.installed_version, r.previous_version, r.already_installed), (2, 1, false));
    assert_eq!(r.counted_signers.len(), 2);
    // Installing it again changes nothing and says so.
    let again =
        c.admin("shanghai").install_registry(InstallRegistryRequest { registry: Some(v2) }).await.unwrap().into_inner();
    assert!(again.already_installed);

    c.local.restart("shanghai").await.unwrap();
    assert_eq!(installed_version(&c, "shanghai").await, 2);
    assert_eq!(history(&c, "shanghai").await, vec![1, 2]);

    // The original version 1 (still the node's configured file) is now older: refused.
    let v1: ftz_proto::Envelope = prost::Message::decode(v1.as_slice()).unwrap();
    assert_eq!(
        reason(c.admin("shanghai").install_registry(InstallRegistryRequest { registry: Some(v1) }).await),
        (Code::FailedPrecondition, Some(Reason::RegistryOlderVersion))
    );
    // Peers still work under v2.
    c.admin("shanghai").ping_peer(PingPeerRequest { zone_id: "hainan".into() }).await.unwrap();
    c.shutdown().await;
}

#[tokio::test]
async fn a_zone_dropped_from_the_registry_loses_access_at_once() {
    let c = Cluster::start(&ZONES).await;
    c.admin("guangdong").ping_peer(PingPeerRequest { zone_id: "shanghai".into() }).await.unwrap();

    let mut doc = c.registry_doc();
    doc.version = 2;
    doc.zones.retain(|z| z.zone_id != "guangdong");
    let v2 = c.sign_registry(&doc, &["shanghai", "hainan"]);
    c.admin("shanghai").install_registry(InstallRegistryRequest { registry: Some(v2) }).await.unwrap();

    // guangdong still holds v1 and tries; shanghai no longer knows the zone.
    let refused = c.admin("guangdong").ping_peer(PingPeerRequest { zone_id: "shanghai".into() }).await.unwrap_err();
    assert_eq!(ftz_tests::reason_of(&refused), Some(Reason::PeerRefused));
    assert!(refused.message().contains("UNKNOWN_ZONE"), "{}", refused.message());
    // And shanghai will not call it either.
    assert_eq!(
        reason(c.admin("shanghai").ping_peer(PingPeerRequest { zone_id: "guangdong".into() }).await),
        (Code::NotFound, Some(Reason::NoSuchZone))
    );
    c.shutdown().await;
}

/// Finding: an expired registry stayed in force. Past its validity a node serves only what
/// installs the next one (and its status), and calls no zone; the next version restores trust.
#[tokio::test]
async fn a_node_does_not_run_on_an_expired_registry() {
    use std::sync::Arc;

    use ftz_core::{Clock, ManualClock, SystemClock};
    use ftz_proto::{GetNodeStatusRequest, ListZonesRequest};

    const DAY_MS: i64 = 86_400_000;
    let clock = ManualClock::new(SystemClock.now_ms());
    let c = Cluster::start_with_clock(&ZONES, Arc::new(clock.clone())).await;
    // v2, valid one day from now, installed on shanghai.
    let now = clock.now_ms();
    let mut doc = c.registry_doc();
    doc.version = 2;
    doc.issued_at_ms = now;
    doc.valid_until_ms = now + DAY_MS;
    for z in &mut doc.zones {
        z.valid_until_ms = z.valid_until_ms.min(now + 300 * DAY_MS);
    }
    let v2 = c.sign_registry(&doc, &ALL);
    c.admin("shanghai").install_registry(InstallRegistryRequest { registry: Some(v2) }).await.unwrap();
    c.verifier("shanghai").list_zones(ListZonesRequest {}).await.unwrap();

    clock.advance_ms(2 * DAY_MS);
    let (code, why) = reason(c.verifier("shanghai").list_zones(ListZonesRequest {}).await);
    assert_eq!((code, why), (Code::FailedPrecondition, Some(Reason::RegistryExpired)));
    let ping = c.admin("shanghai").ping_peer(PingPeerRequest { zone_id: "hainan".into() }).await;
    assert_eq!(reason(ping).1, Some(Reason::RegistryExpired));
    // Status still answers, and the next version is installed, which restores trust.
    c.admin("shanghai").get_node_status(GetNodeStatusRequest {}).await.unwrap();
    let now = clock.now_ms();
    doc.version = 3;
    doc.issued_at_ms = now;
    doc.valid_from_ms = now - 60_000;
    doc.valid_until_ms = now + 30 * DAY_MS;
    let v3 = c.sign_registry(&doc, &ALL);
    c.admin("shanghai").install_registry(InstallRegistryRequest { registry: Some(v3) }).await.unwrap();
    c.verifier("shanghai").list_zones(ListZonesRequest {}).await.unwrap();
    c.shutdown().await;
}
