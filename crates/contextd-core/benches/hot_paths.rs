//! Micro-benchmarks of the hot paths of a create, a lookup and a timeline read, so that a
//! regression shows up in review: `cargo bench -p contextd-core --bench hot_paths`.
//!
//! - validation of a typical customer against the base dictionary;
//! - sealing and opening a value (AES-256-GCM under a customer key) and its blind-index token;
//! - JSON encode and decode of a whole customer object;
//! - search planning of a lookup by phone.
//!
//! The keyring runs over the in-memory key store, so nothing here touches a disk.

use std::collections::BTreeMap;
use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};

use chrono::Utc;
use contextd_core::crypto::{normalize, Keyring, MasterKey};
use contextd_core::dictionary::Dictionary;
use contextd_core::ids::{ObjectId, OrgId, Partition, Scope};
use contextd_core::memory_keys::MemoryKeyStore;
use contextd_core::object::{Contributor, ContributorType, State};
use contextd_core::search::{self, SealedAccess, SearchRequest};
use contextd_core::{ContextObject, Kind};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};

// ----- an executor for futures that never wait -----

/// Runs a future to completion on this thread. The in-memory key store never pends, so a
/// no-op waker and a poll loop are all the keyring needs.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = TaskContext::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

fn customer_data() -> BTreeMap<String, Value> {
    let data = json!({
        "Context_First_Name": "Erik",
        "Context_Last_Name": "Andersen",
        "Context_Mobile_Phone": "+1 (555) 010-0001",
        "Context_Home_Phone": "555.010.0002",
        "Context_Home_Email": "erik.andersen@example.com",
        "Context_Street_Address_1": "12 Storgata",
        "Context_City": "Oslo",
        "Context_Country": "NO",
        "Context_ZIP": "0155",
        "Context_Customer_External_ID": "CRM-000000001",
        "Context_Preferred_Language": "nb_NO",
    });
    match data {
        Value::Object(map) => map.into_iter().collect(),
        _ => BTreeMap::new(),
    }
}

fn scope() -> Scope {
    Scope {
        org: OrgId::new(),
        partition: Partition::Lab,
    }
}

fn validation(c: &mut Criterion) {
    let dictionary = Dictionary::new(Vec::new(), Vec::new());
    let fieldsets = vec!["cisco.base.customer".to_owned()];
    let data = customer_data();
    c.bench_function("validate_data/customer", |b| {
        b.iter(|| dictionary.validate_data(black_box(&fieldsets), black_box(&data)))
    });
}

fn crypto(c: &mut Criterion) {
    let scope = scope();
    let keyring = Keyring::new(
        MasterKey::generate(),
        Arc::new(MemoryKeyStore::default()),
        16,
    );
    block_on(keyring.create_partition_keys(scope)).expect("partition keys");
    let customer = ObjectId::new();
    let keys = block_on(keyring.create_customer_key(scope, customer)).expect("customer key");
    let indexer = block_on(keyring.indexer(scope)).expect("indexer");
    let object = ObjectId::new();
    let plain = serde_json::to_vec(&json!("+1 (555) 010-0001")).expect("json");
    let sealed = keys
        .seal(object, "Context_Mobile_Phone", &plain)
        .expect("seal");
    c.bench_function("seal/phone", |b| {
        b.iter(|| keys.seal(black_box(object), "Context_Mobile_Phone", black_box(&plain)))
    });
    c.bench_function("open/phone", |b| {
        b.iter(|| {
            keys.open(
                black_box(object),
                "Context_Mobile_Phone",
                black_box(&sealed),
            )
        })
    });
    let value = json!("+1 (555) 010-0001");
    c.bench_function("blind_index/phone", |b| {
        b.iter(|| {
            let n = normalize("Context_Mobile_Phone", black_box(&value)).unwrap_or_default();
            indexer.value("Context_Mobile_Phone", &n)
        })
    });
    c.bench_function("object_keys/cached_customer", |b| {
        b.iter(|| block_on(keyring.object_keys(scope, Some(black_box(customer)))))
    });
}

fn json_codec(c: &mut Criterion) {
    let now = Utc::now();
    let object = ContextObject {
        id: ObjectId::new(),
        kind: Kind::Customer,
        customer_id: None,
        parent_id: None,
        state: State::Active,
        media_type: None,
        detail_type: None,
        fieldsets: vec!["cisco.base.customer".to_owned()],
        data: customer_data(),
        tags: vec!["vip".to_owned()],
        contributors: vec![Contributor {
            id: ObjectId::new().to_string(),
            kind: ContributorType::Machine,
        }],
        withheld: Vec::new(),
        created: now,
        last_updated: now,
        version: 1,
    };
    let bytes = serde_json::to_vec(&object).expect("encode");
    c.bench_function("json/encode_customer", |b| {
        b.iter(|| serde_json::to_vec(black_box(&object)))
    });
    c.bench_function("json/decode_customer", |b| {
        b.iter(|| serde_json::from_slice::<ContextObject>(black_box(&bytes)))
    });
}

fn search_planning(c: &mut Criterion) {
    let scope = scope();
    let keyring = Keyring::new(
        MasterKey::generate(),
        Arc::new(MemoryKeyStore::default()),
        16,
    );
    block_on(keyring.create_partition_keys(scope)).expect("partition keys");
    let indexer = block_on(keyring.indexer(scope)).expect("indexer");
    let dictionary = Dictionary::new(Vec::new(), Vec::new());
    let body = br#"{"terms": {"Context_Mobile_Phone": ["1.555.010.0001"]}}"#;
    let request: SearchRequest = serde_json::from_slice(body).expect("request");
    let since = Utc::now();
    c.bench_function("search/decode_lookup_body", |b| {
        b.iter(|| serde_json::from_slice::<SearchRequest>(black_box(body)))
    });
    c.bench_function("search/plan_lookup_by_phone", |b| {
        b.iter(|| {
            search::plan(
                Kind::Customer,
                black_box(&request),
                &dictionary,
                &indexer,
                SealedAccess::Allowed,
                since,
            )
        })
    });
}

criterion_group!(benches, validation, crypto, json_codec, search_planning);
criterion_main!(benches);
