//! The scenarios, each measured against real nodes (each its own process from this release
//! build, real mTLS, sled stores in a temporary directory) or, in this process, the real storage
//! and cryptography code.

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use ftz_audit::{
    leaf::{Leaf, LeafSignature, Refusing, SignedPart},
    merkle::{inclusion_proof, leaf_hash, root, verify_inclusion},
};
use ftz_core::{Clock, Role, SystemClock};
use ftz_devkit::ProcessFederation;
use ftz_node::AuditLog;
use ftz_proto::{
    DataClass, GetCheckpointRequest, GetEntryRequest, GetNodeStatusRequest, IssueCertificationRequest,
    ListEntriesRequest, PushInspectionRequest, RecordInspectionRequest, RecordRef, VerifyRecordRequest,
    admin_client::AdminClient, audit_client::AuditClient, issuer_client::IssuerClient, verify_client::VerifyClient,
    verify_record_request::Subject,
};
use ftz_store::Store;
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::{
    https::Https,
    measure::{Measured, drive, repeat},
};

/// How much of each scenario to run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub echo: usize,
    pub verify: usize,
    pub transfers: usize,
    pub appends: usize,
    pub crypto: usize,
    pub proof_sizes: &'static [u64],
    pub proofs: usize,
    pub in_flight: usize,
    /// The log the auditor's pages are read from (shanghai's, grown before its node starts if
    /// the audit scenarios did not already make it this large).
    pub list_log: u64,
    /// Pages read in each listing scenario, and how many at once (a few auditors' consoles).
    pub list_pages: usize,
    pub list_in_flight: usize,
    /// The observed group runs echo, verify and pull this many times their sizes (its
    /// differences are a few per cent: more operations, less noise).
    pub observed_factor: usize,
}

pub const QUICK: Sizes = Sizes {
    echo: 2_000,
    verify: 2_000,
    transfers: 400,
    appends: 20_000,
    crypto: 2_000,
    proof_sizes: &[10_000, 100_000],
    proofs: 2_000,
    in_flight: 50,
    list_log: 100_000,
    list_pages: 500,
    list_in_flight: 4,
    observed_factor: 1,
};

pub const SMOKE: Sizes = Sizes {
    echo: 20,
    verify: 20,
    transfers: 10,
    appends: 200,
    crypto: 20,
    proof_sizes: &[1_000, 2_000],
    proofs: 20,
    in_flight: 4,
    list_log: 2_000,
    list_pages: 10,
    list_in_flight: 2,
    observed_factor: 1,
};

pub const FULL: Sizes = Sizes {
    echo: 20_000,
    verify: 20_000,
    transfers: 5_000,
    appends: 200_000,
    crypto: 20_000,
    proof_sizes: &[10_000, 100_000, 1_000_000],
    proofs: 20_000,
    in_flight: 50,
    list_log: 1_000_000,
    list_pages: 2_000,
    list_in_flight: 4,
    observed_factor: 4,
};

/// The Ed25519 work of one pull transfer, alone, on one core: the provider signs a fresh status
/// statement and the transfer intent; the consumer verifies the record's issuing signature, the
/// status statement and the intent, and signs a receipt; the provider verifies the receipt.
/// Three signs and four verifications, with ring directly: the node's memory of signatures it
/// already checked (or made) is left out, so every one is real work.
pub fn crypto_floor(n: usize) -> Result<Measured> {
    use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
    let rng = ring::rand::SystemRandom::new();
    let pair = || -> Result<Ed25519KeyPair> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| anyhow!("key generation"))?;
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| anyhow!("key"))
    };
    let (issuer, provider, consumer) = (pair()?, pair()?, pair()?);
    let record = vec![5u8; 400];
    let record_sig = issuer.sign(&record);
    let verify = |key: &Ed25519KeyPair, msg: &[u8], sig: &[u8]| {
        UnparsedPublicKey::new(&ED25519, key.public_key().as_ref())
            .verify(msg, sig)
            .map_err(|_| anyhow!("a signature does not verify"))
    };
    // New messages each time, as in real transfers.
    repeat(n, |i| {
        let fresh = |len: usize| [vec![7u8; len], (i as u64).to_be_bytes().to_vec()].concat();
        let (status, intent, receipt) = (fresh(120), fresh(212), fresh(110));
        let (status_sig, intent_sig) = (provider.sign(&status), provider.sign(&intent));
        verify(&issuer, &record, record_sig.as_ref())?;
        verify(&provider, &status, status_sig.as_ref())?;
        verify(&provider, &intent, intent_sig.as_ref())?;
        let receipt_sig = consumer.sign(&receipt);
        verify(&consumer, &receipt, receipt_sig.as_ref())?;
        Ok(())
    })
}

/// A transfer leaf of the usual size.
fn sample_leaf(i: usize) -> Leaf {
    let part = |b: u8| SignedPart {
        payload: [vec![b; 200], (i as u64).to_be_bytes().to_vec()].concat(),
        signature: LeafSignature { key_id: [b; 16], sig: [b; 64] },
    };
    Leaf::Transfer { intent: part(1), receipt: part(2) }
}

/// One in this many of the leaves [`grow`] appends is a refusal, the rest transfers: what an
/// auditor's `decision=refused` filter finds.
pub const REFUSAL_EVERY: usize = 16;

/// A leaf of a grown log: a transfer leaf, or (one in [`REFUSAL_EVERY`]) a refusal as a node
/// logs one when it refuses a peer's fetch.
fn log_leaf(i: usize) -> Leaf {
    if i % REFUSAL_EVERY != REFUSAL_EVERY - 1 {
        return sample_leaf(i);
    }
    Leaf::Refusal {
        at_ms: 1_790_000_000_000 + i as i64,
        zone: "shanghai".into(),
        other_zone: "hainan".into(),
        refusing: Refusing::RefusedPeer,
        reason: "POLICY_DENIED".into(),
        method: "/ftz.v1.Peer/FetchRecord".into(),
        data_class: "certification".into(),
        policy_id: "sh-hn".into(),
        subject_digest: [(i % 251) as u8; 32],
    }
}

/// Durable, batched audit appends (`in_flight` appenders) to the store in `log_dir`, and the
/// baseline: a plain sled insert followed by a flush, one at a time, in `dir`. Returns both and
/// the running log (for the proof scenarios).
pub async fn audit_append(
    log_dir: &std::path::Path,
    dir: &std::path::Path,
    n: usize,
    in_flight: usize,
) -> Result<(Measured, Measured, Store, AuditLog)> {
    // As the node creates its data directory: private.
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(log_dir)?;
    let store = Store::open(log_dir, Default::default())?;
    let log = AuditLog::start(store.clone())?;
    let l = log.clone();
    let appended = drive(n, in_flight, move |i| {
        let l = l.clone();
        async move {
            l.append(&sample_leaf(i), None).await.map_err(|e| anyhow!("{e}"))?;
            Ok(())
        }
    })
    .await?;
    let plain = Store::open(&dir.join("plain"), Default::default())?;
    let value = sample_leaf(0).encode();
    let baseline = tokio::task::spawn_blocking(move || {
        repeat((n / 20).max(500), |i| Ok(plain.set_meta_value(&format!("k{i}"), &value)?))
    })
    .await??;
    Ok((appended, baseline, store, log))
}

/// Durable, batched audit appends (`in_flight` appenders) through one audit log per store in
/// `stores`, taking turns (each store a replica of one node when they share a database).
pub async fn appends_through(stores: &[Store], n: usize, in_flight: usize) -> Result<Measured> {
    let logs: Vec<AuditLog> = stores.iter().map(|s| AuditLog::start(s.clone())).collect::<Result<_, _>>()?;
    let shared = Arc::new(logs.clone());
    let m = drive(n, in_flight, move |i| {
        let l = shared[i % shared.len()].clone();
        async move {
            l.append(&sample_leaf(i), None).await.map_err(|e| anyhow!("{e}"))?;
            Ok(())
        }
    })
    .await?;
    for l in logs {
        l.close().await;
    }
    Ok(m)
}

/// Grows the stored log to `size` entries (durable, batched), with the node's own appender:
/// transfer leaves and, one in [`REFUSAL_EVERY`], refusals.
pub async fn grow(store: &Store, log: &AuditLog, size: u64) -> Result<()> {
    let have = store.audit_size()?;
    if have >= size {
        return Ok(());
    }
    let l = log.clone();
    drive((size - have) as usize, 512, move |i| {
        let l = l.clone();
        async move {
            l.append(&log_leaf(i), None).await.map_err(|e| anyhow!("{e}"))?;
            Ok(())
        }
    })
    .await?;
    Ok(())
}

/// Grows the log in a stopped node's data directory `dir` to `size` entries, as [`grow`] does:
/// the node signs a checkpoint over it when it starts (a log without one is accepted). Returns
/// the log's size.
pub async fn grow_stored_log(dir: &std::path::Path, size: u64) -> Result<u64> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let store = Store::open(dir, Default::default())?;
    let log = AuditLog::start(store.clone())?;
    grow(&store, &log, size).await?;
    log.close().await;
    let size = store.audit_size()?;
    store.flush()?;
    Ok(size)
}

/// Inclusion proofs from the stored log at `size`: made, then verified.
pub fn proofs(store: &Store, log: &AuditLog, size: u64, n: usize) -> Result<(Measured, Measured)> {
    let nodes = log.tree();
    let r = root(&nodes, size)?;
    let index = |i: usize| (i as u64).wrapping_mul(2_654_435_761) % size;
    let mut made = Vec::with_capacity(n);
    let make = repeat(n, |i| {
        made.push(inclusion_proof(&nodes, index(i), size)?.map_err(|e| anyhow!("{e}"))?);
        Ok(())
    })?;
    let leaves: Vec<Vec<u8>> =
        (0..n).map(|i| store.audit_entry(index(i)).map(|l| l.unwrap_or_default())).collect::<Result<_, _>>()?;
    let verify = repeat(n, |i| {
        verify_inclusion(&leaf_hash(&leaves[i]), index(i), size, &made[i], &r).map_err(|e| anyhow!("{e}"))
    })?;
    Ok((make, verify))
}

/// Three zones, each node its own process (this binary in node mode), limits raised so that only
/// the system itself limits the rate.
pub struct Federation {
    pub fed: ProcessFederation,
    /// Client connections each scenario spreads its requests over: one per replica of the
    /// zone it calls (a load balancer sends each new connection to the next replica).
    spread: usize,
}

/// Entries in one page of an auditor's log listing, as the console asks for.
pub const LIST_PAGE: u64 = 50;

/// Which of a node's two APIs a scenario calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Grpc,
    Json,
}

/// A verification answered from the node's copy: `cached`, or `refreshed` when the copy's status
/// statement had aged past its freshness limit during a long run and was asked for again (once
/// per limit, not per request).
fn answered_from_cache(source: &str) -> bool {
    source == "cached" || source == "refreshed"
}

/// The argument that makes this binary run a node instead of the benchmark.
pub const NODE_MODE: &str = "node";

pub const ZONES: [&str; 3] = ["shanghai", "hainan", "guangdong"];

fn unlimited(mut p: ftz_proto::ExchangePolicy) -> ftz_proto::ExchangePolicy {
    p.rate_limit = Some(ftz_proto::RateLimit { max_requests: 100_000_000, per_ms: 1_000 });
    p
}

impl Federation {
    /// Creates the zones' directories, keys and configs (nothing runs yet: a store can be
    /// filled first). Every node also gets an HTTPS listener (`[http] listen`, a port from the
    /// OS) for the JSON API scenarios, and an ops listener (metrics on), with log level "warn".
    pub fn create(dir: &std::path::Path) -> Result<Federation> {
        Self::create_observed(dir, true, "warn")
    }

    /// The same with metrics on or off (no `[ops]` listener: `Metrics::off`) and the nodes'
    /// `log.level`, for the scenarios that measure what metrics and logs cost.
    pub fn create_observed(dir: &std::path::Path, metrics: bool, log_level: &str) -> Result<Federation> {
        let me = std::env::current_exe().context("this program's path")?;
        let limits = [("user_requests_per_second", 1_000_000), ("peer_requests_per_second", 1_000_000)];
        let mut fed = ProcessFederation::create(dir, &ZONES, &me, &[NODE_MODE], &limits)?;
        for z in &mut fed.fed.zones {
            let addr = format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port());
            let text = std::fs::read_to_string(&z.config_path)?;
            let mut doc: toml::Table = text.parse().with_context(|| format!("{}", z.config_path.display()))?;
            let mut http = toml::Table::new();
            http.insert("listen".into(), toml::Value::String(addr.clone()));
            doc.insert("http".into(), toml::Value::Table(http));
            if !metrics {
                doc.remove("ops");
            }
            std::fs::write(&z.config_path, toml::to_string(&doc)?)?;
            z.http_endpoint = Some(addr);
            if !metrics {
                z.ops_endpoint = None;
            }
        }
        fed.log_level = log_level.to_string();
        Ok(Federation { fed, spread: 1 })
    }

    /// The zones on PostgreSQL (one throwaway cluster, a database per zone), shanghai and
    /// hainan with `replicas` replicas each behind a load balancer when it is more than one;
    /// no HTTPS listener (the PostgreSQL rows are gRPC's).
    pub fn create_on_postgres(dir: &std::path::Path, replicas: usize) -> Result<Federation> {
        let me = std::env::current_exe().context("this program's path")?;
        let mut options = ftz_devkit::processes::ProcessOptions::new()
            .limit("user_requests_per_second", 1_000_000)
            .limit("peer_requests_per_second", 1_000_000)
            .postgres(&ZONES);
        if replicas > 1 {
            for zone in ["shanghai", "hainan"] {
                options = options.replicas(zone, replicas).set_in(zone, "store", "replicas", replicas as i64);
            }
        }
        let mut fed = ProcessFederation::create_with(dir, &ZONES, &me, &[NODE_MODE], options)?;
        fed.log_level = "warn".into();
        Ok(Federation { fed, spread: replicas.max(1) })
    }

    /// `spread` clients of `zone` as `role`, each on its own connection.
    fn clients<C>(&self, zone: &str, role: Role, client: impl Fn(Channel) -> C) -> Result<Arc<Vec<C>>> {
        (0..self.spread).map(|_| Ok(client(self.channel(zone, role)?))).collect::<Result<Vec<C>>>().map(Arc::new)
    }

    /// The CPU the database has used so far (PostgreSQL federations).
    pub fn database_cpu(&self) -> Option<Duration> {
        self.fed.postgres().and_then(|pg| pg.cpu_time())
    }

    /// An HTTP/2 connection to `zone`'s JSON API as its user with `role`.
    async fn https(&self, zone: &str, role: Role) -> Result<Https> {
        let z = self.fed.fed.zone(zone).ok_or_else(|| anyhow!("no zone {zone}"))?;
        let addr = z.http_endpoint.as_deref().ok_or_else(|| anyhow!("{zone}'s node has no HTTPS listener"))?;
        Https::connect(&z.profile_path(role), addr).await
    }

    /// A zone's node's data directory (its store).
    pub fn data_dir(&self, zone: &str) -> Result<std::path::PathBuf> {
        Ok(self.fed.fed.zone(zone).ok_or_else(|| anyhow!("no zone {zone}"))?.data_dir())
    }

    /// Starts the nodes and installs the agreements and policies the scenarios use.
    pub async fn start(&mut self) -> Result<()> {
        for z in ZONES {
            self.fed.start(z).with_context(|| format!("starting {z}'s node"))?;
        }
        let fed = &self.fed;
        let now = SystemClock.now_ms();
        let agreement = |id: &str, from: &str, to: &str, rule| ftz_devkit::dev::agreement_doc(id, from, to, rule, now);
        fed.install_agreement(&agreement(
            "sh-hn",
            "shanghai",
            "hainan",
            ftz_devkit::dev::certification_rule(&["AEO_ADVANCED"]),
        ))
        .await?;
        fed.install_agreement(&agreement("gd-sh", "guangdong", "shanghai", ftz_devkit::dev::inspection_rule("CNAS")))
            .await?;
        let p = ftz_devkit::dev::record_policy(
            "sh-hn",
            "shanghai",
            "hainan",
            DataClass::Certification,
            &["verification"],
            now,
        );
        fed.install_policy(&unlimited(p)).await?;
        let p = ftz_devkit::dev::record_policy(
            "gd-sh",
            "guangdong",
            "shanghai",
            DataClass::InspectionResult,
            &["import-clearance"],
            now,
        );
        fed.install_policy(&unlimited(p)).await?;
        if self.spread > 1 {
            // Each install went to one replica; the others load it within 250 ms (the
            // node's `replicas::FOLLOW_EVERY`). Setup, not measured.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(())
    }

    fn channel(&self, zone: &str, role: Role) -> Result<Channel> {
        Ok(self.fed.channel(zone, role)?)
    }

    /// Each node's peak resident memory so far, in MiB.
    pub fn peak_rss_mb(&self) -> Vec<(&'static str, f64)> {
        ZONES.iter().filter_map(|z| self.fed.peak_rss_mb(z).map(|mb| (*z, mb))).collect()
    }

    /// CPU time used so far by each node and by this process (the load generator).
    pub fn cpu_times(&self) -> Vec<(&'static str, Duration)> {
        let mut out: Vec<_> = ZONES.iter().filter_map(|z| self.fed.cpu_time(z).map(|t| (*z, t))).collect();
        out.extend(ftz_devkit::processes::process_cpu_time(std::process::id()).map(|t| ("load generator", t)));
        out
    }

    /// The transport baseline: a health check (no work behind it) over the same mTLS,
    /// authentication layer and connection as the scenarios.
    pub async fn echo(&self, n: usize, in_flight: usize) -> Result<Measured> {
        let client = HealthClient::new(self.channel("hainan", Role::Enterprise)?);
        drive(n, in_flight, move |_| {
            let mut c = client.clone();
            async move {
                c.check(HealthCheckRequest { service: String::new() }).await?;
                Ok(())
            }
        })
        .await
    }

    /// Issues certifications `ids` in shanghai, `in_flight` at a time (setup, not measured).
    async fn issue(&self, ids: Vec<String>) -> Result<()> {
        let issuer = IssuerClient::new(self.channel("shanghai", Role::Issuer)?);
        let ids = Arc::new(ids);
        let n = ids.len();
        drive(n, 16, move |i| {
            let (mut c, id) = (issuer.clone(), ids[i].clone());
            async move {
                let mut cert = ftz_devkit::dev::sample_certification(&id, "AEO_ADVANCED", SystemClock.now_ms());
                cert.issued_at_ms = SystemClock.now_ms();
                c.issue_certification(IssueCertificationRequest { certification: Some(cert) }).await?;
                Ok(())
            }
        })
        .await?;
        Ok(())
    }

    fn verify_request(id: &str) -> VerifyRecordRequest {
        VerifyRecordRequest {
            subject: Some(Subject::Ref(RecordRef { issuing_zone: "shanghai".into(), record_id: id.into() })),
            recognising_zone: String::new(),
            purpose: "verification".into(),
        }
    }

    /// Setup of [`Federation::verify_cached`]: shanghai issues the record, and hainan's node
    /// fetches it once (not measured).
    pub async fn prepare_verify(&self) -> Result<()> {
        self.issue(vec!["SH-BENCH-CACHED".into()]).await?;
        let mut client = VerifyClient::new(self.channel("hainan", Role::Enterprise)?);
        let first = client.verify_record(Self::verify_request("SH-BENCH-CACHED")).await?.into_inner();
        if !first.valid {
            return Err(anyhow!("the record does not verify: {}", first.explanation));
        }
        Ok(())
    }

    /// An enterprise of hainan verifies a shanghai certification its node already fetched, over
    /// gRPC or the JSON API.
    pub async fn verify_cached(&self, api: Api, n: usize, in_flight: usize) -> Result<Measured> {
        match api {
            Api::Grpc => self.verify_cached_grpc(n, in_flight).await,
            Api::Json => self.verify_cached_json(n, in_flight).await,
        }
    }

    async fn verify_cached_grpc(&self, n: usize, in_flight: usize) -> Result<Measured> {
        let clients = self.clients("hainan", Role::Enterprise, VerifyClient::new)?;
        drive(n, in_flight, move |i| {
            let mut c = clients[i % clients.len()].clone();
            async move {
                let v = c.verify_record(Self::verify_request("SH-BENCH-CACHED")).await?.into_inner();
                if !answered_from_cache(&v.source) || !v.valid {
                    return Err(anyhow!("expected a valid cached answer, got {} ({})", v.source, v.explanation));
                }
                Ok(())
            }
        })
        .await
    }

    /// The JSON API twin: the same enterprise, record and purpose, `POST
    /// /api/v1/verify/verify-record` over one HTTP/2 connection to hainan's HTTPS listener, the
    /// answer read from its JSON.
    async fn verify_cached_json(&self, n: usize, in_flight: usize) -> Result<Measured> {
        #[derive(serde::Deserialize)]
        struct Verified {
            #[serde(default)]
            valid: bool,
            #[serde(default)]
            source: String,
            #[serde(default)]
            explanation: String,
        }
        let client = self.https("hainan", Role::Enterprise).await?;
        let body = Bytes::from(serde_json::to_vec(&serde_json::json!({
            "ref": { "issuing_zone": "shanghai", "record_id": "SH-BENCH-CACHED" },
            "purpose": "verification",
        }))?);
        let call = move |client: Https, body: Bytes| async move {
            let (status, answer) = client.post_json("/api/v1/verify/verify-record", body).await?;
            if status != 200 {
                return Err(anyhow!("verify-record answered {status}: {}", String::from_utf8_lossy(&answer)));
            }
            Ok::<_, anyhow::Error>(serde_json::from_slice::<Verified>(&answer)?)
        };
        drive(n, in_flight, move |_| {
            let v = call(client.clone(), body.clone());
            async move {
                let v = v.await?;
                if !answered_from_cache(&v.source) || !v.valid {
                    return Err(anyhow!("expected a valid cached answer, got {} ({})", v.source, v.explanation));
                }
                Ok(())
            }
        })
        .await
    }

    /// An auditor of shanghai reads entries with their inclusion proofs from shanghai's node,
    /// whose log holds the audit scenarios' entries (1M in the full run): proofs served by a node
    /// from its store, and what that costs the node in memory. Returns the log size too.
    pub async fn entries_with_proofs(&self, n: usize, in_flight: usize) -> Result<(Measured, u64)> {
        let client = AuditClient::new(self.channel("shanghai", Role::Auditor)?);
        // The node signs a checkpoint over its log soon after it starts.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        let size = loop {
            if let Ok(r) = client.clone().get_checkpoint(GetCheckpointRequest {}).await
                && r.get_ref().size > 0
            {
                break r.into_inner().size;
            }
            if tokio::time::Instant::now() > deadline {
                return Err(anyhow!("shanghai signed no checkpoint"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let m = drive(n, in_flight, move |i| {
            let mut c = client.clone();
            let index = (i as u64).wrapping_mul(2_654_435_761) % size;
            async move {
                let r = c.get_entry(GetEntryRequest { index }).await?.into_inner();
                if r.proof.is_empty() || r.entry.is_none() {
                    return Err(anyhow!("entry {index} came without its proof"));
                }
                Ok(())
            }
        })
        .await?;
        Ok((m, size))
    }

    /// An auditor of shanghai reads `n` pages of [`LIST_PAGE`] entries (the console's log page)
    /// from random offsets of shanghai's log, `in_flight` at a time, over gRPC
    /// (`Audit/ListEntries`) or the JSON API (`GET /api/v1/audit/list-entries`); with `decision`
    /// as the filter when not empty. `seed` picks the offsets (each twin reads pages of its
    /// own, so neither reads what the other just brought into the caches). Returns the log's
    /// size too.
    pub async fn list_pages(
        &self,
        api: Api,
        decision: &'static str,
        n: usize,
        in_flight: usize,
        seed: usize,
    ) -> Result<(Measured, u64)> {
        let size = self.log_size("shanghai").await?;
        let offset =
            move |i: usize| ((i + seed) as u64).wrapping_mul(2_654_435_761) % size.saturating_sub(LIST_PAGE).max(1);
        // A page must be as asked: full when not filtered (the log has a page's worth after
        // every offset), only matching entries when filtered.
        let check = move |from: u64, decisions: Vec<String>| {
            if decision.is_empty() && (decisions.len() as u64) < LIST_PAGE.min(size - from) {
                return Err(anyhow!("a page from {from} has {} entries", decisions.len()));
            }
            if let Some(d) = decisions.iter().find(|d| !decision.is_empty() && d.as_str() != decision) {
                return Err(anyhow!("a page filtered by {decision} has a {d} entry"));
            }
            Ok(())
        };
        let m = match api {
            Api::Grpc => {
                let client = AuditClient::new(self.channel("shanghai", Role::Auditor)?);
                drive(n, in_flight, move |i| {
                    let mut c = client.clone();
                    let from_index = offset(i);
                    async move {
                        let r = c
                            .list_entries(ListEntriesRequest {
                                from_index,
                                limit: LIST_PAGE as u32,
                                decision: decision.into(),
                                ..Default::default()
                            })
                            .await?
                            .into_inner();
                        check(from_index, r.entries.into_iter().map(|e| e.decision).collect())
                    }
                })
                .await?
            }
            Api::Json => {
                #[derive(serde::Deserialize)]
                struct Page {
                    #[serde(default)]
                    entries: Vec<Entry>,
                }
                #[derive(serde::Deserialize)]
                struct Entry {
                    #[serde(default)]
                    decision: String,
                }
                let client = self.https("shanghai", Role::Auditor).await?;
                let filter = if decision.is_empty() { String::new() } else { format!("&decision={decision}") };
                drive(n, in_flight, move |i| {
                    let c = client.clone();
                    let from_index = offset(i);
                    let path = format!("/api/v1/audit/list-entries?from_index={from_index}&limit={LIST_PAGE}{filter}");
                    async move {
                        let (status, body) = c.get(&path).await?;
                        if status != 200 {
                            return Err(anyhow!("{path} answered {status}: {}", String::from_utf8_lossy(&body)));
                        }
                        let page: Page = serde_json::from_slice(&body)?;
                        check(from_index, page.entries.into_iter().map(|e| e.decision).collect())
                    }
                })
                .await?
            }
        };
        Ok((m, size))
    }

    async fn log_size(&self, zone: &str) -> Result<u64> {
        let mut admin = AdminClient::new(self.channel(zone, Role::Admin)?);
        Ok(admin.get_node_status(GetNodeStatusRequest {}).await?.into_inner().audit_log_size)
    }

    fn pull_id(i: usize) -> String {
        format!("SH-BENCH-{i:06}")
    }

    /// Setup of [`Federation::pull`]: shanghai issues records `from..from + n` (not measured).
    pub async fn prepare_pull(&self, from: usize, n: usize) -> Result<()> {
        self.issue((from..from + n).map(Self::pull_id).collect()).await
    }

    /// Cross-zone pull: hainan's enterprise verifies a shanghai record hainan's node has never
    /// seen, so the node fetches it (provider's policy, minimisation, intent, consumer's receipt,
    /// both logs). Latency is the user's; throughput counts until the provider's log holds every
    /// transfer too.
    pub async fn pull(&self, from: usize, n: usize, in_flight: usize) -> Result<Measured> {
        let ids: Vec<String> = (from..from + n).map(Self::pull_id).collect();
        let before = self.log_size("shanghai").await?;
        let clients = self.clients("hainan", Role::Enterprise, VerifyClient::new)?;
        let ids = Arc::new(ids);
        let start = std::time::Instant::now();
        let mut m = drive(n, in_flight, move |i| {
            let (mut c, id) = (clients[i % clients.len()].clone(), ids[i].clone());
            async move {
                let v = c.verify_record(Self::verify_request(&id)).await?.into_inner();
                if v.source != "fetched" || !v.valid {
                    return Err(anyhow!("expected a valid fetched answer, got {} ({})", v.source, v.explanation));
                }
                Ok(())
            }
        })
        .await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while self.log_size("shanghai").await? < before + n as u64 {
            if tokio::time::Instant::now() > deadline {
                return Err(anyhow!("the provider's log did not receive every transfer"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        m.elapsed = start.elapsed();
        Ok(m)
    }

    /// Setup of [`Federation::push`]: guangdong records the results (not measured).
    pub async fn prepare_push(&self, n: usize) -> Result<()> {
        let i2 = IssuerClient::new(self.channel("guangdong", Role::Issuer)?);
        drive(n, 16, move |i| {
            let mut c = i2.clone();
            async move {
                let r = ftz_devkit::dev::sample_inspection(
                    &format!("GD-BENCH-{i:06}"),
                    &format!("LOT-B-{i:06}"),
                    SystemClock.now_ms(),
                );
                c.record_inspection(RecordInspectionRequest { result: Some(r) }).await?;
                Ok(())
            }
        })
        .await?;
        Ok(())
    }

    /// Guangdong pushes inspection results to shanghai through its outbox; each push returns
    /// once shanghai's receipt is logged on both sides.
    pub async fn push(&self, n: usize, in_flight: usize) -> Result<Measured> {
        let issuer = IssuerClient::new(self.channel("guangdong", Role::Issuer)?);
        drive(n, in_flight, move |i| {
            let mut c = issuer.clone();
            async move {
                let r = c
                    .push_inspection(PushInspectionRequest {
                        record_id: format!("GD-BENCH-{i:06}"),
                        to_zone: "shanghai".into(),
                        purpose: String::new(),
                    })
                    .await?
                    .into_inner();
                if r.queued {
                    return Err(anyhow!("a push was queued: shanghai did not answer"));
                }
                Ok(())
            }
        })
        .await
    }

    /// The sizes of the zones' node logs (`node.log`), in bytes.
    pub fn node_log_bytes(&self) -> u64 {
        self.fed.fed.zones.iter().filter_map(|z| std::fs::metadata(z.dir.join("node.log")).ok()).map(|m| m.len()).sum()
    }

    /// Stops every node.
    pub fn shutdown(mut self) {
        for z in ZONES {
            self.fed.kill(z);
        }
    }
}
