//! The Cisco Context Service REST compatibility API (DESIGN.md §4), replayed on the wire as
//! integrations sent it: raw HTTP bodies, query strings (encoded and not) and headers, each
//! answer checked field by field, and each write seen through the native API.

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::TestServer;

/// One exchange with the compatibility API.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Asserts an error in the original shape.
    #[track_caller]
    fn original_error(&self, status: u16, error_type: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(self.body["errorType"], error_type, "{}", self.body);
        assert!(self.body["errorMessage"].is_string(), "{}", self.body);
        assert!(self.body.get("errorData").is_some(), "{}", self.body);
        assert!(
            !self.header("trackingid").is_empty(),
            "errors carry trackingid too"
        );
    }
}

async fn send(
    s: &TestServer,
    method: Method,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Answer {
    let mut r = s.http.request(method, format!("{}{path}", s.url));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.expect("sent");
    let (status, headers) = (resp.status(), resp.headers().clone());
    let bytes = resp.bytes().await.expect("body");
    Answer {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

fn customer_body() -> Value {
    json!({
        "type": "customer",
        "fieldsets": ["cisco.base.customer"],
        "dataElements": [
            {"Context_First_Name": "John", "type": "string"},
            {"Context_Last_Name": "Doe", "type": "string"},
            {"Context_Mobile_Phone": "+1 (555) 010-0007", "type": "string"}
        ]
    })
}

#[tokio::test]
async fn ping_needs_no_token_and_every_answer_carries_a_tracking_id() {
    let s = TestServer::start().await;
    let pong = send(&s, Method::GET, "/context/v1/ping", None, &[], None).await;
    assert_eq!(pong.status, 200);
    assert_eq!(pong.body["message"], "pong");
    assert!(!pong.header("trackingid").is_empty(), "a new tracking id");
    let echoed = send(
        &s,
        Method::GET,
        "/context/v1/ping",
        None,
        &[("TrackingID", "CCS_abc-123")],
        None,
    )
    .await;
    assert_eq!(
        echoed.header("trackingid"),
        "CCS_abc-123",
        "the client's is echoed"
    );
    let unauthorized = send(&s, Method::GET, "/context/v1/customer/x", None, &[], None).await;
    unauthorized.original_error(401, "notAuthorized");
    let no_type = send(
        &s,
        Method::GET,
        "/context/v1/contact/x",
        Some(s.lab()),
        &[],
        None,
    )
    .await;
    no_type.original_error(404, "notFound");
}

#[tokio::test]
async fn create_answers_the_original_shape_and_the_native_api_sees_it() {
    let s = TestServer::start().await;
    let created = send(
        &s,
        Method::POST,
        "/context/v1/customer",
        Some(s.lab()),
        &[],
        Some(customer_body()),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().expect("id").to_owned();
    assert_eq!(created.body["refUrl"], format!("/context/v1/customer/{id}"));
    assert!(created.body["lastUpdated"].is_string());
    assert_eq!(created.body["type"], "customer");
    assert_eq!(
        created.header("location"),
        format!("{}/context/v1/customer/{id}", s.url)
    );
    assert_eq!(
        created.header("last-updated"),
        created.body["lastUpdated"].as_str().unwrap_or("")
    );
    let elements = created.body["dataElements"]
        .as_array()
        .expect("dataElements");
    assert!(
        elements.contains(&json!({"Context_First_Name": "John", "type": "string"})),
        "{elements:?}"
    );
    assert_eq!(created.header("cache-control"), "no-store");

    // Through the native API: the same object, values decrypted.
    let native = s.get(s.lab(), &format!("/v1/customers/{id}")).await;
    native.expect(200);
    assert_eq!(native.str("/data/Context_Last_Name"), "Doe");

    // A request linked by an absolute customerRefUrl on another host, a pod by a relative
    // parentRefUrl, and a detail without a type (a comment).
    let request = send(
        &s,
        Method::POST,
        "/context/v1/request",
        Some(s.lab()),
        &[],
        Some(json!({
            "customerRefUrl": format!("https://context.example.com/context/v1/customer/{id}"),
            "fieldsets": ["cisco.base.request"],
            "dataElements": [{"Context_Title": "Service appointment"}]
        })),
    )
    .await;
    assert_eq!(request.status, 201, "{}", request.body);
    let request_id = request.body["id"].as_str().expect("id").to_owned();
    assert_eq!(
        request.body["customerRefUrl"],
        format!("/context/v1/customer/{id}")
    );
    let pod = send(
        &s,
        Method::POST,
        "/context/v1/pod",
        Some(s.lab()),
        &[],
        Some(json!({
            "parentRefUrl": format!("/context/v1/request/{request_id}"),
            "customerId": id,
            "mediaType": "voice",
            "fieldsets": ["cisco.base.pod"],
            "dataElements": [{"Context_Notes": "Called about the fault"}]
        })),
    )
    .await;
    assert_eq!(pod.status, 201, "{}", pod.body);
    assert_eq!(pod.body["type"], "pod");
    assert_eq!(
        pod.body["parentRefUrl"],
        format!("/context/v1/request/{request_id}")
    );
    let pod_id = pod.body["id"].as_str().expect("id");
    let as_activity = send(
        &s,
        Method::GET,
        &format!("/context/v1/activity/{pod_id}"),
        Some(s.lab()),
        &[],
        None,
    )
    .await;
    assert_eq!(as_activity.status, 200, "pod is an alias of activity");
    let detail = send(
        &s,
        Method::POST,
        "/context/v1/detail",
        Some(s.lab()),
        &[],
        Some(json!({
            "parentId": request_id,
            "fieldsets": ["cisco.base.comment"],
            "dataElements": [{"Context_Comment": "Customer prefers mornings"}]
        })),
    )
    .await;
    assert_eq!(detail.status, 201, "{}", detail.body);
    let native = s
        .get(
            s.lab(),
            &format!("/v1/details/{}", detail.body["id"].as_str().unwrap_or("")),
        )
        .await;
    native.expect(200);
    assert_eq!(
        native.str("/detailType"),
        "comment",
        "a detail without a type is a comment"
    );
    assert_eq!(native.str("/state"), "closed", "details are created closed");
    assert_eq!(
        detail.body["parentRefUrl"],
        format!("/context/v1/request/{request_id}")
    );
    let on_pod = send(
        &s,
        Method::POST,
        "/context/v1/detail",
        Some(s.lab()),
        &[],
        Some(json!({
            "parentRefUrl": format!("/context/v1/pod/{pod_id}"),
            "fieldsets": ["cisco.base.rating"],
            "dataElements": [{"cccRatingPoints": "4"}]
        })),
    )
    .await;
    assert_eq!(on_pod.status, 201, "{}", on_pod.body);
    assert_eq!(
        on_pod.body["parentRefUrl"],
        format!("/context/v1/activity/{pod_id}")
    );
    let rating = s
        .get(
            s.lab(),
            &format!("/v1/details/{}", on_pod.body["id"].as_str().unwrap_or("")),
        )
        .await;
    assert_eq!(
        rating.str("/detailType"),
        "feedback",
        "cisco.base.rating makes it feedback"
    );
    assert_eq!(
        rating.at("/data/cccRatingPoints"),
        &json!(4),
        "\"4\" is the integer 4"
    );
}

#[tokio::test]
async fn a_get_put_round_trip_sends_the_whole_body_back() {
    let s = TestServer::start().await;
    let created = send(
        &s,
        Method::POST,
        "/context/v1/customer",
        Some(s.lab()),
        &[],
        Some(customer_body()),
    )
    .await;
    let id = created.body["id"].as_str().expect("id").to_owned();
    let path = format!("/context/v1/customer/{id}");
    let read = send(&s, Method::GET, &path, Some(s.lab()), &[], None).await;
    assert_eq!(read.status, 200);
    // The whole object back, one value changed, plus a key a client library adds.
    let mut body = read.body.clone();
    body["trackingId"] = json!("CCS_1");
    let elements = body["dataElements"].as_array_mut().expect("elements");
    for e in elements.iter_mut() {
        if e.get("Context_First_Name").is_some() {
            *e = json!({"Context_First_Name": "Johnny", "type": "string"});
        }
    }
    let put = send(
        &s,
        Method::PUT,
        &path,
        Some(s.lab()),
        &[],
        Some(body.clone()),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let native = s.get(s.lab(), &format!("/v1/customers/{id}")).await;
    assert_eq!(native.str("/data/Context_First_Name"), "Johnny");
    assert_eq!(
        native.str("/data/Context_Last_Name"),
        "Doe",
        "the rest is kept"
    );

    // The same body again: its lastUpdated is now stale.
    let stale = send(&s, Method::PUT, &path, Some(s.lab()), &[], Some(body)).await;
    stale.original_error(409, "conflict");
    // An unknown field inside dataElements is refused and changes nothing.
    let mut unknown = put.body.clone();
    unknown["dataElements"] = json!([{"Context_Favourite_Colour": "red"}]);
    let refused = send(&s, Method::PUT, &path, Some(s.lab()), &[], Some(unknown)).await;
    refused.original_error(400, "invalidInput");
    assert_eq!(
        s.get(s.lab(), &format!("/v1/customers/{id}"))
            .await
            .str("/data/Context_First_Name"),
        "Johnny"
    );
}

#[tokio::test]
async fn search_answers_an_array_with_values_that_hold_spaces() {
    let s = TestServer::start().await;
    let customer = send(
        &s,
        Method::POST,
        "/context/v1/customer",
        Some(s.lab()),
        &[],
        Some(customer_body()),
    )
    .await;
    let id = customer.body["id"].as_str().expect("id").to_owned();
    for title in ["Service appointment", "Tyre change"] {
        let r = send(
            &s,
            Method::POST,
            "/context/v1/request",
            Some(s.lab()),
            &[],
            Some(json!({
                "customerId": id, "fieldsets": ["cisco.base.request"],
                "dataElements": [{"Context_Title": title}]
            })),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let found = send(
        &s,
        Method::GET,
        "/context/v1/request?q=Context_Title:Service%20appointment",
        Some(s.lab()),
        &[],
        None,
    )
    .await;
    assert_eq!(found.status, 200, "{}", found.body);
    let items = found.body.as_array().expect("a JSON array");
    assert_eq!(items.len(), 1);
    assert!(items[0]["dataElements"]
        .as_array()
        .expect("elements")
        .iter()
        .any(|e| e["Context_Title"] == "Service appointment"));
    // Literal and percent-encoded ':' are the same; type: alone lists a type.
    let encoded = send(
        &s,
        Method::GET,
        &format!("/context/v1/request?q=customerId%3A{id}"),
        Some(s.lab()),
        &[],
        None,
    )
    .await;
    assert_eq!(
        encoded.body.as_array().map(Vec::len),
        Some(2),
        "{}",
        encoded.body
    );
    let all = send(
        &s,
        Method::GET,
        "/context/v1/customer?q=type:customer",
        Some(s.lab()),
        &[],
        None,
    )
    .await;
    assert_eq!(all.body.as_array().map(Vec::len), Some(1), "{}", all.body);
    // Paging and order.
    let first = send(
        &s,
        Method::GET,
        &format!(
            "/context/v1/request?q=customerId:{id}&maxEntries=1&sortedBy=created&sortOrder=asc"
        ),
        Some(s.lab()),
        &[],
        None,
    )
    .await;
    let first = first.body.as_array().expect("array");
    assert_eq!(first.len(), 1);
    assert!(
        first[0]["dataElements"]
            .as_array()
            .expect("elements")
            .iter()
            .any(|e| e["Context_Title"] == "Service appointment"),
        "oldest first"
    );
    let second = send(&s, Method::GET, &format!("/context/v1/request?q=customerId:{id}&maxEntries=1&startIndex=1&sortedBy=created&sortOrder=asc"), Some(s.lab()), &[], None).await;
    assert!(second.body[0]["dataElements"]
        .as_array()
        .expect("elements")
        .iter()
        .any(|e| e["Context_Title"] == "Tyre change"));
    // A bad parameter is a 400 in the original shape.
    let bad = send(
        &s,
        Method::GET,
        "/context/v1/request?q=type:request&maxEntries=5000",
        Some(s.lab()),
        &[],
        None,
    )
    .await;
    bad.original_error(400, "invalidInput");
}

#[tokio::test]
async fn lab_mode_must_match_the_credential() {
    let s = TestServer::start().await;
    let lab = |v: &'static str| [("cisco-context-labmode", v)];
    let ok = send(
        &s,
        Method::POST,
        "/context/v1/customer",
        Some(s.lab()),
        &lab("true"),
        Some(customer_body()),
    )
    .await;
    assert_eq!(ok.status, 201);
    let id = ok.body["id"].as_str().expect("id").to_owned();
    let path = format!("/context/v1/customer/{id}");
    send(&s, Method::GET, &path, Some(s.lab()), &lab("false"), None)
        .await
        .original_error(403, "forbidden");
    send(&s, Method::GET, &path, Some(s.prod()), &lab("true"), None)
        .await
        .original_error(403, "forbidden");
    send(&s, Method::GET, &path, Some(s.lab()), &lab("maybe"), None)
        .await
        .original_error(400, "badRequest");
    // Absent: the credential's own partition (production can't see lab data).
    assert_eq!(
        send(&s, Method::GET, &path, Some(s.lab()), &[], None)
            .await
            .status,
        200
    );
    send(&s, Method::GET, &path, Some(s.prod()), &[], None)
        .await
        .original_error(404, "notFound");
}

#[tokio::test]
async fn a_customer_can_be_deleted_before_its_request_in_lab_only() {
    let s = TestServer::start().await;
    let customer = send(
        &s,
        Method::POST,
        "/context/v1/customer",
        Some(s.lab()),
        &[],
        Some(customer_body()),
    )
    .await;
    let id = customer.body["id"].as_str().expect("id").to_owned();
    let request = send(&s, Method::POST, "/context/v1/request", Some(s.lab()), &[], Some(json!({
        "customerId": id, "fieldsets": ["cisco.base.request"], "dataElements": [{"Context_Title": "Old"}]
    }))).await;
    let request_id = request.body["id"].as_str().expect("id").to_owned();
    let deleted = send(
        &s,
        Method::DELETE,
        &format!("/context/v1/customer/{id}"),
        Some(s.lab()),
        &[],
        None,
    )
    .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(
        send(
            &s,
            Method::GET,
            &format!("/context/v1/request/{request_id}"),
            Some(s.lab()),
            &[],
            None
        )
        .await
        .status,
        200,
        "no cascade"
    );
    let gone = send(
        &s,
        Method::DELETE,
        &format!("/context/v1/request/{request_id}"),
        Some(s.lab()),
        &[],
        None,
    )
    .await;
    assert_eq!(gone.status, 204);
    // Production keeps its data.
    let prod = send(
        &s,
        Method::POST,
        "/context/v1/customer",
        Some(s.prod()),
        &[],
        Some(customer_body()),
    )
    .await;
    let prod_id = prod.body["id"].as_str().expect("id").to_owned();
    send(
        &s,
        Method::DELETE,
        &format!("/context/v1/customer/{prod_id}"),
        Some(s.prod()),
        &[],
        None,
    )
    .await
    .original_error(403, "forbidden");
}

/// A field exactly as the original management console posted it, with every extra key.
fn console_field(id: &str) -> Value {
    json!({
        "id": id,
        "description": "Loyalty programme tier",
        "classification": "UNENCRYPTED",
        "classificationUI": "Unencrypted",
        "dataType": "string",
        "dataTypeUI": "String",
        "dataTypeValue": {"label": "String", "value": "string"},
        "publiclyAccessible": false,
        "publiclyAccessibleUI": "No",
        "searchable": "true",
        "translations": {"en_US": "Loyalty tier", "it-IT": "Livello fedeltà"}
    })
}

#[tokio::test]
async fn the_dictionary_paths_take_the_consoles_keys() {
    let s = TestServer::start().await;
    let created = send(
        &s,
        Method::POST,
        "/dictionary/field/v1",
        Some(s.lab()),
        &[],
        Some(console_field("Loyalty_Tier")),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.body["refUrl"],
        "/dictionary/field/v1/id/Loyalty_Tier"
    );
    assert!(created.body["lastUpdated"].is_string());
    assert_eq!(
        created.body["searchable"], true,
        "the string \"true\" is a boolean"
    );
    assert_eq!(
        created.header("location"),
        format!("{}/dictionary/field/v1/id/Loyalty_Tier", s.url)
    );
    // The native dictionary holds it, both locale spellings meaning one locale.
    let native = s.get(s.lab(), "/v1/fields/Loyalty_Tier").await;
    native.expect(200);
    assert_eq!(native.str("/translations/it_IT"), "Livello fedeltà");

    let read = send(
        &s,
        Method::GET,
        "/dictionary/field/v1/id/Loyalty_Tier",
        Some(s.lab()),
        &[],
        None,
    )
    .await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["dataType"], "string");
    assert_eq!(
        read.body["lastUpdated"], created.body["lastUpdated"],
        "lastUpdated is the time of the write, not of the answer"
    );
    let mut changed = console_field("Loyalty_Tier");
    changed["description"] = json!("Tier in the loyalty programme");
    // Times are kept to the millisecond: let one pass before the change.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let put = send(
        &s,
        Method::PUT,
        "/dictionary/field/v1/id/Loyalty_Tier",
        Some(s.lab()),
        &[],
        Some(changed),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert!(
        put.body["lastUpdated"].as_str() > created.body["lastUpdated"].as_str(),
        "a change moves lastUpdated: {} then {}",
        created.body["lastUpdated"],
        put.body["lastUpdated"]
    );
    assert_eq!(
        s.get(s.lab(), "/v1/fields/Loyalty_Tier")
            .await
            .str("/description"),
        "Tier in the loyalty programme"
    );

    // A field set of it; the status says whether each is used.
    let set = send(&s, Method::POST, "/dictionary/fieldset/v1", Some(s.lab()), &[], Some(json!({
        "id": "loyalty", "description": "Loyalty", "fields": ["Loyalty_Tier"], "publiclyAccessible": false
    }))).await;
    assert_eq!(set.status, 201, "{}", set.body);
    assert_eq!(set.body["refUrl"], "/dictionary/fieldset/v1/id/loyalty");
    let status = |path: &'static str| send(&s, Method::GET, path, Some(s.lab()), &[], None);
    assert_eq!(
        status("/dictionary/field/v1/status/Loyalty_Tier")
            .await
            .body,
        json!({"status": {"inUse": true}}),
        "in a field set"
    );
    assert_eq!(
        status("/dictionary/fieldset/v1/status/loyalty").await.body,
        json!({"status": {"inUse": false}})
    );
    let customer = send(
        &s,
        Method::POST,
        "/context/v1/customer",
        Some(s.lab()),
        &[],
        Some(json!({
            "fieldsets": ["loyalty"], "dataElements": [{"Loyalty_Tier": "gold"}]
        })),
    )
    .await;
    assert_eq!(customer.status, 201, "{}", customer.body);
    assert_eq!(
        status("/dictionary/fieldset/v1/status/loyalty").await.body,
        json!({"status": {"inUse": true}})
    );
    send(
        &s,
        Method::DELETE,
        "/dictionary/fieldset/v1/id/loyalty",
        Some(s.lab()),
        &[],
        None,
    )
    .await
    .original_error(409, "inUse");

    // Search by id: all, or some.
    let all = send(
        &s,
        Method::GET,
        "/dictionary/field/v1/search?q=id:*&maxEntries=1500",
        Some(s.lab()),
        &[],
        None,
    )
    .await;
    let ids: Vec<&str> = all
        .body
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|f| f["id"].as_str())
        .collect();
    assert!(
        ids.contains(&"Loyalty_Tier") && ids.contains(&"Context_First_Name"),
        "{ids:?}"
    );
    assert!(all.body[0]["refUrl"].is_string());
    let some = send(
        &s,
        Method::GET,
        "/dictionary/field/v1/search?q=id%3ALoyalty_Tier%20OR%20id%3AContext_City",
        Some(s.lab()),
        &[],
        None,
    )
    .await;
    let ids: Vec<&str> = some
        .body
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|f| f["id"].as_str())
        .collect();
    assert_eq!(ids, ["Context_City", "Loyalty_Tier"]);
    send(
        &s,
        Method::GET,
        "/dictionary/field/v1/search?q=id:*&maxEntries=1501",
        Some(s.lab()),
        &[],
        None,
    )
    .await
    .original_error(400, "invalidInput");
    // An agent token is refused.
    let (_, agent) =
        crate::support::key(&s.client(s.lab()), contextd_core::auth::Role::Agent).await;
    send(
        &s,
        Method::POST,
        "/dictionary/field/v1",
        Some(&agent),
        &[],
        Some(console_field("Other")),
    )
    .await
    .original_error(403, "forbidden");
}

#[tokio::test]
async fn a_workitem_is_an_activity_kind_of_its_own() {
    let s = TestServer::start().await;
    let item = send(&s, Method::POST, "/context/v1/workitem", Some(s.lab()), &[], Some(json!({
        "mediaType": "email",
        "dataElements": [{"Context_Title": "Call back about the invoice"}, {"Context_Notes": "After 5 pm"}]
    }))).await;
    assert_eq!(item.status, 201, "{}", item.body);
    assert_eq!(item.body["type"], "workitem");
    assert_eq!(item.body["fieldsets"], json!(["cisco.base.workitem"]));
    let id = item.body["id"].as_str().expect("id").to_owned();
    // The native API sees an activity; the pod path does not list work items, the workitem
    // path nothing else.
    s.get(s.lab(), &format!("/v1/activities/{id}"))
        .await
        .expect(200);
    send(
        &s,
        Method::GET,
        &format!("/context/v1/pod/{id}"),
        Some(s.lab()),
        &[],
        None,
    )
    .await
    .original_error(404, "notFound");
    let pod = send(&s, Method::POST, "/context/v1/pod", Some(s.lab()), &[], Some(json!({
        "mediaType": "chat", "fieldsets": ["cisco.base.pod"], "dataElements": [{"Context_Notes": "hi"}]
    }))).await;
    assert_eq!(pod.status, 201, "{}", pod.body);
    let items = send(
        &s,
        Method::GET,
        "/context/v1/workitem?q=type:workitem",
        Some(s.lab()),
        &[],
        None,
    )
    .await;
    let ids: Vec<&str> = items
        .body
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|o| o["id"].as_str())
        .collect();
    assert_eq!(ids, [id.as_str()]);
}

#[tokio::test]
async fn bad_input_gets_the_original_error_shape_and_changes_nothing() {
    let s = TestServer::start().await;
    let url = |p: &str| format!("{}{p}", s.url);
    let malformed = s
        .http
        .post(url("/context/v1/customer"))
        .bearer_auth(s.lab())
        .header("content-type", "application/json")
        .body("{\"dataElements\": [")
        .send()
        .await
        .expect("sent");
    assert_eq!(malformed.status(), 400);
    assert!(malformed.headers().contains_key("trackingid"));
    let body: Value = malformed.json().await.expect("json");
    assert_eq!(body["errorType"], "badRequest", "{body}");
    for (path, status, error_type) in [
        ("/context/v1/customer/not-an-id", 400, "badRequest"),
        (
            "/context/v1/customer/01936b3c-0000-7000-8000-000000000000",
            404,
            "notFound",
        ),
    ] {
        send(&s, Method::GET, path, Some(s.lab()), &[], None)
            .await
            .original_error(status, error_type);
    }
    let two_fields = send(
        &s,
        Method::POST,
        "/context/v1/customer",
        Some(s.lab()),
        &[],
        Some(json!({
            "fieldsets": ["cisco.base.customer"],
            "dataElements": [{"Context_First_Name": "A", "Context_Last_Name": "B"}]
        })),
    )
    .await;
    two_fields.original_error(400, "invalidInput");
    let huge = json!({"fieldsets": ["cisco.base.customer"],
        "dataElements": [{"Context_First_Name": "x".repeat(2 * 1024 * 1024)}]});
    send(
        &s,
        Method::POST,
        "/context/v1/customer",
        Some(s.lab()),
        &[],
        Some(huge),
    )
    .await
    .original_error(413, "tooLarge");
    let all = send(
        &s,
        Method::GET,
        "/context/v1/customer?q=type:customer",
        Some(s.lab()),
        &[],
        None,
    )
    .await;
    assert_eq!(all.body, json!([]), "nothing was written");
}
