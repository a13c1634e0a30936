//! Field validation (`Dictionary::validate_data`, `check_value`): arbitrary dictionaries and
//! arbitrary data never panic, and whatever is accepted is valid by construction.

use std::collections::{BTreeMap, HashSet};

use contextd_core::dictionary::{
    check_value, Classification, DataType, Dictionary, EnumValue, Field, FieldSet,
};
use contextd_core::CoreError;
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::support::{
    base_field_ids, base_fieldset_ids, config, hostile_string, json_leaf, json_value,
};

const CUSTOM_FIELDS: [&str; 6] = ["f0", "f1", "f2", "f3", "f.phone", "Custom_Date"];
const CUSTOM_SETS: [&str; 3] = ["s0", "s1", "s2"];

fn field_id() -> BoxedStrategy<String> {
    let mut pool = base_field_ids();
    pool.extend(CUSTOM_FIELDS.map(str::to_owned));
    prop_oneof![5 => prop::sample::select(pool), 1 => hostile_string()].boxed()
}

fn fieldset_id() -> BoxedStrategy<String> {
    let mut pool = base_fieldset_ids();
    pool.extend(CUSTOM_SETS.map(str::to_owned));
    prop_oneof![5 => prop::sample::select(pool), 1 => hostile_string()].boxed()
}

fn data_type() -> BoxedStrategy<DataType> {
    prop::sample::select(vec![
        DataType::String,
        DataType::Integer,
        DataType::Long,
        DataType::Double,
        DataType::Boolean,
        DataType::Date,
    ])
    .boxed()
}

fn classification() -> BoxedStrategy<Classification> {
    prop::sample::select(vec![
        Classification::Unencrypted,
        Classification::Encrypted,
        Classification::Pii,
    ])
    .boxed()
}

fn enum_value() -> BoxedStrategy<EnumValue> {
    (
        prop_oneof![
            prop::sample::select(vec!["x", "y", "en_US", ""]).prop_map(str::to_owned),
            hostile_string()
        ],
        any::<bool>(),
    )
        .prop_map(|(value, active)| EnumValue { value, active })
        .boxed()
}

/// Any field, valid or not: the dictionary must cope with whatever the store hands back.
pub fn field() -> BoxedStrategy<Field> {
    (
        prop_oneof![
            3 => prop::sample::select(CUSTOM_FIELDS.to_vec()).prop_map(str::to_owned),
            1 => field_id()
        ],
        data_type(),
        classification(),
        any::<bool>(),
        prop::option::of(prop_oneof![0u32..8, Just(u32::MAX)]),
        prop::option::of(prop::collection::vec(enum_value(), 0..4)),
    )
        .prop_map(
            |(id, data_type, classification, searchable, max_length, enum_values)| Field {
                id,
                description: String::new(),
                data_type,
                classification,
                searchable,
                max_length,
                enum_values,
                translations: BTreeMap::new(),
                base: false,
                last_updated: None,
            },
        )
        .boxed()
}

/// Any field set, valid or not.
pub fn fieldset() -> BoxedStrategy<FieldSet> {
    (
        prop_oneof![
            3 => prop::sample::select(CUSTOM_SETS.to_vec()).prop_map(str::to_owned),
            1 => fieldset_id()
        ],
        prop::collection::vec(field_id(), 0..8),
        prop::collection::vec(field_id(), 0..3),
    )
        .prop_map(|(id, fields, inactive_fields)| FieldSet {
            id,
            description: String::new(),
            fields,
            inactive_fields,
            base: false,
            last_updated: None,
        })
        .boxed()
}

/// RFC 3339-looking text, valid and not, at the edges of the calendar.
pub fn date_text() -> BoxedStrategy<String> {
    let any_date = (
        prop_oneof![0u32..=9999, Just(0), Just(9999), Just(1970)],
        0u32..=13,
        0u32..=32,
        0u32..=24,
        0u32..=60,
        0u32..=61,
        prop::option::of("[0-9]{1,12}"),
        prop_oneof![
            Just("Z".to_owned()),
            Just("z".to_owned()),
            (any::<bool>(), 0u32..=24, 0u32..=60)
                .prop_map(|(neg, h, m)| format!("{}{h:02}:{m:02}", if neg { '-' } else { '+' })),
        ],
    )
        .prop_map(|(y, mo, d, h, mi, s, frac, tz)| {
            let frac = frac.map(|f| format!(".{f}")).unwrap_or_default();
            format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{frac}{tz}")
        });
    // The first and last days of the calendar RFC 3339 can write, with offsets that may carry
    // them across its edge once converted to UTC.
    let edge = (any::<bool>(), 0u32..24, 0u32..60, 0u32..24, 0u32..60).prop_map(
        |(last, h, mi, oh, om)| {
            if last {
                format!("9999-12-31T{h:02}:{mi:02}:00-{oh:02}:{om:02}")
            } else {
                format!("0000-01-01T{h:02}:{mi:02}:00+{oh:02}:{om:02}")
            }
        },
    );
    prop_oneof![4 => any_date, 1 => edge].boxed()
}

/// Values of every type, most of them plausible for some field.
pub fn data_value() -> BoxedStrategy<Value> {
    prop_oneof![
        2 => json_leaf(),
        1 => json_value(),
        1 => prop::sample::select(vec!["x", "y", "en_US", "Ann", "abcdefgh", ""]).prop_map(|s| json!(s)),
        1 => any::<i32>().prop_map(|n| json!(n)),
        1 => any::<bool>().prop_map(|b| json!(b)),
        1 => prop::num::f64::NORMAL.prop_map(|f| json!(f)),
        2 => date_text().prop_map(Value::String),
    ]
    .boxed()
}

fn data() -> BoxedStrategy<BTreeMap<String, Value>> {
    prop::collection::btree_map(field_id(), data_value(), 0..8).boxed()
}

/// Checks everything `validate_data` promises about one call.
fn check_validation(
    dictionary: &Dictionary,
    fieldsets: &[String],
    data: &BTreeMap<String, Value>,
) -> Result<(), TestCaseError> {
    match dictionary.validate_data(fieldsets, data) {
        Err(CoreError::Validation(errors)) => {
            prop_assert!(!errors.is_empty(), "a refusal names at least one problem");
            for e in &errors {
                prop_assert!(!e.field.is_empty() && !e.message.is_empty());
            }
        }
        Err(other) => prop_assert!(false, "validation fails only with Validation: {other:?}"),
        Ok(out) => {
            let mut seen = HashSet::new();
            for name in fieldsets {
                prop_assert!(seen.insert(name), "duplicate field set '{name}' accepted");
                prop_assert!(
                    dictionary.fieldset(name).is_some(),
                    "unknown field set '{name}' accepted"
                );
            }
            for (key, value) in data {
                // Every key, even a null one, is an active field of a declared set.
                let active = fieldsets
                    .iter()
                    .filter_map(|s| dictionary.fieldset(s))
                    .any(|s| s.fields.contains(key) && !s.inactive_fields.contains(key));
                prop_assert!(active, "'{key}' is not an active field of {fieldsets:?}");
                prop_assert!(dictionary.field(key).is_some(), "'{key}' is not a field");
                // Nothing is silently dropped but nulls (which remove a value).
                prop_assert_eq!(out.contains_key(key), !value.is_null(), "key '{}'", key);
            }
            for (key, value) in &out {
                prop_assert!(data.contains_key(key), "'{key}' appeared from nowhere");
                let field = dictionary.field(key).expect("checked above");
                // Accepted data is valid by construction, and normalizing is idempotent: a
                // client that sends back what it read is accepted again, unchanged.
                prop_assert_eq!(
                    check_value(field, value),
                    Ok(value.clone()),
                    "stored value of '{}' ({:?}) from input {}",
                    key,
                    field.data_type,
                    &data[key]
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn base_dictionary_validation_never_panics_and_accepts_only_valid_data(
        fieldsets in prop::collection::vec(fieldset_id(), 0..4),
        data in data(),
    ) {
        check_validation(&Dictionary::new(vec![], vec![]), &fieldsets, &data)?;
    }

    #[test]
    fn custom_dictionary_validation_never_panics_and_accepts_only_valid_data(
        fields in prop::collection::vec(field(), 0..8),
        sets in prop::collection::vec(fieldset(), 0..4),
        fieldsets in prop::collection::vec(fieldset_id(), 0..4),
        data in data(),
    ) {
        check_validation(&Dictionary::new(fields, sets), &fieldsets, &data)?;
    }

    #[test]
    fn check_value_is_total_and_idempotent(field in field(), value in data_value()) {
        if let Ok(normalized) = check_value(&field, &value) {
            prop_assert_eq!(
                check_value(&field, &normalized),
                Ok(normalized.clone()),
                "{:?} field: {} normalized to {}",
                field.data_type,
                value,
                normalized
            );
        }
    }
}

fn date_field() -> Field {
    Field {
        id: "Custom_Date".into(),
        description: String::new(),
        data_type: DataType::Date,
        classification: Classification::Unencrypted,
        searchable: true,
        max_length: None,
        enum_values: None,
        translations: BTreeMap::new(),
        base: false,
        last_updated: None,
    }
}

/// Regression cases found by the properties above (see the README's hostile-input section):
/// a date at the edge of year 0000 or 9999 whose offset carries it outside 0000–9999 once
/// converted to UTC is accepted, but stored as text that is not RFC 3339 (`+10000-…`,
/// `-0001-…`), which `check_value` then refuses: the object can't be sent back as read.
#[test]
fn dates_at_the_calendar_edges_normalize_to_valid_dates() {
    let field = date_field();
    let mut broken = Vec::new();
    for input in ["9999-12-31T23:59:59-23:59", "0000-01-01T00:00:00+00:01"] {
        // Refusing such a date outright is as good as storing it faithfully.
        if let Ok(normalized) = check_value(&field, &json!(input)) {
            if check_value(&field, &normalized) != Ok(normalized.clone()) {
                broken.push(format!("{input} → {normalized}"));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "accepted, then stored as text that check_value refuses: {broken:?}"
    );
}
