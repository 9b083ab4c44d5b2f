//! A federation of real node processes on 127.0.0.1: each zone's node runs the `ftz-node`
//! process (any binary that runs [`ftz_node::process::main_from`]) with its own config, keys and
//! store in a directory. For what needs a node as the OS sees it: the crash tests kill one with
//! SIGKILL, the benchmark reads each node's own peak memory.
//!
//! [`ProcessOptions`] chooses, zone by zone, the store (sled in the zone's directory, or
//! PostgreSQL: a database of a throwaway cluster the federation owns, [`crate::postgres`]) and
//! how many replicas run the zone's node: K processes on the zone's one database, each with the
//! zone's config but its own listen addresses (`node-<i>.toml`, logging to `node-<i>.log`),
//! behind a [`Balancer`] that listens on the zone's registry endpoint, where the other zones and
//! the clients dial.

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsString,
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use ftz_core::{Clock, Role, SystemClock, ZoneId};
use tonic::transport::Channel;

use ftz_client::ClientProfile;

use crate::{
    balancer::{self, Balancer},
    dev::{self, DevFederation, DevSpec, DevZoneSpec},
    local::LocalError,
    postgres::TempPostgres,
};

/// How long a node may take to say it listens.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How a [`ProcessFederation`]'s nodes are set up, beyond the development defaults.
#[derive(Debug, Clone, Default)]
pub struct ProcessOptions {
    /// `(zone, section, key, value)` set in the config of that zone's node (None: every node).
    settings: Vec<(Option<String>, String, String, toml::Value)>,
    /// Zones whose nodes store in PostgreSQL.
    postgres: BTreeSet<String>,
    /// Zones that run more than one replica, and how many.
    replicas: BTreeMap<String, usize>,
}

impl ProcessOptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// `[limits] key = value` in every node's config.
    pub fn limit(self, key: &str, value: i64) -> Self {
        self.set("limits", key, value)
    }

    /// `[section] key = value` in every node's config.
    pub fn set(mut self, section: &str, key: &str, value: impl Into<toml::Value>) -> Self {
        self.settings.push((None, section.into(), key.into(), value.into()));
        self
    }

    /// `[section] key = value` in the config of `zone`'s node (every replica's).
    pub fn set_in(mut self, zone: &str, section: &str, key: &str, value: impl Into<toml::Value>) -> Self {
        self.settings.push((Some(zone.into()), section.into(), key.into(), value.into()));
        self
    }

    /// These zones' nodes store in PostgreSQL (`[store] engine = "postgres"`): each zone in a
    /// database of its own (named after it) of one throwaway cluster the federation starts and
    /// owns.
    pub fn postgres(mut self, zones: &[&str]) -> Self {
        self.postgres.extend(zones.iter().map(|z| z.to_string()));
        self
    }

    /// `zone` runs `k` replicas of its node behind a load balancer, on PostgreSQL (replicas
    /// share the zone's database: sled's store is one process's).
    pub fn replicas(mut self, zone: &str, k: usize) -> Self {
        self.replicas.insert(zone.into(), k);
        self.postgres.insert(zone.into());
        self
    }
}

/// One process of a zone's node.
#[derive(Debug, Clone)]
pub struct Replica {
    /// Its config: the zone's `node.toml` for a zone of one node; for a replica, a copy of it
    /// (written at each start) with the replica's own listen addresses.
    pub config_path: PathBuf,
    /// Its stderr (its log).
    pub log_path: PathBuf,
    /// Where it listens for gRPC (for a zone of one node: the zone's endpoint).
    pub listen: SocketAddr,
    /// Its ops listener (`/readyz`, `/metrics`), if the zone's config has `[ops] listen`.
    pub ops: Option<SocketAddr>,
    /// A replica's HTTPS listener, used if the zone's config has `[http] listen`.
    http: Option<SocketAddr>,
}

struct ZoneProcesses {
    replicas: Vec<Replica>,
    /// In front of the replicas, on the zone's endpoint (None: one node, listening there itself).
    balancer: Option<Balancer>,
}

pub struct ProcessFederation {
    pub fed: DevFederation,
    bin: PathBuf,
    /// Arguments before `--config` (a subcommand, for a binary that is more than a node).
    prefix: Vec<OsString>,
    zones: BTreeMap<String, ZoneProcesses>,
    /// Running processes, by zone and replica.
    nodes: BTreeMap<(String, usize), Child>,
    /// How many times each zone's node (any of its replicas) was started.
    pub starts: BTreeMap<String, u32>,
    /// The nodes' `log.level` (`FTZ_LOG_LEVEL`) from their next start: "warn" unless set.
    pub log_level: String,
    /// The cluster the PostgreSQL zones' databases are in; dropped after the nodes are killed.
    postgres: Option<TempPostgres>,
}

/// A free port on 127.0.0.1 (see [`free_addr`]).
fn free_port() -> Result<u16, LocalError> {
    Ok(free_addr()?.port())
}

/// A free address on 127.0.0.1, its port outside the range the kernel takes the ports of
/// outgoing connections from (`ip_local_port_range`): a port from that range (what binding
/// port 0 gives) may be taken by any connection made before the node binds it, or while it is
/// down between a kill and its restart. Failing that, a port from the OS.
fn free_addr() -> Result<SocketAddr, LocalError> {
    use std::hash::{BuildHasher, Hasher};
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const FROM: u16 = 10_000;
    if low > FROM + 1_000 {
        for attempt in 0..1_000u64 {
            // A random port (std's hasher keys are random).
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(attempt);
            let port = FROM + (h.finish() % u64::from(low - FROM)) as u16;
            if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                return l.local_addr().map_err(|e| LocalError::Other(e.to_string()));
            }
        }
    }
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| LocalError::Other(format!("no free port: {e}")))?;
    l.local_addr().map_err(|e| LocalError::Other(e.to_string()))
}

fn other(what: &str) -> impl Fn(std::io::Error) -> LocalError + '_ {
    move |e| LocalError::Other(format!("{what}: {e}"))
}

fn read_config(path: &Path) -> Result<toml::Table, LocalError> {
    let text = std::fs::read_to_string(path).map_err(other("reading a node config"))?;
    text.parse().map_err(|e| LocalError::Other(format!("node config {}: {e}", path.display())))
}

fn write_config(path: &Path, doc: &toml::Table) -> Result<(), LocalError> {
    let text = toml::to_string(doc).map_err(|e| LocalError::Other(format!("node config: {e}")))?;
    std::fs::write(path, text).map_err(other("writing a node config"))
}

/// `doc[section]`, created empty if missing.
fn section<'a>(doc: &'a mut toml::Table, name: &str) -> Result<&'a mut toml::Table, LocalError> {
    match doc.entry(name).or_insert_with(|| toml::Value::Table(toml::Table::new())) {
        toml::Value::Table(t) => Ok(t),
        _ => Err(LocalError::Other(format!("node config: {name} is not a table"))),
    }
}

fn parse_addr(addr: &str) -> Result<SocketAddr, LocalError> {
    addr.parse().map_err(|e| LocalError::Other(format!("address {addr:?}: {e}")))
}

impl ProcessFederation {
    /// Creates a development federation of `zones` in `root` (nothing started yet), each node
    /// on a free port, with `limits` (`key = value` TOML pairs) set in every node's
    /// `[limits]`. Nodes run `bin` with `prefix` then `--config <path>`.
    pub fn create(
        root: &Path,
        zones: &[&str],
        bin: &Path,
        prefix: &[&str],
        limits: &[(&str, i64)],
    ) -> Result<ProcessFederation, LocalError> {
        let options = limits.iter().fold(ProcessOptions::new(), |o, (k, v)| o.limit(k, *v));
        Self::create_with(root, zones, bin, prefix, options)
    }

    /// The same, set up as `options` says (stores, replicas, settings).
    pub fn create_with(
        root: &Path,
        zones: &[&str],
        bin: &Path,
        prefix: &[&str],
        options: ProcessOptions,
    ) -> Result<ProcessFederation, LocalError> {
        let named = options.settings.iter().filter_map(|(z, ..)| z.as_ref());
        for z in options.postgres.iter().chain(options.replicas.keys()).chain(named) {
            if !zones.contains(&z.as_str()) {
                return Err(LocalError::Other(format!("options name zone {z}, which is not in the federation")));
            }
        }
        if let Some((z, _)) = options.replicas.iter().find(|(_, k)| **k == 0) {
            return Err(LocalError::Other(format!("{z}: a zone needs at least one replica")));
        }
        // A replicated zone's endpoint is its balancer's, bound now and kept.
        let mut fronts = BTreeMap::new();
        for z in options.replicas.keys() {
            let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(other("binding a balancer"))?;
            fronts.insert(z.clone(), l);
        }
        let spec = DevSpec {
            federation_id: "ftz-processes".into(),
            zones: zones
                .iter()
                .map(|z| {
                    let endpoint = match fronts.get(*z) {
                        Some(l) => l.local_addr().map_err(other("a balancer's address"))?.to_string(),
                        None => format!("127.0.0.1:{}", free_port()?),
                    };
                    Ok(DevZoneSpec {
                        id: ZoneId::new(*z).map_err(|e| LocalError::Other(e.to_string()))?,
                        display_name: dev::display_name(z),
                        endpoint,
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
        let postgres = if options.postgres.is_empty() {
            None
        } else {
            let pg = TempPostgres::start().map_err(|e| LocalError::Other(e.to_string()))?;
            for z in &options.postgres {
                pg.create_database(z).map_err(|e| LocalError::Other(e.to_string()))?;
            }
            Some(pg)
        };
        let mut processes = BTreeMap::new();
        for z in &fed.zones {
            let mut doc = read_config(&z.config_path)?;
            for (_, s, k, v) in
                options.settings.iter().filter(|(only, ..)| only.as_deref().is_none_or(|o| o == z.id.as_str()))
            {
                section(&mut doc, s)?.insert(k.clone(), v.clone());
            }
            if let Some(pg) = postgres.as_ref().filter(|_| options.postgres.contains(z.id.as_str())) {
                let store = section(&mut doc, "store")?;
                store.insert("engine".into(), "postgres".into());
                store.insert("url".into(), pg.url(z.id.as_str()).into());
            }
            write_config(&z.config_path, &doc)?;
            let ops = z.ops_endpoint.as_deref().map(parse_addr).transpose()?;
            let zone = match (options.replicas.get(z.id.as_str()), fronts.remove(z.id.as_str())) {
                (Some(k), Some(front)) => {
                    let replicas = (0..*k)
                        .map(|i| {
                            Ok(Replica {
                                config_path: z.dir.join(format!("node-{i}.toml")),
                                log_path: z.dir.join(format!("node-{i}.log")),
                                listen: free_addr()?,
                                // Replica 0 has the zone's ops address.
                                ops: if i == 0 { ops } else { Some(free_addr()?) },
                                http: Some(free_addr()?),
                            })
                        })
                        .collect::<Result<Vec<_>, LocalError>>()?;
                    let backends = replicas.iter().map(|r| r.listen).collect();
                    let balancer = Balancer::start(front, backends, balancer::DEFAULT_MAX_CONNECTIONS)
                        .map_err(other("starting a balancer"))?;
                    ZoneProcesses { replicas, balancer: Some(balancer) }
                }
                _ => ZoneProcesses {
                    replicas: vec![Replica {
                        config_path: z.config_path.clone(),
                        log_path: z.dir.join("node.log"),
                        listen: parse_addr(&z.endpoint)?,
                        ops,
                        http: None,
                    }],
                    balancer: None,
                },
            };
            processes.insert(z.id.to_string(), zone);
        }
        Ok(ProcessFederation {
            fed,
            bin: bin.to_path_buf(),
            prefix: prefix.iter().map(OsString::from).collect(),
            zones: processes,
            nodes: BTreeMap::new(),
            starts: BTreeMap::new(),
            log_level: "warn".into(),
            postgres,
        })
    }

    fn zone(&self, zone: &str) -> Result<&dev::DevZone, LocalError> {
        self.fed.zone(zone).ok_or_else(|| LocalError::Other(format!("no zone {zone}")))
    }

    fn processes(&self, zone: &str) -> Result<&ZoneProcesses, LocalError> {
        self.zones.get(zone).ok_or_else(|| LocalError::Other(format!("no zone {zone}")))
    }

    /// `zone`'s processes: its node, or its replicas (in the balancer's order).
    pub fn replicas(&self, zone: &str) -> &[Replica] {
        self.zones.get(zone).map_or(&[], |z| z.replicas.as_slice())
    }

    /// The balancer in front of `zone`'s replicas (None: a zone of one node).
    pub fn balancer(&self, zone: &str) -> Option<&Balancer> {
        self.zones.get(zone)?.balancer.as_ref()
    }

    /// The PostgreSQL cluster of the zones on PostgreSQL (to stop and start it, say).
    pub fn postgres(&self) -> Option<&TempPostgres> {
        self.postgres.as_ref()
    }

    /// Starts every process of `zone` that is not running (its node, or each of its replicas)
    /// and waits until each says it listens (at most a minute each). A node's log goes to
    /// `node.log` in the zone's directory, a replica's to `node-<i>.log`.
    pub fn start(&mut self, zone: &str) -> Result<(), LocalError> {
        for i in 0..self.processes(zone)?.replicas.len() {
            if !self.nodes.contains_key(&(zone.to_string(), i)) {
                self.start_replica(zone, i)?;
            }
        }
        Ok(())
    }

    /// Starts replica `i` of `zone` (0 for a zone of one node) and waits until it says it
    /// listens.
    pub fn start_replica(&mut self, zone: &str, i: usize) -> Result<(), LocalError> {
        let z = self.zone(zone)?;
        let zp = self.processes(zone)?;
        let r = zp.replicas.get(i).ok_or_else(|| LocalError::Other(format!("{zone} has no replica {i}")))?;
        if self.nodes.contains_key(&(zone.to_string(), i)) {
            return Err(LocalError::Other(format!("{zone}'s replica {i} is running")));
        }
        if zp.balancer.is_some() {
            // The zone's config, with this replica's own addresses.
            let mut doc = read_config(&z.config_path)?;
            doc.insert("listen".into(), r.listen.to_string().into());
            for (name, addr) in [("ops", r.ops), ("http", r.http)] {
                if let (Some(toml::Value::Table(t)), Some(addr)) = (doc.get_mut(name), addr)
                    && t.contains_key("listen")
                {
                    t.insert("listen".into(), addr.to_string().into());
                }
            }
            write_config(&r.config_path, &doc)?;
        }
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(&r.log_path).map_err(other("the node's log"))?;
        let mut cmd = Command::new(&self.bin);
        cmd.args(&self.prefix).arg("--config").arg(&r.config_path);
        // The config says it all: no override from this process's environment.
        for (var, _) in ftz_node::config::ENV_OVERRIDES {
            cmd.env_remove(var);
        }
        let mut child = cmd
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
            let log = std::fs::read_to_string(&r.log_path).unwrap_or_default();
            let who = if zp.balancer.is_some() { format!("{zone}'s replica {i}") } else { format!("{zone}'s node") };
            return Err(LocalError::Other(format!("{who} did not start:\n{log}")));
        }
        self.nodes.insert((zone.to_string(), i), child);
        *self.starts.entry(zone.to_string()).or_default() += 1;
        Ok(())
    }

    /// Kills every process of `zone` with SIGKILL: no shutdown, no flush.
    pub fn kill(&mut self, zone: &str) {
        for i in 0..self.replicas(zone).len() {
            self.kill_replica(zone, i);
        }
    }

    /// Kills replica `i` of `zone` with SIGKILL.
    pub fn kill_replica(&mut self, zone: &str, i: usize) {
        if let Some(mut child) = self.nodes.remove(&(zone.to_string(), i)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether any process of `zone` runs.
    pub fn is_running(&self, zone: &str) -> bool {
        self.nodes.keys().any(|(z, _)| z == zone)
    }

    pub fn is_replica_running(&self, zone: &str, i: usize) -> bool {
        self.nodes.contains_key(&(zone.to_string(), i))
    }

    fn pid(&self, zone: &str) -> Option<u32> {
        Some(self.nodes.get(&(zone.to_string(), 0))?.id())
    }

    /// The peak resident memory of `zone`'s running node (replica 0) so far (VmHWM), in MiB.
    pub fn peak_rss_mb(&self, zone: &str) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid(zone)?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb / 1024.0)
    }

    /// The CPU time `zone`'s running node (replica 0) has used so far.
    pub fn cpu_time(&self, zone: &str) -> Option<Duration> {
        process_cpu_time(self.pid(zone)?)
    }

    /// A channel to `zone` (its node or its balancer) as its development user with `role`.
    pub fn channel(&self, zone: &str, role: Role) -> Result<Channel, LocalError> {
        let z = self.zone(zone)?;
        Ok(ClientProfile::load(&z.profile_path(role))?.channel(Duration::from_secs(10))?)
    }

    /// A channel to replica `i` of `zone` itself (not through its balancer) as the zone's
    /// development user with `role`.
    pub fn replica_channel(&self, zone: &str, i: usize, role: Role) -> Result<Channel, LocalError> {
        let r = self.replicas(zone).get(i).ok_or_else(|| LocalError::Other(format!("{zone} has no replica {i}")))?;
        let mut p = ClientProfile::load(&self.zone(zone)?.profile_path(role))?;
        p.endpoint = r.listen.to_string();
        Ok(p.channel(Duration::from_secs(10))?)
    }

    /// What makes the channels of [`ProcessFederation::channel`] without borrowing the
    /// federation (for tasks that run while it is restarting nodes).
    pub fn channels(&self) -> impl Fn(&str, Role) -> Result<Channel, LocalError> + Send + Sync + 'static {
        let profiles: Vec<(String, Role, PathBuf)> = self
            .fed
            .zones
            .iter()
            .flat_map(|z| Role::ALL.iter().map(move |r| (z.id.to_string(), *r, z.profile_path(*r))))
            .collect();
        move |zone, role| {
            let (_, _, path) = profiles
                .iter()
                .find(|(z, r, _)| z == zone && *r == role)
                .ok_or_else(|| LocalError::Other(format!("no zone {zone}")))?;
            Ok(ClientProfile::load(path)?.channel(Duration::from_secs(10))?)
        }
    }

    /// The last `lines` lines that `keep` keeps of each of `zone`'s logs (node or replicas),
    /// each log headed by its file: what a failed test shows.
    pub fn log_tail(&self, zone: &str, lines: usize, keep: impl Fn(&str) -> bool) -> String {
        let mut out = String::new();
        for r in self.replicas(zone) {
            let text = std::fs::read_to_string(&r.log_path).unwrap_or_default();
            let kept: Vec<&str> = text.lines().filter(|l| keep(l)).collect();
            out.push_str(&format!("--- {} ({} such lines)\n", r.log_path.display(), kept.len()));
            for l in &kept[kept.len().saturating_sub(lines)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
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
        let running: Vec<(String, usize)> = self.nodes.keys().cloned().collect();
        for (z, i) in running {
            self.kill_replica(&z, i);
        }
        for z in self.zones.values_mut() {
            if let Some(b) = z.balancer.as_mut() {
                b.stop();
            }
        }
        // Then the PostgreSQL cluster (its field drops after this).
    }
}
