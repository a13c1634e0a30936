//! The audit log on PostgreSQL. It is fail-closed: with the audit table refusing appends (a
//! real fault: a trigger raising an error), a PII read or a revealing write is refused with
//! `AuditUnavailable` and writes nothing; healed, the same calls succeed. It is provably whole:
//! entries changed or removed behind the store's back are reported by `verify` at the entry
//! concerned; segments are partitions dropped whole; instances appending at once keep the
//! chains whole; the entries of the version 2 table are chained on connect.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use contextd_core::audit_admin::{self, Break};
use contextd_core::auth::Role;
use contextd_core::crypto::{Keyring, MasterKey};
use contextd_core::ids::Scope;
use contextd_core::service::{Context, ContextConfig, ObjectInput};
use contextd_core::store::{AuditEntry, AuditQuery, AuditStore, Month};
use contextd_core::{CoreError, Kind};
use contextd_store_conformance::fixtures::{lab, now};
use contextd_store_postgres::{PgKeyStore, PgStore};
use serde_json::json;

use crate::{TestDatabase, TestDb};

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

fn entry(scope: Scope, at: DateTime<Utc>, detail: &str) -> AuditEntry {
    AuditEntry {
        id: uuid::Uuid::now_v7(),
        scope,
        at,
        actor: Some(uuid::Uuid::now_v7()),
        actor_role: Some(Role::Admin),
        action: "pii.read".into(),
        object_kind: Some(Kind::Customer),
        object_id: Some(uuid::Uuid::now_v7().to_string()),
        fields: vec!["Context_First_Name".into()],
        detail: detail.into(),
    }
}

/// Five entries of one scope, in two appends, at `t`; the log verifies.
async fn five(store: &PgStore, scope: Scope, t: DateTime<Utc>) -> Vec<AuditEntry> {
    let entries: Vec<AuditEntry> = (1..=5).map(|i| entry(scope, t, &format!("e{i}"))).collect();
    store.append_audit(&entries[..2]).await.expect("append");
    store.append_audit(&entries[2..]).await.expect("append");
    let report = audit_admin::verify(store).await.expect("verify");
    assert!(report.is_whole(), "{report:?}");
    assert_eq!((report.entries, report.chains, report.segments), (5, 1, 1));
    entries
}

/// The partition of `month`, its user triggers (the append-only ones) disabled, as someone
/// editing rows behind the server's back would.
async fn without_triggers(sql: &tokio_postgres::Client, month: Month) -> String {
    let table = format!("contextd.audit_{}", month.table_suffix());
    sql.batch_execute(&format!("ALTER TABLE {table} DISABLE TRIGGER USER"))
        .await
        .expect("disable the triggers");
    table
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_edited_behind_the_stores_back_is_reported_at_that_entry() {
    let Some(db) = TestDb::fresh().await else {
        return;
    };
    let (scope, t) = (lab(), now());
    let entries = five(&db.store, scope, t).await;
    let sql = db.database.connect().await;
    let refused = sql
        .execute(
            "UPDATE contextd.audit SET detail = 'edited' WHERE org_id = $1 AND seq = 3",
            &[&scope.org.0],
        )
        .await
        .expect_err("the triggers refuse it");
    assert!(
        refused
            .as_db_error()
            .is_some_and(|e| e.message().contains("append-only")),
        "{refused:?}"
    );
    let table = without_triggers(&sql, Month::of(t)).await;
    let n = sql
        .execute(
            &format!("UPDATE {table} SET detail = 'edited' WHERE org_id = $1 AND seq = 3"),
            &[&scope.org.0],
        )
        .await
        .expect("tamper");
    assert_eq!(n, 1);
    let report = audit_admin::verify(&db.store).await.expect("verify");
    let broken = report.first_broken.expect("the edit is found");
    assert_eq!(
        (
            broken.month,
            broken.scope,
            broken.seq,
            broken.entry_id,
            broken.reason
        ),
        (Month::of(t), scope, 3, Some(entries[2].id), Break::Altered),
        "{broken}"
    );
    assert_eq!(report.entries, 2, "the links before it held");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_entry_is_reported_as_a_gap() {
    let Some(db) = TestDb::fresh().await else {
        return;
    };
    let (scope, t) = (lab(), now());
    five(&db.store, scope, t).await;
    let sql = db.database.connect().await;
    let table = without_triggers(&sql, Month::of(t)).await;
    sql.execute(
        &format!("DELETE FROM {table} WHERE org_id = $1 AND seq = 2"),
        &[&scope.org.0],
    )
    .await
    .expect("tamper");
    let broken = audit_admin::verify(&db.store)
        .await
        .expect("verify")
        .first_broken
        .expect("found");
    assert_eq!(
        (broken.scope, broken.seq, broken.entry_id, broken.reason),
        (scope, 2, None, Break::Missing),
        "{broken}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_are_partitions_dropped_whole_and_what_remains_verifies() {
    let Some(db) = TestDb::fresh().await else {
        return;
    };
    let scope = lab();
    let jan = Month::parse("2001-01").expect("month");
    let feb = jan.next();
    let entries = vec![
        entry(scope, jan.start() + Duration::days(3), "a"),
        entry(scope, jan.start() + Duration::days(4), "b"),
        entry(scope, feb.start() + Duration::days(3), "c"),
    ];
    db.store.append_audit(&entries).await.expect("append");
    let sql = db.database.connect().await;
    let exists = |month: Month| {
        let sql = &sql;
        async move {
            sql.query_one(
                &format!(
                    "SELECT to_regclass('contextd.audit_{}') IS NOT NULL",
                    month.table_suffix()
                ),
                &[],
            )
            .await
            .expect("to_regclass")
            .get::<_, bool>(0)
        }
    };
    assert!(exists(jan).await && exists(feb).await);
    let truncate = sql
        .batch_execute(&format!("TRUNCATE contextd.audit_{}", jan.table_suffix()))
        .await;
    assert!(truncate.is_err(), "a segment cannot be truncated");
    let report = audit_admin::verify(&db.store).await.expect("verify");
    assert!(report.is_whole(), "{report:?}");
    assert_eq!((report.segments, report.entries), (2, 3));

    db.store.drop_audit_segment(jan).await.expect("drop");
    assert!(!exists(jan).await, "the partition is gone");
    let report = audit_admin::verify(&db.store).await.expect("verify");
    assert!(report.is_whole(), "{report:?}");
    assert_eq!((report.segments, report.entries), (1, 1));
    let left = db
        .store
        .audit(
            scope,
            &AuditQuery {
                limit: 10,
                ..AuditQuery::default()
            },
        )
        .await
        .expect("audit");
    assert_eq!(left, [entries[2].clone()]);
}

/// Several instances append to the same chains at once: each append locks the heads it
/// extends, so the chains stay whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_appending_at_once_keep_the_chains_whole() {
    let Some(db) = TestDb::fresh().await else {
        return;
    };
    let other = std::sync::Arc::new(PgStore::connect(&db.database.url).await.expect("connect"));
    let mine = std::sync::Arc::new(db.store);
    let (a, b) = (lab(), lab());
    let mut tasks = Vec::new();
    for i in 0..40 {
        let store = if i % 2 == 0 {
            mine.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            let batch = vec![
                entry(a, now(), "a"),
                entry(b, now(), "b"),
                entry(a, now(), "a"),
            ];
            store.append_audit(&batch).await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("append");
    }
    let report = audit_admin::verify(&*mine).await.expect("verify");
    assert!(report.is_whole(), "{report:?}");
    assert_eq!(report.entries, 120);
    let heads = mine.audit_heads().await.expect("heads");
    let seq = |s: Scope| heads.iter().find(|h| h.scope == s).map(|h| h.seq);
    assert_eq!((seq(a), seq(b)), (Some(80), Some(40)));
}

/// The entries of the version 2 table are chained into the segments when the store
/// connects (after migration 9), once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_of_the_version_2_table_are_chained_on_connect() {
    let Some(db) = TestDb::fresh().await else {
        return;
    };
    let TestDb {
        store,
        keys,
        database,
    } = db;
    drop((store, keys));
    let sql = database.connect().await;
    // The schema as version 8 left it: the audit table of version 2, with entries.
    sql.batch_execute(
        "DROP TABLE contextd.audit, contextd.audit_actions, contextd.audit_heads,
             contextd.audit_segments, contextd.audit_segment_heads;
         DELETE FROM contextd.schema_migrations WHERE version = 9;
         CREATE TABLE contextd.audit (
             org_id      uuid        NOT NULL,
             partition   text        NOT NULL CHECK (partition IN ('lab', 'production')),
             id          uuid        NOT NULL,
             at          timestamptz NOT NULL,
             actor       uuid,
             actor_role  text,
             action      text        NOT NULL,
             object_kind text,
             object_id   text,
             fields      jsonb       NOT NULL,
             detail      text        NOT NULL,
             PRIMARY KEY (org_id, partition, id)
         );
         CREATE INDEX audit_by_object ON contextd.audit (org_id, partition, object_id, id);",
    )
    .await
    .expect("schema 8");
    let (scope, other) = (lab(), lab());
    let jan = Month::parse("2001-01").expect("month");
    let entries = vec![
        entry(scope, jan.start() + Duration::days(1), "first"),
        entry(other, jan.start() + Duration::days(2), "other"),
        entry(scope, jan.next().start() + Duration::days(1), "second"),
    ];
    for e in &entries {
        sql.execute(
            "INSERT INTO contextd.audit VALUES ($1, $2, $3, $4, $5, 'admin', 'pii.read',
                 'customer', $6, '[\"Context_First_Name\"]', $7)",
            &[
                &e.scope.org.0,
                &e.scope.partition.as_str(),
                &e.id,
                &e.at,
                &e.actor,
                &e.object_id,
                &e.detail,
            ],
        )
        .await
        .expect("an entry of version 2");
    }
    for _ in 0..2 {
        let store = PgStore::connect(&database.url).await.expect("connect");
        let gone: bool = sql
            .query_one("SELECT to_regclass('contextd.audit_v1') IS NULL", &[])
            .await
            .expect("to_regclass")
            .get(0);
        assert!(gone, "the version 2 table is dropped once chained");
        let report = audit_admin::verify(&store).await.expect("verify");
        assert!(report.is_whole(), "{report:?}");
        assert_eq!((report.entries, report.chains, report.segments), (3, 2, 2));
        let read = store
            .audit(
                scope,
                &AuditQuery {
                    limit: 10,
                    ..AuditQuery::default()
                },
            )
            .await
            .expect("audit");
        assert_eq!(read, [entries[2].clone(), entries[0].clone()]);
    }
}
