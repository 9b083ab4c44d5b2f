//! Federations of real node processes on 127.0.0.1, for tests that kill nodes with SIGKILL:
//! each node runs the `ftz-node` process (built under the name `crash-node` in this package),
//! with its own config, keys and store in a temporary directory.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use ftz_core::{Clock, Role, SystemClock, ZoneId};
use ftz_node::{
    client::ClientProfile,
    dev::{self, DevFederation, DevSpec, DevZoneSpec},
    local::LocalError,
};
use tonic::transport::Channel;

pub struct ProcessFederation {
    pub fed: DevFederation,
    bin: PathBuf,
    nodes: BTreeMap<String, Child>,
    /// How many times each zone's node was started.
    pub starts: BTreeMap<String, u32>,
}

/// A free port on 127.0.0.1, from the OS.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address").port()
}

impl ProcessFederation {
    /// Creates a development federation of `zones` in `root` (nothing started yet), each node
    /// on a port from the OS, with `limits` (`key = value` TOML pairs) set in every node's
    /// `[limits]`.
    pub fn create(root: &Path, zones: &[&str], bin: &Path, limits: &[(&str, i64)]) -> ProcessFederation {
        let spec = DevSpec {
            federation_id: "ftz-processes".into(),
            zones: zones
                .iter()
                .map(|z| DevZoneSpec {
                    id: ZoneId::new(*z).expect("zone id"),
                    display_name: dev::display_name(z),
                    endpoint: format!("127.0.0.1:{}", free_port()),
                })
                .collect(),
            quorum: (zones.len() / 2 + 1) as u32,
            validity_days: 30,
            now_ms: SystemClock.now_ms(),
        };
        let fed = dev::create(&spec, root).expect("federation created");
        for z in &fed.zones {
            let text = std::fs::read_to_string(&z.config_path).expect("config");
            let mut doc: toml::Table = text.parse().expect("config parses");
            let table = doc.entry("limits").or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = table {
                for (k, v) in limits {
                    t.insert((*k).to_string(), toml::Value::Integer(*v));
                }
            }
            std::fs::write(&z.config_path, toml::to_string(&doc).expect("config writes")).expect("config written");
        }
        ProcessFederation { fed, bin: bin.to_path_buf(), nodes: BTreeMap::new(), starts: BTreeMap::new() }
    }

    /// Starts `zone`'s node and waits until it says it listens (at most a minute).
    pub fn start(&mut self, zone: &str) {
        let z = self.fed.zone(zone).expect("zone");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(z.dir.join("node.log")).expect("log file");
        let mut child = Command::new(&self.bin)
            .arg("--config")
            .arg(&z.config_path)
            .env("FTZ_LOG_LEVEL", "warn")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("node process starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains(" listening on ") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(z.dir.join("node.log")).unwrap_or_default();
            panic!("{zone}'s node did not start:\n{log}");
        }
        self.nodes.insert(zone.to_string(), child);
        *self.starts.entry(zone.to_string()).or_default() += 1;
    }

    /// Kills `zone`'s node with SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self, zone: &str) {
        if let Some(mut child) = self.nodes.remove(zone) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&self, zone: &str) -> bool {
        self.nodes.contains_key(zone)
    }

    pub fn channel(&self, zone: &str, role: Role) -> Channel {
        let z = self.fed.zone(zone).expect("zone");
        ClientProfile::load(&z.profile_path(role)).expect("profile").channel(Duration::from_secs(10)).expect("channel")
    }

    pub async fn install_agreement(&self, doc: &ftz_proto::RecognitionAgreement) {
        ftz_node::local::install_agreement(&self.fed, doc, |z| Ok::<_, LocalError>(self.channel(z, Role::Admin)))
            .await
            .expect("agreement installs");
    }

    pub async fn install_policy(&self, doc: &ftz_proto::ExchangePolicy) {
        ftz_node::local::install_policy(&self.fed, doc, |z| {
            Ok::<_, LocalError>(self.is_running(z).then(|| self.channel(z, Role::Admin)))
        })
        .await
        .expect("policy installs");
    }
}

impl Drop for ProcessFederation {
    fn drop(&mut self) {
        let zones: Vec<String> = self.nodes.keys().cloned().collect();
        for z in zones {
            self.kill(&z);
        }
    }
}
