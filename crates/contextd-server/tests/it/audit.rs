//! The audit guarantees (docs/security.md): every response that carries revealed ENCRYPTED/PII values is
//! audited, once per request and customer, durably before it is sent; an audit log that can't
//! record refuses the request (503) instead of losing the entry.

use std::collections::BTreeMap;

use contextd_client::{Error, Search};
use contextd_core::object::MediaType;
use contextd_core::store::{ObjectWrite, StoredObject};
use contextd_core::Scope;
use contextd_proto::access::{AuditParams, AuditView, NewKey, Role};
use contextd_proto::object::{ObjectInput, ObjectPatch, TimelineParams};
use contextd_proto::{ErrorCode, Kind, ObjectId};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::support::{input, key, new_customer, patch, value, TestServer};

/// The `pii.read` entries of one actor, newest first.
async fn reads(s: &TestServer, actor: Uuid) -> Vec<AuditView> {
    let params = AuditParams {
        action: Some("pii.read".into()),
        actor: Some(actor.to_string()),
        limit: Some(200),
        ..AuditParams::default()
    };
    s.client(s.lab()).audit(&params).await.expect("audit").items
}

/// Asserts the refusal of a request whose audit entry can't be recorded.
#[track_caller]
fn unaudited<T: std::fmt::Debug>(r: contextd_client::Result<T>) {
    assert!(
        matches!(
            r,
            Err(Error::Server {
                status: 503,
                code: Some(ErrorCode::AuditUnavailable),
                ..
            })
        ),
        "{r:?}"
    );
}

/// Makes every append to the SQLite audit file fail (a real fault of the real file), or heals it.
fn break_audit_file(s: &TestServer, broken: bool) {
    let conn = rusqlite::Connection::open(s.dir.path().join("contextd-audit.db"))
        .expect("open the audit file");
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    // Every append moves its chains' heads on (or creates them): refuse both.
    let sql = if broken {
        "CREATE TRIGGER injected_fault BEFORE UPDATE ON audit_heads \
         BEGIN SELECT RAISE(ABORT, 'injected fault'); END; \
         CREATE TRIGGER injected_fault_new BEFORE INSERT ON audit_heads \
         BEGIN SELECT RAISE(ABORT, 'injected fault'); END;"
    } else {
        "DROP TRIGGER injected_fault; DROP TRIGGER injected_fault_new;"
    };
    conn.execute_batch(sql).expect("change the audit file");
}

#[tokio::test]
async fn every_response_that_reveals_pii_is_audited_once_per_customer() {
    let s = TestServer::start().await;
    let admin = s.client(s.lab());
    let (agent_id, agent) = key(&s.client(s.lab()), Role::Agent).await;
    let agent = s.client(&agent);
    let (partner_id, partner) = key(&s.client(s.lab()), Role::Partner).await;
    let partner = s.client(&partner);
    let customer = new_customer(
        &agent,
        json!({"Context_First_Name": "Pat", "Context_City": "Lyon"}),
    )
    .await;
    let named = customer.to_string();
    let entries = reads(&s, agent_id).await;
    assert_eq!(entries.len(), 1, "the create's answer reveals the name");
    assert_eq!(entries[0].detail, "create: 1 object");
    assert_eq!(entries[0].object_id.as_deref(), Some(named.as_str()));

    // An empty merge patch answers with every value: audited (it was not, before).
    let nothing = ObjectPatch::new();
    agent
        .patch(Kind::Customer, customer, &nothing, None)
        .await
        .expect("empty patch");
    let entries = reads(&s, agent_id).await;
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].detail, "patch: 1 object");
    assert_eq!(entries[0].fields, ["Context_City", "Context_First_Name"]);

    let current = agent.get(Kind::Customer, customer).await.expect("read");
    let mut data = current.data.clone();
    data.insert("Context_Preferred_Language".into(), json!("fr_FR"));
    let replacement = ObjectInput {
        fieldsets: current.fieldsets.clone(),
        tags: current.tags.clone(),
        data,
        version: Some(current.version),
        ..ObjectInput::default()
    };
    agent
        .replace(Kind::Customer, customer, &replacement)
        .await
        .expect("replace");
    let entries = reads(&s, agent_id).await;
    assert_eq!(entries.len(), 4, "one for the read, one for the replace");
    assert_eq!(entries[0].detail, "replace: 1 object");

    // An activity's answer is audited as a read of its customer.
    agent
        .create(
            Kind::Activity,
            &input(
                json!({"customerId": customer, "mediaType": "chat", "fieldsets": ["cisco.base.pod"],
                   "data": {"Context_Notes": "wants a call back"}}),
            ),
        )
        .await
        .expect("activity");
    let entries = reads(&s, agent_id).await;
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[0].object_id.as_deref(), Some(named.as_str()));
    assert_eq!(entries[0].object_type, Some(Kind::Customer));
    assert_eq!(entries[0].fields, ["Context_Notes"]);

    // An export is one request: one entry for the customer, however many pages it read.
    for n in 0..3 {
        admin
            .create(
                Kind::Activity,
                &input(json!({"customerId": customer, "mediaType": "voice", "fieldsets": ["cisco.base.pod"],
                       "data": {"Context_Notes": format!("call {n}")}})),
            )
            .await
            .expect("activity");
    }
    let admin_id = admin.whoami().await.expect("whoami").id;
    let before = reads(&s, admin_id).await.len();
    admin.export_customer(customer).await.expect("export");
    let entries = reads(&s, admin_id).await;
    assert_eq!(entries.len(), before + 1, "one entry for the whole export");
    assert_eq!(entries[0].detail, "export: 5 objects");
    assert_eq!(
        entries[0].fields,
        ["Context_City", "Context_First_Name", "Context_Notes"]
    );

    // A partner is shown no sealed value, so nothing of it is audited as revealed.
    partner
        .patch(Kind::Customer, customer, &nothing, None)
        .await
        .expect("partner patch");
    partner
        .get(Kind::Customer, customer)
        .await
        .expect("partner read");
    assert!(reads(&s, partner_id).await.is_empty());
}

#[tokio::test]
async fn a_read_is_answered_only_after_its_audit_entry_is_durable() {
    let s = TestServer::start().await;
    let (agent_id, agent) = key(&s.client(s.lab()), Role::Agent).await;
    let agent = s.client(&agent);
    let customer = new_customer(&s.client(s.lab()), json!({"Context_First_Name": "Dura"})).await;
    let count = |actor: Uuid| -> i64 {
        // Straight from the audit file, without asking the server to flush anything.
        let conn = rusqlite::Connection::open_with_flags(
            s.dir.path().join("contextd-audit.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the audit file");
        // The entries are in one table per month (segment).
        let months: Vec<String> = conn
            .prepare("SELECT month FROM audit_segments")
            .expect("prepare")
            .query_map([], |row| row.get(0))
            .expect("segments")
            .collect::<Result<_, _>>()
            .expect("segments");
        months
            .iter()
            .map(|month| {
                conn.query_row(
                    &format!(
                        "SELECT count(*) FROM audit_{} WHERE actor = ?1 AND action =
                             (SELECT code FROM audit_actions WHERE name = 'pii.read')",
                        month.replace('-', "_")
                    ),
                    [actor.as_bytes().to_vec()],
                    |row| row.get::<_, i64>(0),
                )
                .expect("count audit rows")
            })
            .sum()
    };
    for n in 1..=20 {
        agent.get(Kind::Customer, customer).await.expect("read");
        assert_eq!(
            count(agent_id),
            n,
            "the entry is on disk when the answer arrives"
        );
    }
}

#[tokio::test]
async fn reads_and_admin_actions_are_refused_when_the_audit_log_cannot_record() {
    let s = TestServer::start().await;
    let admin = s.client(s.lab());
    let (_, agent) = key(&s.client(s.lab()), Role::Agent).await;
    let agent = s.client(&agent);
    let customer = new_customer(&admin, json!({"Context_First_Name": "Faye"})).await;
    admin
        .create(
            Kind::Activity,
            &input(
                json!({"customerId": customer, "mediaType": "sms", "fieldsets": ["cisco.base.pod"],
                   "data": {"Context_Notes": "new date?"}}),
            ),
        )
        .await
        .expect("activity");
    break_audit_file(&s, true);

    match agent.get(Kind::Customer, customer).await {
        Err(Error::Server {
            status: 503,
            code: Some(ErrorCode::AuditUnavailable),
            detail,
        }) => {
            assert!(detail.contains("audit"), "{detail}");
            assert!(!detail.contains("Faye"), "{detail}");
        }
        other => panic!("expected audit-unavailable, got {other:?}"),
    }
    unaudited(
        agent
            .search(
                Kind::Customer,
                &Search::all().term("Context_First_Name", "faye").build(),
            )
            .await,
    );
    unaudited(agent.timeline(customer, &TimelineParams::default()).await);
    // A write whose answer would reveal values is refused before it is made.
    unaudited(
        agent
            .create(
                Kind::Customer,
                &input(json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": "Ghost"}})),
            )
            .await,
    );
    unaudited(
        agent
            .patch(
                Kind::Customer,
                customer,
                &patch(json!({"data": {"Context_First_Name": "Changed"}})),
                None,
            )
            .await,
    );
    // An admin action is not answered as done without its entry.
    unaudited(
        admin
            .create_key(&NewKey {
                name: "unaudited".into(),
                role: Role::Agent,
                expires_at: None,
            })
            .await,
    );
    // Values without PII need no audit and still work.
    agent.fields().await.expect("fields");

    break_audit_file(&s, false);
    let back = agent.get(Kind::Customer, customer).await.expect("read");
    assert_eq!(
        back.data["Context_First_Name"], "Faye",
        "the refused patch changed nothing"
    );
    let ghosts = admin
        .search(
            Kind::Customer,
            &Search::all().term("Context_First_Name", "ghost").build(),
        )
        .await
        .expect("search");
    assert_eq!(ghosts.total, 0, "the refused create wrote nothing");
}

#[tokio::test]
async fn clear_values_of_fields_that_became_sealed_are_read_as_sealed() {
    let s = TestServer::start().await;
    let (partner_id, partner) = key(&s.client(s.lab()), Role::Partner).await;
    let partner = s.client(&partner);
    let (agent_id, agent) = key(&s.client(s.lab()), Role::Agent).await;
    let agent = s.client(&agent);
    // A value written in the clear before its field was sealed (by an instance whose
    // dictionary cache was stale): build such a row directly in the store.
    let scope = Scope {
        org: s.org.org_id,
        partition: contextd_core::Partition::Lab,
    };
    let customer = new_customer(&s.client(s.lab()), json!({"Context_City": "Oslo"})).await;
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
            change: contextd_core::store::Change {
                event_type: contextd_proto::events::EventType::Created,
                by: contextd_core::store::system_contributor(),
                history: false,
            },
        })
        .await
        .expect("write a legacy row");
    let hidden = partner.get(Kind::Activity, id).await.expect("partner read");
    assert_eq!(value(&hidden, "Context_Notes"), &Value::Null);
    assert_eq!(hidden.withheld, ["Context_Notes"]);
    assert!(reads(&s, partner_id).await.is_empty());
    let shown = agent.get(Kind::Activity, id).await.expect("agent read");
    assert_eq!(shown.data["Context_Notes"], "old clear note");
    let entries = reads(&s, agent_id).await;
    assert_eq!(entries.len(), 1, "revealing it is audited");
    assert_eq!(entries[0].fields, ["Context_Notes"]);
    // The next write seals it.
    agent
        .patch(
            Kind::Activity,
            id,
            &patch(json!({"tags": ["resealed"]})),
            None,
        )
        .await
        .expect("patch");
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
