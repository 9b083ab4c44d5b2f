//! What a signed intent or receipt may hold before this node logs it. Both parts of a transfer
//! leaf come from the other zone on one side of the exchange, and an auditor, an export and
//! every later listing read them back: a field of any size, or a second signature the log would
//! not keep, would let a dishonest zone poison the log or deny the transfer later. So each part
//! carries exactly one signature (the one that verified is the one logged), every field is
//! bounded, and a refusal in a receipt is one of the stable reason codes.

use ftz_core::{Reason, ZoneId};
use ftz_proto::{Envelope, TransferIntent, TransferReceipt};

use crate::{error::ApiError, records::check_purpose};

/// The largest encoded intent or receipt accepted.
pub(crate) const MAX_PART_BYTES: usize = 2048;
/// Ids (policies) and method names.
const MAX_NAME: usize = 128;
/// What a transfer is about ("record shanghai/SH-AEO-1").
pub(crate) const MAX_SUBJECT: usize = 256;

fn refuse(what: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::new(Reason::TransferInvalid, format!("{what}: {why}"))
}

/// The part carries exactly one signature and a payload of bounded size.
pub(crate) fn one_signature(env: &Envelope, what: &str) -> Result<(), ApiError> {
    if env.signatures.len() != 1 {
        return Err(refuse(what, format!("carries {} signatures; exactly one is logged", env.signatures.len())));
    }
    if env.payload.len() > MAX_PART_BYTES {
        return Err(refuse(what, format!("is {} bytes, at most {MAX_PART_BYTES}", env.payload.len())));
    }
    Ok(())
}

fn zone(what: &str, field: &str, z: &str) -> Result<(), ApiError> {
    ZoneId::new(z).map(|_| ()).map_err(|e| refuse(what, format!("{field}: {e}")))
}

fn bounded(what: &str, field: &str, v: &str, max: usize) -> Result<(), ApiError> {
    if v.len() > max || v.chars().any(char::is_control) {
        return Err(refuse(what, format!("{field} must be at most {max} bytes of printable text")));
    }
    Ok(())
}

/// Every field of an intent within its bounds.
pub(crate) fn check_intent(i: &TransferIntent) -> Result<(), ApiError> {
    let what = "the intent";
    zone(what, "provider_zone", &i.provider_zone)?;
    zone(what, "consumer_zone", &i.consumer_zone)?;
    bounded(what, "policy_id", &i.policy_id, MAX_NAME)?;
    bounded(what, "method", &i.method, MAX_NAME)?;
    bounded(what, "subject", &i.subject, MAX_SUBJECT)?;
    check_purpose(&i.purpose).map_err(|e| refuse(what, e.message))?;
    if i.transfer_id.len() != 16 || i.policy_digest.len() != 32 || i.payload_commitment.len() != 32 {
        return Err(refuse(what, "transfer id, policy digest or payload commitment of the wrong length"));
    }
    Ok(())
}

/// Every field of a receipt within its bounds; a refusal names a stable reason code.
pub(crate) fn check_receipt(r: &TransferReceipt) -> Result<(), ApiError> {
    let what = "the receipt";
    zone(what, "consumer_zone", &r.consumer_zone)?;
    if r.transfer_id.len() != 16 || r.intent_digest.len() != 32 {
        return Err(refuse(what, "transfer id or intent digest of the wrong length"));
    }
    match (r.accepted, r.reason.as_str()) {
        (true, "") => Ok(()),
        (true, _) => Err(refuse(what, "an accepted transfer gives no reason")),
        (false, code) if Reason::from_code(code).is_some() => Ok(()),
        (false, _) => Err(refuse(what, "a refusal must name one of the reason codes")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt() -> TransferReceipt {
        TransferReceipt {
            transfer_id: vec![1; 16],
            intent_digest: vec![2; 32],
            consumer_zone: "hainan".into(),
            received_at_ms: 1,
            accepted: true,
            reason: String::new(),
        }
    }

    #[test]
    fn receipts_name_a_reason_code_or_none() {
        assert!(check_receipt(&receipt()).is_ok());
        let refused = TransferReceipt { accepted: false, reason: "NO_POLICY".into(), ..receipt() };
        assert!(check_receipt(&refused).is_ok());
        for bad in [
            TransferReceipt { accepted: false, reason: "x".repeat(70_000), ..receipt() },
            TransferReceipt { accepted: true, reason: "NO_POLICY".into(), ..receipt() },
            TransferReceipt { consumer_zone: "Not A Zone".into(), ..receipt() },
            TransferReceipt { transfer_id: vec![1; 17], ..receipt() },
        ] {
            assert_eq!(check_receipt(&bad).unwrap_err().reason, Reason::TransferInvalid);
        }
    }

    #[test]
    fn parts_carry_exactly_one_signature_and_bounded_payloads() {
        let sig = ftz_proto::Signature { key_id: vec![0; 16], sig: vec![0; 64] };
        let env = |n: usize, len: usize| Envelope {
            payload_type: "t".into(),
            payload: vec![0; len],
            signatures: vec![sig.clone(); n],
        };
        assert!(one_signature(&env(1, 10), "part").is_ok());
        assert!(one_signature(&env(0, 10), "part").is_err());
        assert!(one_signature(&env(2, 10), "part").is_err());
        assert!(one_signature(&env(1, MAX_PART_BYTES + 1), "part").is_err());
    }
}
