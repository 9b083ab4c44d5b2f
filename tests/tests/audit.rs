//! The verifiable audit log across real nodes: a transfer is the same leaf in both zones' logs,
//! witnesses cosign, an equivocating log is caught, an intent without a receipt is logged,
//! refusals land on both sides, and a restarted node continues its own history (and refuses to
//! start on a forged one).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, sync::Arc, time::Duration};

use ftz_audit::{
    checkpoint::{Checkpoint, origin},
    note::{Note, Signer, TYPE_ED25519, sign},
    offline::{consistency_text, verify_consistency_files, verify_proof},
};
use ftz_client::status_meta;
use ftz_core::{Clock, ManualClock, Reason, Role, SigningKey, SystemClock, ZoneId};
use ftz_pki::files;
use ftz_proto::{
    AuditEntry, FetchRecordRequest, GetConsistencyProofRequest, GetNodeStatusRequest, IssueCertificationRequest,
    ListEntriesRequest, ListEquivocationsRequest, RecordRef, VerifyRecordRequest, WitnessRequest,
    admin_client::AdminClient, audit_client::AuditClient, peer_client::PeerClient, verify_record_request::Subject,
};
use ftz_tests::{Cluster, DAY_MS, cert_rule, certification, reason};
use ftzctl::audit_dir::{self, ExportDir, settled_checkpoint};
use tonic::transport::Channel;

const SETTLE: Duration = Duration::from_secs(20);

fn auditor(c: &Cluster, zone: &str) -> AuditClient<Channel> {
    AuditClient::new(c.user(zone, Role::Auditor))
}

async fn entries(c: &Cluster, zone: &str, decision: &str) -> Vec<AuditEntry> {
    let req = ListEntriesRequest { limit: 1000, decision: decision.into(), ..Default::default() };
    auditor(c, zone).list_entries(req).await.unwrap().into_inner().entries
}

/// Polls until `zone`'s log has at least `n` entries of `decision` (logging a transfer's
/// receipt at the provider happens after the consumer has answered its user).
async fn wait_for_entries(c: &Cluster, zone: &str, decision: &str, n: usize) -> Vec<AuditEntry> {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let found = entries(c, zone, decision).await;
        if found.len() >= n {
            return found;
        }
        assert!(tokio::time::Instant::now() < deadline, "{zone}: {} {decision} entries, {n} expected", found.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn verify_ref(c: &Cluster, at: &str, zone: &str, id: &str) -> ftz_proto::VerificationResult {
    c.verifier(at)
        .verify_record(VerifyRecordRequest {
            subject: Some(Subject::Ref(RecordRef { issuing_zone: zone.into(), record_id: id.into() })),
            recognising_zone: String::new(),
            purpose: "customs-clearance".into(),
        })
        .await
        .unwrap()
        .into_inner()
}

async fn issue(c: &Cluster, zone: &str, id: &str) {
    c.issuer(zone)
        .issue_certification(IssueCertificationRequest { certification: Some(certification(c, id, "AEO_ADVANCED")) })
        .await
        .unwrap();
}

/// A channel to `to`'s node that presents a node certificate of `zone` (issued by its CA), to
/// speak the peer protocol as that zone would.
fn as_node(c: &Cluster, zone: &str, to: &str) -> PeerClient<Channel> {
    let z = c.zone(zone);
    let node = z.ca.issue_node(&ZoneId::new(zone).unwrap(), &[], z.validity).unwrap();
    PeerClient::new(c.channel_as(to, Some(&node)))
}

fn node_key(c: &Cluster, zone: &str) -> SigningKey {
    files::read_signing_key(&c.zone(zone).node_key_path()).unwrap()
}

/// A checkpoint of `zone`'s log stating `size` and `root`, validly signed by its node key.
fn signed_checkpoint(c: &Cluster, zone: &str, size: u64, root: [u8; 32]) -> String {
    let key = node_key(c, zone);
    let cp = Checkpoint { origin: origin(zone), size, root };
    sign(&cp.to_text(), &Signer::new(&cp.origin, TYPE_ED25519, &key).unwrap()).unwrap()
}

fn statement(note: &str) -> Checkpoint {
    Checkpoint::parse(&Note::parse(note).unwrap().text).unwrap()
}

async fn export(c: &Cluster, zone: &str, dir: &Path) -> ExportDir {
    let out = dir.join(zone);
    audit_dir::export(&mut auditor(c, zone), &out, |_, _| {}).await.unwrap();
    ExportDir::open(&out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_is_one_leaf_in_both_logs_refusals_are_on_both_sides_and_witnesses_cosign() {
    let c = Cluster::start(&["shanghai", "hainan", "guangdong"]).await;
    c.agree("sh-hn", "shanghai", "hainan", vec![cert_rule(&["AEO_ADVANCED"])], 365 * DAY_MS).await;
    issue(&c, "shanghai", "SH-AUD-1").await;
    assert!(verify_ref(&c, "hainan", "shanghai", "SH-AUD-1").await.valid);
    // Guangdong's records are recognised in hainan, but no policy lets them leave guangdong.
    let now = c.clock.now_ms();
    let gd_hn = ftz_proto::RecognitionAgreement {
        agreement_id: "gd-hn".into(),
        version: 1,
        from_zone: "guangdong".into(),
        to_zone: "hainan".into(),
        rules: vec![cert_rule(&["AEO_ADVANCED"])],
        valid_from_ms: now - 60_000,
        valid_until_ms: now + DAY_MS,
    };
    c.local.install_agreement(&gd_hn).await.unwrap();
    issue(&c, "guangdong", "GD-AUD-1").await;
    let res = c
        .verifier("hainan")
        .verify_record(VerifyRecordRequest {
            subject: Some(Subject::Ref(RecordRef { issuing_zone: "guangdong".into(), record_id: "GD-AUD-1".into() })),
            recognising_zone: String::new(),
            purpose: "customs-clearance".into(),
        })
        .await;
    assert_eq!(reason(res).1, Some(Reason::PeerRefused));

    // The same leaf, byte for byte, in the provider's and the consumer's log.
    let at_provider = wait_for_entries(&c, "shanghai", "transfer", 1).await;
    let at_consumer = wait_for_entries(&c, "hainan", "transfer", 1).await;
    assert_eq!((at_provider.len(), at_consumer.len()), (1, 1));
    assert_eq!(at_provider[0].leaf, at_consumer[0].leaf);
    assert_eq!(at_provider[0].zones, vec!["shanghai", "hainan"]);
    // The refusal, by guangdong and of hainan.
    let by_gd = wait_for_entries(&c, "guangdong", "refused", 1).await;
    assert!(by_gd[0].summary.contains("NO_POLICY"), "{}", by_gd[0].summary);
    let at_hn = wait_for_entries(&c, "hainan", "refused", 1).await;
    assert!(at_hn.iter().any(|e| e.summary.contains("NO_POLICY")), "{at_hn:?}");

    // Every log's latest checkpoint is cosigned by both other zones.
    for zone in ["shanghai", "hainan", "guangdong"] {
        settled_checkpoint(&mut auditor(&c, zone), 2, SETTLE).await.unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let sh = export(&c, "shanghai", dir.path()).await;
    let hn = export(&c, "hainan", dir.path()).await;
    let gd = export(&c, "guangdong", dir.path()).await;
    for e in [&sh, &hn, &gd] {
        let r = e.verify(None, 2, |_| {}).unwrap();
        assert_eq!(r.problems, Vec::<String>::new(), "{}", e.zone);
        assert_eq!(r.cosigners, 2);
        assert_eq!(r.entries, e.statement.size);
    }
    let (_, _, x) = audit_dir::cross_check(&sh, &hn, |_| {}).unwrap();
    assert_eq!((x.in_both, x.only_a.len(), x.only_b.len()), (1, 0, 0), "{x:?}");
    let (_, _, x) = audit_dir::cross_check(&gd, &hn, |_| {}).unwrap();
    assert_eq!(x.refusals_in_both, 1, "{x:?}");

    // The transfer's proof verifies offline with the log key and a quorum of two witnesses.
    let index = at_provider[0].index;
    let leaf = sh.read_entry(index).unwrap();
    let proof = std::fs::read_to_string(audit_dir::proof_path(&sh.dir, index)).unwrap();
    let log = sh.log_key(None).unwrap();
    let (cp, i, n) = verify_proof(&leaf, &proof, &log, &sh.keys.witnesses(), 2).unwrap();
    assert_eq!((cp.size, i, n), (sh.statement.size, index, 2));
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_witness_refuses_and_keeps_evidence_of_a_log_that_equivocates() {
    let c = Cluster::start(&["shanghai", "hainan"]).await;
    let cp = settled_checkpoint(&mut auditor(&c, "shanghai"), 1, SETTLE).await.unwrap();
    let genuine = statement(&cp.checkpoint);
    let mut peer = as_node(&c, "shanghai", "hainan");

    // Shanghai signs a second checkpoint at the same size with another root (a forked history
    // shown to someone else) and offers it to hainan, which cosigned the genuine one.
    let mut held = genuine.size;
    let res = loop {
        let forged = signed_checkpoint(&c, "shanghai", held, [7; 32]);
        let req = WitnessRequest { old_size: held, checkpoint: forged, consistency_proof: vec![] };
        match peer.witness(req).await {
            Err(s) if ftz_client::reason_of(&s) == Some(Reason::WitnessConflict) => {
                held = status_meta(&s, "witness_size").unwrap().parse().unwrap();
            }
            other => break other,
        }
    };
    assert_eq!(reason(res).1, Some(Reason::Equivocation));
    // A larger checkpoint that does not extend it (rewritten history, re-signed) is caught too.
    let rewritten = signed_checkpoint(&c, "shanghai", held + 5, [8; 32]);
    let res = peer.witness(WitnessRequest { old_size: held, checkpoint: rewritten, consistency_proof: vec![] }).await;
    assert_eq!(reason(res).1, Some(Reason::Equivocation));
    // A checkpoint hainan cannot attribute to shanghai's key is refused, and is no evidence.
    let other_key = SigningKey::generate().unwrap().0;
    let cp = Checkpoint { origin: origin("shanghai"), size: held, root: [9; 32] };
    let unsigned = sign(&cp.to_text(), &Signer::new(&cp.origin, TYPE_ED25519, &other_key).unwrap()).unwrap();
    let res = peer.witness(WitnessRequest { old_size: held, checkpoint: unsigned, consistency_proof: vec![] }).await;
    assert_eq!(reason(res).1, Some(Reason::CheckpointInvalid));

    // An older checkpoint than the one held is stale (a late retry), refused but no evidence.
    let stale = signed_checkpoint(&c, "shanghai", held - 1, [6; 32]);
    let res = peer.witness(WitnessRequest { old_size: held, checkpoint: stale, consistency_proof: vec![] }).await;
    assert_eq!(reason(res).1, Some(Reason::WitnessConflict));

    let evidence = auditor(&c, "hainan").list_equivocations(ListEquivocationsRequest {}).await.unwrap().into_inner();
    assert_eq!(evidence.evidence.len(), 2);
    assert!(evidence.evidence[0].starts_with("ftz-equivocation-evidence/v1\nlog ftz/shanghai/audit\n"));
    assert!(evidence.evidence.iter().all(|e| e.contains(&format!("\n{held}\n"))));
    let status = c.admin("hainan").get_node_status(GetNodeStatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.equivocations_found, 2);
    assert!(
        auditor(&c, "shanghai")
            .list_equivocations(ListEquivocationsRequest {})
            .await
            .unwrap()
            .into_inner()
            .evidence
            .is_empty()
    );

    // The genuine log goes on and is still cosigned: a refusal makes a new entry.
    let res =
        AdminClient::new(c.user_at("hainan", Role::Admin, "shanghai")).get_node_status(GetNodeStatusRequest {}).await;
    assert_eq!(reason(res).1, Some(Reason::ForeignUser));
    wait_for_entries(&c, "shanghai", "refused", 1).await;
    let next = settled_checkpoint(&mut auditor(&c, "shanghai"), 1, SETTLE).await.unwrap();
    assert!(next.size > genuine.size);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_intent_whose_receipt_never_comes_is_logged_unacknowledged() {
    let clock = ManualClock::new(SystemClock.now_ms());
    let c = Cluster::start_with_clock(&["shanghai", "hainan"], Arc::new(clock.clone())).await;
    c.agree("sh-hn", "shanghai", "hainan", vec![cert_rule(&["AEO_ADVANCED"])], 365 * DAY_MS).await;
    issue(&c, "shanghai", "SH-UNACK-1").await;
    // Hainan's node fetches the record but never sends its receipt.
    let fetched = as_node(&c, "hainan", "shanghai")
        .fetch_record(FetchRecordRequest {
            record_id: "SH-UNACK-1".into(),
            purpose: "customs-clearance".into(),
            issuing_zone: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(fetched.seal.is_some());
    clock.advance_ms(59_000);
    assert!(entries(&c, "shanghai", "unacknowledged").await.is_empty());
    clock.advance_ms(2_000); // past the 60 s acknowledgement timeout
    let unack = wait_for_entries(&c, "shanghai", "unacknowledged", 1).await;
    assert_eq!(unack[0].zones, vec!["shanghai", "hainan"]);
    assert!(unack[0].summary.contains("SH-UNACK-1"), "{}", unack[0].summary);
    assert!(entries(&c, "shanghai", "transfer").await.is_empty());
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_continues_its_history_and_refuses_to_start_on_a_forged_one() {
    let mut c = Cluster::start(&["shanghai", "hainan"]).await;
    let old = settled_checkpoint(&mut auditor(&c, "shanghai"), 1, SETTLE).await.unwrap();
    c.local.restart("shanghai").await.unwrap();
    let res =
        AdminClient::new(c.user_at("hainan", Role::Admin, "shanghai")).get_node_status(GetNodeStatusRequest {}).await;
    assert!(res.is_err());
    wait_for_entries(&c, "shanghai", "refused", 1).await;
    let new = settled_checkpoint(&mut auditor(&c, "shanghai"), 1, SETTLE).await.unwrap();
    let (a, b) = (statement(&old.checkpoint), statement(&new.checkpoint));
    assert!(b.size > a.size);
    let p = auditor(&c, "shanghai")
        .get_consistency_proof(GetConsistencyProofRequest { size1: a.size, size2: b.size })
        .await
        .unwrap()
        .into_inner();
    let hashes: Vec<[u8; 32]> = p.proof.iter().map(|h| h.as_slice().try_into().unwrap()).collect();
    let log = ftz_audit::note::Verifier::from_vkey(&new.keys[0]).unwrap();
    assert_eq!(
        verify_consistency_files(&old.checkpoint, &new.checkpoint, &consistency_text(&hashes), &log),
        Ok((a.size, b.size))
    );

    // Someone with the node's key writes a checkpoint for a history the store does not hold.
    c.local.stop("shanghai").await.unwrap();
    for (forged, why) in [
        (signed_checkpoint(&c, "shanghai", b.size, [3; 32]), "is not the one its signed checkpoint states"),
        (signed_checkpoint(&c, "shanghai", b.size + 10, [3; 32]), "but a checkpoint was signed at size"),
    ] {
        let store = c.open_store("shanghai");
        let size = statement(&forged).size;
        store.put_checkpoint(size, &forged).unwrap();
        drop(store);
        let err = c.local.restart("shanghai").await.unwrap_err().to_string();
        assert!(err.contains(why), "{err}");
        // Put the genuine one back: the node starts again.
        let store = c.open_store("shanghai");
        store.put_checkpoint(b.size, &new.checkpoint).unwrap();
        drop(store);
        c.local.restart("shanghai").await.unwrap();
        c.local.stop("shanghai").await.unwrap();
    }
    c.shutdown().await;
}
