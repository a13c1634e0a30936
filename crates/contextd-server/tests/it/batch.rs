//! `POST /v1/{kind}/batch`: many objects in one transaction with one result per item, and
//! imports that keep ids and history and change nothing when run again.

use contextd_proto::access::Role;
use contextd_server::ServerConfig;
use serde_json::{json, Value};

use crate::support::{key, TestServer};

fn customer(first: &str) -> Value {
    json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": first}})
}

#[tokio::test]
async fn a_batch_writes_the_valid_items_and_reports_each_one() {
    let s = TestServer::start().await;
    let r = s
        .post(
            s.lab(),
            "/v1/customers/batch",
            json!({"items": [
                customer("Ada"),
                {"fieldsets": ["cisco.base.customer"], "data": {"No_Such_Field": 1}},
                customer("Grace"),
            ]}),
        )
        .await;
    r.expect(200);
    assert_eq!(
        (r.at("/created"), r.at("/existing"), r.at("/failed")),
        (&json!(2), &json!(0), &json!(1))
    );
    assert_eq!(r.str("/items/0/status"), "created");
    assert_eq!(r.str("/items/1/status"), "failed");
    assert_eq!(r.at("/items/1/problem/status"), &json!(400));
    assert_eq!(
        r.str("/items/1/problem/errors/0/field"),
        "data.No_Such_Field"
    );
    assert!(r.at("/items/1/id").is_null());
    assert_eq!(r.at("/items/2/version"), &json!(1));
    let grace = r.str("/items/2/id");
    let read = s.get(s.lab(), &format!("/v1/customers/{grace}")).await;
    read.expect(200);
    assert_eq!(read.str("/data/Context_First_Name"), "Grace");
    assert_eq!(read.str("/lastUpdated"), r.str("/items/2/lastUpdated"));

    // A request batch: a link to a missing customer fails that item alone.
    let ada = r.str("/items/0/id");
    let requests = s
        .post(
            s.lab(),
            "/v1/requests/batch",
            json!({"items": [
                {"customerId": ada, "fieldsets": ["cisco.base.request"], "data": {"Context_Title": "A"}},
                {"customerId": uuid::Uuid::new_v4(), "fieldsets": ["cisco.base.request"], "data": {"Context_Title": "B"}},
            ]}),
        )
        .await;
    requests.expect(200);
    assert_eq!(requests.str("/items/0/status"), "created");
    assert_eq!(
        requests.str("/items/1/problem/errors/0/field"),
        "customerId"
    );

    // Ids in a plain batch are ignored, as on a create.
    let mine = uuid::Uuid::new_v4().to_string();
    let plain = s
        .post(
            s.lab(),
            "/v1/customers/batch",
            json!({"items": [{"id": mine, "data": {}, "fieldsets": []}]}),
        )
        .await;
    plain.expect(200);
    assert_ne!(plain.str("/items/0/id"), mine);
}

#[tokio::test]
async fn an_import_keeps_ids_and_history_and_running_it_again_changes_nothing() {
    let s = TestServer::start().await;
    let (customer_id, request_id, activity_id) = (
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
        uuid::Uuid::new_v4().to_string(),
    );
    let contributors = json!([{"id": "agent-7", "type": "user"}]);
    let customers = json!({"import": true, "items": [{
        "id": customer_id, "type": "customer", "fieldsets": ["cisco.base.customer"],
        "data": {"Context_First_Name": "Lin", "Context_Mobile_Phone": "+1 555 0100"},
        "created": "2019-03-01T10:00:00.123Z", "lastUpdated": "2019-04-01T10:00:00Z",
        "version": 4, "contributors": contributors
    }]});
    // The request was closed years ago; its activity still comes along.
    let requests = json!({"import": true, "items": [{
        "id": request_id, "customerId": customer_id, "state": "closed",
        "fieldsets": ["cisco.base.request"], "data": {"Context_Title": "Old case"},
        "created": "2019-03-02T00:00:00Z", "lastUpdated": "2019-03-09T00:00:00Z", "version": 2
    }]});
    let activities = json!({"import": true, "items": [{
        "id": activity_id, "customerId": customer_id, "parentId": request_id,
        "mediaType": "voice", "fieldsets": ["cisco.base.pod"],
        "data": {"Context_Notes": "called"},
        "created": "2019-03-03T00:00:00Z", "lastUpdated": "2019-03-03T00:00:00Z"
    }]});
    let batches = [
        ("/v1/customers/batch", &customers),
        ("/v1/requests/batch", &requests),
        ("/v1/activities/batch", &activities),
    ];
    for (path, body) in batches {
        let r = s.post(s.lab(), path, body.clone()).await;
        r.expect(200);
        assert_eq!(r.str("/items/0/status"), "created", "{path}: {}", r.body);
    }
    let c = s
        .get(s.lab(), &format!("/v1/customers/{customer_id}"))
        .await;
    c.expect(200);
    assert_eq!(c.str("/created"), "2019-03-01T10:00:00.123Z");
    assert_eq!(c.str("/lastUpdated"), "2019-04-01T10:00:00.000Z");
    assert_eq!(c.at("/version"), &json!(4));
    assert_eq!(c.at("/contributors"), &contributors);
    assert_eq!(c.str("/data/Context_Mobile_Phone"), "+1 555 0100");
    let found = s
        .post(
            s.lab(),
            "/v1/customers/search",
            json!({"terms": {"Context_Mobile_Phone": "15550100"}}),
        )
        .await;
    assert_eq!(
        found.str("/items/0/id"),
        customer_id,
        "an imported PII value is indexed"
    );
    let a = s
        .get(s.lab(), &format!("/v1/activities/{activity_id}"))
        .await;
    assert_eq!(a.str("/parentId"), request_id);
    assert_eq!(a.at("/version"), &json!(1));
    assert_eq!(a.at("/contributors"), &json!([]));

    let events_before = s
        .context
        .last_event_id(&s.lab_admin())
        .await
        .expect("events");
    for (path, body) in batches {
        let again = s.post(s.lab(), path, body.clone()).await;
        again.expect(200);
        assert_eq!(again.str("/items/0/status"), "exists", "{path}");
        assert_eq!(again.at("/created"), &json!(0));
    }
    assert_eq!(
        s.get(s.lab(), &format!("/v1/customers/{customer_id}"))
            .await
            .body,
        c.body,
        "running the import again changes nothing"
    );
    let events_after = s
        .context
        .last_event_id(&s.lab_admin())
        .await
        .expect("events");
    assert_eq!(events_before, events_after, "and records no event");
}

#[tokio::test]
async fn imports_are_for_admins_and_refuse_what_they_cannot_keep() {
    let s = TestServer::start().await;
    let (_, agent) = key(&s.client(s.lab()), Role::Agent).await;
    let id = uuid::Uuid::new_v4().to_string();
    let item = json!({"id": id, "fieldsets": [], "data": {}});
    s.post(
        &agent,
        "/v1/customers/batch",
        json!({"import": true, "items": [item]}),
    )
    .await
    .expect(403);
    let plain = s
        .post(&agent, "/v1/customers/batch", json!({"items": [item]}))
        .await;
    plain.expect(200);
    assert_eq!(plain.str("/items/0/status"), "created", "agents may batch");

    let r = s
        .post(
            s.lab(),
            "/v1/customers/batch",
            json!({"import": true, "items": [
                item,
                item,
                {"fieldsets": [], "data": {}},
                {"id": uuid::Uuid::new_v4(), "created": "yesterday", "fieldsets": [], "data": {}},
            ]}),
        )
        .await;
    r.expect(200);
    assert_eq!(r.str("/items/0/status"), "created");
    assert_eq!(r.str("/items/1/problem/errors/0/field"), "id", "twice");
    assert_eq!(r.str("/items/2/problem/errors/0/field"), "id", "missing");
    assert_eq!(r.str("/items/3/problem/errors/0/field"), "created");

    // The same id as another kind is a conflict, not `exists`.
    let clash = s
        .post(
            s.lab(),
            "/v1/requests/batch",
            json!({"import": true, "items": [{"id": id, "customerId": id, "fieldsets": [], "data": {}}]}),
        )
        .await;
    clash.expect(200);
    assert_eq!(clash.str("/items/0/status"), "failed");
    assert_eq!(clash.at("/items/0/problem/status"), &json!(409));

    let too_many: Vec<Value> = (0..1001).map(|_| json!({})).collect();
    s.post(s.lab(), "/v1/customers/batch", json!({"items": too_many}))
        .await
        .expect(400);
    s.post(s.lab(), "/v1/customers/batch", json!({"items": 3}))
        .await
        .expect(400);
    s.post(s.lab(), "/v1/things/batch", json!({"items": []}))
        .await
        .expect(404);
}

#[tokio::test]
async fn a_batch_body_has_a_limit_of_its_own() {
    let server = ServerConfig {
        body_limit: 16 * 1024,
        batch_body_limit: 64 * 1024,
        ..ServerConfig::default()
    };
    let s = TestServer::start_with(Default::default(), server).await;
    let items =
        |n: usize| -> Vec<Value> { (0..n).map(|i| customer(&format!("Name {i}"))).collect() };
    // ~30 KB: over the limit of other bodies, within the batch limit.
    let r = s
        .post(s.lab(), "/v1/customers/batch", json!({"items": items(400)}))
        .await;
    r.expect(200);
    assert_eq!(r.at("/created"), &json!(400));
    // ~90 KB: over it.
    s.post(
        s.lab(),
        "/v1/customers/batch",
        json!({"items": items(1000)}),
    )
    .await
    .expect(413);
}

#[tokio::test]
async fn an_import_never_brings_back_an_erased_customer_nor_pops_up_old_calls() {
    let s = TestServer::start().await;
    let id = uuid::Uuid::new_v4().to_string();
    let item = json!({"id": id, "fieldsets": ["cisco.base.customer"],
        "data": {"Context_First_Name": "Forgotten"}});
    let body = json!({"import": true, "items": [item]});
    s.post(s.lab(), "/v1/customers/batch", body.clone())
        .await
        .expect(200);
    s.post(s.lab(), &format!("/v1/customers/{id}/erase"), json!({}))
        .await
        .expect(200);
    let again = s.post(s.lab(), "/v1/customers/batch", body).await;
    again.expect(200);
    assert_eq!(again.str("/items/0/status"), "failed", "{}", again.body);
    assert_eq!(again.at("/items/0/problem/status"), &json!(409));
    s.get(s.lab(), &format!("/v1/customers/{id}"))
        .await
        .expect(404);

    // An imported call tagged for an agent is history: its event addresses no one.
    let customer = s
        .customer(s.lab(), json!({"Context_First_Name": "Ada"}))
        .await;
    let before = s
        .context
        .last_event_id(&s.lab_admin())
        .await
        .expect("events");
    let call = json!({"import": true, "items": [{"id": uuid::Uuid::new_v4(), "customerId": customer,
        "mediaType": "voice", "tags": ["agent:alice"], "fieldsets": [], "data": {},
        "created": "2020-01-01T00:00:00Z", "lastUpdated": "2020-01-01T00:00:00Z"}]});
    s.post(s.lab(), "/v1/activities/batch", call)
        .await
        .expect(200);
    let live = json!({"items": [{"customerId": customer, "mediaType": "voice",
        "tags": ["agent:alice"], "fieldsets": [], "data": {}}]});
    s.post(s.lab(), "/v1/activities/batch", live)
        .await
        .expect(200);
    let events = s
        .context
        .events_after(&s.lab_admin(), before, 10)
        .await
        .expect("events");
    let addressed: Vec<Option<&str>> = events.iter().map(|e| e.addressed_to.as_deref()).collect();
    assert_eq!(addressed, vec![None, Some("alice")]);
}

#[tokio::test]
async fn an_import_refuses_times_ahead_and_versions_out_of_range() {
    let s = TestServer::start().await;
    let item = |extra: Value| {
        let mut v = json!({"id": uuid::Uuid::new_v4(), "fieldsets": [], "data": {}});
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v
    };
    let r = s
        .post(
            s.lab(),
            "/v1/customers/batch",
            json!({"import": true, "items": [
                item(json!({"lastUpdated": "2999-01-01T00:00:00Z"})),
                item(json!({"version": 9_007_199_254_740_992_i64})),
                item(json!({"version": 0})),
                item(json!({"created": "2020-02-01T00:00:00Z", "lastUpdated": "2020-01-01T00:00:00Z"})),
                item(json!({"version": 9_007_199_254_740_991_i64})),
            ]}),
        )
        .await;
    r.expect(200);
    let fields: Vec<String> = (0..4)
        .map(|i| r.str(&format!("/items/{i}/problem/errors/0/field")))
        .collect();
    assert_eq!(fields, ["lastUpdated", "version", "version", "lastUpdated"]);
    assert_eq!(r.str("/items/4/status"), "created");
}
