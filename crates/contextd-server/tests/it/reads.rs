//! A read writes nothing to the data database (issue 16): lookups, reads, searches, timelines,
//! the dictionary and the status answer from what is stored, so readers keep their page
//! caches. (Their audit entries go to the audit log's own file.)

use contextd_client::proto::Kind;
use serde_json::json;

use crate::support::{input, new_customer, search, TestServer};

/// The data file's `PRAGMA data_version`: it changes when another connection commits.
fn data_version(conn: &rusqlite::Connection) -> i64 {
    conn.query_row("PRAGMA data_version", [], |r| r.get(0))
        .expect("data_version")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_make_no_commit_to_the_data_database() {
    let s = TestServer::start().await;
    let c = s.client(s.lab());
    let ada = new_customer(
        &c,
        json!({"Context_First_Name": "Ada", "Context_Mobile_Phone": "+1 555 0100"}),
    )
    .await;
    let mut activities = Vec::new();
    for n in 0..5 {
        let a = c
            .create(
                Kind::Activity,
                &input(json!({"customerId": ada, "mediaType": "chat",
                    "fieldsets": ["cisco.base.pod"], "data": {"Context_Notes": format!("note {n}")}})),
            )
            .await
            .expect("create");
        activities.push(a.id);
    }
    // Background work of a fresh server (segments, the first sweeps) settles first.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let conn = rusqlite::Connection::open(s.dir.path().join("contextd.db")).expect("open");
    let before = data_version(&conn);
    for _ in 0..20 {
        c.get(Kind::Customer, ada).await.expect("read");
        for id in &activities {
            c.get(Kind::Activity, *id).await.expect("read");
        }
        let found = c
            .search(
                Kind::Customer,
                &search(json!({"terms": {"Context_Mobile_Phone": ["15550100"]}})),
            )
            .await
            .expect("lookup");
        assert_eq!(found.total, 1);
        c.timeline(ada, &Default::default())
            .await
            .expect("timeline");
        c.status().await.expect("status");
    }
    assert_eq!(
        data_version(&conn),
        before,
        "reads committed to the data database"
    );
}
