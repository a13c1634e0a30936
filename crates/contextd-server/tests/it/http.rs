//! HTTP behaviour (README, "API overview"): request ids, authentication, problem JSON for unknown routes
//! and methods, the OpenAPI document, status, lab flush, ETag and Location.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{Resp, TestServer};

fn header<'a>(r: &'a Resp, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

#[track_caller]
fn assert_request_id(r: &Resp) {
    let id = header(r, "x-request-id")
        .unwrap_or_else(|| panic!("x-request-id on a {} response", r.status));
    assert!(!id.trim().is_empty());
}

#[tokio::test]
async fn request_id_is_generated_and_echoed() {
    let s = TestServer::start().await;
    let id = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;

    // Generated on every response: success, client errors, unauthenticated, unknown routes.
    let responses = vec![
        s.call(Method::GET, "/v1/ping", None, None).await,
        s.call(Method::GET, "/healthz", None, None).await,
        s.get(s.lab(), &format!("/v1/customers/{id}")).await,
        s.post(s.lab(), "/v1/customers", json!({"bogus": 1})).await,
        s.call(Method::GET, &format!("/v1/customers/{id}"), None, None)
            .await,
        s.call(Method::GET, "/no/such/route", None, None).await,
        s.call(Method::DELETE, "/v1/ping", None, None).await,
        s.raw(
            Method::POST,
            "/v1/customers",
            s.lab(),
            "application/json",
            b"{".to_vec(),
        )
        .await,
    ];
    let mut seen = std::collections::BTreeSet::new();
    for r in &responses {
        assert_request_id(r);
        seen.insert(header(r, "x-request-id").unwrap().to_owned());
    }
    assert_eq!(seen.len(), responses.len(), "each response gets its own id");

    // Echoed when the client sends one, on success and on error.
    for (path, token) in [
        ("/v1/ping", None),
        (&*format!("/v1/customers/{id}"), Some(s.lab())),
        ("/v1/customers/nope", Some(s.lab())),
        ("/v1/status", None),
    ] {
        let mut req = s
            .http
            .get(format!("{}{}", s.url, path))
            .header("x-request-id", "trace-abc-123");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let r = TestServer::read(req.send().await.expect("sent")).await;
        assert_eq!(
            header(&r, "x-request-id"),
            Some("trace-abc-123"),
            "{path} echoes the request id ({})",
            r.status
        );
    }
}

#[tokio::test]
async fn liveness_needs_no_auth() {
    let s = TestServer::start().await;
    for path in ["/v1/ping", "/healthz"] {
        let r = s.call(Method::GET, path, None, None).await;
        r.expect(200);
        assert_eq!(r.at("/status"), "ok");
    }
    // A bad token doesn't break them either.
    s.call(Method::GET, "/v1/ping", Some("garbage"), None)
        .await
        .expect(200);
}

#[tokio::test]
async fn missing_or_bad_token_is_401() {
    let s = TestServer::start().await;
    let id = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    let before = s.get(s.lab(), &format!("/v1/customers/{id}")).await.body;
    let object = format!("/v1/customers/{id}");
    let calls: Vec<(Method, &str, Option<Value>)> = vec![
        (Method::GET, &object, None),
        (
            Method::PATCH,
            &object,
            Some(json!({"data": {"Context_First_Name": "Mallory"}})),
        ),
        (
            Method::PUT,
            &object,
            Some(json!({"fieldsets": ["cisco.base.customer"], "version": 1})),
        ),
        (Method::DELETE, &object, None),
        (
            Method::POST,
            "/v1/customers",
            Some(json!({"fieldsets": ["cisco.base.customer"]})),
        ),
        (Method::POST, "/v1/customers/search", Some(json!({}))),
        (Method::POST, "/v1/activities/flush", None),
        (Method::GET, "/v1/fields", None),
        (Method::GET, "/v1/status", None),
    ];

    let real = s.lab().to_owned();
    let mut wrong_secret = real.clone();
    let last = wrong_secret.pop().unwrap();
    wrong_secret.push(if last == 'A' { 'B' } else { 'A' });
    let bad_tokens: Vec<Option<&str>> = vec![
        None,
        Some("garbage"),
        Some(""),
        Some(&wrong_secret),
        Some("ctx_0_0"),
    ];

    for (method, path, body) in &calls {
        for token in &bad_tokens {
            let r = s.call(method.clone(), path, *token, body.as_ref()).await;
            r.expect(401);
            assert_eq!(
                header(&r, "www-authenticate").map(|v| v.split(' ').next().unwrap_or("")),
                Some("Bearer"),
                "{method} {path}"
            );
        }
    }
    // The wrong scheme is no bearer token.
    let r = TestServer::read(
        s.http
            .get(format!("{}{object}", s.url))
            .header("authorization", format!("Basic {real}"))
            .send()
            .await
            .expect("sent"),
    )
    .await;
    r.expect(401);
    assert!(header(&r, "www-authenticate").is_some());

    // Nothing changed.
    assert_eq!(s.get(s.lab(), &object).await.body, before);
    assert_eq!(
        s.post(s.lab(), "/v1/customers/search", json!({}))
            .await
            .at("/total"),
        1
    );
}

#[tokio::test]
async fn unknown_route_is_404_and_wrong_method_is_405() {
    let s = TestServer::start().await;
    for path in [
        "/nothing/here",
        "/v1/customers/a/b/c",
        "/v2/customers",
        "/v1/fields/a/b",
    ] {
        s.call(Method::GET, path, Some(s.lab()), None)
            .await
            .expect(404);
    }
    // An unknown kind is no resource either.
    let some_id = uuid::Uuid::now_v7();
    s.get(s.lab(), &format!("/v1/widgets/{some_id}"))
        .await
        .expect(404);
    s.post(s.lab(), "/v1/widgets", json!({})).await.expect(404);

    for (method, path) in [
        (Method::DELETE, "/v1/ping"),
        (Method::POST, "/healthz"),
        (Method::PUT, "/v1/fields"),
        (Method::DELETE, "/v1/fieldsets"),
        (Method::POST, "/v1/openapi.json"),
        (Method::PATCH, "/v1/status"),
    ] {
        let r = s.call(method.clone(), path, Some(s.lab()), None).await;
        r.expect(405);
        // RFC 9110 §15.5.6: a 405 lists the methods the resource supports.
        let allow =
            header(&r, "allow").unwrap_or_else(|| panic!("{method} {path}: a 405 carries Allow"));
        assert!(
            allow.contains("GET") || allow.contains("POST"),
            "{method} {path}: Allow: {allow}"
        );
    }
}

#[tokio::test]
async fn openapi_document() {
    let s = TestServer::start().await;
    let r = s.get(s.lab(), "/v1/openapi.json").await;
    r.expect(200);
    assert!(header(&r, "content-type").is_some_and(|c| c.starts_with("application/json")));
    assert!(
        r.at("/openapi")
            .as_str()
            .is_some_and(|v| v.starts_with('3')),
        "openapi version: {}",
        r.at("/openapi")
    );
    let paths = r.at("/paths").as_object().expect("paths object");
    for p in [
        "/v1/{kind}",
        "/v1/{kind}/{id}",
        "/v1/{kind}/search",
        "/v1/customers/{id}/timeline",
        "/v1/fields",
        "/v1/fieldsets",
        "/v1/status",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} documented; paths: {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    assert!(r.at("/paths/~1v1~1{kind}/post").is_object());
    assert!(r
        .at("/paths/~1v1~1customers~1{id}~1timeline/get")
        .is_object());
    assert!(r.at("/components/securitySchemes/bearer").is_object());
}

#[tokio::test]
async fn status_reports_dependencies() {
    let s = TestServer::start().await;
    let r = s.get(s.lab(), "/v1/status").await;
    r.expect(200);
    assert_eq!(r.at("/status"), "ok");
    assert_eq!(r.at("/partition"), "lab");
    assert!(r.at("/version").as_str().is_some_and(|v| !v.is_empty()));
    assert!(r.at("/uptimeSeconds").is_u64());
    let deps = r.at("/dependencies").as_array().expect("dependencies");
    assert_eq!(deps.len(), 2);
    let names: Vec<&str> = deps.iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert!(
        names.contains(&"storage") && names.contains(&"keyStore"),
        "{names:?}"
    );
    for d in deps {
        assert_eq!(d["reachable"], true, "{d}");
        assert!(d["latencyMs"].as_f64().is_some_and(|ms| ms >= 0.0), "{d}");
        assert_eq!(d["backend"], "sqlite", "{d}");
    }
    assert_eq!(
        s.get(s.prod(), "/v1/status").await.at("/partition"),
        "production"
    );
}

#[tokio::test]
async fn lab_flush_deletes_one_kind() {
    let s = TestServer::start().await;
    let c = s
        .customer(s.lab(), json!({"Context_First_Name": "Ann"}))
        .await;
    let req = s
        .post(s.lab(), "/v1/requests", json!({"customerId": c}))
        .await;
    req.expect(201);
    let req = req.str("/id");
    let mut acts = Vec::new();
    for media in ["voice", "chat", "sms"] {
        let r = s
            .post(
                s.lab(),
                "/v1/activities",
                json!({"customerId": c, "parentId": req, "mediaType": media}),
            )
            .await;
        r.expect(201);
        acts.push(r.str("/id"));
    }
    // The production partition's activities are not the lab's to flush.
    let pc = s
        .customer(s.prod(), json!({"Context_First_Name": "Pat"}))
        .await;
    let r = s
        .post(
            s.prod(),
            "/v1/activities",
            json!({"customerId": pc, "mediaType": "voice"}),
        )
        .await;
    r.expect(201);
    let prod_act = r.str("/id");

    let r = s
        .call(Method::POST, "/v1/activities/flush", Some(s.lab()), None)
        .await;
    r.expect(202);
    let job = r.str("/id");
    assert!(
        uuid::Uuid::try_parse(&job).is_ok(),
        "a flush id: {}",
        r.body
    );

    let r = s.get(s.lab(), &format!("/v1/flush/{job}")).await;
    r.expect(200);
    assert_eq!(r.at("/completed"), true);
    assert_eq!(r.at("/flushed"), 3);
    assert!(r.at("/message").is_string());

    for a in &acts {
        s.get(s.lab(), &format!("/v1/activities/{a}"))
            .await
            .expect(404);
    }
    assert_eq!(
        s.post(s.lab(), "/v1/activities/search", json!({}))
            .await
            .at("/total"),
        0
    );
    s.get(s.lab(), &format!("/v1/customers/{c}"))
        .await
        .expect(200);
    s.get(s.lab(), &format!("/v1/requests/{req}"))
        .await
        .expect(200);
    assert_eq!(
        s.post(s.lab(), "/v1/customers/search", json!({}))
            .await
            .at("/total"),
        1
    );
    s.get(s.prod(), &format!("/v1/activities/{prod_act}"))
        .await
        .expect(200);

    // Another partition can't read the job; an unknown job is 404.
    s.get(s.prod(), &format!("/v1/flush/{job}"))
        .await
        .expect(404);
    s.get(s.lab(), &format!("/v1/flush/{}", uuid::Uuid::now_v7()))
        .await
        .expect(404);
}

#[tokio::test]
async fn etag_and_location() {
    let s = TestServer::start().await;
    let r = s
        .post(
            s.lab(),
            "/v1/customers",
            json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": "Ann"}}),
        )
        .await;
    r.expect(201);
    let id = r.str("/id");
    assert!(
        uuid::Uuid::try_parse(&id).is_ok_and(|u| u.get_version_num() == 7),
        "a UUIDv7 id: {id}"
    );
    assert_eq!(
        header(&r, "location"),
        Some(&*format!("/v1/customers/{id}"))
    );
    assert_eq!(r.at("/type"), "customer");
    assert_eq!(r.at("/version"), 1);

    let got = s.get(s.lab(), &format!("/v1/customers/{id}")).await;
    got.expect(200);
    assert_eq!(header(&got, "etag"), Some("\"1\""));
    assert_eq!(got.at("/version"), 1);

    let r = s
        .patch(
            s.lab(),
            &format!("/v1/customers/{id}"),
            json!({"tags": ["x"]}),
        )
        .await;
    r.expect(200);
    assert_eq!(r.at("/version"), 2);
    let got = s.get(s.lab(), &format!("/v1/customers/{id}")).await;
    assert_eq!(header(&got, "etag"), Some("\"2\""));
    // The ETag works as If-Match.
    let etag = header(&got, "etag").unwrap().to_owned();
    let r = TestServer::read(
        s.http
            .put(format!("{}/v1/customers/{id}", s.url))
            .bearer_auth(s.lab())
            .header("if-match", &etag)
            .json(&json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": "Anne"}}))
            .send()
            .await
            .expect("sent"),
    )
    .await;
    r.expect(200);
    assert_eq!(header(&r, "etag"), Some("\"3\""));

    // Location for the other kinds, and it resolves.
    let r = s
        .post(s.lab(), "/v1/requests", json!({"customerId": id}))
        .await;
    r.expect(201);
    let req = r.str("/id");
    assert_eq!(
        header(&r, "location"),
        Some(&*format!("/v1/requests/{req}"))
    );
    let r = s
        .post(
            s.lab(),
            "/v1/activities",
            json!({"parentId": req, "mediaType": "chat"}),
        )
        .await;
    r.expect(201);
    let act = r.str("/id");
    assert_eq!(
        header(&r, "location"),
        Some(&*format!("/v1/activities/{act}"))
    );
    let r = s
        .post(
            s.lab(),
            "/v1/details",
            json!({"parentId": act, "detailType": "comment"}),
        )
        .await;
    r.expect(201);
    let det = r.str("/id");
    let location = header(&r, "location").unwrap().to_owned();
    assert_eq!(location, format!("/v1/details/{det}"));
    let got = s.get(s.lab(), &location).await;
    got.expect(200);
    assert_eq!(header(&got, "etag"), Some("\"1\""));
    // The pod alias creates activities.
    let r = s
        .post(s.lab(), "/v1/pods", json!({"mediaType": "web"}))
        .await;
    r.expect(201);
    assert_eq!(r.at("/type"), "activity");
    assert_eq!(
        header(&r, "location"),
        Some(&*format!("/v1/activities/{}", r.str("/id")))
    );
}

/// Every path parameter of the OpenAPI document is one of its path's `{name}` segments, and
/// every segment is declared: query parameters declared `in: path` broke generated clients.
#[tokio::test]
async fn openapi_path_parameters_match_their_paths() {
    let s = TestServer::start().await;
    let doc = s.get(s.lab(), "/v1/openapi.json").await;
    doc.expect(200);
    let paths = doc.at("/paths").as_object().expect("paths").clone();
    let mut problems = Vec::new();
    for (path, item) in &paths {
        let segments: Vec<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        for (method, op) in item.as_object().into_iter().flatten() {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for p in &params {
                let (name, place) = (
                    p["name"].as_str().unwrap_or(""),
                    p["in"].as_str().unwrap_or(""),
                );
                if place == "path" && !segments.contains(&name) {
                    problems.push(format!("{method} {path}: '{name}' is not a path segment"));
                }
            }
            for seg in &segments {
                let declared = params
                    .iter()
                    .any(|p| p["in"] == "path" && p["name"].as_str() == Some(seg));
                if !declared {
                    problems.push(format!("{method} {path}: {{{seg}}} is not declared"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    let audit = doc.at("/paths/~1v1~1audit/get/parameters").to_string();
    assert!(
        audit.contains(r#""in":"query""#),
        "audit filters are query parameters"
    );
}

/// The router and the document come from one declaration: the document lists exactly the
/// wire crate's paths, and every operation it lists is routed (no fallback 404 or 405).
#[tokio::test]
async fn every_documented_operation_is_routed_and_every_path_is_named_in_the_wire_crate() {
    let s = TestServer::start().await;
    let doc = s.get(s.lab(), contextd_proto::paths::OPENAPI).await;
    doc.expect(200);
    let paths = doc.at("/paths").as_object().expect("paths").clone();
    let documented: std::collections::BTreeSet<&str> = paths.keys().map(String::as_str).collect();
    let named: std::collections::BTreeSet<&str> =
        contextd_proto::paths::ALL.iter().copied().collect();
    assert_eq!(
        documented, named,
        "documented paths vs contextd_proto::paths::ALL"
    );
    let mut unrouted = Vec::new();
    for (path, item) in &paths {
        let concrete = path
            .replace("{kind}", "customers")
            .replace("{id}", &uuid::Uuid::now_v7().to_string());
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
            let body = json!({});
            let r = s
                .call(method.clone(), &concrete, Some(s.lab()), Some(&body))
                .await;
            let fallback =
                r.status == 405 || (r.status == 404 && r.str("/detail") == "no such resource");
            if fallback {
                unrouted.push(format!("{method} {path} → {}", r.status));
            }
        }
    }
    assert!(
        unrouted.is_empty(),
        "documented but not routed: {unrouted:#?}"
    );
}

/// The served document is valid OpenAPI 3.1, as a standard validator sees it
/// (`openapi-spec-validator`, installed by `.ci/run`; `pip install openapi-spec-validator`).
#[tokio::test]
async fn the_served_document_is_valid_openapi_3_1() {
    let s = TestServer::start().await;
    let r = s
        .http
        .get(format!("{}{}", s.url, contextd_proto::paths::OPENAPI))
        .send()
        .await
        .expect("request sent");
    let bytes = r.bytes().await.expect("body");
    let file = s.dir.path().join("openapi.json");
    std::fs::write(&file, &bytes).expect("write document");
    let out = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .arg(&file)
        .output()
        .expect("python3 runs (install Python 3 and `pip install openapi-spec-validator`)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("No module named"),
        "the validator is missing: pip install openapi-spec-validator ({text})"
    );
    assert!(
        out.status.success(),
        "the document is not valid OpenAPI 3.1:\n{text}"
    );
}

/// Each refusal names its own code from the one table, and a version conflict says which
/// version is stored, so a client can retry without parsing the detail text.
#[tokio::test]
async fn conflicts_name_their_code_and_a_version_conflict_the_current_version() {
    use contextd_proto::ErrorCode;
    let s = TestServer::start().await;
    let code_of = |r: &Resp| contextd_proto::error::ErrorCode::from_type_uri(&r.str("/type"));

    let customer = s.post(s.lab(), "/v1/customers", json!({})).await;
    customer.expect(201);
    let path = format!("/v1/customers/{}", customer.str("/id"));
    let stale = s.put(s.lab(), &path, json!({"version": 7})).await;
    stale.expect(409);
    assert_eq!(code_of(&stale), Some(ErrorCode::VersionConflict));
    assert_eq!(stale.at("/currentVersion"), &json!(1));
    assert_eq!(stale.str("/title"), ErrorCode::VersionConflict.title());

    let closed = s
        .post(
            s.lab(),
            "/v1/requests",
            json!({"customerId": customer.str("/id"), "state": "closed"}),
        )
        .await;
    closed.expect(201);
    let child = s
        .post(
            s.lab(),
            "/v1/activities",
            json!({"parentId": closed.str("/id"), "mediaType": "sms"}),
        )
        .await;
    child.expect(409);
    assert_eq!(code_of(&child), Some(ErrorCode::ParentClosed));

    let field = json!({"id": "Tier", "dataType": "string", "classification": "UNENCRYPTED"});
    s.post(s.lab(), "/v1/fields", field.clone())
        .await
        .expect(201);
    let again = s.post(s.lab(), "/v1/fields", field).await;
    again.expect(409);
    assert_eq!(code_of(&again), Some(ErrorCode::AlreadyExists));
    assert!(again.at("/currentVersion").is_null());
}
