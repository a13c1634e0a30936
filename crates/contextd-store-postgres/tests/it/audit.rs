//! The audit log is fail-closed on PostgreSQL too: with the audit table refusing appends (a
//! real fault: a trigger raising an error), a PII read or a revealing write is refused with
//! `AuditUnavailable` and writes nothing; healed, the same calls succeed.

use std::collections::BTreeMap;
use std::sync::Arc;

use contextd_core::crypto::{Keyring, MasterKey};
use contextd_core::service::{Context, ContextConfig, ObjectInput};
use contextd_core::{CoreError, Kind};
use contextd_store_postgres::{PgKeyStore, PgStore};
use serde_json::json;

use crate::TestDatabase;

fn customer(name: &str) -> ObjectInput {
    ObjectInput {
        fieldsets: vec!["cisco.base.customer".into()],
        data: BTreeMap::from([("Context_First_Name".to_owned(), json!(name))]),
        ..ObjectInput::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_revealing_writes_are_refused_when_the_audit_log_cannot_record() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgStore::connect(&db.url).await.expect("data store");
    let keys = PgKeyStore::connect(&db.url).await.expect("key store");
    let context = Context::new(
        Arc::new(store),
        Keyring::new(MasterKey::generate(), Arc::new(keys), 100),
        ContextConfig::default(),
    );
    let org = context
        .create_org("audited", "http://127.0.0.1")
        .await
        .expect("org");
    let admin = context
        .authenticate(&org.lab_admin_token)
        .await
        .expect("admin");
    let faye = context
        .create(&admin, Kind::Customer, customer("Faye"))
        .await
        .expect("create");

    let sql = db.connect().await;
    sql.batch_execute(
        "CREATE FUNCTION contextd.injected_fault() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'injected fault'; END $$;
         CREATE TRIGGER injected_fault BEFORE INSERT ON contextd.audit
         FOR EACH ROW EXECUTE FUNCTION contextd.injected_fault();",
    )
    .await
    .expect("break the audit table");
    match context.get(&admin, Kind::Customer, faye.id).await {
        Err(CoreError::AuditUnavailable(_)) => {}
        other => panic!("a PII read must be refused, got {other:?}"),
    }
    match context
        .create(&admin, Kind::Customer, customer("Ghost"))
        .await
    {
        Err(CoreError::AuditUnavailable(_)) => {}
        other => panic!("a revealing write must be refused, got {other:?}"),
    }
    let customers: i64 = sql
        .query_one(
            "SELECT count(*) FROM contextd.objects WHERE kind = 'customer'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(customers, 1, "the refused create wrote nothing");

    sql.batch_execute("DROP TRIGGER injected_fault ON contextd.audit")
        .await
        .expect("heal the audit table");
    let read = context
        .get(&admin, Kind::Customer, faye.id)
        .await
        .expect("read after healing");
    assert_eq!(read.data["Context_First_Name"], "Faye");
}
