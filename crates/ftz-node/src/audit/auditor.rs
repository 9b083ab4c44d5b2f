//! What the auditors' reads compute beyond a lookup: the signed checkpoint history with who
//! cosigned each checkpoint and when, and another zone's log export compared with this log (the
//! online counterpart of `ftzctl audit cross-check`, for exports small enough to upload).
//!
//! Every key comes from the registry in force: every node key it lists for a zone (retired ones
//! too: entries and checkpoints signed before a rotation need them), as that zone's log key and
//! as its witness key. Nothing the uploader sends is trusted as a key.

use ftz_audit::{
    checkpoint::Checkpoint,
    note::{Note, NoteSignature, TYPE_COSIGNATURE, TYPE_ED25519, Verifier},
    offline::{KeyRing, LogVerifier, TransfersBetween, compare, log_verifier, open_checkpoint, witness_verifier},
};
use ftz_core::{Reason, Registry, ZoneId};
use ftz_proto::{
    CheckpointCosignature, CrossCheckItem, CrossCheckRequest, CrossCheckResponse, KeyPurpose, SignedCheckpoint,
};

use super::log::AuditLog;
use crate::{core::Core, error::ApiError};

/// Entries of this node's own log compared in one call at most (from its first on): the scan
/// is bounded whatever the log's size, and the answer says when it did not reach the end.
pub(crate) const MAX_HERE_ENTRIES: u64 = 200_000;
/// Entries of an uploaded export at most (the message limit bounds their bytes first).
pub(crate) const MAX_THERE_ENTRIES: usize = 100_000;
/// One-sided items of each kind listed at most (the counts are complete).
pub(crate) const MAX_ITEMS: usize = 100;
/// Problems of the uploaded log listed at most (the count is complete).
pub(crate) const MAX_PROBLEMS: usize = 100;
/// Entries read from the store at a time.
const PAGE: usize = 1000;

/// Every node key of every zone the registry lists, as log key and as witness key.
pub(crate) fn registry_keys(registry: &Registry) -> KeyRing {
    let mut keys = Vec::new();
    for z in registry.zones() {
        for k in z.keys.iter().filter(|k| k.purpose == KeyPurpose::Node) {
            keys.extend(log_verifier(z.id.as_str(), k.key));
            keys.extend(witness_verifier(z.id.as_str(), k.key));
        }
    }
    KeyRing { keys }
}

/// The zone of a witness key name (`ftz/<zone>/witness`).
fn witness_zone(name: &str) -> Option<&str> {
    name.strip_prefix("ftz/")?.strip_suffix("/witness").filter(|z| !z.is_empty() && !z.contains('/'))
}

/// The zone of a log's origin (`ftz/<zone>/audit`).
fn log_zone(origin: &str) -> Option<&str> {
    origin.strip_prefix("ftz/")?.strip_suffix("/audit").filter(|z| !z.is_empty() && !z.contains('/'))
}

/// The cosignatures of a checkpoint note, each checked on its own against the registry's keys.
fn cosignatures(note: &Note, ring: &KeyRing) -> Vec<CheckpointCosignature> {
    let verifies = |s: &NoteSignature| {
        let alone = Note { text: note.text.clone(), signatures: vec![s.clone()] };
        ring.keys
            .iter()
            .filter(|v| v.sig_type == TYPE_COSIGNATURE && v.name == s.name && v.id == s.id)
            .any(|v| alone.verify(std::slice::from_ref(v)).is_ok())
    };
    note.signatures
        .iter()
        .filter_map(|s| {
            let zone = witness_zone(&s.name)?;
            let timestamp = s.timestamp().unwrap_or(0);
            Some(CheckpointCosignature {
                name: s.name.clone(),
                zone: zone.to_string(),
                key_id: format!("{:08x}", s.id),
                timestamp,
                cosigned_at_ms: i64::try_from(timestamp).unwrap_or(i64::MAX / 1000).saturating_mul(1000),
                verified: verifies(s),
            })
        })
        .collect()
}

/// Up to `limit` signed checkpoints of a size below `below` (`None`: from the latest), newest
/// first, with their cosignatures; and where the next page starts (0: no older one).
pub(crate) fn checkpoint_history(
    core: &Core,
    below: Option<u64>,
    limit: usize,
) -> Result<(Vec<SignedCheckpoint>, u64), ApiError> {
    let ring = registry_keys(&core.registry());
    let stored = core.store.checkpoints_before(below, limit)?;
    let next = if stored.len() == limit { stored.last().map_or(0, |(size, _)| *size) } else { 0 };
    let list = stored
        .into_iter()
        .map(|(size, note)| {
            let cosignatures = match Note::parse(&note) {
                Ok(n) => cosignatures(&n, &ring),
                Err(e) => {
                    tracing::error!(size, "a stored checkpoint does not parse: {e}");
                    Vec::new()
                }
            };
            SignedCheckpoint { size, note, cosignatures }
        })
        .collect();
    Ok((list, next))
}

fn items(v: &[(u64, String)]) -> Vec<CrossCheckItem> {
    v.iter()
        .take(MAX_ITEMS)
        .map(|(index, summary)| CrossCheckItem { index: *index, summary: summary.clone() })
        .collect()
}

/// Compares another zone's uploaded log export with this node's log up to its latest
/// checkpoint. Refused (CHECKPOINT_INVALID) when the export's checkpoint is not a checkpoint of
/// another zone's log signed by a node key the registry lists for that zone; anything else that
/// does not verify in the upload (the entries against the checkpoint's root, the signatures of
/// its transfers) is reported in the answer. Blocking: reads up to [`MAX_HERE_ENTRIES`] entries.
pub(crate) fn cross_check(core: &Core, log: &AuditLog, req: CrossCheckRequest) -> Result<CrossCheckResponse, ApiError> {
    if req.entries.len() > MAX_THERE_ENTRIES {
        return Err(ApiError::invalid(format!(
            "the export has {} entries; a node compares at most {MAX_THERE_ENTRIES} in one call: check a larger export offline with `ftzctl audit cross-check`",
            req.entries.len()
        )));
    }
    let registry = core.registry();
    let refused = |m: String| ApiError::new(Reason::CheckpointInvalid, m);
    let note = Note::parse(&req.checkpoint).map_err(|e| refused(format!("the export's checkpoint: {e}")))?;
    let statement = Checkpoint::parse(&note.text).map_err(|e| refused(format!("the export's checkpoint: {e}")))?;
    let other = log_zone(&statement.origin)
        .and_then(|z| ZoneId::new(z).ok())
        .ok_or_else(|| refused(format!("checkpoint origin {:?} is not an ftz audit log", statement.origin)))?;
    if other == core.zone {
        return Err(refused(format!("the export is of zone {other}'s own log: upload another zone's export")));
    }
    if registry.zone(&other).is_none() {
        return Err(refused(format!(
            "the export is of zone {other}, which registry v{} does not list",
            registry.version()
        )));
    }
    let ring = registry_keys(&registry);
    let witnesses = ring.witnesses();
    let log_keys: Vec<&Verifier> =
        ring.keys.iter().filter(|v| v.sig_type == TYPE_ED25519 && v.name == statement.origin).collect();
    let mut why = format!("registry v{} lists no node key for zone {other}", registry.version());
    let mut opened = None;
    for key in log_keys {
        match open_checkpoint(&req.checkpoint, key, &witnesses, 0) {
            Ok((_, cosigners)) => {
                opened = Some((key.clone(), cosigners));
                break;
            }
            Err(e) => why = e.to_string(),
        }
    }
    let Some((log_key, cosigners)) = opened else {
        return Err(refused(format!(
            "the export's checkpoint is not signed by a node key registry v{} lists for zone {other}: {why}",
            registry.version()
        )));
    };

    // The uploaded log: rebuilt to its checkpoint's root, every transfer's signatures checked.
    let mut verifier = LogVerifier::new(&ring);
    let mut there = TransfersBetween::new(core.zone.as_str(), other.as_str());
    for (i, bytes) in req.entries.iter().enumerate() {
        let index = i as u64;
        verifier.push(index, bytes);
        // Only what the checkpoint covers: entries past it are not committed to.
        if index < statement.size {
            there.push(index, bytes);
        }
    }
    let report = verifier.finish(&req.checkpoint, &log_key, &witnesses, 0);

    // This log, up to its latest checkpoint, bounded.
    let here_size = core.store.latest_checkpoint()?.map_or(0, |(size, _)| size);
    let compared = here_size.min(MAX_HERE_ENTRIES);
    let reader = log.reader();
    let mut here = TransfersBetween::new(core.zone.as_str(), other.as_str());
    let mut next = 0;
    while next < compared {
        let want = usize::try_from(compared - next).unwrap_or(PAGE).min(PAGE);
        let page = reader.entries(next, want)?;
        if page.is_empty() {
            break;
        }
        for (i, bytes) in page {
            here.push(i, &bytes);
            next = i + 1;
        }
    }
    let c = compare(&here, &there);
    tracing::info!(
        other = %other,
        verified = report.problem_count == 0,
        in_both = c.in_both,
        only_here = c.only_a.len(),
        only_there = c.only_b.len(),
        "cross-checked an uploaded log export"
    );
    Ok(CrossCheckResponse {
        zone: core.zone.to_string(),
        other_zone: other.to_string(),
        verified: report.problem_count == 0,
        problems: report.problems.into_iter().take(MAX_PROBLEMS).collect(),
        problem_count: report.problem_count,
        there_size: statement.size,
        there_cosigners: u32::try_from(cosigners).unwrap_or(u32::MAX),
        here_size,
        here_compared: next,
        here_complete: next >= here_size,
        in_both: c.in_both,
        refusals_in_both: c.refusals_in_both,
        only_here: items(&c.only_a),
        only_there: items(&c.only_b),
        refusals_only_here: items(&c.refusals_only_a),
        refusals_only_there: items(&c.refusals_only_b),
        only_here_count: c.only_a.len() as u64,
        only_there_count: c.only_b.len() as u64,
        refusals_only_here_count: c.refusals_only_a.len() as u64,
        refusals_only_there_count: c.refusals_only_b.len() as u64,
    })
}
