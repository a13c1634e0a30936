//! Every conformance check, each on its own fresh database, and all of them on one.

use contextd_store_conformance as suite;

use crate::TestDb;

macro_rules! store_checks {
    ($($check:ident),+ $(,)?) => {$(
        #[tokio::test]
        async fn $check() {
            let Some(db) = TestDb::fresh().await else { return };
            suite::$check(&db.store).await;
        }
    )+};
}

store_checks!(
    check_object_crud,
    check_versions,
    check_parent_rules,
    check_concurrent_writes,
    check_linked_writes,
    check_search_semantics,
    check_paging,
    check_timeline,
    check_flush,
    check_scope_isolation,
    check_close_stale_requests,
    check_orgs,
    check_api_keys,
    check_dictionary,
    check_dictionary_versions,
    check_flush_jobs,
    check_any_token_in_use,
    check_users,
    check_sessions,
    check_user_changes,
    check_user_deletion_and_sessions,
    check_last_admin,
    check_grants,
    check_audit,
    check_erase_customer,
    check_reseal,
);

#[tokio::test]
async fn check_key_store() {
    let Some(db) = TestDb::fresh().await else {
        return;
    };
    suite::check_key_store(&db.keys).await;
}

#[tokio::test]
async fn check_key_rewrap() {
    let Some(db) = TestDb::fresh().await else {
        return;
    };
    suite::check_key_rewrap(&db.keys).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_partition_key_races() {
    let Some(db) = TestDb::fresh().await else {
        return;
    };
    suite::check_partition_key_races(&db.keys).await;
}

/// Also catches a check added to `run_all` but not yet listed above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_on_one_database() {
    let Some(db) = TestDb::fresh().await else {
        return;
    };
    suite::run_all(&db.store, &db.keys).await;
}
