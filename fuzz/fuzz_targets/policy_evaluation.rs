//! Policy evaluation: any bytes as an exchange policy document; if it compiles, requests built
//! from its own fields and from fixed ones are evaluated. Must never panic, and a policy never
//! allows a purpose it does not name.
#![no_main]

use ftz_core::{ZoneId, envelope::PayloadType};
use ftz_policy::exchange::{CompiledPolicy, Decision, PolicySet, Subject, TransferRequest, Usage};
use ftz_proto::{DataClass, Envelope, ExchangePolicy};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = ExchangePolicy::decode(data) else { return };
    let env = Envelope { payload_type: PayloadType::EXCHANGE_POLICY.into(), payload: doc.encode_to_vec(), signatures: vec![] };
    let Ok(policy) = CompiledPolicy::compile(env) else { return };
    let provider = policy.provider.clone();
    let consumer = policy.consumers.iter().next().cloned().unwrap_or_else(|| ZoneId::new("hainan").unwrap());
    let class = policy.class;
    let mut set = PolicySet::default();
    set.insert(policy);
    let purposes: Vec<&str> = doc.purposes.iter().map(String::as_str).chain(["marketing", ""]).collect();
    for purpose in purposes {
        for at in [doc.valid_from_ms, doc.valid_until_ms, 0, i64::MAX] {
            for class in [class, DataClass::IndustryData] {
                let req = TransferRequest {
                    provider: &provider,
                    consumer: &consumer,
                    class,
                    subject: Subject { record_type: Some("AEO_ADVANCED"), hs_code: Some("850760"), industry_code: Some("C38") },
                    purpose,
                    fields: &["industry_code", "enterprise_name"],
                    onward_to: None,
                    now: at,
                };
                let d = set.evaluate(&req, |_| Usage::default());
                if let Decision::Allow { .. } = d {
                    assert!(doc.purposes.iter().any(|p| p == purpose), "allowed purpose {purpose:?} not named");
                }
            }
        }
    }
});
