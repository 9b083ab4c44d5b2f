//! The installed federation registry and the history of every install.

use crate::kv::EntriesExt as _;
use crate::{
    Store, StoreError,
    codec::{Reader, Writer},
};

const CURRENT: &[u8] = b"current";
const RECORD_V1: u8 = 1;

/// The registry the node holds: the exact signed envelope bytes as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRegistry {
    pub version: u64,
    pub envelope: Vec<u8>,
    pub installed_at_ms: i64,
    /// Key ids (16 bytes each) whose signatures counted towards the quorum.
    pub counted_signers: Vec<Vec<u8>>,
}

/// One line of the install history (the envelope itself stays out of the history index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryInstall {
    pub version: u64,
    pub installed_at_ms: i64,
    pub envelope_digest: Vec<u8>,
    pub counted_signers: Vec<Vec<u8>>,
}

fn encode_current(r: &StoredRegistry) -> Vec<u8> {
    Writer::new(RECORD_V1).u64(r.version).i64(r.installed_at_ms).list(&r.counted_signers).bytes(&r.envelope).finish()
}

fn decode_current(b: &[u8]) -> Result<StoredRegistry, StoreError> {
    let mut r = Reader::new(b, "registry/current", RECORD_V1)?;
    let out = StoredRegistry {
        version: r.u64()?,
        installed_at_ms: r.i64()?,
        counted_signers: r.list()?,
        envelope: r.bytes()?,
    };
    r.end()?;
    Ok(out)
}

fn encode_install(i: &RegistryInstall) -> Vec<u8> {
    Writer::new(RECORD_V1)
        .u64(i.version)
        .i64(i.installed_at_ms)
        .bytes(&i.envelope_digest)
        .list(&i.counted_signers)
        .finish()
}

fn decode_install(b: &[u8]) -> Result<RegistryInstall, StoreError> {
    let mut r = Reader::new(b, "registry_history", RECORD_V1)?;
    let out = RegistryInstall {
        version: r.u64()?,
        installed_at_ms: r.i64()?,
        envelope_digest: r.bytes()?,
        counted_signers: r.list()?,
    };
    r.end()?;
    Ok(out)
}

impl Store {
    pub fn current_registry(&self) -> Result<Option<StoredRegistry>, StoreError> {
        self.registry.get(CURRENT)?.map(|v| decode_current(&v)).transpose()
    }

    /// Replaces the installed registry and appends to the history, atomically and durably, but
    /// only if the installed version is still `expected_current` (compare-and-set: two installs
    /// racing cannot both win).
    pub fn install_registry(
        &self,
        new: &StoredRegistry,
        envelope_digest: [u8; 32],
        expected_current: Option<u64>,
    ) -> Result<(), StoreError> {
        let current = encode_current(new);
        let install = encode_install(&RegistryInstall {
            version: new.version,
            installed_at_ms: new.installed_at_ms,
            envelope_digest: envelope_digest.to_vec(),
            counted_signers: new.counted_signers.clone(),
        });
        // [registry, registry_history]
        self.db.transaction(&[&self.registry, &self.registry_history], |tx| {
            let found = match tx.get(0, CURRENT)? {
                Some(v) => Some(decode_current(&v)?.version),
                None => None,
            };
            if found != expected_current {
                return Err(StoreError::Conflict { expected: expected_current, found });
            }
            tx.insert(0, CURRENT, current.as_slice())?;
            tx.insert(1, &new.version.to_be_bytes(), install.as_slice())
        })?;
        self.flush()
    }

    /// Every install, oldest first.
    pub fn registry_history(&self) -> Result<Vec<RegistryInstall>, StoreError> {
        self.registry_history.iter().values().map(|v| decode_install(&v?)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;

    fn reg(version: u64) -> StoredRegistry {
        StoredRegistry {
            version,
            envelope: vec![version as u8; 10],
            installed_at_ms: 100 + version as i64,
            counted_signers: vec![vec![1; 16]],
        }
    }

    #[test]
    fn installs_survive_reopen_and_cas_guards() {
        for place in crate::testing::places() {
            {
                let s = place.open();
                assert_eq!(s.current_registry().unwrap(), None);
                s.install_registry(&reg(1), [1; 32], None).unwrap();
                // A stale expectation loses.
                let err = s.install_registry(&reg(2), [2; 32], None).unwrap_err();
                assert!(matches!(err, StoreError::Conflict { expected: None, found: Some(1) }));
                s.install_registry(&reg(2), [2; 32], Some(1)).unwrap();
            }
            let s = place.open();
            assert_eq!(s.current_registry().unwrap(), Some(reg(2)));
            let hist = s.registry_history().unwrap();
            assert_eq!(hist.iter().map(|h| h.version).collect::<Vec<_>>(), vec![1, 2]);
            assert_eq!(hist[1].envelope_digest, vec![2; 32]);
        }
    }

    #[test]
    fn a_second_open_of_the_same_directory_fails() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path(), StoreOptions::default()).unwrap();
        let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
        assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");
    }
}
