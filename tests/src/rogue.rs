//! The rogue-zone test kit: a dishonest zone that holds its real node key and certificate (so
//! every check of who it is passes) but sends whatever a test scripts: intents, receipts,
//! envelopes with extra or reordered signatures, fields of any size, backdated or future
//! times, replays. Attacks on the other zones are written against it; each must be refused.

use std::{sync::Arc, time::Duration};

use ftz_client::ExpectedServer;
use ftz_core::{
    Clock, SigningKey,
    envelope::{self, PayloadType},
    sha256,
};
use ftz_pki::files;
use ftz_proto::{
    AcknowledgeRequest, Envelope, FetchRecordRequest, FetchRecordResponse, Signature, TransferIntent, TransferReceipt,
    peer_client::PeerClient,
};
use prost::Message;
use tonic::transport::Channel;

use ftz_devkit::LocalFederation;

use crate::Cluster;

/// Zone `zone` turned dishonest, calling the node of `target` as its own node would.
pub struct RogueZone {
    pub zone: String,
    /// The zone's real node signing key, as the registry lists it.
    pub node_key: SigningKey,
    pub peer: PeerClient<Channel>,
}

impl RogueZone {
    pub fn new(c: &Cluster, zone: &str, target: &str) -> RogueZone {
        Self::new_with(&c.local, zone, target, c.clock.clone())
    }

    /// The same for a federation a test started itself.
    pub fn new_with(fed: &LocalFederation, zone: &str, target: &str, clock: Arc<dyn Clock>) -> RogueZone {
        let me = fed.fed.zone(zone).expect("the rogue zone");
        let chain = files::read_cert_chain(&me.dir.join("node.crt")).expect("node certificate");
        let key = files::read_tls_key(&me.dir.join("node.key")).expect("node TLS key");
        let node_key = files::read_signing_key(&me.node_key_path()).expect("node signing key");
        let t = fed.fed.zone(target).expect("the target zone");
        let expect = ExpectedServer { zone: t.id.clone(), ca_der: t.ca.issued.cert_der.clone(), clock };
        let channel =
            ftz_client::channel(&t.endpoint, expect, Some((chain, key)), Duration::from_secs(10)).expect("channel");
        RogueZone { zone: zone.to_string(), node_key, peer: PeerClient::new(channel) }
    }

    /// Fetches a record of the target as the honest node would.
    pub async fn fetch(&self, record_id: &str, purpose: &str) -> Result<FetchRecordResponse, tonic::Status> {
        let req =
            FetchRecordRequest { record_id: record_id.into(), purpose: purpose.into(), issuing_zone: String::new() };
        self.peer.clone().fetch_record(req).await.map(tonic::Response::into_inner)
    }

    /// A receipt for `intent` as the honest consumer would sign it; `edit` changes it first.
    pub fn receipt(&self, intent: &Envelope, now_ms: i64, edit: impl FnOnce(&mut TransferReceipt)) -> Envelope {
        let i = TransferIntent::decode(intent.payload.as_slice()).expect("an intent");
        let mut r = TransferReceipt {
            transfer_id: i.transfer_id,
            intent_digest: sha256(&intent.payload).to_vec(),
            consumer_zone: self.zone.clone(),
            received_at_ms: now_ms,
            accepted: true,
            reason: String::new(),
        };
        edit(&mut r);
        envelope::seal(PayloadType::TRANSFER_RECEIPT, &r, &[&self.node_key])
    }

    pub async fn acknowledge(&self, intent: &Envelope, receipt: &Envelope) -> Result<(), tonic::Status> {
        let req = AcknowledgeRequest { intent: Some(intent.clone()), receipt: Some(receipt.clone()) };
        self.peer.clone().acknowledge(req).await.map(|_| ())
    }
}

/// `env` with a signature by an unknown key placed before its own.
pub fn with_junk_signature_first(env: &Envelope) -> Envelope {
    let junk = Signature { key_id: vec![0xAB; 16], sig: vec![0xCD; 64] };
    let mut e = env.clone();
    e.signatures.insert(0, junk);
    e
}

/// `doc` sealed again by `key` (a node re-signing what it exported, with changes).
pub fn reseal<M: Message>(payload_type: &str, doc: &M, key: &SigningKey) -> Envelope {
    envelope::seal(payload_type, doc, &[key])
}
