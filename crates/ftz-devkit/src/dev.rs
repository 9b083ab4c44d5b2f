//! A development federation on disk: per zone a CA, node and user certificates, authority,
//! node and issuing keys, a node config and user profiles; and one registry signed by every
//! authority. Used by `ftzctl dev init`, the demo and the tests. Every private key is generated
//! here, on the machine that uses it, and written with mode 0600; none is ever committed.
//!
//! Layout under the output directory:
//!
//! ```text
//! registry.bin                     the signed federation registry (protobuf Envelope)
//! <zone>/node.toml                 the node's config (paths relative to it)
//! <zone>/ca.crt  ca.key            the zone CA
//! <zone>/node.crt  node.key        the node's TLS certificate (ftz://<zone>/node)
//! <zone>/node-signing.key .pub     the node's Ed25519 run-time key
//! <zone>/authority.key .pub        the zone authority's Ed25519 key (offline in production)
//! <zone>/issuing.key .pub          the zone's Ed25519 issuing key
//! <zone>/users/<role>.crt .key     a user certificate per role (ftz://<zone>/<role>/dev)
//! <zone>/users/<role>.toml         a client profile for `ftzctl --as`
//! <zone>/users/<role>.p12          certificate, key and zone CA as PKCS#12, for a browser
//!                                  (password `ftz-dev`: [`crate::pkcs12::DEV_PASSWORD`])
//! ```

use std::path::{Path, PathBuf};

use ftz_core::{
    KeyId, Role, SigningKey, UnixMillis, ZoneId,
    envelope::{self, PayloadType},
};
use ftz_pki::{
    files::{self, FileError},
    issue::{IssueError, Validity, ZoneCa},
};
use ftz_proto::{FederationRegistry, KeyPurpose, ZoneEntry, ZoneKey};

use ftz_client::ClientProfile;
use ftz_node::config::{
    AuditConfig, HttpConfig, KeyFiles, Limits, LogConfig, NodeConfig, OpsConfig, RecognitionConfig, RegistrySource,
    StoreConfig, TlsFiles,
};

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    File(#[from] FileError),
    #[error("certificate generation: {0}")]
    Issue(#[from] IssueError),
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DevError + '_ {
    move |source| DevError::Io { path: path.to_path_buf(), source }
}

/// One zone to create.
#[derive(Debug, Clone)]
pub struct DevZoneSpec {
    pub id: ZoneId,
    pub display_name: String,
    /// Where the node will listen and peers will reach it, "host:port".
    pub endpoint: String,
    /// Where the node's HTTPS listener (JSON API) listens, "host:port"; None: none.
    pub http_endpoint: Option<String>,
    /// Where the node's ops listener (metrics, health) listens, "host:port"; None: none.
    pub ops_endpoint: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DevSpec {
    pub federation_id: String,
    pub zones: Vec<DevZoneSpec>,
    /// Distinct authorities needed for the next registry version.
    pub quorum: u32,
    pub validity_days: i64,
    pub now_ms: UnixMillis,
}

/// What was created for one zone. Holds the CA in memory so tests can issue more certificates.
pub struct DevZone {
    pub id: ZoneId,
    pub dir: PathBuf,
    pub endpoint: String,
    /// The HTTPS listener's address, if the zone has one.
    pub http_endpoint: Option<String>,
    /// The ops listener's address, if the zone has one.
    pub ops_endpoint: Option<String>,
    pub config_path: PathBuf,
    pub ca: ZoneCa,
    pub authority_key_id: KeyId,
    pub node_key_id: KeyId,
    pub validity: Validity,
}

impl DevZone {
    /// The client profile of this zone's development user with `role`.
    pub fn profile_path(&self, role: Role) -> PathBuf {
        self.dir.join("users").join(format!("{role}.toml"))
    }

    /// The PKCS#12 file (certificate, key, zone CA) of this zone's development user with
    /// `role`, for a browser; its password is [`crate::pkcs12::DEV_PASSWORD`].
    pub fn pkcs12_path(&self, role: Role) -> PathBuf {
        self.dir.join("users").join(format!("{role}.p12"))
    }

    /// The zone CA's certificate (PEM).
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn authority_key_path(&self) -> PathBuf {
        self.dir.join("authority.key")
    }

    pub fn node_key_path(&self) -> PathBuf {
        self.dir.join("node-signing.key")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }
}

pub struct DevFederation {
    pub root: PathBuf,
    pub registry_path: PathBuf,
    pub zones: Vec<DevZone>,
}

impl DevFederation {
    pub fn zone(&self, id: &str) -> Option<&DevZone> {
        self.zones.iter().find(|z| z.id.as_str() == id)
    }
}

const DAY_MS: i64 = 86_400_000;

/// Example documents (records, agreements, policies) for demos and tests.
pub use ftz_policy::examples::{
    agreement_doc, certification_rule, inspection_rule, record_policy, sample_certification, sample_inspection,
};

/// Creates the federation under `root` (which must be empty or absent).
pub fn create(spec: &DevSpec, root: &Path) -> Result<DevFederation, DevError> {
    if spec.zones.is_empty() {
        return Err(DevError::Invalid("at least one zone is needed".into()));
    }
    if spec.quorum == 0 || spec.quorum as usize > spec.zones.len() {
        return Err(DevError::Invalid(format!("quorum {} must be between 1 and {}", spec.quorum, spec.zones.len())));
    }
    if root.exists() && std::fs::read_dir(root).map_err(io(root))?.next().is_some() {
        return Err(DevError::Invalid(format!("{} is not empty; choose a new directory", root.display())));
    }
    std::fs::create_dir_all(root).map_err(io(root))?;

    let validity =
        Validity { not_before_ms: spec.now_ms - 3_600_000, not_after_ms: spec.now_ms + spec.validity_days * DAY_MS };
    let mut zones = Vec::new();
    let mut entries = Vec::new();
    let mut authorities = Vec::new();
    for z in &spec.zones {
        let (zone, entry, authority) = create_zone(z, root, validity)?;
        zones.push(zone);
        entries.push(entry);
        authorities.push(authority);
    }

    let doc = FederationRegistry {
        federation_id: spec.federation_id.clone(),
        version: 1,
        quorum: spec.quorum,
        issued_at_ms: spec.now_ms,
        valid_from_ms: validity.not_before_ms,
        valid_until_ms: validity.not_after_ms,
        zones: entries,
    };
    let signers: Vec<&SigningKey> = authorities.iter().collect();
    let env = envelope::seal(PayloadType::FEDERATION_REGISTRY, &doc, &signers);
    let registry_path = root.join("registry.bin");
    files::write_public(&registry_path, &prost::Message::encode_to_vec(&env))?;
    Ok(DevFederation { root: root.to_path_buf(), registry_path, zones })
}

fn create_zone(z: &DevZoneSpec, root: &Path, validity: Validity) -> Result<(DevZone, ZoneEntry, SigningKey), DevError> {
    let dir = root.join(z.id.as_str());
    let users = dir.join("users");
    std::fs::create_dir_all(&users).map_err(io(&users))?;

    let ca = ZoneCa::generate(&z.id, validity)?;
    files::write_public(&dir.join("ca.crt"), ca.issued.cert_pem.as_bytes())?;
    files::write_secret(&dir.join("ca.key"), ca.issued.key_pem.as_bytes())?;

    let host = z.endpoint.rsplit_once(':').map(|(h, _)| h.trim_matches(['[', ']']).to_string()).unwrap_or_default();
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if !host.is_empty() && !hosts.contains(&host) {
        hosts.push(host);
    }
    let node = ca.issue_node(&z.id, &hosts, validity)?;
    files::write_public(&dir.join("node.crt"), node.cert_pem.as_bytes())?;
    files::write_secret(&dir.join("node.key"), node.key_pem.as_bytes())?;

    let mut keys = Vec::new();
    let mut gen_key = |name: &str, purpose: KeyPurpose| -> Result<SigningKey, DevError> {
        let key = files::generate_signing_key(&dir.join(format!("{name}.key")))?;
        files::write_public(&dir.join(format!("{name}.pub")), files::public_key_line(&key.verifying_key()).as_bytes())?;
        keys.push(ZoneKey {
            purpose: purpose as i32,
            public_key: key.verifying_key().as_bytes().to_vec(),
            valid_from_ms: validity.not_before_ms,
            valid_until_ms: 0,
        });
        Ok(key)
    };
    let authority = gen_key("authority", KeyPurpose::Authority)?;
    let node_key = gen_key("node-signing", KeyPurpose::Node)?;
    gen_key("issuing", KeyPurpose::Issuing)?;

    for role in Role::ALL {
        let id = ftz_core::Identity::user(z.id.clone(), role, "dev").map_err(|e| DevError::Invalid(e.to_string()))?;
        let cert = ca.issue_user(&id, validity)?;
        files::write_public(&users.join(format!("{role}.crt")), cert.cert_pem.as_bytes())?;
        files::write_secret(&users.join(format!("{role}.key")), cert.key_pem.as_bytes())?;
        let p12 = crate::pkcs12::encode_pem(
            &format!("ftz {} {role} (dev)", z.id),
            &cert.cert_der,
            &cert.key_pem,
            &ca.issued.cert_der,
            crate::pkcs12::DEV_PASSWORD,
        )
        .map_err(|e| DevError::Invalid(e.to_string()))?;
        files::write_secret(&users.join(format!("{role}.p12")), &p12)?;
        let profile = ClientProfile {
            zone: z.id.to_string(),
            endpoint: z.endpoint.clone(),
            ca: "../ca.crt".into(),
            cert: format!("{role}.crt").into(),
            key: format!("{role}.key").into(),
        };
        write_toml(&users.join(format!("{role}.toml")), &profile)?;
    }

    let config = NodeConfig {
        zone_id: z.id.to_string(),
        listen: z.endpoint.clone(),
        data_dir: "data".into(),
        tls: TlsFiles { cert: "node.crt".into(), key: "node.key".into() },
        keys: KeyFiles { node_signing_key: "node-signing.key".into(), issuing_key: Some("issuing.key".into()) },
        registry: RegistrySource {
            file: Some("../registry.bin".into()),
            trust_anchor: Some(authority.key_id().to_string()),
        },
        limits: Limits::default(),
        log: LogConfig::default(),
        store: StoreConfig::default(),
        recognition: RecognitionConfig::default(),
        audit: AuditConfig::default(),
        http: HttpConfig { listen: z.http_endpoint.clone() },
        ops: OpsConfig { listen: z.ops_endpoint.clone(), ..OpsConfig::default() },
    };
    let config_path = dir.join("node.toml");
    write_toml(&config_path, &config)?;

    let entry = ZoneEntry {
        zone_id: z.id.to_string(),
        display_name: z.display_name.clone(),
        endpoint: z.endpoint.clone(),
        ca_cert_der: ca.issued.cert_der.clone(),
        keys,
        valid_from_ms: validity.not_before_ms,
        valid_until_ms: validity.not_after_ms,
    };
    let zone = DevZone {
        id: z.id.clone(),
        dir,
        endpoint: z.endpoint.clone(),
        http_endpoint: z.http_endpoint.clone(),
        ops_endpoint: z.ops_endpoint.clone(),
        config_path,
        authority_key_id: authority.key_id(),
        node_key_id: node_key.key_id(),
        ca,
        validity,
    };
    Ok((zone, entry, authority))
}

fn write_toml<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), DevError> {
    let text = toml::to_string_pretty(value).map_err(|e| DevError::Invalid(format!("{}: {e}", path.display())))?;
    files::write_public(path, text.as_bytes())?;
    Ok(())
}

/// Display names of the zones the demo and `ftzctl dev init` know by id.
pub fn display_name(id: &str) -> String {
    match id {
        "shanghai" => "China (Shanghai) Pilot Free Trade Zone".into(),
        "hainan" => "Hainan Free Trade Port".into(),
        "guangdong" => "China (Guangdong) Pilot Free Trade Zone".into(),
        other => format!("{other} free trade zone"),
    }
}

/// Signs an agreement with the authority keys of both its zones, read from the federation's
/// files (in production each authority signs on its own machine: `ftzctl agreement sign`).
pub fn sign_agreement(
    fed: &DevFederation,
    doc: &ftz_proto::RecognitionAgreement,
) -> Result<ftz_proto::Envelope, DevError> {
    let mut keys = Vec::new();
    for z in [&doc.from_zone, &doc.to_zone] {
        let zone = fed.zone(z).ok_or_else(|| DevError::Invalid(format!("no zone {z} in this federation")))?;
        keys.push(files::read_signing_key(&zone.authority_key_path())?);
    }
    let refs: Vec<&SigningKey> = keys.iter().collect();
    Ok(envelope::seal(PayloadType::RECOGNITION_AGREEMENT, doc, &refs))
}

/// Signs a policy with the authority keys of its provider and every consumer, read from the
/// federation's files (in production each authority signs on its own machine).
pub fn sign_policy(fed: &DevFederation, doc: &ftz_proto::ExchangePolicy) -> Result<ftz_proto::Envelope, DevError> {
    let mut keys = Vec::new();
    for z in std::iter::once(&doc.provider_zone).chain(doc.consumer_zones.iter()) {
        let zone = fed.zone(z).ok_or_else(|| DevError::Invalid(format!("no zone {z} in this federation")))?;
        keys.push(files::read_signing_key(&zone.authority_key_path())?);
    }
    let refs: Vec<&SigningKey> = keys.iter().collect();
    Ok(envelope::seal(PayloadType::EXCHANGE_POLICY, doc, &refs))
}
