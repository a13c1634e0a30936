//! The JSON decoders of every request body: arbitrary bytes and arbitrary JSON values never
//! panic, and whatever decodes can be fed onwards (validation, planning) without a panic.

use chrono::Utc;
use contextd_core::dictionary::{Dictionary, Field, FieldSet};
use contextd_core::search::{self, SealedAccess, SearchRequest};
use contextd_core::service::{ObjectInput, ObjectPatch};
use contextd_core::{CoreError, Kind};
use proptest::prelude::*;
use serde_json::Value;

use crate::support::{config, hostile_body, indexer, json_value};

/// Every body type a handler decodes, from bytes.
fn decode_all(bytes: &[u8]) {
    let _ = serde_json::from_slice::<Value>(bytes);
    let _ = serde_json::from_slice::<ObjectPatch>(bytes);
    let _ = serde_json::from_slice::<Field>(bytes);
    let _ = serde_json::from_slice::<FieldSet>(bytes);
    let dictionary = Dictionary::new(vec![], vec![]);
    if let Ok(input) = serde_json::from_slice::<ObjectInput>(bytes) {
        let _ = dictionary.validate_data(&input.fieldsets, &input.data);
    }
    if let Ok(request) = serde_json::from_slice::<SearchRequest>(bytes) {
        for kind in Kind::ALL {
            check_plan_error(search::plan(
                kind,
                &request,
                &dictionary,
                &indexer(),
                SealedAccess::Allowed,
                Utc::now(),
            ));
        }
    }
}

fn check_plan_error<T: std::fmt::Debug>(r: Result<T, CoreError>) {
    if let Err(e) = r {
        assert!(
            matches!(&e, CoreError::Validation(v) if !v.is_empty())
                || matches!(e, CoreError::BadRequest(_)),
            "a refused search is a 400: {e:?}"
        );
    }
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn arbitrary_bodies_never_panic_the_decoders(bytes in hostile_body()) {
        decode_all(&bytes);
    }

    #[test]
    fn arbitrary_json_values_never_panic_the_decoders(value in json_value()) {
        let _ = serde_json::from_value::<ObjectInput>(value.clone());
        let _ = serde_json::from_value::<SearchRequest>(value.clone());
        let _ = serde_json::from_value::<Field>(value.clone());
        let _ = serde_json::from_value::<FieldSet>(value.clone());
        decode_all(&serde_json::to_vec(&value).unwrap_or_default());
    }

    #[test]
    fn decoded_inputs_re_encode_to_what_decodes_again(value in json_value()) {
        // What the server accepted once it must accept again when echoed back (a client
        // sends back what it read).
        if let Ok(input) = serde_json::from_value::<ObjectInput>(value.clone()) {
            let again = serde_json::to_value(&input).expect("an ObjectInput serializes");
            prop_assert!(serde_json::from_value::<ObjectInput>(again).is_ok());
        }
        if let Ok(request) = serde_json::from_value::<SearchRequest>(value) {
            let again = serde_json::to_value(&request).expect("a SearchRequest serializes");
            prop_assert!(serde_json::from_value::<SearchRequest>(again).is_ok());
        }
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    for n in [127usize, 128, 129, 10_000, 100_000] {
        let body = format!(
            "{{\"data\":{{\"Context_First_Name\":{}1{}}}}}",
            "[".repeat(n),
            "]".repeat(n)
        );
        decode_all(body.as_bytes());
        let body = format!("{}{}", "{\"terms\":".repeat(n), "}".repeat(n));
        decode_all(body.as_bytes());
    }
}
