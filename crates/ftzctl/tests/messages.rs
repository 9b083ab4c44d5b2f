//! What `ftzctl` says when a newcomer gets something wrong, or reads a policy (issue 14): each
//! message names the file and the setting once, durations are in words, no Rust debug output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code)] // not every test file uses every helper
mod common;

use std::path::Path;

use common::{ftzctl, s};

/// A development federation's files (no node runs: these errors come before any connection).
async fn fed(dir: &Path) -> std::path::PathBuf {
    let out = dir.join("fed");
    let o = ftzctl(&["dev", "init", "--zones", "shanghai,hainan", "--out", &s(&out)]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    out
}

/// A profile like shanghai's admin's, with `key` (and `cert`) replaced.
fn profile(fed: &Path, key: &Path, cert: &Path) -> std::path::PathBuf {
    let users = fed.join("shanghai/users");
    let text = std::fs::read_to_string(users.join("admin.toml")).unwrap();
    let doc: toml::Table = text.parse().unwrap();
    let mut doc = doc;
    doc.insert("ca".into(), toml::Value::String(s(&fed.join("shanghai/ca.crt"))));
    doc.insert("cert".into(), toml::Value::String(s(cert)));
    doc.insert("key".into(), toml::Value::String(s(key)));
    let path = fed.parent().unwrap().join("admin.toml");
    std::fs::write(&path, toml::to_string(&doc).unwrap()).unwrap();
    path
}

#[tokio::test]
async fn a_missing_key_file_is_named_once_with_its_setting_and_profile() {
    let dir = tempfile::tempdir().unwrap();
    let fed = fed(dir.path()).await;
    let missing = dir.path().join("no-such.key");
    let p = profile(&fed, &missing, &fed.join("shanghai/users/admin.crt"));
    let o = ftzctl(&["--as", &s(&p), "admin", "status"]).await;
    assert_eq!(o.code, 1, "{}", o.stderr);
    let m = &o.stderr;
    assert_eq!(m.matches(&s(&missing)).count(), 1, "the file is named once: {m}");
    assert_eq!(m.matches("No such file or directory").count(), 1, "the cause is said once: {m}");
    assert!(m.contains("`key = ...`") && m.contains(&format!("profile {}", p.display())), "{m}");
}

#[tokio::test]
async fn a_key_of_another_certificate_is_said_in_a_sentence_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let fed = fed(dir.path()).await;
    let (key, cert) = (fed.join("shanghai/users/auditor.key"), fed.join("shanghai/users/admin.crt"));
    let p = profile(&fed, &key, &cert);
    let o = ftzctl(&["--as", &s(&p), "admin", "status"]).await;
    assert_eq!(o.code, 1, "{}", o.stderr);
    let m = &o.stderr;
    assert!(
        m.contains(&format!("the private key {} does not belong to the certificate {}", key.display(), cert.display())),
        "{m}"
    );
    assert!(!m.contains("KeyMismatch") && !m.contains("InconsistentKeys"), "{m}");
}

#[tokio::test]
async fn policies_are_shown_in_words_and_durations_in_days() {
    let dir = tempfile::tempdir().unwrap();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let out = dir.path().join("p");
    let o = ftzctl(&["policy", "new", "--spec", &s(&examples.join("sh-hn-industry.toml")), "--out", &s(&out)]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let t = &o.stdout;
    for want in [
        "delete received data after 30 days",
        "rate: 60 requests per 1 minute per consumer",
        "epsilon 0.5 per query, 2 per 30 days",
        "filter: industry codes C38*",
        "field enterprise_uscc: pseudonymised",
        "field enterprise_name: dropped",
        "field period: generalised to the year",
        "field region: generalised to its first 4 characters",
        "group by industry_code, period",
    ] {
        assert!(t.contains(want), "{want:?} not in:\n{t}");
    }
    for raw in [" s ", " s\n", "[\"", "PSEUDONYMISE", "Generalise("] {
        assert!(!t.contains(raw), "{raw:?} in:\n{t}");
    }
    let out = dir.path().join("q");
    let o =
        ftzctl(&["policy", "new", "--spec", &s(&examples.join("sh-hn-certifications.toml")), "--out", &s(&out)]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert!(o.stdout.contains("filter: certification types AEO_ADVANCED"), "{}", o.stdout);
}
