//! Browser registration (issue item 2), driven as a browser would: no automatic redirects,
//! the session cookie carried from `set-cookie`, forms submitted with the fields the page
//! holds. The round trip register → connectionData works → deregister → it no longer does;
//! bad callback URLs; approvals bound to their session, parameters and age; who may approve;
//! the security headers.

use std::time::Duration;

use base64::Engine as _;
use contextd_client::proto::access::{NewUser, Role};
use contextd_client::proto::connection::ConnectionData;
use contextd_client::proto::connectors::{AppType, ConnectorState};
use contextd_client::{Client, Error, Settings};
use contextd_core::service::ContextConfig;
use contextd_proto::Partition;
use contextd_server::ServerConfig;
use reqwest::header::HeaderMap;
use reqwest::{StatusCode, Url};
use serde_json::json;

use crate::support::TestServer;

const PASSWORD: &str = "correct horse battery staple";
const CALLBACK: &str = "http://component.example/cb?x=1";

/// A page as a browser got it.
struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn location(&self) -> &str {
        assert_eq!(self.status, StatusCode::SEE_OTHER, "{}", self.body);
        self.header("location")
    }

    /// The `action` of the form whose action ends with `suffix`, and its hidden fields.
    fn form(&self, suffix: &str) -> (String, Vec<(String, String)>) {
        let start = self
            .body
            .split("<form ")
            .skip(1)
            .find(|f| attr(f, "action").is_some_and(|a| a.ends_with(suffix)))
            .unwrap_or_else(|| panic!("no form posting to …{suffix} in {}", self.body));
        let form = &start[..start.find("</form>").unwrap_or(start.len())];
        let action = attr(form, "action").unwrap_or_default();
        let hidden = form
            .split("<input ")
            .skip(1)
            .filter(|i| attr(i, "type").as_deref() == Some("hidden"))
            .map(|i| {
                (
                    attr(i, "name").unwrap_or_default(),
                    attr(i, "value").unwrap_or_default(),
                )
            })
            .collect();
        (action, hidden)
    }

    /// A hidden field of that form.
    fn hidden(&self, suffix: &str, name: &str) -> String {
        let (_, fields) = self.form(suffix);
        fields
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no hidden {name}"))
    }
}

/// The first `name="…"` attribute of a tag's text, unescaped.
fn attr(tag: &str, name: &str) -> Option<String> {
    let tag = format!(" {}", &tag[..tag.find('>')?]);
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let value = &tag[start..start + tag[start..].find('"')?];
    Some(
        value
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// A browser: its own cookie jar of one cookie, redirects followed by the test.
struct Browser {
    http: reqwest::Client,
    origin: String,
    cookie: Option<String>,
}

impl Browser {
    fn new(s: &TestServer) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        Self {
            http,
            origin: s.url.clone(),
            cookie: None,
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let request = match &self.cookie {
            Some(c) => request.header("cookie", format!("contextd_session={c}")),
            None => request,
        };
        let response = request.send().await.expect("sent");
        let status = response.status();
        let headers = response.headers().clone();
        for set in headers.get_all("set-cookie") {
            let set = set.to_str().expect("ascii cookie");
            assert!(
                set.contains("HttpOnly") && set.contains("SameSite=Strict"),
                "{set}"
            );
            let value = set
                .split(';')
                .next()
                .and_then(|c| c.strip_prefix("contextd_session="));
            self.cookie = value.map(str::to_owned);
        }
        let body = response.text().await.expect("body");
        Page {
            status,
            headers,
            body,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let url = format!("{}{path}", self.origin);
        let request = self.http.get(url);
        self.send(request).await
    }

    async fn post(&mut self, path: &str, form: &[(String, String)]) -> Page {
        let url = format!("{}{path}", self.origin);
        let request = self.http.post(url).form(form);
        self.send(request).await
    }

    /// Follows a same-origin redirect as a browser does.
    async fn follow(&mut self, page: &Page) -> Page {
        let location = page.location().to_owned();
        assert!(location.starts_with('/'), "a same-origin path: {location}");
        self.get(&location).await
    }

    /// Fills the sign-in form of `page` and sends it.
    async fn sign_in(&mut self, page: &Page, name: &str, password: &str) -> Page {
        let (action, mut fields) = page.form("/register/sign-in");
        fields.extend([
            ("org".to_owned(), "default".to_owned()),
            ("name".to_owned(), name.to_owned()),
            ("password".to_owned(), password.to_owned()),
        ]);
        self.post(&action, &fields).await
    }

    /// Opens `start`, signs in as `name` and follows back: the page an admin sees next.
    async fn open_signed_in(&mut self, start: &str, name: &str) -> Page {
        let page = self.get(start).await;
        let page = if page.body.contains("/register/sign-in") && self.cookie.is_none() {
            let signed_in = self.sign_in(&page, name, PASSWORD).await;
            self.follow(&signed_in).await
        } else {
            page
        };
        page
    }

    /// Submits the approval form of `page`, with `change` applied to its fields.
    async fn approve(
        &mut self,
        page: &Page,
        change: impl FnOnce(&mut Vec<(String, String)>),
    ) -> Page {
        let (action, mut fields) = page.form("/approve");
        change(&mut fields);
        self.post(&action, &fields).await
    }
}

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn register_url(callback: &str, app_type: &str) -> String {
    format!(
        "/register?callbackUrl={}&appType={app_type}",
        encode(callback)
    )
}

fn set(fields: &mut [(String, String)], name: &str, value: &str) {
    for (n, v) in fields.iter_mut() {
        if n == name {
            *v = value.to_owned();
        }
    }
}

async fn add_user(s: &TestServer, token: &str, name: &str, role: Role) {
    s.client(token)
        .create_user(&NewUser {
            name: name.into(),
            role,
            password: PASSWORD.into(),
        })
        .await
        .expect("user");
}

fn query_value(location: &str, name: &str) -> Option<String> {
    let url = Url::parse(location).expect("an absolute location");
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn sdk(connection_data: &str) -> Client {
    let settings = Settings::standard().with_timeout(Duration::from_millis(15_000));
    Client::from_connection_data(connection_data, settings).expect("an SDK client")
}

async fn connector_count(s: &TestServer) -> usize {
    s.client(s.prod()).connectors().await.expect("list").len()
}

#[tokio::test]
async fn a_browser_registers_a_component_and_deregisters_it() {
    let s = TestServer::start().await;
    add_user(&s, s.prod(), "ada", Role::Admin).await;
    let mut b = Browser::new(&s);

    let page = b.get(&register_url(CALLBACK, "voice")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("http://component.example"),
        "{}",
        page.body
    );
    let signed_in = b.sign_in(&page, "ada", PASSWORD).await;
    assert!(b.cookie.is_some(), "the session cookie is set");
    assert_eq!(signed_in.location(), register_url(CALLBACK, "voice"));

    let approval = b.follow(&signed_in).await;
    assert_eq!(approval.status, StatusCode::OK, "{}", approval.body);
    assert!(approval
        .body
        .contains("<p class=\"origin\">http://component.example</p>"));
    assert!(approval.body.contains("voice") && approval.body.contains("default"));
    assert!(!approval.hidden("/register/approve", "approval").is_empty());
    let done = b.approve(&approval, |_| {}).await;
    let location = done.location().to_owned();
    assert!(
        location.starts_with("http://component.example/cb?x=1&connectionData="),
        "{location}"
    );
    assert_eq!(done.header("cache-control"), "no-store");

    let data = query_value(&location, "connectionData").expect("connectionData");
    let who = sdk(&data).whoami().await.expect("the connectionData works");
    assert_eq!(who.partition, Partition::Production);
    let listed = s.client(s.prod()).connectors().await.expect("list");
    let connector = listed
        .iter()
        .find(|c| c.name == "voice component at component.example")
        .expect("the connector is listed");
    assert_eq!(connector.app_type, AppType::Voice);
    assert_eq!(connector.state, ConnectorState::Registered);
    let audit = s.get(s.prod(), "/v1/audit?action=connector.create").await;
    assert_eq!(
        audit.at("/items").as_array().map(Vec::len),
        Some(1),
        "audited once"
    );

    // Deregistration with the production clientId, as the component's deregistrationUrl says.
    let json = base64::engine::general_purpose::STANDARD
        .decode(&data)
        .expect("base64");
    let decoded: ConnectionData = serde_json::from_slice(&json).expect("connectionData JSON");
    let client_id = decoded.credentials.client_id;
    let start = format!(
        "/deregister?callbackUrl={}&clientId={client_id}",
        encode(CALLBACK)
    );
    let revoke = b.get(&start).await;
    assert_eq!(revoke.status, StatusCode::OK, "{}", revoke.body);
    assert!(revoke
        .body
        .contains("Revoke connector voice component at component.example?"));
    let done = b.approve(&revoke, |_| {}).await;
    assert_eq!(
        done.location(),
        "http://component.example/cb?x=1&result=deregistered"
    );
    assert!(
        matches!(sdk(&data).whoami().await, Err(Error::Unauthorized { .. })),
        "a revoked connectionData no longer works"
    );
    let listed = s.client(s.prod()).connectors().await.expect("list");
    assert!(listed
        .iter()
        .any(|c| c.id == connector.id && c.state == ConnectorState::Revoked));

    // Cancel links go back with error=access_denied; an unknown client id is a 404 page.
    let cancel = "http://component.example/cb?x=1&amp;error=access_denied";
    assert!(revoke.body.contains(cancel), "{}", revoke.body);
    let unknown = format!(
        "/deregister?callbackUrl={}&clientId={}",
        encode(CALLBACK),
        uuid::Uuid::now_v7()
    );
    assert_eq!(b.get(&unknown).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_links_get_a_400_page_that_reflects_nothing_unescaped() {
    let s = TestServer::start().await;
    let mut b = Browser::new(&s);
    let hostile = "http://\"><script>alert(1)</script>";
    let cases = [
        register_url("/relative/cb", "voice"),
        register_url("javascript:alert(1)", "voice"),
        register_url("ftp://x", "voice"),
        register_url("http://user:secret@component.example/", "voice"),
        "/register?appType=voice".to_owned(),
        "/register?callbackUrl=".to_owned(),
        register_url(hostile, "voice"),
        register_url(CALLBACK, "%3Cb%3E%22tv"),
        format!("{}&appType=chat", register_url(CALLBACK, "voice")),
        format!("/deregister?callbackUrl={}", encode(CALLBACK)),
        format!(
            "/deregister?callbackUrl={}&clientId=%3Cb%3E",
            encode(hostile)
        ),
    ];
    for path in &cases {
        let page = b.get(path).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            page.body
        );
        assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
        assert!(page.body.contains("not valid"), "{path}: {}", page.body);
        assert!(!page.body.contains("<script"), "{path}: {}", page.body);
        assert!(!page.body.contains("\"><"), "{path}: {}", page.body);
        assert!(!page.body.contains("<b>"), "{path}: {}", page.body);
        assert!(!page.body.contains("secret"), "{path}: {}", page.body);
    }
    let hostile_page = b.get(&register_url(hostile, "voice")).await;
    assert!(
        hostile_page
            .body
            .contains("http://&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"),
        "the input is shown escaped: {}",
        hostile_page.body
    );
    let relative = b.get(&register_url("/relative/cb", "voice")).await;
    assert!(relative.body.contains("absolute http or https URL"));
    let missing = b.get("/register?appType=voice").await;
    assert!(missing.body.contains("callbackUrl is missing"));
}

#[tokio::test]
async fn approvals_are_bound_to_their_session_their_parameters_and_their_origin() {
    let s = TestServer::start().await;
    add_user(&s, s.prod(), "ada", Role::Admin).await;
    let start = register_url(CALLBACK, "voice");
    let mut a = Browser::new(&s);
    let mut b = Browser::new(&s);
    let page_a = a.open_signed_in(&start, "ada").await;
    let page_b = b.open_signed_in(&start, "ada").await;
    assert_eq!(page_b.status, StatusCode::OK);
    let before = connector_count(&s).await;
    let expired = "This approval expired or is not yours";

    // A's token in B's session.
    let token_a = page_a.hidden("/register/approve", "approval");
    let stolen = b.approve(&page_b, |f| set(f, "approval", &token_a)).await;
    assert_eq!(stolen.status, StatusCode::FORBIDDEN);
    assert!(stolen.body.contains(expired), "{}", stolen.body);
    // A's token for another callback or app type, or without a token.
    let tampered = [
        ("callbackUrl", "http://evil.example/cb?x=1"),
        ("appType", "chat"),
        ("approval", ""),
    ];
    for (name, value) in tampered {
        let refused = a.approve(&page_a, |f| set(f, name, value)).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{name}");
        assert!(refused.body.contains(expired), "{name}");
    }
    // Without the session cookie.
    let mut stranger = Browser::new(&s);
    let refused = stranger.approve(&page_a, |_| {}).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // Sent from another site.
    let (action, fields) = page_a.form("/register/approve");
    let cross = a
        .send(
            a.http
                .post(format!("{}{action}", s.url))
                .header("origin", "http://evil.example")
                .form(&fields),
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN, "{}", cross.body);
    let cross = a
        .send(
            a.http
                .post(format!("{}{action}", s.url))
                .header("sec-fetch-site", "cross-site")
                .form(&fields),
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert_eq!(connector_count(&s).await, before, "nothing was created");

    // The genuine one, with a same-origin Origin, still works.
    let origin = s.url.clone();
    let ok = a
        .send(
            a.http
                .post(format!("{}{action}", s.url))
                .header("origin", origin)
                .header("sec-fetch-site", "same-origin")
                .form(&fields),
        )
        .await;
    assert!(ok.location().contains("connectionData="));
    assert_eq!(connector_count(&s).await, before + 1);
}

#[tokio::test]
async fn an_approval_expires() {
    let config = ServerConfig {
        // Long enough for a fresh approval on a busy machine, short enough to wait out.
        registration_approval_ttl: Duration::from_secs(3),
        ..ServerConfig::default()
    };
    let s = TestServer::start_with(ContextConfig::default(), config).await;
    add_user(&s, s.prod(), "ada", Role::Admin).await;
    let mut b = Browser::new(&s);
    let page = b
        .open_signed_in(&register_url(CALLBACK, "email"), "ada")
        .await;
    assert!(page.body.contains("valid for 3 seconds"), "{}", page.body);
    let before = connector_count(&s).await;
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let late = b.approve(&page, |_| {}).await;
    assert_eq!(late.status, StatusCode::FORBIDDEN);
    assert!(late.body.contains("start again"), "{}", late.body);
    // The way back is a fresh approval page.
    assert!(late.body.contains("Start again"));
    let again = b.get(&register_url(CALLBACK, "email")).await;
    let done = b.approve(&again, |_| {}).await;
    assert!(done.location().contains("connectionData="));
    assert_eq!(connector_count(&s).await, before + 1);
}

#[tokio::test]
async fn only_a_production_admin_can_approve() {
    let s = TestServer::start().await;
    add_user(&s, s.prod(), "agnes", Role::Agent).await;
    add_user(&s, s.lab(), "lab-ada", Role::Admin).await;
    let before = connector_count(&s).await;
    let start = register_url(CALLBACK, "desktop");

    // A production agent signs in through the form.
    let mut agent = Browser::new(&s);
    let page = agent.open_signed_in(&start, "agnes").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(page.body.contains("A production administrator is needed"));
    assert!(page.body.contains("agent of the production partition"));
    assert!(!page.body.contains("name=\"approval\""));

    // A lab admin signed in to the lab partition (through the API: the form signs in to
    // production, where this name does not exist).
    let mut lab = Browser::new(&s);
    let page = lab.get(&start).await;
    let refused = lab.sign_in(&page, "lab-ada", PASSWORD).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused
        .body
        .contains("Wrong organization, user name or password"));
    let session = lab
        .send(
            lab.http
                .post(format!("{}/v1/sessions", s.url))
                .json(&json!({"partition": "lab", "name": "lab-ada", "password": PASSWORD})),
        )
        .await;
    assert_eq!(session.status, StatusCode::CREATED, "{}", session.body);
    let page = lab.get(&start).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(
        page.body.contains("admin of the lab partition"),
        "{}",
        page.body
    );
    assert_eq!(connector_count(&s).await, before, "nothing was created");
}

#[tokio::test]
async fn a_wrong_password_shows_the_form_again_escaped() {
    let s = TestServer::start().await;
    let mut b = Browser::new(&s);
    let page = b.get(&register_url(CALLBACK, "chat")).await;
    let refused = b.sign_in(&page, "<b>eve\"", "wrong password!").await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        refused.body.contains("value=\"&lt;b&gt;eve&quot;\""),
        "{}",
        refused.body
    );
    assert!(
        !refused.body.contains("wrong password!"),
        "the password is never shown"
    );
    assert!(b.cookie.is_none());
    // The form still carries the flow.
    assert_eq!(refused.hidden("/register/sign-in", "appType"), "chat");
}

#[tokio::test]
async fn registration_pages_carry_the_security_headers() {
    let s = TestServer::start().await;
    add_user(&s, s.prod(), "ada", Role::Admin).await;
    let mut b = Browser::new(&s);
    let sign_in = b.get(&register_url(CALLBACK, "voice")).await;
    let invalid = b.get("/register").await;
    let approval = b
        .open_signed_in(&register_url(CALLBACK, "voice"), "ada")
        .await;
    for page in [&sign_in, &invalid, &approval] {
        let csp = page.header("content-security-policy");
        for directive in [
            "default-src 'none'",
            "style-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(directive), "{csp}");
        }
        assert!(!csp.contains("script-src"), "{csp}");
        assert_eq!(page.header("cache-control"), "no-store");
        assert_eq!(page.header("x-frame-options"), "DENY");
        assert_eq!(page.header("x-content-type-options"), "nosniff");
        assert_eq!(page.header("referrer-policy"), "no-referrer");
        assert!(!page.body.contains("<script") && !page.body.contains(" style="));
    }
    // Browsers check the redirect after a form against form-action: the approval page allows
    // the callback's origin, the others only their own.
    assert!(approval
        .header("content-security-policy")
        .contains("form-action 'self' http://component.example;"));
    assert!(sign_in
        .header("content-security-policy")
        .contains("form-action 'self';"));
    let css = b.get("/register/style.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert_eq!(css.header("content-type"), "text/css; charset=utf-8");
}
