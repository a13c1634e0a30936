//! `contextd audit verify` and `contextd audit archive` on the real binary and data directory:
//! a whole log exits 0; a row edited behind the server's back exits 1 naming that entry.

use std::path::Path;
use std::process::Output;

use serde_json::Value;

use crate::contextd;

fn run(dir: &Path, args: &[&str]) -> Output {
    contextd(dir).args(args).output().expect("run contextd")
}

#[track_caller]
fn succeeded(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}; stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8")
}

fn verify_json(dir: &Path) -> (Option<i32>, Value) {
    let out = run(dir, &["audit", "verify", "--json"]);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "one JSON object ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), v)
}

#[test]
fn audit_verify_names_the_entry_edited_behind_the_servers_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    succeeded(&run(dir.path(), &["org", "create", "acme", "--json"]));
    // Each rotation is audited (an operator action): one chain, entries 1, 2, 3.
    for _ in 0..3 {
        succeeded(&run(
            dir.path(),
            &["keys", "rotate", "--org", "acme", "--partition", "lab"],
        ));
    }
    let (code, whole) = verify_json(dir.path());
    assert_eq!(code, Some(0), "{whole}");
    assert_eq!(whole["whole"], true, "{whole}");
    assert!(whole["entries"].as_u64().unwrap_or(0) >= 3, "{whole}");
    let text = succeeded(&run(dir.path(), &["audit", "verify"]));
    assert!(text.contains("whole"), "{text}");

    // Nothing before the year 2000 to archive; the current month is never archived.
    let archive = dir.path().join("archive");
    let out = succeeded(&run(
        dir.path(),
        &[
            "audit",
            "archive",
            "--before",
            "2000-01",
            "--to",
            archive.to_str().expect("utf-8 path"),
        ],
    ));
    assert!(out.contains("no audit segment"), "{out}");

    // Edit the second rotation's entry behind the server's back.
    let conn = rusqlite::Connection::open(dir.path().join("contextd-audit.db")).expect("open");
    let (org, partition): (Vec<u8>, i64) = conn
        .query_row(
            "SELECT org_id, partition FROM audit_heads WHERE seq >= 3 LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("the rotations' chain");
    let month: String = conn
        .query_row(
            "SELECT s.month FROM audit_segment_heads s JOIN audit_heads h ON h.chain = s.chain
             WHERE h.org_id = ?1 AND h.partition = ?2 ORDER BY s.month DESC LIMIT 1",
            rusqlite::params![org, partition],
            |r| r.get(0),
        )
        .expect("its segment");
    let table = format!("audit_{}", month.replace('-', "_"));
    conn.execute_batch(&format!(
        "DROP TRIGGER {table}_no_update;
         UPDATE {table} SET detail = 'edited'
         WHERE seq = 2 AND chain = (SELECT chain FROM audit_heads WHERE seq >= 3 LIMIT 1);"
    ))
    .expect("tamper");
    drop(conn);

    let (code, broken) = verify_json(dir.path());
    assert_eq!(code, Some(1), "a broken log exits 1: {broken}");
    assert_eq!(broken["whole"], false, "{broken}");
    let link = &broken["firstBroken"];
    assert_eq!(link["seq"], 2, "{broken}");
    assert_eq!(link["reason"], "altered", "{broken}");
    assert_eq!(link["month"], month.as_str(), "{broken}");
    assert_eq!(link["partition"], "lab", "{broken}");
    assert!(link["entryId"].is_string(), "{broken}");
    let out = run(dir.path(), &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("BROKEN") && text.contains("entry 2"),
        "{text}"
    );
}
