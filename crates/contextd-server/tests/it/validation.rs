//! Bad input (README, "API overview" and docs/security.md): every refusal is a clear 4xx problem and
//! changes nothing in the database, which each test checks by reading the data back.

use std::time::Duration;

use contextd_core::service::ContextConfig;
use contextd_server::ServerConfig;
use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{Resp, TestServer};

// ----- helpers -----

/// The stored object as a lab admin reads it.
async fn snapshot(s: &TestServer, token: &str, kind: &str, id: &str) -> Value {
    let r = s.get(token, &format!("/v1/{kind}/{id}")).await;
    r.expect(200);
    r.body.clone()
}

/// How many objects of a kind a search with `body` matches.
async fn total(s: &TestServer, token: &str, kind: &str, body: Value) -> u64 {
    let r = s.post(token, &format!("/v1/{kind}/search"), body).await;
    r.expect(200);
    r.at("/total").as_u64().expect("total is a number")
}

/// How many objects of a kind the partition holds.
async fn count(s: &TestServer, token: &str, kind: &str) -> u64 {
    total(s, token, kind, json!({})).await
}

/// The `field` members of a validation problem's `errors`.
fn error_fields(r: &Resp) -> Vec<String> {
    r.at("/errors")
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[track_caller]
fn assert_field_error(r: &Resp, field: &str) {
    let fields = error_fields(r);
    assert!(
        fields.iter().any(|f| f == field),
        "expected an error for '{field}', got {fields:?}; body: {}",
        r.body
    );
    for e in r.at("/errors").as_array().into_iter().flatten() {
        assert!(
            e["message"].as_str().is_some_and(|m| !m.is_empty()),
            "every field error has a message: {e}"
        );
    }
}

/// A custom string field, created by the lab admin.
async fn create_field(s: &TestServer, field: Value) {
    s.post(s.lab(), "/v1/fields", field).await.expect(201);
}

async fn create_fieldset(s: &TestServer, id: &str, fields: &[&str]) {
    s.post(
        s.lab(),
        "/v1/fieldsets",
        json!({"id": id, "description": "test set", "fields": fields}),
    )
    .await
    .expect(201);
}

async fn create_request(s: &TestServer, token: &str, customer: &str) -> String {
    let r = s
        .post(
            token,
            "/v1/requests",
            json!({"customerId": customer, "fieldsets": ["cisco.base.request"], "data": {"Context_Title": "Service appointment"}}),
        )
        .await;
    r.expect(201);
    r.str("/id")
}

/// Sends a JSON body with extra headers.
async fn send_with_headers(
    s: &TestServer,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> Resp {
    let mut req = s
        .http
        .request(method, format!("{}{}", s.url, path))
        .bearer_auth(s.lab())
        .json(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    TestServer::read(req.send().await.expect("request sent")).await
}

// ----- data validation -----

#[tokio::test]
async fn unknown_field_in_data_is_400_and_changes_nothing() {
    let s = TestServer::start().await;
    let id = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    let before = snapshot(&s, s.lab(), "customers", &id).await;

    let r = s
        .post(s.lab(), "/v1/customers", json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": "Bob", "Nope": "x"}}))
        .await;
    r.expect(400);
    assert_field_error(&r, "data.Nope");
    assert_eq!(
        count(&s, s.lab(), "customers").await,
        1,
        "the refused create stored nothing"
    );

    // The same on a replace and on a patch of the existing customer.
    let r = s
        .put(
            s.lab(),
            &format!("/v1/customers/{id}"),
            json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": "Ann", "Nope": "x"}, "version": 1}),
        )
        .await;
    r.expect(400);
    assert_field_error(&r, "data.Nope");
    let r = s
        .patch(
            s.lab(),
            &format!("/v1/customers/{id}"),
            json!({"data": {"Nope": "x"}}),
        )
        .await;
    r.expect(400);
    assert_field_error(&r, "data.Nope");
    // A field of the dictionary that is not in the object's field sets is just as unknown here.
    let r = s
        .patch(
            s.lab(),
            &format!("/v1/customers/{id}"),
            json!({"data": {"Context_Title": "x"}}),
        )
        .await;
    r.expect(400);
    assert_field_error(&r, "data.Context_Title");

    assert_eq!(
        snapshot(&s, s.lab(), "customers", &id).await,
        before,
        "refused updates changed nothing"
    );
}

#[tokio::test]
async fn wrong_type_is_400_per_field() {
    let s = TestServer::start().await;
    let id = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    let before = snapshot(&s, s.lab(), "customers", &id).await;

    let r = s
        .post(
            s.lab(),
            "/v1/customers",
            json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": 5}}),
        )
        .await;
    r.expect(400);
    assert_field_error(&r, "data.Context_First_Name");

    // Every bad field is reported, not just the first.
    let r = s
        .post(
            s.lab(),
            "/v1/customers",
            json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": true, "Context_Last_Name": {"a": 1}}}),
        )
        .await;
    r.expect(400);
    assert_field_error(&r, "data.Context_First_Name");
    assert_field_error(&r, "data.Context_Last_Name");

    // An integer field given a string, on a feedback detail.
    let req = create_request(&s, s.lab(), &id).await;
    let r = s
        .post(
            s.lab(),
            "/v1/details",
            json!({"parentId": req, "detailType": "feedback", "fieldsets": ["cisco.base.rating"], "data": {"cccRatingPoints": "five"}}),
        )
        .await;
    r.expect(400);
    assert_field_error(&r, "data.cccRatingPoints");
    // A property of the wrong JSON type (tags must be strings).
    let r = s
        .post(
            s.lab(),
            "/v1/customers",
            json!({"fieldsets": ["cisco.base.customer"], "tags": [1, 2]}),
        )
        .await;
    r.expect(400);

    let r = s
        .patch(
            s.lab(),
            &format!("/v1/customers/{id}"),
            json!({"data": {"Context_First_Name": 42}}),
        )
        .await;
    r.expect(400);
    assert_field_error(&r, "data.Context_First_Name");

    assert_eq!(count(&s, s.lab(), "customers").await, 1);
    assert_eq!(count(&s, s.lab(), "details").await, 0);
    assert_eq!(snapshot(&s, s.lab(), "customers", &id).await, before);
}

#[tokio::test]
async fn over_long_value_is_400() {
    let s = TestServer::start().await;
    create_field(&s, json!({"id": "Member_Code", "dataType": "string", "classification": "UNENCRYPTED", "searchable": true, "maxLength": 5})).await;
    create_fieldset(&s, "custom.member", &["Member_Code"]).await;

    let r = s
        .post(
            s.lab(),
            "/v1/customers",
            json!({"fieldsets": ["custom.member"], "data": {"Member_Code": "abcdef"}}),
        )
        .await;
    r.expect(400);
    assert_field_error(&r, "data.Member_Code");
    assert_eq!(count(&s, s.lab(), "customers").await, 0);

    // Exactly maxLength characters (not bytes) is fine.
    let r = s
        .post(
            s.lab(),
            "/v1/customers",
            json!({"fieldsets": ["custom.member"], "data": {"Member_Code": "äöüßé"}}),
        )
        .await;
    r.expect(201);
    let id = r.str("/id");
    let before = snapshot(&s, s.lab(), "customers", &id).await;

    let r = s
        .patch(
            s.lab(),
            &format!("/v1/customers/{id}"),
            json!({"data": {"Member_Code": "123456"}}),
        )
        .await;
    r.expect(400);
    assert_field_error(&r, "data.Member_Code");
    assert_eq!(snapshot(&s, s.lab(), "customers", &id).await, before);
    assert_eq!(count(&s, s.lab(), "customers").await, 1);
}

#[tokio::test]
async fn inactive_enum_value_is_400() {
    let s = TestServer::start().await;
    create_field(
        &s,
        json!({
            "id": "Loyalty_Tier", "dataType": "string", "classification": "UNENCRYPTED", "searchable": true,
            "enumValues": [{"value": "gold", "active": true}, {"value": "bronze", "active": false}]
        }),
    )
    .await;
    create_fieldset(&s, "custom.loyalty", &["Loyalty_Tier"]).await;

    let r = s
        .post(
            s.lab(),
            "/v1/customers",
            json!({"fieldsets": ["custom.loyalty"], "data": {"Loyalty_Tier": "bronze"}}),
        )
        .await;
    r.expect(400);
    assert_field_error(&r, "data.Loyalty_Tier");
    let r = s
        .post(
            s.lab(),
            "/v1/customers",
            json!({"fieldsets": ["custom.loyalty"], "data": {"Loyalty_Tier": "platinum"}}),
        )
        .await;
    r.expect(400);
    assert_field_error(&r, "data.Loyalty_Tier");
    assert_eq!(count(&s, s.lab(), "customers").await, 0);

    let r = s
        .post(
            s.lab(),
            "/v1/customers",
            json!({"fieldsets": ["custom.loyalty"], "data": {"Loyalty_Tier": "gold"}}),
        )
        .await;
    r.expect(201);
    let id = r.str("/id");
    let r = s
        .patch(
            s.lab(),
            &format!("/v1/customers/{id}"),
            json!({"data": {"Loyalty_Tier": "bronze"}}),
        )
        .await;
    r.expect(400);
    assert_field_error(&r, "data.Loyalty_Tier");
    let after = snapshot(&s, s.lab(), "customers", &id).await;
    assert_eq!(after["data"]["Loyalty_Tier"], "gold");
    assert_eq!(after["version"], 1);

    // The base enum field refuses a locale it doesn't know.
    let r = s.post(s.lab(), "/v1/customers", json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_Preferred_Language": "xx_XX"}})).await;
    r.expect(400);
    assert_field_error(&r, "data.Context_Preferred_Language");
    assert_eq!(count(&s, s.lab(), "customers").await, 1);
}

#[tokio::test]
async fn unknown_field_set_is_400() {
    let s = TestServer::start().await;
    let r = s
        .post(
            s.lab(),
            "/v1/customers",
            json!({"fieldsets": ["no.such.set"], "data": {}}),
        )
        .await;
    r.expect(400);
    assert_field_error(&r, "fieldsets");
    let r = s
        .post(
            s.lab(),
            "/v1/customers",
            json!({"fieldsets": ["no.such.set"], "data": {"Context_First_Name": "Ann"}}),
        )
        .await;
    r.expect(400);
    assert_field_error(&r, "fieldsets");
    assert_eq!(count(&s, s.lab(), "customers").await, 0);

    let id = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    let before = snapshot(&s, s.lab(), "customers", &id).await;
    let r = s
        .patch(
            s.lab(),
            &format!("/v1/customers/{id}"),
            json!({"fieldsets": ["cisco.base.customer", "no.such.set"]}),
        )
        .await;
    r.expect(400);
    assert_field_error(&r, "fieldsets");
    assert_eq!(snapshot(&s, s.lab(), "customers", &id).await, before);
}

// ----- malformed bodies -----

#[tokio::test]
async fn malformed_json_is_400() {
    let s = TestServer::start().await;
    let id = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    let before = snapshot(&s, s.lab(), "customers", &id).await;

    for body in [
        &b"{\"fieldsets\": ["[..],
        b"not json",
        b"",
        b"{\"data\": {\"Context_First_Name\": \"Ann\"},}",
        b"[]",
    ] {
        let r = s
            .raw(
                Method::POST,
                "/v1/customers",
                s.lab(),
                "application/json",
                body.to_vec(),
            )
            .await;
        r.expect(400);
        let r = s
            .raw(
                Method::PATCH,
                &format!("/v1/customers/{id}"),
                s.lab(),
                "application/merge-patch+json",
                body.to_vec(),
            )
            .await;
        r.expect(400);
        let r = s
            .raw(
                Method::PUT,
                &format!("/v1/customers/{id}"),
                s.lab(),
                "application/json",
                body.to_vec(),
            )
            .await;
        r.expect(400);
        let r = s
            .raw(
                Method::POST,
                "/v1/customers/search",
                s.lab(),
                "application/json",
                body.to_vec(),
            )
            .await;
        r.expect(400);
        let r = s
            .raw(
                Method::POST,
                "/v1/fields",
                s.lab(),
                "application/json",
                body.to_vec(),
            )
            .await;
        r.expect(400);
    }
    // Invalid UTF-8 inside a string.
    let r = s
        .raw(
            Method::POST,
            "/v1/customers",
            s.lab(),
            "application/json",
            b"{\"tags\": [\"\xff\xfe\"]}".to_vec(),
        )
        .await;
    r.expect(400);

    assert_eq!(count(&s, s.lab(), "customers").await, 1);
    assert_eq!(snapshot(&s, s.lab(), "customers", &id).await, before);
}

#[tokio::test]
async fn unknown_top_level_property_is_400() {
    let s = TestServer::start().await;
    let r = s
        .post(s.lab(), "/v1/customers", json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": "Ann"}, "bogus": 1}))
        .await;
    r.expect(400);
    assert!(
        r.str("/detail").contains("bogus"),
        "the problem names the unknown property: {}",
        r.body
    );
    // A typo of a real member is not silently dropped either.
    let r = s
        .post(
            s.lab(),
            "/v1/customers",
            json!({"fieldset": ["cisco.base.customer"]}),
        )
        .await;
    r.expect(400);
    assert_eq!(count(&s, s.lab(), "customers").await, 0);

    let id = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    let before = snapshot(&s, s.lab(), "customers", &id).await;
    let r = s
        .patch(s.lab(), &format!("/v1/customers/{id}"), json!({"bogus": 1}))
        .await;
    r.expect(400);
    let r = s
        .put(
            s.lab(),
            &format!("/v1/customers/{id}"),
            json!({"fieldsets": ["cisco.base.customer"], "version": 1, "bogus": true}),
        )
        .await;
    r.expect(400);
    // Search and dictionary bodies refuse unknown members too.
    s.post(
        s.lab(),
        "/v1/customers/search",
        json!({"terms": {}, "bogus": 1}),
    )
    .await
    .expect(400);
    s.post(
        s.lab(),
        "/v1/fields",
        json!({"id": "X1", "dataType": "string", "classification": "UNENCRYPTED", "bogus": 1}),
    )
    .await
    .expect(400);
    s.get(s.lab(), "/v1/fields/X1").await.expect(404);

    assert_eq!(snapshot(&s, s.lab(), "customers", &id).await, before);
    assert_eq!(count(&s, s.lab(), "customers").await, 1);

    // The read-only members of an object as read are not unknown: it can be sent back whole.
    let mut back = before.clone();
    back["data"]["Context_Last_Name"] = json!("Lee");
    let r = s.put(s.lab(), &format!("/v1/customers/{id}"), back).await;
    r.expect(200);
    assert_eq!(r.at("/version"), 2);
    assert_eq!(r.at("/created"), &before["created"]);
}

#[tokio::test]
async fn wrong_content_type_is_415() {
    let s = TestServer::start().await;
    let body = serde_json::to_vec(
        &json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": "Ann"}}),
    )
    .unwrap();
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
    ] {
        s.raw(Method::POST, "/v1/customers", s.lab(), ct, body.clone())
            .await
            .expect(415);
    }
    // No content type at all.
    let resp = s
        .http
        .post(format!("{}/v1/customers", s.url))
        .bearer_auth(s.lab())
        .body(body.clone())
        .send()
        .await
        .expect("request sent");
    TestServer::read(resp).await.expect(415);
    assert_eq!(count(&s, s.lab(), "customers").await, 0);

    let id = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    let before = snapshot(&s, s.lab(), "customers", &id).await;
    let patch = serde_json::to_vec(&json!({"data": {"Context_First_Name": "Bob"}})).unwrap();
    s.raw(
        Method::PATCH,
        &format!("/v1/customers/{id}"),
        s.lab(),
        "text/plain",
        patch,
    )
    .await
    .expect(415);
    let put = serde_json::to_vec(&json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": "Bob"}, "version": 1})).unwrap();
    s.raw(
        Method::PUT,
        &format!("/v1/customers/{id}"),
        s.lab(),
        "text/plain",
        put,
    )
    .await
    .expect(415);
    assert_eq!(snapshot(&s, s.lab(), "customers", &id).await, before);
}

#[tokio::test]
async fn wrong_id_format_in_path_is_400() {
    let s = TestServer::start().await;
    let id = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    let before = snapshot(&s, s.lab(), "customers", &id).await;
    for bad in [
        "not-an-id",
        "12345",
        "0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeeeX",
        "zzzzzzzz-zzzz-zzzz-zzzz-zzzzzzzzzzzz",
    ] {
        s.get(s.lab(), &format!("/v1/customers/{bad}"))
            .await
            .expect(400);
        s.patch(
            s.lab(),
            &format!("/v1/customers/{bad}"),
            json!({"data": {"Context_First_Name": "Bob"}}),
        )
        .await
        .expect(400);
        s.put(
            s.lab(),
            &format!("/v1/customers/{bad}"),
            json!({"fieldsets": ["cisco.base.customer"], "version": 1}),
        )
        .await
        .expect(400);
        s.delete(s.lab(), &format!("/v1/customers/{bad}"))
            .await
            .expect(400);
        s.get(s.lab(), &format!("/v1/customers/{bad}/timeline"))
            .await
            .expect(400);
        s.get(s.lab(), &format!("/v1/flush/{bad}"))
            .await
            .expect(400);
    }
    // Bad ids in link members are per-field errors.
    let r = s
        .post(s.lab(), "/v1/requests", json!({"customerId": "not-an-id"}))
        .await;
    r.expect(400);
    assert_field_error(&r, "customerId");
    let r = s
        .post(
            s.lab(),
            "/v1/activities",
            json!({"mediaType": "voice", "parentId": "nope"}),
        )
        .await;
    r.expect(400);
    assert_field_error(&r, "parentId");
    // A well-formed id that doesn't exist is 404, not 400.
    s.get(
        s.lab(),
        "/v1/customers/0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee",
    )
    .await
    .expect(404);

    assert_eq!(snapshot(&s, s.lab(), "customers", &id).await, before);
    assert_eq!(count(&s, s.lab(), "customers").await, 1);
    assert_eq!(count(&s, s.lab(), "requests").await, 0);
    assert_eq!(count(&s, s.lab(), "activities").await, 0);
}

// ----- versions -----

#[tokio::test]
async fn stale_version_on_put_is_409_in_body_and_if_match() {
    let s = TestServer::start().await;
    let id = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    let path = format!("/v1/customers/{id}");
    s.patch(
        s.lab(),
        &path,
        json!({"data": {"Context_Last_Name": "Lee"}}),
    )
    .await
    .expect(200);
    let before = snapshot(&s, s.lab(), "customers", &id).await;
    assert_eq!(before["version"], 2);

    let replacement =
        json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": "Stale"}});
    let mut stale = replacement.clone();
    stale["version"] = json!(1);
    let r = s.put(s.lab(), &path, stale.clone()).await;
    r.expect(409);
    let mut future = replacement.clone();
    future["version"] = json!(3);
    s.put(s.lab(), &path, future).await.expect(409);

    // If-Match: the ETag form, the weak form and the bare number are all versions.
    for tag in ["\"1\"", "W/\"1\"", "1", "\"7\""] {
        let r = send_with_headers(&s, Method::PUT, &path, &[("if-match", tag)], &replacement).await;
        r.expect(409);
    }
    // If-Match wins over the body's version.
    let mut body_ok = replacement.clone();
    body_ok["version"] = json!(2);
    send_with_headers(&s, Method::PUT, &path, &[("if-match", "\"1\"")], &body_ok)
        .await
        .expect(409);
    // A malformed If-Match is a 400.
    send_with_headers(
        &s,
        Method::PUT,
        &path,
        &[("if-match", "\"abc\"")],
        &replacement,
    )
    .await
    .expect(400);
    // PATCH with a stale version, in the body or as If-Match.
    s.patch(
        s.lab(),
        &path,
        json!({"data": {"Context_First_Name": "Stale"}, "version": 1}),
    )
    .await
    .expect(409);
    send_with_headers(
        &s,
        Method::PATCH,
        &path,
        &[("if-match", "\"1\"")],
        &json!({"data": {"Context_First_Name": "Stale"}}),
    )
    .await
    .expect(409);

    assert_eq!(
        snapshot(&s, s.lab(), "customers", &id).await,
        before,
        "no stale write went through"
    );

    // The current version is accepted, as If-Match alone.
    let r = send_with_headers(
        &s,
        Method::PUT,
        &path,
        &[("if-match", "\"2\"")],
        &replacement,
    )
    .await;
    r.expect(200);
    assert_eq!(r.at("/version"), 3);
    assert_eq!(r.at("/data/Context_First_Name"), "Stale");
    assert_eq!(
        r.at("/data/Context_Last_Name"),
        &Value::Null,
        "PUT replaces data"
    );
}

#[tokio::test]
async fn put_without_version_is_400() {
    let s = TestServer::start().await;
    let id = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    let before = snapshot(&s, s.lab(), "customers", &id).await;
    let r = s
        .put(
            s.lab(),
            &format!("/v1/customers/{id}"),
            json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": "Bob"}}),
        )
        .await;
    r.expect(400);
    assert_field_error(&r, "version");
    assert_eq!(snapshot(&s, s.lab(), "customers", &id).await, before);
}

// ----- sizes -----

#[tokio::test]
async fn oversize_body_is_413() {
    let s = TestServer::start().await;
    let id = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    let before = snapshot(&s, s.lab(), "customers", &id).await;
    let big = "x".repeat(1024 * 1024 + 100);
    let body = serde_json::to_vec(
        &json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_City": big}}),
    )
    .unwrap();
    assert!(body.len() > 1024 * 1024);

    s.raw(
        Method::POST,
        "/v1/customers",
        s.lab(),
        "application/json",
        body.clone(),
    )
    .await
    .expect(413);
    let put = serde_json::to_vec(&json!({"fieldsets": ["cisco.base.customer"], "version": 1, "data": {"Context_City": "x".repeat(1024 * 1024 + 100)}})).unwrap();
    s.raw(
        Method::PUT,
        &format!("/v1/customers/{id}"),
        s.lab(),
        "application/json",
        put,
    )
    .await
    .expect(413);
    s.raw(
        Method::POST,
        "/v1/customers/search",
        s.lab(),
        "application/json",
        body.clone(),
    )
    .await
    .expect(413);
    s.raw(
        Method::POST,
        "/v1/fields",
        s.lab(),
        "application/json",
        body,
    )
    .await
    .expect(413);

    assert_eq!(count(&s, s.lab(), "customers").await, 1);
    assert_eq!(snapshot(&s, s.lab(), "customers", &id).await, before);
}

#[tokio::test]
async fn oversize_patch_body_is_413() {
    let s = TestServer::start().await;
    let id = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    let before = snapshot(&s, s.lab(), "customers", &id).await;
    let patch =
        serde_json::to_vec(&json!({"data": {"Context_City": "x".repeat(1024 * 1024 + 100)}}))
            .unwrap();
    for ct in ["application/merge-patch+json", "application/json"] {
        s.raw(
            Method::PATCH,
            &format!("/v1/customers/{id}"),
            s.lab(),
            ct,
            patch.clone(),
        )
        .await
        .expect(413);
    }
    assert_eq!(snapshot(&s, s.lab(), "customers", &id).await, before);
}

#[tokio::test]
async fn object_over_256_kb_under_body_limit_is_413() {
    let s = TestServer::start().await;
    let id = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    let before = snapshot(&s, s.lab(), "customers", &id).await;
    let big = "y".repeat(300 * 1024);
    let body = json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_City": big}});
    assert!(serde_json::to_vec(&body).unwrap().len() < 1024 * 1024);

    s.post(s.lab(), "/v1/customers", body).await.expect(413);
    // Many values that are each small but add up.
    let mut data = serde_json::Map::new();
    for f in [
        "Context_City",
        "Context_State",
        "Context_Country",
        "Context_Street_Address_1",
    ] {
        data.insert(f.to_owned(), json!("z".repeat(70 * 1024)));
    }
    s.post(
        s.lab(),
        "/v1/customers",
        json!({"fieldsets": ["cisco.base.customer"], "data": data}),
    )
    .await
    .expect(413);
    s.patch(
        s.lab(),
        &format!("/v1/customers/{id}"),
        json!({"data": {"Context_City": "y".repeat(300 * 1024)}}),
    )
    .await
    .expect(413);
    s.put(s.lab(), &format!("/v1/customers/{id}"), json!({"fieldsets": ["cisco.base.customer"], "version": 1, "data": {"Context_City": "y".repeat(300 * 1024)}}))
        .await
        .expect(413);

    assert_eq!(count(&s, s.lab(), "customers").await, 1);
    assert_eq!(snapshot(&s, s.lab(), "customers", &id).await, before);

    // Just under the limit is fine.
    s.post(s.lab(), "/v1/customers", json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_City": "y".repeat(200 * 1024)}}))
        .await
        .expect(201);
}

// ----- states -----

#[tokio::test]
async fn activity_under_closed_request_is_409() {
    let s = TestServer::start().await;
    let c = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    let req = create_request(&s, s.lab(), &c).await;
    let r = s
        .patch(
            s.lab(),
            &format!("/v1/requests/{req}"),
            json!({"state": "closed"}),
        )
        .await;
    r.expect(200);
    assert_eq!(r.at("/state"), "closed");

    let r = s
        .post(
            s.lab(),
            "/v1/activities",
            json!({"parentId": req, "mediaType": "voice"}),
        )
        .await;
    r.expect(409);
    let r = s
        .post(
            s.lab(),
            "/v1/activities",
            json!({"parentId": req, "customerId": c, "mediaType": "chat"}),
        )
        .await;
    r.expect(409);
    let r = s
        .post(s.lab(), "/v1/details", json!({"parentId": req, "detailType": "comment", "fieldsets": ["cisco.base.comment"], "data": {"Context_Comment": "hi"}}))
        .await;
    r.expect(409);
    assert_eq!(count(&s, s.lab(), "activities").await, 0);
    assert_eq!(count(&s, s.lab(), "details").await, 0);

    // Moving an existing activity under the closed request is refused too.
    let r = s
        .post(
            s.lab(),
            "/v1/activities",
            json!({"customerId": c, "mediaType": "sms"}),
        )
        .await;
    r.expect(201);
    let act = r.str("/id");
    let before = snapshot(&s, s.lab(), "activities", &act).await;
    s.patch(
        s.lab(),
        &format!("/v1/activities/{act}"),
        json!({"parentId": req}),
    )
    .await
    .expect(409);
    assert_eq!(snapshot(&s, s.lab(), "activities", &act).await, before);
    assert_eq!(
        total(
            &s,
            s.lab(),
            "activities",
            json!({"terms": {"parentId": [req]}})
        )
        .await,
        0
    );
}

#[tokio::test]
async fn update_of_closed_request_is_409() {
    let s = TestServer::start().await;
    let c = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    let req = create_request(&s, s.lab(), &c).await;
    let path = format!("/v1/requests/{req}");
    s.patch(s.lab(), &path, json!({"state": "closed"}))
        .await
        .expect(200);
    let before = snapshot(&s, s.lab(), "requests", &req).await;
    assert_eq!(before["version"], 2);

    s.patch(
        s.lab(),
        &path,
        json!({"data": {"Context_Title": "changed"}}),
    )
    .await
    .expect(409);
    s.patch(s.lab(), &path, json!({"tags": ["late"]}))
        .await
        .expect(409);
    s.put(
        s.lab(),
        &path,
        json!({"customerId": c, "fieldsets": ["cisco.base.request"], "data": {"Context_Title": "changed"}, "version": 2}),
    )
    .await
    .expect(409);

    assert_eq!(snapshot(&s, s.lab(), "requests", &req).await, before);
}

#[tokio::test]
async fn details_are_immutable() {
    let s = TestServer::start().await;
    let c = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    let req = create_request(&s, s.lab(), &c).await;
    let r = s
        .post(
            s.lab(),
            "/v1/details",
            json!({"parentId": req, "detailType": "comment", "fieldsets": ["cisco.base.comment"], "data": {"Context_Comment": "first"}}),
        )
        .await;
    r.expect(201);
    assert_eq!(r.at("/state"), "closed", "details are created closed");
    let id = r.str("/id");
    let path = format!("/v1/details/{id}");
    let before = snapshot(&s, s.lab(), "details", &id).await;

    s.patch(
        s.lab(),
        &path,
        json!({"data": {"Context_Comment": "edited"}}),
    )
    .await
    .expect(409);
    s.patch(s.lab(), &path, json!({"tags": ["x"]}))
        .await
        .expect(409);
    s.put(
        s.lab(),
        &path,
        json!({"parentId": req, "detailType": "comment", "fieldsets": ["cisco.base.comment"], "data": {"Context_Comment": "edited"}, "version": 1}),
    )
    .await
    .expect(409);
    assert_eq!(snapshot(&s, s.lab(), "details", &id).await, before);
}

// ----- data retention -----

#[tokio::test]
async fn delete_and_flush_in_production_are_403() {
    let s = TestServer::start().await;
    let id = s
        .customer(s.prod(), json!({"Context_First_Name": "Ann"}))
        .await;
    let r = s
        .post(
            s.prod(),
            "/v1/activities",
            json!({"customerId": id, "mediaType": "voice"}),
        )
        .await;
    r.expect(201);
    let act = r.str("/id");

    s.delete(s.prod(), &format!("/v1/customers/{id}"))
        .await
        .expect(403);
    s.delete(s.prod(), &format!("/v1/activities/{act}"))
        .await
        .expect(403);
    for kind in ["customers", "requests", "activities", "details"] {
        s.post(s.prod(), &format!("/v1/{kind}/flush"), json!({}))
            .await
            .expect(403);
    }
    s.get(s.prod(), &format!("/v1/customers/{id}"))
        .await
        .expect(200);
    s.get(s.prod(), &format!("/v1/activities/{act}"))
        .await
        .expect(200);
    assert_eq!(count(&s, s.prod(), "customers").await, 1);
    assert_eq!(count(&s, s.prod(), "activities").await, 1);

    // The production object is not reachable from lab, so a lab token can't delete it either.
    s.delete(s.lab(), &format!("/v1/customers/{id}"))
        .await
        .expect(404);
    s.get(s.prod(), &format!("/v1/customers/{id}"))
        .await
        .expect(200);
}

// ----- links -----

#[tokio::test]
async fn request_without_customer_id_is_400() {
    let s = TestServer::start().await;
    let r = s
        .post(
            s.lab(),
            "/v1/requests",
            json!({"fieldsets": ["cisco.base.request"], "data": {"Context_Title": "x"}}),
        )
        .await;
    r.expect(400);
    assert_field_error(&r, "customerId");
    let r = s
        .post(s.lab(), "/v1/requests", json!({"customerId": null}))
        .await;
    r.expect(400);
    assert_field_error(&r, "customerId");
    assert_eq!(count(&s, s.lab(), "requests").await, 0);
}

#[tokio::test]
async fn activity_without_media_type_is_400() {
    let s = TestServer::start().await;
    let c = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    let r = s.post(s.lab(), "/v1/activities", json!({"customerId": c, "fieldsets": ["cisco.base.pod"], "data": {"Context_Notes": "n"}})).await;
    r.expect(400);
    assert_field_error(&r, "mediaType");
    let r = s
        .post(
            s.lab(),
            "/v1/activities",
            json!({"customerId": c, "mediaType": "fax"}),
        )
        .await;
    r.expect(400);
    assert_field_error(&r, "mediaType");
    // A mediaType on something that is not an activity.
    let r = s
        .post(
            s.lab(),
            "/v1/requests",
            json!({"customerId": c, "mediaType": "voice"}),
        )
        .await;
    r.expect(400);
    assert_field_error(&r, "mediaType");
    assert_eq!(count(&s, s.lab(), "activities").await, 0);
    assert_eq!(count(&s, s.lab(), "requests").await, 0);
}

#[tokio::test]
async fn links_to_missing_objects_are_400() {
    let s = TestServer::start().await;
    let c = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    let missing = uuid::Uuid::now_v7().to_string();

    let r = s
        .post(s.lab(), "/v1/requests", json!({"customerId": missing}))
        .await;
    r.expect(400);
    assert_field_error(&r, "customerId");
    // A customer of the other partition doesn't exist here.
    let prod_customer = s
        .customer(s.prod(), json!({"Context_First_Name": "Pat"}))
        .await;
    let r = s
        .post(
            s.lab(),
            "/v1/requests",
            json!({"customerId": prod_customer}),
        )
        .await;
    r.expect(400);
    assert_field_error(&r, "customerId");
    // An id of an object that is not a customer.
    let req = create_request(&s, s.lab(), &c).await;
    let r = s
        .post(s.lab(), "/v1/requests", json!({"customerId": req}))
        .await;
    r.expect(400);
    assert_field_error(&r, "customerId");
    let r = s
        .post(
            s.lab(),
            "/v1/activities",
            json!({"customerId": missing, "mediaType": "voice"}),
        )
        .await;
    r.expect(400);
    assert_field_error(&r, "customerId");
    let r = s
        .post(
            s.lab(),
            "/v1/activities",
            json!({"parentId": missing, "mediaType": "voice"}),
        )
        .await;
    r.expect(400);
    assert_field_error(&r, "parentId");
    let r = s
        .post(
            s.lab(),
            "/v1/details",
            json!({"parentId": missing, "detailType": "comment"}),
        )
        .await;
    r.expect(400);
    assert_field_error(&r, "parentId");

    assert_eq!(count(&s, s.lab(), "requests").await, 1);
    assert_eq!(count(&s, s.lab(), "activities").await, 0);
    assert_eq!(count(&s, s.lab(), "details").await, 0);
}

// ----- injection -----

const NASTY: [&str; 6] = [
    "' OR 1=1 --",
    "%",
    "_",
    "a\u{1}b\\",
    "\u{1F4A5} \" ;",
    "Robert'); DROP TABLE objects;--",
];

#[tokio::test]
async fn injection_strings_are_stored_and_searched_literally() {
    let s = TestServer::start().await;
    create_field(&s, json!({"id": "Free_Text", "dataType": "string", "classification": "UNENCRYPTED", "searchable": true})).await;
    create_fieldset(&s, "custom.free", &["Free_Text"]).await;
    let plain = s
        .customer(s.lab(), json!({"Context_First_Name": "Plain"}))
        .await;

    let mut ids = Vec::new();
    for v in NASTY {
        let r = s
            .post(
                s.lab(),
                "/v1/customers",
                json!({"fieldsets": ["cisco.base.customer", "custom.free"], "data": {"Context_First_Name": v, "Free_Text": v}, "tags": [format!("t{v}")]}),
            )
            .await;
        r.expect(201);
        assert_eq!(r.at("/data/Context_First_Name"), v);
        ids.push(r.str("/id"));
    }
    for (v, id) in NASTY.iter().zip(&ids) {
        let o = snapshot(&s, s.lab(), "customers", id).await;
        assert_eq!(
            o["data"]["Context_First_Name"], *v,
            "sealed value round-trips byte for byte"
        );
        assert_eq!(
            o["data"]["Free_Text"], *v,
            "clear value round-trips byte for byte"
        );
        assert_eq!(o["tags"], json!([format!("t{v}")]));
        for term in ["Context_First_Name", "Free_Text"] {
            let r = s
                .post(
                    s.lab(),
                    "/v1/customers/search",
                    json!({"terms": {term: [v]}}),
                )
                .await;
            r.expect(200);
            let found: Vec<&str> = r
                .at("/items")
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["id"].as_str().unwrap())
                .collect();
            assert_eq!(
                found,
                vec![id.as_str()],
                "searching {term} for {v:?} finds exactly that customer"
            );
            assert_eq!(r.at("/total"), 1);
        }
        let r = s
            .post(
                s.lab(),
                "/v1/customers/search",
                json!({"terms": {"tags": [format!("t{v}")]}}),
            )
            .await;
        r.expect(200);
        assert_eq!(r.at("/total"), 1, "tag {v:?}");
    }
    // Wildcards and always-true fragments match nothing they don't equal.
    for v in [
        "%%",
        "%a%",
        "__",
        "' OR '1'='1",
        "1=1",
        "*",
        "Pla%",
        "P_ain",
    ] {
        for term in ["Context_First_Name", "Free_Text", "tags"] {
            let r = s
                .post(
                    s.lab(),
                    "/v1/customers/search",
                    json!({"terms": {term: [v]}}),
                )
                .await;
            r.expect(200);
            assert_eq!(r.at("/total"), 0, "{term} = {v:?} matches nothing");
        }
    }
    // Injection in keys, cursors, ids and dates is a 400, never a 5xx.
    s.post(
        s.lab(),
        "/v1/customers/search",
        json!({"terms": {"x' OR 1=1 --": ["a"]}}),
    )
    .await
    .expect(400);
    s.post(
        s.lab(),
        "/v1/customers/search",
        json!({"terms": {"id": ["' OR 1=1 --"]}}),
    )
    .await
    .expect(400);
    s.post(
        s.lab(),
        "/v1/customers/search",
        json!({"terms": {"state": ["active' OR 1=1 --"]}}),
    )
    .await
    .expect(400);
    s.post(
        s.lab(),
        "/v1/customers/search",
        json!({"cursor": "' OR 1=1 --"}),
    )
    .await
    .expect(400);
    s.post(
        s.lab(),
        "/v1/customers/search",
        json!({"createdFrom": "2020' OR 1=1 --"}),
    )
    .await
    .expect(400);
    s.post(
        s.lab(),
        "/v1/customers/search",
        json!({"notExists": ["x' OR 1=1 --"]}),
    )
    .await
    .expect(400);
    s.get(s.lab(), "/v1/customers/'%20OR%201=1%20--")
        .await
        .expect(400);
    s.post(
        s.lab(),
        "/v1/fields",
        json!({"id": "x' OR 1=1 --", "dataType": "string", "classification": "UNENCRYPTED"}),
    )
    .await
    .expect(400);

    // Everything is still there.
    assert_eq!(
        count(&s, s.lab(), "customers").await,
        NASTY.len() as u64 + 1
    );
    s.get(s.lab(), &format!("/v1/customers/{plain}"))
        .await
        .expect(200);
}

// ----- auto-close -----

#[tokio::test]
async fn request_autocloses_and_then_refuses_children() {
    let config = ContextConfig {
        request_autoclose: chrono::Duration::seconds(1),
        ..Default::default()
    };
    let s = TestServer::start_with(config, ServerConfig::default()).await;
    let c = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    let req = create_request(&s, s.lab(), &c).await;
    assert_eq!(
        snapshot(&s, s.lab(), "requests", &req).await["state"],
        "active"
    );

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = snapshot(&s, s.lab(), "requests", &req).await;
    assert_eq!(
        before["state"], "closed",
        "an untouched request closes after the auto-close period"
    );

    s.post(
        s.lab(),
        "/v1/activities",
        json!({"parentId": req, "mediaType": "voice"}),
    )
    .await
    .expect(409);
    s.patch(
        s.lab(),
        &format!("/v1/requests/{req}"),
        json!({"data": {"Context_Title": "late"}}),
    )
    .await
    .expect(409);
    assert_eq!(count(&s, s.lab(), "activities").await, 0);
    let after = snapshot(&s, s.lab(), "requests", &req).await;
    assert_eq!(after["version"], before["version"]);
    assert_eq!(after["state"], "closed");
}

#[tokio::test]
async fn autoclose_counts_writes_to_activities() {
    let config = ContextConfig {
        request_autoclose: chrono::Duration::seconds(2),
        ..Default::default()
    };
    let s = TestServer::start_with(config, ServerConfig::default()).await;
    let c = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    let req = create_request(&s, s.lab(), &c).await;

    tokio::time::sleep(Duration::from_millis(1200)).await;
    s.post(
        s.lab(),
        "/v1/activities",
        json!({"parentId": req, "mediaType": "chat"}),
    )
    .await
    .expect(201);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // 2.4 s after its creation, but 1.2 s after its activity: still open.
    assert_eq!(
        snapshot(&s, s.lab(), "requests", &req).await["state"],
        "active"
    );
    tokio::time::sleep(Duration::from_millis(1900)).await;
    assert_eq!(
        snapshot(&s, s.lab(), "requests", &req).await["state"],
        "closed"
    );
    s.post(
        s.lab(),
        "/v1/activities",
        json!({"parentId": req, "mediaType": "voice"}),
    )
    .await
    .expect(409);
    assert_eq!(
        total(
            &s,
            s.lab(),
            "activities",
            json!({"terms": {"parentId": [req]}})
        )
        .await,
        1
    );
}

/// NUL characters can't be stored portably (PostgreSQL text refuses them): a clear 400.
#[tokio::test]
async fn nul_characters_in_text_are_400() {
    let s = TestServer::start().await;
    let t = s.lab();
    let r = s
        .post(t, "/v1/customers", serde_json::json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_Preferred_Language": "en_US", "Context_City": "Par\u{0}is"}}))
        .await;
    r.expect(400);
    assert_eq!(r.at("/errors/0/field"), "data.Context_City");
    s.post(t, "/v1/customers", serde_json::json!({"tags": ["a\u{0}b"]}))
        .await
        .expect(400);
    let found = s
        .post(
            t,
            "/v1/customers/search",
            serde_json::json!({"summary": true}),
        )
        .await;
    assert_eq!(found.at("/total"), 0, "nothing was written");
}

/// Issue 9 item 15: a PATCH body goes through the same extractor as every other body, so the
/// JSON nesting limit (--json-depth, 32 by default) applies to it too.
#[tokio::test]
async fn patch_nested_deeper_than_the_limit_is_400() {
    let s = TestServer::start().await;
    let id = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    let before = snapshot(&s, s.lab(), "customers", &id).await;
    let deep = format!("{}\"x\"{}", "[".repeat(40), "]".repeat(40));
    let body = format!(r#"{{"data": {{"Context_First_Name": "Bob", "Context_City": {deep}}}}}"#);
    for ct in ["application/merge-patch+json", "application/json"] {
        let r = s
            .raw(
                Method::PATCH,
                &format!("/v1/customers/{id}"),
                s.lab(),
                ct,
                body.clone().into_bytes(),
            )
            .await;
        r.expect(400);
        assert_eq!(
            r.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
        );
        assert!(
            r.str("/detail").contains("nested deeper than 32 levels"),
            "{}",
            r.body
        );
    }
    assert_eq!(snapshot(&s, s.lab(), "customers", &id).await, before);
    // Within the limit, both content types are still accepted; any other is a 415.
    for ct in [
        "application/merge-patch+json",
        "application/json; charset=utf-8",
    ] {
        s.raw(
            Method::PATCH,
            &format!("/v1/customers/{id}"),
            s.lab(),
            ct,
            br#"{"data": {"Context_City": "Oslo"}}"#.to_vec(),
        )
        .await
        .expect(200);
    }
    let after = snapshot(&s, s.lab(), "customers", &id).await;
    s.raw(
        Method::PATCH,
        &format!("/v1/customers/{id}"),
        s.lab(),
        "text/plain",
        br#"{"data": {"Context_City": "Rome"}}"#.to_vec(),
    )
    .await
    .expect(415);
    assert_eq!(snapshot(&s, s.lab(), "customers", &id).await, after);
}

/// Issue 9 item 14: translation keys may be written `en-US` or `en_US`; they are stored as
/// `en_US`. One definition naming a locale twice, or a key that is no locale, is a 400.
#[tokio::test]
async fn translations_accept_either_locale_spelling() {
    let s = TestServer::start().await;
    let field = |id: &str, translations: Value| json!({"id": id, "dataType": "string", "classification": "UNENCRYPTED", "translations": translations});
    let r = s
        .post(
            s.lab(),
            "/v1/fields",
            field("Colour", json!({"en-US": "Colour", "it-it": "Colore"})),
        )
        .await;
    r.expect(201);
    let r = s.get(s.lab(), "/v1/fields/Colour").await;
    assert_eq!(
        r.at("/translations"),
        &json!({"en_US": "Colour", "it_IT": "Colore"})
    );
    s.put(
        s.lab(),
        "/v1/fields/Colour",
        field("Colour", json!({"en_US": "Color"})),
    )
    .await
    .expect(200);
    assert_eq!(
        s.get(s.lab(), "/v1/fields/Colour")
            .await
            .at("/translations"),
        &json!({"en_US": "Color"})
    );

    for bad in [
        json!({"en-US": "Color", "en_US": "Colour"}),
        json!({"not a locale": "x"}),
    ] {
        let r = s
            .post(s.lab(), "/v1/fields", field("Shade", bad.clone()))
            .await;
        r.expect(400);
        assert_field_error(&r, "translations");
        s.get(s.lab(), "/v1/fields/Shade").await.expect(404);
        let r = s
            .put(s.lab(), "/v1/fields/Colour", field("Colour", bad))
            .await;
        r.expect(400);
        assert_field_error(&r, "translations");
    }
    assert_eq!(
        s.get(s.lab(), "/v1/fields/Colour")
            .await
            .at("/translations"),
        &json!({"en_US": "Color"})
    );
}
