//! This node's verifiable audit log: leaves appended in batches (group commit) and made durable
//! before anyone is told their index; checkpoints signed only over durable sizes, at most once a
//! second while busy and soon after new entries when idle; witnesses asked to cosign each one.

pub mod transfer;
pub mod tree;
pub mod witness;

use std::{
    sync::{Arc, RwLock},
    time::Duration,
};

use ftz_audit::{
    checkpoint::{Checkpoint, origin},
    leaf::Leaf,
    merkle::{Hash, Nodes, empty_root, leaf_hash, node_hash},
    note::{self, Note, Signer, TYPE_ED25519, Verifier},
};
use ftz_core::{Reason, SigningKey, ZoneId};
use ftz_store::{AuditBatch, Store, StoreError};
use tokio::sync::{mpsc, oneshot, watch};
use tree::{TILE_HEIGHT, TILE_WIDTH, TreeReader, UpperLevels};

use crate::{error::ApiError, state::NodeState};

/// Leaves appended in one batch at most.
const MAX_BATCH: usize = 512;

/// Batches of at most this many leaves are written on the appender's own task.
const INLINE_BATCH: usize = 32;

/// Batches committed and waiting for their flush at most.
const MAX_FLUSHING: usize = 4;

/// The perfect subtrees along the right edge of a tree of `size` leaves, left to right.
fn frontier(nodes: &TreeReader, size: u64) -> Result<Vec<(u32, Hash)>, StoreError> {
    let mut out = Vec::new();
    let mut offset = 0u64;
    for level in (0..64u32).rev() {
        if size & (1 << level) != 0 {
            out.push((level, nodes.node(level, offset >> level)?));
            offset += 1 << level;
        }
    }
    Ok(out)
}

/// The leaf hashes of the last, partial tile of a log of `size` leaves (empty if it ends on a
/// tile boundary).
fn partial_tile(store: &Store, size: u64) -> Result<Vec<Hash>, StoreError> {
    let filled = (size % TILE_WIDTH) as usize;
    if filled == 0 {
        return Ok(Vec::new());
    }
    let bytes = store.audit_tile(size / TILE_WIDTH)?.unwrap_or_default();
    let hashes: Vec<Hash> = bytes.chunks_exact(32).take(filled).map(|c| c.try_into().unwrap_or([0; 32])).collect();
    if hashes.len() != filled {
        return Err(StoreError::Corrupt { what: "audit tile", detail: format!("the tile of leaf {size} is short") });
    }
    Ok(hashes)
}

/// Where the appender stands: the size written (its flush may still be under way), the right
/// edge of the tree, the partial tile.
struct Edge {
    size: u64,
    front: Vec<(u32, Hash)>,
    tile: Vec<Hash>,
}

impl Edge {
    fn read(store: &Store, cache: &Arc<RwLock<UpperLevels>>) -> Result<Self, StoreError> {
        let size = store.audit_size()?;
        Ok(Self { size, front: frontier(&TreeReader::new(store, cache), size)?, tile: partial_tile(store, size)? })
    }
}

fn root_of(frontier: &[(u32, Hash)]) -> Hash {
    let mut it = frontier.iter().rev();
    let Some((_, last)) = it.next() else { return empty_root() };
    it.fold(*last, |acc, (_, h)| node_hash(h, &acc))
}

struct Append {
    leaf: Vec<u8>,
    transfer_id: Option<[u8; 16]>,
    /// Queued in the outbox in the same transaction, if the leaf is appended (not if the
    /// transfer was logged before).
    outbox: Option<ftz_store::OutboxItem>,
    reply: oneshot::Sender<Result<u64, ApiError>>,
}

enum Msg {
    Append(Append),
    /// Finish what is queued, then stop (and release the store).
    Stop(oneshot::Sender<()>),
}

/// The handle the rest of the node appends through.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    size: watch::Receiver<u64>,
    store: Store,
    cache: Arc<RwLock<UpperLevels>>,
}

impl AuditLog {
    /// Starts the appender over the stored log.
    pub fn start(store: Store) -> Result<Self, StoreError> {
        let cache = Arc::new(RwLock::new(UpperLevels::load(&store, store.audit_size()?)?));
        let edge = Edge::read(&store, &cache)?;
        let (tx, rx) = mpsc::channel(4096);
        let (size_tx, size_rx) = watch::channel(edge.size);
        tokio::spawn(append_loop(store.clone(), cache.clone(), rx, edge, size_tx));
        Ok(Self { tx, size: size_rx, store, cache })
    }

    /// Reads the durable tree (roots and proofs).
    pub fn tree(&self) -> TreeReader<'_> {
        TreeReader::new(&self.store, &self.cache)
    }

    /// Subtree hashes held in memory.
    pub fn cached_hashes(&self) -> usize {
        self.cache.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Appends a leaf; returns its index once it is durable. A transfer leaf is logged once per
    /// transfer id: appending it again returns the first index.
    pub async fn append(&self, leaf: &Leaf, transfer_id: Option<[u8; 16]>) -> Result<u64, ApiError> {
        self.append_with_outbox(leaf, transfer_id, None).await
    }

    /// The same, and `outbox` queued atomically with the leaf (the transactional outbox: a
    /// receipt is sent back if and only if its transfer is in this log).
    pub async fn append_with_outbox(
        &self,
        leaf: &Leaf,
        transfer_id: Option<[u8; 16]>,
        outbox: Option<ftz_store::OutboxItem>,
    ) -> Result<u64, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Append(Append { leaf: leaf.encode(), transfer_id, outbox, reply }))
            .await
            .map_err(|_| ApiError::new(Reason::Internal, "the audit log is not running"))?;
        rx.await.map_err(|_| ApiError::new(Reason::Internal, "the audit log stopped"))?
    }

    /// Stops the appender once everything queued before is durable.
    pub async fn close(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Msg::Stop(done)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// The durable size, as it changes.
    pub fn size(&self) -> watch::Receiver<u64> {
        self.size.clone()
    }

    /// The durable size now. The store's own size can be ahead of it while a batch's flush is
    /// under way: what is served to others (entries, proofs, sizes) stays within this one.
    pub fn durable_size(&self) -> u64 {
        *self.size.borrow()
    }
}

async fn append_loop(
    store: Store,
    cache: Arc<RwLock<UpperLevels>>,
    mut rx: mpsc::Receiver<Msg>,
    mut edge: Edge,
    size_tx: watch::Sender<u64>,
) {
    let mut stop: Option<oneshot::Sender<()>> = None;
    // Batches committed whose flush and replies are under way.
    let mut flushing = tokio::task::JoinSet::new();
    while stop.is_none() {
        let mut batch = match rx.recv().await {
            Some(Msg::Append(a)) => vec![a],
            Some(Msg::Stop(done)) => {
                stop = Some(done);
                continue;
            }
            None => break,
        };
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Append(a)) => batch.push(a),
                Ok(Msg::Stop(done)) => {
                    stop = Some(done);
                    break;
                }
                Err(_) => break,
            }
        }
        // Transfers already logged keep their first index.
        let mut fresh: Vec<Append> = Vec::with_capacity(batch.len());
        let mut in_batch: Vec<[u8; 16]> = Vec::new();
        for a in batch {
            if let Some(id) = a.transfer_id {
                match transfer::logged_transfer(&store, &id) {
                    Ok(Some(i)) => {
                        // Its batch may still be on its way to disk: answer once it is there.
                        let store = store.clone();
                        flushing.spawn(async move {
                            let _ = a.reply.send(store.flush_async().await.map(|()| i).map_err(Into::into));
                        });
                        continue;
                    }
                    Ok(None) if in_batch.contains(&id) => {
                        // Logged by an earlier append of this batch: answer after the commit.
                    }
                    Ok(None) => in_batch.push(id),
                    Err(e) => {
                        let _ = a.reply.send(Err(e.into()));
                        continue;
                    }
                }
            }
            fresh.push(a);
        }
        if fresh.is_empty() {
            continue;
        }
        let size = edge.size;
        let mut b = AuditBatch { old_size: size, ..Default::default() };
        let mut next_front = edge.front.clone();
        let mut tile = edge.tile.clone();
        let mut indices = Vec::with_capacity(fresh.len());
        let mut seen: Vec<([u8; 16], u64)> = Vec::new();
        for a in &fresh {
            if let Some(id) = a.transfer_id
                && let Some((_, i)) = seen.iter().find(|(s, _)| *s == id)
            {
                indices.push(Some(*i));
                continue;
            }
            let index = size + b.leaves.len() as u64;
            let mut h = leaf_hash(&a.leaf);
            tile.push(h);
            if tile.len() as u64 == TILE_WIDTH {
                b.tiles.push((index / TILE_WIDTH, tile.concat()));
                tile.clear();
            }
            let (mut level, mut i) = (0u32, index);
            next_front.push((0, h));
            while i & 1 == 1 {
                let (_, right) = next_front.pop().unwrap_or((0, h));
                let (_, left) = next_front.pop().unwrap_or((0, h));
                h = node_hash(&left, &right);
                level += 1;
                i >>= 1;
                if level >= TILE_HEIGHT {
                    b.nodes.push((level, i, h));
                }
                next_front.push((level, h));
            }
            if let Some(id) = a.transfer_id {
                b.transfers.push((id, index));
                seen.push((id, index));
            }
            b.leaves.push(a.leaf.clone());
            b.outbox.extend(a.outbox.clone());
            indices.push(Some(index));
        }
        if !tile.is_empty() {
            b.tiles.push(((size + b.leaves.len() as u64 - 1) / TILE_WIDTH, tile.concat()));
        }
        // The writes here, their flush in a task of its own: the next batch's writes overlap
        // this one's flush (one flush can then cover both). A small batch is a few in-memory
        // sled inserts, cheaper in place than a trip to the blocking pool and back.
        let st = store.without_flush();
        let committed = if b.leaves.len() <= INLINE_BATCH {
            Ok(st.audit_append(&b).map(|s| (s, b.nodes)))
        } else {
            tokio::task::spawn_blocking(move || st.audit_append(&b).map(|s| (s, b.nodes))).await
        };
        match committed {
            Ok(Ok((new_size, nodes))) => {
                cache.write().unwrap_or_else(|e| e.into_inner()).extend(&nodes);
                edge = Edge { size: new_size, front: next_front, tile };
                while flushing.len() >= MAX_FLUSHING {
                    let _ = flushing.join_next().await;
                }
                let (store, size_tx) = (store.clone(), size_tx.clone());
                flushing.spawn(async move {
                    let durable = store.flush_async().await;
                    if let Err(e) = &durable {
                        tracing::error!("audit append failed: {e}");
                    }
                    // A later batch's flush may have finished first: the size only grows.
                    if durable.is_ok() {
                        size_tx.send_if_modified(|s| (new_size > *s).then(|| *s = new_size).is_some());
                    }
                    for (a, i) in fresh.into_iter().zip(indices) {
                        let r = match &durable {
                            Ok(()) => i.ok_or_else(|| ApiError::internal("no index")),
                            Err(_) => Err(ApiError::new(Reason::StoreFailure, "the audit log could not be written")),
                        };
                        let _ = a.reply.send(r);
                    }
                });
            }
            other => {
                let msg = match other {
                    Ok(Err(e)) => e.to_string(),
                    Err(e) => e.to_string(),
                    Ok(Ok(_)) => String::new(),
                };
                tracing::error!("audit append failed: {msg}");
                for a in fresh {
                    let _ =
                        a.reply.send(Err(ApiError::new(Reason::StoreFailure, "the audit log could not be written")));
                }
                // Re-read what is durable, so the next batch starts from the truth.
                if let Ok(e) = Edge::read(&store, &cache) {
                    edge = e;
                }
            }
        }
    }
    while flushing.join_next().await.is_some() {}
    drop(store);
    if let Some(done) = stop {
        let _ = done.send(());
    }
}

/// The key name of a zone's log (its origin) and of its witness.
pub fn log_name(zone: &ZoneId) -> String {
    origin(zone.as_str())
}

pub fn witness_name(zone: &ZoneId) -> String {
    format!("ftz/{zone}/witness")
}

/// Signs a checkpoint of the durable tree of `size` leaves.
pub fn sign_checkpoint(
    tree: &TreeReader,
    zone: &ZoneId,
    key: &SigningKey,
    size: u64,
) -> Result<(Checkpoint, String), ApiError> {
    let root = root_of(&frontier(tree, size)?);
    let cp = Checkpoint { origin: log_name(zone), size, root };
    let signer = Signer::new(&cp.origin, TYPE_ED25519, key).map_err(|e| ApiError::internal(e.to_string()))?;
    let note = note::sign(&cp.to_text(), &signer).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((cp, note))
}

/// At start: the latest signed checkpoint must be reproducible from the durable log (same root
/// at its size), or the node refuses to run: it would contradict what it signed.
/// The checkpoint may have been signed by an earlier node key of the zone (before a rotation):
/// any node key the registry lists for the zone, or the key in use, counts.
pub fn check_signed_history(
    store: &Store,
    zone: &ZoneId,
    key: &SigningKey,
    registry: &ftz_core::Registry,
) -> Result<(), String> {
    let Some((size, text)) = store.latest_checkpoint().map_err(|e| e.to_string())? else { return Ok(()) };
    let durable = store.audit_size().map_err(|e| e.to_string())?;
    if durable < size {
        return Err(format!("the audit log holds {durable} entries, but a checkpoint was signed at size {size}"));
    }
    let listed = registry
        .zone(zone)
        .map(|z| z.keys.iter().filter(|k| k.purpose == ftz_proto::KeyPurpose::Node).map(|k| k.key).collect::<Vec<_>>())
        .unwrap_or_default();
    let verifiers: Vec<Verifier> = std::iter::once(key.verifying_key())
        .chain(listed)
        .filter_map(|k| Verifier::new(&log_name(zone), TYPE_ED25519, k).ok())
        .collect();
    let note = Note::parse(&text).map_err(|e| e.to_string())?;
    note.verify(&verifiers).map_err(|e| format!("the stored checkpoint: {e}"))?;
    let cp = Checkpoint::parse(&note.text).map_err(|e| e.to_string())?;
    let root = ftz_audit::merkle::root(&TreeReader::uncached(store), size).map_err(|e| e.to_string())?;
    if root != cp.root || cp.size != size {
        return Err(format!("the audit log's root at size {size} is not the one its signed checkpoint states"));
    }
    Ok(())
}

/// Logs the node key in use (a configuration change) when it differs from the last one logged.
pub(crate) async fn log_node_key(state: &NodeState) {
    let id = state.node_key.key_id();
    let last = state.store.meta_value("audit_node_key").ok().flatten();
    if last.as_deref() == Some(id.as_bytes()) {
        return;
    }
    let leaf = Leaf::Config {
        at_ms: state.now_ms(),
        what: "node_key".into(),
        id: id.to_string(),
        version: 0,
        digest: ftz_core::sha256(state.node_key.verifying_key().as_bytes()),
    };
    match state.audit.append(&leaf, None).await {
        Ok(_) => {
            let _ = state.store.set_meta_value("audit_node_key", id.as_bytes());
        }
        Err(e) => tracing::error!("logging the node key: {e}"),
    }
}

/// Logs something installed on the node.
pub async fn log_config(state: &NodeState, what: &str, id: &str, version: u64, digest: [u8; 32]) {
    let leaf = Leaf::Config { at_ms: state.now_ms(), what: what.into(), id: id.into(), version, digest };
    if let Err(e) = state.audit.append(&leaf, None).await {
        tracing::error!(what, id, "a configuration change could not be logged: {e}");
    }
}

/// Signs checkpoints as the log grows and has them witnessed.
pub(crate) fn spawn_checkpointer(state: Arc<NodeState>) {
    state.clone().spawn(async move {
        let mut size_rx = state.audit.size();
        let mut shutdown = state.shutdown.clone();
        let mut signed = state.store.latest_checkpoint().ok().flatten().map_or(0, |(s, _)| s);
        let interval = Duration::from_millis(state.audit_config.checkpoint_interval_ms);
        loop {
            let size = *size_rx.borrow_and_update();
            if size > signed || (signed == 0 && state.store.latest_checkpoint().ok().flatten().is_none()) {
                match sign_checkpoint(&state.audit.tree(), &state.zone, &state.node_key, size)
                    .and_then(|(_, note)| state.store.put_checkpoint(size, &note).map(|()| note).map_err(Into::into))
                {
                    Ok(note) => {
                        signed = size;
                        tracing::debug!(size, "checkpoint signed");
                        witness::spawn_cosigning(state.clone(), size, note);
                    }
                    Err(e) => tracing::error!("checkpoint: {e}"),
                }
                // At most one checkpoint per interval while busy.
                tokio::select! {
                    _ = shutdown.wait_for(|s| *s) => return,
                    () = tokio::time::sleep(interval) => {}
                }
                continue;
            }
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => return,
                changed = size_rx.changed() => if changed.is_err() { return },
            }
        }
    });
}
