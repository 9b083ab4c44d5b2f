//! The `ftzctl` commands over the nodes' read methods, against real nodes: `verify bundle`,
//! `admin budgets`, `admin peers`, `audit checkpoints` and `audit compare`, with their exit
//! codes and JSON.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::{sync::Arc, time::Duration};

use common::{ftzctl, s};
use ftz_core::{Role, SystemClock};
use ftz_devkit::LocalFederation;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_commands_print_what_the_node_answers() {
    let dir = tempfile::tempdir().unwrap();
    let fed =
        LocalFederation::start(&["shanghai", "hainan"], &dir.path().join("fed"), Arc::new(SystemClock)).await.unwrap();
    let profile = |zone: &str, role: Role| s(&fed.fed.zone(zone).unwrap().profile_path(role));
    let (sh_admin, sh_auditor, hn_auditor) =
        (profile("shanghai", Role::Admin), profile("shanghai", Role::Auditor), profile("hainan", Role::Auditor));
    let (sh_issuer, sh_enterprise) = (profile("shanghai", Role::Issuer), profile("shanghai", Role::Enterprise));

    // Peers: none pinged yet; a refresh pings hainan.
    let o = ftzctl(&["--as", &sh_admin, "--json", "admin", "peers"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    assert_eq!(
        (o.json()["peers"][0]["zone_id"].as_str(), o.json()["peers"][0]["pings"].as_u64()),
        (Some("hainan"), Some(0))
    );
    let o = ftzctl(&["--as", &sh_admin, "--json", "admin", "peers", "--refresh"]).await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let p = &o.json()["peers"][0];
    assert!(p["last_ok_ms"].as_i64().unwrap() > 0 && p["round_trip_us"].as_i64().unwrap() > 0, "{p}");
    assert_eq!(o.json()["refreshed"], true);
    let o = ftzctl(&["--as", &sh_admin, "admin", "peers"]).await;
    assert!(o.stdout.starts_with("hainan") && o.stdout.contains("answered"), "{}", o.stdout);

    // Budgets: nothing charged on a fresh node.
    let o = ftzctl(&["--as", &sh_admin, "--json", "admin", "budgets"]).await;
    assert_eq!((o.code, o.json()["budgets"].as_array().map(Vec::len)), (0, Some(0)), "{}", o.stderr);

    // A bundle of shanghai's own record, checked by shanghai's node; a changed byte is not valid.
    let o = ftzctl(&[
        "--as",
        &sh_issuer,
        "issue",
        "certification",
        "--id",
        "SH-CLI-B",
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
    assert_eq!(o.code, 0, "{}", o.stderr);
    let bundle = dir.path().join("b.bundle");
    let o = ftzctl(&[
        "--as",
        &sh_enterprise,
        "verify",
        "export",
        "--zone",
        "shanghai",
        "--id",
        "SH-CLI-B",
        "--out",
        &s(&bundle),
    ])
    .await;
    assert_eq!(o.code, 0, "{}", o.stderr);
    let o = ftzctl(&["--as", &sh_enterprise, "--json", "verify", "bundle", &s(&bundle)]).await;
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    assert_eq!((o.json()["valid"].as_bool(), o.json()["source"].as_str()), (Some(true), Some("bundle")));
    assert_eq!(o.json()["exporting_zone"], "shanghai");
    let mut bytes = std::fs::read(&bundle).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&bundle, &bytes).unwrap();
    let o = ftzctl(&["--as", &sh_enterprise, "--json", "verify", "bundle", &s(&bundle)]).await;
    assert_eq!((o.code, o.json()["reason"].as_str()), (3, Some("BUNDLE_INVALID")), "{}", o.stdout);

    // Checkpoints, newest first, once hainan has cosigned one.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let cps = loop {
        let o = ftzctl(&["--as", &sh_auditor, "--json", "audit", "checkpoints", "--limit", "5"]).await;
        assert_eq!(o.code, 0, "{}", o.stderr);
        let v = o.json();
        let cosigned = v["checkpoints"][0]["cosignatures"].as_array().is_some_and(|c| !c.is_empty());
        if cosigned {
            break v;
        }
        assert!(tokio::time::Instant::now() < deadline, "no cosigned checkpoint: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let first = &cps["checkpoints"][0];
    assert_eq!(
        (first["cosignatures"][0]["zone"].as_str(), first["cosignatures"][0]["verified"].as_bool()),
        (Some("hainan"), Some(true))
    );
    assert!(first["note"].as_str().unwrap().starts_with("ftz/shanghai/audit\n"));

    // Hainan's export, compared by shanghai's node with its own log.
    let mut audit = ftz_proto::audit_client::AuditClient::new(fed.user_channel("hainan", Role::Auditor).unwrap());
    ftzctl::audit_dir::settled_checkpoint(&mut audit, 1, Duration::from_secs(20)).await.unwrap();
    let hn_dir = dir.path().join("hn");
    assert_eq!(ftzctl(&["--as", &hn_auditor, "audit", "export", "--out", &s(&hn_dir)]).await.code, 0);
    let o = ftzctl(&["--as", &sh_auditor, "--json", "audit", "compare", &s(&hn_dir)]).await;
    assert_eq!(o.code, 0, "{}{}", o.stdout, o.stderr);
    let d = &o.json()["details"];
    assert_eq!((d["other_zone"].as_str(), d["verified"].as_bool()), (Some("hainan"), Some(true)), "{d}");
    // Its own export is not another zone's: refused with the reason.
    let sh_dir = dir.path().join("sh");
    assert_eq!(ftzctl(&["--as", &sh_auditor, "audit", "export", "--out", &s(&sh_dir)]).await.code, 0);
    let o = ftzctl(&["--as", &sh_auditor, "audit", "compare", &s(&sh_dir)]).await;
    assert_eq!(o.code, 1, "{}", o.stdout);
    assert!(o.stderr.contains("CHECKPOINT_INVALID"), "{}", o.stderr);
    fed.shutdown().await;
}
