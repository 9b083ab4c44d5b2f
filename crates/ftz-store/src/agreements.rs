//! Installed mutual-recognition agreements, by agreement id (one version each).

use crate::{Store, StoreError};

impl Store {
    /// Stores `envelope` as agreement `id`, but only if the stored one is still `expected`
    /// (compare-and-set). Durable on return.
    pub fn put_agreement(&self, id: &str, envelope: &[u8], expected: Option<&[u8]>) -> Result<(), StoreError> {
        match self.agreements.compare_and_swap(id.as_bytes(), expected, Some(envelope))? {
            Ok(()) => self.flush(),
            Err(_) => Err(StoreError::Conflict { expected: None, found: None }),
        }
    }

    pub fn agreement(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.agreements.get(id.as_bytes())?.map(|v| v.to_vec()))
    }

    /// Every installed agreement's envelope, by id.
    pub fn agreements(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.agreements
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((String::from_utf8_lossy(&k).into_owned(), v.to_vec()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn compare_and_set() {
        for place in crate::testing::places() {
            let s = place.open();
            s.put_agreement("a", b"v1", None).unwrap();
            assert!(s.put_agreement("a", b"v2", None).is_err());
            s.put_agreement("a", b"v2", Some(b"v1")).unwrap();
            assert_eq!(s.agreement("a").unwrap().unwrap(), b"v2");
            assert_eq!(s.agreements().unwrap(), vec![("a".to_string(), b"v2".to_vec())]);
        }
    }
}
