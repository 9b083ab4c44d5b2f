//! The gRPC services. Each only runs after `auth` has authenticated and authorized the caller.

pub mod admin;
pub mod audit;
pub mod issuer;
pub mod peer;
pub mod verify;

use ftz_core::registry::{Zone, ZoneKey};
use ftz_proto::{KeySummary, ZoneSummary};

pub(crate) fn key_summary(k: &ZoneKey) -> KeySummary {
    KeySummary {
        purpose: k.purpose as i32,
        key_id: k.id.to_string(),
        public_key: k.key.as_bytes().to_vec(),
        valid_from_ms: k.valid_from_ms,
        valid_until_ms: k.valid_until_ms.unwrap_or(0),
    }
}

pub(crate) fn zone_summary(z: &Zone) -> ZoneSummary {
    ZoneSummary {
        zone_id: z.id.to_string(),
        display_name: z.display_name.clone(),
        endpoint: z.endpoint.clone(),
        valid_from_ms: z.valid_from_ms,
        valid_until_ms: z.valid_until_ms,
        keys: z.keys.iter().map(key_summary).collect(),
    }
}
