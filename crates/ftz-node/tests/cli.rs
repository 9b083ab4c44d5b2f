//! The `ftz-node` binary: configuration errors give a clear message and a non-zero exit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

mod common;

use common::free_port;
use ftz_devkit::dev::DevFederation;

fn federation(root: &Path) -> DevFederation {
    common::federation(root, "ftz-cli-test", &["shanghai", "hainan", "guangdong"], true)
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

/// Every file under `dir` with its contents and modification time.
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                todo.push(path.clone());
            }
            let meta = std::fs::metadata(&path).unwrap();
            let bytes = if path.is_dir() { Vec::new() } else { std::fs::read(&path).unwrap() };
            out.insert(path.strip_prefix(dir).unwrap().display().to_string(), (bytes, meta.modified().unwrap()));
        }
    }
    out
}

/// `GET path` on the ops listener: (status, body).
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

#[test]
fn check_changes_nothing_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let fed = federation(dir.path());
    let before = snapshot(dir.path());
    let (code, out) = check(&fed, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no store at") && out.contains("would be installed"), "{out}");
    assert!(!fed.zone("shanghai").unwrap().data_dir().exists(), "--check created the data directory");
    assert!(snapshot(dir.path()) == before, "--check changed files");
}

/// The node as an operator runs it: it reports ready, and on SIGTERM reports not ready for its
/// drain time while it still serves, then stops cleanly. Then, with the store it left, `--check`
/// changes nothing and refuses a trust anchor that is not this zone's authority.
#[test]
fn sigterm_drains_then_stops_and_check_refuses_a_wrong_anchor_over_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let fed = federation(dir.path());
    let z = fed.zone("shanghai").unwrap();
    let ops = z.ops_endpoint.clone().unwrap();
    let text = std::fs::read_to_string(&z.config_path).unwrap();
    assert!(text.contains("drain_ms = 5000"), "{text}");
    std::fs::write(&z.config_path, text.replace("drain_ms = 5000", "drain_ms = 2000")).unwrap();
    let grpc = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_ftz-node"))
        .arg("--config")
        .arg(&z.config_path)
        .env("FTZ_LISTEN", &grpc)
        .env("FTZ_LOG_LEVEL", "warn")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("listening on"), "{first}");
    let (status, body) = get(&ops, "/readyz");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""ready":true"#), "{body}");
    let (status, metrics) = get(&ops, "/metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("ftz_registry_version 1"), "{metrics}");
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");

    // While it runs, --check still checks what a restart would load (a new TLS certificate
    // before the restart), leaves the store it holds alone, and takes its ports for its own.
    let (code, out) = check(&fed, &[("FTZ_LISTEN", &grpc)]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("is in use by a running node"), "{out}");
    assert!(out.contains(&format!("{grpc} (listen) is in use: by the running node")), "{out}");
    let tls_key = z.dir.join("node.key");
    let saved = std::fs::read(&tls_key).unwrap();
    std::fs::copy(fed.zone("hainan").unwrap().dir.join("node.key"), &tls_key).unwrap();
    let (code, out) = check(&fed, &[("FTZ_LISTEN", &grpc)]);
    assert_ne!(code, 0, "another node's TLS key passed the check: {out}");
    assert!(out.contains("does not belong to"), "{out}");
    std::fs::write(&tls_key, saved).unwrap();

    let term = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(term.success());
    let signalled = Instant::now();
    let draining = loop {
        let (status, body) = get(&ops, "/readyz");
        if status == 503 {
            break body;
        }
        assert!(signalled.elapsed() < Duration::from_secs(2), "still ready after SIGTERM: {body}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(draining.contains("the node is stopping"), "{draining}");
    // Still serving while draining: liveness, and the gRPC port takes connections.
    assert_eq!(get(&ops, "/healthz").0, 200);
    assert!(std::net::TcpStream::connect(&grpc).is_ok(), "the gRPC listener closed while draining");
    assert!(child.try_wait().unwrap().is_none(), "the node stopped before its drain time");
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(signalled.elapsed() < Duration::from_secs(20), "the node did not stop after its drain time");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(signalled.elapsed() >= Duration::from_millis(2000), "stopped before the drain time");

    // A store exists now: --check opens it and writes nothing.
    assert!(z.data_dir().exists());
    let before = snapshot(dir.path());
    let (code, out) = check(&fed, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("registry v1 in force") && out.contains("reproduces its latest checkpoint"), "{out}");
    let after = snapshot(dir.path());
    let changed: Vec<&String> = before.keys().chain(after.keys()).filter(|k| before.get(*k) != after.get(*k)).collect();
    assert!(changed.is_empty(), "--check changed files of an existing store: {changed:?}");
    let (code, out) = check(&fed, &[("FTZ_TRUST_ANCHOR", "00112233445566778899aabbccddeeff")]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("registry.trust_anchor 00112233445566778899aabbccddeeff is not an authority key of zone shanghai"),
        "{out}"
    );
}
