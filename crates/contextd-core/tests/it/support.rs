//! Shared strategies and helpers: hostile JSON, an in-memory key store, a tiny executor.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::task::{Context as TaskContext, Poll, Waker};

use contextd_core::crypto::{Indexer, Keyring, MasterKey};
use contextd_core::dictionary::base_dictionary;
use contextd_core::ids::{OrgId, Partition, Scope};
use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Map, Number, Value};

/// The property-test configuration: `cases` by default (kept modest so that CI stays fast),
/// or `PROPTEST_CASES` from the environment for a longer local run. Failures are reported with
/// their minimal input and kept as explicit regression tests, not in persistence files.
pub fn config(cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

// ----- an executor for futures that never wait -----

/// Runs a future to completion on this thread. The in-memory key store never pends, so a
/// no-op waker and a poll loop are all the keyring needs.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = TaskContext::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::yield_now();
    }
}

/// The in-memory key store now lives in the core.
pub use contextd_core::memory_keys::MemoryKeyStore as MemKeyStore;

/// The blind indexer of one lab partition over an in-memory key store (built once).
pub fn indexer() -> Indexer {
    static INDEXER: OnceLock<Indexer> = OnceLock::new();
    INDEXER
        .get_or_init(|| {
            let keyring = Keyring::new(MasterKey::generate(), Arc::new(MemKeyStore::default()), 16);
            let scope = Scope {
                org: OrgId::new(),
                partition: Partition::Lab,
            };
            block_on(keyring.create_partition_keys(scope)).expect("partition keys in memory");
            block_on(keyring.indexer(scope)).expect("an in-memory keyring yields an indexer")
        })
        .clone()
}

// ----- hostile text -----

/// Field ids of the base dictionary.
pub fn base_field_ids() -> Vec<String> {
    base_dictionary().0.into_iter().map(|f| f.id).collect()
}

/// Field set ids of the base dictionary.
pub fn base_fieldset_ids() -> Vec<String> {
    base_dictionary().1.into_iter().map(|s| s.id).collect()
}

/// Strings that hurt: any Unicode scalar (NULs and other controls included), lone combining
/// marks, RTL overrides, long runs, whitespace-only, SQL and JSON metacharacters.
pub fn hostile_string() -> BoxedStrategy<String> {
    prop_oneof![
        4 => any::<String>(),
        4 => prop::collection::vec(any::<char>(), 0..48).prop_map(String::from_iter),
        2 => prop::sample::select(vec![
            "",
            " ",
            "\u{0}",
            "a\u{0}b",
            "\u{202e}evil",
            "\u{feff}",
            "\u{130}\u{3a3}\u{307}",
            "İstanbul ΣΑΣ",
            "'; DROP TABLE objects; --",
            "\" OR 1=1 --",
            "%' OR '%'='",
            "\\u0000",
            "{\"$ne\": null}",
            "../../etc/passwd",
            "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🙂",
            "\r\n\t",
            "NaN",
            "Infinity",
            "-0",
            "1e999",
            "9999-12-31T23:59:59-23:59",
            "0000-01-01T00:00:00+23:59",
            "2026-02-30T00:00:00Z",
            "2026-01-01T00:00:60Z",
            "+1 (555) 010-0001",
        ])
        .prop_map(str::to_owned),
        1 => (any::<char>(), 1000usize..1100).prop_map(|(c, n)| c.to_string().repeat(n)),
        1 => (any::<char>(), 4000usize..4200).prop_map(|(c, n)| c.to_string().repeat(n)),
    ]
    .boxed()
}

/// Numbers at and beyond every boundary the validators care about.
pub fn hostile_number() -> BoxedStrategy<Number> {
    prop_oneof![
        any::<i64>().prop_map(Number::from),
        any::<u64>().prop_map(Number::from),
        any::<f64>().prop_filter_map("finite", Number::from_f64),
        prop::sample::select(vec![
            i64::MIN,
            i64::MAX,
            i64::from(i32::MIN) - 1,
            i64::from(i32::MAX) + 1,
            i64::from(i32::MIN),
            i64::from(i32::MAX),
            0,
            -1,
        ])
        .prop_map(Number::from),
        prop::sample::select(vec![u64::MAX, 1 << 63]).prop_map(Number::from),
        prop::sample::select(vec![f64::MAX, f64::MIN, f64::EPSILON, -0.0, 1e300, 5.0])
            .prop_filter_map("finite", Number::from_f64),
    ]
    .boxed()
}

/// A JSON leaf.
pub fn json_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        hostile_number().prop_map(Value::Number),
        hostile_string().prop_map(Value::String),
    ]
    .boxed()
}

/// Any JSON value of bounded depth (≤ 5 levels) and size (≤ 64 nodes).
pub fn json_value() -> BoxedStrategy<Value> {
    json_leaf()
        .prop_recursive(5, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec((json_key(), inner), 0..8)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
            ]
        })
        .boxed()
}

/// Object keys: mostly hostile strings, sometimes the names the decoders know.
pub fn json_key() -> BoxedStrategy<String> {
    prop_oneof![
        2 => hostile_string(),
        1 => prop::sample::select(vec![
            "type", "customerId", "parentId", "state", "mediaType", "detailType", "fieldsets",
            "data", "tags", "version", "id", "created", "lastUpdated", "contributors",
            "withheld", "match", "terms", "createdFrom", "createdTo", "updatedFrom",
            "updatedTo", "notExists", "limit", "cursor", "summary", "description", "dataType",
            "classification", "searchable", "maxLength", "enumValues", "translations", "base",
            "fields", "inactiveFields",
        ])
        .prop_map(str::to_owned),
    ]
    .boxed()
}

/// JSON *text* a `Value` can't express: numbers beyond every machine type, nesting past
/// serde_json's recursion limit, truncated documents, duplicate keys, BOMs, invalid escapes.
pub fn hostile_json_text() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        (1usize..3000).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()),
        (1usize..3000).prop_map(|n| "{\"data\":".repeat(n).into_bytes()),
        (1usize..400, 0usize..3).prop_map(|(n, k)| {
            let inner = format!("{}1{}", "[".repeat(n), "]".repeat(n));
            match k {
                0 => format!("{{\"data\":{{\"Context_First_Name\":{inner}}}}}"),
                1 => format!("{{\"terms\":{{\"tags\":{inner}}}}}"),
                _ => format!("{{\"fieldsets\":{inner}}}"),
            }
            .into_bytes()
        }),
        prop::sample::select(vec![
            "123456789012345678901234567890123456789",
            "-123456789012345678901234567890123456789",
            "1e400",
            "-1e400",
            "1e-400",
            "0.0000000000000000000000000000001e-330",
            "18446744073709551616",
            "-9223372036854775809",
        ])
        .prop_flat_map(|n| {
            prop::sample::select(vec![
                format!("{{\"version\":{n}}}"),
                format!("{{\"limit\":{n}}}"),
                format!("{{\"terms\":{{\"cccRatingPoints\":{n}}}}}"),
                format!("{{\"terms\":{{\"id\":[{n}]}}}}"),
                format!(
                    "{{\"fieldsets\":[\"cisco.base.rating\"],\"data\":{{\"cccRatingPoints\":{n}}}}}"
                ),
                format!("{{\"id\":\"f\",\"dataType\":\"long\",\"classification\":\"PII\",\"maxLength\":{n}}}"),
            ])
        })
        .prop_map(String::into_bytes),
        prop::sample::select(vec![
            "",
            "{",
            "}",
            "null",
            "[]",
            "\"x\"",
            "\u{feff}{}",
            "{\"data\":{},\"data\":{}}",
            "{\"tags\":[\"a\"],\"tags\":[\"b\"]}",
            "{\"data\":{\"Context_First_Name\":\"\\ud800\"}}",
            "{\"data\":{\"Context_First_Name\":\"\\u00\"}}",
            "{\"data\":{\"Context_First_Name\":\"a\u{0}b\"}}",
            "{\"terms\":{\"\\u0000\":\"x\"}}",
            "{\"limit\":-1}",
            "{\"limit\":1.5}",
            "{\"limit\":null}",
            "{\"summary\":\"true\"}",
            "{\"match\":\"ALL\"}",
            "{\"fieldsets\":\"cisco.base.customer\"}",
            "{\"version\":1.0}",
            "{\"version\":true}",
            "{} {}",
            "{}\u{0}",
            "NaN",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
    ]
    .boxed()
}

/// Raw request bodies: JSON values, hostile JSON text, arbitrary bytes, and JSON values with
/// one byte flipped or cut short.
pub fn hostile_body() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        3 => json_value().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        2 => hostile_json_text(),
        2 => prop::collection::vec(any::<u8>(), 0..256),
        1 => (json_value(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(v, i, b)| {
            let mut bytes = serde_json::to_vec(&v).unwrap_or_default();
            if !bytes.is_empty() {
                let at = i.index(bytes.len());
                bytes[at] = b;
            }
            bytes
        }),
        1 => (json_value(), any::<prop::sample::Index>()).prop_map(|(v, i)| {
            let bytes = serde_json::to_vec(&v).unwrap_or_default();
            let at = i.index(bytes.len() + 1);
            bytes[..at].to_vec()
        }),
    ]
    .boxed()
}
