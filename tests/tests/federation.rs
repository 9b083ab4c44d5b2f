//! Three zones on 127.0.0.1: every pair pings with signed challenges, and every caller that
//! should not get in is refused on its first RPC with the right status and reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ftz_core::{Identity, Reason, Role, ZoneId};
use ftz_pki::issue::{Validity, ZoneCa};
use ftz_proto::{
    GetNodeStatusRequest, ListZonesRequest, PingPeerRequest, PingRequest, admin_client::AdminClient,
    peer_client::PeerClient, verify_client::VerifyClient,
};
use ftz_tests::{Cluster, reason};
use tonic::Code;

const ZONES: [&str; 3] = ["shanghai", "hainan", "guangdong"];

#[tokio::test]
async fn every_pair_of_nodes_pings() {
    let c = Cluster::start(&ZONES).await;
    for from in ZONES {
        let mut admin = c.admin(from);
        for to in ZONES.iter().filter(|z| **z != from) {
            let r = admin
                .ping_peer(PingPeerRequest { zone_id: to.to_string() })
                .await
                .unwrap_or_else(|s| panic!("{from} -> {to}: {s:?}"))
                .into_inner();
            assert_eq!(r.zone_id, *to);
            assert_eq!(r.peer_registry_version, 1);
            // The answer was signed by exactly the node key the registry lists for the peer.
            assert_eq!(r.peer_node_key_id, c.zone(to).node_key_id.to_string());
        }
    }
    c.shutdown().await;
}

#[tokio::test]
async fn node_status_reports_zone_and_registry() {
    let c = Cluster::start(&ZONES).await;
    let s = c.admin("hainan").get_node_status(GetNodeStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(s.zone_id, "hainan");
    assert_eq!(s.registry_version, 1);
    assert_eq!(s.node_key_id, c.zone("hainan").node_key_id.to_string());
    let mut peers = s.peer_zones.clone();
    peers.sort();
    assert_eq!(peers, vec!["guangdong", "shanghai"]);
    c.shutdown().await;
}

fn validity(c: &Cluster) -> Validity {
    c.zone("shanghai").validity
}

#[tokio::test]
async fn callers_without_a_valid_identity_are_refused_on_their_first_rpc() {
    let c = Cluster::start(&ZONES).await;
    let v = validity(&c);
    let sh = ZoneId::new("shanghai").unwrap();

    // (a) no client certificate at all.
    let mut anon = AdminClient::new(c.channel_as("shanghai", None));
    assert_eq!(
        reason(anon.get_node_status(GetNodeStatusRequest {}).await),
        (Code::Unauthenticated, Some(Reason::NoClientCertificate))
    );

    // (b) a certificate from a CA no registry lists, naming a real zone, as user and as node.
    let rogue = ZoneCa::generate_named("rogue CA", v).unwrap();
    let fake_admin = rogue.issue_user(&Identity::user(sh.clone(), Role::Admin, "mallory").unwrap(), v).unwrap();
    let mut client = AdminClient::new(c.channel_as("shanghai", Some(&fake_admin)));
    assert_eq!(
        reason(client.get_node_status(GetNodeStatusRequest {}).await),
        (Code::Unauthenticated, Some(Reason::UntrustedCertificate))
    );
    let fake_node = rogue.issue_node(&ZoneId::new("hainan").unwrap(), &[], v).unwrap();
    let mut peer = PeerClient::new(c.channel_as("shanghai", Some(&fake_node)));
    assert_eq!(
        reason(peer.ping(PingRequest { challenge: None }).await),
        (Code::Unauthenticated, Some(Reason::UntrustedCertificate))
    );

    // ... and a real zone's CA vouching for another zone's node is just as untrusted.
    let cross = c.zone("guangdong").ca.issue_node(&ZoneId::new("hainan").unwrap(), &[], v).unwrap();
    let mut peer = PeerClient::new(c.channel_as("shanghai", Some(&cross)));
    assert_eq!(
        reason(peer.ping(PingRequest { challenge: None }).await),
        (Code::Unauthenticated, Some(Reason::UntrustedCertificate))
    );

    // (c) a certificate naming a zone the registry does not list.
    let macau = c.zone("shanghai").ca.issue_node(&ZoneId::new("macau").unwrap(), &[], v).unwrap();
    let mut peer = PeerClient::new(c.channel_as("shanghai", Some(&macau)));
    assert_eq!(
        reason(peer.ping(PingRequest { challenge: None }).await),
        (Code::Unauthenticated, Some(Reason::UnknownZone))
    );

    // A certificate without an ftz:// identity.
    let anonymous = c.zone("shanghai").ca.issue_with_uris(&["https://example.org/"], v).unwrap();
    let mut client = AdminClient::new(c.channel_as("shanghai", Some(&anonymous)));
    assert_eq!(
        reason(client.get_node_status(GetNodeStatusRequest {}).await),
        (Code::Unauthenticated, Some(Reason::BadCertificateIdentity))
    );
    c.shutdown().await;
}

#[tokio::test]
async fn authenticated_callers_reach_only_what_their_role_allows() {
    let c = Cluster::start(&ZONES).await;

    // (d) a valid user certificate with the wrong role.
    let mut as_enterprise = AdminClient::new(c.user("shanghai", Role::Enterprise));
    assert_eq!(
        reason(as_enterprise.get_node_status(GetNodeStatusRequest {}).await),
        (Code::PermissionDenied, Some(Reason::RoleNotAllowed))
    );
    // ... while the right role gets in.
    let zones = VerifyClient::new(c.user("shanghai", Role::Enterprise))
        .list_zones(ListZonesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(zones.zones.len(), 3);

    // (e) a zone user certificate used as a peer: hainan's admin calls shanghai's Peer service.
    let mut user_as_peer = PeerClient::new(c.user_at("hainan", Role::Admin, "shanghai"));
    assert_eq!(
        reason(user_as_peer.ping(PingRequest { challenge: None }).await),
        (Code::PermissionDenied, Some(Reason::NotAPeer))
    );
    // The same foreign user on a user service.
    let mut foreign = AdminClient::new(c.user_at("hainan", Role::Admin, "shanghai"));
    assert_eq!(
        reason(foreign.get_node_status(GetNodeStatusRequest {}).await),
        (Code::PermissionDenied, Some(Reason::ForeignUser))
    );

    // A node certificate on a user service.
    let v = c.zone("hainan").validity;
    let hainan_node = c.zone("hainan").ca.issue_node(&ZoneId::new("hainan").unwrap(), &[], v).unwrap();
    let mut node_as_user = AdminClient::new(c.channel_as("shanghai", Some(&hainan_node)));
    assert_eq!(
        reason(node_as_user.get_node_status(GetNodeStatusRequest {}).await),
        (Code::PermissionDenied, Some(Reason::NotAUser))
    );
    c.shutdown().await;
}

#[tokio::test]
async fn methods_no_rule_names_are_denied_and_health_is_open_to_the_authenticated() {
    let c = Cluster::start(&["shanghai", "hainan"]).await;
    let channel = c.user("shanghai", Role::Admin);

    // A path outside every rule: refused before routing (deny by default), not UNIMPLEMENTED.
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.unwrap();
    let codec: tonic_prost::ProstCodec<GetNodeStatusRequest, ftz_proto::NodeStatus> =
        tonic_prost::ProstCodec::default();
    let res = grpc
        .unary(
            tonic::Request::new(GetNodeStatusRequest {}),
            http::uri::PathAndQuery::from_static("/ftz.v1.Secret/Do"),
            codec,
        )
        .await;
    assert_eq!(reason(res), (Code::PermissionDenied, Some(Reason::MethodNotAllowed)));

    // Health: any authenticated caller, here a user and a peer node; nobody without a certificate.
    let check = || tonic_health::pb::HealthCheckRequest { service: "ftz.v1.Peer".into() };
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health.check(check()).await.unwrap().into_inner().status;
    assert_eq!(status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    let v = c.zone("hainan").validity;
    let hainan_node = c.zone("hainan").ca.issue_node(&ZoneId::new("hainan").unwrap(), &[], v).unwrap();
    let mut as_peer = tonic_health::pb::health_client::HealthClient::new(c.channel_as("shanghai", Some(&hainan_node)));
    as_peer.check(check()).await.unwrap();
    let mut anon = tonic_health::pb::health_client::HealthClient::new(c.channel_as("shanghai", None));
    assert_eq!(reason(anon.check(check()).await), (Code::Unauthenticated, Some(Reason::NoClientCertificate)));
    c.shutdown().await;
}
