//! The appender: leaves are appended in batches (group commit) and made durable before anyone
//! is told their index. One task owns the right edge of the tree; callers send a leaf and wait
//! for its [`Placed`] (index, and whether the transfer was logged already).
//!
//! A batch is written with the log's size last: the size is the commit record (sled recovers a
//! prefix of its operations), so no sled transaction is needed. The batch's flush runs while
//! the next batch is written; callers are answered after their batch's flush, and the durable
//! size (what readers may see) moves only then.

use std::sync::{Arc, RwLock};

use ftz_audit::leaf::Leaf;
use ftz_core::Reason;
use ftz_store::{OutboxItem, Store, StoreError};
use tokio::sync::{mpsc, oneshot, watch};

use super::{
    plan::{Edge, Entry, Placed, frontier, plan},
    reader::{LogReader, logged_transfers},
    tree::{TILE_WIDTH, TreeReader, UpperLevels},
};
use crate::error::ApiError;

/// Leaves appended in one batch at most.
const MAX_BATCH: usize = 512;

/// Batches of at most this many leaves are written on the appender's own task.
const INLINE_BATCH: usize = 32;

/// Batches committed and waiting for their flush at most.
const MAX_FLUSHING: usize = 4;

/// The leaf hashes of the last, partial tile of a log of `size` leaves (empty if it ends on a
/// tile boundary).
fn partial_tile(store: &Store, size: u64) -> Result<Vec<[u8; 32]>, StoreError> {
    let filled = (size % TILE_WIDTH) as usize;
    if filled == 0 {
        return Ok(Vec::new());
    }
    let bytes = store.audit_tile(size / TILE_WIDTH)?.unwrap_or_default();
    let hashes: Vec<[u8; 32]> = bytes.chunks_exact(32).take(filled).map(|c| c.try_into().unwrap_or([0; 32])).collect();
    if hashes.len() != filled {
        return Err(StoreError::Corrupt { what: "audit tile", detail: format!("the tile of leaf {size} is short") });
    }
    Ok(hashes)
}

fn read_edge(store: &Store, cache: &Arc<RwLock<UpperLevels>>) -> Result<Edge, StoreError> {
    let size = store.audit_size()?;
    Ok(Edge { size, front: frontier(&TreeReader::new(store, cache), size)?, tile: partial_tile(store, size)? })
}

struct Append {
    leaf: Vec<u8>,
    transfer_id: Option<[u8; 16]>,
    /// Queued in the outbox with the leaf, if the leaf is appended (not if the transfer was
    /// logged before).
    outbox: Option<OutboxItem>,
    reply: oneshot::Sender<Result<Placed, ApiError>>,
}

enum Msg {
    Append(Append),
    /// Finish what is queued, then stop (and release the store).
    Stop(oneshot::Sender<()>),
}

/// The handle the rest of the node appends through and reads the durable log with.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Msg>,
    size: watch::Receiver<u64>,
    /// The durable size moves when this node's batches are durable, and (on a shared store)
    /// when it sees other replicas' batches: see [`AuditLog::follow`].
    size_tx: watch::Sender<u64>,
    store: Store,
    cache: Arc<RwLock<UpperLevels>>,
    /// How many refusals involving each other zone may be logged (see `events`).
    pub(crate) refusals: Arc<super::events::RefusalGate>,
    /// Whether the log may grow at all (shut after a restore: see `gate`).
    pub(crate) gate: Arc<super::gate::LogGate>,
}

impl AuditLog {
    /// Starts the appender over the stored log.
    pub fn start(store: Store) -> Result<Self, StoreError> {
        let cache = Arc::new(RwLock::new(UpperLevels::load(&store, store.audit_size()?)?));
        let edge = read_edge(&store, &cache)?;
        let (tx, rx) = mpsc::channel(4096);
        let (size_tx, size_rx) = watch::channel(edge.size);
        // A store restored from a backup starts shut, before anything can append.
        let gate = match store.restored_marker()? {
            Some(m) => super::gate::LogGate::shut(format!(
                "this node was restored from a backup of its log at size {}; it appends nothing and signs no checkpoint until its witnesses confirm they hold no more of its log",
                m.audit_size
            )),
            None => super::gate::LogGate::default(),
        };
        tokio::spawn(append_loop(store.clone(), cache.clone(), rx, edge, size_tx.clone()));
        Ok(Self { tx, size: size_rx, size_tx, store, cache, refusals: Arc::default(), gate: Arc::new(gate) })
    }

    /// Reads the durable tree (roots and proofs) of any size the caller already knows durable.
    pub fn tree(&self) -> TreeReader<'_> {
        TreeReader::new(&self.store, &self.cache)
    }

    /// Reads the log as durable now: nothing past the durable size is visible through it.
    pub(crate) fn reader(&self) -> LogReader<'_> {
        LogReader::new(&self.store, &self.cache, self.durable_size())
    }

    /// Catches up with a log other replicas of this node append to (one PostgreSQL database):
    /// what they committed is durable, so the durable size moves to the store's, after the
    /// cache has the hashes it needs. Returns the durable size.
    pub(crate) fn follow(&self) -> Result<u64, StoreError> {
        let size = self.store.audit_size()?;
        if size > self.durable_size() {
            self.cache.write().unwrap_or_else(|e| e.into_inner()).catch_up(&self.store, size)?;
            self.size_tx.send_if_modified(|s| (size > *s).then(|| *s = size).is_some());
        }
        Ok(self.durable_size())
    }

    /// Subtree hashes held in memory.
    pub fn cached_hashes(&self) -> usize {
        self.cache.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Appends a leaf; returns where it is once it is durable. A transfer leaf is logged once per
    /// transfer id: appending it again returns the first index, marked as a duplicate.
    pub async fn append(&self, leaf: &Leaf, transfer_id: Option<[u8; 16]>) -> Result<Placed, ApiError> {
        self.append_with_outbox(leaf, transfer_id, None).await
    }

    /// The same, and `outbox` queued with the leaf in the same batch, before its size (the
    /// transactional outbox: a receipt is sent back if and only if its transfer is in this log).
    pub(crate) async fn append_with_outbox(
        &self,
        leaf: &Leaf,
        transfer_id: Option<[u8; 16]>,
        outbox: Option<OutboxItem>,
    ) -> Result<Placed, ApiError> {
        self.gate.check()?;
        let leaf = leaf.encode();
        // What every reader would refuse is never written: one oversized entry would make every
        // later listing, export and check of this log fail.
        if leaf.len() > ftz_audit::leaf::MAX_LEAF_BYTES {
            return Err(ApiError::invalid(format!(
                "the entry would be {} bytes; the log holds entries of at most {}",
                leaf.len(),
                ftz_audit::leaf::MAX_LEAF_BYTES
            )));
        }
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Append(Append { leaf, transfer_id, outbox, reply }))
            .await
            .map_err(|_| ApiError::new(Reason::Internal, "the audit log is not running"))?;
        rx.await.map_err(|_| ApiError::new(Reason::Internal, "the audit log stopped"))?
    }

    /// `Ok` if the log may grow now; else the `LOG_BEHIND_WITNESSES` refusal. Called before a
    /// change is made whose log entry would be refused (an install, a transfer).
    pub(crate) fn writable(&self) -> Result<(), ApiError> {
        self.gate.check()
    }

    /// Stops the appender once everything queued before is durable.
    pub async fn close(&self) {
        let (done, rx) = oneshot::channel();
        if self.tx.send(Msg::Stop(done)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// The durable size, as it changes.
    pub(crate) fn size(&self) -> watch::Receiver<u64> {
        self.size.clone()
    }

    /// The durable size now. The store's own size can be ahead of it while a batch's flush is
    /// under way: what is served to others (entries, proofs, sizes) stays within this one.
    pub fn durable_size(&self) -> u64 {
        *self.size.borrow()
    }
}

/// Takes what is queued, up to [`MAX_BATCH`]; `None` when the log is to stop now.
async fn next_batch(rx: &mut mpsc::Receiver<Msg>, stop: &mut Option<oneshot::Sender<()>>) -> Option<Vec<Append>> {
    let mut batch = match rx.recv().await? {
        Msg::Append(a) => vec![a],
        Msg::Stop(done) => {
            *stop = Some(done);
            return Some(Vec::new());
        }
    };
    while batch.len() < MAX_BATCH {
        match rx.try_recv() {
            Ok(Msg::Append(a)) => batch.push(a),
            Ok(Msg::Stop(done)) => {
                *stop = Some(done);
                break;
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

fn failed() -> ApiError {
    ApiError::new(Reason::StoreFailure, "the audit log could not be written")
}

/// A batch as appended: the log's new size, where each entry went, the edge after it and
/// the subtree hashes it completed (for the cache).
struct Committed {
    new_size: u64,
    placed: Vec<Placed>,
    edge: Edge,
    nodes: Vec<(u32, u64, [u8; 32])>,
}

/// One entry as queued: the leaf, its transfer id, and what goes into the outbox with it.
type Queued = (Vec<u8>, Option<[u8; 16]>, Option<OutboxItem>);

/// Plans and appends one batch from the log's size as the store has it. With one appender
/// (sled, or one replica) that is `edge`'s size. When other replicas appended meanwhile (one
/// database, several nodes), the store's append hands over the size they left under the log's
/// lock: the edge is read again there, the cache caught up, and the batch planned from it, so
/// every replica's batches form one history, and a transfer another replica logged is a
/// duplicate here too.
fn commit(
    store: &Store,
    cache: &Arc<RwLock<UpperLevels>>,
    edge: Edge,
    entries: &[Queued],
) -> Result<Committed, StoreError> {
    let mut planned = None;
    let mut edge = Some(edge);
    let new_size = store.audit_append_with(|size| {
        let mut from = edge.take().unwrap_or_default();
        if size != from.size {
            // The edge the last appender left with the size (one read); else rebuilt from the
            // tree (a store moved from sled).
            from = match store.audit_edge()?.as_deref().and_then(Edge::decode).filter(|e| e.size == size) {
                Some(e) => e,
                None => {
                    cache.write().unwrap_or_else(|e| e.into_inner()).catch_up(store, size)?;
                    read_edge(store, cache)?
                }
            };
            if from.size != size {
                return Err(StoreError::Conflict { expected: Some(size), found: Some(from.size) });
            }
        }
        // Transfers already in the log keep their first index.
        let ids: Vec<[u8; 16]> = entries.iter().filter_map(|(_, id, _)| *id).collect();
        let logged = logged_transfers(store, &ids, size)?;
        let p = plan(
            &from,
            entries.iter().map(|(leaf, transfer_id, outbox)| Entry {
                leaf,
                transfer_id: *transfer_id,
                outbox: outbox.as_ref(),
            }),
            |id| logged.get(id).copied(),
        );
        planned = Some((p.placed, p.edge, p.batch.nodes.clone()));
        Ok(p.batch)
    })?;
    let (placed, edge, nodes) =
        planned.ok_or_else(|| StoreError::Corrupt { what: "audit", detail: "the batch was not planned".into() })?;
    Ok(Committed { new_size, placed, edge, nodes })
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
        let Some(batch) = next_batch(&mut rx, &mut stop).await else { break };
        if batch.is_empty() {
            continue;
        }
        let (replies, entries): (Vec<_>, Vec<_>) =
            batch.into_iter().map(|a| (a.reply, (a.leaf, a.transfer_id, a.outbox))).unzip();
        // The writes here, their flush in a task of its own: the next batch's writes overlap
        // this one's flush (one flush can then cover both). A small batch on sled is a few
        // in-memory inserts, cheaper in place than a trip to the blocking pool and back; on
        // PostgreSQL every batch is a transaction of round trips, never run on this task.
        let job = {
            let (store, cache, edge) = (store.without_flush(), cache.clone(), edge.clone());
            move || commit(&store, &cache, edge, &entries)
        };
        let committed = if !store.is_shared() && replies.len() <= INLINE_BATCH {
            Ok(job())
        } else {
            tokio::task::spawn_blocking(job).await
        };
        match committed {
            Ok(Ok(Committed { new_size, placed, edge: next, nodes })) => {
                let replies: Vec<_> = replies.into_iter().zip(placed).collect();
                if nodes.is_empty() && next.size == edge.size {
                    // Nothing appended (every entry a transfer logged before): answered once
                    // what they duplicate is durable.
                    let store = store.clone();
                    flushing.spawn(async move {
                        let durable = store.flush_async().await;
                        for (reply, placed) in replies {
                            let _ = reply.send(durable.as_ref().map(|()| placed).map_err(|_| failed()));
                        }
                    });
                    edge = next;
                    continue;
                }
                cache.write().unwrap_or_else(|e| e.into_inner()).extend(&nodes);
                edge = next;
                debug_assert_eq!(edge.size, new_size);
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
                    for (reply, placed) in replies {
                        let _ = reply.send(durable.as_ref().map(|()| placed).map_err(|_| failed()));
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
                for reply in replies {
                    let _ = reply.send(Err(failed()));
                }
                // Re-read what is durable, so the next batch starts from the truth.
                if let Ok(e) = read_edge(&store, &cache) {
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

#[cfg(test)]
mod tests {
    use ftz_audit::{
        leaf::{LeafSignature, SignedPart},
        merkle::{MemoryTree, inclusion_proof, root},
    };
    use ftz_proto::TransferIntent;
    use prost::Message;

    use super::*;

    fn config(i: u64) -> Leaf {
        Leaf::Config { at_ms: i as i64, what: "test".into(), id: format!("leaf-{i}"), version: i, digest: [7; 32] }
    }

    fn transfer(id: [u8; 16]) -> Leaf {
        let signed =
            |payload: Vec<u8>| SignedPart { payload, signature: LeafSignature { key_id: [1; 16], sig: [2; 64] } };
        Leaf::Transfer {
            intent: signed(TransferIntent { transfer_id: id.to_vec(), ..Default::default() }.encode_to_vec()),
            receipt: signed(b"receipt".to_vec()),
        }
    }

    /// Two replicas of a node, each its own store handle and appender on one database, append
    /// at once: one log, whose roots and proofs each replica serves like the reference tree once
    /// it has followed the other; a transfer both log at once is logged once, and both say where.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn replicas_on_one_database_append_one_log_and_follow_each_other() {
        let pg = ftz_devkit::postgres::TempPostgres::start().unwrap_or_else(|e| panic!("{e}"));
        pg.create_database("node").unwrap();
        let open = || Store::open_postgres(ftz_store::PgOptions::new(pg.url("node"))).unwrap();
        let (a, b) = (AuditLog::start(open()).unwrap(), AuditLog::start(open()).unwrap());
        let shared = [0x5A; 16];
        let mut tasks = Vec::new();
        for i in 0..300u64 {
            let log = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                if i % 50 == 7 {
                    log.append(&transfer(shared), Some(shared)).await.unwrap()
                } else {
                    log.append(&config(i), None).await.unwrap()
                }
            }));
        }
        let mut placed = Vec::new();
        for t in tasks {
            placed.push(t.await.unwrap());
        }
        let store = open();
        let size = store.audit_size().unwrap();
        assert_eq!(size, 300 - 6 + 1, "every leaf once, the shared transfer once");
        let firsts: Vec<_> = placed.iter().filter(|p| !p.duplicate).map(|p| p.index).collect();
        let mut sorted = firsts.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), firsts.len(), "no index given twice");
        let at = store.audit_transfer(&shared).unwrap().unwrap();
        assert_eq!(placed.iter().filter(|p| p.index == at).count(), 6, "every append of the transfer names one index");
        let mut reference = MemoryTree::new();
        for (_, e) in store.audit_entries(0, 1000).unwrap() {
            reference.push(&e);
        }
        for log in [&a, &b] {
            assert_eq!(log.follow().unwrap(), size);
            let tree = log.tree();
            for s in [1, 15, 16, 17, 100, 255, 256, size] {
                assert_eq!(root(&tree, s).unwrap(), reference.root_at(s), "root at {s}");
                for i in (0..s).step_by(13) {
                    assert_eq!(inclusion_proof(&tree, i, s).unwrap(), inclusion_proof(&reference, i, s).unwrap());
                }
            }
        }
        a.close().await;
        b.close().await;
    }
}
