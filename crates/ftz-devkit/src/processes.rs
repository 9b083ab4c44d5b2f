//! A federation of real node processes on 127.0.0.1: each zone's node runs the `ftz-node`
//! process (any binary that runs [`ftz_node::process::main_from`]) with its own config, keys and
//! store in a directory. For what needs a node as the OS sees it: the crash tests kill one with
//! SIGKILL, the benchmark reads each node's own peak memory.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use ftz_core::{Clock, Role, SystemClock, ZoneId};
use tonic::transport::Channel;

use ftz_client::ClientProfile;

use crate::{
    dev::{self, DevFederation, DevSpec, DevZoneSpec},
    local::LocalError,
};

/// How long a node may take to say it listens.
const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct ProcessFederation {
    pub fed: DevFederation,
    bin: PathBuf,
    /// Arguments before `--config` (a subcommand, for a binary that is more than a node).
    prefix: Vec<OsString>,
    nodes: BTreeMap<String, Child>,
    /// How many times each zone's node was started.
    pub starts: BTreeMap<String, u32>,
    /// The nodes' `log.level` (`FTZ_LOG_LEVEL`) from their next start: "warn" unless set.
    pub log_level: String,
}

/// A free port on 127.0.0.1, from the OS.
fn free_port() -> Result<u16, LocalError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| LocalError::Other(format!("no free port: {e}")))?;
    Ok(l.local_addr().map_err(|e| LocalError::Other(e.to_string()))?.port())
}

fn other(what: &str) -> impl Fn(std::io::Error) -> LocalError + '_ {
    move |e| LocalError::Other(format!("{what}: {e}"))
}

impl ProcessFederation {
    /// Creates a development federation of `zones` in `root` (nothing started yet), each node
    /// on a port from the OS, with `limits` (`key = value` TOML pairs) set in every node's
    /// `[limits]`. Nodes run `bin` with `prefix` then `--config <path>`.
    pub fn create(
        root: &Path,
        zones: &[&str],
        bin: &Path,
        prefix: &[&str],
        limits: &[(&str, i64)],
    ) -> Result<ProcessFederation, LocalError> {
        let spec = DevSpec {
            federation_id: "ftz-processes".into(),
            zones: zones
                .iter()
                .map(|z| {
                    Ok(DevZoneSpec {
                        id: ZoneId::new(*z).map_err(|e| LocalError::Other(e.to_string()))?,
                        display_name: dev::display_name(z),
                        endpoint: format!("127.0.0.1:{}", free_port()?),
                        http_endpoint: None,
                        ops_endpoint: Some(format!("127.0.0.1:{}", free_port()?)),
                    })
                })
                .collect::<Result<_, LocalError>>()?,
            quorum: (zones.len() / 2 + 1) as u32,
            validity_days: 30,
            now_ms: SystemClock.now_ms(),
        };
        let fed = dev::create(&spec, root)?;
        for z in &fed.zones {
            let text = std::fs::read_to_string(&z.config_path).map_err(other("reading a node config"))?;
            let mut doc: toml::Table = text.parse().map_err(|e| LocalError::Other(format!("node config: {e}")))?;
            let table = doc.entry("limits").or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(t) = table {
                for (k, v) in limits {
                    t.insert((*k).to_string(), toml::Value::Integer(*v));
                }
            }
            let text = toml::to_string(&doc).map_err(|e| LocalError::Other(format!("node config: {e}")))?;
            std::fs::write(&z.config_path, text).map_err(other("writing a node config"))?;
        }
        Ok(ProcessFederation {
            fed,
            bin: bin.to_path_buf(),
            prefix: prefix.iter().map(OsString::from).collect(),
            nodes: BTreeMap::new(),
            starts: BTreeMap::new(),
            log_level: "warn".into(),
        })
    }

    fn zone(&self, zone: &str) -> Result<&dev::DevZone, LocalError> {
        self.fed.zone(zone).ok_or_else(|| LocalError::Other(format!("no zone {zone}")))
    }

    /// Starts `zone`'s node and waits until it says it listens (at most a minute). Its log goes
    /// to `node.log` in the zone's directory.
    pub fn start(&mut self, zone: &str) -> Result<(), LocalError> {
        let z = self.zone(zone)?;
        let log_path = z.dir.join("node.log");
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(other("the node's log"))?;
        let mut child = Command::new(&self.bin)
            .args(&self.prefix)
            .arg("--config")
            .arg(&z.config_path)
            .env("FTZ_LOG_LEVEL", &self.log_level)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(other("starting a node process"))?;
        let stdout = child.stdout.take().ok_or_else(|| LocalError::Other("no stdout".into()))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains(" listening on ") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(START_TIMEOUT).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            return Err(LocalError::Other(format!("{zone}'s node did not start:\n{log}")));
        }
        self.nodes.insert(zone.to_string(), child);
        *self.starts.entry(zone.to_string()).or_default() += 1;
        Ok(())
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

    /// The peak resident memory of `zone`'s running node so far (VmHWM), in MiB.
    pub fn peak_rss_mb(&self, zone: &str) -> Option<f64> {
        let pid = self.nodes.get(zone)?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }

    /// The CPU time `zone`'s running node has used so far.
    pub fn cpu_time(&self, zone: &str) -> Option<Duration> {
        process_cpu_time(self.nodes.get(zone)?.id())
    }

    pub fn channel(&self, zone: &str, role: Role) -> Result<Channel, LocalError> {
        let z = self.zone(zone)?;
        Ok(ClientProfile::load(&z.profile_path(role))?.channel(Duration::from_secs(10))?)
    }

    /// Signs `doc` with both zones' authorities and installs it on both zones' nodes.
    pub async fn install_agreement(&self, doc: &ftz_proto::RecognitionAgreement) -> Result<(), LocalError> {
        crate::local::install_agreement(&self.fed, doc, |z| self.channel(z, Role::Admin)).await.map(|_| ())
    }

    /// Signs `doc` with every party's authority and installs it on every running node it names.
    pub async fn install_policy(&self, doc: &ftz_proto::ExchangePolicy) -> Result<(), LocalError> {
        crate::local::install_policy(&self.fed, doc, |z| {
            if self.is_running(z) { self.channel(z, Role::Admin).map(Some) } else { Ok(None) }
        })
        .await
        .map(|_| ())
    }
}

/// The CPU time (user and system) process `pid` has used so far, from `/proc/<pid>/stat`,
/// assuming the usual 100 clock ticks a second.
pub fn process_cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (which may hold spaces) start after its ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

impl Drop for ProcessFederation {
    fn drop(&mut self) {
        let zones: Vec<String> = self.nodes.keys().cloned().collect();
        for z in zones {
            self.kill(&z);
        }
    }
}
