//! The §1 acceptance journey, up to the point the SDK exists.

use serde_json::{json, Value};

use crate::support::TestServer;

fn ids(items: &Value) -> Vec<String> {
    items
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|o| o["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn motorcycle_journey_on_one_timeline() {
    let s = TestServer::start().await;
    let t = s.lab();

    // The customer, stored with his mobile number written one way.
    let customer = s
        .customer(t, json!({"Context_First_Name": "Erik", "Context_Last_Name": "Lind", "Context_Mobile_Phone": "+1 (555) 010-0001", "Context_Home_Email": "erik@example.com"}))
        .await;

    // The bike reports a fault: an IoT event written by a backend, no request yet.
    let event = s
        .post(t, "/v1/activities", json!({"customerId": customer, "mediaType": "event", "fieldsets": ["cisco.base.pod"], "data": {"Context_Notes": "ECU fault code P0301"}, "tags": ["iot", "fault"]}))
        .await;
    event.expect(201);
    assert_eq!(event.at("/contributors/0/type"), "machine");

    // He browses the service-center page.
    s.post(t, "/v1/activities", json!({"customerId": customer, "mediaType": "web", "fieldsets": ["cisco.base.pod"], "data": {"Context_POD_Activity_Link": "https://dealer.example/service"}}))
        .await
        .expect(201);

    // He chats with an agent, in a new request "Service appointment".
    let request = s
        .post(t, "/v1/requests", json!({"customerId": customer, "fieldsets": ["cisco.base.request"], "data": {"Context_Title": "Service appointment"}}))
        .await;
    request.expect(201);
    let request_id = request.str("/id");
    assert_eq!(request.str("/state"), "active");
    let chat = s
        .post(t, "/v1/activities", json!({"parentId": request_id, "mediaType": "chat", "fieldsets": ["cisco.base.pod"], "data": {"Context_Notes": "Booked for Tuesday"}}))
        .await;
    chat.expect(201);
    assert_eq!(
        chat.str("/customerId"),
        customer,
        "an activity inherits its request's customer"
    );

    // He calls: the IVR looks him up by caller number, written differently than stored.
    let found = s
        .post(
            t,
            "/v1/customers/search",
            json!({"terms": {"Context_Mobile_Phone": ["15550100001"]}}),
        )
        .await;
    found.expect(200);
    assert_eq!(ids(found.at("/items")), vec![customer.clone()]);
    assert_eq!(found.at("/items/0/data/Context_First_Name"), "Erik");
    // …finds the open request…
    let open = s
        .post(
            t,
            "/v1/requests/search",
            json!({"terms": {"customerId": [customer], "state": ["active"]}}),
        )
        .await;
    open.expect(200);
    assert_eq!(ids(open.at("/items")), vec![request_id.clone()]);
    // …and the call becomes an activity whose id travels with the call as POD.ID.
    let voice = s.post(t, "/v1/activities", json!({"parentId": request_id, "customerId": customer, "mediaType": "voice", "fieldsets": ["cisco.base.pod"], "data": {"Context_POD_Source_Phone": "+15550100001"}})).await;
    voice.expect(201);
    let pod_id = voice.str("/id");
    s.get(t, &format!("/v1/activities/{pod_id}"))
        .await
        .expect(200);

    // He proposes a new date by SMS; the agent confirms by SMS.
    s.post(t, "/v1/activities", json!({"parentId": request_id, "mediaType": "sms", "fieldsets": ["cisco.base.pod"], "data": {"Context_Notes": "Can we do Thursday?"}}))
        .await
        .expect(201);
    let agent_sms = s
        .post(t, "/v1/activities", json!({"parentId": request_id, "mediaType": "sms", "fieldsets": ["cisco.base.pod"], "data": {"Context_Notes": "Thursday 10:00 confirmed"}}))
        .await;
    agent_sms.expect(201);

    // The agent leaves a comment and the customer rates the service.
    let comment = s
        .post(t, "/v1/details", json!({"parentId": request_id, "detailType": "comment", "fieldsets": ["cisco.base.comment"], "data": {"Context_Comment": "Rear brake pads too", "Context_Visible": true}}))
        .await;
    comment.expect(201);
    assert_eq!(
        comment.str("/state"),
        "closed",
        "details are created closed"
    );
    assert_eq!(comment.str("/customerId"), customer);
    let rating = s
        .post(t, "/v1/details", json!({"parentId": pod_id, "detailType": "feedback", "fieldsets": ["cisco.base.rating"], "data": {"cccRatingPoints": 5, "cccRatingComments": "Quick"}}))
        .await;
    rating.expect(201);

    // The bike is picked up: the request is closed, and then refuses new children.
    let closed = s
        .patch(
            t,
            &format!("/v1/requests/{request_id}"),
            json!({"state": "closed"}),
        )
        .await;
    closed.expect(200);
    assert_eq!(closed.str("/state"), "closed");
    s.post(
        t,
        "/v1/activities",
        json!({"parentId": request_id, "mediaType": "voice"}),
    )
    .await
    .expect(409);

    // Every step is on one timeline, newest first.
    let timeline = s
        .get(t, &format!("/v1/customers/{customer}/timeline"))
        .await;
    timeline.expect(200);
    let items = timeline
        .at("/items")
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        items.len(),
        9,
        "2 activities before the request, the request, 4 activities in it, 2 details"
    );
    assert_eq!(timeline.at("/total"), 9);
    let created: Vec<&str> = items.iter().filter_map(|o| o["created"].as_str()).collect();
    let mut sorted = created.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(created, sorted, "newest first");
    assert_eq!(
        items[0]["id"],
        rating.at("/id").clone(),
        "the rating was written last"
    );
    assert_eq!(
        items[8]["id"],
        event.at("/id").clone(),
        "the IoT event was first"
    );
    let kinds: Vec<&str> = items.iter().filter_map(|o| o["type"].as_str()).collect();
    assert!(
        !kinds.contains(&"customer"),
        "the customer itself is not a timeline entry"
    );
    assert_eq!(
        items
            .iter()
            .find(|o| o["type"] == "request")
            .map(|o| o["state"].clone()),
        Some(json!("closed"))
    );

    // Filter by channel, and page with a cursor.
    let sms = s
        .get(
            t,
            &format!("/v1/customers/{customer}/timeline?mediaType=sms"),
        )
        .await;
    sms.expect(200);
    assert_eq!(ids(sms.at("/items")).len(), 2);
    assert!(sms
        .at("/items")
        .as_array()
        .is_some_and(|a| a.iter().all(|o| o["mediaType"] == "sms")));
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/customers/{customer}/timeline?limit=4&cursor={c}"),
            None => format!("/v1/customers/{customer}/timeline?limit=4"),
        };
        let page = s.get(t, &path).await;
        page.expect(200);
        seen.extend(ids(page.at("/items")));
        match page.at("/nextCursor").as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ids(&Value::Array(items)),
        "paging returns the same journey, each entry once"
    );
    s.stop().await;
}

#[tokio::test]
async fn activities_of_every_media_type() {
    let s = TestServer::start().await;
    let t = s.lab();
    let customer = s.customer(t, json!({"Context_First_Name": "Mia"})).await;
    let media = [
        "voice", "chat", "email", "sms", "social", "video", "web", "mobile", "event",
    ];
    for m in media {
        let r = s
            .post(
                t,
                "/v1/activities",
                json!({"customerId": customer, "mediaType": m}),
            )
            .await;
        r.expect(201);
        assert_eq!(r.str("/mediaType"), m);
        assert_eq!(r.str("/type"), "activity");
        assert_eq!(r.at("/version"), 1);
        assert!(
            r.str("/created").ends_with('Z') && r.str("/created").len() == 24,
            "RFC 3339 UTC with milliseconds"
        );
    }
    for m in media {
        let found = s
            .post(
                t,
                "/v1/activities/search",
                json!({"terms": {"mediaType": m, "customerId": customer}}),
            )
            .await;
        found.expect(200);
        assert_eq!(found.at("/total"), 1, "{m}");
    }
    s.post(
        t,
        "/v1/activities",
        json!({"customerId": customer, "mediaType": "fax"}),
    )
    .await
    .expect(400);
    let all = s
        .get(t, &format!("/v1/customers/{customer}/timeline?limit=200"))
        .await;
    assert_eq!(all.at("/total"), 9);
}
