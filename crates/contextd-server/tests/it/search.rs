//! Search semantics (README, "API overview") through the SDK: match modes, special keys, normalization,
//! phone digits, blind indexes, date ranges, notExists, ordering, cursor paging, summary,
//! limits and read-your-writes.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::TimeZone;
use contextd_client::{Client, Error, Search};
use contextd_core::auth::Role;
use contextd_core::service::ContextConfig;
use contextd_core::{Partition, Scope};
use contextd_proto::dictionary::{Field, FieldSet};
use contextd_proto::object::{ObjectPatch, SearchRequest, SearchResult, State};
use contextd_proto::{ContextObject, Kind, ObjectId};
use contextd_server::ServerConfig;
use serde_json::{json, Value};

use crate::support::{input, search, Resp, TestServer};

/// One page of a search that must succeed.
async fn find(c: &Client, kind: Kind, request: SearchRequest) -> SearchResult {
    c.search(kind, &request)
        .await
        .unwrap_or_else(|e| panic!("{kind} search {request:?}: {e}"))
}

/// Asserts that a search is refused as invalid, naming `field` among its errors.
async fn refused(c: &Client, kind: Kind, body: Value, field: &str) {
    let r = c.search(kind, &search(body.clone())).await;
    assert!(
        matches!(&r, Err(Error::Validation { errors, .. }) if errors.iter().any(|e| e.field == field)),
        "{body} must be refused naming {field}: {r:?}"
    );
}

/// The ids of a result page, in order.
fn found(r: &SearchResult) -> Vec<ObjectId> {
    r.items
        .as_ref()
        .unwrap_or_else(|| panic!("items in {r:?}"))
        .iter()
        .map(|o| o.id)
        .collect()
}

fn set(ids: &[ObjectId]) -> BTreeSet<ObjectId> {
    ids.iter().copied().collect()
}

fn found_set(r: &SearchResult) -> BTreeSet<ObjectId> {
    found(r).into_iter().collect()
}

/// Creates an object that must be accepted.
async fn create(c: &Client, kind: Kind, body: Value) -> ContextObject {
    c.create(kind, &input(body.clone()))
        .await
        .unwrap_or_else(|e| panic!("create {kind} {body}: {e}"))
}

/// Creates a customer with base-fieldset data; its id.
async fn customer(c: &Client, data: Value) -> ObjectId {
    create(
        c,
        Kind::Customer,
        json!({"fieldsets": ["cisco.base.customer"], "data": data}),
    )
    .await
    .id
}

async fn activity(c: &Client, body: Value) -> ObjectId {
    create(c, Kind::Activity, body).await.id
}

/// Merge-patches an object; the patch must be accepted.
async fn patch(c: &Client, kind: Kind, id: ObjectId, body: Value) -> ContextObject {
    let patch: ObjectPatch = serde_json::from_value(body).expect("a patch object");
    c.patch(kind, id, &patch, None)
        .await
        .unwrap_or_else(|e| panic!("patch {kind} {id}: {e}"))
}

/// Lets the millisecond clock move on, so that timestamps differ.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(15)).await;
}

#[tokio::test]
async fn match_all_any_and_or_within_a_key() {
    let s = TestServer::start().await;
    let lab = s.client(s.lab());
    let a = customer(
        &lab,
        json!({"Context_First_Name": "Ann", "Context_Last_Name": "Lee", "Context_City": "Oslo"}),
    )
    .await;
    let b = customer(
        &lab,
        json!({"Context_First_Name": "Ann", "Context_Last_Name": "Kim"}),
    )
    .await;
    let c = customer(
        &lab,
        json!({"Context_First_Name": "Bob", "Context_Last_Name": "Lee"}),
    )
    .await;
    let d = customer(
        &lab,
        json!({"Context_First_Name": "Cid", "Context_Last_Name": "Day"}),
    )
    .await;
    // Same names in the other partition are invisible here.
    customer(
        &s.client(s.prod()),
        json!({"Context_First_Name": "Ann", "Context_Last_Name": "Lee"}),
    )
    .await;

    let both = json!({"Context_First_Name": ["Ann"], "Context_Last_Name": ["Lee"]});
    let r = find(
        &lab,
        Kind::Customer,
        search(json!({"match": "all", "terms": both})),
    )
    .await;
    assert_eq!(found_set(&r), set(&[a]));
    assert_eq!(r.total, 1);
    let r = find(
        &lab,
        Kind::Customer,
        search(json!({"match": "any", "terms": both})),
    )
    .await;
    assert_eq!(found_set(&r), set(&[a, b, c]));
    assert_eq!(r.total, 3);

    // Values of one key are OR-ed, in both modes.
    let r = find(
        &lab,
        Kind::Customer,
        search(json!({"match": "all", "terms": {"Context_First_Name": ["Ann", "Bob"]}})),
    )
    .await;
    assert_eq!(found_set(&r), set(&[a, b, c]));
    let r = find(&lab, Kind::Customer, search(json!({"match": "all", "terms": {"Context_First_Name": ["Ann", "Cid"], "Context_Last_Name": ["Day", "Kim"]}}))).await;
    assert_eq!(found_set(&r), set(&[b, d]));
    let r = find(&lab, Kind::Customer, search(json!({"match": "all", "terms": {"Context_First_Name": ["Ann", "Bob"], "Context_Last_Name": "Lee"}}))).await;
    assert_eq!(
        found_set(&r),
        set(&[a, c]),
        "a single value may be given without the array"
    );
    // A key that matches nothing empties an all-search but not an any-search.
    let none = json!({"Context_First_Name": ["Ann"], "Context_Last_Name": ["Nobody"]});
    let r = find(
        &lab,
        Kind::Customer,
        search(json!({"match": "all", "terms": none})),
    )
    .await;
    assert!(found(&r).is_empty());
    assert_eq!(r.total, 0);
    let r = find(
        &lab,
        Kind::Customer,
        search(json!({"match": "any", "terms": none})),
    )
    .await;
    assert_eq!(found_set(&r), set(&[a, b]));
    // Another kind holds none of them.
    let r = find(
        &lab,
        Kind::Request,
        Search::all().term("customerId", a.to_string()).build(),
    )
    .await;
    assert_eq!(r.total, 0);
}

#[tokio::test]
async fn special_keys() {
    let s = TestServer::start().await;
    let lab = s.client(s.lab());
    let scope = Scope {
        org: s.org.org_id,
        partition: Partition::Lab,
    };
    let (agent1_id, agent1) = s
        .context
        .create_api_key(scope, "agent one", Role::Agent, None)
        .await
        .expect("key");
    let (agent2_id, agent2) = s
        .context
        .create_api_key(scope, "agent two", Role::Agent, None)
        .await
        .expect("key");
    let (agent1, agent2) = (s.client(&agent1), s.client(&agent2));

    let x = customer(&agent1, json!({"Context_First_Name": "Xena"})).await;
    let y = customer(&agent2, json!({"Context_First_Name": "Yuri"})).await;
    let z = customer(&lab, json!({"Context_First_Name": "Zed"})).await;
    let customers = |body: Value| find(&lab, Kind::Customer, search(body));
    let activities = |body: Value| find(&lab, Kind::Activity, search(body));
    let requests = |body: Value| find(&lab, Kind::Request, search(body));

    // id
    let r = customers(json!({"terms": {"id": [x, y]}})).await;
    assert_eq!(found_set(&r), set(&[x, y]));
    let r = customers(json!({"match": "any", "terms": {"id": [x], "Context_First_Name": ["Zed"]}}))
        .await;
    assert_eq!(found_set(&r), set(&[x, z]));
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        customers(json!({"terms": {"id": [unknown]}})).await.total,
        0
    );

    // customerId, parentId, mediaType on activities
    let open = create(&lab, Kind::Request, json!({"customerId": x}))
        .await
        .id;
    let closed = create(&lab, Kind::Request, json!({"customerId": y}))
        .await
        .id;
    let a1 = activity(&lab, json!({"parentId": open, "mediaType": "voice"})).await;
    let a2 = activity(&lab, json!({"customerId": x, "mediaType": "chat"})).await;
    let a3 = activity(&lab, json!({"customerId": y, "mediaType": "sms"})).await;
    let a4 = activity(
        &lab,
        json!({"mediaType": "event", "tags": ["IoT", "Fault"]}),
    )
    .await;
    patch(&lab, Kind::Request, closed, json!({"state": "closed"})).await;

    let r = activities(json!({"terms": {"customerId": [x]}})).await;
    assert_eq!(
        found_set(&r),
        set(&[a1, a2]),
        "a1 inherits the customer of its request"
    );
    let r = activities(json!({"terms": {"customerId": [x, y]}})).await;
    assert_eq!(found_set(&r), set(&[a1, a2, a3]));
    let r = activities(json!({"terms": {"parentId": [open]}})).await;
    assert_eq!(found_set(&r), set(&[a1]));
    let r = activities(json!({"terms": {"mediaType": ["voice", "sms"]}})).await;
    assert_eq!(found_set(&r), set(&[a1, a3]));
    let r = activities(json!({"terms": {"mediaType": ["event"]}})).await;
    assert_eq!(found_set(&r), set(&[a4]));
    refused(
        &lab,
        Kind::Activity,
        json!({"terms": {"mediaType": ["fax"]}}),
        "terms.mediaType",
    )
    .await;
    refused(
        &lab,
        Kind::Activity,
        json!({"terms": {"customerId": ["not-an-id"]}}),
        "terms.customerId",
    )
    .await;

    // state on requests
    let r = requests(json!({"terms": {"state": ["active"]}})).await;
    assert_eq!(found_set(&r), set(&[open]));
    let r = requests(json!({"terms": {"state": ["closed"]}})).await;
    assert_eq!(found_set(&r), set(&[closed]));
    let r = requests(json!({"terms": {"state": ["active", "closed"]}})).await;
    assert_eq!(found_set(&r), set(&[open, closed]));
    refused(
        &lab,
        Kind::Request,
        json!({"terms": {"state": ["pending"]}}),
        "terms.state",
    )
    .await;

    // tags (case-insensitive)
    let r = activities(json!({"terms": {"tags": ["iot"]}})).await;
    assert_eq!(found_set(&r), set(&[a4]));
    let r = activities(json!({"terms": {"tags": ["FAULT", "nothing"]}})).await;
    assert_eq!(found_set(&r), set(&[a4]));
    assert_eq!(
        activities(json!({"terms": {"tags": ["io"]}})).await.total,
        0
    );

    // contributor: every principal that wrote the object
    let r = customers(json!({"terms": {"contributor": [agent1_id.to_string()]}})).await;
    assert_eq!(found_set(&r), set(&[x]));
    patch(&agent2, Kind::Customer, x, json!({"tags": ["touched"]})).await;
    let r = customers(json!({"terms": {"contributor": [agent2_id.to_string()]}})).await;
    assert_eq!(found_set(&r), set(&[x, y]));
    let r = customers(
        json!({"terms": {"contributor": [agent1_id.to_string(), agent2_id.to_string()]}}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[x, y]));
    let r = customers(json!({"terms": {"contributor": [uuid::Uuid::now_v7().to_string()]}})).await;
    assert_eq!(r.total, 0);
}

#[tokio::test]
async fn trimming_and_case_folding() {
    let s = TestServer::start().await;
    let lab = s.client(s.lab());
    let ann = customer(
        &lab,
        json!({"Context_First_Name": "Ann", "Context_City": "  Zoë Town  "}),
    )
    .await;
    let other = customer(&lab, json!({"Context_First_Name": "Annabel"})).await;
    let by = |field: &str, value: &str| {
        find(
            &lab,
            Kind::Customer,
            Search::all().term(field, value).build(),
        )
    };

    for q in ["  ANN ", "ann", "Ann", "aNn\t"] {
        let r = by("Context_First_Name", q).await;
        assert_eq!(found(&r), vec![ann], "{q:?} finds Ann (and only Ann)");
    }
    let r = by("Context_City", "ZOË TOWN").await;
    assert_eq!(found(&r), vec![ann], "case folding is not ASCII-only");
    // Exact, not a prefix or substring match.
    let r = by("Context_First_Name", "Anna").await;
    assert!(found(&r).is_empty());
    let r = by("Context_First_Name", "annabel").await;
    assert_eq!(found(&r), vec![other]);
    // The stored value itself keeps its case and spaces.
    let stored = lab.get(Kind::Customer, ann).await.expect("read");
    assert_eq!(stored.data["Context_City"], "  Zoë Town  ");
}

#[tokio::test]
async fn phone_fields_match_on_digits() {
    let s = TestServer::start().await;
    let lab = s.client(s.lab());
    let c = customer(&lab, json!({"Context_Mobile_Phone": "+1 (555) 010-0001"})).await;
    let w = customer(&lab, json!({"Context_Work_Phone": "1.555.010.0002"})).await;
    let act = activity(&lab, json!({"mediaType": "voice", "fieldsets": ["cisco.base.pod"], "data": {"Context_POD_Source_Phone": "(555) 010 0003"}})).await;
    let by = |kind: Kind, field: &str, value: &str| {
        find(&lab, kind, Search::all().term(field, value).build())
    };

    for q in [
        "15550100001",
        "1-555-010-0001",
        "+1 555 010 0001",
        "+1 (555) 010-0001",
    ] {
        let r = by(Kind::Customer, "Context_Mobile_Phone", q).await;
        assert_eq!(found(&r), vec![c], "{q:?} finds the mobile phone");
    }
    for q in ["5550100001", "15550100002", "1555010000"] {
        let r = by(Kind::Customer, "Context_Mobile_Phone", q).await;
        assert!(found(&r).is_empty(), "{q:?} is another number");
    }
    let r = by(Kind::Customer, "Context_Work_Phone", "+1 555-010-0002").await;
    assert_eq!(found(&r), vec![w]);
    let r = by(Kind::Activity, "Context_POD_Source_Phone", "5550100003").await;
    assert_eq!(found(&r), vec![act]);
    // The IVR lookup: one caller number against every phone field.
    let ivr = Search::any()
        .term("Context_Mobile_Phone", "15550100001")
        .term("Context_Work_Phone", "15550100001")
        .term("Context_Home_Phone", "15550100001");
    let r = find(&lab, Kind::Customer, ivr.build()).await;
    assert_eq!(found(&r), vec![c]);
    // The stored value is kept as written.
    let stored = lab.get(Kind::Customer, c).await.expect("read");
    assert_eq!(stored.data["Context_Mobile_Phone"], "+1 (555) 010-0001");
}

#[tokio::test]
async fn encrypted_field_is_found_through_its_blind_index() {
    let s = TestServer::start().await;
    let lab = s.client(s.lab());
    let secret = "EXT-4242-ZULUQUEBEC";
    let c = customer(
        &lab,
        json!({"Context_Customer_External_ID": secret, "Context_First_Name": "Quinn"}),
    )
    .await;
    customer(
        &lab,
        json!({"Context_Customer_External_ID": "EXT-4243-OTHER"}),
    )
    .await;
    let by_external_id = |c: &Client, value: &str| {
        let request = Search::all()
            .term("Context_Customer_External_ID", value)
            .build();
        let c = c.clone();
        async move { find(&c, Kind::Customer, request).await }
    };

    for q in [secret, "ext-4242-zuluquebec", "  Ext-4242-ZuluQuebec "] {
        let r = by_external_id(&lab, q).await;
        assert_eq!(found(&r), vec![c], "{q:?}");
        assert_eq!(
            r.items.as_ref().unwrap()[0].data["Context_Customer_External_ID"],
            secret,
            "results are decrypted for an admin"
        );
    }
    let r = by_external_id(&lab, "EXT-4242").await;
    assert!(found(&r).is_empty());
    // The other partition has its own index key: no match there.
    let r = by_external_id(&s.client(s.prod()), secret).await;
    assert!(found(&r).is_empty());

    // Neither the value nor its normalized form is in any database file.
    for entry in std::fs::read_dir(s.dir.path()).expect("data dir") {
        let path = entry.expect("entry").path();
        if !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).expect("read");
        for needle in [secret.as_bytes(), b"ext-4242-zuluquebec", b"Quinn"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds a plaintext value",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn created_and_updated_ranges() {
    let s = TestServer::start().await;
    let lab = s.client(s.lab());
    let mut ids = Vec::new();
    let mut created = Vec::new();
    for name in ["One", "Two", "Three"] {
        let o = create(
            &lab,
            Kind::Customer,
            json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": name}}),
        )
        .await;
        ids.push(o.id);
        created.push(o.created);
        tick().await;
    }
    let (c1, c2, c3) = (ids[0], ids[1], ids[2]);
    let (t2, t3) = (created[1], created[2]);
    let customers = |request: SearchRequest| find(&lab, Kind::Customer, request);

    let r = customers(Search::all().created_from(t2).build()).await;
    assert_eq!(found_set(&r), set(&[c2, c3]), "createdFrom is inclusive");
    let r = customers(Search::all().created_to(t2).build()).await;
    assert_eq!(found_set(&r), set(&[c1, c2]), "createdTo is inclusive");
    let r = customers(Search::all().created_from(t2).created_to(t2).build()).await;
    assert_eq!(found_set(&r), set(&[c2]));
    // The same instant written with another offset (so as text: the builder writes UTC).
    let t2_offset = t2
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, false);
    let r = customers(search(json!({"createdFrom": t2_offset}))).await;
    assert_eq!(found_set(&r), set(&[c2, c3]));
    let future = chrono::Utc.with_ymd_and_hms(2999, 1, 1, 0, 0, 0).unwrap();
    let r = customers(Search::all().created_from(future).build()).await;
    assert_eq!(r.total, 0);

    // Update the first: it alone is in the newest updated range.
    let u1 = patch(
        &lab,
        Kind::Customer,
        c1,
        json!({"data": {"Context_Last_Name": "Later"}}),
    )
    .await
    .last_updated;
    let r = customers(Search::all().updated_from(u1).build()).await;
    assert_eq!(found_set(&r), set(&[c1]));
    let r = customers(Search::all().updated_to(t3).build()).await;
    assert_eq!(found_set(&r), set(&[c2, c3]));
    let r = customers(Search::all().updated_from(t2).updated_to(t3).build()).await;
    assert_eq!(found_set(&r), set(&[c2, c3]));
    // Ranges combine with terms.
    let r = customers(
        Search::all()
            .term("Context_First_Name", "One")
            .term("Context_First_Name", "Two")
            .created_from(t2)
            .build(),
    )
    .await;
    assert_eq!(found_set(&r), set(&[c2]));

    // Times the builder could not write, sent as text.
    refused(
        &lab,
        Kind::Customer,
        json!({"createdFrom": "yesterday"}),
        "createdFrom",
    )
    .await;
    refused(
        &lab,
        Kind::Customer,
        json!({"updatedTo": "2024-13-01T00:00:00Z"}),
        "updatedTo",
    )
    .await;
}

#[tokio::test]
async fn not_exists() {
    let s = TestServer::start().await;
    let lab = s.client(s.lab());
    let with = customer(
        &lab,
        json!({"Context_First_Name": "Ann", "Context_Mobile_Phone": "555"}),
    )
    .await;
    let without = customer(&lab, json!({"Context_First_Name": "Ann"})).await;
    let other = customer(&lab, json!({"Context_First_Name": "Bob"})).await;
    let customers = |request: Search| find(&lab, Kind::Customer, request.build());

    let r = customers(Search::all().not_exists("Context_Mobile_Phone")).await;
    assert_eq!(found_set(&r), set(&[without, other]));
    let r = customers(
        Search::all()
            .term("Context_First_Name", "Ann")
            .not_exists("Context_Mobile_Phone"),
    )
    .await;
    assert_eq!(found_set(&r), set(&[without]));
    let r = customers(
        Search::all()
            .not_exists("Context_Mobile_Phone")
            .not_exists("Context_First_Name"),
    )
    .await;
    assert!(found(&r).is_empty());

    // Removing the value (merge-patch null) makes it not exist.
    patch(
        &lab,
        Kind::Customer,
        with,
        json!({"data": {"Context_Mobile_Phone": null}}),
    )
    .await;
    let r = customers(Search::all().not_exists("Context_Mobile_Phone")).await;
    assert_eq!(found_set(&r), set(&[with, without, other]));
    refused(
        &lab,
        Kind::Customer,
        json!({"notExists": ["No_Such_Field"]}),
        "notExists",
    )
    .await;
}

#[tokio::test]
async fn newest_last_updated_first() {
    let s = TestServer::start().await;
    let lab = s.client(s.lab());
    let a = customer(&lab, json!({"Context_First_Name": "A"})).await;
    tick().await;
    let b = customer(&lab, json!({"Context_First_Name": "B"})).await;
    tick().await;
    let c = customer(&lab, json!({"Context_First_Name": "C"})).await;
    tick().await;

    let r = find(&lab, Kind::Customer, Search::all().build()).await;
    assert_eq!(found(&r), vec![c, b, a]);
    patch(&lab, Kind::Customer, a, json!({"tags": ["bumped"]})).await;
    let r = find(
        &lab,
        Kind::Customer,
        search(json!({"match": "any", "terms": {"Context_First_Name": ["A", "B", "C"]}})),
    )
    .await;
    assert_eq!(found(&r), vec![a, c, b]);
    let r = find(&lab, Kind::Customer, Search::all().summary(true).build()).await;
    assert_eq!(r.ids, Some(vec![a, c, b]));
}

#[tokio::test]
async fn cursor_paging_returns_every_object_once_in_order() {
    let s = TestServer::start().await;
    let lab = s.client(s.lab());
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(
            customer(
                &lab,
                json!({"Context_First_Name": format!("P{i}"), "Context_City": "Paging"}),
            )
            .await,
        );
        if i % 2 == 0 {
            tick().await;
        }
    }
    // Noise that the terms exclude.
    customer(
        &lab,
        json!({"Context_First_Name": "Noise", "Context_City": "Elsewhere"}),
    )
    .await;

    let terms = || Search::all().term("Context_City", "paging");
    let full = find(&lab, Kind::Customer, terms().limit(50).build()).await;
    let order = found(&full);
    assert_eq!(order.len(), 7);
    assert_eq!(full.next_cursor, None);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut request = terms().limit(3);
        if let Some(c) = &cursor {
            request = request.cursor(c);
        }
        let r = find(&lab, Kind::Customer, request.build()).await;
        assert_eq!(r.total, 7, "total counts every match on every page");
        let page = found(&r);
        pages += 1;
        seen.extend(page.clone());
        match r.next_cursor {
            None => {
                assert_eq!(page.len(), 1, "the last page holds the rest");
                break;
            }
            Some(c) => {
                assert_eq!(page.len(), 3);
                cursor = Some(c);
            }
        }
        assert!(pages < 10, "paging terminates");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, order, "pages concatenate to the full, ordered result");
    let unique: BTreeSet<_> = seen.iter().copied().collect();
    assert_eq!(unique.len(), 7);
    assert_eq!(unique, set(&created));

    // Summary pages the same way.
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let mut request = terms().limit(3).summary(true);
        if let Some(c) = &cursor {
            request = request.cursor(c);
        }
        let r = find(&lab, Kind::Customer, request.build()).await;
        ids.extend(r.ids.expect("ids in a summary"));
        match r.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(ids, order);
}

#[tokio::test]
async fn summary_returns_ids_not_items() {
    let s = TestServer::start().await;
    let lab = s.client(s.lab());
    let a = customer(&lab, json!({"Context_First_Name": "Sam"})).await;
    tick().await;
    let b = customer(&lab, json!({"Context_First_Name": "Sam"})).await;
    let sams = || Search::all().term("Context_First_Name", "sam");
    // `items` and `ids` are `Option`s the server leaves out when `None` (the same
    // `SearchResult` type serializes the answer), so `None` here means "absent".
    let r = find(&lab, Kind::Customer, sams().summary(true).build()).await;
    assert!(r.items.is_none(), "no items in a summary: {r:?}");
    assert_eq!(r.ids, Some(vec![b, a]));
    assert_eq!(r.total, 2);
    assert_eq!(r.next_cursor, None);
    let r = find(&lab, Kind::Customer, sams().build()).await;
    assert!(r.ids.is_none(), "no ids outside a summary: {r:?}");
    assert_eq!(found(&r), vec![b, a]);
    // A summary may ask for more than 200.
    find(
        &lab,
        Kind::Customer,
        Search::all().summary(true).limit(100_000).build(),
    )
    .await;
    refused(
        &lab,
        Kind::Customer,
        json!({"summary": true, "limit": 100001}),
        "limit",
    )
    .await;
}

#[tokio::test]
async fn bad_limits_cursors_and_keys_are_400() {
    let s = TestServer::start().await;
    let lab = s.client(s.lab());
    customer(&lab, json!({"Context_First_Name": "Ann"})).await;
    customer(&lab, json!({"Context_First_Name": "Bob"})).await;

    find(&lab, Kind::Customer, Search::all().limit(200).build()).await;
    refused(&lab, Kind::Customer, json!({"limit": 201}), "limit").await;
    refused(&lab, Kind::Customer, json!({"limit": 0}), "limit").await;
    // Raw HTTP: a negative limit can't be put in the SDK's `SearchRequest` (`usize`).
    s.post(s.lab(), "/v1/customers/search", json!({"limit": -1}))
        .await
        .expect(400);

    // A real cursor, then forgeries of it.
    let r = find(&lab, Kind::Customer, Search::all().limit(1).build()).await;
    let cursor = r.next_cursor.expect("a next cursor");
    assert!(!cursor.is_empty());
    find(
        &lab,
        Kind::Customer,
        Search::all().limit(1).cursor(&cursor).build(),
    )
    .await;
    let mut tampered = cursor.clone();
    tampered.insert(3, '!');
    for bad in [
        "garbage",
        "",
        "!!!",
        &tampered,
        "MjoxOmFiYw",
        &format!("{cursor}AAAA"),
    ] {
        refused(&lab, Kind::Customer, json!({"cursor": bad}), "cursor").await;
    }

    refused(
        &lab,
        Kind::Customer,
        json!({"terms": {"Nope": ["x"]}}),
        "terms.Nope",
    )
    .await;
    // Raw HTTP: `some` is no `Match`, so the SDK can't send it.
    s.post(s.lab(), "/v1/customers/search", json!({"match": "some"}))
        .await
        .expect(400);
    for values in [json!([]), json!([{"a": 1}]), json!(["x".repeat(5000)])] {
        refused(
            &lab,
            Kind::Customer,
            json!({"terms": {"Context_First_Name": values}}),
            "terms.Context_First_Name",
        )
        .await;
    }
    // Unknown kinds are not searchable. Raw HTTP: the SDK has no `Kind` for them.
    s.post(s.lab(), "/v1/widgets/search", json!({}))
        .await
        .expect(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_your_writes() {
    let s = TestServer::start().await;
    let lab = s.client(s.lab());
    let by_ext = |ext: &str| {
        Search::all()
            .term("Context_Customer_External_ID", ext)
            .build()
    };
    let mut tasks = Vec::new();
    for i in 0..8 {
        let c = lab.clone();
        tasks.push(tokio::spawn(async move {
            for j in 0..5 {
                let ext = format!("RYW-{i}-{j}");
                let id = customer(&c, json!({"Context_Customer_External_ID": ext})).await;
                let r = find(&c, Kind::Customer, by_ext(&ext)).await;
                assert_eq!(
                    found(&r),
                    vec![id],
                    "a create is found by the very next search"
                );

                let moved = format!("RYW-moved-{i}-{j}");
                patch(
                    &c,
                    Kind::Customer,
                    id,
                    json!({"data": {"Context_Customer_External_ID": moved}}),
                )
                .await;
                let r = find(&c, Kind::Customer, by_ext(&moved)).await;
                assert_eq!(
                    found(&r),
                    vec![id],
                    "an update is found by the very next search"
                );
                let r = find(&c, Kind::Customer, by_ext(&ext)).await;
                assert!(found(&r).is_empty(), "the old value is gone from the index");

                c.delete(Kind::Customer, id).await.expect("delete");
                let r = find(
                    &c,
                    Kind::Customer,
                    Search::all().term("id", id.to_string()).build(),
                )
                .await;
                assert_eq!(r.total, 0, "a delete is visible at once");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(
        find(&lab, Kind::Customer, Search::all().build())
            .await
            .total,
        0
    );
}

#[tokio::test]
async fn state_search_sees_autoclosed_requests() {
    let config = ContextConfig {
        request_autoclose: chrono::Duration::seconds(1),
        ..Default::default()
    };
    let s = TestServer::start_with(config, ServerConfig::default()).await;
    let lab = s.client(s.lab());
    let c = customer(&lab, json!({"Context_First_Name": "Ann"})).await;
    let req = create(&lab, Kind::Request, json!({"customerId": c}))
        .await
        .id;
    let in_state = |state: State| {
        find(
            &lab,
            Kind::Request,
            Search::all().term("state", state.as_str()).build(),
        )
    };
    let r = in_state(State::Active).await;
    assert_eq!(found(&r), vec![req]);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A read says closed; so must a search by state.
    let read = lab.get(Kind::Request, req).await.expect("read");
    assert_eq!(read.state, State::Closed);
    let r = in_state(State::Closed).await;
    assert_eq!(
        found(&r),
        vec![req],
        "an auto-closed request is found as closed"
    );
    assert_eq!(r.items.as_ref().unwrap()[0].state, State::Closed);
    let r = in_state(State::Active).await;
    assert!(
        found(&r).is_empty(),
        "an auto-closed request is not found as active: {r:?}"
    );
}

/// Creates searchable number fields `Amount` (double, ENCRYPTED: found through its blind
/// index), `Points` (integer) and `Big` (long) in field set `custom.nums`.
async fn number_fields(c: &Client) {
    for (id, data_type, classification) in [
        ("Amount", "double", "ENCRYPTED"),
        ("Points", "integer", "UNENCRYPTED"),
        ("Big", "long", "UNENCRYPTED"),
    ] {
        let field: Field = serde_json::from_value(json!({"id": id, "dataType": data_type, "classification": classification, "searchable": true})).expect("a Field");
        c.create_field(&field).await.expect("field");
    }
    let set: FieldSet =
        serde_json::from_value(json!({"id": "custom.nums", "fields": ["Amount", "Points", "Big"]}))
            .expect("a FieldSet");
    c.create_fieldset(&set).await.expect("field set");
}

/// Sends a body as raw text, so numbers keep the spelling a client chose (`2.0`, `2e0`):
/// the SDK sends its own serialization of a `serde_json::Value`, which writes both as `2.0`.
async fn raw_json(s: &TestServer, path: &str, body: &str) -> Resp {
    s.raw(
        reqwest::Method::POST,
        path,
        s.lab(),
        "application/json",
        body.as_bytes().to_vec(),
    )
    .await
}

/// A raw answer read as the wire type `T`, after checking its status.
fn typed<T: serde::de::DeserializeOwned>(r: &Resp, status: u16) -> T {
    r.expect(status);
    serde_json::from_value(r.body.clone())
        .unwrap_or_else(|e| panic!("not the wire type ({e}): {}", r.body))
}

/// Issue 9 item 13: numbers are stored and found by value, however a client writes them.
#[tokio::test]
async fn numbers_are_found_by_value() {
    let s = TestServer::start().await;
    let lab = s.client(s.lab());
    number_fields(&lab).await;
    let mut ids = Vec::new();
    // Raw HTTP: the point is the number's spelling on the wire.
    for written in ["2", "2.0", "2e0"] {
        let body = format!(
            r#"{{"fieldsets": ["custom.nums"], "data": {{"Amount": {written}, "Points": {written}, "Big": {written}}}}}"#
        );
        let o: ContextObject = typed(&raw_json(&s, "/v1/customers", &body).await, 201);
        // One canonical JSON number is stored and returned.
        for f in ["Amount", "Points", "Big"] {
            assert_eq!(o.data[f].to_string(), "2", "{f} written {written}");
        }
        ids.push(o.id);
    }
    let other = create(
        &lab,
        Kind::Customer,
        json!({"fieldsets": ["custom.nums"], "data": {"Amount": 2.5, "Points": 3, "Big": 3}}),
    )
    .await
    .id;
    let all = set(&ids);
    for f in ["Amount", "Points", "Big"] {
        for query in [
            r#""2""#,
            r#""2.0""#,
            r#""2e0""#,
            "2",
            "2.0",
            "2e0",
            r#"[" 2.00 "]"#,
        ] {
            // Raw HTTP: as above, `2e0` must reach the server spelled so.
            let body = format!(r#"{{"terms": {{"{f}": {query}}}}}"#);
            let r: SearchResult = typed(&raw_json(&s, "/v1/customers/search", &body).await, 200);
            assert_eq!(found_set(&r), all, "{f} searched with {query}: {r:?}");
        }
    }
    let r = find(
        &lab,
        Kind::Customer,
        Search::all().term("Amount", "2.50").build(),
    )
    .await;
    assert_eq!(found(&r), vec![other]);
    // A fraction on an integer field is a value of the wrong type: 400, like any other.
    for f in ["Points", "Big"] {
        refused(
            &lab,
            Kind::Customer,
            json!({"terms": {f: "2.5"}}),
            &format!("terms.{f}"),
        )
        .await;
    }
}

/// Issue 9 item 14: `Context_Preferred_Language` takes `it-IT` as well as `it_IT`; the value
/// is stored as the enumeration lists it, and search finds it by either spelling.
#[tokio::test]
async fn locales_match_with_hyphen_or_underscore() {
    let s = TestServer::start().await;
    let lab = s.client(s.lab());
    let hyphen = customer(&lab, json!({"Context_Preferred_Language": "it-IT"})).await;
    let underscore = customer(&lab, json!({"Context_Preferred_Language": "it_IT"})).await;
    customer(&lab, json!({"Context_Preferred_Language": "en-US"})).await;
    let stored = lab.get(Kind::Customer, hyphen).await.expect("read");
    assert_eq!(stored.data["Context_Preferred_Language"], "it_IT");
    for query in ["it_IT", "it-IT", "IT-it"] {
        let r = find(
            &lab,
            Kind::Customer,
            search(json!({"terms": {"Context_Preferred_Language": query}})),
        )
        .await;
        assert_eq!(found_set(&r), set(&[hyphen, underscore]), "{query}");
    }
    // An unknown locale is still refused, in either spelling.
    for bad in ["xx-XX", "xx_XX", "it-"] {
        let r = lab
            .create(
                Kind::Customer,
                &input(json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_Preferred_Language": bad}})),
            )
            .await;
        assert!(
            matches!(&r, Err(Error::Validation { errors, .. }) if errors.iter().any(|e| e.field == "data.Context_Preferred_Language")),
            "{bad}: {r:?}"
        );
    }
}
