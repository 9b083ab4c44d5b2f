//! A node's capabilities without a server, for the domain modules' unit tests: a temporary
//! store, a manual clock, a registry of three zones whose keys live in memory, and every
//! handle built as the composition root builds it. Peers point at a closed port, so a test that
//! calls another zone sees it unreachable.

use std::{collections::BTreeMap, sync::Arc};

use ftz_core::{
    Clock, ManualClock, Registry, SigningKey, ZoneId,
    envelope::{self, PayloadType},
};
use ftz_pki::{
    files,
    issue::{Validity, ZoneCa},
};
use ftz_proto::{Envelope, FederationRegistry, KeyPurpose, ZoneEntry, ZoneKey};
use ftz_store::Store;
use prost::Message;
use tokio::sync::watch;

use crate::{
    agreements::Agreements,
    audit::AuditLog,
    config::{Limits, RecognitionConfig},
    core::Core,
    issuing::Issuer,
    outbox::{Courier, Kind, Outbox},
    peers::PeerClients,
    policies::Policies,
    recognition::Verifier,
    tasks::Tasks,
    transfer::Transfers,
};

pub(crate) const ZONES: [&str; 3] = ["shanghai", "hainan", "guangdong"];
pub(crate) const DAY_MS: i64 = 86_400_000;
/// The kit's start time: 2026-01-01.
pub(crate) const T0: i64 = 1_767_225_600_000;

/// The keys of one zone.
pub(crate) struct ZoneKeys {
    pub authority: SigningKey,
    pub node: SigningKey,
    pub issuing: SigningKey,
    /// PKCS#8 of the node and issuing keys, to give the node its own copies.
    node_pkcs8: Vec<u8>,
    issuing_pkcs8: Vec<u8>,
}

pub(crate) struct Kit {
    pub clock: Arc<ManualClock>,
    pub core: Arc<Core>,
    pub log: AuditLog,
    pub outbox: Arc<Outbox>,
    pub policies: Arc<Policies>,
    pub agreements: Arc<Agreements>,
    pub transfers: Arc<Transfers>,
    pub issuer: Issuer,
    pub verifier: Verifier,
    pub keys: BTreeMap<&'static str, ZoneKeys>,
    _shutdown: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

fn key() -> (SigningKey, Vec<u8>) {
    SigningKey::generate().expect("a key")
}

fn copy(pkcs8: &[u8]) -> SigningKey {
    SigningKey::from_pkcs8(pkcs8).expect("a key")
}

impl Kit {
    /// shanghai's node, with the real couriers.
    pub(crate) async fn new() -> Self {
        Self::with_couriers(None).await
    }

    /// shanghai's node; `couriers` replaces the outbox's couriers when given (and then at most
    /// 3 messages wait for one destination, so tests reach the quota).
    pub(crate) async fn with_couriers(couriers: Option<Vec<(Kind, Arc<dyn Courier>)>>) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let clock = Arc::new(ManualClock::new(T0));
        let validity = Validity { not_before_ms: T0 - DAY_MS, not_after_ms: T0 + 365 * DAY_MS };
        let mut keys = BTreeMap::new();
        let mut entries = Vec::new();
        let mut own_tls = None;
        for z in ZONES {
            let id = ZoneId::new(z).expect("a zone id");
            let ca = ZoneCa::generate(&id, validity).expect("a CA");
            let ((authority, _), (node, node_pkcs8), (issuing, issuing_pkcs8)) = (key(), key(), key());
            let k = ZoneKeys { authority, node, issuing, node_pkcs8, issuing_pkcs8 };
            let listed = |purpose: KeyPurpose, key: &SigningKey| ZoneKey {
                purpose: purpose as i32,
                public_key: key.verifying_key().as_bytes().to_vec(),
                valid_from_ms: validity.not_before_ms,
                valid_until_ms: 0,
            };
            entries.push(ZoneEntry {
                zone_id: z.into(),
                display_name: z.into(),
                endpoint: "127.0.0.1:1".into(),
                ca_cert_der: ca.issued.cert_der.clone(),
                keys: vec![
                    listed(KeyPurpose::Authority, &k.authority),
                    listed(KeyPurpose::Node, &k.node),
                    listed(KeyPurpose::Issuing, &k.issuing),
                ],
                valid_from_ms: validity.not_before_ms,
                valid_until_ms: validity.not_after_ms,
            });
            if z == ZONES[0] {
                let node = ca.issue_node(&id, &["localhost".into()], validity).expect("a node certificate");
                let (crt, tls_key) = (dir.path().join("node.crt"), dir.path().join("node.key"));
                files::write_public(&crt, node.cert_pem.as_bytes()).expect("write");
                files::write_secret(&tls_key, node.key_pem.as_bytes()).expect("write");
                own_tls =
                    Some((files::read_cert_chain(&crt).expect("chain"), files::read_tls_key(&tls_key).expect("key")));
            }
            keys.insert(z, k);
        }
        let doc = FederationRegistry {
            federation_id: "ftz-test".into(),
            version: 1,
            quorum: 2,
            issued_at_ms: T0,
            valid_from_ms: validity.not_before_ms,
            valid_until_ms: validity.not_after_ms,
            zones: entries,
        };
        let signers: Vec<&SigningKey> = keys.values().map(|k| &k.authority).collect();
        let registry =
            Registry::parse(envelope::seal(PayloadType::FEDERATION_REGISTRY, &doc, &signers)).expect("registry");

        let store = Store::open(&dir.path().join("data"), Default::default()).expect("a store");
        let (shutdown, rx) = watch::channel(false);
        let own = &keys[ZONES[0]];
        let core = Arc::new(
            Core::new(
                ZoneId::new(ZONES[0]).expect("zone"),
                clock.clone(),
                store.clone(),
                copy(&own.node_pkcs8),
                Limits::default(),
                registry,
                Tasks::new(rx),
            )
            .with_metrics(Arc::new(crate::metrics::Metrics::on())),
        );
        let log = AuditLog::start(store).expect("the audit log");
        let (chain, tls_key) = own_tls.expect("own TLS identity");
        let peers = Arc::new(PeerClients::new(core.clone(), chain, tls_key));
        let quota = if couriers.is_some() { 3 } else { 100 };
        let couriers = couriers.unwrap_or_else(|| crate::node::couriers(&core, &log, &peers));
        let outbox = Arc::new(Outbox::new(core.clone(), log.clone(), couriers, quota));
        let policies = Arc::new(Policies::new(core.clone(), log.clone(), outbox.clone(), Default::default()));
        let agreements = Arc::new(Agreements::new(core.clone(), log.clone(), Vec::new()));
        let transfers =
            Arc::new(Transfers::new(core.clone(), log.clone(), outbox.clone(), policies.clone(), peers, 60_000));
        let issuer = Issuer::new(core.clone(), Some(copy(&own.issuing_pkcs8)), transfers.clone(), outbox.clone());
        let verifier = Verifier::new(core.clone(), agreements.clone(), transfers.clone(), RecognitionConfig::default());
        Kit {
            clock,
            core,
            log,
            outbox,
            policies,
            agreements,
            transfers,
            issuer,
            verifier,
            keys,
            _shutdown: shutdown,
            _dir: dir,
        }
    }

    /// `doc` signed by the authorities of `zones`.
    pub(crate) fn signed<M: Message>(&self, payload_type: &str, doc: &M, zones: &[&str]) -> Envelope {
        let signers: Vec<&SigningKey> = zones.iter().map(|z| &self.keys[z].authority).collect();
        envelope::seal(payload_type, doc, &signers)
    }

    pub(crate) fn now(&self) -> i64 {
        self.clock.now_ms()
    }
}
