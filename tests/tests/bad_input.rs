//! Hostile and broken input against real nodes: over-rate callers, undecodable messages,
//! oversized messages, transfer intents from the far future or past, intents naming another
//! zone than the caller's certificate, replays. Each gets a clear status and reason code,
//! nothing is stored, and refusals of authenticated callers are in the audit log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use bytes::{Buf, BufMut};
use ftz_client::status_meta;
use ftz_core::{Clock, ManualClock, Reason, Role, SystemClock, ZoneId, envelope, envelope::PayloadType};
use ftz_proto::{
    DeliverRequest, FetchRecordRequest, ListEntriesRequest, ListZonesRequest, TransferIntent, TransferSeal,
    audit_client::AuditClient, peer_client::PeerClient,
};
use ftz_tests::{Cluster, reason};
use tonic::{
    Code,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
};

async fn refusals(c: &Cluster, zone: &str, containing: &str) -> usize {
    let req = ListEntriesRequest { limit: 1000, decision: "refused".into(), ..Default::default() };
    let r = AuditClient::new(c.user(zone, Role::Auditor)).list_entries(req).await.unwrap().into_inner();
    r.entries.iter().filter(|e| e.summary.contains(containing)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_over_their_rate_are_refused_with_a_hint_and_logged_once_a_second() {
    let clock = ManualClock::new(SystemClock.now_ms());
    let c = Cluster::start_with_clock(&["shanghai", "hainan"], Arc::new(clock.clone())).await;
    // A user: 50 a second, bursts of 100.
    let mut user = c.verifier("shanghai");
    for i in 0..100 {
        user.list_zones(ListZonesRequest {}).await.unwrap_or_else(|e| panic!("call {i}: {e}"));
    }
    for _ in 0..20 {
        let s = user.list_zones(ListZonesRequest {}).await.unwrap_err();
        assert_eq!((s.code(), ftz_client::reason_of(&s)), (Code::ResourceExhausted, Some(Reason::RateLimited)));
        assert_eq!(status_meta(&s, "retry_after_ms").as_deref(), Some("20"));
    }
    // Another user of the zone is not affected.
    c.admin("shanghai").get_node_status(ftz_proto::GetNodeStatusRequest {}).await.unwrap();
    clock.advance_ms(1_000);
    user.list_zones(ListZonesRequest {}).await.unwrap();

    // A peer: 200 a second, bursts of 400.
    let hn = c.zone("hainan");
    let node = hn.ca.issue_node(&hn.id, &[], hn.validity).unwrap();
    let mut peer = PeerClient::new(c.channel_as("shanghai", Some(&node)));
    let fetch =
        FetchRecordRequest { record_id: "NONE".into(), purpose: "verification".into(), issuing_zone: String::new() };
    // (No policy names hainan: it is told so, whether or not the record exists.)
    for _ in 0..400 {
        assert_eq!(reason(peer.fetch_record(fetch.clone()).await).1, Some(Reason::NoPolicy));
    }
    for _ in 0..10 {
        assert_eq!(reason(peer.fetch_record(fetch.clone()).await).1, Some(Reason::RateLimited));
    }
    // Twenty-one refusals of the user in two separate seconds: one entry each second (the audit
    // log grows no faster than the rate allows). The peer's 400 refusals for a record it does
    // not have already spent its zone's budget of refusal entries in this (frozen) second, so its
    // rate-limit refusals are counted, not logged; the next one logged after the budget refills
    // says how many were left out.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while refusals(&c, "shanghai", "RATE_LIMITED").await < 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(refusals(&c, "shanghai", "RATE_LIMITED").await, 1);
    assert!(refusals(&c, "shanghai", "hainan").await <= 41);
    clock.advance_ms(1_000);
    assert_eq!(reason(peer.fetch_record(fetch.clone()).await).1, Some(Reason::NoPolicy));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while refusals(&c, "shanghai", "not logged").await < 1 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(refusals(&c, "shanghai", "not logged").await, 1);
    c.shutdown().await;
}

/// Raw bytes out, raw bytes in: to send what no well-behaved client would.
#[derive(Debug, Clone, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Self::Error> {
        let v = src.chunk().to_vec();
        src.advance(v.len());
        Ok(Some(v))
    }
}

async fn raw(channel: tonic::transport::Channel, path: &'static str, body: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel).max_encoding_message_size(64 * 1024 * 1024);
    grpc.ready().await.unwrap();
    grpc.unary(tonic::Request::new(body), http::uri::PathAndQuery::from_static(path), RawCodec)
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_and_oversized_messages_get_a_clear_status_and_store_nothing() {
    let c = Cluster::start(&["shanghai", "hainan"]).await;
    let issuer = || c.user("shanghai", Role::Issuer);
    let before = c.admin("shanghai").get_node_status(ftz_proto::GetNodeStatusRequest {}).await.unwrap().into_inner();
    // Not protobuf at all (a field tag with wire type 7).
    let s = raw(issuer(), "/ftz.v1.Issuer/IssueCertification", vec![0xff, 0xff, 0xff, 0xff]).await.unwrap_err();
    assert_eq!((s.code(), ftz_client::reason_of(&s)), (Code::InvalidArgument, Some(Reason::MalformedRequest)), "{s:?}");
    // A record id that is not UTF-8: field 1 (certification), inside it field 1 (id), bytes ff fe.
    let s =
        raw(issuer(), "/ftz.v1.Issuer/IssueCertification", vec![0x0a, 0x04, 0x0a, 0x02, 0xff, 0xfe]).await.unwrap_err();
    assert_eq!((s.code(), ftz_client::reason_of(&s)), (Code::InvalidArgument, Some(Reason::MalformedRequest)), "{s:?}");
    // Five MiB of repeated rows: over the 4 MiB message limit.
    let mut huge = Vec::new();
    for _ in 0..(5 * 1024 * 1024 / 16) {
        huge.extend_from_slice(&[0x0a, 0x0e]);
        huge.extend_from_slice(&[0x0a, 0x0c]);
        huge.extend_from_slice(b"123456789012");
    }
    let s = raw(issuer(), "/ftz.v1.Issuer/ImportRows", huge).await.unwrap_err();
    assert!(matches!(s.code(), Code::OutOfRange | Code::ResourceExhausted), "{s:?}");
    // Nothing was stored, nothing was logged: the issuer is a user of this zone, its malformed
    // calls are its own problem, not a refusal of another zone.
    let after = c.admin("shanghai").get_node_status(ftz_proto::GetNodeStatusRequest {}).await.unwrap().into_inner();
    assert_eq!((after.audit_log_size, after.outbox_items), (before.audit_log_size, 0));
    c.shutdown().await;
}

/// A change to a test intent.
type Change = Box<dyn FnOnce(&mut TransferIntent)>;

/// A delivery from guangdong's node to shanghai's, its intent signed with guangdong's real node
/// key, made with `intent` changed as a test needs.
fn delivery(c: &Cluster, change: impl FnOnce(&mut TransferIntent)) -> DeliverRequest {
    let key = ftz_pki::files::read_signing_key(&c.zone("guangdong").node_key_path()).unwrap();
    let payload = b"not even a record".to_vec();
    let nonce = vec![7u8; 32];
    let mut intent = TransferIntent {
        transfer_id: vec![1; 16],
        provider_zone: "guangdong".into(),
        consumer_zone: "shanghai".into(),
        policy_id: "gd-sh".into(),
        policy_version: 1,
        payload_commitment: ftz_core::sha256(&[nonce.as_slice(), &payload].concat()).to_vec(),
        payload_size: payload.len() as u64,
        created_at_ms: c.clock.now_ms(),
        ..Default::default()
    };
    change(&mut intent);
    let env = envelope::seal(PayloadType::TRANSFER_INTENT, &intent, &[&key]);
    DeliverRequest {
        seal: Some(TransferSeal { intent: Some(env), nonce }),
        record: payload,
        policy_id: "gd-sh".into(),
        policy_version: 1,
        purpose: "import-clearance".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intents_from_the_far_future_or_past_or_naming_another_zone_are_refused_and_logged() {
    let c = Cluster::start(&["shanghai", "hainan", "guangdong"]).await;
    let gd = c.zone("guangdong");
    let node = gd.ca.issue_node(&ZoneId::new("guangdong").unwrap(), &[], gd.validity).unwrap();
    let mut peer = PeerClient::new(c.channel_as("shanghai", Some(&node)));
    let now = c.clock.now_ms();
    let cases: [(&str, Change, Reason); 4] = [
        ("a day ahead", Box::new(move |i| i.created_at_ms = now + 86_400_000), Reason::StaleRequest),
        ("eight days old", Box::new(move |i| i.created_at_ms = now - 8 * 86_400_000), Reason::StaleRequest),
        ("from hainan", Box::new(|i| i.provider_zone = "hainan".into()), Reason::ZoneMismatch),
        ("for hainan", Box::new(|i| i.consumer_zone = "hainan".into()), Reason::ZoneMismatch),
    ];
    for (what, change, want) in cases {
        let res = peer.deliver(delivery(&c, change)).await;
        assert_eq!(reason(res).1, Some(want), "{what}");
    }
    // Each refusal of guangdong's node is in shanghai's log; no transfer was logged.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while refusals(&c, "shanghai", "refused guangdong").await < 4 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(refusals(&c, "shanghai", "STALE_REQUEST").await, 2);
    assert_eq!(refusals(&c, "shanghai", "ZONE_MISMATCH").await, 2);
    let req = ListEntriesRequest { decision: "transfer".into(), ..Default::default() };
    let t = AuditClient::new(c.user("shanghai", Role::Auditor)).list_entries(req).await.unwrap().into_inner();
    assert!(t.entries.is_empty());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_payload_type_is_named() {
    let c = Cluster::start(&["shanghai", "hainan", "guangdong"]).await;
    // A registry envelope relabelled as a certification.
    let bytes = std::fs::read(&c.local.fed.registry_path).unwrap();
    let mut env = <ftz_proto::Envelope as prost::Message>::decode(bytes.as_slice()).unwrap();
    env.payload_type = PayloadType::CERTIFICATION.into();
    let res = c.admin("shanghai").install_registry(ftz_proto::InstallRegistryRequest { registry: Some(env) }).await;
    assert_eq!(reason(res), (Code::InvalidArgument, Some(Reason::WrongPayloadType)));
    // A transfer intent relabelled: the delivery is refused and logged.
    let gd = c.zone("guangdong");
    let node = gd.ca.issue_node(&ZoneId::new("guangdong").unwrap(), &[], gd.validity).unwrap();
    let mut req = delivery(&c, |_| {});
    if let Some(i) = req.seal.as_mut().and_then(|s| s.intent.as_mut()) {
        i.payload_type = PayloadType::TRANSFER_RECEIPT.into();
    }
    let res = PeerClient::new(c.channel_as("shanghai", Some(&node))).deliver(req).await;
    let (code, r) = reason(res);
    assert_eq!((code, r), (Code::InvalidArgument, Some(Reason::TransferInvalid)));
    c.shutdown().await;
}

/// Finding: every authorisation refusal of an authenticated caller was logged with the method
/// path it called, up to the 16 KiB a request header may hold. What the log keeps of a path is
/// clipped (128 bytes), so such refusals cost the log little whatever the caller sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_method_path_is_clipped_in_the_log() {
    let c = Cluster::start(&["shanghai", "hainan"]).await;
    let hn = c.zone("hainan");
    let node = hn.ca.issue_node(&ZoneId::new("hainan").unwrap(), &[], hn.validity).unwrap();
    let path: &'static str = Box::leak(format!("/ftz.v1.Admin/{}", "X".repeat(12_000)).into_boxed_str());
    let s = raw(c.channel_as("shanghai", Some(&node)), path, vec![]).await.unwrap_err();
    assert_ne!(s.code(), Code::Ok);
    let req = ListEntriesRequest { limit: 1000, decision: "refused".into(), ..Default::default() };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let entry = loop {
        let r = AuditClient::new(c.user("shanghai", Role::Auditor)).list_entries(req.clone()).await.unwrap();
        if let Some(e) = r.into_inner().entries.into_iter().find(|e| e.summary.contains("XXXX")) {
            break e;
        }
        assert!(tokio::time::Instant::now() < deadline, "the refusal was not logged: {s:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(entry.leaf.len() < 1024, "a {} byte leaf for a refused call", entry.leaf.len());
    assert!(!entry.summary.contains(&"X".repeat(200)), "{}", entry.summary);
    c.shutdown().await;
}
