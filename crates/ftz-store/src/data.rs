//! The zone's industry dataset (one row per enterprise and period) and what this node received
//! from other zones' datasets, with the deadline by which it must be deleted.

use crate::{Store, StoreError};

impl Store {
    /// Stores rows keyed by (enterprise, period), replacing older rows with the same key, all or
    /// nothing, durably. Returns the number of rows held afterwards.
    pub fn put_rows(&self, rows: &[(String, String, Vec<u8>)]) -> Result<u64, StoreError> {
        let mut batch = crate::kv::Batch::default();
        for (enterprise, period, bytes) in rows {
            batch.insert(format!("{enterprise}\0{period}").into_bytes(), bytes.as_slice());
        }
        self.dataset.apply_batch(batch)?;
        self.flush()?;
        Ok(self.dataset.len()? as u64)
    }

    /// Every row's bytes, in key order.
    pub fn rows(&self) -> impl Iterator<Item = Result<Vec<u8>, StoreError>> + '_ {
        self.dataset.iter().map(|kv| kv.map(|(_, v)| v.to_vec()))
    }

    pub fn row_count(&self) -> Result<u64, StoreError> {
        Ok(self.dataset.len()? as u64)
    }

    /// Keeps received data (an answer or rows from another zone) until `retain_until_ms`.
    pub fn put_received(&self, retain_until_ms: i64, id: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.received.insert(deadline_key(retain_until_ms, id), bytes)?;
        self.flush()
    }

    pub fn received_count(&self) -> Result<u64, StoreError> {
        Ok(self.received.len()? as u64)
    }
}

/// Deadline (big-endian, so keys sort by time) then the item's name.
pub(crate) fn deadline_key(deadline_ms: i64, name: &str) -> Vec<u8> {
    let mut k = (deadline_ms.max(0) as u64).to_be_bytes().to_vec();
    k.extend_from_slice(name.as_bytes());
    k
}
