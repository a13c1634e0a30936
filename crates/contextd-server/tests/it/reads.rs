//! A read writes nothing to the data database (issue 16): lookups, reads, searches, timelines,
//! the dictionary and the status answer from what is stored, so readers keep their page
//! caches. (Their audit entries go to the audit log's own file.)

use contextd_client::proto::{Kind, ObjectId};
use serde_json::json;

use contextd_proto::access::Role;

use crate::support::{input, key, new_customer, search, TestServer};

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

/// The HTTP timeline is written straight from the stored rows (issue 16): for an agent and for
/// a partner who sees sealed values withheld, its bytes are exactly those of the decoded
/// page the core builds for the same caller, serialized.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeline_written_from_its_rows_is_the_decoded_page_byte_for_byte() {
    let s = TestServer::start().await;
    let c = s.client(s.lab());
    let ada = new_customer(
        &c,
        json!({"Context_First_Name": "Ada \"the first\" Lovelace", "Context_ZIP": "N1 9GU"}),
    )
    .await;
    let request = c
        .create(
            Kind::Request,
            &input(
                json!({"customerId": ada, "fieldsets": ["cisco.base.request"],
                "data": {"Context_Title": "Engine ✓", "Context_Description": "line\nbreak"},
                "tags": ["vip", "ünïcode"]}),
            ),
        )
        .await
        .expect("request");
    for (n, media) in ["chat", "voice", "email"].into_iter().enumerate() {
        c.create(
            Kind::Activity,
            &input(
                json!({"customerId": ada, "parentId": request.id, "mediaType": media,
                "fieldsets": ["cisco.base.pod"],
                "data": {"Context_Notes": format!("note {n}"),
                         "Context_POD_Activity_Link": format!("https://x.test/{n}?a=1&b=\\"),
                         "Context_POD_Source_Phone": "+1 555 0100"}}),
            ),
        )
        .await
        .expect("activity");
    }
    c.create(
        Kind::Detail,
        &input(json!({"parentId": request.id, "detailType": "comment",
            "fieldsets": ["cisco.base.comment"],
            "data": {"Context_Comment": "fine", "Context_Visible": true}})),
    )
    .await
    .expect("detail");
    let (_, partner) = key(&c, Role::Partner).await;
    for token in [s.lab(), &partner] {
        same_pages(&s, token, ada).await;
    }

    // Rows as an older release or another writer may have left them: a clear value of a
    // field the dictionary seals (written before a reclassification), and a member name
    // written with an escape, which the straight path hands to the decoded one.
    let conn = rusqlite::Connection::open(s.dir.path().join("contextd.db")).expect("open");
    let edited = conn
        .execute_batch(
            "UPDATE objects SET body = json_set(body, '$.clear.Context_DisplayName', 'plain')
             WHERE kind = 'detail';
             UPDATE objects SET body = replace(body, '\"Context_POD_Activity_Link\"',
                                               '\"Context_POD_Activity_Lin\\u006b\"')
             WHERE kind = 'activity' AND media_type = 'voice';",
        )
        .map(|()| conn.changes());
    assert_eq!(edited.ok(), Some(1), "one activity edited last");
    let escaped: i64 = conn
        .query_row(
            "SELECT count(*) FROM objects WHERE instr(body, 'Lin\\u006b') > 0",
            [],
            |r| r.get(0),
        )
        .expect("count");
    assert_eq!(escaped, 1, "a member name written with an escape");
    for token in [s.lab(), &partner] {
        same_pages(&s, token, ada).await;
    }
    let as_partner = s.context.authenticate(&partner).await.expect("partner");
    let page = s
        .context
        .timeline(&as_partner, ada, None, None, None)
        .await
        .expect("page");
    let detail = page.items.iter().find(|o| o.kind == Kind::Detail);
    assert!(
        detail.is_some_and(|d| d.withheld.iter().any(|f| f == "Context_DisplayName")
            && d.data["Context_DisplayName"].is_null()),
        "a clear value of a sealed field is withheld from a partner: {detail:?}"
    );
}

/// Every page of `customer`'s timeline, in pages of 2, is over HTTP exactly the serialized
/// page the core's decoded path builds for the same caller.
async fn same_pages(s: &TestServer, token: &str, customer: ObjectId) {
    let actor = s.context.authenticate(token).await.expect("principal");
    let mut cursor: Option<String> = None;
    for page_no in 0..3 {
        let mut url = format!("{}/v1/customers/{customer}/timeline?limit=2", s.url);
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let served = s
            .http
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .expect("sent");
        assert_eq!(served.status(), 200);
        assert_eq!(served.headers()["content-type"], "application/json");
        let served = served.bytes().await.expect("body");
        let decoded = s
            .context
            .timeline(&actor, customer, None, Some(2), cursor.as_deref())
            .await
            .expect("decoded page");
        assert_eq!(
            String::from_utf8_lossy(&served),
            serde_json::to_string(&decoded).expect("encode"),
            "page {page_no} for {:?}",
            actor.role
        );
        cursor = decoded.next_cursor;
        if cursor.is_none() {
            assert_eq!(page_no, 2, "5 entries in pages of 2");
            return;
        }
    }
}
