//! Bytes → `search::decode_cursor` (the `cursor` of searches and timelines). No panic; a
//! refusal is a 400; whatever decodes re-encodes to a cursor of the same position.
#![no_main]

use contextd_core::search::{decode_cursor, encode_cursor};
use contextd_fuzz::is_client_error;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match decode_cursor(&text) {
        Err(e) => assert!(is_client_error(&e), "{e:?}"),
        Ok(position) => assert_eq!(decode_cursor(&encode_cursor(&position)).ok(), Some(position)),
    }
});
