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
    reader::{LogReader, logged_transfer},
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
        tokio::spawn(append_loop(store.clone(), cache.clone(), rx, edge, size_tx));
        Ok(Self { tx, size: size_rx, store, cache, refusals: Arc::default(), gate: Arc::new(gate) })
    }

    /// Reads the durable tree (roots and proofs) of any size the caller already knows durable.
    pub fn tree(&self) -> TreeReader<'_> {
        TreeReader::new(&self.store, &self.cache)
    }

    /// Reads the log as durable now: nothing past the durable size is visible through it.
    pub(crate) fn reader(&self) -> LogReader<'_> {
        LogReader::new(&self.store, &self.cache, self.durable_size())
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
        // Transfers already in the log keep their first index (their batch may still be on its
        // way to disk: every reply waits for a flush).
        let mut lookup_failed = None;
        let p = plan(
            &edge,
            batch.iter().map(|a| Entry { leaf: &a.leaf, transfer_id: a.transfer_id, outbox: a.outbox.as_ref() }),
            |id| match logged_transfer(&store, id) {
                Ok(i) => i,
                Err(e) => {
                    lookup_failed = Some(e);
                    None
                }
            },
        );
        if let Some(e) = lookup_failed {
            tracing::error!("audit append failed: {e}");
            for a in batch {
                let _ = a.reply.send(Err(failed()));
            }
            continue;
        }
        let replies: Vec<_> = batch.into_iter().map(|a| a.reply).zip(p.placed).collect();
        if p.batch.leaves.is_empty() {
            let store = store.clone();
            flushing.spawn(async move {
                let durable = store.flush_async().await;
                for (reply, placed) in replies {
                    let _ = reply.send(durable.as_ref().map(|()| placed).map_err(|_| failed()));
                }
            });
            continue;
        }
        // The writes here, their flush in a task of its own: the next batch's writes overlap
        // this one's flush (one flush can then cover both). A small batch is a few in-memory
        // sled inserts, cheaper in place than a trip to the blocking pool and back.
        let st = store.without_flush();
        let b = p.batch;
        let committed = if b.leaves.len() <= INLINE_BATCH {
            Ok(st.audit_append(&b).map(|s| (s, b.nodes)))
        } else {
            tokio::task::spawn_blocking(move || st.audit_append(&b).map(|s| (s, b.nodes))).await
        };
        match committed {
            Ok(Ok((new_size, nodes))) => {
                cache.write().unwrap_or_else(|e| e.into_inner()).extend(&nodes);
                edge = p.edge;
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
                for (reply, _) in replies {
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
