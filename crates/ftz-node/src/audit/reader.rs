//! Reading the log as it is durable. Whatever the node serves or acts on (entries, proofs,
//! sizes, "is this transfer logged") goes through a [`LogReader`], which is fixed to the
//! durable size when it is made: the store may already hold a batch whose flush is under way,
//! and no reader sees it (tessera's rule: readers never see past what is durable).

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use ftz_audit::{
    leaf::Leaf,
    merkle::{Hash, consistency_proof, inclusion_proof},
};
use ftz_core::Reason;
use ftz_proto::TransferIntent;
use ftz_store::{Store, StoreError};
use prost::Message;

use super::tree::{TreeReader, UpperLevels};
use crate::error::ApiError;

/// The index of the transfer leaf with this id in the store's log, if logged. The store's
/// transfer index may name an entry that another leaf took after a crash cut a batch short, even
/// one that carries the same intent (an unacknowledged declaration): only a transfer leaf whose
/// intent has this id counts. This looks at what is written, durable or not: the appender's
/// view (a [`LogReader`] clamps it to the durable size).
pub(crate) fn logged_transfer(store: &Store, id: &[u8; 16]) -> Result<Option<u64>, StoreError> {
    let Some(index) = store.audit_transfer(id)? else { return Ok(None) };
    let Some(bytes) = store.audit_entry(index)? else { return Ok(None) };
    Ok(is_transfer_of(&bytes, id).then_some(index))
}

/// [`logged_transfer`] of several ids in a log of `size` entries, in two reads (the
/// appender's, for a whole batch under the log's lock, which read the size there): the ids
/// logged, with their index.
pub(crate) fn logged_transfers(
    store: &Store,
    ids: &[[u8; 16]],
    size: u64,
) -> Result<HashMap<[u8; 16], u64>, StoreError> {
    let named = store.audit_transfers(ids, size)?;
    let indexes: Vec<u64> = named.iter().map(|(_, i)| *i).collect();
    let entries: HashMap<u64, Vec<u8>> = store.audit_entries_at(&indexes, size)?.into_iter().collect();
    Ok(named.into_iter().filter(|(id, i)| entries.get(i).is_some_and(|b| is_transfer_of(b, id))).collect())
}

/// Whether `leaf` is the transfer leaf of the intent with this id.
fn is_transfer_of(leaf: &[u8], id: &[u8; 16]) -> bool {
    match Leaf::decode(leaf) {
        Ok(Leaf::Transfer { intent, .. }) => {
            TransferIntent::decode(intent.payload.as_slice()).is_ok_and(|i| i.transfer_id.as_slice() == id)
        }
        _ => false,
    }
}

pub(crate) struct LogReader<'a> {
    store: &'a Store,
    tree: TreeReader<'a>,
    size: u64,
}

impl<'a> LogReader<'a> {
    pub(super) fn new(store: &'a Store, cache: &'a Arc<RwLock<UpperLevels>>, size: u64) -> Self {
        Self { store, tree: TreeReader::new(store, cache), size }
    }

    /// The durable size this reader is fixed to.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The leaf at `index`, if the durable log has one.
    pub(crate) fn entry(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        if index >= self.size {
            return Ok(None);
        }
        self.store.audit_entry(index)
    }

    /// Up to `limit` leaves from `from` on, within the durable log.
    pub(crate) fn entries(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let room = usize::try_from(self.size.saturating_sub(from)).unwrap_or(usize::MAX);
        self.store.audit_entries(from, limit.min(room))
    }

    /// The index of this transfer's leaf, if it is in the durable log.
    pub(crate) fn transfer(&self, id: &[u8; 16]) -> Result<Option<u64>, StoreError> {
        Ok(logged_transfer(self.store, id)?.filter(|i| *i < self.size))
    }

    fn within(&self, size: u64) -> Result<(), ApiError> {
        if size > self.size {
            return Err(ApiError::new(Reason::EntryNotFound, format!("the log has {} entries, not {size}", self.size)));
        }
        Ok(())
    }

    /// The inclusion proof of `index` in the tree of `size` leaves.
    pub(crate) fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ApiError> {
        self.within(size)?;
        inclusion_proof(&self.tree, index, size)?.map_err(|e| ApiError::invalid(e.to_string()))
    }

    /// The consistency proof from the tree of `old` leaves to that of `new`.
    pub(crate) fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, ApiError> {
        self.within(new)?;
        consistency_proof(&self.tree, old, new)?.map_err(|e| ApiError::invalid(e.to_string()))
    }
}
