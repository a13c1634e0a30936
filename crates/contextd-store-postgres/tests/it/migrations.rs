//! What is particular to PostgreSQL: migrations under concurrency, schemas, native types.

use contextd_core::object::Kind;
use contextd_core::store::{CredentialStore, KeyStore, Store, WrappedKey};
use contextd_store_conformance::fixtures::{insert, lab, now, object, read};
use contextd_store_postgres::{PgKeyStore, PgStore};

use crate::{TestDatabase, TestDb};

async fn versions(client: &tokio_postgres::Client, schema: &str) -> Vec<(i64, i64)> {
    client
        .query(
            &format!(
                "SELECT version, count(*) FROM {schema}.schema_migrations GROUP BY version ORDER BY version"
            ),
            &[],
        )
        .await
        .expect("schema_migrations")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn tables(client: &tokio_postgres::Client, schema: &str) -> Vec<String> {
    client
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1
             ORDER BY table_name",
            &[&schema],
        )
        .await
        .expect("tables")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_starting_together_migrate_once() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let mut starts = Vec::new();
    for _ in 0..4 {
        let url = database.url.clone();
        starts.push(tokio::spawn(async move {
            let (store, keys) = tokio::join!(PgStore::connect(&url), PgKeyStore::connect(&url));
            (store.map(|_| ()), keys.map(|_| ()))
        }));
    }
    for start in starts {
        let (store, keys) = start.await.expect("join");
        store.expect("every instance's data store starts");
        keys.expect("every instance's key store starts");
    }
    let client = database.connect().await;
    let data = versions(&client, "contextd").await;
    assert!(
        data.len() >= 3
            && data
                .iter()
                .enumerate()
                .all(|(i, v)| *v == (i as i64 + 1, 1)),
        "each data migration is recorded once, in order: {data:?}"
    );
    assert_eq!(
        versions(&client, "contextd_keys").await,
        vec![(1, 1)],
        "each key-store migration is recorded once"
    );

    // Starting again changes nothing and keeps the data.
    let store = PgStore::connect(&database.url).await.expect("reconnect");
    let o = object(lab(), Kind::Customer, now());
    insert(&store, &o, &[]).await;
    drop(store);
    let store = PgStore::connect(&database.url).await.expect("reconnect");
    assert_eq!(
        read(&store, o.scope, o.id).await,
        o,
        "data survives a restart"
    );
    assert_eq!(versions(&client, "contextd").await, data);
}

#[tokio::test]
async fn api_keys_of_an_older_schema_survive_the_connectors_migration() {
    let Some(db) = TestDb::fresh().await else {
        return;
    };
    let TestDb {
        store,
        keys,
        database,
    } = db;
    drop((store, keys));
    let client = database.connect().await;
    // Put the schema back as version 5 left it, with a key in it.
    client
        .batch_execute(
            "DROP TABLE contextd.connectors;
             DROP TABLE contextd.connector_credentials;
             ALTER TABLE contextd.api_keys DROP COLUMN connector_id;
             DELETE FROM contextd.schema_migrations WHERE version = 6;",
        )
        .await
        .expect("schema 5");
    let scope = lab();
    let id = uuid::Uuid::now_v7();
    client
        .execute(
            "INSERT INTO contextd.api_keys (id, org_id, partition, name, role, secret_hash, created)
             VALUES ($1, $2, 'lab', 'old key', 'machine', $3, now())",
            &[&id, &scope.org.0, &vec![7u8; 32]],
        )
        .await
        .expect("old key");
    let store = PgStore::connect(&database.url).await.expect("reconnect");
    assert!(versions(&client, "contextd").await.contains(&(6, 1)));
    let key = store.api_key(id).await.expect("api_key").expect("the key");
    assert_eq!((key.scope, key.connector), (scope, None));
    assert_eq!(
        store.api_keys(scope).await.expect("api_keys"),
        vec![key],
        "an old key is an ordinary key, listed"
    );
}

#[tokio::test]
async fn a_schema_from_a_newer_contextd_is_refused() {
    let Some(db) = TestDb::fresh().await else {
        return;
    };
    let client = db.database.connect().await;
    client
        .batch_execute(
            "INSERT INTO contextd.schema_migrations (version, applied_at) VALUES (9999, now())",
        )
        .await
        .expect("insert");
    assert!(
        PgStore::connect(&db.database.url).await.is_err(),
        "an unknown schema version must not be used"
    );
    assert!(
        PgKeyStore::connect(&db.database.url).await.is_ok(),
        "the key store has its own versions"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_an_error_not_a_panic() {
    if std::env::var(crate::URL_VAR).is_err() {
        eprintln!("PostgreSQL tests skipped: {} is not set", crate::URL_VAR);
        return;
    }
    // Port 1 on loopback: nothing listens there.
    let url = "postgres://contextd@127.0.0.1:1/contextd?connect_timeout=2";
    assert!(PgStore::connect(url).await.is_err());
    assert!(PgKeyStore::connect(url).await.is_err());
    assert!(PgStore::connect("not a url").await.is_err());
    assert!(PgStore::connect_with_schema("postgres://h/db", "Bad-Name")
        .await
        .is_err());
}

#[tokio::test]
async fn backend_is_postgres_and_answers_ping() {
    let Some(db) = TestDb::fresh().await else {
        return;
    };
    assert_eq!(db.store.backend(), "postgres");
    assert_eq!(Store::backend(&db.store), "postgres");
    assert_eq!(db.keys.backend(), "postgres");
    db.store.ping().await.expect("ping");
    KeyStore::ping(&db.keys).await.expect("ping");
}

#[tokio::test]
async fn data_and_keys_live_in_separate_schemas() {
    let Some(db) = TestDb::fresh().await else {
        return;
    };
    let client = db.database.connect().await;
    let data = tables(&client, "contextd").await;
    let keys = tables(&client, "contextd_keys").await;
    for t in [
        "api_keys",
        "audit",
        "connector_credentials",
        "connectors",
        "fields",
        "fieldsets",
        "flush_jobs",
        "grants",
        "objects",
        "orgs",
        "schema_migrations",
        "sessions",
        "tokens",
        "users",
    ] {
        assert!(data.contains(&t.to_owned()), "data table {t}: {data:?}");
    }
    for t in ["customer_keys", "data_keys", "index_keys"] {
        assert!(keys.contains(&t.to_owned()), "key table {t}: {keys:?}");
        assert!(!data.contains(&t.to_owned()), "no {t} in the data schema");
    }
    assert!(!keys.contains(&"objects".to_owned()));
    assert!(
        tables(&client, "public").await.is_empty(),
        "nothing is created in public"
    );

    // A key store of its own in another schema (or database) works the same.
    let elsewhere = PgKeyStore::connect_with_schema(&db.database.url, "other_keys")
        .await
        .expect("key store in another schema");
    let s = lab();
    let key = WrappedKey {
        version: 7,
        wrapped_by: u32::MAX,
        bytes: vec![1, 2, 3],
    };
    elsewhere.insert_index_key(s, &key).await.expect("insert");
    assert_eq!(elsewhere.index_key(s).await.expect("read"), Some(key));
    assert_eq!(
        db.keys.index_key(s).await.expect("read"),
        None,
        "schemas are apart"
    );
}

/// The columns the issue asks for: native types, org_id leading every growing table's key,
/// byte-ordered identifiers, and the indexes lookups depend on.
#[tokio::test]
async fn the_schema_uses_native_types_and_the_intended_keys() {
    let Some(db) = TestDb::fresh().await else {
        return;
    };
    let client = db.database.connect().await;
    let column = |table: &'static str, name: &'static str| {
        let client = &client;
        async move {
            let row = client
                .query_one(
                    "SELECT data_type::text, coalesce(collation_name::text, '') FROM information_schema.columns
                     WHERE table_schema = 'contextd' AND table_name = $1 AND column_name = $2",
                    &[&table, &name],
                )
                .await
                .unwrap_or_else(|e| panic!("{table}.{name}: {e}"));
            (row.get::<_, String>(0), row.get::<_, String>(1))
        }
    };
    for (table, name, ty) in [
        ("objects", "org_id", "uuid"),
        ("objects", "id", "uuid"),
        ("objects", "created", "timestamp with time zone"),
        ("objects", "touched", "timestamp with time zone"),
        ("objects", "version", "bigint"),
        ("objects", "body", "jsonb"),
        ("objects", "sealed", "bytea"),
        ("tokens", "token", "bytea"),
        ("fields", "definition", "jsonb"),
        ("flush_jobs", "flushed", "bigint"),
    ] {
        assert_eq!(column(table, name).await.0, ty, "{table}.{name}");
    }
    for (table, name) in [("fields", "id"), ("fieldsets", "id"), ("users", "name")] {
        assert_eq!(
            column(table, name).await.1,
            "C",
            "{table}.{name} sorts as bytes"
        );
    }
    let definitions: Vec<String> = client
        .query(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'contextd' ORDER BY indexname",
            &[],
        )
        .await
        .expect("indexes")
        .iter()
        .map(|r| r.get(0))
        .collect();
    for wanted in [
        "ON contextd.objects USING btree (org_id, partition, id)",
        "ON contextd.objects USING btree (org_id, partition, kind, last_updated DESC, id DESC)",
        "ON contextd.objects USING btree (org_id, partition, customer_id, created DESC, id DESC)",
        "ON contextd.objects USING btree (org_id, partition, parent_id)",
        "ON contextd.objects USING btree (touched) WHERE ((kind = 'request'::text) AND (state = 'active'::text))",
        "ON contextd.tokens USING btree (org_id, partition, token, object_id)",
        "ON contextd.tokens USING btree (org_id, partition, object_id)",
        "ON contextd.connectors USING btree (org_id, id)",
        "ON contextd.connector_credentials USING btree (org_id, connector_id)",
        "ON contextd.api_keys USING btree (org_id, connector_id) WHERE (connector_id IS NOT NULL)",
        "ON contextd.api_keys USING btree (org_id, partition, id) WHERE (connector_id IS NULL)",
        "ON contextd.events USING btree (seq) WHERE (id IS NULL)",
        "UNIQUE INDEX events_by_id ON contextd.events USING btree (id)",
        "ON contextd.events USING btree (org_id, partition, id)",
        "ON contextd.webhook_deliveries USING btree (webhook_id, outcome, id)",
    ] {
        assert!(
            definitions.iter().any(|d| d.contains(wanted)),
            "an index {wanted}; have:\n{}",
            definitions.join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planner_statistics_are_gathered_after_a_bulk_load() {
    let Some(db) = TestDb::fresh().await else {
        return;
    };
    let s = lab();
    for _ in 0..700 {
        insert(&db.store, &object(s, Kind::Customer, now()), &[]).await;
    }
    let client = db.database.connect().await;
    async fn analyzed(client: &tokio_postgres::Client) -> bool {
        client
            .query_one(
                "SELECT last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL
                 FROM pg_stat_user_tables WHERE schemaname = 'contextd' AND relname = 'objects'",
                &[],
            )
            .await
            .expect("pg_stat_user_tables")
            .get::<_, bool>(0)
    }
    // Activity counters reach pg_stat_user_tables within about a second.
    let mut refreshed = Vec::new();
    for _ in 0..50 {
        refreshed = db.store.refresh_statistics().await.expect("refresh");
        if refreshed.contains(&"objects".to_owned()) || analyzed(&client).await {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(analyzed(&client).await, "objects analyzed: {refreshed:?}");
    let again = db.store.refresh_statistics().await.expect("refresh");
    assert!(
        !again.contains(&"objects".to_owned()),
        "nothing changed since: {again:?}"
    );
}
