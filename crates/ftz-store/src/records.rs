//! Records: those issued here, those fetched from other zones, those delivered to this zone;
//! the zones holding each own record (to be told of its revocation); the lot index.

use crate::kv::EntriesExt as _;
use crate::{
    Store, StoreError,
    codec::{Reader, Writer},
};

const RECORD_V1: u8 = 1;
const RECORD_V2: u8 = 2;

/// How this node came to hold a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordSource {
    /// Issued by this zone.
    Own,
    /// Fetched from the issuing zone for a verification.
    Fetched,
    /// Pushed here by the issuing zone.
    Delivered,
}

impl RecordSource {
    fn code(self) -> u64 {
        match self {
            RecordSource::Own => 0,
            RecordSource::Fetched => 1,
            RecordSource::Delivered => 2,
        }
    }

    fn from_code(c: u64) -> Option<Self> {
        Some(match c {
            0 => RecordSource::Own,
            1 => RecordSource::Fetched,
            2 => RecordSource::Delivered,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RecordSource::Own => "own",
            RecordSource::Fetched => "fetched",
            RecordSource::Delivered => "delivered",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub source: RecordSource,
    /// The signed record, exactly as issued.
    pub envelope: Vec<u8>,
    /// Foreign records: the newest status statement from the issuing zone (empty: none).
    pub status: Vec<u8>,
    /// Own records: the signed revocation once revoked (empty: not revoked).
    pub revocation: Vec<u8>,
    /// When `status` (or `revocation`) last changed here.
    pub updated_at_ms: i64,
    /// Foreign records: when the provider's policy says this node must delete it (0: never,
    /// own records).
    pub retain_until_ms: i64,
}

/// What [`Store::insert_record`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted,
    /// The same envelope was already stored: nothing changed.
    Unchanged(StoredRecord),
    /// Another envelope is stored under this id: nothing changed.
    Conflict(StoredRecord),
}

fn encode(r: &StoredRecord) -> Vec<u8> {
    Writer::new(RECORD_V2)
        .u64(r.source.code())
        .i64(r.updated_at_ms)
        .bytes(&r.envelope)
        .bytes(&r.status)
        .bytes(&r.revocation)
        .i64(r.retain_until_ms)
        .finish()
}

/// The retention deadline of a stored record value (0: none).
pub(crate) fn retain_until(b: &[u8]) -> Result<i64, StoreError> {
    Ok(decode(b)?.retain_until_ms)
}

/// Reads version 2 records, and version 1 ones (before retention deadlines existed).
fn decode(b: &[u8]) -> Result<StoredRecord, StoreError> {
    let version = b.first().copied().unwrap_or(0);
    let mut r = Reader::new(b, "records", if version == RECORD_V1 { RECORD_V1 } else { RECORD_V2 })?;
    let source = RecordSource::from_code(r.u64()?)
        .ok_or_else(|| StoreError::Corrupt { what: "records", detail: "unknown source".into() })?;
    let mut out = StoredRecord {
        source,
        updated_at_ms: r.i64()?,
        envelope: r.bytes()?,
        status: r.bytes()?,
        revocation: r.bytes()?,
        retain_until_ms: 0,
    };
    if version == RECORD_V2 {
        out.retain_until_ms = r.i64()?;
    }
    r.end()?;
    Ok(out)
}

/// Keys join parts with 0x00, which no zone id, record id or lot id contains.
fn key(parts: &[&str]) -> Vec<u8> {
    parts.join("\0").into_bytes()
}

/// The key of a record's holder: the record, then the zone that holds it.
pub(crate) fn holder_key(record_id: &str, zone: &str) -> Vec<u8> {
    key(&[record_id, zone])
}

impl Store {
    pub fn get_record(&self, zone: &str, record_id: &str) -> Result<Option<StoredRecord>, StoreError> {
        self.records.get(key(&[zone, record_id]))?.map(|v| decode(&v)).transpose()
    }

    /// Stores a record if its id is free; if the same envelope is there, changes nothing; if
    /// another is, changes nothing and says so. With `lot`, indexes it under that lot. Durable on
    /// return.
    pub fn insert_record(
        &self,
        zone: &str,
        record_id: &str,
        rec: &StoredRecord,
        lot: Option<&str>,
    ) -> Result<InsertOutcome, StoreError> {
        let k = key(&[zone, record_id]);
        let value = encode(rec);
        let deadline = (rec.retain_until_ms > 0)
            .then(|| crate::data::deadline_key(rec.retain_until_ms, &String::from_utf8_lossy(&k)));
        if let Some(pg) = self.db.as_postgres() {
            return self.insert_record_pg(pg, &k, &value, lot.map(|l| key(&[l, zone, record_id])), deadline, lot);
        }
        if lot.is_none() {
            return self.insert_unindexed(&k, &value, deadline.as_deref());
        }
        // [records, lots, deadlines]
        let outcome = self.db.transaction(&[&self.records, &self.lots, &self.deadlines], |tx| {
            if let Some(existing) = tx.get(0, &k)? {
                let existing = decode(&existing)?;
                return Ok(if existing.envelope == rec.envelope {
                    InsertOutcome::Unchanged(existing)
                } else {
                    InsertOutcome::Conflict(existing)
                });
            }
            tx.insert(0, k.as_slice(), value.as_slice())?;
            if let Some(lot) = lot {
                tx.insert(1, &key(&[lot, zone, record_id]), &[])?;
            }
            if let Some(d) = &deadline {
                tx.insert(2, d.as_slice(), lot.unwrap_or("").as_bytes())?;
            }
            Ok(InsertOutcome::Inserted)
        })?;
        if outcome == InsertOutcome::Inserted {
            self.flush()?;
        }
        Ok(outcome)
    }

    /// [`Store::insert_record`] on PostgreSQL: one READ COMMITTED transaction (one commit) in
    /// which the record's primary key decides the outcome: the record inserted if absent, then
    /// its lot entry and its deadline (where absent); else what is there is compared.
    fn insert_record_pg(
        &self,
        pg: &crate::pg::Pg,
        k: &[u8],
        value: &[u8],
        lot_key: Option<Vec<u8>>,
        deadline: Option<Vec<u8>>,
        lot: Option<&str>,
    ) -> Result<InsertOutcome, StoreError> {
        let name = |t: &crate::kv::Tree| t.as_postgres().map(|t| t.name().to_string());
        let (Some(records), Some(lots), Some(deadlines)) =
            (name(&self.records), name(&self.lots), name(&self.deadlines))
        else {
            return Err(StoreError::Postgres("the record trees are not in PostgreSQL".into()));
        };
        let envelope = decode(value)?.envelope;
        pg.read_committed(None, |tx| {
            // A record held when the insert ran may be deleted (retention) before it is read.
            let mut attempts = 0;
            while !tx.insert_absent(&records, k, value)? {
                if let Some(existing) = tx.get(&records, k)? {
                    let existing = decode(&existing)?;
                    return Ok(if existing.envelope == envelope {
                        InsertOutcome::Unchanged(existing)
                    } else {
                        InsertOutcome::Conflict(existing)
                    });
                }
                attempts += 1;
                if attempts > 8 {
                    return Err(StoreError::Postgres("a record kept appearing and disappearing".into()));
                }
            }
            if let Some(lk) = &lot_key {
                tx.insert(&lots, lk, &[])?;
            }
            if let Some(d) = &deadline {
                tx.insert_absent(&deadlines, d, lot.unwrap_or("").as_bytes())?;
            }
            Ok(InsertOutcome::Inserted)
        })
    }

    /// [`Store::insert_record`] without a lot, on the path of every pulled transfer: no sled
    /// transaction, which in sled 0.34 writes its I/O buffer out twice even unflushed (measured:
    /// two `pwrite` and two `sync_file_range` per transaction), and was the costliest step of a
    /// pull. The deadline entry goes first, then the record by compare-and-swap, which decides
    /// the outcome. sled recovers a prefix of its operations, so a crash can leave a deadline
    /// entry without its record (retention drops it, see `delete_due`), never a record without
    /// its deadline. The winner writes its deadline entry again after the swap, since retention
    /// may have dropped it meanwhile as not yet any record's (or with the record it replaced). A
    /// loser takes back its deadline entry unless it is the winner's. Deadline entries are only
    /// ever added where absent: one holding a lot is never overwritten.
    fn insert_unindexed(&self, k: &[u8], value: &[u8], deadline: Option<&[u8]>) -> Result<InsertOutcome, StoreError> {
        let add_deadline = || -> Result<bool, StoreError> {
            Ok(match deadline {
                Some(d) => self.deadlines.compare_and_swap(d, None::<&[u8]>, Some(&[][..]))?.is_ok(),
                None => false,
            })
        };
        let added = add_deadline()?;
        match self.records.compare_and_swap(k, None::<&[u8]>, Some(value))? {
            Ok(()) => {
                add_deadline()?;
                self.flush()?;
                Ok(InsertOutcome::Inserted)
            }
            Err(cas) => {
                let existing = decode(cas.current.as_deref().unwrap_or_default())?;
                let ours = decode(value)?;
                if added
                    && existing.retain_until_ms != ours.retain_until_ms
                    && let Some(d) = deadline
                {
                    self.deadlines.remove(d)?;
                }
                Ok(if existing.envelope == ours.envelope {
                    InsertOutcome::Unchanged(existing)
                } else {
                    InsertOutcome::Conflict(existing)
                })
            }
        }
    }

    /// Atomically replaces a stored record by `change(old)`, if it returns `Some`. Returns the
    /// record as stored afterwards (`None`: no such record). Durable on return.
    pub fn update_record(
        &self,
        zone: &str,
        record_id: &str,
        change: impl Fn(&StoredRecord) -> Option<StoredRecord>,
    ) -> Result<Option<StoredRecord>, StoreError> {
        let k = key(&[zone, record_id]);
        loop {
            let Some(old_bytes) = self.records.get(&k)? else { return Ok(None) };
            let old = decode(&old_bytes)?;
            let Some(new) = change(&old) else { return Ok(Some(old)) };
            match self.records.compare_and_swap(&k, Some(old_bytes), Some(encode(&new)))? {
                Ok(()) => {
                    self.flush()?;
                    return Ok(Some(new));
                }
                Err(_) => continue, // changed under us: read again and reapply
            }
        }
    }

    /// (zone, record id) of every record indexed under `lot`, at most `limit`.
    pub fn records_for_lot(&self, lot: &str, limit: usize) -> Result<Vec<(String, String)>, StoreError> {
        let prefix = key(&[lot, ""]);
        let mut out = Vec::new();
        for item in self.lots.scan_prefix(&prefix).keys().take(limit) {
            let k = item?;
            let rest = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            if let Some((zone, id)) = rest.split_once('\0') {
                out.push((zone.to_string(), id.to_string()));
            }
        }
        Ok(out)
    }

    /// Remembers that `zone` holds own record `record_id`. Durable on return.
    pub fn add_holder(&self, record_id: &str, zone: &str) -> Result<(), StoreError> {
        if self.holders.insert(holder_key(record_id, zone), [])?.is_none() {
            self.flush()?;
        }
        Ok(())
    }

    pub fn holders(&self, record_id: &str) -> Result<Vec<String>, StoreError> {
        let prefix = key(&[record_id, ""]);
        self.holders
            .scan_prefix(&prefix)
            .keys()
            .map(|k| k.map(|k| String::from_utf8_lossy(&k[prefix.len()..]).into_owned()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(env: &[u8]) -> StoredRecord {
        StoredRecord {
            source: RecordSource::Own,
            envelope: env.to_vec(),
            status: vec![],
            revocation: vec![],
            updated_at_ms: 1,
            retain_until_ms: 0,
        }
    }

    #[test]
    fn insert_is_idempotent_and_refuses_conflicts() {
        for place in crate::testing::places() {
            let s = place.open();
            assert_eq!(s.insert_record("sh", "R1", &rec(b"a"), Some("LOT-1")).unwrap(), InsertOutcome::Inserted);
            assert!(matches!(
                s.insert_record("sh", "R1", &rec(b"a"), Some("LOT-1")).unwrap(),
                InsertOutcome::Unchanged(_)
            ));
            assert!(matches!(s.insert_record("sh", "R1", &rec(b"b"), None).unwrap(), InsertOutcome::Conflict(_)));
            assert_eq!(s.get_record("sh", "R1").unwrap().unwrap().envelope, b"a");
            assert_eq!(s.insert_record("hn", "R1", &rec(b"c"), Some("LOT-1")).unwrap(), InsertOutcome::Inserted);
            assert_eq!(s.insert_record("hn", "R2", &rec(b"d"), Some("LOT-10")).unwrap(), InsertOutcome::Inserted);
            let lot = s.records_for_lot("LOT-1", 10).unwrap();
            assert_eq!(lot, vec![("hn".to_string(), "R1".to_string()), ("sh".to_string(), "R1".to_string())]);
        }
    }

    #[test]
    fn unindexed_inserts_race_to_one_record_and_keep_only_its_deadline() {
        for place in crate::testing::places() {
            let s = place.open();
            let fetched =
                |env: &[u8], until| StoredRecord { source: RecordSource::Fetched, retain_until_ms: until, ..rec(env) };
            // Eight threads insert the same id: two contents, two retention deadlines.
            let outcomes: Vec<_> = (0..8)
                .map(|i| {
                    let s = s.clone();
                    std::thread::spawn(move || {
                        let r = fetched(if i % 2 == 0 { b"a" } else { b"b" }, 1_000 + (i % 4) * 100);
                        s.insert_record("sh", "R1", &r, None).unwrap()
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect();
            assert_eq!(outcomes.iter().filter(|o| **o == InsertOutcome::Inserted).count(), 1);
            let kept = s.get_record("sh", "R1").unwrap().unwrap();
            // Exactly the kept record's deadline remains: retention deletes it once, at its time.
            let deadlines: Vec<_> = s.deadlines.iter().keys().map(|k| k.unwrap().to_vec()).collect();
            assert_eq!(deadlines, vec![crate::data::deadline_key(kept.retain_until_ms, "sh\0R1")]);
            assert!(s.delete_due(kept.retain_until_ms - 1, 10).unwrap().is_empty());
            assert_eq!(s.delete_due(kept.retain_until_ms, 10).unwrap().len(), 1);
            assert_eq!(s.get_record("sh", "R1").unwrap(), None);
        }
    }

    #[test]
    fn a_deadline_left_without_its_record_is_dropped_without_a_deletion() {
        for place in crate::testing::places() {
            let s = place.open();
            // What a crash between the deadline entry and the record leaves.
            s.deadlines.insert(crate::data::deadline_key(500, "sh\0R9"), []).unwrap();
            // And a record whose deadline is later than a stale entry for it.
            let r = StoredRecord { source: RecordSource::Fetched, retain_until_ms: 900, ..rec(b"x") };
            s.insert_record("sh", "R8", &r, None).unwrap();
            s.deadlines.insert(crate::data::deadline_key(600, "sh\0R8"), []).unwrap();
            assert!(s.delete_due(700, 10).unwrap().is_empty());
            assert!(s.deletions().unwrap().is_empty());
            assert!(s.get_record("sh", "R8").unwrap().is_some());
            assert_eq!(s.delete_due(900, 10).unwrap().len(), 1);
        }
    }

    #[test]
    fn updates_apply_atomically_and_survive_reopen() {
        for place in crate::testing::places() {
            {
                let s = place.open();
                s.insert_record("sh", "R1", &rec(b"a"), None).unwrap();
                let after = s
                    .update_record("sh", "R1", |old| {
                        Some(StoredRecord { revocation: b"rev".to_vec(), updated_at_ms: 5, ..old.clone() })
                    })
                    .unwrap()
                    .unwrap();
                assert_eq!(after.revocation, b"rev");
                // A change that declines leaves the record as it is.
                assert_eq!(s.update_record("sh", "R1", |_| None).unwrap().unwrap().updated_at_ms, 5);
                assert_eq!(s.update_record("sh", "nope", |o| Some(o.clone())).unwrap(), None);
                s.add_holder("R1", "hainan").unwrap();
                s.add_holder("R1", "hainan").unwrap();
                s.add_holder("R1", "guangdong").unwrap();
                s.add_holder("R10", "macau").unwrap();
            }
            let s = place.open();
            assert_eq!(s.get_record("sh", "R1").unwrap().unwrap().revocation, b"rev");
            assert_eq!(s.holders("R1").unwrap(), vec!["guangdong", "hainan"]);
        }
    }

    /// Two replicas of a node on one database run retention at once: each due item is
    /// deleted once and its deletion recorded once (the audit log gets one entry per deletion).
    #[test]
    fn replicas_running_retention_at_once_delete_and_account_each_item_once() {
        let pg = ftz_pgtest::TempPostgres::start().unwrap_or_else(|e| panic!("{e}"));
        pg.create_database("store").unwrap();
        let open = || Store::open_postgres(crate::PgOptions::new(pg.url("store"))).unwrap();
        let (a, b) = (open(), open());
        let foreign = |deadline| StoredRecord { source: RecordSource::Fetched, retain_until_ms: deadline, ..rec(b"x") };
        for i in 0..40 {
            a.insert_record("gd", &format!("R{i}"), &foreign(100), Some("LOT-1")).unwrap();
            a.put_received(100, &format!("answer-{i}"), b"a").unwrap();
        }
        let (da, db) = std::thread::scope(|scope| {
            let ta = scope.spawn(|| a.delete_due(200, 1000).unwrap());
            let tb = scope.spawn(|| b.delete_due(200, 1000).unwrap());
            (ta.join().unwrap(), tb.join().unwrap())
        });
        let mut all: Vec<String> = da.iter().chain(&db).map(|d| d.what.clone()).collect();
        assert_eq!(all.len(), 80, "every item deleted by exactly one replica");
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 80);
        assert_eq!(a.deletions().unwrap().len(), 80, "each deletion recorded once");
        assert_eq!(b.received_count().unwrap(), 0);
    }

    #[test]
    fn retention_deletes_due_records_with_their_lot_entries_and_keeps_an_account() {
        for place in crate::testing::places() {
            let s = place.open();
            let foreign =
                |deadline| StoredRecord { source: RecordSource::Fetched, retain_until_ms: deadline, ..rec(b"x") };
            s.insert_record("gd", "R1", &foreign(100), Some("LOT-1")).unwrap();
            s.insert_record("gd", "R2", &foreign(300), None).unwrap();
            s.insert_record("sh", "OWN", &rec(b"own"), Some("LOT-1")).unwrap();
            s.put_received(150, "answer-1", b"a").unwrap();
            assert!(s.delete_due(99, 100).unwrap().is_empty());
            let gone = s.delete_due(200, 100).unwrap();
            assert_eq!(
                gone.iter().map(|d| d.what.as_str()).collect::<Vec<_>>(),
                vec!["record gd/R1", "received answer-1"]
            );
            assert!(s.get_record("gd", "R1").unwrap().is_none());
            assert!(s.get_record("gd", "R2").unwrap().is_some());
            assert_eq!(s.records_for_lot("LOT-1", 10).unwrap(), vec![("sh".to_string(), "OWN".to_string())]);
            assert_eq!(s.received_count().unwrap(), 0);
            assert_eq!(s.deletions().unwrap().len(), 2);
            assert_eq!(s.delete_due(1_000, 100).unwrap().len(), 1);
            assert!(s.get_record("sh", "OWN").unwrap().is_some(), "own records have no deadline");
        }
    }

    #[test]
    fn version_1_records_still_read() {
        let v1 = Writer::new(RECORD_V1).u64(1).i64(5).bytes(b"env").bytes(b"").bytes(b"").finish();
        let r = decode(&v1).unwrap();
        assert_eq!((r.source, r.envelope.as_slice(), r.retain_until_ms), (RecordSource::Fetched, &b"env"[..], 0));
    }
}
