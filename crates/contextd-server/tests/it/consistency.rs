//! Consistency of the object model across links: moves carry linked objects along, and an
//! erase is idempotent, crash-safe and leaves no object naming the erased customer.

use contextd_core::{ObjectId, Partition, Scope};
use serde_json::{json, Value};

use crate::support::TestServer;

fn lab_scope(s: &TestServer) -> Scope {
    Scope {
        org: s.org.org_id,
        partition: Partition::Lab,
    }
}

async fn create(s: &TestServer, path: &str, body: Value) -> String {
    let r = s.post(s.lab(), path, body).await;
    r.expect(201);
    r.str("/id")
}

/// Ids on a customer's timeline.
async fn timeline_ids(s: &TestServer, customer: &str) -> Vec<String> {
    let r = s
        .get(
            s.lab(),
            &format!("/v1/customers/{customer}/timeline?limit=200"),
        )
        .await;
    r.expect(200);
    r.at("/items")
        .as_array()
        .map(|a| {
            a.iter()
                .map(|o| o["id"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn moving_a_request_or_activity_takes_its_linked_objects_along() {
    let s = TestServer::start().await;
    let alice = s
        .customer(s.lab(), json!({"Context_First_Name": "Alice"}))
        .await;
    let bob = s
        .customer(s.lab(), json!({"Context_First_Name": "Bob"}))
        .await;
    let request = create(
        &s,
        "/v1/requests",
        json!({"customerId": alice, "fieldsets": ["cisco.base.request"],
               "data": {"Context_Title": "Service appointment"}}),
    )
    .await;
    let chat = create(
        &s,
        "/v1/activities",
        json!({"parentId": request, "mediaType": "chat", "fieldsets": ["cisco.base.pod"],
               "data": {"Context_Notes": "wants Friday"}}),
    )
    .await;
    let comment = create(
        &s,
        "/v1/details",
        json!({"parentId": chat, "detailType": "comment", "fieldsets": ["cisco.base.comment"],
               "data": {"Context_Comment": "confirmed by phone"}}),
    )
    .await;
    let on_request = create(
        &s,
        "/v1/details",
        json!({"parentId": request, "detailType": "comment", "fieldsets": ["cisco.base.comment"],
               "data": {"Context_Comment": "bike ready"}}),
    )
    .await;
    let moved = s
        .patch(
            s.lab(),
            &format!("/v1/requests/{request}"),
            json!({"customerId": bob}),
        )
        .await;
    moved.expect(200);

    let mut on_bob = timeline_ids(&s, &bob).await;
    on_bob.sort();
    let mut expected = vec![
        request.clone(),
        chat.clone(),
        comment.clone(),
        on_request.clone(),
    ];
    expected.sort();
    assert_eq!(
        on_bob, expected,
        "the whole request is on the new customer's timeline"
    );
    assert!(
        timeline_ids(&s, &alice).await.is_empty(),
        "and nothing is left on the old one"
    );
    // The linked objects name the new customer and their values open under its key.
    let activity = s.get(s.lab(), &format!("/v1/activities/{chat}")).await;
    assert_eq!(activity.str("/customerId"), bob);
    assert_eq!(activity.str("/data/Context_Notes"), "wants Friday");
    assert_eq!(activity.at("/version"), 2, "a move is a write");
    let detail = s.get(s.lab(), &format!("/v1/details/{comment}")).await;
    assert_eq!(detail.str("/customerId"), bob);
    assert_eq!(detail.str("/data/Context_Comment"), "confirmed by phone");
    let export = s.get(s.lab(), &format!("/v1/customers/{bob}/export")).await;
    assert_eq!(export.at("/objects").as_array().map(Vec::len), Some(4));

    // An activity moved alone takes its details.
    let carol = s
        .customer(s.lab(), json!({"Context_First_Name": "Carol"}))
        .await;
    let call = create(
        &s,
        "/v1/activities",
        json!({"customerId": bob, "mediaType": "voice", "fieldsets": ["cisco.base.pod"],
               "data": {"Context_Notes": "called"}}),
    )
    .await;
    let rating = create(
        &s,
        "/v1/details",
        json!({"parentId": call, "detailType": "feedback", "fieldsets": ["cisco.base.rating"],
               "data": {"cccRatingPoints": 5}}),
    )
    .await;
    s.patch(
        s.lab(),
        &format!("/v1/activities/{call}"),
        json!({"customerId": carol}),
    )
    .await
    .expect(200);
    let mut on_carol = timeline_ids(&s, &carol).await;
    on_carol.sort();
    let mut expected = vec![call, rating];
    expected.sort();
    assert_eq!(on_carol, expected);

    // Erasing the new owner removes everything that moved to it.
    s.post(s.lab(), &format!("/v1/customers/{bob}/erase"), json!({}))
        .await
        .expect(200);
    for path in [
        format!("/v1/requests/{request}"),
        format!("/v1/activities/{chat}"),
        format!("/v1/details/{comment}"),
        format!("/v1/details/{on_request}"),
    ] {
        s.get(s.lab(), &path).await.expect(404);
    }
    s.get(s.lab(), &format!("/v1/customers/{alice}"))
        .await
        .expect(200);
}

#[tokio::test]
async fn a_half_done_erase_is_finished_by_a_retry_and_erase_is_idempotent() {
    let s = TestServer::start().await;
    let scope = lab_scope(&s);
    let customer = s
        .customer(s.lab(), json!({"Context_First_Name": "Erin"}))
        .await;
    create(
        &s,
        "/v1/activities",
        json!({"customerId": customer, "mediaType": "sms", "fieldsets": ["cisco.base.pod"],
               "data": {"Context_Notes": "please forget me"}}),
    )
    .await;
    let id = ObjectId::parse(&customer).expect("id");
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
        .erase_customer(scope, id)
        .await
        .expect("first step of an erase");
    assert!(key().await.is_some(), "the key survived the interruption");

    let retry = s
        .post(
            s.lab(),
            &format!("/v1/customers/{customer}/erase"),
            json!({}),
        )
        .await;
    retry.expect(200);
    assert_eq!(
        retry.at("/erased"),
        2,
        "it reports what the first attempt erased"
    );
    assert!(key().await.is_none(), "the retry destroyed the key");
    let again = s
        .post(
            s.lab(),
            &format!("/v1/customers/{customer}/erase"),
            json!({}),
        )
        .await;
    again.expect(200);
    assert_eq!(again.at("/erased"), 2);
    let audit = s
        .get(
            s.lab(),
            &format!("/v1/audit?action=customer.erase&objectId={customer}"),
        )
        .await;
    assert_eq!(audit.at("/items").as_array().map(Vec::len), Some(2));
    s.post(
        s.lab(),
        &format!("/v1/customers/{}/erase", ObjectId::new()),
        json!({}),
    )
    .await
    .expect(404);

    // The server's sweep finishes an interrupted erase nobody retries.
    let other = s
        .customer(s.lab(), json!({"Context_First_Name": "Ola"}))
        .await;
    let other_id = ObjectId::parse(&other).expect("id");
    s.context
        .store()
        .erase_customer(scope, other_id)
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
    let customer = s
        .customer(s.lab(), json!({"Context_First_Name": "Race"}))
        .await;
    let writers: Vec<_> = (0..40)
        .map(|n| {
            let (http, url, token, customer) = (
                s.http.clone(),
                s.url.clone(),
                s.lab().to_owned(),
                customer.clone(),
            );
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(n)).await;
                http.post(format!("{url}/v1/activities"))
                    .bearer_auth(token)
                    .json(&json!({"customerId": customer, "mediaType": "web"}))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(15)).await;
    s.post(
        s.lab(),
        &format!("/v1/customers/{customer}/erase"),
        json!({}),
    )
    .await
    .expect(200);
    for w in writers {
        let status = w.await.expect("writer");
        assert!(
            status == 201 || status == 400,
            "a write is done before the erase (and erased) or refused after it: {status}"
        );
    }
    let left = s
        .post(
            s.lab(),
            "/v1/activities/search",
            json!({"terms": {"customerId": [customer]}}),
        )
        .await;
    left.expect(200);
    assert_eq!(left.at("/total"), 0, "no orphan names the erased customer");
}
