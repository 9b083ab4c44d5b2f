//! How long one policy decision takes: the target is at most 5 µs (issue 4). A set of 50
//! installed policies, the negative list, and the usual shapes of request.
//!
//!   cargo bench -p ftz-policy --bench evaluation

use criterion::{Criterion, criterion_group, criterion_main};
use ftz_core::{
    SigningKey, ZoneId,
    envelope::{self, PayloadType},
};
use ftz_policy::exchange::{CompiledPolicy, NegativeList, PolicySet, Subject, TransferRequest, Usage};
use ftz_proto::{DataClass, ExchangePolicy, FieldAction, FieldRule, PolicyFilter, RateLimit};
use std::hint::black_box;

const NOW: i64 = 1_800_000_000_000;

fn policy(i: usize, key: &SigningKey) -> CompiledPolicy {
    let consumer = format!("zone{}", i % 10);
    let class = [DataClass::Certification, DataClass::InspectionResult, DataClass::IndustryData][i % 3];
    let field_rules = if class == DataClass::IndustryData {
        ["enterprise_uscc", "industry_code", "region", "period", "employment"]
            .iter()
            .map(|f| FieldRule { field: f.to_string(), action: FieldAction::Keep as i32, parameter: String::new() })
            .collect()
    } else {
        Vec::new()
    };
    let doc = ExchangePolicy {
        policy_id: format!("p{i:03}"),
        version: 1,
        previous_digest: vec![],
        provider_zone: "shanghai".into(),
        consumer_zones: vec![consumer],
        data_class: class as i32,
        filter: Some(PolicyFilter {
            record_types: vec!["AEO_ADVANCED".into(), "CCC".into()],
            hs_prefixes: vec![],
            industry_prefixes: vec![],
        }),
        purposes: vec!["verification".into(), "customs-clearance".into(), "statistics".into()],
        field_rules,
        aggregation: None,
        retention_ms: 86_400_000,
        onward_zones: vec![],
        rate_limit: Some(RateLimit { max_requests: 1000, per_ms: 60_000 }),
        valid_from_ms: NOW - 1,
        valid_until_ms: NOW + 86_400_000,
    };
    CompiledPolicy::compile(envelope::seal(PayloadType::EXCHANGE_POLICY, &doc, &[key])).expect("valid policy")
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::generate().expect("key").0;
    let mut set = PolicySet::default();
    for i in 0..50 {
        set.insert(policy(i, &key));
    }
    let sh = ZoneId::new("shanghai").expect("zone");
    set.set_negative_list(
        sh.clone(),
        NegativeList { fields: ["enterprise_name".to_string()].into(), ..Default::default() },
    );
    let consumer = ZoneId::new("zone3").expect("zone");
    let base = TransferRequest {
        provider: &sh,
        consumer: &consumer,
        class: DataClass::Certification,
        subject: Subject { record_type: Some("AEO_ADVANCED"), ..Default::default() },
        purpose: "verification",
        fields: &[],
        onward_to: None,
        now: NOW,
    };
    let usage = |_: &CompiledPolicy| Usage::default();
    c.bench_function("evaluate: allow a certification", |b| {
        b.iter(|| black_box(set.evaluate(black_box(&base), usage)))
    });
    let wrong_purpose = TransferRequest { purpose: "marketing", ..base };
    c.bench_function("evaluate: deny a purpose", |b| {
        b.iter(|| black_box(set.evaluate(black_box(&wrong_purpose), usage)))
    });
    let fields = ["industry_code", "period"];
    let rows = TransferRequest {
        class: DataClass::IndustryData,
        subject: Subject::default(),
        fields: &fields,
        consumer: &consumer,
        ..base
    };
    let zone5 = ZoneId::new("zone5").expect("zone");
    let rows = TransferRequest { consumer: &zone5, ..rows };
    c.bench_function("evaluate: industry fields", |b| b.iter(|| black_box(set.evaluate(black_box(&rows), usage))));
    let nobody = ZoneId::new("nobody").expect("zone");
    let none = TransferRequest { consumer: &nobody, ..base };
    c.bench_function("evaluate: no policy", |b| b.iter(|| black_box(set.evaluate(black_box(&none), usage))));
}

criterion_group!(benches, bench);
criterion_main!(benches);
