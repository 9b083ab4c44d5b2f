//! The node's audit log (leaves, perfect-subtree hashes, size, signed checkpoints), pending
//! transfer intents, and what this node witnessed of other logs.
//!
//! One sled tree holds the log. The stored size is the commit record: a batch writes its leaves,
//! tiles, subtree hashes and transfer ids first and the new size last, and sled recovers a prefix
//! of its operations, so after a crash the log is a prefix of what was appended, never a leaf
//! without its hashes. What lies beyond the size (a batch cut short) is invisible to every reader
//! here and overwritten by the next batch. No sled transaction: in sled 0.34 every transaction
//! or batch writes its I/O buffer out twice, flushed or not (two `pwrite` and two
//! `sync_file_range`, measured), which cost more than anything else in an append.

use crate::{Store, StoreError};

const SIZE: &[u8] = b"s";
const LATEST: &[u8] = b"c";
/// The edge the last batch left (PostgreSQL), written with the size.
const EDGE: &[u8] = b"f";

/// The advisory lock the appenders of every replica of a node take turns on (PostgreSQL).
const AUDIT_LOCK: i64 = 0x667a_7861_7564_6974; // "fzxaudit"

fn entry_key(i: u64) -> Vec<u8> {
    [b"e".as_slice(), &i.to_be_bytes()].concat()
}

fn node_key(level: u32, index: u64) -> Vec<u8> {
    [b"n".as_slice(), &[level as u8], &index.to_be_bytes()].concat()
}

fn tile_key(index: u64) -> Vec<u8> {
    [b"b".as_slice(), &index.to_be_bytes()].concat()
}

fn transfer_key(id: &[u8; 16]) -> Vec<u8> {
    [b"t".as_slice(), id].concat()
}

fn history_key(size: u64) -> Vec<u8> {
    [b"h".as_slice(), &size.to_be_bytes()].concat()
}

fn u64_of(v: &[u8]) -> Result<u64, StoreError> {
    v.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt { what: "audit", detail: "not 8 bytes".into() })
}

/// A pending intent: its transfer id and the intent envelope's bytes.
pub type PendingIntent = ([u8; 16], Vec<u8>);

/// One batch of appends, computed by the caller from the current frontier.
#[derive(Debug, Default, Clone)]
pub struct AuditBatch {
    /// The size before the batch: the batch is refused if the log is not at this size.
    pub old_size: u64,
    pub leaves: Vec<Vec<u8>>,
    /// Perfect subtrees the batch completes that the caller keeps: (level, index, hash).
    pub nodes: Vec<(u32, u64, [u8; 32])>,
    /// Tiles the batch fills or extends: (tile index, the tile's whole new value). A tile is the
    /// caller's grouping of leaf hashes (see ftz-node's `audit::tree`); kept as given.
    pub tiles: Vec<(u64, Vec<u8>)>,
    /// Transfer leaves by transfer id, so a transfer is logged once.
    pub transfers: Vec<([u8; 16], u64)>,
    /// Outbox items queued with the batch, before its size (a receipt to send back is queued if
    /// its transfer is logged; one queued without, by a crash, is dropped at start). Not
    /// subject to the outbox's size cap: the transfer has happened.
    pub outbox: Vec<crate::OutboxItem>,
    /// The right edge of the tree after the batch, as the caller encodes it: kept with the
    /// size on PostgreSQL, where another replica's appender reads it under the log's lock
    /// ([`Store::audit_edge`]) instead of rebuilding it from the tree. Not kept on sled (one
    /// appender, whose edge is in its memory).
    pub edge: Vec<u8>,
}

impl Store {
    pub fn audit_size(&self) -> Result<u64, StoreError> {
        self.audit.get(SIZE)?.map(|v| u64_of(&v)).transpose().map(|s| s.unwrap_or(0))
    }

    /// Appends a batch atomically and durably (see [`Store::audit_append_with`]), refused
    /// (changing nothing readable) if the log is no longer at `b.old_size`.
    pub fn audit_append(&self, b: &AuditBatch) -> Result<u64, StoreError> {
        match self.db.as_postgres() {
            Some(pg) => self.append_locked(pg, |_| Ok(b.clone())),
            None => self.append_sled(b),
        }
    }

    /// Appends the batch `plan(size)` makes for the log's current `size`, atomically and
    /// durably; returns the new size. `plan` must plan from `size` (the batch is refused if its
    /// `old_size` is another) and may read the store: it sees every batch appended before.
    ///
    /// On PostgreSQL, several replicas of a node append to one log: reading the size, `plan`
    /// and the writes run in one transaction holding the log's lock (Tessera's way: whoever
    /// holds the lock is the only writer, and reads the truth before it decides), so the log
    /// has one history however many replicas append, and a transfer id is looked up and
    /// recorded by one appender at a time. On sled the log has one appender, the node's audit
    /// log task: the size is read, the batch planned and written with the size last (see the
    /// module's notes), and a batch from a stale size is refused.
    pub fn audit_append_with(
        &self,
        plan: impl FnOnce(u64) -> Result<AuditBatch, StoreError>,
    ) -> Result<u64, StoreError> {
        match self.db.as_postgres() {
            Some(pg) => self.append_locked(pg, plan),
            None => self.append_sled(&plan(self.audit_size()?)?),
        }
    }

    /// The PostgreSQL append: one transaction under the log's lock, every row of the batch in
    /// one statement and its outbox items in another.
    fn append_locked(
        &self,
        pg: &crate::pg::Pg,
        plan: impl FnOnce(u64) -> Result<AuditBatch, StoreError>,
    ) -> Result<u64, StoreError> {
        let name = |t: &crate::kv::Tree| t.as_postgres().map(|t| t.name().to_string());
        let (Some(audit), Some(outbox)) = (name(&self.audit), name(&self.outbox)) else {
            return Err(StoreError::Postgres("the audit log's trees are not in PostgreSQL".into()));
        };
        let (new_size, added) = pg.exclusive(AUDIT_LOCK, |tx| {
            let size = tx.get(&audit, SIZE)?.map(|v| u64_of(&v)).transpose()?.unwrap_or(0);
            let b = plan(size)?;
            if b.old_size != size {
                return Err(StoreError::Conflict { expected: Some(b.old_size), found: Some(size) });
            }
            if b.leaves.is_empty() {
                return Ok((size, 0));
            }
            let new_size = b.old_size + b.leaves.len() as u64;
            let mut rows = Vec::with_capacity(b.leaves.len() + b.tiles.len() + b.nodes.len() + b.transfers.len() + 1);
            rows.extend(b.leaves.iter().enumerate().map(|(i, l)| (entry_key(b.old_size + i as u64), l.clone())));
            rows.extend(b.tiles.iter().map(|(i, t)| (tile_key(*i), t.clone())));
            rows.extend(b.nodes.iter().map(|(l, i, h)| (node_key(*l, *i), h.to_vec())));
            rows.extend(b.transfers.iter().map(|(id, i)| (transfer_key(id), i.to_be_bytes().to_vec())));
            rows.push((SIZE.to_vec(), new_size.to_be_bytes().to_vec()));
            if !b.edge.is_empty() {
                rows.push((EDGE.to_vec(), b.edge.clone()));
            }
            tx.insert_many(&audit, rows)?;
            let items = b.outbox.iter().map(|i| (i.id.to_vec(), i.encode())).collect();
            let added = tx.insert_absent_many(&outbox, items)?.len();
            Ok((new_size, added))
        })?;
        self.outbox_added(added);
        Ok(new_size)
    }

    /// The sled append: the leaves, tiles, subtree hashes, transfer ids and outbox items
    /// first, then the size, then one flush.
    ///
    /// An outbox item of a batch that a crash cut short stays queued without its transfer in
    /// the log: the node drops such items at start (ftz-node's `audit::transfer`).
    fn append_sled(&self, b: &AuditBatch) -> Result<u64, StoreError> {
        let new_size = b.old_size + b.leaves.len() as u64;
        let current = self.audit.get(SIZE)?;
        let size = current.as_ref().map(|v| u64_of(v)).transpose()?.unwrap_or(0);
        let conflict = |found| StoreError::Conflict { expected: Some(b.old_size), found: Some(found) };
        if size != b.old_size {
            return Err(conflict(size));
        }
        if b.leaves.is_empty() {
            return Ok(size);
        }
        for (i, leaf) in b.leaves.iter().enumerate() {
            self.audit.insert(entry_key(b.old_size + i as u64), leaf.as_slice())?;
        }
        for (index, tile) in &b.tiles {
            self.audit.insert(tile_key(*index), tile.as_slice())?;
        }
        for (level, index, hash) in &b.nodes {
            self.audit.insert(node_key(*level, *index), &hash[..])?;
        }
        for (id, index) in &b.transfers {
            self.audit.insert(transfer_key(id), &index.to_be_bytes()[..])?;
        }
        let mut added = Vec::new();
        let committed = (|| {
            for item in &b.outbox {
                if self.outbox.compare_and_swap(item.id, None::<&[u8]>, Some(item.encode()))?.is_ok() {
                    added.push(item.id);
                }
            }
            if self.audit.compare_and_swap(SIZE, current, Some(&new_size.to_be_bytes()[..]))?.is_err() {
                return Err(conflict(self.audit_size()?));
            }
            Ok(())
        })();
        if let Err(e) = committed {
            // Not appended: its receipts are not queued either (best effort; the node also drops,
            // at start and before sending, receipts whose transfer is not in the log).
            for id in &added {
                let _ = self.outbox.remove(id);
            }
            return Err(e);
        }
        self.outbox_added(added.len());
        self.flush()?;
        Ok(new_size)
    }

    /// The tree's right edge as the last batch's appender encoded it ([`AuditBatch::edge`]),
    /// if kept (PostgreSQL). It may be of another size than the log's (a store moved from
    /// sled, or written by an older build): the caller checks.
    pub fn audit_edge(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.audit.get(EDGE)?.map(|v| v.to_vec()))
    }

    pub fn audit_entry(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if index >= self.audit_size()? {
            return Ok(None);
        }
        Ok(self.audit.get(entry_key(index))?.map(|v| v.to_vec()))
    }

    /// Up to `limit` entries from `from` on.
    pub fn audit_entries(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        let size = self.audit_size()?;
        for kv in self.audit.range(entry_key(from)..entry_key(size)).take(limit) {
            let (k, v) = kv?;
            out.push((u64_of(&k[1..])?, v.to_vec()));
        }
        Ok(out)
    }

    pub fn audit_node(&self, level: u32, index: u64) -> Result<Option<[u8; 32]>, StoreError> {
        match self.audit.get(node_key(level, index))? {
            None => Ok(None),
            Some(v) => v
                .as_ref()
                .try_into()
                .map(Some)
                .map_err(|_| StoreError::Corrupt { what: "audit node", detail: "not 32 bytes".into() }),
        }
    }

    pub fn audit_tile(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.audit.get(tile_key(index))?.map(|v| v.to_vec()))
    }

    /// The first `count` nodes of `level`, by index.
    pub fn audit_level(&self, level: u32, count: u64) -> Result<Vec<[u8; 32]>, StoreError> {
        self.audit_level_range(level, 0, count)
    }

    /// The index the transfer index names for this id, if it is within the log. An id written
    /// by a batch that a crash cut short may name an index a later leaf took: the caller checks
    /// that the entry there is this transfer (ftz-node's `audit::transfer::logged_transfer`; the
    /// store does not read leaves).
    pub fn audit_transfer(&self, id: &[u8; 16]) -> Result<Option<u64>, StoreError> {
        let Some(index) = self.audit.get(transfer_key(id))?.map(|v| u64_of(&v)).transpose()? else { return Ok(None) };
        Ok((index < self.audit_size()?).then_some(index))
    }

    /// [`Store::audit_transfer`] for many ids in one read (one round trip on PostgreSQL):
    /// the ids the transfer index names an entry within a log of `size` entries for (the
    /// appender's, read under the log's lock), with that index.
    pub fn audit_transfers(&self, ids: &[[u8; 16]], size: u64) -> Result<Vec<([u8; 16], u64)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<Vec<u8>> = ids.iter().map(transfer_key).collect();
        let mut out = Vec::new();
        for (k, v) in self.audit.get_many(&keys)? {
            let index = u64_of(&v)?;
            if let (Ok(id), true) = (<[u8; 16]>::try_from(&k[1..]), index < size) {
                out.push((id, index));
            }
        }
        Ok(out)
    }

    /// The entries at `indexes` within a log of `size` entries, in one read: (index, leaf).
    pub fn audit_entries_at(&self, indexes: &[u64], size: u64) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        if indexes.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<Vec<u8>> = indexes.iter().filter(|i| **i < size).map(|i| entry_key(*i)).collect();
        self.audit.get_many(&keys)?.into_iter().map(|(k, v)| Ok((u64_of(&k[1..])?, v.to_vec()))).collect()
    }

    /// The nodes of `level` from index `from` up to (not including) `to`, by index: what a
    /// replica that follows a log others append to reads of the levels it keeps in memory.
    pub fn audit_level_range(&self, level: u32, from: u64, to: u64) -> Result<Vec<[u8; 32]>, StoreError> {
        let mut out = Vec::new();
        for kv in self.audit.range(node_key(level, from)..node_key(level, to)) {
            let (k, v) = kv?;
            let corrupt = |detail: &str| StoreError::Corrupt { what: "audit node", detail: detail.into() };
            if u64_of(&k[2..])? != from + out.len() as u64 {
                return Err(corrupt("a level has a gap"));
            }
            out.push(v.as_ref().try_into().map_err(|_| corrupt("not 32 bytes"))?);
        }
        Ok(out)
    }

    /// Keeps a signed checkpoint as the latest and in the history by size, whatever was there
    /// (a repair, and how tests forge one). The node keeps what it signs with
    /// [`Store::advance_checkpoint`]. Durable on return.
    pub fn put_checkpoint(&self, size: u64, note: &str) -> Result<(), StoreError> {
        let mut latest = size.to_be_bytes().to_vec();
        latest.extend_from_slice(note.as_bytes());
        let mut batch = crate::kv::Batch::default();
        batch.insert(LATEST, latest);
        batch.insert(history_key(size), note.as_bytes());
        self.audit.apply_batch(batch)?;
        self.flush()
    }

    /// Keeps a checkpoint this node signed at `size`, if it moves the log's checkpoints forward:
    /// it becomes the latest only if it is larger than the latest, and enters the history only
    /// if none is kept at its size (one kept there may carry cosignatures already). Returns
    /// whether it became the latest; durable on return.
    ///
    /// Several replicas of a node sign checkpoints of one shared log: they run this in one
    /// transaction each, so of the replicas that signed a size only one stores it (and only
    /// that one has it witnessed), and the latest checkpoint never goes back to a smaller size
    /// a slower replica signed. Every replica signs only sizes the shared log has reached, from
    /// its hashes, so no two checkpoints of this log can contradict each other.
    pub fn advance_checkpoint(&self, size: u64, note: &str) -> Result<bool, StoreError> {
        let advanced = self.db.transaction(&[&self.audit], |tx| {
            let latest = match tx.get(0, LATEST)? {
                Some(v) if v.len() >= 8 => Some(u64_of(&v[..8])?),
                Some(_) => return Err(StoreError::Corrupt { what: "audit checkpoint", detail: "short".into() }),
                None => None,
            };
            if tx.get(0, &history_key(size))?.is_none() {
                tx.insert(0, &history_key(size), note.as_bytes())?;
            }
            if latest.is_some_and(|l| l >= size) {
                return Ok(false);
            }
            let mut v = size.to_be_bytes().to_vec();
            v.extend_from_slice(note.as_bytes());
            tx.insert(0, LATEST, &v)?;
            Ok(true)
        })?;
        self.flush()?;
        Ok(advanced)
    }

    /// Rewrites the checkpoint at `size` with `update(note)` (a cosignature added): in the
    /// history, and as the latest only if it still is the latest. `None` from `update` leaves it
    /// as it is. Returns whether a checkpoint was rewritten; durable on return. One
    /// transaction: cosignatures that replicas add at once are all kept. `update` may run more
    /// than once (a transaction run again after a conflict).
    pub fn update_checkpoint(&self, size: u64, update: impl Fn(&str) -> Option<String>) -> Result<bool, StoreError> {
        let rewritten = self.db.transaction(&[&self.audit], |tx| {
            let Some(old) = tx.get(0, &history_key(size))? else { return Ok(false) };
            let Some(new) = update(&String::from_utf8_lossy(&old)) else { return Ok(false) };
            tx.insert(0, &history_key(size), new.as_bytes())?;
            if let Some(latest) = tx.get(0, LATEST)?
                && latest.len() >= 8
                && u64_of(&latest[..8])? == size
            {
                let mut v = size.to_be_bytes().to_vec();
                v.extend_from_slice(new.as_bytes());
                tx.insert(0, LATEST, &v)?;
            }
            Ok(true)
        })?;
        if rewritten {
            self.flush()?;
        }
        Ok(rewritten)
    }

    /// The latest signed checkpoint: (size, note).
    pub fn latest_checkpoint(&self) -> Result<Option<(u64, String)>, StoreError> {
        match self.audit.get(LATEST)? {
            None => Ok(None),
            Some(v) if v.len() >= 8 => Ok(Some((u64_of(&v[..8])?, String::from_utf8_lossy(&v[8..]).into_owned()))),
            Some(_) => Err(StoreError::Corrupt { what: "audit checkpoint", detail: "short".into() }),
        }
    }

    /// The checkpoint signed at `size`, if one was.
    pub fn checkpoint_at(&self, size: u64) -> Result<Option<String>, StoreError> {
        Ok(self.audit.get(history_key(size))?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Up to `limit` signed checkpoints of a size below `below` (`None`: any), newest (largest)
    /// first: (size, note).
    pub fn checkpoints_before(&self, below: Option<u64>, limit: usize) -> Result<Vec<(u64, String)>, StoreError> {
        let end = match below {
            Some(size) => history_key(size),
            None => b"i".to_vec(),
        };
        let mut out = Vec::new();
        for kv in self.audit.range_rev(history_key(0)..end).take(limit) {
            let (k, v) = kv?;
            out.push((u64_of(&k[1..])?, String::from_utf8_lossy(&v).into_owned()));
        }
        Ok(out)
    }

    /// Remembers an intent this node sent, until its receipt arrives or `deadline_ms` passes.
    pub fn put_pending_intent(&self, id: &[u8; 16], deadline_ms: i64, intent: &[u8]) -> Result<(), StoreError> {
        let mut v = deadline_ms.to_be_bytes().to_vec();
        v.extend_from_slice(intent);
        self.pending.insert(id, v)?;
        self.flush()
    }

    /// [`Store::put_pending_intent`], and the record's new holder if there is one
    /// ([`Store::add_holder`]): on PostgreSQL in one transaction (one commit instead of two, on
    /// the path of every transfer a provider seals); on sled two writes, durable at the next
    /// flush.
    pub fn put_pending_intent_for(
        &self,
        id: &[u8; 16],
        deadline_ms: i64,
        intent: &[u8],
        holder: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        let name = |t: &crate::kv::Tree| t.as_postgres().map(|t| t.name().to_string());
        if let (Some(pg), Some(pending), Some(holders)) =
            (self.db.as_postgres(), name(&self.pending), name(&self.holders))
        {
            let mut v = deadline_ms.to_be_bytes().to_vec();
            v.extend_from_slice(intent);
            return pg.read_committed(None, |tx| {
                if let Some((record, zone)) = holder {
                    tx.insert(&holders, &crate::records::holder_key(record, zone), &[])?;
                }
                tx.insert(&pending, id, &v)
            });
        }
        if let Some((record, zone)) = holder {
            self.add_holder(record, zone)?;
        }
        self.put_pending_intent(id, deadline_ms, intent)
    }

    /// Claims an overdue intent for the one replica that declares it unacknowledged: moves
    /// its deadline from (at or before) `now_ms` to `until_ms`, unless another replica did so
    /// first. True if this call claimed it. One that dies before declaring it leaves it
    /// overdue again at `until_ms`.
    pub fn claim_overdue_intent(&self, id: &[u8; 16], now_ms: i64, until_ms: i64) -> Result<bool, StoreError> {
        let Some(current) = self.pending.get(id)? else { return Ok(false) };
        if current.len() < 8 || i64::from_be_bytes(current[..8].try_into().unwrap_or([0; 8])) > now_ms {
            return Ok(false);
        }
        let mut claimed = until_ms.to_be_bytes().to_vec();
        claimed.extend_from_slice(&current[8..]);
        let won = self.pending.compare_and_swap(id, Some(current), Some(claimed))?.is_ok();
        if won {
            self.flush()?;
        }
        Ok(won)
    }

    /// Forgets a pending intent; true if it was pending.
    pub fn take_pending_intent(&self, id: &[u8; 16]) -> Result<bool, StoreError> {
        let was = self.pending.remove(id)?.is_some();
        if was {
            self.flush()?;
        }
        Ok(was)
    }

    /// Pending intents whose deadline has passed: (id, encoded intent).
    pub fn overdue_intents(&self, now_ms: i64) -> Result<Vec<PendingIntent>, StoreError> {
        let mut out = Vec::new();
        for kv in self.pending.iter() {
            let (k, v) = kv?;
            if v.len() < 8 {
                continue;
            }
            let deadline = i64::from_be_bytes(v[..8].try_into().unwrap_or([0; 8]));
            if deadline <= now_ms
                && let Ok(id) = <[u8; 16]>::try_from(k.as_ref())
            {
                out.push((id, v[8..].to_vec()));
            }
        }
        Ok(out)
    }

    /// The checkpoint note this node last cosigned for `origin`.
    pub fn witnessed(&self, origin: &str) -> Result<Option<String>, StoreError> {
        Ok(self.witness.get(origin.as_bytes())?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Replaces what this node witnessed for `origin`, only if it is still `expected`
    /// (compare-and-set: concurrent submissions cannot both win). Durable on return.
    pub fn witness_cas(&self, origin: &str, expected: Option<&str>, new: &str) -> Result<bool, StoreError> {
        let ok = self
            .witness
            .compare_and_swap(origin.as_bytes(), expected.map(str::as_bytes), Some(new.as_bytes()))?
            .is_ok();
        if ok {
            self.flush()?;
        }
        Ok(ok)
    }

    /// Keeps evidence of equivocation (two notes that cannot both be true). Durable.
    /// Keeps a piece of equivocation evidence, unless `max` are kept already (the first ones
    /// prove the point; a log that keeps equivocating must not fill the witness's disk).
    /// Returns whether it was kept.
    pub fn add_evidence(&self, evidence: &[u8], max: usize) -> Result<bool, StoreError> {
        if self.evidence.len()? >= max {
            return Ok(false);
        }
        let id = self.db.generate_id()?;
        self.evidence.insert(id.to_be_bytes(), evidence)?;
        self.flush()?;
        Ok(true)
    }

    /// The first `limit` pieces of evidence kept, oldest first.
    pub fn evidence(&self, limit: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        self.evidence.iter().take(limit).map(|kv| kv.map(|(_, v)| v.to_vec())).collect()
    }

    /// How many pieces of evidence are kept.
    pub fn evidence_count(&self) -> Result<usize, StoreError> {
        self.evidence.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_append_atomically_in_order() {
        for place in crate::testing::places() {
            {
                let s = place.open();
                let b = AuditBatch {
                    old_size: 0,
                    leaves: vec![b"a".to_vec(), [b"b".as_slice(), &[9; 16]].concat()],
                    nodes: vec![(0, 0, [1; 32]), (0, 1, [2; 32]), (1, 0, [3; 32])],
                    tiles: vec![(0, [[1; 32], [2; 32]].concat())],
                    transfers: vec![([9; 16], 1)],
                    outbox: vec![crate::OutboxItem {
                        id: [7; 16],
                        kind: 1,
                        to_zone: "hainan".into(),
                        body: b"receipt".to_vec(),
                        created_at_ms: 1,
                        attempts: 0,
                        next_attempt_ms: 1,
                        last_error: String::new(),
                        claimed_until_ms: 0,
                    }],
                    edge: vec![],
                };
                assert_eq!(s.audit_append(&b).unwrap(), 2);
                assert_eq!(s.outbox_len(), 1);
                // A stale batch changes nothing, its outbox item neither.
                let mut stale = b.clone();
                stale.outbox[0].id = [8; 16];
                assert!(s.audit_append(&stale).is_err());
                assert_eq!(s.outbox_len(), 1);
                s.put_checkpoint(2, "note\n").unwrap();
            }
            let s = place.open();
            assert_eq!(s.audit_size().unwrap(), 2);
            assert_eq!(
                s.audit_entries(0, 10).unwrap(),
                vec![(0, b"a".to_vec()), (1, [b"b".as_slice(), &[9; 16]].concat())]
            );
            assert_eq!(s.audit_node(1, 0).unwrap(), Some([3; 32]));
            assert_eq!(s.audit_node(1, 1).unwrap(), None);
            assert_eq!(s.audit_level(0, 2).unwrap(), vec![[1; 32], [2; 32]]);
            assert_eq!(s.audit_level(0, 1).unwrap(), vec![[1; 32]]);
            assert_eq!(s.audit_tile(0).unwrap(), Some([[1; 32], [2; 32]].concat()));
            assert_eq!(s.audit_tile(1).unwrap(), None);
            assert_eq!(s.audit_transfer(&[9; 16]).unwrap(), Some(1));
            assert_eq!(s.latest_checkpoint().unwrap(), Some((2, "note\n".to_string())));
            assert_eq!(s.checkpoint_at(2).unwrap().as_deref(), Some("note\n"));
            s.put_checkpoint(1, "one\n").unwrap();
            s.put_checkpoint(300, "three hundred\n").unwrap();
            assert!(s.update_checkpoint(1, |n| Some(format!("{n}cosigned\n"))).unwrap());
            let sizes = |v: Vec<(u64, String)>| v.into_iter().map(|(s, _)| s).collect::<Vec<_>>();
            assert_eq!(sizes(s.checkpoints_before(None, 10).unwrap()), vec![300, 2, 1], "newest first");
            assert_eq!(sizes(s.checkpoints_before(None, 2).unwrap()), vec![300, 2]);
            assert_eq!(s.checkpoints_before(Some(2), 10).unwrap(), vec![(1, "one\ncosigned\n".to_string())]);
            assert!(s.checkpoints_before(Some(1), 10).unwrap().is_empty());
            // The outbox item came with the leaves, durably.
            assert_eq!(s.outbox_items(10).unwrap().iter().map(|i| i.id).collect::<Vec<_>>(), vec![[7; 16]]);
            assert_eq!(s.outbox_len(), 1);
        }
    }

    #[test]
    fn the_size_commits_a_plain_batch_and_what_a_crash_left_beyond_it_is_invisible() {
        for place in crate::testing::places() {
            let s = place.open();
            let batch = |old_size, leaf: &[u8], id: Option<[u8; 16]>| AuditBatch {
                old_size,
                leaves: vec![leaf.to_vec()],
                transfers: id.map(|id| (id, old_size)).into_iter().collect(),
                ..Default::default()
            };
            assert_eq!(s.audit_append(&batch(0, &[[1u8; 4].as_slice(), &[5; 16]].concat(), Some([5; 16]))).unwrap(), 1);
            assert_eq!(s.audit_transfer(&[5; 16]).unwrap(), Some(0));
            // A batch cut short: its entry, node and transfer id written, its size not.
            s.audit.insert(entry_key(1), [b"lost".as_slice(), &[6; 16]].concat()).unwrap();
            s.audit.insert(node_key(4, 0), [3; 32]).unwrap();
            s.audit.insert(transfer_key(&[6; 16]), 1u64.to_be_bytes()).unwrap();
            assert_eq!(s.audit_size().unwrap(), 1);
            assert_eq!(s.audit_entry(1).unwrap(), None);
            assert_eq!(s.audit_entries(0, 10).unwrap().len(), 1);
            assert_eq!(s.audit_transfer(&[6; 16]).unwrap(), None);
            assert!(s.audit_level(4, 1 >> 4).unwrap().is_empty());
            // The next batch takes index 1: the stale id now names an entry of the log, which is
            // another leaf (the node checks the entry, see ftz-node's `logged_transfer`).
            assert_eq!(s.audit_append(&batch(1, b"next", None)).unwrap(), 2);
            assert_eq!(s.audit_entry(1).unwrap().as_deref(), Some(b"next".as_slice()));
            assert_eq!(s.audit_transfer(&[6; 16]).unwrap(), Some(1));
            // A batch from a stale size changes nothing readable.
            assert!(matches!(s.audit_append(&batch(1, b"stale", None)), Err(StoreError::Conflict { .. })));
            assert_eq!(s.audit_size().unwrap(), 2);
            assert_eq!(s.audit_entry(1).unwrap().as_deref(), Some(b"next".as_slice()));
        }
    }

    fn two_replicas() -> (ftz_pgtest::TempPostgres, Store, Store) {
        let pg = ftz_pgtest::TempPostgres::start().unwrap_or_else(|e| panic!("{e}"));
        pg.create_database("store").unwrap_or_else(|e| panic!("{e}"));
        let open = || Store::open_postgres(crate::PgOptions::new(pg.url("store"))).unwrap();
        let (a, b) = (open(), open());
        (pg, a, b)
    }

    /// Replicas of a node on one database append at once: one history, every batch planned
    /// from the size the previous one left, and a transfer that two replicas log at once
    /// logged once (each looks it up under the log's lock).
    #[test]
    fn replicas_appending_at_once_make_one_history_and_log_a_transfer_once() {
        let (_pg, a, b) = two_replicas();
        let shared = [0xAB; 16];
        let append = |s: &Store, leaf: Vec<u8>, id: Option<[u8; 16]>| {
            s.audit_append_with(|size| {
                if let Some(id) = id
                    && s.audit_transfer(&id)?.is_some()
                {
                    return Ok(AuditBatch { old_size: size, ..Default::default() });
                }
                Ok(AuditBatch {
                    old_size: size,
                    leaves: vec![leaf.clone()],
                    transfers: id.map(|id| (id, size)).into_iter().collect(),
                    ..Default::default()
                })
            })
            .unwrap()
        };
        std::thread::scope(|scope| {
            for (t, s) in [(0u8, &a), (1, &b), (2, &a), (3, &b)] {
                scope.spawn(move || {
                    for i in 0..40u8 {
                        append(s, vec![t, i], None);
                        if i % 10 == 0 {
                            append(s, vec![9, 9], Some(shared));
                        }
                    }
                });
            }
        });
        assert_eq!(a.audit_size().unwrap(), 161, "160 leaves and the shared transfer once");
        let entries = b.audit_entries(0, 1000).unwrap();
        let mut leaves: Vec<Vec<u8>> = entries.iter().map(|(_, l)| l.clone()).collect();
        leaves.sort();
        leaves.dedup();
        assert_eq!(leaves.len(), 161, "no leaf lost or written twice");
        let at = a.audit_transfer(&shared).unwrap().unwrap();
        assert_eq!(entries[at as usize].1, vec![9, 9]);
        // A batch from a stale size is refused, as on sled.
        let stale = AuditBatch { old_size: 3, leaves: vec![b"x".to_vec()], ..Default::default() };
        assert!(matches!(a.audit_append(&stale), Err(StoreError::Conflict { .. })));
    }

    /// Replicas sign checkpoints of one log: the latest only moves forward, a size signed twice
    /// keeps the first (which may carry cosignatures), and cosignatures added at once by two
    /// replicas are all kept.
    #[test]
    fn checkpoints_only_move_forward_and_keep_every_cosignature() {
        let (_pg, a, b) = two_replicas();
        assert!(a.advance_checkpoint(5, "five\n").unwrap());
        assert!(!b.advance_checkpoint(3, "three\n").unwrap(), "a slower replica's smaller checkpoint");
        assert_eq!(b.latest_checkpoint().unwrap(), Some((5, "five\n".to_string())));
        assert_eq!(b.checkpoint_at(3).unwrap().as_deref(), Some("three\n"), "kept in the history");
        assert!(b.update_checkpoint(5, |n| Some(format!("{n}cosigned\n"))).unwrap());
        assert!(!b.advance_checkpoint(5, "five again\n").unwrap());
        assert_eq!(a.checkpoint_at(5).unwrap().as_deref(), Some("five\ncosigned\n"), "the first one stands");
        std::thread::scope(|scope| {
            for (s, w) in [(&a, "w1"), (&b, "w2"), (&a, "w3"), (&b, "w4")] {
                scope.spawn(move || assert!(s.update_checkpoint(5, |n| Some(format!("{n}{w}\n"))).unwrap()));
            }
        });
        let (size, note) = a.latest_checkpoint().unwrap().unwrap();
        assert_eq!(size, 5);
        for w in ["cosigned", "w1", "w2", "w3", "w4"] {
            assert!(note.contains(w), "{w} kept: {note}");
        }
        assert_eq!(a.checkpoint_at(5).unwrap().as_deref(), Some(note.as_str()));
    }

    #[test]
    fn pending_intents_and_witness_state() {
        for place in crate::testing::places() {
            let s = place.open();
            s.put_pending_intent(&[1; 16], 100, b"i1").unwrap();
            s.put_pending_intent(&[2; 16], 300, b"i2").unwrap();
            assert_eq!(s.overdue_intents(200).unwrap(), vec![([1; 16], b"i1".to_vec())]);
            assert!(!s.claim_overdue_intent(&[2; 16], 200, 900).unwrap(), "not overdue");
            assert!(s.claim_overdue_intent(&[1; 16], 200, 250).unwrap());
            assert!(!s.claim_overdue_intent(&[1; 16], 200, 250).unwrap(), "claimed already");
            assert!(s.overdue_intents(200).unwrap().is_empty());
            assert_eq!(s.overdue_intents(250).unwrap(), vec![([1; 16], b"i1".to_vec())], "overdue again");
            assert!(s.take_pending_intent(&[1; 16]).unwrap());
            assert!(!s.take_pending_intent(&[1; 16]).unwrap());
            // With the record's new holder, together.
            s.put_pending_intent_for(&[3; 16], 400, b"i3", Some(("R1", "hainan"))).unwrap();
            s.put_pending_intent_for(&[4; 16], 500, b"i4", None).unwrap();
            assert_eq!(s.holders("R1").unwrap(), vec!["hainan"]);
            assert_eq!(
                s.overdue_intents(500).unwrap().into_iter().map(|(id, _)| id[0]).collect::<Vec<_>>(),
                vec![2, 3, 4]
            );
            assert!(s.witness_cas("o", None, "n1").unwrap());
            assert!(!s.witness_cas("o", None, "n2").unwrap());
            assert!(s.witness_cas("o", Some("n1"), "n2").unwrap());
            assert_eq!(s.witnessed("o").unwrap().as_deref(), Some("n2"));
            s.add_evidence(b"e", 10).unwrap();
            assert_eq!(s.evidence(10).unwrap(), vec![b"e".to_vec()]);
        }
    }

    #[test]
    fn evidence_is_kept_up_to_its_bound() {
        for place in crate::testing::places() {
            let store = place.open();
            for i in 0..5u8 {
                assert_eq!(store.add_evidence(&[i], 3).unwrap(), i < 3);
            }
            assert_eq!(store.evidence_count().unwrap(), 3);
            assert_eq!(store.evidence(2).unwrap(), vec![vec![0], vec![1]]);
        }
    }
}
