//! Identifier, key and token parsing, and value normalization for blind indexes.

use contextd_core::auth::parse_token;
use contextd_core::crypto::{is_phone_field, normalize, MasterKey};
use contextd_core::ids::{is_valid_dictionary_id, FieldId};
use contextd_core::{CoreError, ObjectId};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::support::{config, hostile_string, json_leaf};

/// Id-like text: UUIDs in every notation, bent, or anything.
fn id_text() -> BoxedStrategy<String> {
    prop_oneof![
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).to_string()),
        any::<u128>().prop_map(|n| format!(" {} ", uuid::Uuid::from_u128(n).simple())),
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).urn().to_string()),
        any::<u128>().prop_map(|n| uuid::Uuid::from_u128(n).braced().to_string()),
        "[0-9a-fA-F-]{30,40}",
        "[A-Za-z][A-Za-z0-9_.]{0,110}",
        hostile_string(),
    ]
    .boxed()
}

/// Key-like text: hex and base64 of the right and wrong lengths.
fn key_text() -> BoxedStrategy<String> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    prop_oneof![
        "[0-9a-fA-F]{60,68}",
        prop::collection::vec(any::<u8>(), 28..36).prop_map(|b| STANDARD.encode(b)),
        prop::collection::vec(any::<u8>(), 28..36).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
        "[ \t]{0,2}[0-9a-f]{64}[ \t\n]{0,2}",
        // Multi-byte characters where hex digits are expected: slicing must stay on boundaries.
        "[0-9a-fé€🙂]{30,64}",
        hostile_string(),
    ]
    .boxed()
}

/// Token-like text: `ctxd_<id>_<secret>` with every part bent.
fn token_text() -> BoxedStrategy<String> {
    prop_oneof![
        (any::<u128>(), "[A-Za-z0-9_\\-]{0,140}")
            .prop_map(|(n, s)| format!("ctxd_{}_{s}", uuid::Uuid::from_u128(n).simple())),
        (id_text(), hostile_string()).prop_map(|(i, s)| format!("ctxd_{i}_{s}")),
        hostile_string().prop_map(|s| format!("ctxd_{s}")),
        hostile_string(),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn object_ids_parse_without_panic(text in id_text()) {
        match ObjectId::parse(&text) {
            Ok(id) => prop_assert_eq!(ObjectId::parse(&id.to_string()).ok(), Some(id)),
            Err(e) => prop_assert!(e.to_string().contains("not a valid id"), "{e:?}"),
        }
    }

    #[test]
    fn field_ids_parse_exactly_the_documented_pattern(text in id_text()) {
        let ok = FieldId::parse(&text).is_ok();
        prop_assert_eq!(ok, is_valid_dictionary_id(&text));
        let pattern = text.len() <= 100
            && text.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        prop_assert_eq!(ok, pattern, "'{}'", text);
    }

    #[test]
    fn master_keys_parse_without_panic(text in key_text()) {
        if let Err(e) = MasterKey::parse(&text) {
            prop_assert!(matches!(e, CoreError::Keys(_)), "{e:?}");
        }
    }

    #[test]
    fn tokens_parse_without_panic(text in token_text()) {
        match parse_token(&text) {
            Ok((id, secret)) => {
                prop_assert!(text.starts_with("ctxd_"));
                prop_assert!(!secret.is_empty() && secret.len() <= 128);
                prop_assert!(text.ends_with(secret));
                prop_assert!(text.contains(&id.simple().to_string()) || text.contains(&id.to_string()));
            }
            Err(e) => prop_assert!(matches!(e, CoreError::Unauthorized(_)), "{e:?}"),
        }
    }

    #[test]
    fn phone_normalization_is_digits_only_and_idempotent(
        field in "[a-zA-Z_.]{0,6}[pP][hH][oO][nN][eE][a-zA-Z_.]{0,6}",
        text in prop_oneof![hostile_string(), "[0-9 ()+.\\-x]{0,30}", "[0-9٠-٩０-９]{0,20}"],
    ) {
        prop_assert!(is_phone_field(&field));
        let once = normalize(&field, &json!(text)).expect("a string normalizes");
        prop_assert!(once.bytes().all(|b| b.is_ascii_digit()), "'{}' → '{}'", text, once);
        let ascii_digits: String = text.chars().filter(char::is_ascii_digit).collect();
        prop_assert_eq!(&once, &ascii_digits);
        prop_assert_eq!(normalize(&field, &json!(once)), Some(once.clone()));
    }

    #[test]
    fn text_normalization_is_idempotent(field in "[a-zA-Z_.]{1,20}", text in hostile_string()) {
        prop_assume!(!is_phone_field(&field));
        let once = normalize(&field, &json!(text)).expect("a string normalizes");
        prop_assert_eq!(normalize(&field, &json!(once)), Some(once.clone()), "from '{}'", text);
    }

    #[test]
    fn normalization_never_panics(field in hostile_string(), value in json_leaf()) {
        let n = normalize(&field, &value);
        prop_assert_eq!(n.is_some(), !value.is_null());
        if let Value::Bool(b) = value {
            prop_assert_eq!(n, Some(b.to_string()));
        }
    }
}
