//! Search-term parsing (`search::plan`): arbitrary requests never panic, are refused only
//! with a 400 (`Validation`/`BadRequest`), and a plan is made only from a request whose every
//! part is in range.

use std::collections::BTreeMap;

use chrono::Utc;
use contextd_core::dictionary::Dictionary;
use contextd_core::search::{
    self, decode_cursor, Match, SealedAccess, SearchRequest, DEFAULT_LIMIT, MAX_LIMIT, MAX_SUMMARY,
    MAX_TERMS,
};
use contextd_core::store::{Condition, SearchPlan};
use contextd_core::{CoreError, Kind, ObjectId};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::cursor::cursor_text;
use crate::support::{base_field_ids, config, hostile_string, indexer, json_leaf, json_value};
use crate::validation::{date_text, field};

const SPECIAL_KEYS: [&str; 7] = [
    "id",
    "customerId",
    "parentId",
    "tags",
    "state",
    "mediaType",
    "contributor",
];

fn term_key() -> BoxedStrategy<String> {
    let mut pool: Vec<String> = SPECIAL_KEYS.map(str::to_owned).to_vec();
    pool.extend(base_field_ids());
    pool.extend(
        [
            "f0",
            "f1",
            "f2",
            "f3",
            "f.phone",
            "Custom_Date",
            "ID",
            "Tags",
        ]
        .map(str::to_owned),
    );
    prop_oneof![4 => prop::sample::select(pool), 1 => hostile_string()].boxed()
}

/// One search value: plausible for some key, or hostile.
fn term_scalar() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => json_leaf(),
        1 => any::<u128>().prop_map(|n| json!(uuid::Uuid::from_u128(n).to_string())),
        1 => any::<u128>().prop_map(|n| json!(format!(" {} ", uuid::Uuid::from_u128(n).simple()))),
        1 => prop::sample::select(vec![
            "active", "Closed", " ACTIVE ", "voice", "Chat", "email ", "pod", "", "true",
            "FALSE", "42", " -7 ", "2147483648", "1.5", "NaN", "inf", "en_US",
            "+1 (555) 010-0001",
        ])
        .prop_map(|s| json!(s)),
        1 => date_text().prop_map(Value::String),
    ]
    .boxed()
}

fn term_values() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => term_scalar(),
        4 => prop::collection::vec(term_scalar(), 0..6).prop_map(Value::Array),
        1 => prop::collection::vec(term_scalar(), 250..262).prop_map(Value::Array),
        1 => json_value(),
    ]
    .boxed()
}

fn limit() -> BoxedStrategy<Option<usize>> {
    prop::option::of(prop_oneof![
        0usize..=3,
        (MAX_LIMIT - 2)..=(MAX_LIMIT + 2),
        (MAX_SUMMARY - 2)..=(MAX_SUMMARY + 2),
        any::<usize>(),
    ])
    .boxed()
}

fn time_text() -> BoxedStrategy<Option<String>> {
    prop::option::of(prop_oneof![date_text(), hostile_string()]).boxed()
}

/// Any search request, most of its parts plausible, some hostile.
pub fn search_request() -> BoxedStrategy<SearchRequest> {
    (
        any::<bool>(),
        prop_oneof![
            8 => prop::collection::btree_map(term_key(), term_values(), 0..6),
            // Around the 32-key limit.
            1 => (prop::collection::btree_map(term_key(), term_scalar(), 0..6), 26usize..36)
                .prop_map(|(mut terms, n)| {
                    for i in 0..n {
                        terms.insert(format!("tags{i}"), json!("x"));
                    }
                    terms
                }),
        ],
        (time_text(), time_text(), time_text(), time_text()),
        prop::collection::vec(term_key(), 0..4),
        limit(),
        prop::option::of(cursor_text()),
        any::<bool>(),
    )
        .prop_map(
            |(any_mode, terms, (cf, ct, uf, ut), not_exists, limit, cursor, summary)| {
                SearchRequest {
                    match_mode: if any_mode { Match::Any } else { Match::All },
                    terms,
                    created_from: cf,
                    created_to: ct,
                    updated_from: uf,
                    updated_to: ut,
                    not_exists,
                    limit,
                    cursor,
                    summary,
                }
            },
        )
        .boxed()
}

fn kind() -> BoxedStrategy<Kind> {
    prop::sample::select(Kind::ALL.to_vec()).boxed()
}

fn plan(
    kind: Kind,
    request: &SearchRequest,
    dictionary: &Dictionary,
    access: SealedAccess,
) -> Result<SearchPlan, CoreError> {
    search::plan(kind, request, dictionary, &indexer(), access, Utc::now())
}

fn value_count(raw: &Value) -> usize {
    match raw {
        Value::Array(items) => items.len(),
        _ => 1,
    }
}

fn condition_len(c: &Condition) -> usize {
    match c {
        Condition::Tokens(v) => v.len(),
        Condition::Ids(v) | Condition::CustomerIds(v) | Condition::ParentIds(v) => v.len(),
        Condition::States { states, .. } => states.len(),
        Condition::MediaTypes(v) => v.len(),
    }
}

/// Checks everything `plan` promises about one call.
fn check_plan(
    kind: Kind,
    request: &SearchRequest,
    dictionary: &Dictionary,
    access: SealedAccess,
) -> Result<(), TestCaseError> {
    let (max, default) = if request.summary {
        (MAX_SUMMARY, MAX_SUMMARY)
    } else {
        (MAX_LIMIT, DEFAULT_LIMIT)
    };
    match plan(kind, request, dictionary, access) {
        Err(CoreError::Validation(errors)) => {
            prop_assert!(!errors.is_empty(), "a refusal names at least one problem");
        }
        Err(CoreError::BadRequest(_)) => {}
        Err(other) => prop_assert!(false, "a bad search is a 400, not {other:?}"),
        Ok(p) => {
            prop_assert!((1..=max).contains(&p.limit), "limit {} planned", p.limit);
            prop_assert_eq!(p.limit, request.limit.unwrap_or(default));
            prop_assert_eq!(p.kind, kind);
            prop_assert_eq!(p.match_all, request.match_mode == Match::All);
            prop_assert!(request.terms.len() <= MAX_TERMS);
            prop_assert_eq!(p.conditions.len(), request.terms.len());
            for ((key, raw), condition) in request.terms.iter().zip(&p.conditions) {
                // Every value became one thing to match (none dropped), or for a double
                // also the spellings it was once indexed under (`2.0`; `0.0` and `-0.0`).
                let (n, values) = (condition_len(condition), value_count(raw));
                let double = dictionary.field(key).is_some_and(|f| {
                    f.data_type == contextd_core::dictionary::DataType::Double
                        && !SPECIAL_KEYS.contains(&key.as_str())
                });
                if double {
                    prop_assert!(
                        (values..=3 * values).contains(&n),
                        "key {}: {} for {}",
                        key,
                        n,
                        values
                    );
                } else {
                    prop_assert_eq!(n, values, "key {}", key);
                }
                prop_assert!(value_count(raw) > 0);
                if let Some(f) = dictionary.field(key) {
                    if !SPECIAL_KEYS.contains(&key.as_str()) {
                        prop_assert!(f.searchable, "unsearchable field '{key}' planned");
                        prop_assert!(
                            access == SealedAccess::Allowed || !f.classification.is_sealed(),
                            "sealed field '{key}' planned for a partner"
                        );
                    }
                }
            }
            prop_assert_eq!(p.not_exists.len(), request.not_exists.len());
            let after = request.cursor.as_deref().map(|c| decode_cursor(c).ok());
            prop_assert_eq!(p.after, after.flatten());
            prop_assert_eq!(p.after.is_some(), request.cursor.is_some());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn plan_never_panics_and_refuses_only_with_400(
        kind in kind(),
        request in search_request(),
        fields in prop::collection::vec(field(), 0..4),
        partner in any::<bool>(),
    ) {
        let dictionary = Dictionary::new(fields, vec![]);
        let access = if partner { SealedAccess::Withheld } else { SealedAccess::Allowed };
        check_plan(kind, &request, &dictionary, access)?;
    }

    #[test]
    fn plan_of_any_decoded_body_never_panics(kind in kind(), value in json_value()) {
        if let Ok(request) = serde_json::from_value::<SearchRequest>(value) {
            check_plan(kind, &request, &Dictionary::new(vec![], vec![]), SealedAccess::Allowed)?;
        }
    }

    #[test]
    fn out_of_range_limits_are_refused(limit in limit(), summary in any::<bool>()) {
        let request = SearchRequest { limit, summary, ..SearchRequest::default() };
        let max = if summary { MAX_SUMMARY } else { MAX_LIMIT };
        let ok = plan(Kind::Customer, &request, &Dictionary::new(vec![], vec![]), SealedAccess::Allowed)
            .is_ok();
        prop_assert_eq!(ok, limit.is_none_or(|l| (1..=max).contains(&l)));
    }

    #[test]
    fn phone_terms_match_on_digits_only(text in "[0-9 ()+.\\-xa-z]{0,40}") {
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        let dictionary = Dictionary::new(vec![], vec![]);
        let terms = |v: &str| SearchRequest {
            terms: BTreeMap::from([("Context_Mobile_Phone".to_owned(), json!(v))]),
            ..SearchRequest::default()
        };
        let a = plan(Kind::Customer, &terms(&text), &dictionary, SealedAccess::Allowed);
        let b = plan(Kind::Customer, &terms(&digits), &dictionary, SealedAccess::Allowed);
        prop_assert_eq!(
            a.map(|p| p.conditions).ok(),
            b.map(|p| p.conditions).ok(),
            "'{}' and '{}' are the same phone number",
            text,
            digits
        );
    }

    #[test]
    fn text_terms_match_after_trimming_and_case_folding(
        text in "[a-zA-Z0-9][a-zA-Z0-9 ]{0,30}",
        pad in "[ \t\r\n]{0,3}",
    ) {
        let dictionary = Dictionary::new(vec![], vec![]);
        let terms = |v: &str| SearchRequest {
            terms: BTreeMap::from([("Context_City".to_owned(), json!(v))]),
            ..SearchRequest::default()
        };
        let shouted = format!("{pad}{}{pad}", text.to_uppercase());
        let a = plan(Kind::Customer, &terms(&text), &dictionary, SealedAccess::Allowed);
        let b = plan(Kind::Customer, &terms(&shouted), &dictionary, SealedAccess::Allowed);
        prop_assert!(a.is_ok() && b.is_ok());
        prop_assert_eq!(a.map(|p| p.conditions).ok(), b.map(|p| p.conditions).ok());
    }
}

#[test]
fn every_special_key_with_hostile_values_is_a_400() {
    let dictionary = Dictionary::new(vec![], vec![]);
    for key in SPECIAL_KEYS
        .iter()
        .chain(&["Context_First_Name", "nope", ""])
    {
        for value in [
            json!([]),
            json!(null),
            json!({"$ne": null}),
            json!([[1]]),
            json!("x".repeat(1025)),
            json!(vec!["a"; 257]),
            json!("'; DROP TABLE objects; --"),
        ] {
            let request = SearchRequest {
                terms: BTreeMap::from([((*key).to_owned(), value.clone())]),
                ..SearchRequest::default()
            };
            let r = plan(Kind::Customer, &request, &dictionary, SealedAccess::Allowed);
            match (key, &value) {
                // Tags and contributors match any text, so an injection attempt is just text.
                (&"tags" | &"contributor" | &"Context_First_Name", Value::String(s))
                    if s.len() <= 1024 => {}
                _ => assert!(
                    matches!(r, Err(CoreError::Validation(_))),
                    "{key} = {value}: {r:?}"
                ),
            }
        }
    }
    // The one shape of a valid id is accepted.
    let id = ObjectId::new().to_string();
    let request = SearchRequest {
        terms: BTreeMap::from([("id".to_owned(), json!([id]))]),
        ..SearchRequest::default()
    };
    assert!(plan(Kind::Customer, &request, &dictionary, SealedAccess::Allowed).is_ok());
}

#[test]
fn more_than_32_valid_keys_are_refused() {
    use contextd_core::dictionary::DataType;
    let dictionary = Dictionary::new(vec![], vec![]);
    let id = ObjectId::new().to_string();
    let mut terms: BTreeMap<String, Value> = BTreeMap::from([
        ("id".to_owned(), json!(id)),
        ("customerId".to_owned(), json!(id)),
        ("parentId".to_owned(), json!(id)),
        ("tags".to_owned(), json!("x")),
        ("contributor".to_owned(), json!("x")),
        ("state".to_owned(), json!("active")),
        ("mediaType".to_owned(), json!("voice")),
    ]);
    for f in dictionary.fields() {
        let v = match f.data_type {
            DataType::Boolean => json!(true),
            DataType::Integer | DataType::Long => json!(5),
            _ => json!("x"),
        };
        terms.insert(f.id.clone(), v);
    }
    assert!(terms.len() > MAX_TERMS, "{} keys", terms.len());
    while terms.len() > MAX_TERMS + 1 {
        terms.pop_last();
    }
    let mut request = SearchRequest {
        terms,
        ..SearchRequest::default()
    };
    let r = plan(Kind::Customer, &request, &dictionary, SealedAccess::Allowed);
    assert!(
        matches!(&r, Err(CoreError::Validation(e)) if e.iter().any(|e| e.field == "terms")),
        "{r:?}"
    );
    request.terms.pop_last();
    let r = plan(Kind::Customer, &request, &dictionary, SealedAccess::Allowed);
    assert!(r.is_ok(), "{r:?}");
}
