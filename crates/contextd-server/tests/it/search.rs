//! Search semantics of DESIGN §3 over HTTP: match modes, special keys, normalization, phone
//! digits, blind indexes, date ranges, notExists, ordering, cursor paging, summary, limits and
//! read-your-writes.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use contextd_core::auth::Role;
use contextd_core::service::ContextConfig;
use contextd_core::{Partition, Scope};
use contextd_server::ServerConfig;
use serde_json::{json, Value};

use crate::support::{Resp, TestServer};

async fn search(s: &TestServer, token: &str, kind: &str, body: Value) -> Resp {
    let r = s.post(token, &format!("/v1/{kind}/search"), body).await;
    if r.status.is_success() {
        r.expect(200);
    }
    r
}

/// The ids of a result page, in order.
fn found(r: &Resp) -> Vec<String> {
    r.expect(200);
    r.at("/items")
        .as_array()
        .unwrap_or_else(|| panic!("items in {}", r.body))
        .iter()
        .map(|o| o["id"].as_str().expect("id").to_owned())
        .collect()
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).clone()).collect()
}

fn found_set(r: &Resp) -> BTreeSet<String> {
    found(r).into_iter().collect()
}

async fn activity(s: &TestServer, token: &str, body: Value) -> String {
    let r = s.post(token, "/v1/activities", body).await;
    r.expect(201);
    r.str("/id")
}

/// Lets the millisecond clock move on, so that timestamps differ.
async fn tick() {
    tokio::time::sleep(Duration::from_millis(15)).await;
}

#[tokio::test]
async fn match_all_any_and_or_within_a_key() {
    let s = TestServer::start().await;
    let a = s.customer(s.lab(), json!({"Context_First_Name": "Ann", "Context_Last_Name": "Lee", "Context_City": "Oslo"})).await;
    let b = s
        .customer(
            s.lab(),
            json!({"Context_First_Name": "Ann", "Context_Last_Name": "Kim"}),
        )
        .await;
    let c = s
        .customer(
            s.lab(),
            json!({"Context_First_Name": "Bob", "Context_Last_Name": "Lee"}),
        )
        .await;
    let d = s
        .customer(
            s.lab(),
            json!({"Context_First_Name": "Cid", "Context_Last_Name": "Day"}),
        )
        .await;
    // Same names in the other partition are invisible here.
    s.customer(
        s.prod(),
        json!({"Context_First_Name": "Ann", "Context_Last_Name": "Lee"}),
    )
    .await;

    let both = json!({"Context_First_Name": ["Ann"], "Context_Last_Name": ["Lee"]});
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"match": "all", "terms": both}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[&a]));
    assert_eq!(r.at("/total"), 1);
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"match": "any", "terms": both}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[&a, &b, &c]));
    assert_eq!(r.at("/total"), 3);

    // Values of one key are OR-ed, in both modes.
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"match": "all", "terms": {"Context_First_Name": ["Ann", "Bob"]}}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[&a, &b, &c]));
    let r = search(&s, s.lab(), "customers", json!({"match": "all", "terms": {"Context_First_Name": ["Ann", "Cid"], "Context_Last_Name": ["Day", "Kim"]}})).await;
    assert_eq!(found_set(&r), set(&[&b, &d]));
    let r = search(&s, s.lab(), "customers", json!({"match": "all", "terms": {"Context_First_Name": ["Ann", "Bob"], "Context_Last_Name": "Lee"}})).await;
    assert_eq!(
        found_set(&r),
        set(&[&a, &c]),
        "a single value may be given without the array"
    );
    // A key that matches nothing empties an all-search but not an any-search.
    let none = json!({"Context_First_Name": ["Ann"], "Context_Last_Name": ["Nobody"]});
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"match": "all", "terms": none}),
    )
    .await;
    assert!(found(&r).is_empty());
    assert_eq!(r.at("/total"), 0);
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"match": "any", "terms": none}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[&a, &b]));
    // Another kind holds none of them.
    let r = search(
        &s,
        s.lab(),
        "requests",
        json!({"terms": {"customerId": [a.clone()]}}),
    )
    .await;
    assert_eq!(r.at("/total"), 0);
}

#[tokio::test]
async fn special_keys() {
    let s = TestServer::start().await;
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

    let x = s
        .customer(&agent1, json!({"Context_First_Name": "Xena"}))
        .await;
    let y = s
        .customer(&agent2, json!({"Context_First_Name": "Yuri"}))
        .await;
    let z = s
        .customer(s.lab(), json!({"Context_First_Name": "Zed"}))
        .await;

    // id
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"terms": {"id": [x.clone(), y.clone()]}}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[&x, &y]));
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"match": "any", "terms": {"id": [x.clone()], "Context_First_Name": ["Zed"]}}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[&x, &z]));
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_eq!(
        search(
            &s,
            s.lab(),
            "customers",
            json!({"terms": {"id": [unknown]}})
        )
        .await
        .at("/total"),
        0
    );

    // customerId, parentId, mediaType on activities
    let open = s
        .post(s.lab(), "/v1/requests", json!({"customerId": x}))
        .await;
    open.expect(201);
    let open = open.str("/id");
    let closed = s
        .post(s.lab(), "/v1/requests", json!({"customerId": y}))
        .await;
    closed.expect(201);
    let closed = closed.str("/id");
    let a1 = activity(&s, s.lab(), json!({"parentId": open, "mediaType": "voice"})).await;
    let a2 = activity(&s, s.lab(), json!({"customerId": x, "mediaType": "chat"})).await;
    let a3 = activity(&s, s.lab(), json!({"customerId": y, "mediaType": "sms"})).await;
    let a4 = activity(
        &s,
        s.lab(),
        json!({"mediaType": "event", "tags": ["IoT", "Fault"]}),
    )
    .await;
    s.patch(
        s.lab(),
        &format!("/v1/requests/{closed}"),
        json!({"state": "closed"}),
    )
    .await
    .expect(200);

    let r = search(
        &s,
        s.lab(),
        "activities",
        json!({"terms": {"customerId": [x.clone()]}}),
    )
    .await;
    assert_eq!(
        found_set(&r),
        set(&[&a1, &a2]),
        "a1 inherits the customer of its request"
    );
    let r = search(
        &s,
        s.lab(),
        "activities",
        json!({"terms": {"customerId": [x.clone(), y.clone()]}}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[&a1, &a2, &a3]));
    let r = search(
        &s,
        s.lab(),
        "activities",
        json!({"terms": {"parentId": [open.clone()]}}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[&a1]));
    let r = search(
        &s,
        s.lab(),
        "activities",
        json!({"terms": {"mediaType": ["voice", "sms"]}}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[&a1, &a3]));
    let r = search(
        &s,
        s.lab(),
        "activities",
        json!({"terms": {"mediaType": ["event"]}}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[&a4]));
    search(
        &s,
        s.lab(),
        "activities",
        json!({"terms": {"mediaType": ["fax"]}}),
    )
    .await
    .expect(400);
    search(
        &s,
        s.lab(),
        "activities",
        json!({"terms": {"customerId": ["not-an-id"]}}),
    )
    .await
    .expect(400);

    // state on requests
    let r = search(
        &s,
        s.lab(),
        "requests",
        json!({"terms": {"state": ["active"]}}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[&open]));
    let r = search(
        &s,
        s.lab(),
        "requests",
        json!({"terms": {"state": ["closed"]}}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[&closed]));
    let r = search(
        &s,
        s.lab(),
        "requests",
        json!({"terms": {"state": ["active", "closed"]}}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[&open, &closed]));
    search(
        &s,
        s.lab(),
        "requests",
        json!({"terms": {"state": ["pending"]}}),
    )
    .await
    .expect(400);

    // tags (case-insensitive)
    let r = search(
        &s,
        s.lab(),
        "activities",
        json!({"terms": {"tags": ["iot"]}}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[&a4]));
    let r = search(
        &s,
        s.lab(),
        "activities",
        json!({"terms": {"tags": ["FAULT", "nothing"]}}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[&a4]));
    assert_eq!(
        search(
            &s,
            s.lab(),
            "activities",
            json!({"terms": {"tags": ["io"]}})
        )
        .await
        .at("/total"),
        0
    );

    // contributor: every principal that wrote the object
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"terms": {"contributor": [agent1_id.to_string()]}}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[&x]));
    s.patch(
        &agent2,
        &format!("/v1/customers/{x}"),
        json!({"tags": ["touched"]}),
    )
    .await
    .expect(200);
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"terms": {"contributor": [agent2_id.to_string()]}}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[&x, &y]));
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"terms": {"contributor": [agent1_id.to_string(), agent2_id.to_string()]}}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[&x, &y]));
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"terms": {"contributor": [uuid::Uuid::now_v7().to_string()]}}),
    )
    .await;
    assert_eq!(r.at("/total"), 0);
}

#[tokio::test]
async fn trimming_and_case_folding() {
    let s = TestServer::start().await;
    let ann = s
        .customer(
            s.lab(),
            json!({"Context_First_Name": "Ann", "Context_City": "  Zoë Town  "}),
        )
        .await;
    let other = s
        .customer(s.lab(), json!({"Context_First_Name": "Annabel"}))
        .await;

    for q in ["  ANN ", "ann", "Ann", "aNn\t"] {
        let r = search(
            &s,
            s.lab(),
            "customers",
            json!({"terms": {"Context_First_Name": [q]}}),
        )
        .await;
        assert_eq!(
            found(&r),
            vec![ann.clone()],
            "{q:?} finds Ann (and only Ann)"
        );
    }
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"terms": {"Context_City": ["ZOË TOWN"]}}),
    )
    .await;
    assert_eq!(
        found(&r),
        vec![ann.clone()],
        "case folding is not ASCII-only"
    );
    // Exact, not a prefix or substring match.
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"terms": {"Context_First_Name": ["Anna"]}}),
    )
    .await;
    assert!(found(&r).is_empty());
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"terms": {"Context_First_Name": ["annabel"]}}),
    )
    .await;
    assert_eq!(found(&r), vec![other]);
    // The stored value itself keeps its case and spaces.
    assert_eq!(
        s.get(s.lab(), &format!("/v1/customers/{ann}"))
            .await
            .at("/data/Context_City"),
        "  Zoë Town  "
    );
}

#[tokio::test]
async fn phone_fields_match_on_digits() {
    let s = TestServer::start().await;
    let c = s
        .customer(
            s.lab(),
            json!({"Context_Mobile_Phone": "+1 (555) 010-0001"}),
        )
        .await;
    let w = s
        .customer(s.lab(), json!({"Context_Work_Phone": "1.555.010.0002"}))
        .await;
    let act = activity(&s, s.lab(), json!({"mediaType": "voice", "fieldsets": ["cisco.base.pod"], "data": {"Context_POD_Source_Phone": "(555) 010 0003"}})).await;

    for q in [
        "15550100001",
        "1-555-010-0001",
        "+1 555 010 0001",
        "+1 (555) 010-0001",
    ] {
        let r = search(
            &s,
            s.lab(),
            "customers",
            json!({"terms": {"Context_Mobile_Phone": [q]}}),
        )
        .await;
        assert_eq!(found(&r), vec![c.clone()], "{q:?} finds the mobile phone");
    }
    for q in ["5550100001", "15550100002", "1555010000"] {
        let r = search(
            &s,
            s.lab(),
            "customers",
            json!({"terms": {"Context_Mobile_Phone": [q]}}),
        )
        .await;
        assert!(found(&r).is_empty(), "{q:?} is another number");
    }
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"terms": {"Context_Work_Phone": ["+1 555-010-0002"]}}),
    )
    .await;
    assert_eq!(found(&r), vec![w]);
    let r = search(
        &s,
        s.lab(),
        "activities",
        json!({"terms": {"Context_POD_Source_Phone": ["5550100003"]}}),
    )
    .await;
    assert_eq!(found(&r), vec![act]);
    // The IVR lookup: one caller number against every phone field.
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"match": "any", "terms": {"Context_Mobile_Phone": ["15550100001"], "Context_Work_Phone": ["15550100001"], "Context_Home_Phone": ["15550100001"]}}),
    )
    .await;
    assert_eq!(found(&r), vec![c.clone()]);
    // The stored value is kept as written.
    assert_eq!(
        s.get(s.lab(), &format!("/v1/customers/{c}"))
            .await
            .at("/data/Context_Mobile_Phone"),
        "+1 (555) 010-0001"
    );
}

#[tokio::test]
async fn encrypted_field_is_found_through_its_blind_index() {
    let s = TestServer::start().await;
    let secret = "EXT-4242-ZULUQUEBEC";
    let c = s
        .customer(
            s.lab(),
            json!({"Context_Customer_External_ID": secret, "Context_First_Name": "Quinn"}),
        )
        .await;
    s.customer(
        s.lab(),
        json!({"Context_Customer_External_ID": "EXT-4243-OTHER"}),
    )
    .await;

    for q in [secret, "ext-4242-zuluquebec", "  Ext-4242-ZuluQuebec "] {
        let r = search(
            &s,
            s.lab(),
            "customers",
            json!({"terms": {"Context_Customer_External_ID": [q]}}),
        )
        .await;
        assert_eq!(found(&r), vec![c.clone()], "{q:?}");
        assert_eq!(
            r.at("/items/0/data/Context_Customer_External_ID"),
            secret,
            "results are decrypted for an admin"
        );
    }
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"terms": {"Context_Customer_External_ID": ["EXT-4242"]}}),
    )
    .await;
    assert!(found(&r).is_empty());
    // The other partition has its own index key: no match there.
    let r = search(
        &s,
        s.prod(),
        "customers",
        json!({"terms": {"Context_Customer_External_ID": [secret]}}),
    )
    .await;
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
    let mut ids = Vec::new();
    let mut created = Vec::new();
    for name in ["One", "Two", "Three"] {
        let r = s
            .post(
                s.lab(),
                "/v1/customers",
                json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": name}}),
            )
            .await;
        r.expect(201);
        ids.push(r.str("/id"));
        created.push(r.str("/created"));
        tick().await;
    }
    let (c1, c2, c3) = (&ids[0], &ids[1], &ids[2]);
    let t2 = &created[1];

    let r = search(&s, s.lab(), "customers", json!({"createdFrom": t2})).await;
    assert_eq!(found_set(&r), set(&[c2, c3]), "createdFrom is inclusive");
    let r = search(&s, s.lab(), "customers", json!({"createdTo": t2})).await;
    assert_eq!(found_set(&r), set(&[c1, c2]), "createdTo is inclusive");
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"createdFrom": t2, "createdTo": t2}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[c2]));
    // The same instant written with another offset.
    let t2_offset = chrono::DateTime::parse_from_rfc3339(t2)
        .expect("created is RFC 3339")
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, false);
    let r = search(&s, s.lab(), "customers", json!({"createdFrom": t2_offset})).await;
    assert_eq!(found_set(&r), set(&[c2, c3]));
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"createdFrom": "2999-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(r.at("/total"), 0);

    // Update the first: it alone is in the newest updated range.
    let r = s
        .patch(
            s.lab(),
            &format!("/v1/customers/{c1}"),
            json!({"data": {"Context_Last_Name": "Later"}}),
        )
        .await;
    r.expect(200);
    let u1 = r.str("/lastUpdated");
    let r = search(&s, s.lab(), "customers", json!({"updatedFrom": u1})).await;
    assert_eq!(found_set(&r), set(&[c1]));
    let t3 = &created[2];
    let r = search(&s, s.lab(), "customers", json!({"updatedTo": t3})).await;
    assert_eq!(found_set(&r), set(&[c2, c3]));
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"updatedFrom": t2, "updatedTo": t3}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[c2, c3]));
    // Ranges combine with terms.
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"terms": {"Context_First_Name": ["One", "Two"]}, "createdFrom": t2}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[c2]));

    search(
        &s,
        s.lab(),
        "customers",
        json!({"createdFrom": "yesterday"}),
    )
    .await
    .expect(400);
    search(
        &s,
        s.lab(),
        "customers",
        json!({"updatedTo": "2024-13-01T00:00:00Z"}),
    )
    .await
    .expect(400);
}

#[tokio::test]
async fn not_exists() {
    let s = TestServer::start().await;
    let with = s
        .customer(
            s.lab(),
            json!({"Context_First_Name": "Ann", "Context_Mobile_Phone": "555"}),
        )
        .await;
    let without = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    let other = s
        .customer(s.lab(), json!({"Context_First_Name": "Bob"}))
        .await;

    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"notExists": ["Context_Mobile_Phone"]}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[&without, &other]));
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"terms": {"Context_First_Name": ["Ann"]}, "notExists": ["Context_Mobile_Phone"]}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[&without]));
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"notExists": ["Context_Mobile_Phone", "Context_First_Name"]}),
    )
    .await;
    assert!(found(&r).is_empty());

    // Removing the value (merge-patch null) makes it not exist.
    s.patch(
        s.lab(),
        &format!("/v1/customers/{with}"),
        json!({"data": {"Context_Mobile_Phone": null}}),
    )
    .await
    .expect(200);
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"notExists": ["Context_Mobile_Phone"]}),
    )
    .await;
    assert_eq!(found_set(&r), set(&[&with, &without, &other]));
    search(
        &s,
        s.lab(),
        "customers",
        json!({"notExists": ["No_Such_Field"]}),
    )
    .await
    .expect(400);
}

#[tokio::test]
async fn newest_last_updated_first() {
    let s = TestServer::start().await;
    let a = s
        .customer(s.lab(), json!({"Context_First_Name": "A"}))
        .await;
    tick().await;
    let b = s
        .customer(s.lab(), json!({"Context_First_Name": "B"}))
        .await;
    tick().await;
    let c = s
        .customer(s.lab(), json!({"Context_First_Name": "C"}))
        .await;
    tick().await;

    let r = search(&s, s.lab(), "customers", json!({})).await;
    assert_eq!(found(&r), vec![c.clone(), b.clone(), a.clone()]);
    s.patch(
        s.lab(),
        &format!("/v1/customers/{a}"),
        json!({"tags": ["bumped"]}),
    )
    .await
    .expect(200);
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"match": "any", "terms": {"Context_First_Name": ["A", "B", "C"]}}),
    )
    .await;
    assert_eq!(found(&r), vec![a.clone(), c.clone(), b.clone()]);
    let r = search(&s, s.lab(), "customers", json!({"summary": true})).await;
    r.expect(200);
    assert_eq!(r.at("/ids"), &json!([a, c, b]));
}

#[tokio::test]
async fn cursor_paging_returns_every_object_once_in_order() {
    let s = TestServer::start().await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(
            s.customer(
                s.lab(),
                json!({"Context_First_Name": format!("P{i}"), "Context_City": "Paging"}),
            )
            .await,
        );
        if i % 2 == 0 {
            tick().await;
        }
    }
    // Noise that the terms exclude.
    s.customer(
        s.lab(),
        json!({"Context_First_Name": "Noise", "Context_City": "Elsewhere"}),
    )
    .await;

    let terms = json!({"Context_City": ["paging"]});
    let full = search(
        &s,
        s.lab(),
        "customers",
        json!({"terms": terms, "limit": 50}),
    )
    .await;
    let order = found(&full);
    assert_eq!(order.len(), 7);
    assert_eq!(full.at("/nextCursor"), &Value::Null);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut body = json!({"terms": terms, "limit": 3});
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let r = search(&s, s.lab(), "customers", body).await;
        r.expect(200);
        assert_eq!(r.at("/total"), 7, "total counts every match on every page");
        let page = found(&r);
        pages += 1;
        seen.extend(page.clone());
        match r.at("/nextCursor") {
            Value::Null => {
                assert_eq!(page.len(), 1, "the last page holds the rest");
                break;
            }
            Value::String(c) => {
                assert_eq!(page.len(), 3);
                cursor = Some(c.clone());
            }
            other => panic!("nextCursor is a string or null, got {other}"),
        }
        assert!(pages < 10, "paging terminates");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, order, "pages concatenate to the full, ordered result");
    let unique: BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), 7);
    assert_eq!(unique, created.iter().collect());

    // Summary pages the same way.
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let mut body = json!({"terms": terms, "limit": 3, "summary": true});
        if let Some(c) = &cursor {
            body["cursor"] = json!(c);
        }
        let r = search(&s, s.lab(), "customers", body).await;
        r.expect(200);
        ids.extend(
            r.at("/ids")
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned()),
        );
        match r.at("/nextCursor").as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(ids, order);
}

#[tokio::test]
async fn summary_returns_ids_not_items() {
    let s = TestServer::start().await;
    let a = s
        .customer(s.lab(), json!({"Context_First_Name": "Sam"}))
        .await;
    tick().await;
    let b = s
        .customer(s.lab(), json!({"Context_First_Name": "Sam"}))
        .await;
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"terms": {"Context_First_Name": ["sam"]}, "summary": true}),
    )
    .await;
    r.expect(200);
    assert!(
        r.body.get("items").is_none(),
        "no items in a summary: {}",
        r.body
    );
    assert_eq!(r.at("/ids"), &json!([b, a]));
    assert_eq!(r.at("/total"), 2);
    assert_eq!(r.at("/nextCursor"), &Value::Null);
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"terms": {"Context_First_Name": ["sam"]}}),
    )
    .await;
    assert!(
        r.body.get("ids").is_none(),
        "no ids outside a summary: {}",
        r.body
    );
    assert_eq!(found(&r), vec![b, a]);
    // A summary may ask for more than 200.
    search(
        &s,
        s.lab(),
        "customers",
        json!({"summary": true, "limit": 100000}),
    )
    .await
    .expect(200);
    search(
        &s,
        s.lab(),
        "customers",
        json!({"summary": true, "limit": 100001}),
    )
    .await
    .expect(400);
}

#[tokio::test]
async fn bad_limits_cursors_and_keys_are_400() {
    let s = TestServer::start().await;
    s.customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    s.customer(s.lab(), json!({"Context_First_Name": "Bob"}))
        .await;

    search(&s, s.lab(), "customers", json!({"limit": 200}))
        .await
        .expect(200);
    let r = search(&s, s.lab(), "customers", json!({"limit": 201})).await;
    r.expect(400);
    assert!(
        r.at("/errors")
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["field"] == "limit")),
        "{}",
        r.body
    );
    search(&s, s.lab(), "customers", json!({"limit": 0}))
        .await
        .expect(400);
    search(&s, s.lab(), "customers", json!({"limit": -1}))
        .await
        .expect(400);

    // A real cursor, then forgeries of it.
    let r = search(&s, s.lab(), "customers", json!({"limit": 1})).await;
    let cursor = r.str("/nextCursor");
    assert!(!cursor.is_empty());
    search(
        &s,
        s.lab(),
        "customers",
        json!({"limit": 1, "cursor": cursor}),
    )
    .await
    .expect(200);
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
        let r = search(&s, s.lab(), "customers", json!({"cursor": bad})).await;
        r.expect(400);
        assert!(
            r.at("/errors")
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["field"] == "cursor")),
            "{bad:?}: {}",
            r.body
        );
    }

    let r = search(&s, s.lab(), "customers", json!({"terms": {"Nope": ["x"]}})).await;
    r.expect(400);
    assert!(
        r.at("/errors")
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["field"] == "terms.Nope")),
        "{}",
        r.body
    );
    search(&s, s.lab(), "customers", json!({"match": "some"}))
        .await
        .expect(400);
    search(
        &s,
        s.lab(),
        "customers",
        json!({"terms": {"Context_First_Name": []}}),
    )
    .await
    .expect(400);
    search(
        &s,
        s.lab(),
        "customers",
        json!({"terms": {"Context_First_Name": [{"a": 1}]}}),
    )
    .await
    .expect(400);
    search(
        &s,
        s.lab(),
        "customers",
        json!({"terms": {"Context_First_Name": ["x".repeat(5000)]}}),
    )
    .await
    .expect(400);
    // Unknown kinds are not searchable.
    s.post(s.lab(), "/v1/widgets/search", json!({}))
        .await
        .expect(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_your_writes() {
    let s = Arc::new(TestServer::start().await);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for j in 0..5 {
                let ext = format!("RYW-{i}-{j}");
                let id = s
                    .customer(s.lab(), json!({"Context_Customer_External_ID": ext}))
                    .await;
                let r = search(
                    &s,
                    s.lab(),
                    "customers",
                    json!({"terms": {"Context_Customer_External_ID": [ext]}}),
                )
                .await;
                assert_eq!(
                    found(&r),
                    vec![id.clone()],
                    "a create is found by the very next search"
                );

                let moved = format!("RYW-moved-{i}-{j}");
                s.patch(
                    s.lab(),
                    &format!("/v1/customers/{id}"),
                    json!({"data": {"Context_Customer_External_ID": moved}}),
                )
                .await
                .expect(200);
                let r = search(
                    &s,
                    s.lab(),
                    "customers",
                    json!({"terms": {"Context_Customer_External_ID": [moved]}}),
                )
                .await;
                assert_eq!(
                    found(&r),
                    vec![id.clone()],
                    "an update is found by the very next search"
                );
                let r = search(
                    &s,
                    s.lab(),
                    "customers",
                    json!({"terms": {"Context_Customer_External_ID": [ext]}}),
                )
                .await;
                assert!(found(&r).is_empty(), "the old value is gone from the index");

                s.delete(s.lab(), &format!("/v1/customers/{id}"))
                    .await
                    .expect(204);
                let r = search(&s, s.lab(), "customers", json!({"terms": {"id": [id]}})).await;
                assert_eq!(r.at("/total"), 0, "a delete is visible at once");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(
        search(&s, s.lab(), "customers", json!({}))
            .await
            .at("/total"),
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
    let c = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    let r = s
        .post(s.lab(), "/v1/requests", json!({"customerId": c}))
        .await;
    r.expect(201);
    let req = r.str("/id");
    let r = search(
        &s,
        s.lab(),
        "requests",
        json!({"terms": {"state": ["active"]}}),
    )
    .await;
    assert_eq!(found(&r), vec![req.clone()]);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    // A read says closed; so must a search by state.
    assert_eq!(
        s.get(s.lab(), &format!("/v1/requests/{req}"))
            .await
            .at("/state"),
        "closed"
    );
    let r = search(
        &s,
        s.lab(),
        "requests",
        json!({"terms": {"state": ["closed"]}}),
    )
    .await;
    assert_eq!(
        found(&r),
        vec![req.clone()],
        "an auto-closed request is found as closed"
    );
    assert_eq!(r.at("/items/0/state"), "closed");
    let r = search(
        &s,
        s.lab(),
        "requests",
        json!({"terms": {"state": ["active"]}}),
    )
    .await;
    assert!(
        found(&r).is_empty(),
        "an auto-closed request is not found as active: {}",
        r.body
    );
}

/// Creates searchable number fields `Amount` (double, ENCRYPTED: found through its blind
/// index), `Points` (integer) and `Big` (long) in field set `custom.nums`.
async fn number_fields(s: &TestServer) {
    for (id, data_type, classification) in [
        ("Amount", "double", "ENCRYPTED"),
        ("Points", "integer", "UNENCRYPTED"),
        ("Big", "long", "UNENCRYPTED"),
    ] {
        s.post(
            s.lab(),
            "/v1/fields",
            json!({"id": id, "dataType": data_type, "classification": classification, "searchable": true}),
        )
        .await
        .expect(201);
    }
    s.post(
        s.lab(),
        "/v1/fieldsets",
        json!({"id": "custom.nums", "fields": ["Amount", "Points", "Big"]}),
    )
    .await
    .expect(201);
}

/// Sends a body as raw text, so numbers keep the spelling a client chose (`2.0`, `2e0`).
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

/// Issue 9 item 13: numbers are stored and found by value, however a client writes them.
#[tokio::test]
async fn numbers_are_found_by_value() {
    let s = TestServer::start().await;
    number_fields(&s).await;
    let mut ids = Vec::new();
    for written in ["2", "2.0", "2e0"] {
        let body = format!(
            r#"{{"fieldsets": ["custom.nums"], "data": {{"Amount": {written}, "Points": {written}, "Big": {written}}}}}"#
        );
        let r = raw_json(&s, "/v1/customers", &body).await;
        r.expect(201);
        // One canonical JSON number is stored and returned.
        for f in ["Amount", "Points", "Big"] {
            assert_eq!(
                r.at(&format!("/data/{f}")).to_string(),
                "2",
                "{f} written {written}"
            );
        }
        ids.push(r.str("/id"));
    }
    let other = raw_json(
        &s,
        "/v1/customers",
        r#"{"fieldsets": ["custom.nums"], "data": {"Amount": 2.5, "Points": 3, "Big": 3}}"#,
    )
    .await;
    other.expect(201);
    let all: BTreeSet<String> = ids.iter().cloned().collect();
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
            let body = format!(r#"{{"terms": {{"{f}": {query}}}}}"#);
            let r = raw_json(&s, "/v1/customers/search", &body).await;
            assert_eq!(found_set(&r), all, "{f} searched with {query}: {}", r.body);
        }
    }
    let r = search(
        &s,
        s.lab(),
        "customers",
        json!({"terms": {"Amount": "2.50"}}),
    )
    .await;
    assert_eq!(found(&r), vec![other.str("/id")]);
    // A fraction on an integer field is a value of the wrong type: 400, like any other.
    for f in ["Points", "Big"] {
        let r = search(&s, s.lab(), "customers", json!({"terms": {f: "2.5"}})).await;
        r.expect(400);
        assert!(
            r.body.to_string().contains(&format!("terms.{f}")),
            "{}",
            r.body
        );
    }
}

/// Issue 9 item 14: `Context_Preferred_Language` takes `it-IT` as well as `it_IT`; the value
/// is stored as the enumeration lists it, and search finds it by either spelling.
#[tokio::test]
async fn locales_match_with_hyphen_or_underscore() {
    let s = TestServer::start().await;
    let hyphen = s
        .customer(s.lab(), json!({"Context_Preferred_Language": "it-IT"}))
        .await;
    let underscore = s
        .customer(s.lab(), json!({"Context_Preferred_Language": "it_IT"}))
        .await;
    s.customer(s.lab(), json!({"Context_Preferred_Language": "en-US"}))
        .await;
    let r = s.get(s.lab(), &format!("/v1/customers/{hyphen}")).await;
    r.expect(200);
    assert_eq!(r.at("/data/Context_Preferred_Language"), "it_IT");
    for query in ["it_IT", "it-IT", "IT-it"] {
        let r = search(
            &s,
            s.lab(),
            "customers",
            json!({"terms": {"Context_Preferred_Language": query}}),
        )
        .await;
        assert_eq!(found_set(&r), set(&[&hyphen, &underscore]), "{query}");
    }
    // An unknown locale is still refused, in either spelling.
    for bad in ["xx-XX", "xx_XX", "it-"] {
        let r = s
            .post(
                s.lab(),
                "/v1/customers",
                json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_Preferred_Language": bad}}),
            )
            .await;
        r.expect(400);
    }
}
