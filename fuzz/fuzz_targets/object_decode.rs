//! Bytes → `ObjectInput` (the body of create and replace) → `validate_data` against the base
//! dictionary. No panic; whatever is accepted is valid by construction and comes only from
//! the declared field sets. Merge patches and dictionary definitions are decoded too.
#![no_main]

use contextd_core::dictionary::{check_value, Field, FieldSet};
use contextd_core::service::{ObjectInput, ObjectPatch};
use contextd_fuzz::{dictionary, is_client_error};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<ObjectPatch>(data);
    let _ = serde_json::from_slice::<Field>(data);
    let _ = serde_json::from_slice::<FieldSet>(data);
    let Ok(input) = serde_json::from_slice::<ObjectInput>(data) else {
        return;
    };
    let dictionary = dictionary();
    match dictionary.validate_data(&input.fieldsets, &input.data) {
        Err(e) => assert!(is_client_error(&e), "{e:?}"),
        Ok(out) => {
            for (key, value) in &out {
                let field = dictionary.field(key).expect("accepted keys are fields");
                let declared = input.fieldsets.iter().any(|s| {
                    dictionary
                        .fieldset(s)
                        .is_some_and(|s| s.fields.contains(key) && !s.inactive_fields.contains(key))
                });
                assert!(declared, "'{key}' is not an active field of {:?}", input.fieldsets);
                assert_eq!(check_value(field, value), Ok(value.clone()), "'{key}'");
            }
            for (key, value) in &input.data {
                assert_eq!(out.contains_key(key), !value.is_null(), "'{key}' dropped");
            }
        }
    }
});
