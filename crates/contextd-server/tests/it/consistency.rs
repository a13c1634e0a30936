//! Consistency of the object model across links: moves carry linked objects along, and an
//! erase is idempotent, crash-safe and leaves no object naming the erased customer.

use contextd_client::{Client, Error, Search};
use contextd_core::{Partition, Scope};
use contextd_proto::access::AuditParams;
use contextd_proto::object::{ObjectPatch, TimelineParams};
use contextd_proto::{Kind, ObjectId};
use serde_json::{json, Value};

use crate::support::{input, not_found, TestServer};

fn lab_scope(s: &TestServer) -> Scope {
    Scope {
        org: s.org.org_id,
        partition: Partition::Lab,
    }
}

async fn create(c: &Client, kind: Kind, body: Value) -> ObjectId {
    c.create(kind, &input(body)).await.expect("create").id
}

async fn customer(c: &Client, first_name: &str) -> ObjectId {
    create(
        c,
        Kind::Customer,
        json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": first_name}}),
    )
    .await
}

/// Moves an object to another customer.
async fn move_to(c: &Client, kind: Kind, id: ObjectId, customer: ObjectId) {
    let mut to = ObjectPatch::new();
    to.insert("customerId".into(), json!(customer));
    c.patch(kind, id, &to, None).await.expect("move");
}

/// Ids on a customer's timeline, sorted.
async fn timeline_ids(c: &Client, customer: ObjectId) -> Vec<ObjectId> {
    let params = TimelineParams {
        limit: Some(200),
        ..TimelineParams::default()
    };
    let page = c.timeline(customer, &params).await.expect("timeline");
    let mut ids: Vec<ObjectId> = page.items.iter().map(|o| o.id).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn moving_a_request_or_activity_takes_its_linked_objects_along() {
    let s = TestServer::start().await;
    let c = s.client(s.lab());
    let alice = customer(&c, "Alice").await;
    let bob = customer(&c, "Bob").await;
    let request = create(
        &c,
        Kind::Request,
        json!({"customerId": alice, "fieldsets": ["cisco.base.request"],
               "data": {"Context_Title": "Service appointment"}}),
    )
    .await;
    let chat = create(
        &c,
        Kind::Activity,
        json!({"parentId": request, "mediaType": "chat", "fieldsets": ["cisco.base.pod"],
               "data": {"Context_Notes": "wants Friday"}}),
    )
    .await;
    let comment = create(
        &c,
        Kind::Detail,
        json!({"parentId": chat, "detailType": "comment", "fieldsets": ["cisco.base.comment"],
               "data": {"Context_Comment": "confirmed by phone"}}),
    )
    .await;
    let on_request = create(
        &c,
        Kind::Detail,
        json!({"parentId": request, "detailType": "comment", "fieldsets": ["cisco.base.comment"],
               "data": {"Context_Comment": "bike ready"}}),
    )
    .await;
    move_to(&c, Kind::Request, request, bob).await;

    let mut expected = vec![request, chat, comment, on_request];
    expected.sort();
    assert_eq!(
        timeline_ids(&c, bob).await,
        expected,
        "the whole request is on the new customer's timeline"
    );
    assert!(
        timeline_ids(&c, alice).await.is_empty(),
        "and nothing is left on the old one"
    );
    // The linked objects name the new customer and their values open under its key.
    let activity = c.get(Kind::Activity, chat).await.expect("activity");
    assert_eq!(activity.customer_id, Some(bob));
    assert_eq!(activity.data["Context_Notes"], "wants Friday");
    assert_eq!(activity.version, 2, "a move is a write");
    let detail = c.get(Kind::Detail, comment).await.expect("detail");
    assert_eq!(detail.customer_id, Some(bob));
    assert_eq!(detail.data["Context_Comment"], "confirmed by phone");
    let export = c.export_customer(bob).await.expect("export");
    assert_eq!(export.objects.len(), 4);

    // An activity moved alone takes its details.
    let carol = customer(&c, "Carol").await;
    let call = create(
        &c,
        Kind::Activity,
        json!({"customerId": bob, "mediaType": "voice", "fieldsets": ["cisco.base.pod"],
               "data": {"Context_Notes": "called"}}),
    )
    .await;
    let rating = create(
        &c,
        Kind::Detail,
        json!({"parentId": call, "detailType": "feedback", "fieldsets": ["cisco.base.rating"],
               "data": {"cccRatingPoints": 5}}),
    )
    .await;
    move_to(&c, Kind::Activity, call, carol).await;
    let mut expected = vec![call, rating];
    expected.sort();
    assert_eq!(timeline_ids(&c, carol).await, expected);

    // Erasing the new owner removes everything that moved to it.
    c.erase_customer(bob).await.expect("erase");
    not_found(c.get(Kind::Request, request).await);
    not_found(c.get(Kind::Activity, chat).await);
    not_found(c.get(Kind::Detail, comment).await);
    not_found(c.get(Kind::Detail, on_request).await);
    c.get(Kind::Customer, alice).await.expect("alice stays");
}

#[tokio::test]
async fn a_half_done_erase_is_finished_by_a_retry_and_erase_is_idempotent() {
    let s = TestServer::start().await;
    let c = s.client(s.lab());
    let scope = lab_scope(&s);
    let id = customer(&c, "Erin").await;
    create(
        &c,
        Kind::Activity,
        json!({"customerId": id, "mediaType": "sms", "fieldsets": ["cisco.base.pod"],
               "data": {"Context_Notes": "please forget me"}}),
    )
    .await;
    let key = || async {
        s.context
            .keyring()
            .store()
            .customer_key(scope, id)
            .await
            .expect("key store")
    };
    // The process dies after the data went and before the key was destroyed.
    s.context
        .store()
        .erase_customer(scope, id, &contextd_core::store::system_contributor())
        .await
        .expect("first step of an erase");
    assert!(key().await.is_some(), "the key survived the interruption");

    let retry = c.erase_customer(id).await.expect("retry");
    assert_eq!(retry.erased, 2, "it reports what the first attempt erased");
    assert!(key().await.is_none(), "the retry destroyed the key");
    let again = c.erase_customer(id).await.expect("again");
    assert_eq!(again.erased, 2);
    let audit = c
        .audit(&AuditParams {
            action: Some("customer.erase".into()),
            object_id: Some(id.to_string()),
            ..AuditParams::default()
        })
        .await
        .expect("audit");
    assert_eq!(audit.items.len(), 2);
    not_found(c.erase_customer(ObjectId::new()).await);

    // The server's sweep finishes an interrupted erase nobody retries.
    let other_id = customer(&c, "Ola").await;
    s.context
        .store()
        .erase_customer(scope, other_id, &contextd_core::store::system_contributor())
        .await
        .expect("first step");
    assert_eq!(s.context.finish_pending_erasures().await.expect("sweep"), 1);
    assert!(s
        .context
        .keyring()
        .store()
        .customer_key(scope, other_id)
        .await
        .expect("key store")
        .is_none());
    assert_eq!(s.context.finish_pending_erasures().await.expect("sweep"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_object_naming_a_customer_survives_its_erase() {
    let s = TestServer::start().await;
    let c = s.client(s.lab());
    let customer = customer(&c, "Race").await;
    let writers: Vec<_> = (0..40)
        .map(|n| {
            let c = c.clone();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(n)).await;
                c.create(
                    Kind::Activity,
                    &input(json!({"customerId": customer, "mediaType": "web"})),
                )
                .await
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(15)).await;
    c.erase_customer(customer).await.expect("erase");
    for w in writers {
        let r = w.await.expect("writer");
        assert!(
            matches!(r, Ok(_) | Err(Error::Validation { .. })),
            "a write is done before the erase (and erased) or refused after it: {r:?}"
        );
    }
    let left = c
        .search(
            Kind::Activity,
            &Search::all()
                .term("customerId", customer.to_string())
                .build(),
        )
        .await
        .expect("search");
    assert_eq!(left.total, 0, "no orphan names the erased customer");
}
