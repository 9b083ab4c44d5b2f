//! The `ftzctl` binary against real nodes: the commands a zone's users type, their exit codes,
//! their JSON, and their refusals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, sync::Arc};

use ftz_core::{Role, SystemClock};
use ftz_node::local::LocalFederation;
use serde_json::Value;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

async fn ftzctl(args: &[&str]) -> Out {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ftzctl")).args(args).output().await.unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

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
    assert_eq!(fed.node("shanghai").unwrap().state().store.row_count(), 0);

    let path = dir.path().join("good.csv");
    std::fs::write(&path, format!("{header}{good}")).unwrap();
    let o = ftzctl(&["--as", &issuer, "--json", "data", "import", &s(&path)]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!((o.json()["imported"].as_u64(), o.json()["total_rows"].as_u64()), (Some(1), Some(1)));
    fed.shutdown().await;
}
