//! Deleting what this node received from other zones when the provider's retention is up, and
//! keeping a durable account of each deletion for the audit log.

use crate::kv::EntriesExt as _;
use crate::{Store, StoreError, data::deadline_key};

/// One deletion, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub deleted_at_ms: i64,
    /// `record <zone>/<id>` or `received <id>`.
    pub what: String,
    pub deadline_ms: i64,
}

impl Store {
    /// Deletes every record and received item whose deadline is at or before `now`, each in one
    /// transaction with its deletion entry; durable on return. Returns what was deleted.
    pub fn delete_due(&self, now_ms: i64, max: usize) -> Result<Vec<Deletion>, StoreError> {
        let mut done = Vec::new();
        let bound = deadline_key(now_ms, "\u{10FFFF}");
        for kv in self.deadlines.range(..bound).take(max) {
            let (k, lot) = kv?;
            let deadline = i64::try_from(u64::from_be_bytes(k[..8].try_into().unwrap_or([0; 8]))).unwrap_or(0);
            let name = String::from_utf8_lossy(&k[8..]).into_owned();
            let d = Deletion {
                deleted_at_ms: now_ms,
                what: format!("record {}", name.replacen('\0', "/", 1)),
                deadline_ms: deadline,
            };
            let record_key = name.clone().into_bytes();
            // An entry that is not the record's own (left by a crash before the record was
            // written, or by an insert that lost a race) goes without a deletion: no record of
            // that retention was ever kept.
            let own = match self.records.get(&record_key)? {
                Some(v) => crate::records::retain_until(&v)? == deadline,
                None => false,
            };
            if !own {
                self.deadlines.remove(k.as_ref())?;
                continue;
            }
            // The deadline entry's value is the record's lot (empty: none).
            let lot_keys: Vec<Vec<u8>> =
                if lot.is_empty() { Vec::new() } else { vec![[lot.as_ref(), b"\0", name.as_bytes()].concat()] };
            let entry = encode_deletion(&d);
            let seq = self.db.generate_id()?;
            // [deadlines, records, lots, deletions]
            // Another replica of the node may be deleting it too: the one whose transaction
            // removes the deadline deletes it and records the deletion.
            let deleted =
                self.db.transaction(&[&self.deadlines, &self.records, &self.lots, &self.deletions], |tx| {
                    if tx.remove(0, k.as_ref())?.is_none() {
                        return Ok(false);
                    }
                    tx.remove(1, record_key.as_slice())?;
                    for lk in &lot_keys {
                        tx.remove(2, lk.as_slice())?;
                    }
                    tx.insert(3, &seq.to_be_bytes(), entry.as_slice())?;
                    Ok(true)
                })?;
            if deleted {
                done.push(d);
            }
        }
        let bound = deadline_key(now_ms, "\u{10FFFF}");
        for kv in self.received.range(..bound).take(max.saturating_sub(done.len())) {
            let (k, _) = kv?;
            let deadline = i64::try_from(u64::from_be_bytes(k[..8].try_into().unwrap_or([0; 8]))).unwrap_or(0);
            let d = Deletion {
                deleted_at_ms: now_ms,
                what: format!("received {}", String::from_utf8_lossy(&k[8..])),
                deadline_ms: deadline,
            };
            let entry = encode_deletion(&d);
            let seq = self.db.generate_id()?;
            // [received, deletions]
            let deleted = self.db.transaction(&[&self.received, &self.deletions], |tx| {
                if tx.remove(0, k.as_ref())?.is_none() {
                    return Ok(false);
                }
                tx.insert(1, &seq.to_be_bytes(), entry.as_slice())?;
                Ok(true)
            })?;
            if deleted {
                done.push(d);
            }
        }
        if !done.is_empty() {
            self.flush()?;
        }
        Ok(done)
    }

    /// Every recorded deletion, oldest first.
    pub fn deletions(&self) -> Result<Vec<Deletion>, StoreError> {
        self.deletions.iter().values().map(|v| decode_deletion(&v?)).collect()
    }
}

fn encode_deletion(d: &Deletion) -> Vec<u8> {
    crate::codec::Writer::new(1).i64(d.deleted_at_ms).i64(d.deadline_ms).bytes(d.what.as_bytes()).finish()
}

fn decode_deletion(b: &[u8]) -> Result<Deletion, StoreError> {
    let mut r = crate::codec::Reader::new(b, "deletions", 1)?;
    let d = Deletion {
        deleted_at_ms: r.i64()?,
        deadline_ms: r.i64()?,
        what: String::from_utf8_lossy(&r.bytes()?).into_owned(),
    };
    r.end()?;
    Ok(d)
}
