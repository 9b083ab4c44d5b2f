//! What an audit log entry says, decoded for listing, filtering and checking.

use ftz_core::envelope::PayloadType;
use ftz_proto::{DataClass, TransferIntent, TransferReceipt};
use prost::Message;

use crate::leaf::{Leaf, LeafError, Refusing, SignedPart};

/// The facts of one entry that filters and reports need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub at_ms: i64,
    /// The zones involved, other than none: provider and consumer of a transfer, or this zone
    /// and the other party of a refusal.
    pub zones: Vec<String>,
    pub data_class: String,
    /// `allowed` (a transfer), `refused`, `unacknowledged`, or empty.
    pub decision: &'static str,
    pub transfer_id: Option<[u8; 16]>,
    /// One line for people.
    pub summary: String,
}

fn class(c: i32) -> String {
    match DataClass::try_from(c) {
        Ok(DataClass::Certification) => "certification",
        Ok(DataClass::InspectionResult) => "inspection_result",
        Ok(DataClass::IndustryData) => "industry_data",
        _ => "",
    }
    .to_string()
}

fn intent_of(p: &SignedPart) -> Option<TransferIntent> {
    TransferIntent::decode(p.payload.as_slice()).ok()
}

pub fn describe(bytes: &[u8]) -> Result<(Leaf, Entry), LeafError> {
    let leaf = Leaf::decode(bytes)?;
    let e = match &leaf {
        Leaf::Transfer { intent, receipt } => {
            let i = intent_of(intent).unwrap_or_default();
            let r = TransferReceipt::decode(receipt.payload.as_slice()).unwrap_or_default();
            Entry {
                kind: "transfer",
                at_ms: i.created_at_ms,
                zones: vec![i.provider_zone.clone(), i.consumer_zone.clone()],
                data_class: class(i.data_class),
                decision: "allowed",
                transfer_id: i.transfer_id.as_slice().try_into().ok(),
                summary: format!(
                    "transfer {} {} -> {} {} under {} v{} for {}: {}{}",
                    hex::encode(&i.transfer_id),
                    i.provider_zone,
                    i.consumer_zone,
                    i.subject,
                    i.policy_id,
                    i.policy_version,
                    i.purpose,
                    if r.accepted { "received".to_string() } else { format!("received, not kept ({})", r.reason) },
                    ""
                ),
            }
        }
        Leaf::Refusal { at_ms, zone, other_zone, refusing, reason, method, data_class, policy_id, .. } => Entry {
            kind: "refusal",
            at_ms: *at_ms,
            zones: vec![zone.clone(), other_zone.clone()],
            data_class: data_class.clone(),
            decision: "refused",
            transfer_id: None,
            summary: {
                let policy = if policy_id.is_empty() { String::new() } else { format!(" (policy {policy_id})") };
                match refusing {
                    Refusing::RefusedPeer => format!("refusal: {zone} refused {other_zone} {method}: {reason}{policy}"),
                    Refusing::RefusedUser => {
                        format!("refusal: {zone} refused a user of {other_zone} {method}: {reason}{policy}")
                    }
                    Refusing::RefusedByPeer => {
                        format!("refusal: {other_zone} refused {zone} {method}: {reason}{policy}")
                    }
                }
            },
        },
        Leaf::Unacknowledged { intent, declared_at_ms } => {
            let i = intent_of(intent).unwrap_or_default();
            Entry {
                kind: "unacknowledged",
                at_ms: *declared_at_ms,
                zones: vec![i.provider_zone.clone(), i.consumer_zone.clone()],
                data_class: class(i.data_class),
                decision: "unacknowledged",
                transfer_id: i.transfer_id.as_slice().try_into().ok(),
                summary: format!(
                    "unacknowledged: {} -> {} {} (no receipt)",
                    i.provider_zone, i.consumer_zone, i.subject
                ),
            }
        }
        Leaf::Config { at_ms, what, id, version, digest } => Entry {
            kind: "config",
            at_ms: *at_ms,
            zones: vec![],
            data_class: String::new(),
            decision: "",
            transfer_id: None,
            summary: format!("installed {what} {id} v{version} ({})", &hex::encode(digest)[..16]),
        },
        Leaf::Deletion { at_ms, what, deadline_ms } => Entry {
            kind: "deletion",
            at_ms: *at_ms,
            zones: vec![],
            data_class: String::new(),
            decision: "",
            transfer_id: None,
            summary: format!("deleted {what} (due {deadline_ms})"),
        },
    };
    Ok((leaf, e))
}

/// The payload types of the two signed parts of a transfer leaf.
pub const INTENT_TYPE: &str = PayloadType::TRANSFER_INTENT;
pub const RECEIPT_TYPE: &str = PayloadType::TRANSFER_RECEIPT;
