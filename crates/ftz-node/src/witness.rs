//! Witnessing. As a witness, this node cosigns another zone's checkpoint only if it is
//! consistent with the last one it cosigned for that log (compare-and-set, durable), and keeps
//! two validly signed checkpoints that cannot both be true as equivocation evidence. As a log,
//! it asks every other zone's node to witness each new checkpoint and keeps the cosignatures.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use ftz_audit::{
    checkpoint::Checkpoint,
    merkle::{Hash, consistency_proof, verify_consistency},
    note::{Note, Signer, TYPE_COSIGNATURE, TYPE_ED25519, Verifier},
};
use ftz_core::{Reason, Registry, ZoneId};
use ftz_proto::{KeyPurpose, WitnessRequest, WitnessResponse};

use crate::{
    audit::{AuditLog, checkpoints::Signed, log_name, witness_name},
    core::Core,
    error::{ApiError, reason_of, status_meta},
    peers::{PeerClients, peer_failure},
};

/// Witnessing, both ways: as a witness, what this node cosigned of each other zone's log and the
/// equivocations it found; as a log, what it believes each witness holds of its own log.
pub(crate) struct Witness {
    core: Arc<Core>,
    log: AuditLog,
    peers: Arc<PeerClients>,
    /// What this log believes each witness holds, to send the right consistency proof.
    sizes: Mutex<HashMap<ZoneId, u64>>,
    /// Equivocations found by this node as a witness, since it started (the evidence itself is
    /// in the store).
    alarms: AtomicU64,
}

/// The largest checkpoint note accepted (a checkpoint and a few dozen signature lines).
const MAX_CHECKPOINT_BYTES: usize = 8 * 1024;
/// Hashes in a consistency proof at most (a tree of 2^64 leaves needs fewer than 128).
const MAX_PROOF_HASHES: usize = 128;
/// Pieces of equivocation evidence kept at most.
const MAX_EVIDENCE: usize = 256;

/// The log verifiers of `zone`: its node keys valid now, under the log's name (type 0x01).
pub(crate) fn log_verifiers(registry: &Registry, zone: &ZoneId, now: i64) -> Vec<Verifier> {
    keys(registry, zone, now).into_iter().filter_map(|k| Verifier::new(&log_name(zone), TYPE_ED25519, k).ok()).collect()
}

/// The witness verifiers of `zone`: its node keys valid now, as cosigners (type 0x04).
pub(crate) fn witness_verifiers(registry: &Registry, zone: &ZoneId, now: i64) -> Vec<Verifier> {
    keys(registry, zone, now)
        .into_iter()
        .filter_map(|k| Verifier::new(&witness_name(zone), TYPE_COSIGNATURE, k).ok())
        .collect()
}

fn keys(registry: &Registry, zone: &ZoneId, now: i64) -> Vec<ftz_core::VerifyingKey> {
    registry.zone(zone).map(|z| z.keys_valid_at(KeyPurpose::Node, now).map(|k| k.key).collect()).unwrap_or_default()
}

impl Witness {
    pub(crate) fn new(core: Arc<Core>, log: AuditLog, peers: Arc<PeerClients>) -> Self {
        Self { core, log, peers, sizes: Mutex::default(), alarms: AtomicU64::new(0) }
    }

    /// Equivocations found since the node started.
    pub(crate) fn equivocations_found(&self) -> u64 {
        self.alarms.load(Ordering::Relaxed)
    }

    /// Witness side of `Peer.Witness`.
    pub(crate) async fn cosign(&self, caller: &ZoneId, req: WitnessRequest) -> Result<WitnessResponse, ApiError> {
        let state = &*self.core;
        let now = state.now_ms();
        let registry = state.registry();
        let origin = log_name(caller);
        if req.checkpoint.len() > MAX_CHECKPOINT_BYTES || req.consistency_proof.len() > MAX_PROOF_HASHES {
            return Err(ApiError::new(
                Reason::CheckpointInvalid,
                format!(
                    "a checkpoint of at most {MAX_CHECKPOINT_BYTES} bytes and a proof of at most {MAX_PROOF_HASHES} hashes"
                ),
            ));
        }
        let note = Note::parse(&req.checkpoint).map_err(|e| ApiError::new(Reason::CheckpointInvalid, e.to_string()))?;
        let verifiers = log_verifiers(&registry, caller, now);
        note.verify(&verifiers)
            .map_err(|e| ApiError::new(Reason::CheckpointInvalid, format!("checkpoint of {origin}: {e}")))?;
        let cp = Checkpoint::parse(&note.text).map_err(|e| ApiError::new(Reason::CheckpointInvalid, e.to_string()))?;
        if cp.origin != origin {
            return Err(ApiError::new(
                Reason::CheckpointInvalid,
                format!("zone {caller} submitted a checkpoint of {}", cp.origin),
            ));
        }
        let stored_text = state.store.witnessed(&origin)?;
        let stored = match &stored_text {
            Some(t) => Some(
                Checkpoint::parse(&Note::parse(t).map_err(|e| ApiError::internal(e.to_string()))?.text)
                    .map_err(|e| ApiError::internal(e.to_string()))?,
            ),
            None => None,
        };
        let held = stored.as_ref().map_or(0, |c| c.size);
        if req.old_size != held {
            let mut refused = ApiError::new(
                Reason::WitnessConflict,
                format!("this witness holds {origin} at size {held}, not {}", req.old_size),
            )
            .with_meta("witness_size", held.to_string());
            // And the root it holds there: a log restored from a backup checks its own root at
            // that size against it (asking with an old size no witness holds, which changes
            // nothing here: see `restored`).
            if let Some(c) = &stored {
                refused = refused.with_meta("witness_root", hex::encode(c.root));
            }
            return Err(refused);
        }
        let proof: Vec<Hash> = req
            .consistency_proof
            .iter()
            .map(|h| {
                h.as_slice()
                    .try_into()
                    .map_err(|_| ApiError::new(Reason::CheckpointInvalid, "a proof hash is not 32 bytes"))
            })
            .collect::<Result<_, _>>()?;
        if let Some(old) = &stored {
            if cp.size < old.size {
                // Older than what this witness holds: stale, not by itself proof of a fork.
                return Err(ApiError::new(
                    Reason::WitnessConflict,
                    format!("this witness holds {origin} at size {}, beyond {}", old.size, cp.size),
                )
                .with_meta("witness_size", held.to_string()));
            }
            let consistent = match cp.size.cmp(&old.size) {
                std::cmp::Ordering::Less => false,
                std::cmp::Ordering::Equal => cp.root == old.root,
                std::cmp::Ordering::Greater => {
                    verify_consistency(old.size, cp.size, &proof, &old.root, &cp.root).is_ok()
                }
            };
            if !consistent {
                self.record_equivocation(
                    &origin,
                    stored_text.as_deref().unwrap_or_default(),
                    &req.checkpoint,
                    &req.consistency_proof,
                )
                .await;
                return Err(ApiError::new(
                    Reason::Equivocation,
                    format!(
                        "{origin} at size {} is not consistent with the checkpoint at size {} this witness cosigned; kept as evidence",
                        cp.size, old.size
                    ),
                ));
            }
        }
        // Keep the note without other cosignatures: what the log signed.
        let bare = Note {
            text: note.text.clone(),
            signatures: note
                .signatures
                .iter()
                .filter(|s| verifiers.iter().any(|v| v.name == s.name && v.id == s.id))
                .cloned()
                .collect(),
        }
        .to_text();
        if stored.as_ref().is_none_or(|c| c.size < cp.size) {
            let won = state.store.write_durably(|s| s.witness_cas(&origin, stored_text.as_deref(), &bare)).await?;
            if !won {
                return Err(ApiError::new(
                    Reason::WitnessConflict,
                    "another submission for this log was accepted first; retry",
                ));
            }
        }
        let signer = Signer::new(&witness_name(&state.zone), TYPE_COSIGNATURE, &state.node_key)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let ts = u64::try_from(now / 1000).unwrap_or(0);
        tracing::debug!(log = %origin, size = cp.size, "cosigned");
        Ok(WitnessResponse { cosignature: signer.cosign(ts, &note.text).line() })
    }

    async fn record_equivocation(&self, origin: &str, held: &str, offered: &str, proof: &[Vec<u8>]) {
        let state = &*self.core;
        let proof: Vec<String> = proof.iter().map(|p| STANDARD.encode(p)).collect();
        let evidence = format!(
            "ftz-equivocation-evidence/v1\nlog {origin}\nat {}\nproof {}\n\n{held}\n{offered}",
            state.now_ms(),
            proof.join(",")
        );
        let store = state.store.clone();
        let kept = tokio::task::spawn_blocking(move || store.add_evidence(evidence.as_bytes(), MAX_EVIDENCE)).await;
        if !matches!(kept, Ok(Ok(true))) {
            tracing::error!(log = %origin, "equivocation evidence not kept: {MAX_EVIDENCE} pieces are kept already");
        }
        self.alarms.fetch_add(1, Ordering::Relaxed);
        tracing::error!(log = %origin, "EQUIVOCATION: two validly signed checkpoints of this log cannot both be true; evidence kept");
    }

    /// Asks every other zone's node to cosign the checkpoint at `size`, and adds the cosignatures
    /// to the stored checkpoint as they come.
    fn spawn_cosigning(self: &Arc<Self>, size: u64, note: String) {
        let zones: Vec<ZoneId> =
            self.core.registry().zones().map(|z| z.id.clone()).filter(|z| *z != self.core.zone).collect();
        for zone in zones {
            let (me, note) = (self.clone(), note.clone());
            let stopped = self.core.tasks.stopped();
            self.core.tasks.spawn(async move {
                tokio::select! {
                    () = stopped => {}
                    res = me.ask(&zone, size, &note) => match res {
                        Ok(line) => me.add_cosignature(&zone, size, &line),
                        Err(e) => tracing::info!(witness = %zone, size, "no cosignature: {e}"),
                    },
                }
            });
        }
    }

    /// Has every checkpoint `signed` publishes witnessed, until the node stops.
    pub(crate) fn spawn_cosigner(self: &Arc<Self>, mut signed: tokio::sync::watch::Receiver<Signed>) {
        let me = self.clone();
        let stopped = self.core.tasks.stopped();
        self.core.tasks.spawn(async move {
            tokio::pin!(stopped);
            loop {
                tokio::select! {
                    () = &mut stopped => return,
                    changed = signed.changed() => if changed.is_err() { return },
                }
                let latest = signed.borrow_and_update().clone();
                if let Some((size, note)) = latest {
                    me.spawn_cosigning(size, note);
                }
            }
        });
    }

    async fn ask(&self, zone: &ZoneId, size: u64, note: &str) -> Result<String, ApiError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let old = self.sizes.lock().unwrap_or_else(|e| e.into_inner()).get(zone).copied().unwrap_or(0);
            let old = old.min(size);
            let proof =
                consistency_proof(&self.log.tree(), old, size)?.map_err(|e| ApiError::internal(e.to_string()))?;
            let mut client = self.peers.client(zone)?;
            let mut req = tonic::Request::new(WitnessRequest {
                old_size: old,
                checkpoint: note.to_string(),
                consistency_proof: proof.iter().map(|h| h.to_vec()).collect(),
            });
            req.set_timeout(Duration::from_secs(5));
            match client.witness(req).await {
                Ok(r) => {
                    self.sizes.lock().unwrap_or_else(|e| e.into_inner()).insert(zone.clone(), size);
                    return Ok(r.into_inner().cosignature);
                }
                Err(s) if attempts < 3 && reason_of(&s) == Some(Reason::WitnessConflict) => {
                    // The witness says which size it holds: prove consistency from there.
                    if let Some(held) = status_meta(&s, "witness_size").and_then(|v| v.parse::<u64>().ok()) {
                        self.sizes.lock().unwrap_or_else(|e| e.into_inner()).insert(zone.clone(), held);
                    }
                }
                Err(s) => return Err(peer_failure(zone, &s)),
            }
        }
    }

    /// Verifies a witness's cosignature line and adds it to the checkpoint signed at `size` (which
    /// stays the latest only if no newer one was signed meanwhile).
    fn add_cosignature(&self, zone: &ZoneId, size: u64, line: &str) {
        let verifiers = witness_verifiers(&self.core.registry(), zone, self.core.now_ms());
        let added = self.core.store.update_checkpoint(size, |text| {
            let mut note = Note::parse(text).ok()?;
            let parsed = Note::parse(&format!("{}\n{line}", note.text)).ok()?;
            let sig = parsed.signatures.into_iter().next()?;
            // The time a witness states must be now, within the clock skew: a witness cannot
            // make the log's checkpoints carry times no one can display or compare.
            if !stated_now(&sig, self.core.now_ms(), self.core.limits.max_clock_skew_ms) {
                tracing::warn!(witness = %zone, "cosignature time is not now; dropped");
                return None;
            }
            let check = Note { text: note.text.clone(), signatures: vec![sig.clone()] };
            if check.verify(&verifiers).is_err() {
                tracing::warn!(witness = %zone, "cosignature does not verify; dropped");
                return None;
            }
            note.push_signature(sig);
            Some(note.to_text())
        });
        if let Err(e) = added {
            tracing::error!("storing a cosignature: {e}");
        }
    }
}

/// Whether a cosignature states a time within `skew_ms` of `now_ms` (its timestamp is seconds).
fn stated_now(sig: &ftz_audit::note::NoteSignature, now_ms: i64, skew_ms: i64) -> bool {
    let (now_s, skew_s) = (now_ms.div_euclid(1000), skew_ms.div_euclid(1000).unsigned_abs());
    sig.timestamp().and_then(|t| i64::try_from(t).ok()).is_some_and(|t| t.abs_diff(now_s) <= skew_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cosignature_must_state_the_present() {
        let at = |ts: u64| ftz_audit::note::NoteSignature { name: "w".into(), id: 1, body: ts.to_be_bytes().to_vec() };
        let now = 1_796_000_000_000;
        assert!(stated_now(&at(1_796_000_000), now, 300_000));
        assert!(stated_now(&at(1_796_000_299), now, 300_000));
        assert!(!stated_now(&at(1_796_000_301), now, 300_000));
        // Year 10000 and beyond (no date format shows it), or past i64: refused.
        assert!(!stated_now(&at(253_402_300_800), now, 300_000));
        assert!(!stated_now(&at(u64::MAX), now, 300_000));
        assert!(!stated_now(&ftz_audit::note::NoteSignature { name: "w".into(), id: 1, body: vec![] }, now, 300_000));
    }
}
