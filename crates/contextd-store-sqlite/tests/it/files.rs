//! What is particular to SQLite: files, migrations, reopening, the key store's separate file.

use std::path::Path;

use contextd_core::ids::ObjectId;
use contextd_core::object::Kind;
use contextd_core::store::prelude::*;
use contextd_core::store::{
    AuditEntry, AuditQuery, Condition, OrgRecord, TimelineQuery, WrappedKey,
};
use contextd_store_conformance::fixtures::{
    at, by_created, insert, lab, now, object, plan_with, read, rich_object, search, token,
};
use contextd_store_sqlite::{SqliteKeyStore, SqliteStore};
use rusqlite::Connection;

use crate::TestDb;

fn tables(path: &Path) -> Vec<String> {
    let conn = Connection::open(path).expect("open");
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .expect("prepare");
    let names = stmt
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<Vec<String>, _>>()
        .expect("rows");
    names
}

fn migrations(path: &Path) -> Vec<i64> {
    let conn = Connection::open(path).expect("open");
    let mut stmt = conn
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .expect("prepare");
    let versions = stmt
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<Vec<i64>, _>>()
        .expect("rows");
    versions
}

/// Whether `needle` occurs in the file or in any of its SQLite side files.
fn on_disk(path: &Path, needle: &[u8]) -> bool {
    ["", "-wal", "-journal", "-shm"].iter().any(|suffix| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        std::fs::read(&p)
            .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            .unwrap_or(false)
    })
}

#[tokio::test]
async fn backend_is_sqlite_and_answers_ping() {
    let db = TestDb::fresh();
    assert_eq!(db.store.backend(), "sqlite");
    assert_eq!(Store::backend(&db.store), "sqlite");
    assert_eq!(db.keys.backend(), "sqlite");
    db.store.ping().await.expect("ping");
    KeyStore::ping(&db.keys).await.expect("ping");
}

#[tokio::test]
async fn open_creates_missing_parent_directories() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("a/b/contextd.db");
    let keys = dir.path().join("c/keys.db");
    let store = SqliteStore::open(&data).expect("open data");
    let key_store = SqliteKeyStore::open(&keys).expect("open keys");
    store.ping().await.expect("ping");
    key_store.ping().await.expect("ping");
    assert!(data.is_file() && keys.is_file());
}

#[tokio::test]
async fn migrations_apply_once_and_reopening_is_idempotent() {
    let db = TestDb::fresh();
    let (data, keys) = (
        db.dir.path().join("contextd.db"),
        db.dir.path().join("keys.db"),
    );
    for _ in 0..3 {
        drop(SqliteStore::open(&data).expect("reopen data"));
        drop(SqliteKeyStore::open(&keys).expect("reopen keys"));
    }
    assert_eq!(
        migrations(&data),
        vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
        "each data migration is recorded once"
    );
    assert_eq!(
        migrations(&SqliteStore::audit_path(&data)),
        vec![1, 2],
        "each audit migration is recorded once"
    );
    assert_eq!(
        migrations(&keys),
        vec![1],
        "each key-store migration is recorded once"
    );
    let data_tables = tables(&data);
    for t in [
        "api_keys",
        "connector_credentials",
        "connectors",
        "event_cursors",
        "events",
        "fields",
        "fieldsets",
        "flush_jobs",
        "objects",
        "orgs",
        "schema_migrations",
        "tokens",
        "webhook_deliveries",
        "webhooks",
    ] {
        assert!(
            data_tables.contains(&t.to_owned()),
            "data table {t} exists: {data_tables:?}"
        );
    }
}

fn audit_entry(detail: &str) -> AuditEntry {
    AuditEntry {
        id: uuid::Uuid::now_v7(),
        scope: lab(),
        at: now(),
        actor: None,
        actor_role: None,
        action: "pii.read".into(),
        object_kind: Some(Kind::Customer),
        object_id: Some(ObjectId::new().to_string()),
        fields: vec!["Context_First_Name".into()],
        detail: detail.into(),
    }
}

#[tokio::test]
async fn the_audit_log_lives_in_its_own_append_only_file() {
    let db = TestDb::fresh();
    let data = db.dir.path().join("contextd.db");
    let audit = db.dir.path().join("contextd-audit.db");
    assert_eq!(SqliteStore::audit_path(&data), audit);
    let entry = audit_entry("first");
    db.store
        .append_audit(std::slice::from_ref(&entry))
        .await
        .expect("append");
    // The entries of a month are a table of their own in the audit file.
    let segment = format!(
        "audit_{}",
        contextd_core::store::Month::of(entry.at).table_suffix()
    );
    assert!(!tables(&data).iter().any(|t| t.starts_with("audit")));
    let audit_tables = tables(&audit);
    assert!(audit_tables.contains(&segment), "{audit_tables:?}");
    assert!(
        !audit_tables.contains(&"audit".to_owned()),
        "{audit_tables:?}"
    );
    let conn = Connection::open(&audit).expect("open");
    let rows: i64 = conn
        .query_row(&format!("SELECT count(*) FROM {segment}"), [], |r| r.get(0))
        .expect("count");
    assert_eq!(rows, 1);
    for change in [
        format!("UPDATE {segment} SET detail = 'changed'"),
        format!("DELETE FROM {segment}"),
    ] {
        let err = conn.execute(&change, []).expect_err("refused");
        assert!(err.to_string().contains("append-only"), "{change}: {err}");
    }
}

#[tokio::test]
async fn audit_rows_of_an_older_data_file_move_to_the_audit_file() {
    let db = TestDb::fresh();
    let data = db.dir.path().join("contextd.db");
    let kept = audit_entry("written before schema 4");
    let TestDb { dir, store, keys } = db;
    drop(store);
    drop(keys);
    {
        // Put the data file back as schema 3 left it: the audit table with a row in it.
        let conn = Connection::open(&data).expect("open");
        conn.execute_batch(
            "CREATE TABLE audit (id BLOB NOT NULL, org_id BLOB NOT NULL, partition TEXT NOT NULL,
                 at INTEGER NOT NULL, actor BLOB, actor_role TEXT, action TEXT NOT NULL,
                 object_kind TEXT, object_id TEXT, fields TEXT NOT NULL, detail TEXT NOT NULL,
                 PRIMARY KEY (org_id, partition, id)) WITHOUT ROWID;
             DELETE FROM schema_migrations WHERE version = 4;",
        )
        .expect("schema 3");
        conn.execute(
            "INSERT INTO audit VALUES (?1, ?2, 'lab', ?3, NULL, NULL, 'pii.read', 'customer', ?4, '[\"Context_First_Name\"]', ?5)",
            rusqlite::params![
                kept.id.as_bytes().to_vec(),
                kept.scope.org.0.as_bytes().to_vec(),
                kept.at.timestamp_millis(),
                kept.object_id.clone(),
                kept.detail.clone()
            ],
        )
        .expect("legacy row");
    }
    let store = SqliteStore::open(&data).expect("reopen");
    assert!(
        !tables(&data).contains(&"audit".to_owned()),
        "schema 4 drops it"
    );
    let entries = store
        .audit(
            kept.scope,
            &AuditQuery {
                limit: 10,
                ..AuditQuery::default()
            },
        )
        .await
        .expect("audit");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].id, kept.id);
    assert_eq!(entries[0].detail, kept.detail);
    drop(store);
    drop(dir);
}

#[tokio::test]
async fn api_keys_of_an_older_data_file_survive_the_connectors_migration() {
    let db = TestDb::fresh();
    let data = db.dir.path().join("contextd.db");
    let TestDb { dir, store, keys } = db;
    drop(store);
    drop(keys);
    let scope = lab();
    let id = uuid::Uuid::now_v7();
    {
        // Put the data file back as schema 6 left it, with a key in it.
        let conn = Connection::open(&data).expect("open");
        conn.execute_batch(
            "DROP TABLE connectors;
             DROP TABLE connector_credentials;
             DROP INDEX api_keys_by_connector;
             DROP INDEX api_keys_listed;
             ALTER TABLE api_keys DROP COLUMN connector_id;
             DELETE FROM schema_migrations WHERE version = 7;",
        )
        .expect("schema 6");
        conn.execute(
            "INSERT INTO api_keys (id, org_id, partition, name, role, secret_hash, created)
             VALUES (?1, ?2, 'lab', 'old key', 'machine', ?3, 0)",
            rusqlite::params![
                id.as_bytes().to_vec(),
                scope.org.0.as_bytes().to_vec(),
                [7u8; 32].to_vec()
            ],
        )
        .expect("old key");
    }
    let store = SqliteStore::open(&data).expect("reopen");
    assert!(migrations(&data).contains(&7), "schema 7 applied again");
    let key = store.api_key(id).await.expect("api_key").expect("the key");
    assert_eq!((key.scope, key.connector), (scope, None));
    assert_eq!(
        store.api_keys(scope).await.expect("api_keys"),
        vec![key],
        "an old key is an ordinary key, listed"
    );
    drop(store);
    drop(dir);
}

/// Schema 10's `objects`: a rowid table, the journey in an index of its own.
const OBJECTS_BY_ROWID: &str = "
    DROP INDEX objects_by_id; DROP INDEX objects_by_kind; DROP INDEX objects_by_parent;
    DROP INDEX objects_active_requests; DROP INDEX objects_to_reseal; DROP INDEX objects_by_journey;
    CREATE TABLE objects_v10 (
        org_id BLOB NOT NULL, partition TEXT NOT NULL, id BLOB NOT NULL, kind TEXT NOT NULL,
        customer_id BLOB, parent_id BLOB, state TEXT NOT NULL, media_type TEXT,
        detail_type TEXT, created INTEGER NOT NULL, last_updated INTEGER NOT NULL,
        touched INTEGER NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL,
        sealed BLOB NOT NULL, key_version INTEGER NOT NULL DEFAULT 0);
    INSERT INTO objects_v10 SELECT org_id, partition, id, kind, customer_id, parent_id, state,
        media_type, detail_type, created, last_updated, touched, version, body, sealed,
        key_version FROM objects ORDER BY random();
    DROP TABLE objects;
    ALTER TABLE objects_v10 RENAME TO objects;
    CREATE UNIQUE INDEX objects_by_id ON objects (org_id, partition, id);
    CREATE INDEX objects_by_kind ON objects (org_id, partition, kind, last_updated DESC, id DESC);
    CREATE INDEX objects_by_parent ON objects (org_id, partition, parent_id);
    CREATE INDEX objects_active_requests ON objects (touched)
        WHERE kind = 'request' AND state = 'active';
    CREATE INDEX objects_to_reseal ON objects (org_id, partition, key_version)
        WHERE key_version > 0;
    CREATE INDEX objects_by_customer
        ON objects (org_id, partition, customer_id, created DESC, id DESC, kind);
    DELETE FROM schema_migrations WHERE version = 11;";

/// Schema 11 rewrites `objects` clustered by journey: every object comes through whole, and
/// timelines, reads by id and writes under a parent work on the rewritten table.
#[tokio::test]
async fn objects_of_an_older_data_file_move_into_the_journey_clustered_table() {
    let db = TestDb::fresh();
    let data = db.dir.path().join("contextd.db");
    let s = lab();
    let t = now();
    let customer = rich_object(s, Kind::Customer, t);
    let mut journey = vec![customer.clone()];
    for i in 1..=5 {
        let mut a = rich_object(s, Kind::Activity, at(t, i));
        a.customer_id = Some(customer.id);
        journey.push(a);
    }
    let loose = object(s, Kind::Activity, at(t, 9));
    for o in journey.iter().chain([&loose]) {
        insert(&db.store, o, &[token()]).await;
    }
    let TestDb { dir, store, keys } = db;
    drop(store);
    drop(keys);
    Connection::open(&data)
        .expect("open")
        .execute_batch(OBJECTS_BY_ROWID)
        .expect("schema 10");

    let store = SqliteStore::open(&data).expect("reopen");
    assert!(migrations(&data).contains(&11), "schema 11 applied again");
    for o in journey.iter().chain([&loose]) {
        assert_eq!(
            &read(&store, s, o.id).await,
            o,
            "an object survives the rewrite"
        );
    }
    let page = store
        .timeline(
            s,
            &TimelineQuery {
                customer_id: customer.id,
                media_type: None,
                limit: 10,
                after: None,
            },
        )
        .await
        .expect("timeline");
    let ids: Vec<_> = page.items.iter().map(|o| o.id).collect();
    assert_eq!(ids, by_created(&journey[1..].iter().collect::<Vec<_>>()));
    assert_eq!(page.total, 5);
    drop(store);
    drop(dir);
}

#[tokio::test]
async fn a_database_from_a_newer_contextd_is_refused() {
    let db = TestDb::fresh();
    let data = db.dir.path().join("contextd.db");
    let conn = Connection::open(&data).expect("open");
    conn.execute(
        "INSERT INTO schema_migrations (version, applied_at) VALUES (9999, 0)",
        [],
    )
    .expect("insert");
    drop(conn);
    assert!(
        SqliteStore::open(&data).is_err(),
        "an unknown schema version must not be opened"
    );
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("contextd.db");
    std::fs::write(&path, vec![0x42u8; 8192]).expect("write");
    assert!(SqliteStore::open(&path).is_err());
    assert!(SqliteKeyStore::open(&path).is_err());
}

#[tokio::test]
async fn data_is_in_wal_mode() {
    let db = TestDb::fresh();
    let conn = Connection::open(db.dir.path().join("contextd.db")).expect("open");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("pragma");
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn data_survives_reopening() {
    let db = TestDb::fresh();
    let data = db.dir.path().join("contextd.db");
    let s = lab();
    let o = rich_object(s, Kind::Customer, now());
    let tok = token();
    insert(&db.store, &o, &[tok]).await;
    let org = OrgRecord {
        id: s.org,
        name: "reopened".into(),
        created: now(),
    };
    db.store.create_org(&org).await.expect("create_org");
    let key = WrappedKey {
        version: 1,
        wrapped_by: 1,
        bytes: vec![1, 2, 3],
    };
    db.keys
        .insert_index_key(s, &key)
        .await
        .expect("insert_index_key");
    let TestDb { dir, store, keys } = db;
    drop(store);
    drop(keys);

    let store = SqliteStore::open(&data).expect("reopen");
    let keys = SqliteKeyStore::open(&dir.path().join("keys.db")).expect("reopen keys");
    assert_eq!(read(&store, s, o.id).await, o);
    let found = search(
        &store,
        s,
        &plan_with(Kind::Customer, true, vec![Condition::Tokens(vec![tok])]),
    )
    .await;
    assert_eq!(found.ids, vec![o.id], "tokens survive reopening");
    assert_eq!(
        store.org_by_name("reopened").await.expect("org_by_name"),
        Some(org)
    );
    assert_eq!(keys.index_key(s).await.expect("index_key"), Some(key));
}

#[tokio::test]
async fn keys_live_in_their_own_file() {
    let db = TestDb::fresh();
    let (data, keys_path) = (
        db.dir.path().join("contextd.db"),
        db.dir.path().join("keys.db"),
    );
    let s = lab();
    let marker: Vec<u8> = b"wrapped-key-marker-0123456789".to_vec();
    db.keys
        .insert_data_key(
            s,
            &WrappedKey {
                version: 1,
                wrapped_by: 1,
                bytes: marker.clone(),
            },
        )
        .await
        .expect("insert");
    insert(&db.store, &object(s, Kind::Customer, now()), &[]).await;

    let data_tables = tables(&data);
    let key_tables = tables(&keys_path);
    for t in ["data_keys", "index_keys", "customer_keys"] {
        assert!(
            !data_tables.contains(&t.to_owned()),
            "the data file has no {t}"
        );
        assert!(key_tables.contains(&t.to_owned()), "the key file has {t}");
    }
    assert!(
        !key_tables.contains(&"objects".to_owned()),
        "the key file holds no objects"
    );
    assert!(on_disk(&keys_path, &marker), "the key is in the key file");
    assert!(!on_disk(&data, &marker), "the key is not in the data file");
}

#[tokio::test]
async fn a_shredded_customer_key_is_gone_from_disk() {
    let db = TestDb::fresh();
    let keys_path = db.dir.path().join("keys.db");
    let s = lab();
    let customer = ObjectId::new();
    let marker: Vec<u8> = b"customer-key-to-shred-9876543210".to_vec();
    let key = WrappedKey {
        version: 1,
        wrapped_by: 1,
        bytes: marker.clone(),
    };
    db.keys
        .insert_customer_key(s, customer, &key)
        .await
        .expect("insert");
    // Neighbours on the same page, so the page itself lives on after the delete.
    for i in 0..20u8 {
        let other = WrappedKey {
            version: 1,
            wrapped_by: 1,
            bytes: vec![i; 40],
        };
        db.keys
            .insert_customer_key(s, ObjectId::new(), &other)
            .await
            .expect("insert");
    }
    assert!(on_disk(&keys_path, &marker), "the key was written");
    db.keys
        .delete_customer_key(s, customer)
        .await
        .expect("delete");
    assert!(
        !on_disk(&keys_path, &marker),
        "no trace of the deleted key in the key store's files"
    );
}

/// Group commit: many concurrent writers are acknowledged by far fewer commits (one fsync
/// each), and every acknowledged write is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_share_commits() {
    let db = std::sync::Arc::new(TestDb::fresh());
    let scope = contextd_store_conformance::fixtures::lab();
    let before = db.store.commit_count();
    const WRITES: u64 = 400;
    let mut tasks = Vec::new();
    for _ in 0..WRITES {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let o = contextd_store_conformance::fixtures::object(
                scope,
                Kind::Activity,
                contextd_store_conformance::fixtures::now(),
            );
            db.store
                .write_object(&contextd_store_conformance::fixtures::insert_write(&o, &[]))
                .await
                .map(|()| o.id)
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.expect("task").expect("write acknowledged"));
    }
    let commits = db.store.commit_count() - before;
    assert!(
        (1..WRITES / 2).contains(&commits),
        "{WRITES} writes took {commits} commits: writes are not batched"
    );
    for id in ids {
        assert!(
            db.store.object(scope, id).await.expect("read").is_some(),
            "an acknowledged write is stored"
        );
    }
}
