//! The outbox: messages to other zones that must arrive (receipts, revocation notices, policy
//! revocations, pushed deliveries), kept until the peer has taken them. Each item is written
//! (and flushed) before its first attempt, so a crash between "decided to send" and "sent" loses
//! nothing; delivery is at least once, and every message kind is idempotent at the receiver.
//!
//! Keys are the item's 16-byte id; for a delivery, its transfer id, so that the transfer's
//! pending intent can tell that the delivery is still being retried.

use std::sync::atomic::Ordering;

use crate::{
    Store, StoreError,
    codec::{Reader, Writer},
};

/// Records are written in version 2 (with the claim); version 1 (before claims) is read.
const VERSION: u8 = 2;

/// At most this many items wait in the outbox; beyond it new messages are refused, so a peer
/// that is gone for good cannot make the node's disk grow without bound.
pub const MAX_OUTBOX_ITEMS: usize = 100_000;

/// One message waiting to be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub id: [u8; 16],
    /// What it is (the node's own code: receipt, revocation notice, ...).
    pub kind: u8,
    pub to_zone: String,
    /// The encoded request to send.
    pub body: Vec<u8>,
    pub created_at_ms: i64,
    pub attempts: u64,
    pub next_attempt_ms: i64,
    pub last_error: String,
    /// An attempt is under way until then, by the replica that claimed it
    /// ([`Store::outbox_claim`]): no other takes the item before. A replica that dies holding
    /// it only delays it to then. 0: not claimed.
    pub claimed_until_ms: i64,
}

impl OutboxItem {
    pub(crate) fn encode(&self) -> Vec<u8> {
        Writer::new(VERSION)
            .u64(u64::from(self.kind))
            .bytes(self.to_zone.as_bytes())
            .bytes(&self.body)
            .i64(self.created_at_ms)
            .u64(self.attempts)
            .i64(self.next_attempt_ms)
            .bytes(self.last_error.as_bytes())
            .i64(self.claimed_until_ms)
            .finish()
    }

    fn decode(id: &[u8], v: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |d: &str| StoreError::Corrupt { what: "outbox item", detail: d.into() };
        let id: [u8; 16] = id.try_into().map_err(|_| corrupt("key is not 16 bytes"))?;
        let (mut r, version) = Reader::versioned(v, "outbox item", 1..=VERSION)?;
        let kind = u8::try_from(r.u64()?).map_err(|_| corrupt("kind"))?;
        let to_zone = String::from_utf8(r.bytes()?).map_err(|_| corrupt("zone is not UTF-8"))?;
        let item = OutboxItem {
            id,
            kind,
            to_zone,
            body: r.bytes()?,
            created_at_ms: r.i64()?,
            attempts: r.u64()?,
            next_attempt_ms: r.i64()?,
            last_error: String::from_utf8_lossy(&r.bytes()?).into_owned(),
            claimed_until_ms: if version >= 2 { r.i64()? } else { 0 },
        };
        r.end()?;
        Ok(item)
    }
}

impl Store {
    /// Adds an item (durable on return). An item with the same id is left as it is: putting a
    /// message twice queues it once. Returns false when the outbox is full.
    pub fn outbox_put(&self, item: &OutboxItem) -> Result<bool, StoreError> {
        if self.outbox.contains_key(item.id)? {
            return Ok(true);
        }
        if self.outbox_len() >= MAX_OUTBOX_ITEMS {
            return Ok(false);
        }
        if self.outbox.insert(item.id, item.encode())?.is_none() {
            self.outbox_count.fetch_add(1, Ordering::Relaxed);
        }
        self.flush()?;
        Ok(true)
    }

    /// Records a failed attempt: the new attempt count, when to try next, and why it failed;
    /// the claim is released. Nothing happens if the item was delivered (removed) meanwhile.
    pub fn outbox_retry_later(&self, id: &[u8; 16], next_attempt_ms: i64, error: &str) -> Result<(), StoreError> {
        self.outbox_update(id, |item| {
            item.attempts += 1;
            item.next_attempt_ms = next_attempt_ms;
            item.last_error = error.chars().take(512).collect();
            item.claimed_until_ms = 0;
        })
    }

    /// Changes a stored item with `change`, atomically; nothing happens if it is gone.
    fn outbox_update(&self, id: &[u8; 16], change: impl Fn(&mut OutboxItem)) -> Result<(), StoreError> {
        let updated = self.outbox.fetch_and_update(id, |old| {
            let mut item = OutboxItem::decode(id, old?).ok()?;
            change(&mut item);
            Some(item.encode())
        })?;
        if updated.is_some() {
            self.flush()?;
        }
        Ok(())
    }

    /// Claims the item for one attempt by this replica until `until_ms`, if it is due at
    /// `now_ms` and nobody's attempt is under way: the item as claimed, or `None` (delivered,
    /// not due, or claimed by another). A compare-and-swap: of the replicas that look at a due
    /// item at once, one attempts it (PostgreSQL's `FOR UPDATE SKIP LOCKED`, as a lease that
    /// outlives no crash by more than its length).
    pub fn outbox_claim(&self, id: &[u8; 16], now_ms: i64, until_ms: i64) -> Result<Option<OutboxItem>, StoreError> {
        let Some(current) = self.outbox.get(id)? else { return Ok(None) };
        let mut item = OutboxItem::decode(id, &current)?;
        if item.next_attempt_ms > now_ms || item.claimed_until_ms > now_ms {
            return Ok(None);
        }
        item.claimed_until_ms = until_ms;
        let won = self.outbox.compare_and_swap(id, Some(current), Some(item.encode()))?.is_ok();
        if won {
            self.flush()?;
        }
        Ok(won.then_some(item))
    }

    /// Releases the claim on an item (its attempt is over, and left it as it was). Nothing
    /// happens if it was delivered meanwhile.
    pub fn outbox_release(&self, id: &[u8; 16]) -> Result<(), StoreError> {
        self.outbox_update(id, |item| item.claimed_until_ms = 0)
    }

    /// Releases every claim: at the start of a node whose store no other process can hold
    /// (sled), claims are those of its previous run, whose attempts ended with it.
    pub fn outbox_release_all(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        for kv in self.outbox.iter() {
            let (k, v) = kv?;
            let mut item = OutboxItem::decode(&k, &v)?;
            if item.claimed_until_ms != 0 {
                item.claimed_until_ms = 0;
                if self.outbox.compare_and_swap(&k, Some(v), Some(item.encode()))?.is_ok() {
                    n += 1;
                }
            }
        }
        if n > 0 {
            self.flush()?;
        }
        Ok(n)
    }

    /// Counts the items again (PostgreSQL: replicas add and remove items of one outbox, and
    /// each counts only its own changes between two recounts).
    pub fn outbox_recount(&self) -> Result<usize, StoreError> {
        let n = self.outbox.len()?;
        self.outbox_count.store(n, Ordering::Relaxed);
        Ok(n)
    }

    /// Removes a delivered (or abandoned) item; true if it was there.
    pub fn outbox_remove(&self, id: &[u8; 16]) -> Result<bool, StoreError> {
        let was = self.outbox.remove(id)?.is_some();
        if was {
            self.outbox_count.fetch_sub(1, Ordering::Relaxed);
            self.flush()?;
        }
        Ok(was)
    }

    /// Makes every item for `zone` due at `now_ms` (the zone is reachable again). Returns how
    /// many were waiting.
    pub fn outbox_make_due(&self, zone: &str, now_ms: i64) -> Result<usize, StoreError> {
        let mut n = 0;
        for kv in self.outbox.iter() {
            let (k, v) = kv?;
            let item = OutboxItem::decode(&k, &v)?;
            // An item whose attempt is under way is left to it.
            if item.to_zone == zone && item.next_attempt_ms > now_ms && item.claimed_until_ms <= now_ms {
                let mut due = item;
                due.next_attempt_ms = now_ms;
                // Only if unchanged meanwhile (delivered, or attempted again).
                if self.outbox.compare_and_swap(&k, Some(v), Some(due.encode()))?.is_ok() {
                    n += 1;
                }
            }
        }
        if n > 0 {
            self.flush()?;
        }
        Ok(n)
    }

    pub fn outbox_contains(&self, id: &[u8; 16]) -> Result<bool, StoreError> {
        self.outbox.contains_key(id)
    }

    /// Every item, in key order (at most `limit`).
    pub fn outbox_items(&self, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        self.outbox.iter().take(limit).map(|kv| kv.and_then(|(k, v)| OutboxItem::decode(&k, &v))).collect()
    }

    /// Counts items written by the audit log's transaction (see `audit_append`).
    pub(crate) fn outbox_added(&self, n: usize) {
        self.outbox_count.fetch_add(n, Ordering::Relaxed);
    }

    pub fn outbox_len(&self) -> usize {
        self.outbox_count.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: u8) -> OutboxItem {
        OutboxItem {
            id: [n; 16],
            kind: 1,
            to_zone: "hainan".into(),
            body: vec![n; 40],
            created_at_ms: 5,
            attempts: 0,
            next_attempt_ms: 5,
            last_error: String::new(),
            claimed_until_ms: 0,
        }
    }

    #[test]
    fn items_survive_a_reopen_are_queued_once_and_count_their_attempts() {
        for place in crate::testing::places() {
            {
                let s = place.open();
                assert!(s.outbox_put(&item(1)).unwrap());
                assert!(s.outbox_put(&item(2)).unwrap());
                let mut changed = item(1);
                changed.body = vec![9];
                assert!(s.outbox_put(&changed).unwrap(), "a second put of the same id is accepted");
                s.outbox_retry_later(&[1; 16], 99, "zone hainan unreachable").unwrap();
            }
            let s = place.open();
            assert_eq!(s.outbox_len(), 2, "counted at open");
            let items = s.outbox_items(10).unwrap();
            assert_eq!(items.len(), 2);
            assert_eq!(items[0].body, vec![1; 40], "the first put stands");
            assert_eq!((items[0].attempts, items[0].next_attempt_ms), (1, 99));
            assert_eq!(items[0].last_error, "zone hainan unreachable");
            assert!(s.outbox_remove(&[1; 16]).unwrap());
            assert!(!s.outbox_remove(&[1; 16]).unwrap());
            s.outbox_retry_later(&[1; 16], 100, "gone").unwrap();
            assert_eq!(s.outbox_items(10).unwrap(), vec![item(2)]);
            assert!(s.outbox_contains(&[2; 16]).unwrap() && !s.outbox_contains(&[1; 16]).unwrap());
            assert_eq!(s.outbox_len(), 1);
            // A zone back: its items are due now; others are left alone.
            let mut other = item(3);
            other.to_zone = "guangdong".into();
            other.next_attempt_ms = 500;
            s.outbox_put(&other).unwrap();
            s.outbox_retry_later(&[2; 16], 900, "down").unwrap();
            assert_eq!(s.outbox_make_due("hainan", 10).unwrap(), 1);
            let items = s.outbox_items(10).unwrap();
            assert_eq!((items[0].next_attempt_ms, items[1].next_attempt_ms), (10, 500));
        }
    }

    #[test]
    fn a_due_item_is_claimed_by_one_attempt_at_a_time_until_its_lease_ends() {
        for place in crate::testing::places() {
            let s = place.open();
            s.outbox_put(&item(1)).unwrap();
            assert!(s.outbox_claim(&[1; 16], 4, 100).unwrap().is_none(), "not due yet");
            let claimed = s.outbox_claim(&[1; 16], 10, 100).unwrap().unwrap();
            assert_eq!(claimed.claimed_until_ms, 100);
            assert!(s.outbox_claim(&[1; 16], 50, 200).unwrap().is_none(), "claimed by another");
            // The zone is back: an item whose attempt is under way is left to it.
            assert_eq!(s.outbox_make_due("hainan", 50).unwrap(), 0);
            // Its holder died: after the lease, another replica takes it.
            assert_eq!(s.outbox_claim(&[1; 16], 101, 300).unwrap().unwrap().claimed_until_ms, 300);
            // A failed attempt releases it; so does a release, and a restart of a sled node.
            s.outbox_retry_later(&[1; 16], 120, "down").unwrap();
            assert_eq!(s.outbox_items(1).unwrap()[0].claimed_until_ms, 0);
            s.outbox_claim(&[1; 16], 130, 400).unwrap().unwrap();
            s.outbox_release(&[1; 16]).unwrap();
            assert!(s.outbox_claim(&[1; 16], 131, 400).unwrap().is_some());
            assert_eq!(s.outbox_release_all().unwrap(), 1);
            assert_eq!(s.outbox_items(1).unwrap()[0].claimed_until_ms, 0);
            assert!(s.outbox_claim(&[2; 16], 10, 100).unwrap().is_none(), "no such item");
        }
    }

    #[test]
    fn an_item_written_before_claims_existed_is_read_as_unclaimed() {
        let mut it = item(4);
        it.claimed_until_ms = 77;
        let v2 = it.encode();
        // Version 1: the same fields without the claim.
        let mut v1 = v2[..v2.len() - 8].to_vec();
        v1[0] = 1;
        let read = OutboxItem::decode(&[4; 16], &v1).unwrap();
        assert_eq!(read, OutboxItem { claimed_until_ms: 0, ..it.clone() });
        assert_eq!(OutboxItem::decode(&[4; 16], &v2).unwrap(), it);
        assert!(OutboxItem::decode(&[4; 16], &[3]).is_err(), "an unknown version");
    }
}
