//! Hostile input over real HTTP (docs/security.md, "Bad input"): property tests that throw
//! generated bodies, raw bytes, path ids and query strings at one running server per test.
//!
//! Every response must be below 500, every 4xx problem JSON, and nothing may be written
//! partially: each case reads the existing customer and the customer count before and after
//! its request; the customer changes only with a 2xx (and then becomes exactly what the
//! response said), and the count grows only with a 201 from `POST /v1/customers`. At the end
//! of the run the count is 1 + the number of 201s seen (shrinking runs included).
//!
//! proptest's macro doesn't drive async code, so each test runs a `TestRunner` by hand and
//! blocks on the server calls inside it (multi-threaded runtime, `block_in_place`).
//! `PROPTEST_CASES=N` runs N cases per test instead of the default.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::support::{Resp, TestServer};

const CASES: u32 = 150;
/// The server's default body limit (`ServerConfig::body_limit`).
const BODY_LIMIT: usize = 1024 * 1024;

/// Stands for the existing customer's id in generated bodies and paths.
const CUSTOMER: &str = "$CUSTOMER";
/// Stands for the existing customer's current version in generated bodies and headers.
const VERSION: &str = "$VERSION";

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(CASES);
    Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 256,
        ..Config::default()
    }
}

// ----- generated input -----

/// A request body: bytes, shown as escaped text when a case fails.
#[derive(Clone)]
struct Body(Vec<u8>);

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.len() > 2048 {
            write!(
                f,
                "Body({} bytes: \"{}…\")",
                self.0.len(),
                self.0[..256].escape_ascii()
            )
        } else {
            write!(f, "Body(b\"{}\")", self.0.escape_ascii())
        }
    }
}

fn hostile_string() -> BoxedStrategy<String> {
    prop_oneof![
        3 => any::<String>(),
        3 => prop::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter),
        2 => prop::sample::select(vec![
            "",
            " ",
            "\u{0}",
            "a\u{0}b",
            "\u{202e}evil",
            "'; DROP TABLE objects; --",
            "\" OR 1=1 --",
            "%' OR '%'='",
            "{\"$ne\": null}",
            "../../etc/passwd",
            "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🙂",
            "\r\n",
            "NaN",
            "1e999",
            "+1 (555) 010-0001",
            "en_US",
            "active",
            "closed",
            "voice",
            "comment",
            "9999-12-31T23:59:59-23:59",
        ])
        .prop_map(str::to_owned),
        1 => (any::<char>(), 1000usize..1100).prop_map(|(c, n)| c.to_string().repeat(n)),
        1 => Just(CUSTOMER.to_owned()),
    ]
    .boxed()
}

fn leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        prop::num::f64::ANY.prop_map(|f| json!(f)),
        prop::sample::select(vec![
            i64::from(i32::MAX) + 1,
            i64::from(i32::MIN),
            i64::MIN,
            0,
            -1,
            5
        ])
        .prop_map(|n| json!(n)),
        hostile_string().prop_map(Value::String),
    ]
    .boxed()
}

fn json_value() -> BoxedStrategy<Value> {
    leaf()
        .prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec((hostile_string(), inner), 0..6)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
            ]
        })
        .boxed()
}

fn base_fields() -> Vec<&'static str> {
    vec![
        "Context_First_Name",
        "Context_Last_Name",
        "Context_Work_Email",
        "Context_Mobile_Phone",
        "Context_Customer_External_ID",
        "Context_Preferred_Language",
        "Context_Title",
        "Context_Notes",
        "Context_POD_Activity_Link",
        "Context_POD_Source_Phone",
        "Context_Visible",
        "cccRatingPoints",
    ]
}

fn fieldsets() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => prop::collection::vec(
            prop_oneof![
                4 => prop::sample::select(vec![
                    "cisco.base.customer",
                    "cisco.base.pod",
                    "cisco.base.rating",
                    "cisco.base.comment",
                    "cisco.base.request",
                ])
                .prop_map(str::to_owned),
                1 => hostile_string(),
            ],
            0..4,
        )
        .prop_map(|v| json!(v)),
        1 => json_value(),
    ]
    .boxed()
}

fn data() -> BoxedStrategy<Value> {
    prop_oneof![
        5 => prop::collection::vec(
            (
                prop_oneof![
                    5 => prop::sample::select(base_fields()).prop_map(str::to_owned),
                    1 => hostile_string(),
                ],
                prop_oneof![3 => leaf(), 1 => json_value()],
            ),
            0..5,
        )
        .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        1 => json_value(),
    ]
    .boxed()
}

fn tags() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => prop::collection::vec(hostile_string(), 0..5).prop_map(|v| json!(v)),
        1 => (0usize..2).prop_map(|extra| json!(vec!["t"; 100 + extra])),
        1 => json_value(),
    ]
    .boxed()
}

fn an_id() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => Just(json!(CUSTOMER)),
        2 => any::<u128>().prop_map(|n| json!(uuid::Uuid::from_u128(n).to_string())),
        1 => Just(Value::Null),
        1 => leaf(),
    ]
    .boxed()
}

fn text_of(pool: Vec<&'static str>) -> BoxedStrategy<Value> {
    prop_oneof![
        4 => prop::sample::select(pool).prop_map(|s| json!(s)),
        1 => leaf(),
    ]
    .boxed()
}

fn version() -> BoxedStrategy<Value> {
    prop_oneof![4 => Just(json!(VERSION)), 1 => leaf()].boxed()
}

/// An object body shaped like `ObjectInput` (or a merge patch), each member plausible or
/// hostile, plus stray members.
fn object_body() -> BoxedStrategy<Value> {
    (
        (
            prop::option::of(fieldsets()),
            prop::option::of(data()),
            prop::option::of(tags()),
            prop::option::of(text_of(vec!["active", "closed", "ACTIVE", ""])),
        ),
        (
            prop::option::weighted(0.3, an_id()),
            prop::option::weighted(0.2, an_id()),
            prop::option::weighted(0.3, text_of(vec!["voice", "chat", "Email", "pod"])),
            prop::option::weighted(0.2, text_of(vec!["comment", "feedback"])),
            prop::option::weighted(0.6, version()),
            prop::option::weighted(0.2, text_of(vec!["customer", "activity", "request"])),
        ),
        prop::collection::vec((hostile_string(), json_value()), 0..2),
        0u8..10,
    )
        .prop_map(
            |((fs, data, tags, state), (cust, parent, media, detail, ver, kind), extra, junk)| {
                let mut m = Map::new();
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        m.insert(k.to_owned(), v);
                    }
                };
                put("fieldsets", fs);
                put("data", data);
                put("tags", tags);
                put("state", state);
                put("customerId", cust);
                put("parentId", parent);
                put("mediaType", media);
                put("detailType", detail);
                put("version", ver);
                put("type", kind);
                // Stray members now and then: unknown fields must be refused.
                if junk == 0 {
                    for (k, v) in extra {
                        m.insert(k, v);
                    }
                }
                Value::Object(m)
            },
        )
        .boxed()
}

/// The base field sets and their fields, with a plausible value for each field's type.
fn base_sets() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        (
            "cisco.base.customer",
            vec![
                "Context_First_Name",
                "Context_Last_Name",
                "Context_Work_Email",
                "Context_Mobile_Phone",
                "Context_City",
                "Context_Customer_External_ID",
                "Context_Preferred_Language",
            ],
        ),
        (
            "cisco.base.request",
            vec!["Context_Title", "Context_Description"],
        ),
        (
            "cisco.base.pod",
            vec![
                "Context_Notes",
                "Context_POD_Activity_Link",
                "Context_POD_Source_Phone",
            ],
        ),
        (
            "cisco.base.comment",
            vec!["Context_Comment", "Context_Visible"],
        ),
        ("cisco.base.rating", vec!["cccRatingPoints"]),
    ]
}

/// A value that fits the base field `field`.
fn fitting_value(field: &str) -> BoxedStrategy<Value> {
    match field {
        "Context_Visible" => any::<bool>().prop_map(Value::Bool).boxed(),
        "cccRatingPoints" => any::<i32>().prop_map(|n| json!(n)).boxed(),
        "Context_Preferred_Language" => prop::sample::select(vec!["en_US", "fr_FR", "ja_JP"])
            .prop_map(|s| json!(s))
            .boxed(),
        _ => prop_oneof![
            3 => "[A-Za-z0-9 .@+()-]{1,24}".prop_map(Value::String),
            1 => hostile_string().prop_map(Value::String),
        ]
        .boxed(),
    }
}

/// A valid body of a customer (with a version, for `PUT`), or of an activity of the existing
/// customer, or a valid merge patch: most bodies the server accepts, so that writes happen.
fn valid_body(kind: &'static str) -> BoxedStrategy<Value> {
    let sets = prop::sample::subsequence(base_sets(), 0..=3);
    (
        sets,
        prop::collection::vec((any::<prop::sample::Index>(), any::<u64>()), 0..4),
        prop::collection::vec("[a-z]{1,8}", 0..3),
        any::<bool>(),
        prop::sample::select(vec!["voice", "chat", "email", "web"]),
    )
        .prop_flat_map(move |(mut sets, picks, tags, flag, media)| {
            // A customer's own fields (it has some already) need the customer set.
            if kind == "customer" && !sets.iter().any(|(n, _)| *n == "cisco.base.customer") && !flag
            {
                sets.insert(0, base_sets().swap_remove(0));
            }
            let names: Vec<&'static str> = sets.iter().map(|(n, _)| *n).collect();
            let fields: Vec<&'static str> = sets.iter().flat_map(|(_, f)| f.clone()).collect();
            let chosen: Vec<&'static str> = if fields.is_empty() {
                Vec::new()
            } else {
                picks
                    .iter()
                    .map(|(i, _)| fields[i.index(fields.len())])
                    .collect()
            };
            let values: Vec<BoxedStrategy<Value>> =
                chosen.iter().map(|f| fitting_value(f)).collect();
            (Just((names, chosen, tags, flag, media)), values)
        })
        .prop_map(move |((names, chosen, tags, flag, media), values)| {
            let data: Map<String, Value> =
                chosen.into_iter().map(str::to_owned).zip(values).collect();
            let versioned = !tags.is_empty() || flag;
            let mut body = json!({"fieldsets": names, "data": data, "tags": tags});
            match kind {
                "activity" => {
                    body["mediaType"] = json!(media);
                    if flag {
                        body["customerId"] = json!(CUSTOMER);
                    }
                }
                _ => {
                    if versioned {
                        body["version"] = json!(VERSION);
                    }
                }
            }
            body
        })
        .boxed()
}

/// One thing wrong with an otherwise valid body.
#[derive(Clone, Debug)]
enum Mutation {
    None,
    Member(String, Value),
    Remove(String),
    DataValue(String, Value),
}

/// A valid body of `kind`, with at most one member bent.
fn mutated_body(kind: &'static str) -> BoxedStrategy<Value> {
    let member = prop::sample::select(vec![
        "fieldsets",
        "data",
        "tags",
        "state",
        "customerId",
        "parentId",
        "mediaType",
        "detailType",
        "version",
        "type",
        "id",
        "created",
        "lastUpdated",
        "contributors",
        "withheld",
    ])
    .prop_map(str::to_owned);
    let mutation = prop_oneof![
        4 => Just(Mutation::None),
        2 => (
            prop_oneof![3 => member.clone(), 1 => hostile_string()],
            prop_oneof![3 => leaf(), 1 => json_value()]
        )
            .prop_map(|(k, v)| Mutation::Member(k, v)),
        1 => member.prop_map(Mutation::Remove),
        2 => (
            prop_oneof![
                3 => prop::sample::select(base_fields()).prop_map(str::to_owned),
                1 => hostile_string(),
            ],
            prop_oneof![3 => leaf(), 1 => json_value()]
        )
            .prop_map(|(k, v)| Mutation::DataValue(k, v)),
    ];
    (valid_body(kind), mutation)
        .prop_map(|(mut body, mutation)| {
            match mutation {
                Mutation::None => {}
                Mutation::Member(k, v) => {
                    body[k.as_str()] = v;
                }
                Mutation::Remove(k) => {
                    if let Some(o) = body.as_object_mut() {
                        o.remove(&k);
                    }
                }
                Mutation::DataValue(k, v) => {
                    body["data"][k.as_str()] = v;
                }
            }
            body
        })
        .boxed()
}

fn customer_body() -> BoxedStrategy<Value> {
    prop_oneof![1 => object_body(), 2 => mutated_body("customer")].boxed()
}

fn activity_body() -> BoxedStrategy<Value> {
    prop_oneof![1 => object_body(), 2 => mutated_body("activity")].boxed()
}

/// A valid search, its values hostile text where text is allowed (injection attempts reach
/// the store), its cursor forged at the edges of time, its dates at the edges of the calendar.
fn valid_search_body() -> BoxedStrategy<Value> {
    let text = prop::collection::vec(
        hostile_string().prop_filter("≤ 1024 chars", |s| s.chars().count() <= 1024),
        1..4,
    )
    .prop_map(|v| json!(v));
    let term = prop_oneof![
        3 => (
            prop::sample::select(vec![
                "Context_First_Name", "Context_Mobile_Phone", "Context_City", "Context_Notes",
                "Context_POD_Activity_Link", "tags", "contributor",
            ]),
            text,
        )
            .prop_map(|(k, v)| (k.to_owned(), v)),
        1 => (prop::sample::select(vec!["id", "customerId", "parentId"]), an_id().prop_filter("a string", Value::is_string))
            .prop_map(|(k, v)| (k.to_owned(), v)),
        1 => prop::sample::select(vec![
            ("state", json!(["active", "CLOSED"])),
            ("mediaType", json!(["voice", "chat"])),
            ("cccRatingPoints", json!([5, "-7", i32::MAX])),
            ("Context_Visible", json!([true, "false"])),
            ("Context_Preferred_Language", json!("en_US")),
        ])
        .prop_map(|(k, v)| (k.to_owned(), v)),
    ];
    let date = prop_oneof![
        Just("2026-01-01T00:00:00Z"),
        Just("0000-01-01T00:00:00Z"),
        Just("9999-12-31T23:59:59.999999999Z"),
        Just("9999-12-31T23:59:59-23:59"),
        Just("0000-01-01T00:00:00+23:59"),
    ];
    (
        prop::collection::vec(term, 0..4),
        any::<bool>(),
        prop::option::weighted(0.3, (date.clone(), date)),
        prop::option::of(1u64..=200),
        prop::option::weighted(0.4, cursor()),
        any::<bool>(),
    )
        .prop_map(|(terms, any_mode, range, limit, cursor, summary)| {
            let terms: Map<String, Value> = terms.into_iter().collect();
            let mut body = json!({"terms": terms, "match": if any_mode { "any" } else { "all" }, "summary": summary});
            if let Some((from, to)) = range {
                body["createdFrom"] = json!(from);
                body["updatedTo"] = json!(to);
            }
            if let Some(l) = limit {
                body["limit"] = json!(l);
            }
            if let Some(c) = cursor {
                body["cursor"] = json!(c);
            }
            body
        })
        .boxed()
}

/// A search body shaped like `SearchRequest`, each member plausible or hostile.
fn search_body() -> BoxedStrategy<Value> {
    let key = prop_oneof![
        4 => prop::sample::select(vec![
            "id", "customerId", "parentId", "tags", "state", "mediaType", "contributor",
            "Context_First_Name", "Context_Mobile_Phone", "Context_Preferred_Language",
            "cccRatingPoints", "Context_Visible", "nope",
        ])
        .prop_map(str::to_owned),
        1 => hostile_string(),
    ];
    let values = prop_oneof![
        3 => leaf(),
        3 => prop::collection::vec(leaf(), 0..4).prop_map(Value::Array),
        1 => an_id(),
        1 => (250usize..260).prop_map(|n| json!(vec!["x"; n])),
        1 => json_value(),
    ];
    let date = prop_oneof![
        Just(json!("2026-01-01T00:00:00Z")),
        Just(json!("9999-12-31T23:59:59-23:59")),
        Just(json!("0000-01-01T00:00:00+23:59")),
        Just(json!("2026-13-01T00:00:00Z")),
        leaf(),
    ];
    (
        prop::option::of(text_of(vec!["all", "any", "ALL"])),
        prop::option::of(prop::collection::btree_map(key, values, 0..4)),
        (
            prop::option::weighted(0.2, date.clone()),
            prop::option::weighted(0.2, date.clone()),
            prop::option::weighted(0.2, date.clone()),
            prop::option::weighted(0.2, date),
        ),
        prop::option::weighted(0.2, json_value()),
        prop::option::of(prop_oneof![
            (0u64..4).prop_map(|n| json!(n)),
            (198u64..203).prop_map(|n| json!(n)),
            (99_998u64..100_003).prop_map(|n| json!(n)),
            leaf(),
        ]),
        prop::option::weighted(0.3, cursor()),
        prop::option::of(prop_oneof![4 => any::<bool>().prop_map(Value::Bool), 1 => leaf()]),
    )
        .prop_map(
            |(m, terms, (cf, ct, uf, ut), not_exists, limit, cursor, summary)| {
                let mut o = Map::new();
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        o.insert(k.to_owned(), v);
                    }
                };
                put("match", m);
                put(
                    "terms",
                    terms.map(|t| Value::Object(t.into_iter().collect())),
                );
                put("createdFrom", cf);
                put("createdTo", ct);
                put("updatedFrom", uf);
                put("updatedTo", ut);
                put("notExists", not_exists);
                put("limit", limit);
                put("cursor", cursor.map(Value::String));
                put("summary", summary);
                Value::Object(o)
            },
        )
        .boxed()
}

/// Cursors: forged in the server's own format with extreme parts, random base64, or junk.
fn cursor() -> BoxedStrategy<String> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    prop_oneof![
        2 => (
            prop_oneof![
                any::<i64>(),
                Just(i64::MIN),
                Just(i64::MAX),
                Just(-8_334_601_228_800_000i64), // chrono's minimum, in ms
                Just(8_210_266_876_799_999i64), // chrono's maximum, in ms
                Just(0i64),
            ],
            any::<u128>(),
        )
            .prop_map(|(ms, id)| URL_SAFE_NO_PAD.encode(format!(
                "1:{ms}:{}",
                uuid::Uuid::from_u128(id).simple()
            ))),
        1 => prop::collection::vec(any::<u8>(), 0..48).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
        2 => hostile_string(),
    ]
    .boxed()
}

/// Request bodies: shaped objects, any JSON, JSON text no `Value` can hold, raw bytes,
/// truncated documents, and (rarely) a body past the size limit.
fn body(shaped: BoxedStrategy<Value>) -> BoxedStrategy<Body> {
    let to_bytes = |v: Value| serde_json::to_vec(&v).unwrap_or_default();
    prop_oneof![
        16 => shaped.clone().prop_map(move |v| Body(to_bytes(v))),
        2 => json_value().prop_map(move |v| Body(to_bytes(v))),
        1 => (1usize..200).prop_map(|n| Body(format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes())),
        1 => (1usize..100).prop_map(|n| Body(format!("{{\"data\":{{\"Context_First_Name\":{}\"x\"{}}}}}", "[".repeat(n), "]".repeat(n)).into_bytes())),
        1 => prop::sample::select(vec![
            "123456789012345678901234567890",
            "1e400",
            "-1e400",
            "18446744073709551616",
            "-9223372036854775809",
        ])
        .prop_map(|n| Body(format!("{{\"version\":{n},\"limit\":{n},\"data\":{{\"cccRatingPoints\":{n}}},\"fieldsets\":[\"cisco.base.rating\"]}}").into_bytes())),
        1 => prop::sample::select(vec![
            "", "{", "null", "[]", "\"x\"", "\u{feff}{}", "{} {}", "{}\u{0}",
            "{\"data\":{},\"data\":{}}",
            "{\"data\":{\"Context_First_Name\":\"\\ud800\"}}",
            "{\"data\":{\"Context_First_Name\":\"a\\u0000b\"},\"fieldsets\":[\"cisco.base.customer\"]}",
        ])
        .prop_map(|s| Body(s.as_bytes().to_vec())),
        2 => prop::collection::vec(any::<u8>(), 0..200).prop_map(Body),
        1 => (shaped, any::<prop::sample::Index>()).prop_map(move |(v, i)| {
            let b = to_bytes(v);
            let at = i.index(b.len() + 1);
            Body(b[..at].to_vec())
        }),
        1 => (1_048_577usize..1_048_600).prop_map(|n| Body(format!("\"{}\"", "x".repeat(n)).into_bytes())),
    ]
    .boxed()
}

fn content_type() -> BoxedStrategy<Option<String>> {
    prop_oneof![
        24 => Just(Some("application/json".to_owned())),
        2 => Just(Some("application/merge-patch+json".to_owned())),
        1 => Just(Some("application/json; charset=utf-8".to_owned())),
        1 => Just(Some("APPLICATION/JSON".to_owned())),
        1 => Just(Some("text/plain".to_owned())),
        1 => Just(None),
        1 => "[ -~]{0,40}".prop_map(Some),
    ]
    .boxed()
}

/// Path segments: UUIDs in every notation, the real id, or any text (percent-encoded, or
/// raw with stray `%` escapes).
fn path_id() -> BoxedStrategy<String> {
    prop_oneof![
        2 => Just(CUSTOMER.to_owned()),
        2 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
        1 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).braced().to_string()),
        1 => any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).urn().to_string()),
        3 => hostile_string().prop_map(|s| encode(&s)),
        1 => "[A-Za-z0-9%._~!$&'()*+,;=:@-]{0,40}",
        1 => Just("%FF%FE".to_owned()),
        1 => Just("%00".to_owned()),
    ]
    .boxed()
}

/// Timeline query strings: `limit`, `cursor` and `mediaType` plausible or not, unknown and
/// repeated parameters, and raw junk.
fn query() -> BoxedStrategy<String> {
    let limit = prop_oneof![
        (0i64..4).prop_map(|n| n.to_string()),
        (198i64..203).prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        Just("99999999999999999999999".to_owned()),
        Just("1.5".to_owned()),
        Just("".to_owned()),
        hostile_string(),
    ];
    let param = prop_oneof![
        3 => limit.prop_map(|v| ("limit".to_owned(), v)),
        3 => cursor().prop_map(|v| ("cursor".to_owned(), v)),
        2 => text_of(vec!["voice", "chat", "VOICE", "bogus"])
            .prop_map(|v| ("mediaType".to_owned(), v.as_str().map_or(v.to_string(), str::to_owned))),
        1 => (hostile_string(), hostile_string()),
    ];
    prop_oneof![
        6 => prop::collection::vec(param, 0..4).prop_map(|ps| {
            ps.iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect::<Vec<_>>()
                .join("&")
        }),
        1 => "[ -~]{0,40}".prop_map(|s| s.replace([' ', '#'], "")),
    ]
    .boxed()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

// ----- the harness -----

/// One server, its existing customer, and what the run has seen.
struct Harness {
    server: TestServer,
    customer: String,
    /// 201s from `POST /v1/customers`, over the whole run (shrinking included).
    created: AtomicU64,
    /// How many responses of each status the run saw (printed at the end: a run that only
    /// ever sees 400s exercises little).
    statuses: std::sync::Mutex<std::collections::BTreeMap<u16, u64>>,
    /// The client of the hostile requests: one connection per request, so that a connection
    /// the server closes after an early answer to an oversize body is never reused for the
    /// harness's own reads.
    client: reqwest::Client,
}

impl Harness {
    async fn start() -> Self {
        let server = TestServer::start().await;
        let customer = server
            .customer(
                server.lab(),
                json!({"Context_First_Name": "Ann", "Context_Mobile_Phone": "+1 (555) 010-0001"}),
            )
            .await;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .expect("client");
        Self {
            server,
            customer,
            created: AtomicU64::new(0),
            statuses: Default::default(),
            client,
        }
    }

    fn token(&self) -> &str {
        self.server.lab()
    }

    /// The existing customer as stored.
    async fn snapshot(&self) -> Result<Value, TestCaseError> {
        let r = self
            .server
            .get(self.token(), &format!("/v1/customers/{}", self.customer))
            .await;
        if r.status.as_u16() != 200 {
            return Err(TestCaseError::fail(format!(
                "the existing customer can't be read: {} {}",
                r.status, r.body
            )));
        }
        Ok(r.body)
    }

    /// How many customers the partition holds.
    async fn count(&self) -> Result<u64, TestCaseError> {
        let r = self
            .server
            .post(
                self.token(),
                "/v1/customers/search",
                json!({"summary": true}),
            )
            .await;
        r.at("/total")
            .as_u64()
            .ok_or_else(|| TestCaseError::fail(format!("customer count: {} {}", r.status, r.body)))
    }

    /// Replaces the placeholders with the existing customer's id and current version.
    fn substitute(&self, text: &str, version: i64) -> String {
        text.replace(CUSTOMER, &self.customer)
            .replace(&format!("\"{VERSION}\""), &version.to_string())
            .replace(VERSION, &version.to_string())
    }

    fn substitute_body(&self, body: &Body, version: i64) -> Vec<u8> {
        // Placeholders are ASCII, so a lossless byte-level replace is enough.
        let mut out = body.0.clone();
        for (from, to) in [
            (format!("\"{VERSION}\""), version.to_string()),
            (VERSION.to_owned(), version.to_string()),
            (CUSTOMER.to_owned(), self.customer.clone()),
        ] {
            out = replace_bytes(&out, from.as_bytes(), to.as_bytes());
        }
        out
    }

    /// Sends one request with a raw body, content type and extra headers.
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        headers: &[(&str, String)],
        body: Option<Vec<u8>>,
    ) -> Result<Resp, String> {
        let url = format!("{}{}", self.server.url, path);
        let mut req = self.client.request(method, url);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        match req.send().await {
            Ok(resp) => Ok(TestServer::read(resp).await),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Runs one case: snapshot, request, checks, snapshot again. `body_len` is the size of
    /// the request body: past the server's limit the server may answer before reading it all
    /// and close the connection (RFC 9112 §9.6), so the client may see no response at all;
    /// nothing may be written then either.
    async fn case(
        &self,
        what: &str,
        body_len: usize,
        request: impl std::future::Future<Output = Result<Resp, String>>,
        creates_customer: bool,
        updates_customer: bool,
        before: Value,
    ) -> Result<(), TestCaseError> {
        let count_before = self.count().await?;
        let r = match request.await {
            Ok(r) => r,
            Err(e) if body_len > BODY_LIMIT => {
                let after = self.snapshot().await?;
                prop_assert_eq!(
                    &after,
                    &before,
                    "{}: an oversize body changed the customer",
                    what
                );
                prop_assert_eq!(self.count().await?, count_before, "{}: oversize body", what);
                let _ = e;
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(format!("{what}: no response: {e}"))),
        };
        *self
            .statuses
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(r.status.as_u16())
            .or_default() += 1;
        check_response(what, &r)?;
        let created = creates_customer && r.status.as_u16() == 201;
        if created {
            self.created.fetch_add(1, Ordering::SeqCst);
        }
        if r.status.as_u16() == 201 {
            // What was created is whole: it reads back as the response said.
            let location = r
                .headers
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| TestCaseError::fail(format!("{what}: 201 without Location")))?;
            let back = self.server.get(self.token(), location).await;
            prop_assert_eq!(
                back.status.as_u16(),
                200,
                "{}: created object reads back",
                what
            );
            prop_assert_eq!(
                &back.body,
                &r.body,
                "{}: created object reads back as sent",
                what
            );
        }
        let after = self.snapshot().await?;
        if updates_customer && r.status.is_success() {
            prop_assert_eq!(&after, &r.body, "{}: stored customer = response", what);
            prop_assert_eq!(
                after["version"].as_i64(),
                before["version"].as_i64().map(|v| v + 1),
                "{}: one write, one version",
                what
            );
        } else {
            prop_assert_eq!(
                &after,
                &before,
                "{}: the customer changed on a {} response",
                what,
                r.status
            );
        }
        let count_after = self.count().await?;
        prop_assert_eq!(
            count_after,
            count_before + u64::from(created),
            "{}: customer count after a {} response",
            what,
            r.status
        );
        Ok(())
    }

    /// The run-level checks: the count is 1 + the 201s, and the customer still reads.
    async fn finish(self) {
        println!(
            "statuses seen: {:?}",
            self.statuses.lock().unwrap_or_else(|e| e.into_inner())
        );
        let count = self.count().await.expect("count");
        assert_eq!(
            count,
            1 + self.created.load(Ordering::SeqCst),
            "customers = the existing one + every 201"
        );
        self.snapshot()
            .await
            .expect("the existing customer still reads");
        self.server.stop().await;
    }
}

fn replace_bytes(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}

/// Every response is below 500; every 4xx is problem JSON naming its own status.
fn check_response(what: &str, r: &Resp) -> Result<(), TestCaseError> {
    let status = r.status.as_u16();
    prop_assert!(status < 500, "{}: {} {}", what, r.status, r.body);
    if (400..500).contains(&status) {
        let ct = r
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        prop_assert_eq!(
            ct,
            "application/problem+json",
            "{}: a {} is problem JSON",
            what,
            status
        );
        prop_assert_eq!(
            r.body["status"].as_u64(),
            Some(u64::from(status)),
            "{}: {}",
            what,
            r.body
        );
        prop_assert!(
            r.body["type"].is_string()
                && r.body["title"].is_string()
                && r.body["detail"].is_string(),
            "{}: problem members: {}",
            what,
            r.body
        );
    }
    Ok(())
}

/// Runs `cases` of `strategy` against the harness, blocking on each async case.
fn run<S, F, Fut>(strategy: S, case: F)
where
    S: Strategy,
    S::Value: fmt::Debug,
    F: Fn(S::Value) -> Fut,
    Fut: std::future::Future<Output = Result<(), TestCaseError>>,
{
    let handle = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(config());
    let result = runner.run(&strategy, |value| {
        tokio::task::block_in_place(|| handle.block_on(case(value)))
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

// ----- the properties -----

#[derive(Clone, Debug)]
enum Create {
    Customer(Body, Option<String>),
    Activity(Body, Option<String>),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_creates_answer_4xx_and_write_nothing() {
    let harness = Harness::start().await;
    let h = &harness;
    let strategy = prop_oneof![
        2 => (body(customer_body()), content_type()).prop_map(|(b, c)| Create::Customer(b, c)),
        1 => (body(activity_body()), content_type()).prop_map(|(b, c)| Create::Activity(b, c)),
    ];
    run(strategy, |create| async move {
        let before = h.snapshot().await?;
        let version = before["version"].as_i64().unwrap_or(0);
        let (path, body, ct, customer) = match &create {
            Create::Customer(b, c) => ("/v1/customers", b, c, true),
            Create::Activity(b, c) => ("/v1/activities", b, c, false),
        };
        let bytes = h.substitute_body(body, version);
        let len = bytes.len();
        let request = h.send(
            Method::POST,
            path,
            Some(h.token()),
            ct.as_deref(),
            &[],
            Some(bytes),
        );
        h.case(
            &format!("POST {path}"),
            len,
            request,
            customer,
            false,
            before,
        )
        .await
    });
    harness.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_searches_answer_4xx_and_write_nothing() {
    let harness = Harness::start().await;
    let h = &harness;
    let kinds = prop::sample::select(vec!["customers", "activities", "requests", "details"]);
    run(
        (
            body(prop_oneof![1 => search_body(), 2 => valid_search_body()].boxed()),
            content_type(),
            kinds,
        ),
        |(body, ct, kind)| async move {
            let before = h.snapshot().await?;
            let version = before["version"].as_i64().unwrap_or(0);
            let bytes = h.substitute_body(&body, version);
            let len = bytes.len();
            let path = format!("/v1/{kind}/search");
            let request = h.send(
                Method::POST,
                &path,
                Some(h.token()),
                ct.as_deref(),
                &[],
                Some(bytes),
            );
            h.case(&format!("POST {path}"), len, request, false, false, before)
                .await
        },
    );
    harness.finish().await;
}

#[derive(Clone, Debug)]
enum Update {
    Put(Body, Option<String>, Option<String>),
    Patch(Body, Option<String>, Option<String>),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_updates_change_the_object_only_when_accepted() {
    let harness = Harness::start().await;
    let h = &harness;
    let if_match = prop::option::weighted(
        0.3,
        prop_oneof![
            3 => Just(VERSION.to_owned()),
            1 => Just(format!("W/\"{VERSION}\"")),
            1 => "[ -~]{0,12}",
        ],
    );
    let strategy = prop_oneof![
        (body(customer_body()), content_type(), if_match.clone())
            .prop_map(|(b, c, m)| Update::Put(b, c, m)),
        (body(customer_body()), content_type(), if_match)
            .prop_map(|(b, c, m)| Update::Patch(b, c, m)),
    ];
    run(strategy, |update| async move {
        let before = h.snapshot().await?;
        let version = before["version"].as_i64().unwrap_or(0);
        let (method, body, ct, if_match) = match &update {
            Update::Put(b, c, m) => (Method::PUT, b, c, m),
            Update::Patch(b, c, m) => (Method::PATCH, b, c, m),
        };
        let headers: Vec<(&str, String)> = if_match
            .iter()
            .map(|m| ("if-match", h.substitute(m, version)))
            .collect();
        let bytes = h.substitute_body(body, version);
        let len = bytes.len();
        let path = format!("/v1/customers/{}", h.customer);
        let what = format!("{method} /v1/customers/{{id}}");
        let request = h.send(
            method,
            &path,
            Some(h.token()),
            ct.as_deref(),
            &headers,
            Some(bytes),
        );
        h.case(&what, len, request, false, true, before).await
    });
    harness.finish().await;
}

#[derive(Clone, Debug)]
enum Probe {
    Get(String),
    Timeline(String, String),
    Token(String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_paths_and_queries_answer_4xx_and_write_nothing() {
    let harness = Harness::start().await;
    let h = &harness;
    let strategy = prop_oneof![
        2 => path_id().prop_map(Probe::Get),
        4 => (path_id(), query()).prop_map(|(id, q)| Probe::Timeline(id, q)),
        1 => prop_oneof![
            hostile_string(),
            "ctxd_[0-9a-f]{32}_[A-Za-z0-9_-]{0,140}",
            "[ -~]{0,80}",
        ]
        .prop_map(Probe::Token),
    ];
    run(strategy, |probe| async move {
        let before = h.snapshot().await?;
        let version = before["version"].as_i64().unwrap_or(0);
        let (what, path, token) = match &probe {
            Probe::Get(id) => (
                "GET /v1/customers/{id}",
                format!("/v1/customers/{}", h.substitute(id, version)),
                None,
            ),
            Probe::Timeline(id, q) => (
                "GET /v1/customers/{id}/timeline",
                format!(
                    "/v1/customers/{}/timeline?{}",
                    h.substitute(id, version),
                    h.substitute(q, version)
                ),
                None,
            ),
            Probe::Token(t) => (
                "GET /v1/customers/{id} with a forged token",
                format!("/v1/customers/{}", h.customer),
                Some(t.clone()),
            ),
        };
        let request = async move {
            match &token {
                // A header value must be visible ASCII; anything else can't even be sent.
                Some(t) => {
                    let value = format!("Bearer {t}");
                    if reqwest::header::HeaderValue::from_str(&value).is_err() {
                        return h.send(Method::GET, &path, None, None, &[], None).await;
                    }
                    h.send(
                        Method::GET,
                        &path,
                        None,
                        None,
                        &[("authorization", value)],
                        None,
                    )
                    .await
                }
                None => {
                    h.send(Method::GET, &path, Some(h.token()), None, &[], None)
                        .await
                }
            }
        };
        let r_what = what.to_owned();
        h.case(&r_what, 0, request, false, false, before).await
    });
    harness.finish().await;
}

/// Regression case found by `hostile_paths_and_queries_answer_4xx_and_write_nothing`: a path
/// segment that percent-decodes to invalid UTF-8 (`%FF%FE`) is refused by axum's own `Path`
/// extractor, whose rejection is `text/plain`, not problem JSON (README, "API overview").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_path_segments_are_refused_with_problem_json() {
    let harness = Harness::start().await;
    let h = &harness;
    let mut wrong = Vec::new();
    for (method, path) in [
        (Method::GET, "/v1/customers/%FF%FE"),
        (Method::GET, "/v1/customers/%FF%FE/timeline"),
        (Method::PUT, "/v1/customers/%FF%FE"),
        (Method::PATCH, "/v1/customers/%FF%FE"),
        (Method::DELETE, "/v1/customers/%FF%FE"),
        (Method::POST, "/v1/%FF%FE"),
        (Method::POST, "/v1/%FF%FE/search"),
        (Method::GET, "/v1/flush/%FF%FE"),
        (Method::GET, "/v1/fields/%FF%FE"),
        (Method::GET, "/v1/fieldsets/%FF%FE"),
    ] {
        let before = h.snapshot().await.expect("snapshot");
        let what = format!("{method} {path}");
        let request = h.send(
            method,
            path,
            Some(h.token()),
            Some("application/json"),
            &[],
            Some(b"{}".to_vec()),
        );
        if let Err(e) = h.case(&what, 2, request, false, false, before).await {
            wrong.push(e.to_string());
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    harness.finish().await;
}
