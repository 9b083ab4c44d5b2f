//! Envelope decoding and verification: any bytes, decoded, verified against a fixed key and
//! opened as every payload type the system uses. Must never panic.
#![no_main]

use ftz_core::{VerifyingKey, envelope, envelope::PayloadType};
use ftz_proto::{Certification, Envelope, TransferIntent};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(env) = Envelope::decode(data) else { return };
    // A public key only (the C2SP signed-note example's): no private key in the repository.
    let vk = VerifyingKey::from_bytes(&[
        0x5c, 0xd9, 0x07, 0x14, 0x3c, 0x38, 0x4c, 0x41, 0xe8, 0x30, 0xc5, 0xbc, 0xe1, 0x2a, 0xa8, 0x81, 0x7e, 0xc5,
        0x64, 0x9a, 0xaa, 0xbf, 0x2c, 0x31, 0x38, 0x8b, 0x35, 0xb2, 0xd7, 0x44, 0xd6,
        0x00,
    ])
    .ok()
    .map(|k| (k.key_id(), k));
    for t in [PayloadType::CERTIFICATION, PayloadType::TRANSFER_INTENT, PayloadType::FEDERATION_REGISTRY] {
        let _ = envelope::verify(&env, t, |id| vk.filter(|(i, _)| i == id).map(|(_, k)| k));
    }
    let _ = envelope::decode_payload::<Certification>(&env, PayloadType::CERTIFICATION);
    let _ = envelope::decode_payload::<TransferIntent>(&env, PayloadType::TRANSFER_INTENT);
    let _ = envelope::pae(&env.payload_type, &env.payload);
});
