//! The audit guarantees (§5): every response that carries revealed ENCRYPTED/PII values is
//! audited, once per request and customer, durably before it is sent; an audit log that can't
//! record refuses the request (503) instead of losing the entry.

use std::collections::BTreeMap;

use contextd_core::object::MediaType;
use contextd_core::store::{ObjectWrite, StoredObject};
use contextd_core::{Kind, ObjectId, Scope};
use serde_json::{json, Value};

use crate::support::TestServer;

async fn key(s: &TestServer, role: &str) -> (String, String) {
    s.key(role).await
}

/// The `pii.read` entries of one actor, newest first.
async fn reads(s: &TestServer, actor: &str) -> Vec<Value> {
    let r = s
        .get(
            s.lab(),
            &format!("/v1/audit?action=pii.read&actor={actor}&limit=200"),
        )
        .await;
    r.expect(200);
    r.at("/items").as_array().cloned().unwrap_or_default()
}

/// Makes every append to the SQLite audit file fail (a real fault of the real file), or heals it.
fn break_audit_file(s: &TestServer, broken: bool) {
    let conn = rusqlite::Connection::open(s.dir.path().join("contextd-audit.db"))
        .expect("open the audit file");
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    let sql = if broken {
        "CREATE TRIGGER injected_fault BEFORE INSERT ON audit \
         BEGIN SELECT RAISE(ABORT, 'injected fault'); END;"
    } else {
        "DROP TRIGGER injected_fault;"
    };
    conn.execute_batch(sql).expect("change the audit file");
}

#[tokio::test]
async fn every_response_that_reveals_pii_is_audited_once_per_customer() {
    let s = TestServer::start().await;
    let (agent_id, agent) = key(&s, "agent").await;
    let (partner_id, partner) = key(&s, "partner").await;
    let created = s
        .post(
            &agent,
            "/v1/customers",
            json!({"fieldsets": ["cisco.base.customer"],
                   "data": {"Context_First_Name": "Pat", "Context_City": "Lyon"}}),
        )
        .await;
    created.expect(201);
    let customer = created.str("/id");
    let path = format!("/v1/customers/{customer}");
    let entries = reads(&s, &agent_id).await;
    assert_eq!(entries.len(), 1, "the create's answer reveals the name");
    assert_eq!(entries[0]["detail"], "create: 1 object");
    assert_eq!(entries[0]["objectId"], customer.as_str());

    // An empty merge patch answers with every value: audited (it was not, before).
    s.patch(&agent, &path, json!({})).await.expect(200);
    let entries = reads(&s, &agent_id).await;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["detail"], "patch: 1 object");
    assert_eq!(
        entries[0]["fields"],
        json!(["Context_City", "Context_First_Name"])
    );

    let current = s.get(&agent, &path).await;
    let mut body = current.body.clone();
    body["data"]["Context_Preferred_Language"] = json!("fr_FR");
    s.put(&agent, &path, body).await.expect(200);
    let entries = reads(&s, &agent_id).await;
    assert_eq!(entries.len(), 4, "one for the read, one for the replace");
    assert_eq!(entries[0]["detail"], "replace: 1 object");

    // An activity's answer is audited as a read of its customer.
    s.post(
        &agent,
        "/v1/activities",
        json!({"customerId": customer, "mediaType": "chat", "fieldsets": ["cisco.base.pod"],
               "data": {"Context_Notes": "wants a call back"}}),
    )
    .await
    .expect(201);
    let entries = reads(&s, &agent_id).await;
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[0]["objectId"], customer.as_str());
    assert_eq!(entries[0]["objectType"], "customer");
    assert_eq!(entries[0]["fields"], json!(["Context_Notes"]));

    // An export is one request: one entry for the customer, however many pages it read.
    for n in 0..3 {
        s.post(
            s.lab(),
            "/v1/activities",
            json!({"customerId": customer, "mediaType": "voice", "fieldsets": ["cisco.base.pod"],
                   "data": {"Context_Notes": format!("call {n}")}}),
        )
        .await
        .expect(201);
    }
    let admin_id = s.get(s.lab(), "/v1/sessions/current").await.str("/id");
    let before = reads(&s, &admin_id).await.len();
    s.get(s.lab(), &format!("{path}/export")).await.expect(200);
    let entries = reads(&s, &admin_id).await;
    assert_eq!(entries.len(), before + 1, "one entry for the whole export");
    assert_eq!(entries[0]["detail"], "export: 5 objects");
    assert_eq!(
        entries[0]["fields"],
        json!(["Context_City", "Context_First_Name", "Context_Notes"])
    );

    // A partner is shown no sealed value, so nothing of it is audited as revealed.
    s.patch(&partner, &path, json!({})).await.expect(200);
    s.get(&partner, &path).await.expect(200);
    assert!(reads(&s, &partner_id).await.is_empty());
}

#[tokio::test]
async fn a_read_is_answered_only_after_its_audit_entry_is_durable() {
    let s = TestServer::start().await;
    let (agent_id, agent) = key(&s, "agent").await;
    let customer = s
        .customer(s.lab(), json!({"Context_First_Name": "Dura"}))
        .await;
    let count = |actor: &str| -> i64 {
        // Straight from the audit file, without asking the server to flush anything.
        let conn = rusqlite::Connection::open_with_flags(
            s.dir.path().join("contextd-audit.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the audit file");
        let actor = uuid::Uuid::parse_str(actor).expect("actor id");
        conn.query_row(
            "SELECT count(*) FROM audit WHERE action = 'pii.read' AND actor = ?1",
            [actor.as_bytes().to_vec()],
            |row| row.get(0),
        )
        .expect("count audit rows")
    };
    for n in 1..=20 {
        s.get(&agent, &format!("/v1/customers/{customer}"))
            .await
            .expect(200);
        assert_eq!(
            count(&agent_id),
            n,
            "the entry is on disk when the answer arrives"
        );
    }
}

#[tokio::test]
async fn reads_and_admin_actions_are_refused_when_the_audit_log_cannot_record() {
    let s = TestServer::start().await;
    let (_, agent) = key(&s, "agent").await;
    let customer = s
        .customer(s.lab(), json!({"Context_First_Name": "Faye"}))
        .await;
    let path = format!("/v1/customers/{customer}");
    s.post(
        s.lab(),
        "/v1/activities",
        json!({"customerId": customer, "mediaType": "sms", "fieldsets": ["cisco.base.pod"],
               "data": {"Context_Notes": "new date?"}}),
    )
    .await
    .expect(201);
    break_audit_file(&s, true);

    let refused = s.get(&agent, &path).await;
    refused.expect(503);
    assert!(refused.str("/detail").contains("audit"));
    assert!(!refused.body.to_string().contains("Faye"));
    s.post(
        &agent,
        "/v1/customers/search",
        json!({"terms": {"Context_First_Name": "faye"}}),
    )
    .await
    .expect(503);
    s.get(&agent, &format!("{path}/timeline")).await.expect(503);
    // A write whose answer would reveal values is refused before it is made.
    s.post(
        &agent,
        "/v1/customers",
        json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": "Ghost"}}),
    )
    .await
    .expect(503);
    s.patch(
        &agent,
        &path,
        json!({"data": {"Context_First_Name": "Changed"}}),
    )
    .await
    .expect(503);
    // An admin action is not answered as done without its entry.
    s.post(
        s.lab(),
        "/v1/keys",
        json!({"name": "unaudited", "role": "agent"}),
    )
    .await
    .expect(503);
    // Values without PII need no audit and still work.
    s.get(&agent, "/v1/fields").await.expect(200);

    break_audit_file(&s, false);
    let back = s.get(&agent, &path).await;
    back.expect(200);
    assert_eq!(
        back.str("/data/Context_First_Name"),
        "Faye",
        "the refused patch changed nothing"
    );
    let ghosts = s
        .post(
            s.lab(),
            "/v1/customers/search",
            json!({"terms": {"Context_First_Name": "ghost"}}),
        )
        .await;
    assert_eq!(ghosts.at("/total"), 0, "the refused create wrote nothing");
}

#[tokio::test]
async fn clear_values_of_fields_that_became_sealed_are_read_as_sealed() {
    let s = TestServer::start().await;
    let (partner_id, partner) = key(&s, "partner").await;
    let (agent_id, agent) = key(&s, "agent").await;
    // A value written in the clear before its field was sealed (by an instance whose
    // dictionary cache was stale): build such a row directly in the store.
    let scope = Scope {
        org: s.org.org_id,
        partition: contextd_core::Partition::Lab,
    };
    let customer =
        ObjectId::parse(&s.customer(s.lab(), json!({"Context_City": "Oslo"})).await).expect("id");
    let id = ObjectId::new();
    let now = contextd_core::time::now_ms();
    let object = StoredObject {
        id,
        scope,
        kind: Kind::Activity,
        customer_id: Some(customer),
        parent_id: None,
        state: contextd_core::object::State::Active,
        media_type: Some(MediaType::Chat),
        detail_type: None,
        fieldsets: vec!["cisco.base.pod".into()],
        clear: BTreeMap::from([("Context_Notes".to_owned(), json!("old clear note"))]),
        sealed: BTreeMap::new(),
        tags: vec![],
        contributors: vec![],
        created: now,
        last_updated: now,
        touched: now,
        version: 1,
        key_version: 0,
    };
    s.context
        .store()
        .write_object(&ObjectWrite {
            object,
            tokens: vec![],
            expected_version: None,
            parent_check: None,
            customer_check: None,
            dictionary_version: None,
        })
        .await
        .expect("write a legacy row");
    let path = format!("/v1/activities/{id}");
    let hidden = s.get(&partner, &path).await;
    hidden.expect(200);
    assert_eq!(hidden.at("/data/Context_Notes"), &Value::Null);
    assert_eq!(hidden.at("/withheld"), &json!(["Context_Notes"]));
    assert!(reads(&s, &partner_id).await.is_empty());
    let shown = s.get(&agent, &path).await;
    assert_eq!(shown.str("/data/Context_Notes"), "old clear note");
    let entries = reads(&s, &agent_id).await;
    assert_eq!(entries.len(), 1, "revealing it is audited");
    assert_eq!(entries[0]["fields"], json!(["Context_Notes"]));
    // The next write seals it.
    s.patch(&agent, &path, json!({"tags": ["resealed"]}))
        .await
        .expect(200);
    let stored = s
        .context
        .store()
        .object(scope, id)
        .await
        .expect("read")
        .expect("present");
    assert!(stored.clear.is_empty());
    assert!(stored.sealed.contains_key("Context_Notes"));
}
