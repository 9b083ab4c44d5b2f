//! The `ftz-node` binary: configuration errors give a clear message and a non-zero exit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{path::Path, process::Command};

use ftz_core::{Clock, SystemClock, ZoneId};
use ftz_devkit::dev::{self, DevFederation, DevSpec, DevZoneSpec};

fn federation(root: &Path) -> DevFederation {
    let zones = ["shanghai", "hainan", "guangdong"]
        .iter()
        .enumerate()
        .map(|(i, z)| DevZoneSpec {
            id: ZoneId::new(*z).unwrap(),
            display_name: dev::display_name(z),
            endpoint: format!("127.0.0.1:{}", 17_000 + i),
            http_endpoint: None,
        })
        .collect();
    let spec = DevSpec {
        federation_id: "ftz-cli-test".into(),
        zones,
        quorum: 2,
        validity_days: 30,
        now_ms: SystemClock.now_ms(),
    };
    dev::create(&spec, root).unwrap()
}

/// Runs `ftz-node --check` on shanghai's config with extra environment; returns (exit code, stderr+stdout).
fn check(fed: &DevFederation, env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ftz-node"));
    cmd.arg("--config").arg(&fed.zone("shanghai").unwrap().config_path).arg("--check");
    cmd.env("FTZ_LISTEN", "127.0.0.1:0").env_remove("RUST_LOG").env("FTZ_LOG_LEVEL", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn a_good_config_checks_out() {
    let dir = tempfile::tempdir().unwrap();
    let fed = federation(dir.path());
    let (code, out) = check(&fed, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("configuration OK"), "{out}");
}

#[test]
fn a_missing_key_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let fed = federation(dir.path());
    let key = fed.zone("shanghai").unwrap().node_key_path();
    std::fs::remove_file(&key).unwrap();
    let (code, out) = check(&fed, &[]);
    assert_ne!(code, 0);
    assert!(out.contains(&key.display().to_string()) && out.contains("No such file"), "{out}");
}

#[test]
fn an_unknown_zone_id_is_named_with_the_zones_that_exist() {
    let dir = tempfile::tempdir().unwrap();
    let fed = federation(dir.path());
    let (code, out) = check(&fed, &[("FTZ_ZONE_ID", "macau")]);
    assert_ne!(code, 0);
    assert!(out.contains("zone_id macau is not listed in registry v1"), "{out}");
    assert!(out.contains("guangdong, hainan, shanghai"), "{out}");
}

#[test]
fn a_port_in_use_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let fed = federation(dir.path());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, out) = check(&fed, &[("FTZ_LISTEN", &addr)]);
    assert_ne!(code, 0);
    assert!(out.contains(&format!("cannot listen on {addr}")) && out.contains("in use"), "{out}");
}

#[test]
fn a_broken_config_file_exits_2_with_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let fed = federation(dir.path());
    let path = &fed.zone("shanghai").unwrap().config_path;
    let text = std::fs::read_to_string(path).unwrap().replace("zone_id = \"shanghai\"", "zone_id = \"Shang Hai\"");
    std::fs::write(path, text).unwrap();
    let (code, out) = check(&fed, &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("zone_id"), "{out}");
}

#[test]
fn a_key_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fed = federation(dir.path());
    let key = fed.zone("shanghai").unwrap().node_key_path();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (code, out) = check(&fed, &[]);
        assert_ne!(code, 0);
        assert!(out.contains("chmod 600"), "{out}");
    }
}
