//! The `ftzctl` binary against real nodes: the commands a zone's users type, their exit codes,
//! their JSON, and their refusals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{path::Path, sync::Arc};

use common::{ftzctl, s};
use ftz_core::{Role, SystemClock};
use ftz_devkit::LocalFederation;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_agree_verify_export_and_check_offline() {
    let dir = tempfile::tempdir().unwrap();
    let fed =
        LocalFederation::start(&["shanghai", "hainan"], &dir.path().join("fed"), Arc::new(SystemClock)).await.unwrap();
    let sh = fed.fed.zone("shanghai").unwrap();
    let hn = fed.fed.zone("hainan").unwrap();
    let (sh_issuer, sh_admin) = (s(&sh.profile_path(Role::Issuer)), s(&sh.profile_path(Role::Admin)));
    let (hn_enterprise, hn_admin) = (s(&hn.profile_path(Role::Enterprise)), s(&hn.profile_path(Role::Admin)));

    let o = ftzctl(&[
        "--as",
        &sh_issuer,
        "--json",
        "issue",
        "certification",
        "--id",
        "SH-CLI-1",
        "--type",
        "AEO_ADVANCED",
        "--holder",
        "91310115MA1H7XQ200",
        "--holder-name",
        "Pudong Precision Instruments",
        "--scope",
        "customs",
        "--body",
        "Shanghai Customs",
    ])
    .await;
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert_eq!(o.json()["already_issued"], false);

    // The authorities write and sign the agreement offline; each admin installs it.
    let agreement = s(&dir.path().join("sh-hn.agreement"));
    let o = ftzctl(&[
        "agreement",
        "new",
        "--id",
        "sh-hn",
        "--from",
        "shanghai",
        "--to",
        "hainan",
        "--certifications",
        "AEO_ADVANCED",
        "--out",
        &agreement,
    ])
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = ftzctl(&["--as", &hn_admin, "admin", "agreement", "install", &agreement]).await;
    assert_eq!(o.code, 1, "an unsigned agreement is refused");
    assert!(o.stderr.contains("AGREEMENT_UNDER_SIGNED"), "{}", o.stderr);
    for key in [sh.authority_key_path(), hn.authority_key_path()] {
        assert_eq!(ftzctl(&["agreement", "sign", &agreement, "--key", &s(&key)]).await.code, 0);
    }
    for admin in [&sh_admin, &hn_admin] {
        let o = ftzctl(&["--as", admin, "admin", "agreement", "install", &agreement]).await;
        assert_eq!(o.code, 0, "{}", o.stderr);
    }

    // Without an exchange policy the record does not leave shanghai.
    let verify = ["--as", &hn_enterprise, "--json", "verify", "record", "--zone", "shanghai", "--id", "SH-CLI-1"];
    let o = ftzctl(&verify).await;
    assert_eq!(o.code, 1, "{}", o.stdout);
    assert_eq!(o.json()["error"]["reason"], "PEER_REFUSED");
    assert!(o.stdout.contains("NO_POLICY"), "{}", o.stdout);

    // The authorities write and sign a policy; both admins install it.
    let spec = dir.path().join("policy.toml");
    std::fs::write(
        &spec,
        r#"
policy_id = "sh-hn-certs"
provider = "shanghai"
consumers = ["hainan"]
data_class = "certification"
purposes = ["verification"]
retention_days = 30
rate = { max_requests = 100, per_seconds = 60 }
[filter]
record_types = ["AEO_ADVANCED"]
"#,
    )
    .unwrap();
    let policy = s(&dir.path().join("sh-hn-certs.policy"));
    let o = ftzctl(&["policy", "new", "--spec", &s(&spec), "--out", &policy]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    for key in [sh.authority_key_path(), hn.authority_key_path()] {
        assert_eq!(ftzctl(&["policy", "sign", &policy, "--key", &s(&key)]).await.code, 0);
    }
    for admin in [&sh_admin, &hn_admin] {
        let o = ftzctl(&["--as", admin, "policy", "install", &policy]).await;
        assert_eq!(o.code, 0, "{}", o.stderr);
    }
    let explain = ["--as", &sh_admin, "--json", "policy", "explain", "--from", "shanghai", "--to", "hainan"];
    let o = ftzctl(&[&explain[..], &["--class", "certification", "--purpose", "marketing"]].concat()).await;
    assert_eq!((o.code, o.json()["reason"].as_str()), (0, Some("PURPOSE_NOT_ALLOWED")), "{}", o.stdout);

    let o = ftzctl(&verify).await;
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    let v = o.json();
    assert_eq!((v["valid"].as_bool(), v["agreement_id"].as_str()), (Some(true), Some("sh-hn")));

    let bundle = dir.path().join("SH-CLI-1.bundle");
    let o = ftzctl(&[
        "--as",
        &hn_enterprise,
        "verify",
        "export",
        "--zone",
        "shanghai",
        "--id",
        "SH-CLI-1",
        "--out",
        &s(&bundle),
    ])
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let anchor = hn.authority_key_id.to_string();
    let o = ftzctl(&["verify", "offline", &s(&bundle), "--zone", "hainan", "--anchor", &anchor]).await;
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(o.stdout.starts_with("VALID"), "{}", o.stdout);

    let mut bytes = std::fs::read(&bundle).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&bundle, &bytes).unwrap();
    let o = ftzctl(&["--json", "verify", "offline", &s(&bundle), "--zone", "hainan", "--anchor", &anchor]).await;
    assert_eq!(o.code, 3, "a tampered bundle is not valid: {}", o.stdout);
    assert_eq!(o.json()["reason"], "BUNDLE_INVALID");

    // Refusals: a reason code on stderr (text) or in JSON, exit code 1.
    let o = ftzctl(&["--as", &hn_enterprise, "verify", "record", "--zone", "shanghai", "--id", "SH-NOPE"]).await;
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("RECORD_NOT_FOUND"), "{}", o.stderr);
    let o = ftzctl(&["--as", &hn_enterprise, "--json", "admin", "status"]).await;
    assert_eq!(o.code, 1);
    assert_eq!(o.json()["error"]["reason"], "ROLE_NOT_ALLOWED");
    let o = ftzctl(&["admin", "status"]).await;
    assert_eq!(o.code, 1);
    assert!(o.stderr.contains("--as PROFILE"), "{}", o.stderr);

    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_import_reports_bad_lines_and_loads_good_files() {
    let dir = tempfile::tempdir().unwrap();
    let fed =
        LocalFederation::start(&["shanghai", "hainan"], &dir.path().join("fed"), Arc::new(SystemClock)).await.unwrap();
    let issuer = s(&fed.fed.zone("shanghai").unwrap().profile_path(Role::Issuer));
    let header = "enterprise_uscc,enterprise_name,industry_code,region,period,output_value,employment,capacity\n";
    let good = "91310115MA1H7XQ200,Pudong Precision,C4011,310115,2026-Q3,12000000,85,4000\n";
    let bad = format!("{header}{good}91310115MA1H7XQ200,Pudong Precision,C4011,310115,2026-Q9,1,1,1\nnot,enough\n");
    let path = dir.path().join("bad.csv");
    std::fs::write(&path, bad).unwrap();
    let o = ftzctl(&["--as", &issuer, "data", "import", &s(&path)]).await;
    assert_eq!(o.code, 1);
    assert!(
        o.stderr.contains("line 3: period") && o.stderr.contains("line 4:") && o.stderr.contains("nothing imported"),
        "{}",
        o.stderr
    );
    assert_eq!(fed.node("shanghai").unwrap().store().row_count().unwrap(), 0);

    let path = dir.path().join("good.csv");
    std::fs::write(&path, format!("{header}{good}")).unwrap();
    let o = ftzctl(&["--as", &issuer, "--json", "data", "import", &s(&path)]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!((o.json()["imported"].as_u64(), o.json()["total_rows"].as_u64()), (Some(1), Some(1)));
    fed.shutdown().await;
}

/// Issues `id` in shanghai and has hainan verify it: one transfer, logged on both sides.
async fn transfer(fed: &LocalFederation, id: &str) {
    let now = ftz_core::Clock::now_ms(&SystemClock);
    fed.user_channel("shanghai", Role::Issuer).unwrap();
    ftz_proto::issuer_client::IssuerClient::new(fed.user_channel("shanghai", Role::Issuer).unwrap())
        .issue_certification(ftz_proto::IssueCertificationRequest {
            certification: Some(ftz_devkit::dev::sample_certification(id, "AEO_ADVANCED", now)),
        })
        .await
        .unwrap();
    let v = ftz_proto::verify_client::VerifyClient::new(fed.user_channel("hainan", Role::Enterprise).unwrap())
        .verify_record(ftz_proto::VerifyRecordRequest {
            subject: Some(ftz_proto::verify_record_request::Subject::Ref(ftz_proto::RecordRef {
                issuing_zone: "shanghai".into(),
                record_id: id.into(),
            })),
            recognising_zone: String::new(),
            purpose: "verification".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(v.valid, "{}", v.explanation);
}

/// Waits until both logs hold `n` transfers and their checkpoints cover them, cosigned.
async fn settle(fed: &LocalFederation, n: usize) {
    for zone in ["shanghai", "hainan"] {
        let mut audit = ftz_proto::audit_client::AuditClient::new(fed.user_channel(zone, Role::Auditor).unwrap());
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let req = ftz_proto::ListEntriesRequest { decision: "transfer".into(), ..Default::default() };
            if audit.list_entries(req).await.unwrap().into_inner().entries.len() >= n {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "{zone} never logged {n} transfers");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        ftzctl::audit_dir::settled_checkpoint(&mut audit, 1, std::time::Duration::from_secs(20)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_export_logs_and_catch_tampering_offline() {
    let dir = tempfile::tempdir().unwrap();
    let fed =
        LocalFederation::start(&["shanghai", "hainan"], &dir.path().join("fed"), Arc::new(SystemClock)).await.unwrap();
    let now = ftz_core::Clock::now_ms(&SystemClock);
    let policy = ftz_devkit::dev::record_policy(
        "sh-hn",
        "shanghai",
        "hainan",
        ftz_proto::DataClass::Certification,
        &["verification"],
        now,
    );
    fed.install_policy(&policy).await.unwrap();
    fed.install_agreement(&ftz_devkit::dev::agreement_doc(
        "sh-hn",
        "shanghai",
        "hainan",
        ftz_devkit::dev::certification_rule(&["AEO_ADVANCED"]),
        now,
    ))
    .await
    .unwrap();
    transfer(&fed, "SH-AUDIT-1").await;
    settle(&fed, 1).await;

    let sh_auditor = s(&fed.fed.zone("shanghai").unwrap().profile_path(Role::Auditor));
    let hn_auditor = s(&fed.fed.zone("hainan").unwrap().profile_path(Role::Auditor));
    let out = dir.path().join("exports");
    let (sh_dir, hn_dir) = (out.join("shanghai"), out.join("hainan"));
    let o = ftzctl(&["--as", &sh_auditor, "--json", "audit", "export", "--out", &s(&sh_dir)]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let size = o.json()["size"].as_u64().unwrap();
    assert!(o.json()["cosigners"].as_u64().unwrap() >= 1);
    let o = ftzctl(&["--as", &sh_auditor, "audit", "export", "--out", &s(&sh_dir)]).await;
    assert_eq!(o.code, 1, "an export never overwrites");
    assert_eq!(ftzctl(&["--as", &hn_auditor, "audit", "export", "--out", &s(&hn_dir)]).await.code, 0);

    // Keys: from the signed registry, offline, the same as the export's.
    let o = ftzctl(&["keys", "show", "--registry", &s(&fed.fed.registry_path), "--zone", "shanghai"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let keys = std::fs::read_to_string(sh_dir.join("keys")).unwrap();
    let log_key = keys.lines().next().unwrap().to_string();
    assert!(log_key.starts_with("ftz/shanghai/audit+"));
    assert!(o.stdout.lines().any(|l| l == log_key), "{}", o.stdout);
    let witness_key = keys.lines().find(|l| l.starts_with("ftz/hainan/witness+")).unwrap().to_string();

    // The transfer's proof, with the witness.
    let list = ftzctl(&["--as", &sh_auditor, "--json", "audit", "entries", "--decision", "transfer"]).await;
    let index = list.json()["entries"][0]["index"].as_u64().unwrap();
    let entry = s(&sh_dir.join("entries").join(index.to_string()));
    let proof = s(&sh_dir.join("proofs").join(format!("{index}.tlog-proof")));
    let verify = |entry: String, witness: String, quorum: &'static str| {
        let (proof, log_key) = (proof.clone(), log_key.clone());
        async move {
            let args = ["audit", "verify-proof", "--entry", &entry, "--proof", &proof, "--log-key", &log_key];
            let mut args: Vec<&str> = args.to_vec();
            args.extend(["--witness-key", &witness, "--quorum", quorum]);
            ftzctl(&args).await
        }
    };
    let o = verify(entry.clone(), witness_key.clone(), "1").await;
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert!(o.stdout.starts_with("OK entry"), "{}", o.stdout);
    let o = verify(entry.clone(), witness_key.clone(), "2").await;
    assert_eq!(o.code, 3, "a quorum of two with one witness fails: {}", o.stdout);
    // Hainan's log key: a real key, but not one that cosigned shanghai's checkpoint.
    let stranger = std::fs::read_to_string(hn_dir.join("keys")).unwrap().lines().next().unwrap().to_string();
    let o = verify(entry.clone(), stranger, "1").await;
    assert_eq!(o.code, 3, "a key that did not cosign does not count: {}", o.stdout);
    let tampered = dir.path().join("tampered-entry");
    let mut bytes = std::fs::read(&entry).unwrap();
    bytes[40] ^= 1;
    std::fs::write(&tampered, &bytes).unwrap();
    let o = verify(s(&tampered), witness_key.clone(), "1").await;
    assert_eq!(o.code, 3);
    assert!(o.stdout.contains("not included"), "{}", o.stdout);

    // The whole log, and the same with one byte flipped or one entry dropped.
    // Where the keys come from is said every time.
    let o = ftzctl(&["audit", "verify-log", &s(&sh_dir), "--quorum", "1"]).await;
    assert_ne!(o.code, 0, "{}", o.stdout);
    assert!(o.stderr.contains("--trust-export-keys"), "{}", o.stderr);
    let o = ftzctl(&["--json", "audit", "verify-log", &s(&sh_dir), "--quorum", "1", "--trust-export-keys"]).await;
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert_eq!(o.json()["details"]["entries"].as_u64(), Some(size));

    // Keys from a registry the auditor supplies, anchored on a key it trusts, rather than the
    // export's own.
    let registry = s(&fed.fed.registry_path);
    let anchor = fed.fed.zone("hainan").unwrap().authority_key_id.to_string();
    let anchored = |dir: &Path, quorum: &'static str| {
        let (dir, registry, anchor) = (s(dir), registry.clone(), anchor.clone());
        async move {
            ftzctl(&["audit", "verify-log", &dir, "--quorum", quorum, "--registry", &registry, "--anchor", &anchor])
                .await
        }
    };
    let o = anchored(&sh_dir, "1").await;
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    let o =
        ftzctl(&["audit", "verify-log", &s(&sh_dir), "--registry", &registry, "--anchor", "00".repeat(16).as_str()])
            .await;
    assert_ne!(o.code, 0, "an anchor that did not sign the registry is refused: {}", o.stdout);
    // Finding: `verify-log --quorum` took the witness keys from the export it checked. A
    // dishonest exporter lists witness keys of its own and cosigns with them: its DIR/keys then
    // vouch for it; the registry's keys do not.
    let forged = dir.path().join("forged-witnesses");
    std::fs::create_dir_all(forged.join("entries")).unwrap();
    for i in 0..size {
        let name = i.to_string();
        std::fs::copy(sh_dir.join("entries").join(&name), forged.join("entries").join(&name)).unwrap();
    }
    let checkpoint = std::fs::read_to_string(sh_dir.join("checkpoint")).unwrap();
    let parsed = ftz_audit::note::Note::parse(&checkpoint).unwrap();
    let text = parsed.text.clone();
    let own: Vec<_> = parsed.signatures.into_iter().filter(|sig| sig.name == "ftz/shanghai/audit").collect();
    // The real keys stay (the transfers' receipts need them); two witnesses of zones that do not
    // exist are added, and only they cosign.
    let mut keys: Vec<String> =
        std::fs::read_to_string(sh_dir.join("keys")).unwrap().lines().map(String::from).collect();
    // The log's own signature only; the real witnesses' cosignatures are dropped.
    let mut note = ftz_audit::note::Note { text: text.clone(), signatures: own }.to_text();
    for z in ["ghost-one", "ghost-two"] {
        let (fake, _) = ftz_core::SigningKey::generate().unwrap();
        let name = format!("ftz/{z}/witness");
        let signer = ftz_audit::note::Signer::new(&name, ftz_audit::note::TYPE_COSIGNATURE, &fake).unwrap();
        note.push_str(&signer.cosign(1, &text).line());
        let v = ftz_audit::note::Verifier::new(&name, ftz_audit::note::TYPE_COSIGNATURE, fake.verifying_key()).unwrap();
        keys.push(v.to_vkey());
    }
    std::fs::write(forged.join("checkpoint"), note).unwrap();
    std::fs::write(forged.join("keys"), keys.join("\n") + "\n").unwrap();
    let o = ftzctl(&["audit", "verify-log", &s(&forged), "--quorum", "2", "--trust-export-keys"]).await;
    assert_eq!(o.code, 0, "with the export's own keys the forged witnesses count: {}{}", o.stdout, o.stderr);
    let o = anchored(&forged, "2").await;
    assert_eq!(o.code, 3, "with the registry's keys they do not: {}{}", o.stdout, o.stderr);
    let copy = |name: &str| {
        let to = dir.path().join(name);
        std::fs::create_dir_all(to.join("entries")).unwrap();
        for f in ["checkpoint", "keys"] {
            std::fs::copy(sh_dir.join(f), to.join(f)).unwrap();
        }
        for i in 0..size {
            std::fs::copy(sh_dir.join("entries").join(i.to_string()), to.join("entries").join(i.to_string())).unwrap();
        }
        to
    };
    let flipped = copy("flipped");
    std::fs::write(flipped.join("entries").join(index.to_string()), &bytes).unwrap();
    let o = anchored(&flipped, "0").await;
    assert_eq!(o.code, 3, "{}", o.stdout);
    let dropped = copy("dropped");
    std::fs::remove_file(dropped.join("entries").join("1")).unwrap();
    let o = anchored(&dropped, "0").await;
    assert_eq!(o.code, 3);
    assert!(o.stdout.contains("entry 1 is missing"), "{}", o.stdout);

    // Both logs hold the transfer; a later one that shanghai's old export lacks is one-sided.
    let trust = ["--registry", registry.as_str(), "--anchor", anchor.as_str()];
    let o = ftzctl(&[&["audit", "cross-check", &s(&sh_dir), &s(&hn_dir)][..], &trust].concat()).await;
    assert_eq!(o.code, 0, "{}", o.stdout);
    assert!(o.stdout.contains("1 transfer(s) between them, each in both logs"), "{}", o.stdout);
    transfer(&fed, "SH-AUDIT-2").await;
    settle(&fed, 2).await;
    let hn_later = out.join("hainan-later");
    assert_eq!(ftzctl(&["--as", &hn_auditor, "audit", "export", "--out", &s(&hn_later)]).await.code, 0);
    let o = ftzctl(&[&["--json", "audit", "cross-check", &s(&sh_dir), &s(&hn_later)][..], &trust].concat()).await;
    assert_eq!(o.code, 3, "{}", o.stdout);
    let only = &o.json()["details"]["only_in_b"];
    assert_eq!(only.as_array().map(Vec::len), Some(1), "{only}");
    assert!(only[0]["summary"].as_str().unwrap().contains("SH-AUDIT-2"));

    // Hainan's later checkpoint extends its earlier one.
    let (old, new) = (s(&hn_dir.join("checkpoint")), s(&hn_later.join("checkpoint")));
    let p = s(&dir.path().join("hn.consistency"));
    let o =
        ftzctl(&["--as", &hn_auditor, "audit", "consistency-proof", "--old", &old, "--new", &new, "--out", &p]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let hn_key = std::fs::read_to_string(hn_dir.join("keys")).unwrap().lines().next().unwrap().to_string();
    let check = |old: String, new: String| {
        let (p, k) = (p.clone(), hn_key.clone());
        async move {
            ftzctl(&["audit", "verify-consistency", "--old", &old, "--new", &new, "--proof", &p, "--log-key", &k]).await
        }
    };
    let o = check(old.clone(), new.clone()).await;
    assert_eq!(o.code, 0, "{}", o.stdout);
    let o = check(new.clone(), old.clone()).await;
    assert_eq!(o.code, 3, "{}", o.stdout);
    let o = check(s(&sh_dir.join("checkpoint")), new).await;
    assert_eq!(o.code, 3, "another log's checkpoint: {}", o.stdout);
    fed.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_is_not_running_is_named_with_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let fed = LocalFederation::start(&["shanghai"], &dir.path().join("fed"), Arc::new(SystemClock)).await.unwrap();
    let admin = s(&fed.fed.zone("shanghai").unwrap().profile_path(Role::Admin));
    let endpoint = fed.fed.zone("shanghai").unwrap().endpoint.clone();
    fed.shutdown().await;
    let o = ftzctl(&["--as", &admin, "--timeout", "5", "admin", "status"]).await;
    assert_eq!(o.code, 1, "{}", o.stderr);
    assert!(
        o.stderr.contains(&format!("cannot reach the node at {endpoint}")) && o.stderr.contains("is it running"),
        "{}",
        o.stderr
    );
}
