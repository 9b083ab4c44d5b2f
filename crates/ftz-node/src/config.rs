//! The node's configuration: a TOML file, then `FTZ_*` environment overrides, then validation.
//!
//! Relative paths in the file are relative to the file's own directory, so a config and its keys
//! can move together. Unknown keys are errors: a typo must not silently fall back to a default.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use ftz_core::{KeyId, ZoneId};
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid: {detail}")]
    Parse { path: PathBuf, detail: String },
    #[error("config: {field}: {detail}")]
    Invalid { field: &'static str, detail: String },
}

fn invalid(field: &'static str, detail: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field, detail: detail.into() }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's zone, e.g. "shanghai". Must be listed in the registry.
    pub zone_id: String,
    /// Address to listen on for peers and users, e.g. "0.0.0.0:7443".
    pub listen: String,
    /// The store's directory (created if missing).
    pub data_dir: PathBuf,
    pub tls: TlsFiles,
    pub keys: KeyFiles,
    pub registry: RegistrySource,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub recognition: RecognitionConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub ops: OpsConfig,
}

/// The operations listener: plain HTTP for Prometheus and the probes of a load balancer or a
/// cluster scheduler (`/metrics`, `/healthz`, `/readyz`). It serves nothing secret and takes
/// no input, so it has no TLS; keep it on loopback (or a monitoring network) all the same: it
/// tells anyone who can reach it the node's zone, peers and backlogs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsConfig {
    /// Address to listen on, e.g. "127.0.0.1:9464". None: no ops listener, and no metrics
    /// counted.
    pub listen: Option<String>,
    /// On SIGTERM, how long the node answers `/readyz` with 503 while still serving, so that a
    /// load balancer stops sending it new calls before it stops.
    pub drain_ms: u64,
    /// `/readyz` fails while entries wait for a checkpoint and none was signed for this long.
    pub max_checkpoint_delay_ms: u64,
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self { listen: None, drain_ms: 5_000, max_checkpoint_delay_ms: 60_000 }
    }
}

/// The HTTPS listener beside gRPC: the JSON API (and, later, the web console), over TLS 1.3
/// with the same client certificates, identities, roles, refusals and limits as gRPC.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on, e.g. "0.0.0.0:8443". None: no HTTPS listener.
    pub listen: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM chain of the node certificate (identity ftz://<zone>/node), leaf first.
    pub cert: PathBuf,
    /// PEM PKCS#8 private key of the node certificate (mode 0600).
    pub key: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFiles {
    /// PEM PKCS#8 Ed25519 node signing key (mode 0600); the registry must list its public key.
    pub node_signing_key: PathBuf,
    /// PEM PKCS#8 Ed25519 issuing key (mode 0600) that signs this zone's records; the registry
    /// must list it as an issuing key of the zone. Without it the node issues nothing.
    #[serde(default)]
    pub issuing_key: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrySource {
    /// A signed registry file installed at start if it is newer than the stored one.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Hex key id of an authority key that must have signed the first registry this node
    /// installs; learnt out of band from the zone authority. Not needed once one is installed.
    #[serde(default)]
    pub trust_anchor: Option<String>,
}

/// Explicit limits: nothing is left at "unlimited".
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest gRPC message accepted or sent, in bytes.
    pub max_message_bytes: usize,
    /// Deadline for any RPC served (callers may ask for less).
    pub request_timeout_ms: u64,
    /// Deadline for the TLS handshake of an incoming connection.
    pub handshake_timeout_ms: u64,
    /// Open connections at most; further ones are closed at once.
    pub max_connections: usize,
    /// Connections that have not yet made an authenticated call, at most: past it the oldest
    /// such connection is closed for the new one (a flood of anonymous connections cannot hold
    /// the slots that zones and users need).
    pub max_unauthenticated_connections: usize,
    /// Of those, from one source address at most (its oldest is closed for its newest).
    pub max_unauthenticated_per_source: usize,
    /// A connection that has made no authenticated call this long after it was accepted is
    /// closed.
    pub first_call_timeout_ms: u64,
    /// Connections one authenticated caller (a zone's node, a user) may hold at once.
    pub max_connections_per_caller: usize,
    /// A connection older than this is asked to go away (HTTP/2 GOAWAY) and closed after
    /// `request_timeout_ms` more: no caller keeps one TLS handshake, or a place among its
    /// connections, for ever. Clients reconnect transparently.
    pub max_connection_age_ms: u64,
    /// Concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Timeout for connecting to a peer node.
    pub peer_connect_timeout_ms: u64,
    /// Deadline for calls this node makes to peer nodes.
    pub peer_request_timeout_ms: u64,
    /// How far a signed request's time may be from this node's clock.
    pub max_clock_skew_ms: i64,
    /// Requests per second from each other zone's node (bursts up to twice that).
    pub peer_requests_per_second: u32,
    /// Requests per second from each of this zone's users (bursts up to twice that).
    pub user_requests_per_second: u32,
    /// Messages (other than receipts) waiting in the outbox for one destination, at most.
    pub outbox_per_destination: usize,
    /// Oldest transfer intent accepted, in milliseconds: a delivery retried from a sender's
    /// outbox may be this old, a replay older than this is refused.
    pub max_intent_age_ms: i64,
    /// Replicas of this node that share its store (`store.replicas`, set at load): every rate
    /// limit is divided among them.
    #[serde(skip)]
    pub replicas: u32,
}

impl Limits {
    /// This replica's share of a rate of `per_second` for the whole zone (at least 1).
    pub fn share(&self, per_second: u32) -> u32 {
        (per_second / self.replicas.max(1)).max(1)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 * 1024 * 1024,
            request_timeout_ms: 30_000,
            handshake_timeout_ms: 10_000,
            max_connections: 1024,
            max_unauthenticated_connections: 64,
            max_unauthenticated_per_source: 16,
            first_call_timeout_ms: 10_000,
            max_connections_per_caller: 64,
            max_connection_age_ms: 3_600_000,
            max_concurrent_streams: 128,
            peer_connect_timeout_ms: 5_000,
            peer_request_timeout_ms: 10_000,
            max_clock_skew_ms: 300_000,
            peer_requests_per_second: 200,
            user_requests_per_second: 50,
            max_intent_age_ms: 7 * 86_400_000,
            outbox_per_destination: 10_000,
            replicas: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter, e.g. "info" or "ftz_node=debug,info".
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { format: LogFormat::Text, level: "info".into() }
    }
}

/// Where the node keeps its state: sled in `data_dir` (the default), or a PostgreSQL database
/// that several replicas of the zone's node share (docs/scale-out.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StoreEngine {
    #[default]
    Sled,
    Postgres,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// "sled" or "postgres".
    pub engine: StoreEngine,
    /// sled's page cache in MiB (sled's own default is 1 GiB). 32 by default: a proof reads one
    /// tile (see `audit::tree`), so a larger cache buys little, and sled's memory grows beyond
    /// it anyway (docs/performance.md).
    pub cache_capacity_mb: u64,
    /// PostgreSQL: the connection URL (`postgresql://user@host:port/db`). A password is better
    /// given in `FTZ_STORE_URL` than in this file; it is never logged.
    pub url: Option<String>,
    /// PostgreSQL: connections at most.
    pub pool_size: usize,
    /// PostgreSQL: verify the server against this CA (PEM) and speak TLS; without it, no TLS
    /// (a database on the same host or a trusted link only).
    pub postgres_ca: Option<PathBuf>,
    /// PostgreSQL: each statement's and each connection attempt's deadline.
    pub timeout_ms: u64,
    /// PostgreSQL: how many replicas of this node serve the zone from this database. Each
    /// enforces 1/replicas of every rate limit (a caller's requests a second, a policy's
    /// requests per window), so that the zone as a whole admits no more than the limit (plus
    /// at most one request per replica) however the load balancer spreads the calls.
    pub replicas: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            engine: StoreEngine::Sled,
            cache_capacity_mb: 32,
            url: None,
            pool_size: 16,
            postgres_ca: None,
            timeout_ms: 10_000,
            replicas: 1,
        }
    }
}

/// The URL may hold a password: shown without it.
impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("engine", &self.engine)
            .field("cache_capacity_mb", &self.cache_capacity_mb)
            .field("url", &self.url.as_deref().map(redact_url))
            .field("pool_size", &self.pool_size)
            .field("postgres_ca", &self.postgres_ca)
            .field("timeout_ms", &self.timeout_ms)
            .field("replicas", &self.replicas)
            .finish()
    }
}

pub use ftz_store::redact_url;

impl StoreConfig {
    /// The PostgreSQL engine's options (engine = "postgres").
    pub fn postgres(&self) -> Result<ftz_store::PgOptions, ConfigError> {
        let url = self.url.clone().ok_or_else(|| invalid("store.url", "is needed with store.engine = \"postgres\""))?;
        // The audit log's appender holds one connection under the log's lock and reads with
        // another.
        if self.pool_size < 2 {
            return Err(invalid("store.pool_size", "must be at least 2 with store.engine = \"postgres\""));
        }
        if self.replicas == 0 {
            return Err(invalid("store.replicas", "must be at least 1"));
        }
        let mut o = ftz_store::PgOptions::new(url);
        o.pool_size = self.pool_size;
        o.tls_ca = self.postgres_ca.clone();
        o.timeout = std::time::Duration::from_millis(self.timeout_ms);
        Ok(o)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecognitionConfig {
    /// A record's status statement older than this is reported as UNKNOWN, never as valid.
    pub max_status_age_ms: i64,
    /// A cached foreign status older than this is refreshed from the issuing zone before use.
    pub refresh_after_ms: i64,
}

impl Default for RecognitionConfig {
    fn default() -> Self {
        Self { max_status_age_ms: 600_000, refresh_after_ms: 60_000 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// An intent whose receipt has not arrived after this long is logged as unacknowledged.
    pub ack_timeout_ms: i64,
    /// Checkpoints are signed at most this often while entries arrive.
    pub checkpoint_interval_ms: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { ack_timeout_ms: 60_000, checkpoint_interval_ms: 1_000 }
    }
}

/// The environment variables that override the file, for containers and systemd units.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("FTZ_ZONE_ID", "zone_id"),
    ("FTZ_LISTEN", "listen"),
    ("FTZ_DATA_DIR", "data_dir"),
    ("FTZ_REGISTRY_FILE", "registry.file"),
    ("FTZ_TRUST_ANCHOR", "registry.trust_anchor"),
    ("FTZ_LOG_FORMAT", "log.format"),
    ("FTZ_LOG_LEVEL", "log.level"),
    ("FTZ_OPS_LISTEN", "ops.listen"),
    ("FTZ_STORE_URL", "store.url"),
];

impl NodeConfig {
    /// Reads `path`, applies the `FTZ_*` overrides from the process environment, resolves
    /// relative paths, and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(path, |k| std::env::var(k).ok())
    }

    pub fn load_with_env(path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let mut cfg: NodeConfig =
            toml::from_str(&text).map_err(|e| ConfigError::Parse { path: path.into(), detail: e.to_string() })?;
        cfg.apply_env(env)?;
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.resolve_paths(base);
        cfg.validate()?;
        Ok(cfg)
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        for (var, _) in ENV_OVERRIDES {
            let Some(v) = env(var) else { continue };
            match *var {
                "FTZ_ZONE_ID" => self.zone_id = v,
                "FTZ_LISTEN" => self.listen = v,
                "FTZ_DATA_DIR" => self.data_dir = v.into(),
                "FTZ_REGISTRY_FILE" => self.registry.file = Some(v.into()),
                "FTZ_TRUST_ANCHOR" => self.registry.trust_anchor = Some(v),
                "FTZ_OPS_LISTEN" => self.ops.listen = Some(v),
                "FTZ_STORE_URL" => self.store.url = Some(v),
                "FTZ_LOG_FORMAT" => {
                    self.log.format = match v.as_str() {
                        "text" => LogFormat::Text,
                        "json" => LogFormat::Json,
                        other => return Err(invalid("FTZ_LOG_FORMAT", format!("{other:?} is not text or json"))),
                    }
                }
                "FTZ_LOG_LEVEL" => self.log.level = v,
                _ => {}
            }
        }
        Ok(())
    }

    /// Makes relative paths relative to `base` (the config file's directory).
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data_dir);
        fix(&mut self.tls.cert);
        fix(&mut self.tls.key);
        fix(&mut self.keys.node_signing_key);
        if let Some(k) = self.keys.issuing_key.as_mut() {
            fix(k);
        }
        if let Some(f) = self.registry.file.as_mut() {
            fix(f);
        }
        if let Some(f) = self.store.postgres_ca.as_mut() {
            fix(f);
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.zone()?;
        self.listen_addr()?;
        self.trust_anchor()?;
        let l = &self.limits;
        let checks: [(&'static str, bool, &str); 16] = [
            ("limits.max_message_bytes", (1024..=64 * 1024 * 1024).contains(&l.max_message_bytes), "1 KiB to 64 MiB"),
            ("limits.request_timeout_ms", (100..=600_000).contains(&l.request_timeout_ms), "100 ms to 10 min"),
            ("limits.handshake_timeout_ms", (100..=60_000).contains(&l.handshake_timeout_ms), "100 ms to 60 s"),
            ("limits.max_connections", (1..=100_000).contains(&l.max_connections), "1 to 100000"),
            ("limits.max_concurrent_streams", (1..=10_000).contains(&l.max_concurrent_streams), "1 to 10000"),
            (
                "limits.peer_request_timeout_ms",
                (100..=600_000).contains(&l.peer_request_timeout_ms),
                "100 ms to 10 min",
            ),
            ("limits.max_clock_skew_ms", (1_000..=3_600_000).contains(&l.max_clock_skew_ms), "1 s to 1 h"),
            ("limits.peer_requests_per_second", (1..=1_000_000).contains(&l.peer_requests_per_second), "1 to 1000000"),
            ("limits.user_requests_per_second", (1..=1_000_000).contains(&l.user_requests_per_second), "1 to 1000000"),
            ("limits.max_intent_age_ms", (60_000..=90 * 86_400_000).contains(&l.max_intent_age_ms), "1 min to 90 days"),
            (
                "limits.max_unauthenticated_connections",
                (1..=l.max_connections).contains(&l.max_unauthenticated_connections),
                "1 to limits.max_connections",
            ),
            (
                "limits.max_unauthenticated_per_source",
                (1..=l.max_unauthenticated_connections).contains(&l.max_unauthenticated_per_source),
                "1 to limits.max_unauthenticated_connections",
            ),
            ("limits.first_call_timeout_ms", (100..=600_000).contains(&l.first_call_timeout_ms), "100 ms to 10 min"),
            (
                "limits.max_connections_per_caller",
                (1..=l.max_connections).contains(&l.max_connections_per_caller),
                "1 to limits.max_connections",
            ),
            (
                "limits.max_connection_age_ms",
                (1_000..=30 * 86_400_000).contains(&l.max_connection_age_ms),
                "1 s to 30 days",
            ),
            ("limits.outbox_per_destination", (1..=1_000_000).contains(&l.outbox_per_destination), "1 to 1000000"),
        ];
        for (field, ok, range) in checks {
            if !ok {
                return Err(invalid(field, format!("must be {range}")));
            }
        }
        let r = &self.recognition;
        if !(1_000..=7 * 86_400_000).contains(&r.max_status_age_ms) {
            return Err(invalid("recognition.max_status_age_ms", "must be 1 s to 7 days"));
        }
        if !(0..=r.max_status_age_ms).contains(&r.refresh_after_ms) {
            return Err(invalid("recognition.refresh_after_ms", "must be 0 to max_status_age_ms"));
        }
        if !(100..=86_400_000).contains(&self.audit.ack_timeout_ms) {
            return Err(invalid("audit.ack_timeout_ms", "must be 100 ms to 1 day"));
        }
        if !(10..=3_600_000).contains(&self.audit.checkpoint_interval_ms) {
            return Err(invalid("audit.checkpoint_interval_ms", "must be 10 ms to 1 h"));
        }
        if !(8..=65_536).contains(&self.store.cache_capacity_mb) {
            return Err(invalid("store.cache_capacity_mb", "must be 8 to 65536"));
        }
        if self.store.engine == StoreEngine::Postgres {
            self.store.postgres()?;
            if !(1..=1_000).contains(&self.store.pool_size) {
                return Err(invalid("store.pool_size", "must be 1 to 1000"));
            }
            if !(100..=600_000).contains(&self.store.timeout_ms) {
                return Err(invalid("store.timeout_ms", "must be 100 ms to 10 min"));
            }
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| invalid("log.level", format!("{:?}: {e}", self.log.level)))?;
        Ok(())
    }

    pub fn zone(&self) -> Result<ZoneId, ConfigError> {
        ZoneId::new(self.zone_id.clone()).map_err(|e| invalid("zone_id", e.to_string()))
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen
            .parse()
            .map_err(|_| invalid("listen", format!("{:?} is not an address like 0.0.0.0:7443", self.listen)))
    }

    pub fn trust_anchor(&self) -> Result<Option<KeyId>, ConfigError> {
        self.registry
            .trust_anchor
            .as_deref()
            .map(|s| {
                s.parse().map_err(|_| invalid("registry.trust_anchor", format!("{s:?} is not a 32-digit hex key id")))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each of N replicas admits 1/N of a zone's rate: together never more than the rate (or
    /// one request a second each, when the rate is below N).
    #[test]
    fn replicas_share_every_rate_limit() {
        let mut l = Limits::default();
        assert_eq!(l.share(50), 50, "one node: the whole rate");
        l.replicas = 3;
        assert_eq!(l.share(50), 16);
        assert!(l.share(50) * 3 <= 50);
        assert_eq!(l.share(2), 1, "at least one each");
        l.replicas = 0;
        assert_eq!(l.share(50), 50, "an unset count is one node");
    }

    const GOOD: &str = r#"
zone_id = "shanghai"
listen = "127.0.0.1:7443"
data_dir = "data"
[tls]
cert = "tls/node.crt"
key = "tls/node.key"
[keys]
node_signing_key = "keys/node.pem"
[registry]
file = "registry.bin"
trust_anchor = "bcd1d56b5845f21e54ce5b764fc1d552"
"#;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<NodeConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.toml");
        std::fs::write(&p, text).unwrap();
        NodeConfig::load_with_env(&p, |k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn loads_and_resolves_relative_paths() {
        let cfg = load(GOOD, &[]).unwrap();
        assert!(cfg.tls.cert.is_absolute() && cfg.tls.cert.ends_with("tls/node.crt"));
        assert!(cfg.data_dir.is_absolute());
        assert_eq!(cfg.limits.max_message_bytes, 4 * 1024 * 1024);
        assert_eq!(cfg.trust_anchor().unwrap().unwrap().to_string(), "bcd1d56b5845f21e54ce5b764fc1d552");
    }

    #[test]
    fn environment_overrides_the_file() {
        let cfg =
            load(GOOD, &[("FTZ_LISTEN", "0.0.0.0:9000"), ("FTZ_LOG_FORMAT", "json"), ("FTZ_DATA_DIR", "/var/lib/ftz")])
                .unwrap();
        assert_eq!(cfg.listen, "0.0.0.0:9000");
        assert_eq!(cfg.log.format, LogFormat::Json);
        assert_eq!(cfg.data_dir, PathBuf::from("/var/lib/ftz"));
        let err = load(GOOD, &[("FTZ_LOG_FORMAT", "xml")]).unwrap_err();
        assert!(err.to_string().contains("FTZ_LOG_FORMAT"), "{err}");
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (GOOD.replace("\"shanghai\"", "\"Shang Hai\""), "zone_id"),
            (GOOD.replace("127.0.0.1:7443", "localhost"), "listen"),
            (GOOD.replace("bcd1d56b5845f21e54ce5b764fc1d552", "xyz"), "trust_anchor"),
            (format!("{GOOD}\n[limits]\nmax_message_bytes = 1\n"), "max_message_bytes"),
            (format!("{GOOD}\n[log]\nformat = \"xml\"\n"), "format"),
            (format!("{GOOD}\nsurprise = 1\n"), "surprise"),
            (GOOD.replace("[keys]\nnode_signing_key = \"keys/node.pem\"\n", ""), "keys"),
        ];
        for (text, field) in cases {
            let err = load(&text, &[]).unwrap_err().to_string();
            assert!(err.contains(field), "expected {field} in: {err}");
        }
        let missing = NodeConfig::load(Path::new("/nonexistent/node.toml")).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/node.toml"));
    }
}
