//! The acceptance journey (a customer's motorcycle, from an IoT fault to a closed request), driven through the SDK as an IVR, a chat server and an agent
//! desktop would.

use contextd_client::{Error, Search};
use contextd_proto::object::{ContributorType, MediaType, State, TimelineParams};
use contextd_proto::{ContextObject, ErrorCode, Kind, ObjectId};
use futures::TryStreamExt;
use serde_json::json;

use crate::support::{input, TestServer};

fn ids(items: &[ContextObject]) -> Vec<ObjectId> {
    items.iter().map(|o| o.id).collect()
}

#[tokio::test]
async fn motorcycle_journey_on_one_timeline() {
    let s = TestServer::start().await;
    let c = s.client(s.lab());

    // The customer, stored with his mobile number written one way.
    let customer = c
        .create(Kind::Customer, &input(json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": "Erik", "Context_Last_Name": "Lind", "Context_Mobile_Phone": "+1 (555) 010-0001", "Context_Home_Email": "erik@example.com"}})))
        .await
        .expect("customer")
        .id;

    // The bike reports a fault: an IoT event written by a backend, no request yet.
    let event = c
        .create(Kind::Activity, &input(json!({"customerId": customer, "mediaType": "event", "fieldsets": ["cisco.base.pod"], "data": {"Context_Notes": "ECU fault code P0301"}, "tags": ["iot", "fault"]})))
        .await
        .expect("event");
    assert_eq!(event.contributors[0].kind, ContributorType::Machine);

    // He browses the service-center page.
    c.create(Kind::Activity, &input(json!({"customerId": customer, "mediaType": "web", "fieldsets": ["cisco.base.pod"], "data": {"Context_POD_Activity_Link": "https://dealer.example/service"}})))
        .await
        .expect("web visit");

    // He chats with an agent, in a new request "Service appointment".
    let request = c
        .create(Kind::Request, &input(json!({"customerId": customer, "fieldsets": ["cisco.base.request"], "data": {"Context_Title": "Service appointment"}})))
        .await
        .expect("request");
    assert_eq!(request.state, State::Active);
    let chat = c
        .create(Kind::Activity, &input(json!({"parentId": request.id, "mediaType": "chat", "fieldsets": ["cisco.base.pod"], "data": {"Context_Notes": "Booked for Tuesday"}})))
        .await
        .expect("chat");
    assert_eq!(
        chat.customer_id,
        Some(customer),
        "an activity inherits its request's customer"
    );

    // He calls: the IVR looks him up by caller number, written differently than stored.
    let ivr = s.client(s.lab());
    let found = ivr
        .search(
            Kind::Customer,
            &Search::all()
                .term("Context_Mobile_Phone", "15550100001")
                .build(),
        )
        .await
        .expect("lookup");
    let found = found.items.unwrap_or_default();
    assert_eq!(ids(&found), vec![customer]);
    assert_eq!(found[0].data["Context_First_Name"], "Erik");
    // …finds the open request…
    let open = ivr
        .search(
            Kind::Request,
            &Search::all()
                .term("customerId", customer.to_string())
                .term("state", "active")
                .build(),
        )
        .await
        .expect("open requests");
    assert_eq!(ids(&open.items.unwrap_or_default()), vec![request.id]);
    // …and the call becomes an activity whose id travels with the call as POD.ID.
    let voice = ivr
        .create(Kind::Activity, &input(json!({"parentId": request.id, "customerId": customer, "mediaType": "voice", "fieldsets": ["cisco.base.pod"], "data": {"Context_POD_Source_Phone": "+15550100001"}})))
        .await
        .expect("voice");
    let pod = c.get(Kind::Activity, voice.id).await.expect("the POD");
    assert_eq!(pod.media_type, Some(MediaType::Voice));

    // He proposes a new date by SMS; the agent confirms by SMS.
    for note in ["Can we do Thursday?", "Thursday 10:00 confirmed"] {
        c.create(Kind::Activity, &input(json!({"parentId": request.id, "mediaType": "sms", "fieldsets": ["cisco.base.pod"], "data": {"Context_Notes": note}})))
            .await
            .expect("sms");
    }

    // The agent leaves a comment and the customer rates the service.
    let comment = c
        .create(Kind::Detail, &input(json!({"parentId": request.id, "detailType": "comment", "fieldsets": ["cisco.base.comment"], "data": {"Context_Comment": "Rear brake pads too", "Context_Visible": true}})))
        .await
        .expect("comment");
    assert_eq!(comment.state, State::Closed, "details are created closed");
    assert_eq!(comment.customer_id, Some(customer));
    let rating = c
        .create(Kind::Detail, &input(json!({"parentId": voice.id, "detailType": "feedback", "fieldsets": ["cisco.base.rating"], "data": {"cccRatingPoints": 5, "cccRatingComments": "Quick"}})))
        .await
        .expect("rating");

    // The bike is picked up: the request is closed, and then refuses new children.
    let mut close = serde_json::Map::new();
    close.insert("state".into(), json!("closed"));
    let closed = c
        .patch(Kind::Request, request.id, &close, None)
        .await
        .expect("close");
    assert_eq!(closed.state, State::Closed);
    let refused = c
        .create(
            Kind::Activity,
            &input(json!({"parentId": request.id, "mediaType": "voice"})),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(Error::Conflict {
                code: ErrorCode::ParentClosed,
                ..
            })
        ),
        "{refused:?}"
    );

    // Every step is on one timeline, newest first.
    let timeline = c
        .timeline(customer, &TimelineParams::default())
        .await
        .expect("timeline");
    let items = timeline.items;
    assert_eq!(
        items.len(),
        9,
        "2 activities before the request, the request, 4 activities in it, 2 details"
    );
    assert_eq!(timeline.total, 9);
    let created: Vec<_> = items.iter().map(|o| o.created).collect();
    let mut sorted = created.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(created, sorted, "newest first");
    assert_eq!(items[0].id, rating.id, "the rating was written last");
    assert_eq!(items[8].id, event.id, "the IoT event was first");
    assert!(
        items.iter().all(|o| o.kind != Kind::Customer),
        "the customer itself is not a timeline entry"
    );
    assert_eq!(
        items
            .iter()
            .find(|o| o.kind == Kind::Request)
            .map(|o| o.state),
        Some(State::Closed)
    );

    // Filter by channel, and page with a cursor.
    let sms: Vec<ContextObject> = c
        .timeline_stream(customer, Some(MediaType::Sms))
        .try_collect()
        .await
        .expect("sms entries");
    assert_eq!(sms.len(), 2);
    assert!(sms.iter().all(|o| o.media_type == Some(MediaType::Sms)));
    let mut seen = Vec::new();
    let mut params = TimelineParams {
        limit: Some(4),
        ..TimelineParams::default()
    };
    loop {
        let page = c.timeline(customer, &params).await.expect("a page");
        seen.extend(ids(&page.items));
        match page.next_cursor {
            Some(next) => params.cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ids(&items),
        "paging returns the same journey, each entry once"
    );
    let stats = c.stats_summary();
    assert_eq!(stats["activity.create"]["count"], 6, "{stats}");
    assert_eq!(
        stats["activity.create.error.conflict"]["count"], 1,
        "{stats}"
    );
    s.stop().await;
}

#[tokio::test]
async fn activities_of_every_media_type() {
    let s = TestServer::start().await;
    let c = s.client(s.lab());
    let customer = c
        .create(
            Kind::Customer,
            &input(json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": "Mia"}})),
        )
        .await
        .expect("customer")
        .id;
    for &m in MediaType::ALL {
        let a = c
            .create(
                Kind::Activity,
                &input(json!({"customerId": customer, "mediaType": m})),
            )
            .await
            .expect("activity");
        assert_eq!(a.media_type, Some(m));
        assert_eq!(a.kind, Kind::Activity);
        assert_eq!(a.version, 1);
    }
    for &m in MediaType::ALL {
        let found = c
            .search(
                Kind::Activity,
                &Search::all()
                    .term("mediaType", m.as_str())
                    .term("customerId", customer.to_string())
                    .build(),
            )
            .await
            .expect("search");
        assert_eq!(found.total, 1, "{m}");
    }
    let fax = c
        .create(
            Kind::Activity,
            &input(json!({"customerId": customer, "mediaType": "fax"})),
        )
        .await;
    assert!(
        matches!(
            fax,
            Err(Error::Validation { .. } | Error::BadRequest { .. })
        ),
        "{fax:?}"
    );
    let all = c
        .timeline(
            customer,
            &TimelineParams {
                limit: Some(200),
                ..TimelineParams::default()
            },
        )
        .await
        .expect("timeline");
    assert_eq!(all.total, 9);
}

/// The journey example of the SDK (`cargo run -p contextd-client --example journey`), run
/// against a server on port 0 with the `default` connector's connectionData, as a component
/// would run it.
#[path = "../../../contextd-client/examples/journey.rs"]
mod journey_example;

#[tokio::test]
async fn the_journey_example_replays_every_step() {
    let s = TestServer::start().await;
    let client = contextd_client::Client::from_connection_data(
        &s.org.connection_data,
        contextd_client::Settings::standard().with_lab_mode(true),
    )
    .expect("client from connectionData");
    let mut printed = Vec::new();
    let j = journey_example::run(&client, &mut printed)
        .await
        .expect("the journey runs");

    // The IVR found the customer by his number written differently, and his open request.
    assert_eq!(
        j.ivr_found_customer, j.customer,
        "IVR lookup by caller number"
    );
    assert_eq!(j.ivr_found_request, j.request, "IVR found the open request");
    // The screen pop: the desktop's subscriber saw the SMS within a second.
    let seen = j
        .sms_seen_by_subscriber
        .expect("the subscriber saw the SMS");
    assert!(
        seen < std::time::Duration::from_secs(1),
        "SMS seen after {seen:?}"
    );
    assert_eq!(j.sms_confirmation_contributor, ContributorType::Machine);
    assert_eq!(
        j.request_state_at_end,
        State::Closed,
        "the request is closed"
    );

    // One timeline holds every step, newest first, each where the journey put it.
    let on_timeline = ids(&j.timeline);
    for (step, id) in [
        ("IoT event", j.iot_event),
        ("web visit", j.web_visit),
        ("request", j.request),
        ("chat", j.chat),
        ("voice", j.voice),
        ("SMS proposal", j.sms_proposal),
        ("SMS confirmation", j.sms_confirmation),
    ] {
        assert!(on_timeline.contains(&id), "{step} is on the timeline");
    }
    let by_id = |id: ObjectId| j.timeline.iter().find(|o| o.id == id).expect("on timeline");
    for (id, media) in [
        (j.iot_event, MediaType::Event),
        (j.web_visit, MediaType::Web),
        (j.chat, MediaType::Chat),
        (j.voice, MediaType::Voice),
        (j.sms_proposal, MediaType::Sms),
        (j.sms_confirmation, MediaType::Sms),
    ] {
        assert_eq!(by_id(id).media_type, Some(media));
        assert_eq!(
            by_id(id).customer_id,
            Some(j.customer),
            "{media:?} belongs to him"
        );
    }
    for in_request in [j.chat, j.voice, j.sms_proposal, j.sms_confirmation] {
        assert_eq!(by_id(in_request).parent_id, Some(j.request));
    }
    assert!(
        j.timeline.windows(2).all(|w| w[0].created >= w[1].created),
        "newest first"
    );
    // And it printed the steps and the timeline.
    let printed = String::from_utf8(printed).expect("utf-8");
    assert!(
        printed.contains(&j.voice.to_string()),
        "the POD id is printed:\n{printed}"
    );
    assert!(printed.contains("Service appointment"), "{printed}");
}
