//! A dishonest zone cannot break the evidence: attacks by a zone that holds its real node key
//! and certificate (see `ftz_tests::rogue`), each of which must be refused. Every test here
//! failed against the code before its fix (docs/threat-model.md lists them per finding).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ftz_core::{KeyId, Reason, Role, ZoneId, envelope::PayloadType};
use ftz_pki::files;
use ftz_policy::bundle::{OfflineInputs, verify_bundle};
use ftz_proto::{
    DataClass, IssueCertificationRequest, ListEntriesRequest, PingChallenge, PingPeerRequest, PingRequest,
    VerificationBundle, audit_client::AuditClient,
};
use ftz_tests::{
    Cluster, cert_rule, certification, reason_of,
    rogue::{RogueZone, reseal, with_junk_signature_first},
};
use prost::Message;

const ZONES: [&str; 3] = ["shanghai", "hainan", "guangdong"];
const DAY_MS: i64 = 86_400_000;

async fn issued(c: &Cluster, id: &str) {
    c.issuer("shanghai")
        .issue_certification(IssueCertificationRequest { certification: Some(certification(c, id, "AEO_ADVANCED")) })
        .await
        .unwrap();
}

/// Every entry of `zone`'s log, page by page, as an auditor's export reads it.
async fn whole_log(c: &Cluster, zone: &str) -> Result<usize, tonic::Status> {
    let mut auditor = AuditClient::new(c.user(zone, Role::Auditor));
    let (mut from, mut n) = (0, 0);
    loop {
        let page = auditor
            .list_entries(ListEntriesRequest { from_index: from, limit: 1000, ..Default::default() })
            .await?
            .into_inner();
        n += page.entries.len();
        if page.next_index >= page.log_size {
            return Ok(n);
        }
        from = page.next_index;
    }
}

fn assert_refused(res: Result<(), tonic::Status>, reason: Reason) {
    let s = res.expect_err("refused");
    assert_eq!(ftz_tests::reason_of(&s), Some(reason), "{s:?}");
}

/// Finding: a peer poisoned shanghai's log for good with a 70 KB refusal reason in a receipt
/// (every later listing and export failed with INTERNAL "malformed leaf: too large").
#[tokio::test]
async fn a_receipt_with_an_oversized_reason_is_refused_and_the_log_stays_readable() {
    let c = Cluster::start(&ZONES).await;
    c.allow("sh-hn", "shanghai", "hainan", DataClass::Certification).await;
    issued(&c, "SH-1").await;
    let rogue = RogueZone::new(&c, "hainan", "shanghai");
    let got = rogue.fetch("SH-1", "verification").await.unwrap();
    let intent = got.seal.unwrap().intent.unwrap();
    let now = c.clock.now_ms();
    let huge = rogue.receipt(&intent, now, |r| {
        r.accepted = false;
        r.reason = "x".repeat(70_000);
    });
    assert_refused(rogue.acknowledge(&intent, &huge).await, Reason::TransferInvalid);
    // A reason that is no reason code at all is refused too, however short.
    let made_up = rogue.receipt(&intent, now, |r| {
        r.accepted = false;
        r.reason = "because".into();
    });
    assert_refused(rogue.acknowledge(&intent, &made_up).await, Reason::TransferInvalid);
    // The honest receipt is still taken, and every entry of the log still reads back.
    rogue.acknowledge(&intent, &rogue.receipt(&intent, now, |_| {})).await.unwrap();
    assert!(whole_log(&c, "shanghai").await.unwrap() > 0);
    c.shutdown().await;
}

/// Finding: a receipt with a junk signature placed before the real one was accepted, the log
/// kept the junk one, and shanghai's own log then failed `verify-log` (a deniable transfer).
#[tokio::test]
async fn a_receipt_or_intent_with_an_extra_signature_is_refused() {
    let c = Cluster::start(&ZONES).await;
    c.allow("sh-hn", "shanghai", "hainan", DataClass::Certification).await;
    issued(&c, "SH-2").await;
    let rogue = RogueZone::new(&c, "hainan", "shanghai");
    let intent = rogue.fetch("SH-2", "verification").await.unwrap().seal.unwrap().intent.unwrap();
    let receipt = rogue.receipt(&intent, c.clock.now_ms(), |_| {});
    assert_refused(rogue.acknowledge(&intent, &with_junk_signature_first(&receipt)).await, Reason::TransferInvalid);
    assert_refused(rogue.acknowledge(&with_junk_signature_first(&intent), &receipt).await, Reason::TransferInvalid);
    // Nothing was logged for it: the honest receipt is the one that lands.
    rogue.acknowledge(&intent, &receipt).await.unwrap();
    c.shutdown().await;
}

/// Finding: a bundle re-signed by its exporting node with a very large maximum status age
/// judged VALID six months on; the verifier, not the exporter, decides how old a status may be.
#[tokio::test]
async fn a_bundle_re_signed_with_a_long_status_age_is_stale_six_months_on() {
    let c = Cluster::start(&ZONES).await;
    c.agree("sh-hn", "shanghai", "hainan", vec![cert_rule(&["AEO_ADVANCED"])], 365 * DAY_MS).await;
    issued(&c, "SH-3").await;
    let bundle = c.export_bundle("hainan", "shanghai", "SH-3").await;
    let mut doc: VerificationBundle =
        ftz_core::envelope::decode_payload(&bundle, PayloadType::VERIFICATION_BUNDLE).unwrap();
    doc.max_status_age_ms = i64::MAX / 4;
    let hainan_node = files::read_signing_key(&c.zone("hainan").node_key_path()).unwrap();
    let forged = reseal(PayloadType::VERIFICATION_BUNDLE, &doc, &hainan_node).encode_to_vec();

    let anchor: KeyId = c.zone("hainan").authority_key_id;
    let zone = ZoneId::new("hainan").unwrap();
    let now = c.clock.now_ms();
    let inputs = OfflineInputs {
        anchor: &anchor,
        recognising_zone: &zone,
        at: now,
        max_status_age_ms: None,
        min_registry_version: None,
    };
    // Now it is valid: the status is fresh.
    assert!(verify_bundle(&forged, inputs).unwrap().verdict.valid());
    // Six months on it is not, whatever the bundle says.
    let later = verify_bundle(&forged, OfflineInputs { at: now + 182 * DAY_MS, ..inputs }).unwrap();
    assert_eq!(later.verdict.status_reason, Some(Reason::StatusStale), "{}", later.verdict.explanation());
    // A bundle's smaller bound still narrows the verifier's.
    doc.max_status_age_ms = 1_000;
    let strict = reseal(PayloadType::VERIFICATION_BUNDLE, &doc, &hainan_node).encode_to_vec();
    let v = verify_bundle(&strict, OfflineInputs { at: now + 60_000, ..inputs }).unwrap();
    assert_eq!(v.verdict.status_reason, Some(Reason::StatusStale));
    // Past the registry's validity the bundle proves nothing.
    let err = verify_bundle(&forged, OfflineInputs { at: now + 400 * DAY_MS, ..inputs }).unwrap_err();
    assert_eq!(err.reason(), Reason::RegistryExpired);
    // A verifier that knows of registry v2 refuses the bundle's v1 (a downgrade).
    let err = verify_bundle(&forged, OfflineInputs { min_registry_version: Some(2), ..inputs }).unwrap_err();
    assert_eq!(err.reason(), Reason::RegistryNotAnchored);
    // An export time after the time of judgement is a lie.
    doc.max_status_age_ms = 600_000;
    doc.exported_at_ms = now + 30 * DAY_MS;
    let future = reseal(PayloadType::VERIFICATION_BUNDLE, &doc, &hainan_node).encode_to_vec();
    assert_eq!(verify_bundle(&future, inputs).unwrap_err().reason(), Reason::BundleInvalid);
    c.shutdown().await;
}

fn uscc(i: usize) -> String {
    ftz_tests::uscc("9131011500000", i as u64)
}

/// Finding: under `min_group_size = 5` and no differential privacy, SUM(output_value) filtered
/// on C38 minus the same filtered on C381 was exactly the one C382 enterprise's output. The
/// malicious consumer's strategies (nested prefixes, a coarser partition minus a finer one) are
/// refused; the one partition the policy names is answered.
#[tokio::test]
async fn a_consumer_cannot_difference_exact_aggregates() {
    use ftz_proto::{
        AggregateFunction, AggregateQuery, AggregationRules, FieldAction, FieldRule, ImportRowsRequest, IndustryRow,
        QueryIndustryDataRequest, RowFilter,
    };
    let c = Cluster::start(&ZONES).await;
    // Six enterprises in C381, one in C382 whose figure is the secret.
    let rows: Vec<IndustryRow> = (0..7)
        .map(|i| IndustryRow {
            line: i as u64 + 2,
            enterprise_uscc: uscc(i),
            enterprise_name: format!("Enterprise {i}"),
            industry_code: if i < 6 { "C3811".into() } else { "C3821".into() },
            region: "310115".into(),
            period: "2026-Q1".into(),
            output_value: if i < 6 { 1_000_000 } else { 7_777_777 },
            employment: 10,
            capacity: 1,
        })
        .collect();
    c.issuer("shanghai").import_rows(ImportRowsRequest { rows }).await.unwrap();
    let rule = |f: &str, a: FieldAction, p: &str| FieldRule { field: f.into(), action: a as i32, parameter: p.into() };
    let mut policy = ftz_devkit::dev::record_policy(
        "sh-hn-exact",
        "shanghai",
        "hainan",
        DataClass::IndustryData,
        &["industrial-planning"],
        c.clock.now_ms(),
    );
    policy.field_rules = vec![
        rule("industry_code", FieldAction::Generalise, "prefix:3"),
        rule("region", FieldAction::Generalise, "prefix:4"),
        rule("output_value", FieldAction::Keep, ""),
    ];
    policy.aggregation = Some(AggregationRules {
        group_by: vec!["industry_code".into(), "region".into()],
        min_group_size: 5,
        differential_privacy: false,
        ..Default::default()
    });
    c.local.install_policy(&policy).await.unwrap();
    let ask = |group_by: &[&str], filters: Vec<RowFilter>| QueryIndustryDataRequest {
        provider_zone: "shanghai".into(),
        query: Some(AggregateQuery {
            function: AggregateFunction::Sum as i32,
            metric: "output_value".into(),
            group_by: group_by.iter().map(|s| s.to_string()).collect(),
            filters,
            purpose: "industrial-planning".into(),
        }),
    };
    let prefix = |p: &str| vec![RowFilter { field: "industry_code".into(), prefix: p.into() }];
    for (group_by, filters) in [
        (&["industry_code", "region"][..], prefix("C38")),
        (&["industry_code", "region"][..], prefix("C381")),
        (&["industry_code"][..], vec![]),
        (&["region"][..], vec![]),
    ] {
        let err = c.verifier("hainan").query_industry_data(ask(group_by, filters)).await.unwrap_err();
        assert_eq!(ftz_client::status_meta(&err, "peer_reason").as_deref(), Some("FIELD_NOT_ALLOWED"), "{err:?}");
    }
    // The named partition: C38 in 3101 holds all seven, so no single figure shows.
    let a = c.verifier("hainan").query_industry_data(ask(&["industry_code", "region"], vec![])).await;
    let a = a.unwrap().into_inner();
    assert_eq!(a.groups.len(), 1);
    assert_eq!(a.groups[0].value, 6.0 * 1_000_000.0 + 7_777_777.0);
    c.shutdown().await;
}

/// Finding: hainan, asking shanghai ~800 times a second for a record it does not have, grew
/// shanghai's audit log by 238,084 refusal entries in five minutes (about 20 GB a day).
/// Refusals involving one zone are now logged at a bounded rate; the rest are counted.
#[tokio::test]
async fn a_zone_cannot_fill_another_zones_log_with_refusals() {
    let c = Cluster::start(&ZONES).await;
    c.allow("sh-hn", "shanghai", "hainan", DataClass::Certification).await;
    let rogue = RogueZone::new(&c, "hainan", "shanghai");
    let started = std::time::Instant::now();
    let asks = (0..600).map(|i| {
        let rogue = &rogue;
        async move { rogue.fetch(&format!("NO-SUCH-{i}"), "verification").await }
    });
    let answers = futures_util::future::join_all(asks).await;
    assert!(answers.iter().all(Result::is_err));
    let seconds = started.elapsed().as_secs_f64();
    let mut auditor = AuditClient::new(c.user("shanghai", Role::Auditor));
    let refusals = auditor
        .list_entries(ListEntriesRequest { limit: 1000, decision: "refused".into(), ..Default::default() })
        .await
        .unwrap()
        .into_inner()
        .entries;
    // At most the burst (40) and 20 a second, plus one for the rate limiter's own refusals.
    let allowed = 40.0 + 21.0 * (seconds + 1.0);
    assert!((refusals.len() as f64) <= allowed, "{} refusal entries in {seconds:.1} s", refusals.len());
    assert!(refusals.len() >= 20, "refusals are still logged: {}", refusals.len());
    c.shutdown().await;
}

/// Finding: 1,022 TLS connections without a client certificate, idle after the HTTP/2 preface,
/// took every connection slot of a node: its own admin then got "tls handshake eof". Now such
/// connections share a small pool and displace each other; a real caller gets through.
#[tokio::test]
async fn a_flood_of_anonymous_connections_does_not_lock_callers_out() {
    use std::sync::Arc;

    use ftz_core::{Clock, SystemClock};
    use ftz_devkit::LocalFederation;
    use tokio::io::AsyncWriteExt;

    const SLOTS: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let tune: ftz_devkit::local::Tune = Arc::new(|cfg| cfg.limits.max_connections = SLOTS);
    let fed = LocalFederation::start_tuned(&["shanghai", "hainan"], &dir.path().join("fed"), clock.clone(), tune)
        .await
        .unwrap();
    let sh = fed.fed.zone("shanghai").unwrap();
    let expect =
        ftz_client::ExpectedServer { zone: sh.id.clone(), ca_der: sh.ca.issued.cert_der.clone(), clock: clock.clone() };
    let tls = Arc::new(ftz_client::tls::client_config_without_certificate(expect).unwrap());
    let addr = fed.node("shanghai").unwrap().local_addr();
    // More anonymous connections than the node has slots, each idle after the HTTP/2 preface.
    let mut held = Vec::new();
    for _ in 0..SLOTS + 50 {
        let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else { continue };
        let name = rustls::pki_types::ServerName::try_from("shanghai.node.ftz.invalid").unwrap();
        if let Ok(mut s) = tokio_rustls::TlsConnector::from(tls.clone()).connect(name, tcp).await {
            // The client preface and an empty SETTINGS frame.
            let _ = s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00").await;
            let _ = s.flush().await;
            held.push(s);
        }
    }
    assert!(held.len() > SLOTS / 2, "the flood connected {} times", held.len());
    // The zone's own admin, on a new connection, is served.
    let mut admin = ftz_proto::admin_client::AdminClient::new(fed.user_channel("shanghai", Role::Admin).unwrap());
    let status = admin.get_node_status(ftz_proto::GetNodeStatusRequest {}).await;
    assert!(status.is_ok(), "the admin is locked out: {status:?}");
    // So is another zone's node.
    let mut peer = RogueZone::new_with(&fed, "hainan", "shanghai", clock.clone()).peer;
    let ping = peer.ping(ftz_proto::PingRequest { challenge: None }).await.unwrap_err();
    assert_eq!(ftz_tests::reason_of(&ping), Some(Reason::InvalidArgument), "{ping:?}");
    drop(held);
    fed.shutdown().await;
}

/// Finding: a witness stored megabytes of "evidence" per bad checkpoint call, unbounded. A
/// checkpoint and its proof are bounded before anything is kept.
#[tokio::test]
async fn a_zone_cannot_fill_a_witness_with_evidence() {
    use ftz_audit::{
        checkpoint::{Checkpoint, origin},
        note::{Signer, TYPE_ED25519, sign},
    };
    use ftz_proto::{ListEquivocationsRequest, WitnessRequest};

    let c = Cluster::start(&ZONES).await;
    let rogue = RogueZone::new(&c, "hainan", "shanghai");
    // A checkpoint of hainan's own log, validly signed by its node key, stating a bogus root;
    // the "proof" is megabytes of junk hashes.
    let cp = Checkpoint { origin: origin("hainan"), size: 1_000_000, root: [9; 32] };
    let note = sign(&cp.to_text(), &Signer::new(&cp.origin, TYPE_ED25519, &rogue.node_key).unwrap()).unwrap();
    let junk = vec![vec![0xEE; 32]; 100_000];
    let res = rogue
        .peer
        .clone()
        .witness(WitnessRequest { old_size: 0, checkpoint: note.clone(), consistency_proof: junk })
        .await;
    assert_eq!(ftz_tests::reason_of(&res.unwrap_err()), Some(Reason::CheckpointInvalid));
    // A note padded with thousands of signature lines.
    let padded = format!(
        "{note}{}",
        "— ftz/x/audit AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n".repeat(5_000)
    );
    let res =
        rogue.peer.clone().witness(WitnessRequest { old_size: 0, checkpoint: padded, consistency_proof: vec![] }).await;
    assert_eq!(ftz_tests::reason_of(&res.unwrap_err()), Some(Reason::CheckpointInvalid));
    let mut auditor = AuditClient::new(c.user("shanghai", Role::Auditor));
    let evidence = auditor.list_equivocations(ListEquivocationsRequest {}).await.unwrap().into_inner().evidence;
    assert!(evidence.is_empty(), "{} pieces of evidence kept", evidence.len());
    c.shutdown().await;
}

/// Finding: a single leaked user certificate could not be revoked short of a new zone CA. The
/// zone's authority withdraws it on a signed list; installed, calls with it are refused at once.
#[tokio::test]
async fn a_leaked_user_certificate_is_withdrawn_by_the_zone() {
    use ftz_core::{Identity, envelope};
    use ftz_proto::{
        InstallUserRevocationsRequest, ListZonesRequest, UserCertificateRevocations, verify_client::VerifyClient,
    };

    let mut c = Cluster::start(&ZONES).await;
    let sh = c.zone("shanghai");
    let leaked_id = Identity::user(sh.id.clone(), Role::Enterprise, "leaked").unwrap();
    let leaked = sh.ca.issue_user(&leaked_id, sh.validity).unwrap();
    let mut thief = VerifyClient::new(c.channel_as("shanghai", Some(&leaked)));
    thief.list_zones(ListZonesRequest {}).await.unwrap();

    let list = |version: u64| UserCertificateRevocations {
        zone_id: "shanghai".into(),
        version,
        certificate_digests: vec![ftz_core::sha256(&leaked.cert_der).to_vec()],
        issued_at_ms: c.clock.now_ms(),
    };
    let signed = |doc: &UserCertificateRevocations, by: &str| {
        envelope::seal(PayloadType::USER_CERTIFICATE_REVOCATIONS, doc, &[&c.authority_key(by)])
    };
    let install = |env| async {
        c.admin("shanghai").install_user_revocations(InstallUserRevocationsRequest { revocations: Some(env) }).await
    };
    // Only shanghai's own authority withdraws shanghai's certificates.
    assert!(install(signed(&list(1), "hainan")).await.is_err());
    thief.list_zones(ListZonesRequest {}).await.unwrap();
    let r = install(signed(&list(2), "shanghai")).await.unwrap().into_inner();
    assert_eq!((r.version, r.already_installed, r.certificates), (2, false, 1));
    let s = thief.list_zones(ListZonesRequest {}).await.unwrap_err();
    assert_eq!(ftz_tests::reason_of(&s), Some(Reason::CertificateRevoked), "{s:?}");
    // Every other user of the zone goes on; an older list does not bring the certificate back.
    c.verifier("shanghai").list_zones(ListZonesRequest {}).await.unwrap();
    assert!(
        install(signed(&UserCertificateRevocations { certificate_digests: vec![], ..list(1) }, "shanghai"))
            .await
            .is_err()
    );
    assert_eq!(
        ftz_tests::reason_of(&thief.list_zones(ListZonesRequest {}).await.unwrap_err()),
        Some(Reason::CertificateRevoked)
    );
    // It stays withdrawn across a restart.
    c.local.restart("shanghai").await.unwrap();
    let mut thief = VerifyClient::new(c.channel_as("shanghai", Some(&leaked)));
    let s = thief.list_zones(ListZonesRequest {}).await.unwrap_err();
    assert_eq!(ftz_tests::reason_of(&s), Some(Reason::CertificateRevoked), "{s:?}");
    c.shutdown().await;
}

/// Finding: `FetchRecord` told whether a record exists before the policy check, so any zone
/// could probe another's record ids. A zone no policy lets receive records is told only that.
#[tokio::test]
async fn a_zone_without_a_policy_cannot_probe_which_records_exist() {
    let c = Cluster::start(&ZONES).await;
    c.allow("sh-hn", "shanghai", "hainan", DataClass::Certification).await;
    issued(&c, "SH-9").await;
    let stranger = RogueZone::new(&c, "guangdong", "shanghai");
    for id in ["SH-9", "SH-NONE"] {
        let s = stranger.fetch(id, "verification").await.unwrap_err();
        assert_eq!(ftz_tests::reason_of(&s), Some(Reason::NoPolicy), "{id}: {s:?}");
    }
    // A zone a policy names is told when a record does not exist.
    let partner = RogueZone::new(&c, "hainan", "shanghai");
    let s = partner.fetch("SH-NONE", "verification").await.unwrap_err();
    assert_eq!(ftz_tests::reason_of(&s), Some(Reason::RecordNotFound));
    c.shutdown().await;
}

/// Waits (at most `secs`) until shanghai's admin, on a new connection, is served again; until
/// then each try must be refused only for holding too many connections.
async fn admin_gets_a_place(fed: &ftz_devkit::LocalFederation, secs: u64, never: &str) {
    use ftz_proto::{GetNodeStatusRequest, admin_client::AdminClient};
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let mut again = AdminClient::new(fed.user_channel("shanghai", Role::Admin).unwrap());
        match again.get_node_status(GetNodeStatusRequest {}).await {
            Ok(_) => return,
            Err(e) if tokio::time::Instant::now() < deadline => {
                assert_eq!(ftz_tests::reason_of(&e), Some(Reason::RateLimited), "{e:?}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{never}: {e:?}"),
        }
    }
}

/// Finding: a caller with real credentials could hold every connection slot of a node. Each
/// authenticated caller holds at most `limits.max_connections_per_caller` connections.
#[tokio::test]
async fn one_caller_cannot_hold_every_connection() {
    use std::sync::Arc;

    use ftz_core::{Clock, SystemClock};
    use ftz_devkit::LocalFederation;
    use ftz_proto::{GetNodeStatusRequest, admin_client::AdminClient};

    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let tune: ftz_devkit::local::Tune = Arc::new(|cfg| cfg.limits.max_connections_per_caller = 3);
    let fed =
        LocalFederation::start_tuned(&["shanghai", "hainan"], &dir.path().join("fed"), clock, tune).await.unwrap();
    let mut held = Vec::new();
    for i in 0..3 {
        let mut admin = AdminClient::new(fed.user_channel("shanghai", Role::Admin).unwrap());
        admin.get_node_status(GetNodeStatusRequest {}).await.unwrap_or_else(|e| panic!("connection {i}: {e:?}"));
        held.push(admin);
    }
    // A fourth connection of the same admin is refused; its first ones still work.
    let mut fourth = AdminClient::new(fed.user_channel("shanghai", Role::Admin).unwrap());
    let s = fourth.get_node_status(GetNodeStatusRequest {}).await.unwrap_err();
    assert_eq!(ftz_tests::reason_of(&s), Some(Reason::RateLimited), "{s:?}");
    held[0].get_node_status(GetNodeStatusRequest {}).await.unwrap();
    // Another caller is not affected; a closed connection frees its place.
    let mut auditor = ftz_proto::audit_client::AuditClient::new(fed.user_channel("shanghai", Role::Auditor).unwrap());
    if let Err(e) = auditor.get_checkpoint(ftz_proto::GetCheckpointRequest {}).await {
        assert_ne!(ftz_tests::reason_of(&e), Some(Reason::RateLimited), "{e:?}");
    }
    drop(held.pop());
    admin_gets_a_place(&fed, 10, "the place of a closed connection is not freed").await;
    fed.shutdown().await;
}

/// Finding: chain checks against attacker-supplied intermediates ran before any cache, each
/// costing the node work. A chain longer than a zone's PKI needs is refused before any check.
#[tokio::test]
async fn a_client_chain_padded_with_intermediates_is_refused_at_once() {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

    let c = Cluster::start(&ZONES).await;
    let sh = c.zone("shanghai");
    let user = sh
        .ca
        .issue_user(&ftz_core::Identity::user(sh.id.clone(), Role::Enterprise, "pad").unwrap(), sh.validity)
        .unwrap();
    let mut chain = vec![CertificateDer::from(user.cert_der.clone())];
    chain.extend((0..8).map(|_| CertificateDer::from(sh.ca.issued.cert_der.clone())));
    let key = PrivateKeyDer::from_pem_slice(user.key_pem.as_bytes()).unwrap();
    let expect = ftz_client::ExpectedServer {
        zone: sh.id.clone(),
        ca_der: sh.ca.issued.cert_der.clone(),
        clock: c.clock.clone(),
    };
    let channel =
        ftz_client::channel(&sh.endpoint, expect, Some((chain, key)), std::time::Duration::from_secs(5)).unwrap();
    let s = ftz_proto::verify_client::VerifyClient::new(channel)
        .list_zones(ftz_proto::ListZonesRequest {})
        .await
        .unwrap_err();
    assert_eq!(ftz_tests::reason_of(&s), Some(Reason::UntrustedCertificate), "{s:?}");
    assert!(s.message().contains("at most"), "{}", s.message());
    // The same certificate alone is served.
    ftz_proto::verify_client::VerifyClient::new(c.channel_as("shanghai", Some(&user)))
        .list_zones(ftz_proto::ListZonesRequest {})
        .await
        .unwrap();
    c.shutdown().await;
}

/// Finding (time arithmetic): a peer's times were subtracted from the node's own clock without a
/// bound, so a challenge sent "at" `i64::MIN` overflowed (a panic in a debug build, a wrapped
/// skew that passed the check in a release build). Every extreme time is refused as stale.
#[tokio::test]
async fn times_at_the_ends_of_the_range_are_refused_not_wrapped() {
    let c = Cluster::start(&["shanghai", "hainan"]).await;
    let mut rogue = RogueZone::new(&c, "hainan", "shanghai");
    for sent_at_ms in [i64::MIN, i64::MIN + 1, -1, i64::MAX] {
        let challenge = PingChallenge {
            from_zone: "hainan".into(),
            to_zone: "shanghai".into(),
            nonce: vec![7; 32],
            sent_at_ms,
            registry_version: 1,
        };
        let env = ftz_core::envelope::seal(PayloadType::PING_CHALLENGE, &challenge, &[&rogue.node_key]);
        let err = rogue.peer.ping(PingRequest { challenge: Some(env) }).await.unwrap_err();
        assert_eq!(reason_of(&err), Some(Reason::StaleRequest), "sent at {sent_at_ms}: {err:?}");
    }
    // The node still answers an honest challenge.
    let ok = c.admin("hainan").ping_peer(PingPeerRequest { zone_id: "shanghai".into() }).await;
    assert!(ok.is_ok(), "{ok:?}");
    c.shutdown().await;
}

/// Finding: an authenticated connection had no maximum age, so a caller kept one TLS handshake,
/// and its place among its connections, for as long as it liked. Past
/// `limits.max_connection_age_ms` the node asks it to go away and then closes it.
#[tokio::test]
async fn an_authenticated_connection_does_not_live_for_ever() {
    use std::sync::Arc;

    use ftz_core::{Clock, SystemClock};
    use ftz_devkit::LocalFederation;
    use ftz_proto::{GetNodeStatusRequest, admin_client::AdminClient};

    let dir = tempfile::tempdir().unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let tune: ftz_devkit::local::Tune = Arc::new(|cfg| {
        cfg.limits.max_connections_per_caller = 1;
        cfg.limits.max_connection_age_ms = 1_000;
        cfg.limits.request_timeout_ms = 500;
    });
    let fed = LocalFederation::start_tuned(&["shanghai"], &dir.path().join("fed"), clock, tune).await.unwrap();
    // The admin's one connection, kept open (its channel is held).
    let mut held = AdminClient::new(fed.user_channel("shanghai", Role::Admin).unwrap());
    held.get_node_status(GetNodeStatusRequest {}).await.unwrap();
    let mut second = AdminClient::new(fed.user_channel("shanghai", Role::Admin).unwrap());
    let s = second.get_node_status(GetNodeStatusRequest {}).await.unwrap_err();
    assert_eq!(ftz_tests::reason_of(&s), Some(Reason::RateLimited), "{s:?}");
    // Once the held connection has aged out, its place is free for a new one.
    admin_gets_a_place(&fed, 15, "the connection held since the start was never closed").await;
    drop(held);
    fed.shutdown().await;
}

/// Finding: each refused request wrote a warning line to the node's log, so any caller (here
/// another zone's user, refused `FOREIGN_USER`) could grow the node's log as fast as it could
/// send. Refusal lines are bounded per caller (1 a second, bursts of 5) under a ceiling for the
/// node (20 a second), and the rest counted in the caller's next line, so one caller's flood
/// does not hide another's refusal; the refusals themselves are still audited, bounded per zone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_cannot_fill_a_nodes_disk_through_its_log_lines() {
    use std::time::{Duration, Instant};

    use ftz_client::ClientProfile;
    use ftz_devkit::ProcessFederation;
    use ftz_proto::{RecordRef, VerifyRecordRequest, verify_client::VerifyClient, verify_record_request::Subject};

    let dir = tempfile::tempdir().unwrap();
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_crash-node"));
    let limits = [("user_requests_per_second", 1_000_000)];
    let mut fed = ProcessFederation::create(dir.path(), &["shanghai", "hainan"], bin, &[], &limits).unwrap();
    fed.start("shanghai").unwrap();
    let sh = fed.fed.zone("shanghai").unwrap();
    let sh_dir = sh.dir.clone();
    // Hainan's enterprise user, calling shanghai's node.
    let mut p = ClientProfile::load(&fed.fed.zone("hainan").unwrap().profile_path(Role::Enterprise)).unwrap();
    p.zone = sh.id.to_string();
    p.endpoint = sh.endpoint.clone();
    p.ca = sh.dir.join("ca.crt");
    let mut v = VerifyClient::new(p.channel(Duration::from_secs(10)).unwrap());
    let ask = || VerifyRecordRequest {
        subject: Some(Subject::Ref(RecordRef { issuing_zone: "shanghai".into(), record_id: "SH-NONE".into() })),
        recognising_zone: String::new(),
        purpose: "verification".into(),
    };
    // Another caller (hainan's auditor), refused once in the middle of the flood.
    let mut a = ClientProfile::load(&fed.fed.zone("hainan").unwrap().profile_path(Role::Auditor)).unwrap();
    a.zone = sh.id.to_string();
    a.endpoint = sh.endpoint.clone();
    a.ca = sh.dir.join("ca.crt");
    let auditor = ftz_core::Identity::user("hainan".parse().unwrap(), Role::Auditor, "dev").unwrap();
    let mut other = VerifyClient::new(a.channel(Duration::from_secs(10)).unwrap());
    let started = Instant::now();
    const CALLS: usize = 500;
    for i in 0..CALLS {
        let e = v.verify_record(ask()).await.unwrap_err();
        assert_eq!(reason_of(&e), Some(Reason::ForeignUser), "{e:?}");
        if i == CALLS / 2 {
            let e = other.verify_record(ask()).await.unwrap_err();
            assert_eq!(reason_of(&e), Some(Reason::ForeignUser), "{e:?}");
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let lines = || {
        let log = std::fs::read_to_string(sh_dir.join("node.log")).unwrap();
        log.lines().filter(|l| l.contains("refused:")).map(str::to_string).collect::<Vec<_>>()
    };
    let written = lines().len();
    assert!(
        written >= 1 && (written as f64) <= 5.0 + secs + 2.0,
        "{written} warning lines for {CALLS} refusals in {secs:.1} s"
    );
    let theirs = lines().iter().filter(|l| l.contains(&format!("caller={auditor}"))).count();
    assert_eq!(theirs, 1, "the auditor's refusal, in the middle of the flood, has a line of its own");
    // A second later one more refusal: its line is written, and the lines together say how
    // many refusals had no line of their own.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    v.verify_record(ask()).await.unwrap_err();
    let all: Vec<String> = lines().into_iter().filter(|l| !l.contains(&format!("caller={auditor}"))).collect();
    assert_eq!(all.len(), written, "one more line, and not the auditor's");
    let left_out: usize = all
        .iter()
        .map(|l| {
            l.split("left_out=")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("no count in {l:?}"))
        })
        .sum();
    assert_eq!(left_out + all.len(), CALLS + 1, "every refusal is either a line or counted in one");
    fed.kill("shanghai");
}
