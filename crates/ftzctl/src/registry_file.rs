//! Registry files as the zone authorities handle them offline: read, describe, sign, bump.

use anyhow::Result;
use ftz_core::{
    KeyId, Registry,
    envelope::{self, PayloadType},
};
use ftz_proto::{Envelope, FederationRegistry, KeyPurpose};
use serde_json::{Value, json};

use crate::output::time;

pub use crate::signed_file::{read, write};

/// The signatures of `env` by authority keys the document itself lists, checked against it.
/// (Whether that meets a node's quorum depends on the registry the node holds; the node decides.)
pub fn self_signers(reg: &Registry) -> Result<Vec<KeyId>, ftz_core::EnvelopeError> {
    envelope::verify(reg.envelope(), PayloadType::FEDERATION_REGISTRY, |id| {
        reg.find_key(id).filter(|(_, k)| k.purpose == KeyPurpose::Authority).map(|(_, k)| k.key)
    })
}

pub fn describe(reg: &Registry) -> (String, Value) {
    let doc = reg.document();
    let signers = self_signers(reg);
    let mut t = format!(
        "federation {}  version {}  quorum {}\nvalid {} .. {}\ndigest {}\n",
        doc.federation_id,
        doc.version,
        doc.quorum,
        time(doc.valid_from_ms),
        time(doc.valid_until_ms),
        hex::encode(reg.digest()),
    );
    let mut zones = Vec::new();
    for z in reg.zones() {
        t.push_str(&format!("zone {:<12} {:<45} {}\n", z.id, z.display_name, z.endpoint));
        let mut keys = Vec::new();
        for k in &z.keys {
            let until = k.valid_until_ms.map(time).unwrap_or_else(|| "-".into());
            t.push_str(&format!(
                "    {:<9} {}  from {}  until {}\n",
                purpose(k.purpose),
                k.id,
                time(k.valid_from_ms),
                until
            ));
            keys.push(json!({"purpose": purpose(k.purpose), "key_id": k.id.to_string(), "valid_from_ms": k.valid_from_ms, "valid_until_ms": k.valid_until_ms}));
        }
        zones.push(
            json!({"zone_id": z.id.as_str(), "display_name": z.display_name, "endpoint": z.endpoint, "keys": keys}),
        );
    }
    let sig_ids: Vec<String> = reg.envelope().signatures.iter().map(|s| hex::encode(&s.key_id)).collect();
    match &signers {
        Ok(ok) => {
            t.push_str(&format!("signatures: {} ({} by authority keys it lists, all valid)\n", sig_ids.len(), ok.len()))
        }
        Err(e) => t.push_str(&format!("signatures: {} ({e})\n", sig_ids.len())),
    }
    let value = json!({
        "federation_id": doc.federation_id,
        "version": doc.version,
        "quorum": doc.quorum,
        "valid_from_ms": doc.valid_from_ms,
        "valid_until_ms": doc.valid_until_ms,
        "digest": hex::encode(reg.digest()),
        "zones": zones,
        "signatures": sig_ids,
        "verified_authority_signers": signers.as_ref().map(|s| s.iter().map(ToString::to_string).collect::<Vec<_>>()).ok(),
        "signature_error": signers.as_ref().err().map(ToString::to_string),
    });
    (t, value)
}

fn purpose(p: KeyPurpose) -> &'static str {
    match p {
        KeyPurpose::Authority => "authority",
        KeyPurpose::Node => "node",
        KeyPurpose::Issuing => "issuing",
        KeyPurpose::Unspecified => "unknown",
    }
}

/// The next version of a registry, unsigned: for the authorities to edit and co-sign.
pub fn next_version(env: &Envelope, now_ms: i64, quorum: Option<u32>, valid_days: Option<i64>) -> Result<Envelope> {
    let mut doc: FederationRegistry = envelope::decode_payload(env, PayloadType::FEDERATION_REGISTRY)?;
    doc.version = doc
        .version
        .checked_add(1)
        .ok_or_else(|| anyhow::anyhow!("the registry's version is already the largest there is"))?;
    doc.issued_at_ms = now_ms;
    if let Some(q) = quorum {
        doc.quorum = q;
    }
    if let Some(days) = valid_days {
        if !(1..=3660).contains(&days) {
            anyhow::bail!("--valid-days must be between 1 and 3660 (ten years), not {days}");
        }
        doc.valid_from_ms = now_ms;
        doc.valid_until_ms = now_ms.saturating_add(days * 86_400_000);
    }
    Ok(envelope::seal(PayloadType::FEDERATION_REGISTRY, &doc, &[]))
}
