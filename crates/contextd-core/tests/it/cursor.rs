//! Cursor decoding: arbitrary text never panics, forgeries are refused with a 400, and every
//! cursor the server issues decodes to the position it was made from.

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use chrono::{DateTime, Utc};
use contextd_core::search::{decode_cursor, encode_cursor};
use contextd_core::store::PagePosition;
use contextd_core::{CoreError, ObjectId};
use proptest::prelude::*;
use uuid::Uuid;

use crate::support::{config, hostile_string};

/// A page position anywhere in chrono's range, with any id.
pub fn position() -> BoxedStrategy<PagePosition> {
    let min = DateTime::<Utc>::MIN_UTC.timestamp_millis();
    let max = DateTime::<Utc>::MAX_UTC.timestamp_millis();
    (
        prop_oneof![min..=max, Just(min), Just(max), Just(0), -1_000i64..1_000],
        any::<u128>(),
    )
        .prop_map(|(ms, id)| PagePosition {
            time: DateTime::<Utc>::from_timestamp_millis(ms).expect("in range"),
            id: ObjectId(Uuid::from_u128(id)),
        })
        .boxed()
}

/// Text shaped like the cursor payload (`1:<ms>:<uuid>`) with every part bent.
fn forged_payload() -> BoxedStrategy<String> {
    (
        prop_oneof![
            Just("1".to_owned()),
            Just("2".to_owned()),
            Just("".to_owned()),
            hostile_string()
        ],
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            Just(i64::MIN.to_string()),
            Just(i64::MAX.to_string()),
            Just("99999999999999999999999".to_owned()),
            Just("+5".to_owned()),
            Just("-0".to_owned()),
            Just(" 5".to_owned()),
            hostile_string(),
        ],
        prop_oneof![
            any::<u128>().prop_map(|n| Uuid::from_u128(n).simple().to_string()),
            any::<u128>().prop_map(|n| Uuid::from_u128(n).hyphenated().to_string()),
            any::<u128>().prop_map(|n| Uuid::from_u128(n).urn().to_string()),
            any::<u128>().prop_map(|n| Uuid::from_u128(n).braced().to_string()),
            hostile_string(),
        ],
        prop::option::of(hostile_string()),
    )
        .prop_map(|(v, ms, id, extra)| match extra {
            Some(e) => format!("{v}:{ms}:{id}:{e}"),
            None => format!("{v}:{ms}:{id}"),
        })
        .boxed()
}

/// Cursor text: issued, forged in every base64 flavour, or any string at all.
pub fn cursor_text() -> BoxedStrategy<String> {
    prop_oneof![
        2 => position().prop_map(|p| encode_cursor(&p)),
        2 => forged_payload().prop_map(|t| URL_SAFE_NO_PAD.encode(t)),
        1 => forged_payload().prop_map(|t| URL_SAFE.encode(t)),
        1 => forged_payload().prop_map(|t| STANDARD.encode(t)),
        1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| URL_SAFE_NO_PAD.encode(b)),
        1 => (position(), "[ \t\n]{0,2}").prop_map(|(p, ws)| format!("{ws}{}{ws}", encode_cursor(&p))),
        2 => hostile_string(),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn decoding_any_text_never_panics_and_refuses_with_a_400(text in cursor_text()) {
        match decode_cursor(&text) {
            Ok(p) => {
                // Whatever decodes is a real position, and re-encodes to a cursor for it.
                prop_assert_eq!(decode_cursor(&encode_cursor(&p)).ok(), Some(p));
            }
            Err(CoreError::Validation(errors)) => {
                prop_assert_eq!(errors.len(), 1);
                prop_assert_eq!(errors[0].field.as_str(), "cursor");
            }
            Err(other) => prop_assert!(false, "a bad cursor is a 400, not {other:?}"),
        }
    }

    #[test]
    fn decoding_any_string_never_panics(text in any::<String>()) {
        let _ = decode_cursor(&text);
    }

    #[test]
    fn issued_cursors_round_trip(p in position()) {
        let cursor = encode_cursor(&p);
        prop_assert!(cursor.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "a cursor is URL-safe as it is: {}", cursor);
        prop_assert_eq!(decode_cursor(&cursor).ok(), Some(p));
    }
}
