//! Bytes → `SearchRequest` (the body of `POST /v1/{kind}/search`) → `search::plan` for every
//! kind, as a full reader and as a partner. No panic; a refusal is a 400; a plan is made only
//! with a limit in range.
#![no_main]

use chrono::Utc;
use contextd_core::search::{self, SealedAccess, SearchRequest, MAX_LIMIT, MAX_SUMMARY};
use contextd_core::Kind;
use contextd_fuzz::{dictionary, indexer, is_client_error};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<SearchRequest>(data) else {
        return;
    };
    let max = if request.summary { MAX_SUMMARY } else { MAX_LIMIT };
    for kind in Kind::ALL {
        for access in [SealedAccess::Allowed, SealedAccess::Withheld] {
            match search::plan(kind, &request, dictionary(), indexer(), access, Utc::now()) {
                Err(e) => assert!(is_client_error(&e), "{e:?}"),
                Ok(plan) => {
                    assert!((1..=max).contains(&plan.limit), "limit {}", plan.limit);
                    assert_eq!(plan.conditions.len(), request.terms.len());
                }
            }
        }
    }
});
