//! The conformance suite of contextd's storage backends: every `Store` and `KeyStore`
//! implementation runs these checks from its own test binary, so that SQLite and PostgreSQL
//! are held to the same behaviour, line by line.
//!
//! Each check takes a `&dyn Store` (or `&dyn KeyStore`), works in orgs of its own (fresh random
//! `OrgId`s), so that all checks can share one database, and panics with a message naming the
//! broken rule. The suite tests only what the traits promise — never a backend's tables, SQL
//! or files.

mod admin;
mod audit;
mod connectors;
mod events;
pub mod fixtures;
mod isolation;
mod keys;
mod objects;
mod people;
mod retention;
mod search;

use contextd_core::store::{KeyStore, Store};

pub use admin::{
    check_any_token_in_use, check_api_keys, check_dictionary, check_dictionary_versions,
    check_flush_jobs, check_org_settings, check_orgs,
};
pub use audit::{check_audit_chain, check_audit_segment_preparation, check_audit_segments};
pub use connectors::{check_connector_tokens, check_connectors};
pub use events::{check_event_cursors, check_events, check_webhooks};
pub use isolation::check_scope_isolation;
pub use keys::{check_customer_key_batches, check_key_store, check_partition_key_races};
pub use objects::{
    check_batch_import, check_close_stale_requests, check_concurrent_writes, check_flush,
    check_linked_writes, check_object_crud, check_parent_rules, check_versions,
};
pub use people::{
    check_audit, check_credential_changes, check_erase_customer, check_grants, check_key_rewrap,
    check_last_admin, check_reseal, check_sessions, check_user_changes,
    check_user_deletion_and_sessions, check_users,
};
pub use retention::check_retention;
pub use search::{check_paging, check_search_semantics, check_timeline};

/// Runs every check, one after the other, against one store and one key store.
pub async fn run_all(store: &dyn Store, keys: &dyn KeyStore) {
    check_object_crud(store).await;
    check_versions(store).await;
    check_parent_rules(store).await;
    check_concurrent_writes(store).await;
    check_linked_writes(store).await;
    check_batch_import(store).await;
    check_search_semantics(store).await;
    check_paging(store).await;
    check_timeline(store).await;
    check_flush(store).await;
    check_scope_isolation(store).await;
    check_close_stale_requests(store).await;
    check_orgs(store).await;
    check_api_keys(store).await;
    check_dictionary(store).await;
    check_dictionary_versions(store).await;
    check_flush_jobs(store).await;
    check_any_token_in_use(store).await;
    check_users(store).await;
    check_sessions(store).await;
    check_user_changes(store).await;
    check_user_deletion_and_sessions(store).await;
    check_last_admin(store).await;
    check_grants(store).await;
    check_credential_changes(store).await;
    check_audit(store).await;
    check_audit_chain(store).await;
    check_audit_segments(store).await;
    check_audit_segment_preparation(store).await;
    check_erase_customer(store).await;
    check_reseal(store).await;
    check_connectors(store).await;
    check_connector_tokens(store).await;
    check_events(store).await;
    check_event_cursors(store).await;
    check_webhooks(store).await;
    check_org_settings(store).await;
    check_retention(store).await;
    check_key_store(keys).await;
    check_key_rewrap(keys).await;
    check_partition_key_races(keys).await;
    check_customer_key_batches(keys).await;
}

/// Declares, in a backend's test binary, one test per conformance check (each on a fresh
/// database) and one that runs them all on one database, so that the list of checks is
/// written once, here. `$fresh` is an expression, evaluated in each async test, giving
/// `Option<db>` (`None`: the backend is not configured, the test passes saying so elsewhere)
/// where `db.store` is the `Store` and `db.keys` the `KeyStore`.
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:expr) => {
        $crate::conformance_tests!(@each store $fresh;
            check_object_crud, check_versions, check_parent_rules, check_concurrent_writes,
            check_linked_writes, check_search_semantics, check_paging, check_timeline,
            check_flush, check_scope_isolation, check_close_stale_requests, check_orgs,
            check_api_keys, check_dictionary, check_dictionary_versions, check_flush_jobs,
            check_any_token_in_use, check_users, check_sessions, check_user_changes,
            check_user_deletion_and_sessions, check_last_admin, check_grants,
            check_credential_changes, check_audit,
            check_audit_chain, check_audit_segments, check_audit_segment_preparation,
            check_erase_customer, check_reseal, check_connectors, check_connector_tokens,
            check_events, check_event_cursors, check_webhooks, check_org_settings,
            check_batch_import, check_retention);
        $crate::conformance_tests!(@each keys $fresh;
            check_key_store, check_key_rewrap, check_partition_key_races,
            check_customer_key_batches);

        /// Also catches a check added to `run_all` but not to the list above.
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn run_all_on_one_database() {
            let Some(db) = $fresh else { return };
            $crate::run_all(&db.store, &db.keys).await;
        }
    };
    (@each $part:ident $fresh:expr; $($check:ident),+) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let Some(db) = $fresh else { return };
            $crate::$check(&db.$part).await;
        }
    )+};
}
