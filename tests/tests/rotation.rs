//! Key rotation through a new registry version: shanghai replaces its node key and its issuing
//! key. What the old keys signed before they were retired still verifies (records, audit
//! entries, checkpoints); what the node signs now uses the new keys; a record signed with the
//! retired issuing key after its retirement is refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use ftz_core::{Reason, Role, envelope};
use ftz_pki::files;
use ftz_proto::{
    InstallRegistryRequest, IssueCertificationRequest, KeyPurpose, PushInspectionRequest, RecordInspectionRequest,
    RecordRef, VerificationResult, VerifyRecordRequest, ZoneKey, audit_client::AuditClient,
    verify_record_request::Subject,
};
use ftz_tests::{Cluster, DAY_MS, cert_rule, certification, inspection, inspection_rule};
use ftzctl::audit_dir::{self, ExportDir, settled_checkpoint};

async fn verify(c: &Cluster, subject: Subject) -> VerificationResult {
    let req = VerifyRecordRequest {
        subject: Some(subject),
        recognising_zone: String::new(),
        purpose: "customs-clearance".into(),
    };
    c.verifier("hainan").verify_record(req).await.unwrap().into_inner()
}

async fn issue(c: &Cluster, id: &str) {
    let mut cert = certification(c, id, "AEO_ADVANCED");
    cert.issued_at_ms = ftz_core::Clock::now_ms(&*c.clock);
    c.issuer("shanghai").issue_certification(IssueCertificationRequest { certification: Some(cert) }).await.unwrap();
}

fn by_ref(id: &str) -> Subject {
    Subject::Ref(RecordRef { issuing_zone: "shanghai".into(), record_id: id.into() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_keys_keep_old_signatures_valid_and_refuse_the_retired_key_afterwards() {
    let mut c = Cluster::start(&["shanghai", "hainan"]).await;
    c.agree("sh-hn", "shanghai", "hainan", vec![cert_rule(&["AEO_ADVANCED"])], 365 * DAY_MS).await;
    issue(&c, "SH-ROT-OLD").await;
    assert!(verify(&c, by_ref("SH-ROT-OLD")).await.valid);
    let sh = c.zone("shanghai");
    let (old_node, old_issuing) = (
        files::read_signing_key(&sh.node_key_path()).unwrap(),
        files::read_signing_key(&sh.dir.join("issuing.key")).unwrap(),
    );

    // New keys for shanghai, listed in registry v2 (signed by a quorum). The old issuing key is
    // retired now; the old node key stays valid a while, because a node refuses a registry that
    // would cut off the key it runs with: v3 retires it once the node runs the new one.
    let now = c.clock.now_ms();
    std::fs::remove_file(sh.node_key_path()).unwrap();
    std::fs::remove_file(sh.dir.join("issuing.key")).unwrap();
    let new_node = files::generate_signing_key(&sh.node_key_path()).unwrap();
    let new_issuing = files::generate_signing_key(&sh.dir.join("issuing.key")).unwrap();
    let mut doc = c.registry_doc();
    doc.version = 2;
    let zone = doc.zones.iter_mut().find(|z| z.zone_id == "shanghai").unwrap();
    for k in zone.keys.iter_mut() {
        if k.purpose == KeyPurpose::Node as i32 {
            k.valid_until_ms = now + 600_000;
        }
        if k.purpose == KeyPurpose::Issuing as i32 {
            k.valid_until_ms = now;
        }
    }
    for (purpose, key) in [(KeyPurpose::Node, &new_node), (KeyPurpose::Issuing, &new_issuing)] {
        zone.keys.push(ZoneKey {
            purpose: purpose as i32,
            public_key: key.verifying_key().as_bytes().to_vec(),
            valid_from_ms: now - 1_000,
            valid_until_ms: 0,
        });
    }
    let v2 = c.sign_registry(&doc, &["shanghai", "hainan"]);
    for z in ["shanghai", "hainan"] {
        c.admin(z).install_registry(InstallRegistryRequest { registry: Some(v2.clone()) }).await.unwrap();
    }
    // Shanghai's node restarts on its new key files; then v3 retires the old node key.
    c.local.restart("shanghai").await.unwrap();
    let retired_at = c.clock.now_ms();
    doc.version = 3;
    let zone = doc.zones.iter_mut().find(|z| z.zone_id == "shanghai").unwrap();
    let old_public = old_node.verifying_key().as_bytes().to_vec();
    zone.keys.iter_mut().filter(|k| k.public_key == old_public).for_each(|k| k.valid_until_ms = retired_at);
    let v3 = c.sign_registry(&doc, &["shanghai", "hainan"]);
    for z in ["shanghai", "hainan"] {
        c.admin(z).install_registry(InstallRegistryRequest { registry: Some(v3.clone()) }).await.unwrap();
    }

    // Issued before the rotation, with the old issuing key: still valid.
    let old = verify(&c, by_ref("SH-ROT-OLD")).await;
    assert!(old.valid, "{}", old.explanation);
    // Issued after, with the new key.
    issue(&c, "SH-ROT-NEW").await;
    let new = verify(&c, by_ref("SH-ROT-NEW")).await;
    assert!(new.valid, "{}", new.explanation);
    assert_eq!(new.signing_key_id, new_issuing.key_id().to_string());
    // Signed with the retired issuing key after its retirement: refused.
    let mut forged = certification(&c, "SH-ROT-FORGED", "AEO_ADVANCED");
    forged.issued_at_ms = ftz_core::Clock::now_ms(&*c.clock);
    forged.issuing_zone = "shanghai".into();
    let env = envelope::seal(envelope::PayloadType::CERTIFICATION, &forged, &[&old_issuing]);
    let v = verify(&c, Subject::Record(env)).await;
    assert!(!v.valid && !v.authentic);
    assert_eq!(v.authenticity_reason, Reason::IssuerKeyNotValid.as_str(), "{}", v.explanation);

    // The log: entries signed with the old node key and with the new one verify, checkpoints are
    // signed by the new key and cosigned by hainan, and both logs cross-check.
    let mut dirs = Vec::new();
    for z in ["shanghai", "hainan"] {
        let mut audit = AuditClient::new(c.user(z, Role::Auditor));
        let cp = settled_checkpoint(&mut audit, 1, Duration::from_secs(20)).await.unwrap();
        if z == "shanghai" {
            assert!(
                cp.keys[0].contains(
                    &ftz_audit::offline::log_verifier("shanghai", new_node.verifying_key()).unwrap().to_vkey()
                )
            );
            assert!(
                cp.keys.contains(
                    &ftz_audit::offline::log_verifier("shanghai", old_node.verifying_key()).unwrap().to_vkey()
                )
            );
        }
        let out = c.path().join(format!("export-{z}"));
        audit_dir::export(&mut audit, &out, |_, _| {}).await.unwrap();
        let e = ExportDir::open(&out).unwrap();
        let r = e.verify(None, 1, |_| {}).unwrap();
        assert_eq!(r.problems, Vec::<String>::new(), "{z}");
        assert_eq!(r.transfers, 2, "{z}");
        dirs.push(e);
    }
    let (_, _, x) = audit_dir::cross_check(&dirs[0], &dirs[1], |_| {}).unwrap();
    assert_eq!((x.in_both, x.one_sided()), (2, false));
    c.shutdown().await;
}

/// Finding: a delivery queued before the provider rotated its node key was never logged by the
/// provider: its intent was signed by the old key and the provider took receipts only for
/// intents signed by the key it runs with now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_queued_before_a_node_key_rotation_arrives_and_is_logged_on_both_sides() {
    let mut c = Cluster::start(&["guangdong", "shanghai"]).await;
    c.agree("gd-sh", "guangdong", "shanghai", vec![inspection_rule("CNAS")], 365 * DAY_MS).await;
    let result = inspection(&c, "GD-ROT-1", "LOT-ROT-1");
    c.issuer("guangdong").record_inspection(RecordInspectionRequest { result: Some(result) }).await.unwrap();
    c.local.stop("shanghai").await.unwrap();
    let push =
        PushInspectionRequest { record_id: "GD-ROT-1".into(), to_zone: "shanghai".into(), purpose: String::new() };
    assert!(c.issuer("guangdong").push_inspection(push).await.unwrap().into_inner().queued);

    // Guangdong rotates its node key (registry v2: the new key from now, the old one for ten
    // more minutes) and restarts on it, the delivery still queued with the old key's intent.
    let gd = c.zone("guangdong");
    let now = c.clock.now_ms();
    std::fs::remove_file(gd.node_key_path()).unwrap();
    let new_node = files::generate_signing_key(&gd.node_key_path()).unwrap();
    let mut doc = c.registry_doc();
    doc.version = 2;
    let zone = doc.zones.iter_mut().find(|z| z.zone_id == "guangdong").unwrap();
    zone.keys
        .iter_mut()
        .filter(|k| k.purpose == KeyPurpose::Node as i32)
        .for_each(|k| k.valid_until_ms = now + 600_000);
    zone.keys.push(ZoneKey {
        purpose: KeyPurpose::Node as i32,
        public_key: new_node.verifying_key().as_bytes().to_vec(),
        valid_from_ms: now - 1_000,
        valid_until_ms: 0,
    });
    let v2 = c.sign_registry(&doc, &["guangdong", "shanghai"]);
    c.admin("guangdong").install_registry(InstallRegistryRequest { registry: Some(v2.clone()) }).await.unwrap();
    c.local.restart("guangdong").await.unwrap();
    c.local.restart("shanghai").await.unwrap();
    c.admin("shanghai").install_registry(InstallRegistryRequest { registry: Some(v2) }).await.unwrap();
    ftzctl::outbox::drained(&mut c.admin("guangdong"), Duration::from_secs(30)).await.unwrap();

    // Delivered once (the outbox is drained only once the provider took the receipt), and the
    // same transfer leaf is in both logs.
    let (gd_log, sh_log) = (c.transfer_leaves("guangdong").await, c.transfer_leaves("shanghai").await);
    assert_eq!((gd_log.len(), sh_log.len()), (1, 1), "the provider logged the transfer its consumer logged");
    assert_eq!(gd_log[0], sh_log[0]);
    c.shutdown().await;
}
