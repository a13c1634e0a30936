//! The audit log on SQLite, kept for years and provably whole: entries changed or removed
//! behind the store's back (triggers dropped, rows edited with the sqlite3 library) are
//! reported by `verify` at the entry concerned; segments are tables dropped whole, the rest
//! staying verifiable; an archived segment verifies on its own; entries of schema 1 are
//! chained when the store opens.

use std::io::Cursor;
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use contextd_core::audit_admin::{self, ArchiveLine, AuditAdminError, Break};
use contextd_core::auth::Role;
use contextd_core::ids::Scope;
use contextd_core::object::Kind;
use contextd_core::store::prelude::*;
use contextd_core::store::{AuditEntry, AuditQuery, Month};
use contextd_store_conformance::fixtures::{lab, now, other_partition};
use contextd_store_sqlite::SqliteStore;
use rusqlite::Connection;

use crate::TestDb;

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

/// The audit file, opened behind the store's back.
fn audit_file(db: &TestDb) -> Connection {
    Connection::open(db.dir.path().join("contextd-audit.db")).expect("open the audit file")
}

fn segment(month: Month) -> String {
    format!("audit_{}", month.table_suffix())
}

/// Five entries of one scope, in two appends, at `t`.
async fn five(db: &TestDb, scope: Scope, t: DateTime<Utc>) -> Vec<AuditEntry> {
    let entries: Vec<AuditEntry> = (1..=5).map(|i| entry(scope, t, &format!("e{i}"))).collect();
    db.store.append_audit(&entries[..2]).await.expect("append");
    db.store.append_audit(&entries[2..]).await.expect("append");
    let report = audit_admin::verify(&db.store).await.expect("verify");
    assert!(report.is_whole(), "{report:?}");
    assert_eq!((report.entries, report.chains, report.segments), (5, 1, 1));
    entries
}

#[tokio::test]
async fn an_entry_edited_behind_the_stores_back_is_reported_at_that_entry() {
    let db = TestDb::fresh();
    let (scope, t) = (lab(), now());
    let entries = five(&db, scope, t).await;
    let table = segment(Month::of(t));
    let conn = audit_file(&db);
    let refused = conn
        .execute(
            &format!("UPDATE {table} SET detail = 'edited' WHERE seq = 3"),
            [],
        )
        .expect_err("the triggers refuse it");
    assert!(refused.to_string().contains("append-only"), "{refused}");

    conn.execute_batch(&format!(
        "DROP TRIGGER {table}_no_update;
         UPDATE {table} SET detail = 'edited' WHERE seq = 3;"
    ))
    .expect("tamper");
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

#[tokio::test]
async fn a_hash_rewritten_to_match_an_edit_breaks_the_next_link() {
    let db = TestDb::fresh();
    let (scope, t) = (lab(), now());
    let entries = five(&db, scope, t).await;
    let table = segment(Month::of(t));
    // Whoever edits entry 2 and stores its new hash still leaves entry 3 linked to the old.
    let mut edited = entries[1].clone();
    edited.detail = "edited".into();
    let conn = audit_file(&db);
    let prev: Vec<u8> = conn
        .query_row(
            &format!("SELECT hash FROM {table} WHERE seq = 1"),
            [],
            |r| r.get(0),
        )
        .expect("hash of entry 1");
    let prev: [u8; 32] = prev.try_into().expect("32 bytes");
    let forged = contextd_core::store::chain_hash(&prev, 2, &edited);
    conn.execute_batch(&format!("DROP TRIGGER {table}_no_update;"))
        .expect("drop trigger");
    conn.execute(
        &format!("UPDATE {table} SET detail = 'edited', hash = ?1 WHERE seq = 2"),
        [forged.to_vec()],
    )
    .expect("tamper");
    let broken = audit_admin::verify(&db.store)
        .await
        .expect("verify")
        .first_broken
        .expect("found");
    assert_eq!(
        (broken.seq, broken.entry_id, broken.reason),
        (3, Some(entries[2].id), Break::Altered),
        "{broken}"
    );
}

#[tokio::test]
async fn a_deleted_entry_is_reported_as_a_gap() {
    let db = TestDb::fresh();
    let (scope, t) = (lab(), now());
    five(&db, scope, t).await;
    let table = segment(Month::of(t));
    audit_file(&db)
        .execute_batch(&format!(
            "DROP TRIGGER {table}_no_delete; DELETE FROM {table} WHERE seq = 2;"
        ))
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

#[tokio::test]
async fn a_deleted_newest_entry_is_reported_from_the_head() {
    let db = TestDb::fresh();
    let (scope, t) = (lab(), now());
    five(&db, scope, t).await;
    let table = segment(Month::of(t));
    audit_file(&db)
        .execute_batch(&format!(
            "DROP TRIGGER {table}_no_delete; DELETE FROM {table} WHERE seq = 5;"
        ))
        .expect("tamper");
    let broken = audit_admin::verify(&db.store)
        .await
        .expect("verify")
        .first_broken
        .expect("found");
    assert_eq!((broken.seq, broken.reason), (5, Break::Missing), "{broken}");
}

#[tokio::test]
async fn segments_are_dropped_whole_and_what_remains_verifies() {
    let db = TestDb::fresh();
    let scope = lab();
    let jan = Month::parse("2001-01").expect("month");
    let feb = jan.next();
    let entries = vec![
        entry(scope, jan.start() + Duration::days(3), "a"),
        entry(scope, jan.start() + Duration::days(4), "b"),
        entry(scope, feb.start() + Duration::days(3), "c"),
        entry(other_partition(scope), feb.start() + Duration::days(4), "d"),
    ];
    db.store.append_audit(&entries).await.expect("append");
    let audit = SqliteStore::audit_path(&db.dir.path().join("contextd.db"));
    let names = tables(&audit);
    assert!(
        names.contains(&segment(jan)) && names.contains(&segment(feb)),
        "{names:?}"
    );
    let report = audit_admin::verify(&db.store).await.expect("verify");
    assert!(report.is_whole(), "{report:?}");
    assert_eq!((report.segments, report.entries), (2, 4));

    db.store.drop_audit_segment(jan).await.expect("drop");
    assert!(!tables(&audit).contains(&segment(jan)), "the table is gone");
    let report = audit_admin::verify(&db.store).await.expect("verify");
    assert!(report.is_whole(), "{report:?}");
    assert_eq!((report.segments, report.entries), (1, 2));

    // And after reopening.
    let TestDb { dir, store, keys } = db;
    drop((store, keys));
    let store = SqliteStore::open(&dir.path().join("contextd.db")).expect("reopen");
    let report = audit_admin::verify(&store).await.expect("verify");
    assert!(report.is_whole(), "{report:?}");
    let left = store
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
    drop(store);
    drop(dir);
}

#[tokio::test]
async fn an_archived_segment_round_trips_and_verifies_on_its_own() {
    let db = TestDb::fresh();
    let (a, b) = (lab(), lab());
    let march = Month::parse("2001-03").expect("month");
    let at = |d: i64| march.start() + Duration::days(d);
    let entries = vec![
        entry(a, at(1), "a1"),
        entry(b, at(2), "b1"),
        entry(a, at(3), "a2"),
        entry(a, at(4), "a3"),
        entry(b, at(5), "b2"),
    ];
    db.store.append_audit(&entries).await.expect("append");
    let mut out = Vec::new();
    let archived = audit_admin::archive_segment(&db.store, march, &mut out)
        .await
        .expect("archive");
    assert_eq!((archived.entries, archived.chains), (5, 2));

    let text = String::from_utf8(out.clone()).expect("UTF-8");
    let lines: Vec<ArchiveLine> = text
        .lines()
        .zip(1..)
        .map(|(l, n)| audit_admin::parse_archive_line(l, n).expect("an archive line"))
        .collect();
    assert_eq!(lines.len(), 7, "{text}");
    assert_eq!(lines[0], ArchiveLine::Segment(march));
    let stored = db
        .store
        .audit_segment_entries(march, None, 100)
        .await
        .expect("entries");
    let read: Vec<_> = lines[1..6]
        .iter()
        .map(|l| match l {
            ArchiveLine::Entry(e) => e.clone(),
            other => panic!("an entry line, got {other:?}"),
        })
        .collect();
    assert_eq!(read, stored, "every field, seq and hash round-trips");
    match &lines[6] {
        ArchiveLine::Heads {
            month,
            entries,
            heads,
        } => {
            assert_eq!((*month, *entries, heads.len()), (march, 5, 2));
        }
        other => panic!("the heads line, got {other:?}"),
    }
    let report = audit_admin::verify_archive(Cursor::new(&out)).expect("verify the file");
    assert!(report.is_whole(), "{report:?}");
    assert_eq!(report.entries, 5);

    let edited = text.replacen("\"detail\":\"a2\"", "\"detail\":\"edited\"", 1);
    assert_ne!(edited, text);
    let broken = audit_admin::verify_archive(Cursor::new(edited.as_bytes()))
        .expect("verify the file")
        .first_broken
        .expect("the edit is found");
    assert_eq!(
        (broken.scope, broken.seq, broken.reason),
        (a, 2, Break::Altered)
    );

    let cut: String = text.lines().take(6).map(|l| format!("{l}\n")).collect();
    assert!(matches!(
        audit_admin::verify_archive(Cursor::new(cut.as_bytes())),
        Err(AuditAdminError::Format { .. })
    ));
}

#[tokio::test]
async fn entries_of_schema_1_are_chained_when_the_store_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("contextd.db");
    let audit = SqliteStore::audit_path(&data);
    let (scope, other) = (lab(), lab());
    let jan = Month::parse("2001-01").expect("month");
    let entries = vec![
        entry(scope, jan.start() + Duration::days(1), "first"),
        entry(other, jan.start() + Duration::days(2), "other"),
        entry(scope, jan.next().start() + Duration::days(1), "second"),
    ];
    {
        // An audit file as schema 1 left it, with entries.
        let conn = Connection::open(&audit).expect("open");
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL);
             INSERT INTO schema_migrations VALUES (1, 0);",
        )
        .expect("schema_migrations");
        conn.execute_batch(include_str!("../../migrations/audit/0001_init.sql"))
            .expect("schema 1");
        for e in &entries {
            conn.execute(
                "INSERT INTO audit VALUES (?1, ?2, ?3, ?4, ?5, 'admin', 'pii.read', 'customer', ?6,
                     '[\"Context_First_Name\"]', ?7)",
                rusqlite::params![
                    e.id.as_bytes().to_vec(),
                    e.scope.org.0.as_bytes().to_vec(),
                    e.scope.partition.as_str(),
                    e.at.timestamp_millis(),
                    e.actor.map(|a| a.as_bytes().to_vec()),
                    e.object_id.clone(),
                    e.detail.clone(),
                ],
            )
            .expect("an entry of schema 1");
        }
    }
    for _ in 0..2 {
        let store = SqliteStore::open(&data).expect("open");
        let names = tables(&audit);
        assert!(!names.contains(&"audit".to_owned()), "{names:?}");
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
    drop(dir);
}
