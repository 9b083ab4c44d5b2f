//! Agreement, exchange policy and negative list verification: any bytes as a signed envelope,
//! through each document's parser and checks. Must never panic.
#![no_main]

use ftz_proto::Envelope;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(env) = Envelope::decode(data) else { return };
    let _ = ftz_policy::Agreement::parse(env.clone());
    let _ = ftz_policy::exchange::CompiledPolicy::compile(env.clone());
    let _ = ftz_policy::exchange::decode_negative_list(&env);
});
