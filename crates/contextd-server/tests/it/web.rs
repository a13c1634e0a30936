//! The pages' server side (issue 13): `/desktop` and `/admin` with their policy, the embedded
//! assets, `no-store` on every API answer, the session's CSRF token for a reloaded page, the
//! embedding settings that set `frame-ancestors`, live statistics, and the `addressedTo` of
//! events that pops an activity for one agent.

use contextd_proto::events::{EventFilter, EventType};
use contextd_proto::system::EmbeddingSettings;
use futures::StreamExt;
use reqwest::header::{HeaderMap, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use reqwest::Method;
use serde_json::json;

use crate::support::{forbidden, input, invalid, new_customer, TestServer};

fn header(headers: &HeaderMap, name: impl reqwest::header::AsHeaderName) -> &str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn fetch(s: &TestServer, path: &str) -> (u16, HeaderMap, String) {
    let r = s
        .http
        .get(format!("{}{path}", s.url))
        .send()
        .await
        .expect("sent");
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.text().await.expect("body"))
}

/// The directive of a Content-Security-Policy, without its name.
fn directive<'a>(csp: &'a str, name: &str) -> &'a str {
    csp.split(';')
        .map(str::trim)
        .find_map(|d| d.strip_prefix(name))
        .map_or("", str::trim)
}

#[tokio::test]
async fn the_pages_answer_under_a_strict_policy_and_are_never_cached() {
    let s = TestServer::start().await;
    for page in ["/desktop", "/admin"] {
        let (status, headers, html) = fetch(&s, page).await;
        assert_eq!(status, 200, "{page}");
        assert!(header(&headers, CONTENT_TYPE).starts_with("text/html"));
        assert_eq!(header(&headers, CACHE_CONTROL), "no-store", "{page}");
        let csp = header(&headers, CONTENT_SECURITY_POLICY);
        assert_eq!(directive(csp, "script-src"), "'self'", "{page}: {csp}");
        assert_eq!(directive(csp, "style-src"), "'self'", "{page}: {csp}");
        assert_eq!(directive(csp, "default-src"), "'none'", "{page}: {csp}");
        assert!(!csp.contains("unsafe"), "{page}: {csp}");
        // No inline script, style or handler: the policy would block them anyway.
        assert!(
            !html.contains("<script>") && !html.contains("<style"),
            "{page}"
        );
        assert!(
            !html.contains(" onclick=") && !html.contains(" style="),
            "{page}"
        );
        for external in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
            assert!(
                !html.contains(external),
                "{page}: nothing from elsewhere (no CDN)"
            );
        }
    }
    let (_, admin, _) = fetch(&s, "/admin").await;
    let csp = header(&admin, CONTENT_SECURITY_POLICY);
    assert_eq!(directive(csp, "frame-ancestors"), "'none'");
    assert_eq!(header(&admin, "x-frame-options"), "DENY");
    let (_, desktop, _) = fetch(&s, "/desktop").await;
    let csp = header(&desktop, CONTENT_SECURITY_POLICY);
    assert_eq!(
        directive(csp, "frame-ancestors"),
        "'none'",
        "no origin allowed yet"
    );
}

#[tokio::test]
async fn assets_are_embedded_typed_and_revalidated() {
    let s = TestServer::start().await;
    for (file, media) in [
        ("common.js", "text/javascript"),
        ("desktop.js", "text/javascript"),
        ("admin.js", "text/javascript"),
        ("common.css", "text/css"),
        ("desktop.css", "text/css"),
        ("admin.css", "text/css"),
        ("icons.svg", "image/svg+xml"),
    ] {
        let (status, headers, body) = fetch(&s, &format!("/ui/{file}")).await;
        assert_eq!(status, 200, "{file}");
        assert!(header(&headers, CONTENT_TYPE).starts_with(media), "{file}");
        assert!(!body.is_empty());
        let etag = header(&headers, "etag").to_owned();
        assert!(etag.starts_with('"'), "{file} has an ETag");
        let again = s
            .http
            .get(format!("{}/ui/{file}", s.url))
            .header("if-none-match", &etag)
            .send()
            .await
            .expect("sent");
        assert_eq!(again.status().as_u16(), 304, "{file} revalidates");
    }
    let (status, _, _) = fetch(&s, "/ui/../Cargo.toml").await;
    assert_eq!(status, 404);
    let (status, _, _) = fetch(&s, "/ui/nothing.js").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn every_api_answer_is_no_store() {
    let s = TestServer::start().await;
    let customer = s
        .customer(s.lab(), json!({"Context_First_Name": "Ana"}))
        .await;
    for (method, path, ok) in [
        (Method::GET, format!("/v1/customers/{customer}"), 200),
        (
            Method::GET,
            format!("/v1/customers/{customer}/timeline"),
            200,
        ),
        (Method::GET, "/v1/fields".to_owned(), 200),
        (Method::GET, "/v1/sessions/current".to_owned(), 200),
        (Method::GET, "/v1/status".to_owned(), 200),
        (Method::GET, "/v1/customers/not-an-id".to_owned(), 400),
    ] {
        let r = s.call(method, &path, Some(s.lab()), None).await;
        r.expect(ok);
        assert_eq!(header(&r.headers, CACHE_CONTROL), "no-store", "{path}");
    }
    let search = s
        .post(
            s.lab(),
            "/v1/customers/search",
            json!({"terms": {"id": [customer]}}),
        )
        .await;
    search.expect(200);
    assert_eq!(header(&search.headers, CACHE_CONTROL), "no-store");
}

/// Signs in `name` and returns the session cookie (`name=value`) and the CSRF token.
async fn session(s: &TestServer, name: &str, password: &str) -> (String, String) {
    let r = s
        .http
        .post(format!("{}/v1/sessions", s.url))
        .json(&json!({"org": "default", "partition": "lab", "name": name, "password": password}))
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status().as_u16(), 201);
    let cookie = header(r.headers(), "set-cookie")
        .split(';')
        .next()
        .unwrap_or("")
        .to_owned();
    let body: serde_json::Value = r.json().await.expect("json");
    (cookie, body["csrfToken"].as_str().unwrap_or("").to_owned())
}

#[tokio::test]
async fn a_reloaded_page_gets_its_sessions_csrf_token_and_name_again() {
    let s = TestServer::start().await;
    s.post(
        s.lab(),
        "/v1/users",
        json!({"name": "ana", "role": "agent", "password": "correct horse battery"}),
    )
    .await
    .expect(201);
    let (cookie, csrf) = session(&s, "ana", "correct horse battery").await;
    let who = s
        .http
        .get(format!("{}/v1/sessions/current", s.url))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("sent");
    let who: serde_json::Value = who.json().await.expect("json");
    assert_eq!(who["name"], "ana");
    assert_eq!(who["orgName"], "default");
    assert_eq!(who["csrfToken"], csrf, "the same token as at sign-in");
    // It works for an unsafe request; another session's token does not.
    let create = |token: String| {
        s.http
            .post(format!("{}/v1/customers", s.url))
            .header("cookie", &cookie)
            .header("x-csrf-token", token)
            .json(&json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": "Bo"}}))
            .send()
    };
    assert_eq!(create(csrf).await.expect("sent").status().as_u16(), 201);
    let (_, other) = session(&s, "ana", "correct horse battery").await;
    assert_eq!(create(other).await.expect("sent").status().as_u16(), 403);
    // A key has no CSRF token to give.
    let key = s.get(s.lab(), "/v1/sessions/current").await;
    key.expect(200);
    assert!(key.body.get("csrfToken").is_none());
    assert_eq!(key.str("/name"), "lab admin");
}

#[tokio::test]
async fn admins_list_the_origins_allowed_to_frame_the_desktop() {
    let s = TestServer::start().await;
    let admin = s.client(s.lab());
    assert_eq!(
        admin.embedding().await.expect("get"),
        EmbeddingSettings::default()
    );
    let saved = admin
        .set_embedding(&EmbeddingSettings {
            allowed_origins: vec![
                "https://Desk.Example.com/".into(),
                "http://127.0.0.1:9000".into(),
                "https://desk.example.com".into(),
            ],
        })
        .await
        .expect("set");
    assert_eq!(
        saved.allowed_origins,
        vec!["https://desk.example.com", "http://127.0.0.1:9000"],
        "normalized, without duplicates"
    );
    // The other partition's admin sees the organization's list.
    assert_eq!(s.client(s.prod()).embedding().await.expect("get"), saved);
    let (_, headers, html) = fetch(&s, "/desktop").await;
    let csp = header(&headers, CONTENT_SECURITY_POLICY);
    // Every organization's origins, sorted.
    assert_eq!(
        directive(csp, "frame-ancestors"),
        "http://127.0.0.1:9000 https://desk.example.com"
    );
    assert!(html.contains(
        r#"<meta name="contextd-embed-origins" content="http://127.0.0.1:9000 https://desk.example.com">"#
    ));
    let (_, admin_page, _) = fetch(&s, "/admin").await;
    assert_eq!(
        directive(
            header(&admin_page, CONTENT_SECURITY_POLICY),
            "frame-ancestors"
        ),
        "'none'",
        "the console is never framed"
    );

    // Bad origins are refused and change nothing; the change is audited.
    for bad in [
        "desk.example.com",
        "https://a.example/path",
        "https://a.example; script-src *",
    ] {
        invalid(
            admin
                .set_embedding(&EmbeddingSettings {
                    allowed_origins: vec![bad.into()],
                })
                .await,
            "allowedOrigins[0]",
        );
    }
    assert_eq!(admin.embedding().await.expect("get"), saved);
    let audit = s.get(s.lab(), "/v1/audit?action=settings.embedding").await;
    audit.expect(200);
    assert_eq!(audit.at("/items").as_array().map(Vec::len), Some(1));

    // Agents may neither read nor change it, but their desktop learns its own organization's
    // list (and only it) to check the host's messages against.
    let (_, agent) = crate::support::key(&admin, contextd_core::auth::Role::Agent).await;
    forbidden(s.client(&agent).embedding().await);
    forbidden(s.client(&agent).set_embedding(&saved).await);
    let who = s.client(&agent).whoami().await.expect("whoami");
    assert_eq!(who.embed_origins, saved.allowed_origins);
    let other = s
        .context
        .create_org("other", &s.url)
        .await
        .expect("another org");
    let other_admin = s.client(&other.lab_admin_token);
    other_admin
        .set_embedding(&EmbeddingSettings {
            allowed_origins: vec!["https://other.example".into()],
        })
        .await
        .expect("set");
    assert_eq!(
        s.client(&agent)
            .whoami()
            .await
            .expect("whoami")
            .embed_origins,
        saved.allowed_origins,
        "another organization's hosts are not this one's"
    );
    let (_, headers, _) = fetch(&s, "/desktop").await;
    assert!(
        directive(header(&headers, CONTENT_SECURITY_POLICY), "frame-ancestors")
            .contains("https://other.example"),
        "framing is allowed for every organization's hosts (the page is served before sign-in)"
    );
}

#[tokio::test]
async fn live_statistics_are_for_admins() {
    let s = TestServer::start().await;
    let admin = s.client(s.lab());
    new_customer(&admin, json!({"Context_First_Name": "Ana"})).await;
    let stats = admin.live_stats().await.expect("stats");
    let create = &stats.operations["customer.create"];
    assert!(create["count"].as_u64().unwrap_or(0) >= 1, "{stats:?}");
    let (_, agent) = crate::support::key(&admin, contextd_core::auth::Role::Agent).await;
    forbidden(s.client(&agent).live_stats().await);
}

#[tokio::test]
async fn activities_tagged_for_an_agent_reach_that_agents_stream() {
    let s = TestServer::start().await;
    let c = s.client(s.lab());
    let customer = new_customer(&c, json!({"Context_First_Name": "Ana"})).await;
    let filter = EventFilter {
        types: vec![EventType::Created],
        addressed_to: Some("ana".into()),
        ..EventFilter::default()
    };
    let mut events = c.events(filter, None);
    events.connected().await.expect("connected");
    let activity =
        |tags: Vec<&str>| input(json!({"customerId": customer, "mediaType": "chat", "tags": tags}));
    c.create(contextd_proto::Kind::Activity, &activity(vec!["agent:bo"]))
        .await
        .expect("for bo");
    let for_ana = c
        .create(
            contextd_proto::Kind::Activity,
            &activity(vec!["vip", "agent:ana"]),
        )
        .await
        .expect("for ana");
    let event = tokio::time::timeout(std::time::Duration::from_secs(10), events.next())
        .await
        .expect("an event in time")
        .expect("stream open")
        .expect("event");
    assert_eq!(event.object_id, for_ana.id, "only ana's activity");
    assert_eq!(event.addressed_to.as_deref(), Some("ana"));
}
