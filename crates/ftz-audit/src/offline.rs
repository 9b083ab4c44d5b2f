//! What an auditor checks with nothing but exported files and public keys: an entry's proof
//! against a (co)signed checkpoint, consistency between two checkpoints, a whole log rebuilt
//! from its entries, and two zones' logs against each other.

use std::collections::{BTreeMap, BTreeSet};

use base64::{Engine, engine::general_purpose::STANDARD};
use ftz_core::{KeyId, VerifyingKey, envelope};
use ftz_proto::{Envelope, Signature, TransferIntent, TransferReceipt};
use prost::Message;
use thiserror::Error;

use crate::{
    checkpoint::{Checkpoint, TlogProof},
    entry::{INTENT_TYPE, RECEIPT_TYPE, describe},
    leaf::{Leaf, Refusing, SignedPart},
    merkle::{Hash, MemoryTree, leaf_hash, verify_consistency, verify_inclusion},
    note::{Note, TYPE_COSIGNATURE, TYPE_ED25519, Verifier},
};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum OfflineError {
    #[error("{0}")]
    Failed(String),
}

fn fail(m: impl Into<String>) -> OfflineError {
    OfflineError::Failed(m.into())
}

/// Verifier keys, one vkey per line (`#` comments and blank lines ignored).
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    pub keys: Vec<Verifier>,
}

impl KeyRing {
    pub fn parse(text: &str) -> Result<Self, OfflineError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            keys.push(Verifier::from_vkey(line).map_err(|e| fail(format!("keys line {}: {e}", i + 1)))?);
        }
        Ok(Self { keys })
    }

    pub fn to_text(&self) -> String {
        self.keys.iter().map(|k| format!("{}\n", k.to_vkey())).collect()
    }

    /// The zone a key name belongs to: `ftz/<zone>/audit` or `ftz/<zone>/witness`.
    fn zone_of(name: &str) -> Option<&str> {
        name.strip_prefix("ftz/")?.split('/').next()
    }

    /// Every node key the ring knows, by its ftz key id, with its zone.
    fn node_keys(&self) -> BTreeMap<KeyId, (String, VerifyingKey)> {
        self.keys
            .iter()
            .filter_map(|v| Self::zone_of(&v.name).map(|z| (v.key.key_id(), (z.to_string(), v.key))))
            .collect()
    }

    pub fn witnesses(&self) -> Vec<Verifier> {
        self.keys.iter().filter(|k| k.sig_type == TYPE_COSIGNATURE).cloned().collect()
    }
}

/// Opens a checkpoint note: signed by `log`, and by at least `quorum` of `witnesses`.
pub fn open_checkpoint(
    note_text: &str,
    log: &Verifier,
    witnesses: &[Verifier],
    quorum: usize,
) -> Result<(Checkpoint, usize), OfflineError> {
    let note = Note::parse(note_text).map_err(|e| fail(format!("checkpoint: {e}")))?;
    let mut all = vec![log.clone()];
    all.extend(witnesses.iter().cloned());
    let signed = note.verify(&all).map_err(|e| fail(format!("checkpoint: {e}")))?;
    if !signed.contains(&log) {
        return Err(fail(format!("checkpoint is not signed by the log key {}", log.name)));
    }
    let cosigners = signed.iter().filter(|v| v.sig_type == TYPE_COSIGNATURE).count();
    if cosigners < quorum {
        return Err(fail(format!("checkpoint is cosigned by {cosigners} of the given witnesses, {quorum} required")));
    }
    let cp = Checkpoint::parse(&note.text).map_err(|e| fail(e.to_string()))?;
    if cp.origin != log.name {
        return Err(fail(format!("checkpoint origin {} is not the log key's name {}", cp.origin, log.name)));
    }
    Ok((cp, cosigners))
}

/// `verify-proof`: the entry is included under a checkpoint signed by the log and cosigned by
/// a quorum of witnesses. Returns the checkpoint and the number of cosigners.
pub fn verify_proof(
    entry: &[u8],
    proof_text: &str,
    log: &Verifier,
    witnesses: &[Verifier],
    quorum: usize,
) -> Result<(Checkpoint, u64, usize), OfflineError> {
    let proof = TlogProof::parse(proof_text).map_err(|e| fail(e.to_string()))?;
    let (cp, cosigners) = open_checkpoint(&proof.checkpoint, log, witnesses, quorum)?;
    verify_inclusion(&leaf_hash(entry), proof.index, cp.size, &proof.hashes, &cp.root)
        .map_err(|e| fail(format!("entry {} is not included: {e}", proof.index)))?;
    Ok((cp, proof.index, cosigners))
}

/// A consistency proof file: one base64 hash per line.
pub fn consistency_text(proof: &[Hash]) -> String {
    proof.iter().map(|h| format!("{}\n", STANDARD.encode(h))).collect()
}

pub fn parse_consistency(text: &str) -> Result<Vec<Hash>, OfflineError> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            STANDARD
                .decode(l)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| fail("a proof line is not a base64 32-byte hash"))
        })
        .collect()
}

/// `verify-consistency`: both checkpoints signed by the log, the old one a prefix of the new.
pub fn verify_consistency_files(old: &str, new: &str, proof: &str, log: &Verifier) -> Result<(u64, u64), OfflineError> {
    let (a, _) = open_checkpoint(old, log, &[], 0)?;
    let (b, _) = open_checkpoint(new, log, &[], 0)?;
    verify_consistency(a.size, b.size, &parse_consistency(proof)?, &a.root, &b.root)
        .map_err(|e| fail(format!("sizes {} and {} are not consistent: {e}", a.size, b.size)))?;
    Ok((a.size, b.size))
}

/// What `verify-log` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogReport {
    pub entries: u64,
    pub checkpoint_size: u64,
    pub transfers: u64,
    pub refusals: u64,
    pub by_kind: BTreeMap<String, u64>,
    /// Witness cosignatures on the checkpoint that verified.
    pub cosigners: u64,
    /// The first problems found (at most a thousand), and how many there were in all.
    pub problems: Vec<String>,
    pub problem_count: u64,
}

fn check_part(
    part: &SignedPart,
    payload_type: &str,
    keys: &BTreeMap<KeyId, (String, VerifyingKey)>,
    zone: &str,
) -> Result<(), String> {
    let id = KeyId(part.signature.key_id);
    let Some((owner, key)) = keys.get(&id) else { return Err(format!("signed by key {id}, which no given key is")) };
    if owner != zone {
        return Err(format!("signed by a key of {owner}, not of {zone}"));
    }
    let env = Envelope {
        payload_type: payload_type.to_string(),
        payload: part.payload.clone(),
        signatures: vec![Signature { key_id: part.signature.key_id.to_vec(), sig: part.signature.sig.to_vec() }],
    };
    envelope::verify(&env, payload_type, |k| (*k == id).then_some(*key)).map(|_| ()).map_err(|e| e.to_string())
}

/// `verify-log`, one entry at a time so that a log of any length verifies in bounded memory
/// (a hash per entry and a transfer id per transfer): rebuilds the tree from every entry
/// (indices 0..n, none missing), checks every transfer's two signatures and that they belong
/// together, and that no transfer id appears twice; `finish` checks the checkpoint's signature
/// and root.
pub struct LogVerifier {
    tree: MemoryTree,
    node_keys: BTreeMap<KeyId, (String, VerifyingKey)>,
    transfer_ids: BTreeSet<Vec<u8>>,
    report: LogReport,
    broken: bool,
}

/// At most this many problems are listed; the count says how many there were.
const MAX_PROBLEMS: usize = 1000;

impl LogVerifier {
    pub fn new(keys: &KeyRing) -> Self {
        Self {
            tree: MemoryTree::new(),
            node_keys: keys.node_keys(),
            transfer_ids: BTreeSet::new(),
            report: LogReport::default(),
            broken: false,
        }
    }

    fn problem(&mut self, m: String) {
        self.report.problem_count += 1;
        if self.report.problems.len() < MAX_PROBLEMS {
            self.report.problems.push(m);
        }
    }

    /// The next entry, in index order.
    pub fn push(&mut self, index: u64, bytes: &[u8]) {
        if self.broken {
            return;
        }
        let expected = self.tree.size();
        if index != expected {
            self.problem(format!("entry {expected} is missing (next is {index})"));
            self.broken = true;
            return;
        }
        self.tree.push(bytes);
        self.report.entries += 1;
        let leaf = match describe(bytes) {
            Ok((leaf, e)) => {
                *self.report.by_kind.entry(e.kind.to_string()).or_default() += 1;
                leaf
            }
            Err(err) => return self.problem(format!("entry {index}: {err}")),
        };
        match &leaf {
            Leaf::Transfer { intent, receipt } => {
                self.report.transfers += 1;
                let i = TransferIntent::decode(intent.payload.as_slice()).unwrap_or_default();
                let c = TransferReceipt::decode(receipt.payload.as_slice()).unwrap_or_default();
                if let Err(m) = check_part(intent, INTENT_TYPE, &self.node_keys, &i.provider_zone) {
                    self.problem(format!("entry {index}: intent {m}"));
                }
                if let Err(m) = check_part(receipt, RECEIPT_TYPE, &self.node_keys, &i.consumer_zone) {
                    self.problem(format!("entry {index}: receipt {m}"));
                }
                if c.transfer_id != i.transfer_id || c.intent_digest != ftz_core::sha256(&intent.payload) {
                    self.problem(format!("entry {index}: the receipt is not for this intent"));
                }
                if !self.transfer_ids.insert(i.transfer_id.clone()) {
                    self.problem(format!("entry {index}: transfer {} appears twice", hex::encode(&i.transfer_id)));
                }
            }
            Leaf::Unacknowledged { intent, .. } => {
                let i = TransferIntent::decode(intent.payload.as_slice()).unwrap_or_default();
                if let Err(m) = check_part(intent, INTENT_TYPE, &self.node_keys, &i.provider_zone) {
                    self.problem(format!("entry {index}: intent {m}"));
                }
            }
            Leaf::Refusal { .. } => self.report.refusals += 1,
            _ => {}
        }
    }

    /// Checks `checkpoint` (signed by `log`, and by at least `quorum` of `witnesses`) against
    /// the entries pushed.
    pub fn finish(mut self, checkpoint: &str, log: &Verifier, witnesses: &[Verifier], quorum: usize) -> LogReport {
        match open_checkpoint(checkpoint, log, witnesses, quorum) {
            Ok((cp, cosigners)) => {
                self.report.checkpoint_size = cp.size;
                self.report.cosigners = cosigners as u64;
                if cp.size > self.tree.size() {
                    self.problem(format!(
                        "the checkpoint covers {} entries, only {} are here",
                        cp.size,
                        self.tree.size()
                    ));
                } else if self.tree.root_at(cp.size) != cp.root {
                    self.problem(format!("the entries do not give the checkpoint's root at size {}", cp.size));
                }
            }
            Err(e) => self.problem(e.to_string()),
        }
        self.report
    }
}

/// [`LogVerifier`] over entries in memory.
pub fn verify_log(entries: &[(u64, Vec<u8>)], checkpoint: &str, log: &Verifier, keys: &KeyRing) -> LogReport {
    let mut v = LogVerifier::new(keys);
    for (i, bytes) in entries {
        v.push(*i, bytes);
    }
    v.finish(checkpoint, log, &[], 0)
}

/// What `cross-check` found between the logs of zones A and B.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrossReport {
    /// Transfers between A and B whose leaf is in both logs.
    pub in_both: u64,
    /// (index, summary) of transfers in A's log only, and in B's log only.
    pub only_a: Vec<(u64, String)>,
    pub only_b: Vec<(u64, String)>,
    /// Refusals between A and B logged by both sides (the refuser's and the refused's entry
    /// agree on direction, reason, method and subject), and those only one side logged. A
    /// one-sided refusal is not proof of tampering (a call that failed in transit is logged by
    /// the caller only), so it is reported, not failed.
    pub refusals_in_both: u64,
    pub refusals_only_a: Vec<(u64, String)>,
    pub refusals_only_b: Vec<(u64, String)>,
}

impl CrossReport {
    pub fn one_sided(&self) -> bool {
        !self.only_a.is_empty() || !self.only_b.is_empty()
    }
}

/// The transfers between two zones in one log, by leaf hash, gathered an entry at a time.
#[derive(Debug, Default)]
pub struct TransfersBetween {
    a: String,
    b: String,
    found: BTreeMap<Hash, (u64, String)>,
    /// Refusals by (refuser, refused, reason, method, subject digest), in log order.
    refusals: BTreeMap<RefusalKey, Vec<(u64, String)>>,
}

type RefusalKey = (String, String, String, String, [u8; 32]);

impl TransfersBetween {
    pub fn new(a: &str, b: &str) -> Self {
        Self { a: a.into(), b: b.into(), ..Default::default() }
    }

    pub fn push(&mut self, index: u64, bytes: &[u8]) {
        let Ok((leaf, e)) = describe(bytes) else { return };
        let between = e.zones.len() == 2 && e.zones.contains(&self.a) && e.zones.contains(&self.b);
        if !between {
            return;
        }
        match leaf {
            Leaf::Transfer { .. } => {
                self.found.insert(leaf_hash(bytes), (index, e.summary));
            }
            // A user refused is no node's business but the refuser's: nothing to pair.
            Leaf::Refusal { refusing: Refusing::RefusedUser, .. } => {}
            Leaf::Refusal { zone, other_zone, refusing, reason, method, subject_digest, .. } => {
                let (by, of) = if refusing.by_us() { (zone, other_zone) } else { (other_zone, zone) };
                self.refusals.entry((by, of, reason, method, subject_digest)).or_default().push((index, e.summary));
            }
            _ => {}
        }
    }
}

/// `cross-check`: every transfer between the two zones must be in both logs, byte-identical.
pub fn compare(a: &TransfersBetween, b: &TransfersBetween) -> CrossReport {
    let (ta, tb) = (&a.found, &b.found);
    let mut r = CrossReport {
        in_both: ta.keys().filter(|h| tb.contains_key(*h)).count() as u64,
        only_a: ta.iter().filter(|(h, _)| !tb.contains_key(*h)).map(|(_, v)| v.clone()).collect(),
        only_b: tb.iter().filter(|(h, _)| !ta.contains_key(*h)).map(|(_, v)| v.clone()).collect(),
        ..Default::default()
    };
    // Refusals pair up in order: the n-th of a kind on one side with the n-th on the other.
    let none = Vec::new();
    for key in a.refusals.keys().chain(b.refusals.keys()).collect::<BTreeSet<_>>() {
        let (ra, rb) = (a.refusals.get(key).unwrap_or(&none), b.refusals.get(key).unwrap_or(&none));
        let both = ra.len().min(rb.len());
        r.refusals_in_both += both as u64;
        r.refusals_only_a.extend(ra[both..].iter().cloned());
        r.refusals_only_b.extend(rb[both..].iter().cloned());
    }
    r.refusals_only_a.sort();
    r.refusals_only_b.sort();
    r
}

/// [`compare`] over entries in memory.
pub fn cross_check(zone_a: &str, a: &[(u64, Vec<u8>)], zone_b: &str, b: &[(u64, Vec<u8>)]) -> CrossReport {
    let gather = |entries: &[(u64, Vec<u8>)]| {
        let mut t = TransfersBetween::new(zone_a, zone_b);
        for (i, bytes) in entries {
            t.push(*i, bytes);
        }
        t
    };
    compare(&gather(a), &gather(b))
}

/// A log key's verifier from its zone's node key.
pub fn log_verifier(zone: &str, key: VerifyingKey) -> Option<Verifier> {
    Verifier::new(&crate::checkpoint::origin(zone), TYPE_ED25519, key).ok()
}

/// A witness's verifier from its zone's node key.
pub fn witness_verifier(zone: &str, key: VerifyingKey) -> Option<Verifier> {
    Verifier::new(&format!("ftz/{zone}/witness"), TYPE_COSIGNATURE, key).ok()
}

#[cfg(test)]
mod tests;
