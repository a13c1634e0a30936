//! Matching by meaning (issue 9, items 13 and 14): a number is stored and indexed under one
//! canonical form whichever way it was written, and a locale matches with `-` or `_`.

use std::collections::BTreeMap;

use chrono::Utc;
use contextd_core::crypto::normalize;
use contextd_core::dictionary::{
    canonical_locale, validate_field, Classification, DataType, Dictionary, Field, FieldSet,
};
use contextd_core::search::{self, SealedAccess, SearchRequest};
use contextd_core::store::{Condition, Token};
use contextd_core::{CoreError, Kind};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::support::{config, indexer};

const LOCALE_FIELD: &str = "Context_Preferred_Language";

fn number_field(id: &str, data_type: DataType) -> Field {
    Field {
        id: id.to_owned(),
        description: String::new(),
        data_type,
        classification: Classification::Encrypted,
        searchable: true,
        max_length: None,
        enum_values: None,
        translations: BTreeMap::new(),
        base: false,
        last_updated: None,
    }
}

/// A dictionary with `Amount` (double), `Count` (integer) and `Big` (long) in set `nums`.
fn numbers() -> Dictionary {
    let fields = vec![
        number_field("Amount", DataType::Double),
        number_field("Count", DataType::Integer),
        number_field("Big", DataType::Long),
    ];
    let set = FieldSet {
        id: "nums".to_owned(),
        description: String::new(),
        fields: fields.iter().map(|f| f.id.clone()).collect(),
        inactive_fields: Vec::new(),
        base: false,
        last_updated: None,
    };
    Dictionary::new(fields, vec![set])
}

/// A JSON number exactly as written (`2.0`, `2e0`), not as Rust would write it.
fn lit(text: &str) -> Value {
    serde_json::from_str(text).expect("a JSON number")
}

/// What a write stores for one value, or the validation error.
fn stored(
    dictionary: &Dictionary,
    set: &str,
    field: &str,
    value: Value,
) -> Result<Value, CoreError> {
    let data = BTreeMap::from([(field.to_owned(), value)]);
    let mut out = dictionary.validate_data(&[set.to_owned()], &data)?;
    Ok(out.remove(field).expect("a non-null value is stored"))
}

/// The token a write indexes for a stored value.
fn index_token(field: &str, value: &Value) -> Token {
    indexer().value(
        field,
        &normalize(field, value).expect("a scalar normalizes"),
    )
}

/// The tokens a search for one value looks for, or the error.
fn search_tokens(
    dictionary: &Dictionary,
    field: &str,
    value: Value,
) -> Result<Vec<Token>, CoreError> {
    let request = SearchRequest {
        terms: BTreeMap::from([(field.to_owned(), value)]),
        ..SearchRequest::default()
    };
    let plan = search::plan(
        Kind::Customer,
        &request,
        dictionary,
        &indexer(),
        SealedAccess::Allowed,
        Utc::now(),
    )?;
    match plan.conditions.as_slice() {
        [Condition::Tokens(t)] => Ok(t.clone()),
        other => panic!("one token condition expected, got {other:?}"),
    }
}

#[test]
fn numbers_are_stored_in_one_canonical_form() {
    let d = numbers();
    for text in ["2", "2.0", "2e0", "2.000", "0.2e1", "20e-1"] {
        assert_eq!(
            stored(&d, "nums", "Amount", lit(text)).ok(),
            Some(json!(2)),
            "double {text}"
        );
        assert_eq!(
            stored(&d, "nums", "Count", lit(text)).ok(),
            Some(json!(2)),
            "integer {text}"
        );
        assert_eq!(
            stored(&d, "nums", "Big", lit(text)).ok(),
            Some(json!(2)),
            "long {text}"
        );
    }
    // -0 is 0; a fraction stays as it is; so does a double beyond the i64 range.
    assert_eq!(
        stored(&d, "nums", "Amount", lit("-0.0")).ok(),
        Some(json!(0))
    );
    assert_eq!(
        stored(&d, "nums", "Amount", lit("2.50")).ok(),
        Some(json!(2.5))
    );
    assert_eq!(
        stored(&d, "nums", "Amount", lit("1e300")).ok(),
        Some(json!(1e300))
    );
    // An integer field refuses what is not an integer, and an integral double beyond 2^53
    // (whose digits may already have been rounded when it was read) with a reason.
    for text in ["2.5", "1e300", "-0.1"] {
        assert!(
            stored(&d, "nums", "Count", lit(text)).is_err(),
            "integer {text}"
        );
        assert!(stored(&d, "nums", "Big", lit(text)).is_err(), "long {text}");
    }
    assert!(
        stored(&d, "nums", "Count", lit("3e9")).is_err(),
        "beyond 32 bits"
    );
    match stored(&d, "nums", "Big", lit("1e18")) {
        Err(CoreError::Validation(e)) => assert!(e[0].message.contains("2^53"), "{e:?}"),
        other => panic!("1e18 as a long: {other:?}"),
    }
    assert_eq!(
        stored(&d, "nums", "Big", lit("1000000000000000000")).ok(),
        Some(json!(1_000_000_000_000_000_000i64))
    );
    assert_eq!(normalize("Amount", &lit("2.0")).as_deref(), Some("2"));
    assert_eq!(normalize("Amount", &lit("-0.0")).as_deref(), Some("0"));
    assert_eq!(normalize("Amount", &lit("2.5")).as_deref(), Some("2.5"));
}

#[test]
fn numbers_are_found_by_value_however_written() {
    let d = numbers();
    for field in ["Amount", "Count", "Big"] {
        for written in ["2", "2.0", "2e0"] {
            let token = index_token(field, &stored(&d, "nums", field, lit(written)).unwrap());
            for query in [
                json!("2"),
                json!("2.0"),
                json!("2e0"),
                json!(" 2.00 "),
                lit("2"),
                lit("2.0"),
                lit("2e0"),
            ] {
                let tokens = search_tokens(&d, field, query.clone()).unwrap();
                assert!(
                    tokens.contains(&token),
                    "{field} stored as {written} is found by {query}"
                );
            }
            let other = search_tokens(&d, field, json!("3")).unwrap();
            assert!(!other.contains(&token), "{field}: 3 doesn't find 2");
        }
    }
    // -0 and 0 are one number.
    let zero = index_token(
        "Amount",
        &stored(&d, "nums", "Amount", lit("-0.0")).unwrap(),
    );
    assert!(search_tokens(&d, "Amount", json!("0"))
        .unwrap()
        .contains(&zero));
    // A search for a fraction on an integer field is refused like any value of the wrong
    // type (400), not silently turned into an integer.
    for query in [json!("2.5"), lit("2.5"), json!("1e300")] {
        for field in ["Count", "Big"] {
            assert!(
                matches!(
                    search_tokens(&d, field, query.clone()),
                    Err(CoreError::Validation(_))
                ),
                "{field} searched with {query}"
            );
        }
    }
}

/// Before numbers were canonical, a double was indexed under the text serde_json gives the
/// number as read (`2.0` for `2.0`, `-0.0`, `1e+16`): a search for its value still looks for
/// that text, so nothing stored earlier becomes unfindable.
#[test]
fn doubles_indexed_under_their_old_spelling_are_still_found() {
    let d = numbers();
    let ix = indexer();
    let old_text = |written: &str| match lit(written) {
        Value::Number(n) => n.to_string(),
        other => panic!("{other}"),
    };
    for (written, queries) in [
        ("2.0", &["2", "2.0", "2e0"][..]),
        ("2", &["2", "2.0"][..]),
        ("1e16", &["1e16", "10000000000000000"][..]),
        ("1e15", &["1e15", "1000000000000000"][..]),
        ("-7.0", &["-7"][..]),
        ("-0.0", &["0", "-0"][..]),
        ("0.0", &["0", "-0.0"][..]),
        ("1e300", &["1e300", "1.0e300"][..]),
        ("2.50", &["2.5"][..]),
    ] {
        for query in queries {
            let tokens = search_tokens(&d, "Amount", json!(query)).unwrap();
            assert!(
                tokens.contains(&ix.value("Amount", &old_text(written))),
                "{query} finds a double stored as {written} and indexed as {}",
                old_text(written)
            );
        }
    }
    // A fraction was always indexed as it is now: one token.
    let tokens = search_tokens(&d, "Amount", json!("2.5")).unwrap();
    assert_eq!(tokens, vec![ix.value("Amount", "2.5")]);
    // Integers were always indexed as their digits: one token.
    let tokens = search_tokens(&d, "Count", json!("2.0")).unwrap();
    assert_eq!(tokens, vec![ix.value("Count", "2")]);
}

proptest! {
    #![proptest_config(config(512))]

    /// Any finite double, stored as a client wrote it (as a double, or as an integer where
    /// it is one), is found by its text in every common notation.
    #[test]
    fn any_double_is_found_by_its_text(
        f in prop_oneof![
            any::<f64>().prop_filter("finite", |f| f.is_finite()),
            any::<i32>().prop_map(f64::from),
            (-(1i64 << 53)..=(1 << 53)).prop_map(|n| n as f64),
        ]
    ) {
        let d = numbers();
        let mut written = vec![json!(f)];
        if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 {
            written.push(json!(f as i64));
        }
        for value in written {
            let token = index_token("Amount", &stored(&d, "nums", "Amount", value.clone()).unwrap());
            for text in [format!("{f}"), format!("{f:e}"), format!("{f:?}"), json!(f).to_string()] {
                let tokens = search_tokens(&d, "Amount", json!(text)).unwrap();
                prop_assert!(tokens.contains(&token), "{} stored, searched as {}", value, text);
            }
        }
    }

    /// Any integer is found by its digits and, where a double holds it exactly, by `N.0`.
    #[test]
    fn any_long_is_found_by_its_digits(
        n in prop_oneof![any::<i64>(), any::<i32>().prop_map(i64::from), -(1i64 << 53)..=(1 << 53)]
    ) {
        let d = numbers();
        let token = index_token("Big", &stored(&d, "nums", "Big", json!(n)).unwrap());
        let mut texts = vec![n.to_string()];
        if n.unsigned_abs() <= 1 << 53 {
            texts.push(format!("{n}.0"));
            texts.push(format!("{n}e0"));
        }
        for text in texts {
            let tokens = search_tokens(&d, "Big", json!(text)).unwrap();
            prop_assert!(tokens.contains(&token), "{} stored, searched as {}", n, text);
        }
    }
}

fn locale(value: &str) -> Result<Value, CoreError> {
    stored(
        &Dictionary::new(vec![], vec![]),
        "cisco.base.customer",
        LOCALE_FIELD,
        json!(value),
    )
}

#[test]
fn preferred_language_accepts_hyphen_and_underscore() {
    for written in ["it_IT", "it-IT", "IT-it", "it_it", "zh-TW"] {
        let want = if written.starts_with("zh") {
            "zh_TW"
        } else {
            "it_IT"
        };
        assert_eq!(locale(written).ok(), Some(json!(want)), "{written}");
    }
    for bad in ["xx-XX", "it", "it--IT", "it-IT-", " it-IT", "it IT", "itIT"] {
        assert!(locale(bad).is_err(), "{bad}");
    }
}

#[test]
fn preferred_language_is_found_by_either_spelling() {
    let d = Dictionary::new(vec![], vec![]);
    for written in ["it_IT", "it-IT"] {
        let token = index_token(LOCALE_FIELD, &locale(written).unwrap());
        for query in ["it_IT", "it-IT", "IT-it", " it_it "] {
            let tokens = search_tokens(&d, LOCALE_FIELD, json!(query)).unwrap();
            assert_eq!(
                tokens,
                vec![token],
                "stored as {written}, searched as {query}"
            );
        }
        let other = search_tokens(&d, LOCALE_FIELD, json!("it-CH")).unwrap();
        assert_ne!(other, vec![token]);
    }
}

#[test]
fn locale_tags_have_one_canonical_form() {
    for (tag, want) in [
        ("en-US", "en_US"),
        ("en_us", "en_US"),
        ("EN-us", "en_US"),
        ("de", "de"),
        ("zh-hant-tw", "zh_Hant_TW"),
        ("es-419", "es_419"),
        ("de-CH-x-phonebk", "de_CH_x_phonebk"),
    ] {
        assert_eq!(canonical_locale(tag).as_deref(), Some(want), "{tag}");
        assert_eq!(
            canonical_locale(want).as_deref(),
            Some(want),
            "{want} is canonical"
        );
    }
    for bad in [
        "",
        "e",
        "1234",
        "en--US",
        "en_US_",
        "-en",
        "en US",
        "en-toolongsubtag",
        "é",
    ] {
        assert_eq!(canonical_locale(bad), None, "{bad}");
    }
    assert_eq!(canonical_locale(&"a".repeat(65)), None);
}

fn field_with_translations(translations: Value) -> Result<Field, serde_json::Error> {
    serde_json::from_value(json!({
        "id": "Colour", "dataType": "string", "classification": "UNENCRYPTED",
        "translations": translations,
    }))
}

#[test]
fn translation_keys_accept_hyphen_and_underscore() {
    for key in ["en-US", "en_US", "en-us"] {
        let f = field_with_translations(json!({ key: "Colour", "it-IT": "Colore" })).unwrap();
        assert!(validate_field(&f).is_ok(), "{key}");
        assert_eq!(
            f.translations,
            BTreeMap::from([
                ("en_US".to_owned(), "Colour".to_owned()),
                ("it_IT".to_owned(), "Colore".to_owned()),
            ]),
            "{key}"
        );
    }
    // Two spellings of one locale in one definition: which label wins would be arbitrary, so
    // it is refused (reading it back from the store never fails).
    let both = field_with_translations(json!({"en-US": "Color", "en_US": "Colour"})).unwrap();
    match validate_field(&both) {
        Err(CoreError::Validation(e)) => {
            assert!(
                e.iter()
                    .any(|e| e.field == "translations" && e.message.contains("en_US")),
                "{e:?}"
            )
        }
        other => panic!("two spellings of en_US: {other:?}"),
    }
    let junk = field_with_translations(json!({"not a locale": "x"})).unwrap();
    assert!(matches!(
        validate_field(&junk),
        Err(CoreError::Validation(_))
    ));
}
