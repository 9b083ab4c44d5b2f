//! Test harness: whole federations on 127.0.0.1, started in-process with real nodes (real mTLS,
//! real sled stores in temporary directories, ports from the OS), plus clients that present any
//! identity a test needs, good or bad.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod crash;
pub mod https;
pub mod ops;
pub mod rogue;

use std::{sync::Arc, time::Duration};

use ftz_client::ExpectedServer;
use ftz_core::{Clock, Reason, Role, SigningKey, SystemClock, envelope};
use ftz_devkit::{DevZone, LocalFederation};
use ftz_pki::{files, issue::Issued};
use ftz_proto::{
    Certification, DataClass, Envelope, FederationRegistry, InspectionResult, RecognitionAgreement, RecognitionRule,
    RecordKind, admin_client::AdminClient, issuer_client::IssuerClient, verify_client::VerifyClient,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tonic::transport::Channel;

pub use ftz_client::reason_of;

/// A running federation. Dropping it stops nothing gracefully; call [`Cluster::shutdown`].
pub struct Cluster {
    pub local: LocalFederation,
    pub clock: Arc<dyn Clock>,
    dir: tempfile::TempDir,
    /// The throwaway PostgreSQL cluster the nodes' stores are in (see [`on_postgres`]).
    _postgres: Option<ftz_devkit::postgres::TempPostgres>,
}

/// Whether the multi-node tests run their nodes on PostgreSQL (`FTZ_TEST_STORE=postgres`: each
/// zone's node on a database of its own in one throwaway cluster) instead of sled. `.ci/run`
/// runs them both ways.
pub fn on_postgres() -> bool {
    match std::env::var("FTZ_TEST_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("sled") | Err(_) => false,
        Ok(other) => panic!("FTZ_TEST_STORE={other:?}: say sled or postgres"),
    }
}

/// A throwaway PostgreSQL cluster with a database per zone, and the change that puts each
/// node's store in its zone's database.
pub fn postgres_for(zones: &[&str]) -> (ftz_devkit::postgres::TempPostgres, ftz_devkit::local::Tune) {
    let pg = ftz_devkit::postgres::TempPostgres::start().unwrap_or_else(|e| panic!("{e}"));
    for z in zones {
        pg.create_database(z).unwrap_or_else(|e| panic!("{e}"));
    }
    let base = pg.url("");
    let tune: ftz_devkit::local::Tune = Arc::new(move |cfg: &mut ftz_node::NodeConfig| {
        cfg.store.engine = ftz_node::config::StoreEngine::Postgres;
        cfg.store.url = Some(format!("{base}{}", cfg.zone_id));
    });
    (pg, tune)
}

impl Cluster {
    /// Starts one node per zone, wall clock.
    pub async fn start(zones: &[&str]) -> Cluster {
        Self::start_with_clock(zones, Arc::new(SystemClock)).await
    }

    pub async fn start_with_clock(zones: &[&str], clock: Arc<dyn Clock>) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("federation");
        if on_postgres() {
            let (pg, tune) = postgres_for(zones);
            let local =
                LocalFederation::start_tuned(zones, &root, clock.clone(), tune).await.expect("federation starts");
            for z in &local.fed.zones {
                assert!(!z.data_dir().join("db").exists(), "{}'s node runs on sled, not on PostgreSQL", z.id);
                // In its config file too, for what reads the file (restore, --check).
                let text = std::fs::read_to_string(&z.config_path).expect("a node config");
                let mut doc: toml::Table = text.parse().expect("a node config");
                let mut store = toml::Table::new();
                store.insert("engine".into(), toml::Value::String("postgres".into()));
                store.insert("url".into(), toml::Value::String(pg.url(z.id.as_str())));
                doc.insert("store".into(), toml::Value::Table(store));
                std::fs::write(&z.config_path, toml::to_string(&doc).expect("toml")).expect("a node config");
            }
            return Cluster { local, clock, dir, _postgres: Some(pg) };
        }
        let local = LocalFederation::start(zones, &root, clock.clone()).await.expect("federation starts");
        Cluster { local, clock, dir, _postgres: None }
    }

    /// The leaves of `zone`'s transfer entries (the first 1000), as its auditor lists them.
    pub async fn transfer_leaves(&self, zone: &str) -> Vec<Vec<u8>> {
        let req = ftz_proto::ListEntriesRequest { limit: 1000, decision: "transfer".into(), ..Default::default() };
        let mut audit = ftz_proto::audit_client::AuditClient::new(self.user(zone, Role::Auditor));
        audit.list_entries(req).await.expect("entries").into_inner().entries.into_iter().map(|e| e.leaf).collect()
    }

    /// A cluster around a federation a test started itself (tuned limits), keeping `dir`.
    pub fn from_local(local: LocalFederation, clock: Arc<dyn Clock>, dir: tempfile::TempDir) -> Cluster {
        Cluster { local, clock, dir, _postgres: None }
    }

    /// `zone`'s store, opened as its node opens it (its node must be stopped on sled).
    pub fn open_store(&self, zone: &str) -> ftz_store::Store {
        let cfg = ftz_node::NodeConfig::load(&self.zone(zone).config_path).expect("the node's config");
        ftz_node::open_store(&cfg).expect("the node's store")
    }

    /// Loses `zone`'s store, as a lost disk (sled: its data directory) or a lost database does.
    pub fn lose_store(&self, zone: &str) {
        match &self._postgres {
            None => std::fs::remove_dir_all(self.zone(zone).data_dir()).expect("removing the data directory"),
            Some(pg) => {
                pg.drop_database(zone).unwrap_or_else(|e| panic!("{e}"));
                pg.create_database(zone).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }

    /// Whether `zone` has a store (sled: its data directory; PostgreSQL: one in its database).
    pub fn has_store(&self, zone: &str) -> bool {
        match &self._postgres {
            None => self.zone(zone).data_dir().exists(),
            Some(_) => {
                let cfg = ftz_node::NodeConfig::load(&self.zone(zone).config_path).expect("config");
                let mut o = cfg.store.postgres().expect("postgres options");
                o.create = false;
                !matches!(ftz_store::Store::open_postgres(o), Err(ftz_store::StoreError::Absent))
            }
        }
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn zone(&self, zone: &str) -> &DevZone {
        self.local.fed.zone(zone).expect("zone exists")
    }

    pub fn user(&self, zone: &str, role: Role) -> Channel {
        self.local.user_channel(zone, role).expect("profile loads")
    }

    /// A user of `user_zone` (its real certificate) talking to the node of `node_zone`.
    pub fn user_at(&self, user_zone: &str, role: Role, node_zone: &str) -> Channel {
        let mut p = self.local.profile(user_zone, role).expect("profile loads");
        let node = self.zone(node_zone);
        p.zone = node.id.to_string();
        p.endpoint = node.endpoint.clone();
        p.ca = node.dir.join("ca.crt");
        p.channel_with_clock(Duration::from_secs(10), self.clock.clone()).expect("channel")
    }

    pub fn admin(&self, zone: &str) -> AdminClient<Channel> {
        AdminClient::new(self.user(zone, Role::Admin))
    }

    pub fn issuer(&self, zone: &str) -> IssuerClient<Channel> {
        IssuerClient::new(self.user(zone, Role::Issuer))
    }

    pub fn verifier(&self, zone: &str) -> VerifyClient<Channel> {
        VerifyClient::new(self.user(zone, Role::Enterprise))
    }

    /// Installs an agreement from `from` to `to` (signed by both authorities) on both nodes,
    /// and an exchange policy letting the records it covers travel from `from` to `to` for the
    /// purposes the tests use (see [`TEST_PURPOSES`]).
    pub async fn agree(
        &self,
        id: &str,
        from: &str,
        to: &str,
        rules: Vec<RecognitionRule>,
        valid_for_ms: i64,
    ) -> Envelope {
        let mut classes: Vec<DataClass> = rules
            .iter()
            .map(|r| {
                if r.kind == RecordKind::Inspection as i32 {
                    DataClass::InspectionResult
                } else {
                    DataClass::Certification
                }
            })
            .collect();
        classes.dedup();
        for class in classes {
            self.allow(&format!("{id}-{}", class as i32), from, to, class).await;
        }
        let now = self.clock.now_ms();
        let doc = RecognitionAgreement {
            agreement_id: id.into(),
            version: 1,
            from_zone: from.into(),
            to_zone: to.into(),
            rules,
            valid_from_ms: now - 60_000,
            valid_until_ms: now + valid_for_ms,
        };
        self.local.install_agreement(&doc).await.expect("agreement installs")
    }

    /// Installs a record policy from `provider` to `consumer` for `class` and [`TEST_PURPOSES`].
    pub async fn allow(&self, id: &str, provider: &str, consumer: &str, class: DataClass) -> Envelope {
        let doc = ftz_devkit::dev::record_policy(id, provider, consumer, class, &TEST_PURPOSES, self.clock.now_ms());
        self.local.install_policy(&doc).await.expect("policy installs")
    }

    /// A channel to `zone`'s node presenting `identity` (None: no client certificate).
    pub fn channel_as(&self, zone: &str, identity: Option<&Issued>) -> Channel {
        let z = self.zone(zone);
        let expect =
            ExpectedServer { zone: z.id.clone(), ca_der: z.ca.issued.cert_der.clone(), clock: self.clock.clone() };
        let identity = identity.map(|i| {
            (
                vec![CertificateDer::from(i.cert_der.clone())],
                PrivateKeyDer::from_pem_slice(i.key_pem.as_bytes()).expect("key pem"),
            )
        });
        ftz_client::channel(&z.endpoint, expect, identity, Duration::from_secs(10)).expect("channel")
    }

    pub fn authority_key(&self, zone: &str) -> SigningKey {
        files::read_signing_key(&self.zone(zone).authority_key_path()).expect("authority key")
    }

    /// The registry document the federation started with.
    pub fn registry_doc(&self) -> FederationRegistry {
        let bytes = std::fs::read(&self.local.fed.registry_path).unwrap();
        let env: Envelope = prost::Message::decode(bytes.as_slice()).unwrap();
        envelope::decode_payload(&env, envelope::PayloadType::FEDERATION_REGISTRY).unwrap()
    }

    /// `doc` signed by the authorities of `zones`.
    pub fn sign_registry(&self, doc: &FederationRegistry, zones: &[&str]) -> Envelope {
        let keys: Vec<SigningKey> = zones.iter().map(|z| self.authority_key(z)).collect();
        let refs: Vec<&SigningKey> = keys.iter().collect();
        envelope::seal(envelope::PayloadType::FEDERATION_REGISTRY, doc, &refs)
    }

    /// A bundle of `issuing`'s record `id`, exported by `at`'s node for its enterprise.
    pub async fn export_bundle(&self, at: &str, issuing: &str, id: &str) -> Envelope {
        self.verifier(at)
            .export_bundle(ftz_proto::ExportBundleRequest {
                r#ref: Some(ftz_proto::RecordRef { issuing_zone: issuing.into(), record_id: id.into() }),
                recognising_zone: String::new(),
                purpose: "audit".into(),
            })
            .await
            .expect("exported")
            .into_inner()
            .bundle
            .expect("a bundle")
    }

    pub async fn shutdown(self) {
        self.local.shutdown().await;
    }
}

/// The reason code of a failed call, for assertions.
pub fn reason<T: std::fmt::Debug>(res: Result<T, tonic::Status>) -> (tonic::Code, Option<Reason>) {
    let status = res.expect_err("call must be refused");
    (status.code(), reason_of(&status))
}

pub const DAY_MS: i64 = 86_400_000;

/// The purposes the record policies of [`Cluster::agree`] allow.
pub const TEST_PURPOSES: [&str; 4] = ["verification", "customs-clearance", "import-clearance", "audit"];

pub use ftz_devkit::dev::{certification_rule as cert_rule, inspection_rule};

/// A certification issued now (by the cluster clock), valid for a year.
pub fn certification(c: &Cluster, id: &str, cert_type: &str) -> Certification {
    ftz_devkit::dev::sample_certification(id, cert_type, c.clock.now_ms())
}

/// A passing inspection result for a lot, tested now.
pub fn inspection(c: &Cluster, id: &str, lot: &str) -> InspectionResult {
    ftz_devkit::dev::sample_inspection(id, lot, c.clock.now_ms())
}

/// A valid unified social credit code: `prefix` (region and registration digits) and `n`,
/// padded to 17 digits, then its check character.
pub fn uscc(prefix: &str, n: u64) -> String {
    let first17 = format!("{prefix}{n:0width$}", width = 17usize.saturating_sub(prefix.len()));
    format!("{first17}{}", ftz_core::records::uscc_check_char(&first17).expect("17 digits"))
}

/// One thousand industry rows of `region` (part `part` of a larger dataset: enterprises
/// `part * 1000` on, their codes under `uscc_prefix`), each enterprise named "Enterprise
/// part-i" and `name_suffix`: bulk for a store of some size.
pub fn bulk_rows(part: u32, uscc_prefix: &str, region: &str, name_suffix: &str) -> Vec<ftz_proto::IndustryRow> {
    (0..1000u32)
        .map(|i| ftz_proto::IndustryRow {
            line: u64::from(i) + 2,
            enterprise_uscc: uscc(uscc_prefix, u64::from(part * 1000 + i)),
            enterprise_name: format!("Enterprise {part}-{i}{name_suffix}"),
            industry_code: "C3841".into(),
            region: region.into(),
            period: "2026-Q1".into(),
            output_value: 1_000_000,
            employment: 50,
            capacity: 100,
        })
        .collect()
}

/// A TCP proxy on 127.0.0.1 in front of a node, that a test can cut and heal: while cut, it
/// drops every open connection and refuses new ones (a network partition, as both ends see it).
pub struct FaultyLink {
    pub addr: std::net::SocketAddr,
    listener: Option<tokio::net::TcpListener>,
    cut: tokio::sync::watch::Sender<bool>,
}

impl FaultyLink {
    /// Binds the proxy's port (from the OS); [`FaultyLink::forward_to`] starts it.
    pub async fn bind() -> FaultyLink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (cut, _) = tokio::sync::watch::channel(false);
        FaultyLink { addr, listener: Some(listener), cut }
    }

    /// Starts forwarding every connection to `target`.
    pub fn forward_to(&mut self, target: std::net::SocketAddr) {
        let listener = self.listener.take().expect("started once");
        let cut = self.cut.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                if *cut.borrow() {
                    continue; // dropped: the connection is refused
                }
                let mut cut_rx = cut.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.wait_for(|c| *c) => {}
                    }
                });
            }
        });
    }

    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn heal(&self) {
        self.cut.send_replace(false);
    }
}
