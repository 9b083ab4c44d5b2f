//! Exchange policies (latest version per id), their revocations, this zone's export negative
//! list, privacy budgets, and the pseudonym secret.

use crate::{Store, StoreError};

const NEGATIVE_LIST: &[u8] = b"negative_list";

/// A privacy budget as kept: policy id, consumer zone, and its (slice, milli-epsilon) pairs.
pub type StoredBudget = (String, String, Vec<(u64, u64)>);
const PSEUDONYM_SECRET: &[u8] = b"pseudonym_secret";

impl Store {
    /// Stores `envelope` as policy `id` if the stored one is still `expected` (compare-and-set).
    pub fn put_policy(&self, id: &str, envelope: &[u8], expected: Option<&[u8]>) -> Result<(), StoreError> {
        match self.policies.compare_and_swap(id.as_bytes(), expected, Some(envelope))? {
            Ok(()) => self.flush(),
            Err(_) => Err(StoreError::Conflict { expected: None, found: None }),
        }
    }

    pub fn policies(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.policies.iter().map(|kv| kv.map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v.to_vec()))).collect()
    }

    /// Records a revocation of policy `id` up to `version` (keeping the highest), with its
    /// signed envelope. Returns false if an equal or higher revocation was there already.
    pub fn put_policy_revocation(&self, id: &str, version: u64, envelope: &[u8]) -> Result<bool, StoreError> {
        let mut value = version.to_be_bytes().to_vec();
        value.extend_from_slice(envelope);
        loop {
            let old = self.policy_revocations.get(id.as_bytes())?;
            if let Some(o) = &old
                && o.len() >= 8
                && u64::from_be_bytes(o[..8].try_into().unwrap_or([0; 8])) >= version
            {
                return Ok(false);
            }
            if self.policy_revocations.compare_and_swap(id.as_bytes(), old, Some(value.as_slice()))?.is_ok() {
                self.flush()?;
                return Ok(true);
            }
        }
    }

    /// (policy id, revoked up to version, revocation envelope).
    pub fn policy_revocations(&self) -> Result<Vec<(String, u64, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.policy_revocations.iter() {
            let (k, v) = kv?;
            if v.len() < 8 {
                return Err(StoreError::Corrupt { what: "policy_revocations", detail: "short value".into() });
            }
            let version = u64::from_be_bytes(v[..8].try_into().unwrap_or([0; 8]));
            out.push((String::from_utf8_lossy(&k).into_owned(), version, v[8..].to_vec()));
        }
        Ok(out)
    }

    /// A small value in the store's meta tree.
    pub fn meta_value(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(format!("x/{key}"))?.map(|v| v.to_vec()))
    }

    pub fn set_meta_value(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.meta.insert(format!("x/{key}"), value)?;
        self.flush()
    }

    /// Replaces a meta value only if it still is `expected` (`None`: absent): an install
    /// decided against what another replica of the node replaced meanwhile is refused
    /// (`StoreError::Conflict`), never written over the newer one. Durable on return.
    pub fn replace_meta_value(&self, key: &str, expected: Option<&[u8]>, value: &[u8]) -> Result<(), StoreError> {
        self.replace(&format!("x/{key}").into_bytes(), expected, value)
    }

    /// [`Store::replace_meta_value`] for the export negative list.
    pub fn replace_negative_list(&self, expected: Option<&[u8]>, envelope: &[u8]) -> Result<(), StoreError> {
        self.replace(NEGATIVE_LIST, expected, envelope)
    }

    fn replace(&self, key: &[u8], expected: Option<&[u8]>, value: &[u8]) -> Result<(), StoreError> {
        match self.meta.compare_and_swap(key, expected, Some(value))? {
            Ok(()) => self.flush(),
            Err(_) => Err(StoreError::Conflict { expected: None, found: None }),
        }
    }

    pub fn put_negative_list(&self, envelope: &[u8]) -> Result<(), StoreError> {
        self.meta.insert(NEGATIVE_LIST, envelope)?;
        self.flush()
    }

    pub fn negative_list(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(NEGATIVE_LIST)?.map(|v| v.to_vec()))
    }

    /// The node's secret for pseudonyms: made once with `generate`, then always the same.
    pub fn pseudonym_secret(&self, generate: impl FnOnce() -> [u8; 32]) -> Result<[u8; 32], StoreError> {
        if let Some(v) = self.meta.get(PSEUDONYM_SECRET)? {
            return v
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt { what: "pseudonym_secret", detail: "not 32 bytes".into() });
        }
        let fresh = generate();
        match self.meta.compare_and_swap(PSEUDONYM_SECRET, None as Option<&[u8]>, Some(&fresh[..]))? {
            Ok(()) => {
                self.flush()?;
                Ok(fresh)
            }
            // Another caller won the race: use theirs.
            Err(e) => e
                .current
                .as_deref()
                .and_then(|c| c.try_into().ok())
                .ok_or(StoreError::Corrupt { what: "pseudonym_secret", detail: "not 32 bytes".into() }),
        }
    }

    /// One key per (policy, consumer): the budget is a sliding window of slices, not one counter
    /// per calendar period (which let a consumer spend a period's budget just before its end and
    /// again just after). The `w` prefix keeps it apart from the per-period counters of store
    /// versions before it (which are ignored).
    fn budget_key(policy: &str, consumer: &str) -> Vec<u8> {
        format!("w\0{policy}\0{consumer}").into_bytes()
    }

    /// The (slice, milli-epsilon) pairs of a budget value.
    fn budget_slices(v: Option<&[u8]>) -> Result<Vec<(u64, u64)>, StoreError> {
        let v = v.unwrap_or_default();
        if !v.len().is_multiple_of(16) {
            return Err(StoreError::Corrupt { what: "budget", detail: format!("{} bytes", v.len()) });
        }
        Ok(v.chunks_exact(16)
            .map(|c| {
                let (a, b) = c.split_at(8);
                (
                    u64::from_be_bytes(a.try_into().unwrap_or_default()),
                    u64::from_be_bytes(b.try_into().unwrap_or_default()),
                )
            })
            .collect())
    }

    /// Whether `s` is one of the `span` slices up to and including `current`.
    fn in_window(s: u64, current: u64, span: u64) -> bool {
        s <= current && current - s < span
    }

    /// Milli-epsilon spent by `consumer` under `policy` in the `span` slices up to `slice`.
    pub fn budget_spent(&self, policy: &str, consumer: &str, slice: u64, span: u64) -> Result<u64, StoreError> {
        let old = self.budgets.get(Self::budget_key(policy, consumer))?;
        Ok(Self::budget_slices(old.as_deref())?
            .into_iter()
            .filter(|(s, _)| Self::in_window(*s, slice, span))
            .fold(0u64, |a, (_, v)| a.saturating_add(v)))
    }

    /// Every budget kept, at most `limit`, in key order: (policy, consumer, its (slice,
    /// milli-epsilon) pairs). The pairs may include slices that have left the window since the
    /// last charge (they are dropped at the next): the caller counts only those in its window.
    /// Keys of store versions before the sliding window (no `w` prefix) are skipped.
    pub fn budgets(&self, limit: usize) -> Result<Vec<StoredBudget>, StoreError> {
        let mut out = Vec::new();
        for kv in self.budgets.scan_prefix(b"w\0") {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv?;
            let key = String::from_utf8_lossy(&k[2..]).into_owned();
            let Some((policy, consumer)) = key.split_once('\0') else {
                return Err(StoreError::Corrupt { what: "budget", detail: "key without a consumer".into() });
            };
            out.push((policy.to_string(), consumer.to_string(), Self::budget_slices(Some(&v))?));
        }
        Ok(out)
    }

    /// Charges `cost` milli-epsilon to slice `slice` if what was spent in the `span` slices up to
    /// it stays within `limit`, atomically and durably; slices out of the window are dropped, so
    /// the value holds at most `span` pairs. Returns the total spent in the window after the
    /// charge, or `Err(spent)` if it would exceed the limit.
    pub fn charge_budget(
        &self,
        policy: &str,
        consumer: &str,
        slice: u64,
        span: u64,
        cost: u64,
        limit: u64,
    ) -> Result<Result<u64, u64>, StoreError> {
        let key = Self::budget_key(policy, consumer);
        loop {
            let old = self.budgets.get(&key)?;
            let mut slices = Self::budget_slices(old.as_deref())?;
            slices.retain(|(s, _)| Self::in_window(*s, slice, span));
            let spent = slices.iter().fold(0u64, |a, (_, v)| a.saturating_add(*v));
            let after = spent.saturating_add(cost);
            if after > limit {
                return Ok(Err(spent));
            }
            match slices.iter_mut().find(|(s, _)| *s == slice) {
                Some((_, v)) => *v = v.saturating_add(cost),
                None => slices.push((slice, cost)),
            }
            let new: Vec<u8> =
                slices.iter().flat_map(|(s, v)| s.to_be_bytes().into_iter().chain(v.to_be_bytes())).collect();
            if self.budgets.compare_and_swap(&key, old, Some(new))?.is_ok() {
                self.flush()?;
                return Ok(Ok(after));
            }
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn budgets_charge_atomically_within_their_limit() {
        for place in crate::testing::places() {
            let s = place.open();
            // A window of 3 slices.
            assert_eq!(s.charge_budget("p", "hainan", 7, 3, 500, 1000).unwrap(), Ok(500));
            assert_eq!(s.charge_budget("p", "hainan", 8, 3, 500, 1000).unwrap(), Ok(1000));
            assert_eq!(s.charge_budget("p", "hainan", 8, 3, 1, 1000).unwrap(), Err(1000));
            assert_eq!(s.charge_budget("p", "hainan", 9, 3, 1, 1000).unwrap(), Err(1000), "slice 7 still counts");
            assert_eq!(
                s.charge_budget("p", "hainan", 10, 3, 500, 1000).unwrap(),
                Ok(1000),
                "slice 7 has left the window"
            );
            assert_eq!(s.charge_budget("p", "guangdong", 7, 3, 500, 1000).unwrap(), Ok(500), "per consumer");
            assert_eq!(s.budget_spent("p", "hainan", 10, 3).unwrap(), 1000);
            assert_eq!(s.budget_spent("p", "hainan", 13, 3).unwrap(), 0);
            // The value keeps only the slices in the window.
            assert_eq!(s.budgets.get(b"w\0p\0hainan").unwrap().unwrap().len(), 2 * 16);
            // Listed per (policy, consumer), bounded; counters of old store versions are skipped.
            s.budgets.insert(b"old-period-counter", [0; 8]).unwrap();
            let all = s.budgets(10).unwrap();
            assert_eq!(
                all,
                vec![
                    ("p".to_string(), "guangdong".to_string(), vec![(7, 500)]),
                    ("p".to_string(), "hainan".to_string(), vec![(8, 500), (10, 500)]),
                ]
            );
            assert_eq!(s.budgets(1).unwrap().len(), 1);
        }
    }

    /// An install decided against a list another replica replaced meanwhile is refused and
    /// writes nothing.
    #[test]
    fn a_list_is_replaced_only_over_what_the_install_read() {
        for place in crate::testing::places() {
            let s = place.open();
            s.replace_meta_value("l", None, b"v1").unwrap();
            assert!(matches!(s.replace_meta_value("l", None, b"stale"), Err(crate::StoreError::Conflict { .. })));
            s.replace_meta_value("l", Some(b"v1"), b"v2").unwrap();
            assert!(matches!(s.replace_meta_value("l", Some(b"v1"), b"v3"), Err(crate::StoreError::Conflict { .. })));
            assert_eq!(s.meta_value("l").unwrap().as_deref(), Some(b"v2".as_slice()));
            s.replace_negative_list(None, b"n1").unwrap();
            assert!(s.replace_negative_list(None, b"n0").is_err());
            assert_eq!(s.negative_list().unwrap().as_deref(), Some(b"n1".as_slice()));
        }
    }

    #[test]
    fn revocations_keep_the_highest_version_and_secrets_stay() {
        for place in crate::testing::places() {
            let s = place.open();
            assert!(s.put_policy_revocation("p", 2, b"r2").unwrap());
            assert!(!s.put_policy_revocation("p", 1, b"r1").unwrap());
            assert_eq!(s.policy_revocations().unwrap(), vec![("p".into(), 2, b"r2".to_vec())]);
            let a = s.pseudonym_secret(|| [1; 32]).unwrap();
            let b = s.pseudonym_secret(|| [2; 32]).unwrap();
            assert_eq!((a, b), ([1; 32], [1; 32]));
        }
    }
}
