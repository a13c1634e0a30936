//! Browser tests (issue 13): Debian's headless Chromium, driven through chromedriver
//! (WebDriver), against a server on port 0 — the agent desktop, its embedding in a host page
//! through `postMessage`, and the admin console. Each saves a screenshot of the pages it
//! visits under `$CARGO_TARGET_TMPDIR/screenshots/` (the README's pictures come from there).
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`apt-get install chromium
//! chromium-driver`; `.ci/run` installs them).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use contextd_client::Client;
use contextd_proto::access::{NewUser, Role};
use contextd_proto::object::{SearchRequest, State};
use contextd_proto::system::EmbeddingSettings;
use contextd_proto::{ContextObject, Kind, ObjectId};
use fantoccini::{ClientBuilder, Locator};
use serde_json::{json, Value};

use crate::support::{input, new_customer, patch, search, TestServer};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long a page may take to show what a step waits for (a slow CI machine, debug build).
const PATIENCE: Duration = Duration::from_secs(20);
const PASSWORD: &str = "correct horse battery";
/// The WebDriver key code of Enter.
const ENTER: char = '\u{e007}';

/// A headless Chromium under its own chromedriver; both are killed on drop.
struct Browser {
    web: fantoccini::Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that drop ends Chromium's processes too.
            .process_group(0)
            .spawn()
            .expect("chromedriver runs (apt-get install chromium chromium-driver)");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + PATIENCE;
        while http.get(format!("{url}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not answer");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        // The flags keep Chromium off the network it can't reach here (DESIGN: no downloads).
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,800",
            &format!("--user-data-dir={}", profile.path().display()),
        ];
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        });
        let Value::Object(caps) = caps else {
            unreachable!("a JSON object")
        };
        let web = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a Chromium session");
        Self {
            web,
            driver,
            _profile: profile,
        }
    }

    async fn goto(&self, url: &str) {
        self.web.goto(url).await.expect("navigate");
    }

    /// Waits until `css` matches a displayed element.
    async fn shown(&self, css: &str) -> fantoccini::elements::Element {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(e) = self.web.find(Locator::Css(css)).await {
                if e.is_displayed().await.unwrap_or(false) {
                    return e;
                }
            }
            assert!(Instant::now() < deadline, "{css} never showed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the script `expression` (JavaScript) is true in the page.
    async fn until(&self, expression: &str, what: &str) {
        let script = format!("return !!({expression});");
        let deadline = Instant::now() + PATIENCE;
        while self.web.execute(&script, vec![]).await.ok() != Some(Value::Bool(true)) {
            assert!(
                Instant::now() < deadline,
                "never true: {what} ({expression})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn text(&self, css: &str) -> String {
        self.shown(css).await.text().await.expect("text")
    }

    async fn click(&self, css: &str) {
        self.shown(css).await.click().await.expect("click");
    }

    async fn fill(&self, css: &str, text: &str) {
        let e = self.shown(css).await;
        e.clear().await.expect("clear");
        e.send_keys(text).await.expect("type");
    }

    async fn select(&self, css: &str, value: &str) {
        self.shown(css)
            .await
            .select_by_value(value)
            .await
            .expect("select");
    }

    /// Signs in on the form the page shows (desktop and console alike).
    async fn sign_in(&self, partition: &str, name: &str) {
        self.fill("#signin-org", "default").await;
        self.select("#signin-partition", partition).await;
        self.fill("#signin-name", name).await;
        self.fill("#signin-password", PASSWORD).await;
        self.click("#signin-submit").await;
    }

    /// Signs in with the keyboard alone: Enter in the password field submits the form.
    async fn sign_in_by_keyboard(&self, partition: &str, name: &str) {
        self.fill("#signin-org", "default").await;
        self.select("#signin-partition", partition).await;
        self.fill("#signin-name", name).await;
        self.fill("#signin-password", &format!("{PASSWORD}{ENTER}"))
            .await;
    }

    /// Asserts that every visible form control of the page has a label (a `<label>`,
    /// `aria-label` or `aria-labelledby`; a button its text), naming those that don't.
    async fn assert_labelled(&self, what: &str) {
        let script = "return [...document.querySelectorAll('input:not([type=hidden]),select,textarea,button')]
            .filter(e => e.getClientRects().length > 0)
            .filter(e => e.tagName === 'BUTTON'
                ? !(e.textContent.trim() || e.getAttribute('aria-label') || e.getAttribute('aria-labelledby'))
                : !((e.labels && e.labels.length) || e.getAttribute('aria-label') || e.getAttribute('aria-labelledby')))
            .map(e => e.id || e.name || e.outerHTML.slice(0, 100));";
        let unlabelled = self.web.execute(script, vec![]).await.expect("script");
        assert_eq!(unlabelled, json!([]), "{what}: controls without a label");
    }

    /// Asserts that the page needs no sideways scrolling at its current width.
    async fn assert_fits(&self, what: &str) {
        let script = "const d = document.documentElement; return [d.scrollWidth, d.clientWidth];";
        let sizes = self.web.execute(script, vec![]).await.expect("script");
        let (scroll, client) = (
            sizes[0].as_u64().unwrap_or(0),
            sizes[1].as_u64().unwrap_or(0),
        );
        assert!(
            scroll <= client + 1,
            "{what}: {scroll} px wide in {client} px"
        );
    }

    /// Saves a PNG of the page as `name.png` in the screenshots folder.
    async fn shot(&self, name: &str) {
        let png = self.web.screenshot().await.expect("screenshot");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&dir).expect("screenshots dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    async fn close(self) {
        let _ = self.web.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.wait();
    }
}

async fn add_user(admin: &Client, name: &str, role: Role) {
    admin
        .create_user(&NewUser {
            name: name.into(),
            role,
            password: PASSWORD.into(),
        })
        .await
        .expect("user");
}

/// Polls the object until `done` holds.
async fn eventually(c: &Client, kind: Kind, id: ObjectId, done: impl Fn(&ContextObject) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let o = c.get(kind, id).await.expect("read");
        if done(&o) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the page's change never arrived: {o:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls a search until it finds something.
async fn eventually_found(c: &Client, kind: Kind, request: &SearchRequest, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while c
        .search(kind, request)
        .await
        .expect("search")
        .items
        .unwrap_or_default()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "{what} never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The motorcycle customer with an open and a closed request and a call to move.
struct Seed {
    customer: ObjectId,
    open: ObjectId,
    closed: ObjectId,
    voice: ObjectId,
}

async fn seed(c: &Client) -> Seed {
    let customer = new_customer(
        c,
        json!({"Context_First_Name": "Erik", "Context_Last_Name": "Lind",
               "Context_Mobile_Phone": "+1 (555) 010-0001", "Context_Home_Email": "erik@example.com"}),
    )
    .await;
    let request = |title: &str| {
        input(
            json!({"customerId": customer, "fieldsets": ["cisco.base.request"],
                     "data": {"Context_Title": title}}),
        )
    };
    let open = c
        .create(Kind::Request, &request("Service appointment"))
        .await
        .expect("open");
    let closed = c
        .create(Kind::Request, &request("Old recall"))
        .await
        .expect("closed");
    let close = patch(json!({"state": "closed"}));
    let closed = c
        .patch(Kind::Request, closed.id, &close, None)
        .await
        .expect("close");
    assert_eq!(closed.state, State::Closed);
    c.create(
        Kind::Activity,
        &input(json!({"parentId": open.id, "mediaType": "chat",
        "fieldsets": ["cisco.base.pod"], "data": {"Context_Notes": "Booked for Tuesday"}})),
    )
    .await
    .expect("chat");
    c.create(Kind::Activity, &input(json!({"customerId": customer, "mediaType": "web",
        "fieldsets": ["cisco.base.pod"], "data": {"Context_POD_Activity_Link": "https://dealer.example/service"}})))
        .await
        .expect("web");
    let voice = c
        .create(
            Kind::Activity,
            &input(json!({"customerId": customer, "mediaType": "voice",
            "fieldsets": ["cisco.base.pod"], "data": {"Context_Notes": "Called about the fault"}})),
        )
        .await
        .expect("voice");
    Seed {
        customer,
        open: open.id,
        closed: closed.id,
        voice: voice.id,
    }
}

#[tokio::test]
async fn an_agent_finds_a_caller_sees_the_journey_gets_a_screen_pop_and_works_the_case() {
    let s = TestServer::start().await;
    let admin = s.client(s.lab());
    add_user(&admin, "ana", Role::Agent).await;
    let seed = seed(&admin).await;
    let b = Browser::start().await;

    // Sign in.
    b.goto(&format!("{}/desktop", s.url)).await;
    b.shown("#signin").await;
    b.assert_labelled("the desktop's sign-in").await;
    b.shot("desktop-sign-in").await;
    b.sign_in_by_keyboard("lab", "ana").await;
    b.shown("#search-input").await;
    assert!(b.text("#user-name").await.contains("ana"));

    // Look up by phone, written differently than stored (Enter searches): one hit opens the card.
    b.fill("#search-input", &format!("+1 555 010 0001{ENTER}"))
        .await;
    b.until(
        "document.querySelector('#customer-name')?.textContent.includes('Erik')",
        "the customer card opens",
    )
    .await;
    // The timeline: requests and activities with their channel icons.
    b.until(
        "document.querySelectorAll('#timeline li.entry').length >= 5",
        "the timeline lists the journey",
    )
    .await;
    for media in ["chat", "web", "voice"] {
        b.shown(&format!(
            "#timeline li.entry[data-media-type='{media}'] svg use"
        ))
        .await;
    }
    assert!(b.text("#timeline").await.contains("Service appointment"));
    b.assert_labelled("the desktop with a customer open").await;
    b.assert_fits("the desktop at 1280 px").await;
    b.shot("desktop").await;

    // Screen pop: an SMS written by the chat server appears live, without a reload.
    let marker: String = b
        .web
        .execute("window.__notReloaded = true; return 'set';", vec![])
        .await
        .expect("marker")
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(marker, "set");
    let sms = admin
        .create(Kind::Activity, &input(json!({"parentId": seed.open, "mediaType": "sms",
            "fieldsets": ["cisco.base.pod"], "data": {"Context_Notes": "Can we move it to Thursday?"}})))
        .await
        .expect("sms");
    b.shown("#screen-pop").await;
    assert!(b.text("#screen-pop-text").await.contains("sms"));
    b.shown(&format!("#timeline li.entry[data-id='{}']", sms.id))
        .await;
    b.until("window.__notReloaded === true", "no reload").await;
    b.shot("desktop-screen-pop").await;

    // Add a note to the call.
    let call = format!("#timeline li.entry[data-id='{}']", seed.voice);
    b.click(&format!("{call} button.add-note")).await;
    b.fill(
        &format!("{call} form.note-form textarea[name=note]"),
        "Prefers Thursday mornings",
    )
    .await;
    b.click(&format!("{call} form.note-form button[type=submit]"))
        .await;
    eventually(&admin, Kind::Activity, seed.voice, |o| {
        o.data["Context_Notes"]
            .as_str()
            .is_some_and(|n| n.contains("Prefers Thursday mornings"))
    })
    .await;

    // Move the call: into the closed request it is refused, with the reason shown; into the
    // open one it moves.
    b.click(&format!("{call} button.move")).await;
    let form = format!("{call} form.move-form");
    b.select(
        &format!("{form} select[name=target]"),
        &seed.closed.to_string(),
    )
    .await;
    b.click(&format!("{form} button[type=submit]")).await;
    b.assert_labelled("the desktop with the move form open")
        .await;
    let refusal = b.text(&format!("{form} .error")).await;
    assert!(refusal.contains("closed"), "the reason is shown: {refusal}");
    assert_eq!(
        admin
            .get(Kind::Activity, seed.voice)
            .await
            .expect("read")
            .parent_id,
        None
    );
    b.select(
        &format!("{form} select[name=target]"),
        &seed.open.to_string(),
    )
    .await;
    b.click(&format!("{form} button[type=submit]")).await;
    eventually(&admin, Kind::Activity, seed.voice, |o| {
        o.parent_id == Some(seed.open)
    })
    .await;

    // Open directly by the caller's number, any format.
    b.goto(&format!("{}/desktop?phone=15550100001", s.url))
        .await;
    b.until(
        "document.querySelector('#customer-name')?.textContent.includes('Erik')",
        "?phone= opens the caller",
    )
    .await;

    // Comment on the SMS, and open a new request for the customer.
    let sms_entry = format!("#timeline li.entry[data-id='{}']", sms.id);
    b.click(&format!("{sms_entry} button.add-comment")).await;
    b.fill(
        &format!("{sms_entry} form.comment-form textarea[name=comment]"),
        "Confirmed by phone",
    )
    .await;
    b.click(&format!(
        "{sms_entry} form.comment-form button[type=submit]"
    ))
    .await;
    let comments = search(json!({"terms": {"parentId": [sms.id.to_string()]}}));
    eventually_found(&admin, Kind::Detail, &comments, "the comment").await;
    b.click("#new-request").await;
    b.fill("#new-request-title", "Tyre change").await;
    b.click("#new-request-submit").await;
    let requests = search(
        json!({"terms": {"customerId": [seed.customer.to_string()], "Context_Title": ["Tyre change"]}, "match": "all"}),
    );
    eventually_found(&admin, Kind::Request, &requests, "the new request").await;

    // An unknown visitor's chat becomes a customer from its source fields.
    let visitor = admin
        .create(
            Kind::Activity,
            &input(json!({"mediaType": "chat", "fieldsets": ["cisco.base.pod"],
            "data": {"Context_POD_Source_Cust_Name": "Maria Grazia Rossi",
                     "Context_POD_Source_Email": "mg@example.com",
                     "Context_POD_Source_Phone": "+39 02 1234 5678"}})),
        )
        .await
        .expect("visitor chat");
    b.goto(&format!("{}/desktop?podId={}", s.url, visitor.id))
        .await;
    b.click(&format!(
        "#timeline li.entry[data-id='{}'] button.create-customer",
        visitor.id
    ))
    .await;
    eventually(&admin, Kind::Activity, visitor.id, |o| {
        o.customer_id.is_some()
    })
    .await;
    let linked = admin.get(Kind::Activity, visitor.id).await.expect("read");
    let made = admin
        .get(Kind::Customer, linked.customer_id.expect("linked"))
        .await
        .expect("the new customer");
    for (field, value) in [
        ("Context_First_Name", "Maria Grazia"),
        ("Context_Last_Name", "Rossi"),
        ("Context_Home_Email", "mg@example.com"),
        ("Context_Mobile_Phone", "+39 02 1234 5678"),
    ] {
        assert_eq!(made.data[field], value, "{field}");
    }

    // Sign out: back to the sign-in form, and the session is gone server-side.
    b.click("#signout").await;
    b.shown("#signin").await;
    b.goto(&format!("{}/desktop?customerId={}", s.url, seed.customer))
        .await;
    b.shown("#signin").await;
    b.close().await;
}

#[tokio::test]
async fn the_card_is_labelled_and_edited_and_the_timeline_filters_pages_and_resumes_after_a_restart(
) {
    let mut s = TestServer::start().await;
    let admin = s.client(s.lab());
    add_user(&admin, "ana", Role::Agent).await;
    let customer = new_customer(
        &admin,
        json!({"Context_First_Name": "Erik", "Context_Mobile_Phone": "+1 (555) 010-0002"}),
    )
    .await;
    // More than a page (50) of chats, and one call.
    for i in 0..60 {
        admin
            .create(
                Kind::Activity,
                &input(json!({"customerId": customer, "mediaType": "chat",
                "fieldsets": ["cisco.base.pod"], "data": {"Context_Notes": format!("chat {i}")}})),
            )
            .await
            .expect("chat");
    }
    admin
        .create(
            Kind::Activity,
            &input(json!({"customerId": customer, "mediaType": "voice"})),
        )
        .await
        .expect("voice");
    let b = Browser::start().await;
    b.goto(&format!("{}/desktop?customerId={customer}", s.url))
        .await;
    b.sign_in("lab", "ana").await;
    b.until(
        "document.querySelector('#customer-name')?.textContent.includes('Erik')",
        "the customer opens",
    )
    .await;

    // Labels come from the fields' translations, not their ids.
    let card = b.text("#customer-card").await;
    assert!(
        card.contains("Mobile phone") && !card.contains("Context_Mobile_Phone"),
        "{card}"
    );

    // A page at a time: scrolling to the end loads the rest.
    let entries = "document.querySelectorAll('#timeline li.entry').length";
    b.until(&format!("{entries} === 50"), "the first page")
        .await;
    b.web
        .execute(
            "document.querySelector('#timeline-sentinel').scrollIntoView();",
            vec![],
        )
        .await
        .expect("scroll");
    b.until(&format!("{entries} === 61"), "the next page, on scrolling")
        .await;

    // Channel filters.
    b.click("#filters button[data-media-type='voice']").await;
    b.until(
        "[...document.querySelectorAll('#timeline li.entry')].every(e => e.dataset.mediaType === 'voice') \
         && document.querySelectorAll('#timeline li.entry').length === 1",
        "only the call",
    )
    .await;

    // Edit an allowed field of the card.
    b.click("#edit-customer").await;
    b.fill("#cf-Context_First_Name", "Erika").await;
    b.click("#save-customer").await;
    eventually(&admin, Kind::Customer, customer, |o| {
        o.data["Context_First_Name"] == "Erika"
    })
    .await;
    b.until(
        "document.querySelector('#customer-name')?.textContent.includes('Erika')",
        "the card shows the change",
    )
    .await;

    // The server restarts and an SMS is written at once, most likely before the page's stream
    // is back (the browser waits a second between attempts): it still pops up, because the
    // stream resumes by Last-Event-ID where a new stream would start after it.
    b.shown("#live[data-state='live']").await;
    s.restart().await;
    let sms = s
        .client(s.lab())
        .create(Kind::Activity, &input(json!({"customerId": customer, "mediaType": "sms",
            "fieldsets": ["cisco.base.pod"], "data": {"Context_Notes": "written while reconnecting"}})))
        .await
        .expect("sms");
    b.shown("#screen-pop").await;
    assert!(b.text("#screen-pop-text").await.contains("sms"));
    b.click("#filters button[data-media-type='all']").await;
    b.shown(&format!("#timeline li.entry[data-id='{}']", sms.id))
        .await;
    b.close().await;
}

#[tokio::test]
async fn a_host_desktop_drives_the_embedded_gadget_through_post_message() {
    let s = TestServer::start().await;
    let admin = s.client(s.lab());
    add_user(&admin, "ana", Role::Agent).await;
    let seed = seed(&admin).await;
    // The sample host page of docs/, served from another origin of the same site.
    let host_origin = serve_host_page().await;
    admin
        .set_embedding(&EmbeddingSettings {
            allowed_origins: vec![host_origin.clone()],
        })
        .await
        .expect("allow the host");

    let b = Browser::start().await;
    b.goto(&format!("{host_origin}/?contextd={}", s.url)).await;
    let frame = b.shown("#gadget").await;
    frame.enter_frame().await.expect("into the gadget");
    b.shown("#signin").await;
    b.until("document.body.classList.contains('embed')", "embed mode")
        .await;
    b.sign_in("lab", "ana").await;
    b.shown("#search-input").await;
    b.assert_fits("the desktop in a 400-px iframe").await;
    b.web.enter_parent_frame().await.expect("back to the host");

    // A call arrives with the POD id: the gadget shows the caller and tells the host.
    b.fill("#pod-id", &seed.voice.to_string()).await;
    b.click("#answer").await;
    b.until(
        &format!(
            "document.querySelector('#host-log').textContent.includes('customerShown {}')",
            seed.customer
        ),
        "the gadget reports the customer shown",
    )
    .await;
    // A new activity for the shown customer pops in the gadget and is reported to the host.
    let chat = admin
        .create(
            Kind::Activity,
            &input(json!({"customerId": seed.customer, "mediaType": "chat"})),
        )
        .await
        .expect("chat");
    b.until(
        &format!(
            "document.querySelector('#host-log').textContent.includes('activityAdded {}')",
            chat.id
        ),
        "the gadget reports the new activity",
    )
    .await;
    // The host can also search by the caller's number.
    b.fill("#pod-id", "").await;
    b.fill("#caller", "1-555-010-0001").await;
    b.click("#answer").await;
    b.shot("embedded").await;

    // A host another organization allowed may frame the page (it is served before sign-in),
    // but this organization's signed-in agent obeys only this organization's hosts.
    let stranger = serve_host_page().await;
    let other = s.context.create_org("other", &s.url).await.expect("org");
    s.client(&other.lab_admin_token)
        .set_embedding(&EmbeddingSettings {
            allowed_origins: vec![stranger.clone()],
        })
        .await
        .expect("the other org allows its host");
    b.goto(&format!("{stranger}/?contextd={}", s.url)).await;
    let frame = b.shown("#gadget").await;
    frame.enter_frame().await.expect("into the gadget");
    b.shown("#search-input").await;
    b.web.enter_parent_frame().await.expect("back to the host");
    b.fill("#pod-id", &seed.voice.to_string()).await;
    b.click("#answer").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = b.text("#host-log").await;
    assert!(
        !log.contains("customerShown"),
        "a stranger host drove the desktop: {log}"
    );
    let frame = b.shown("#gadget").await;
    frame.enter_frame().await.expect("into the gadget");
    let shown = b
        .web
        .execute(
            "return document.querySelector('#customer-name')?.textContent || ''",
            vec![],
        )
        .await
        .expect("script");
    assert!(
        !shown.as_str().unwrap_or_default().contains("Erik"),
        "shown: {shown}"
    );
    b.close().await;
}

/// Serves the sample host page of docs/ on a port of its own (another origin of the same
/// site as the server); returns its origin.
async fn serve_host_page() -> String {
    let host = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let origin = format!("http://{}", host.local_addr().expect("addr"));
    let page = include_str!("../../../../docs/embed-host.html");
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || async move { axum::response::Html(page) }),
    );
    tokio::spawn(async move { axum::serve(host, app).await });
    origin
}

#[tokio::test]
async fn an_admin_adds_a_field_in_the_console() {
    let s = TestServer::start().await;
    let admin = s.client(s.lab());
    add_user(&admin, "root", Role::Admin).await;
    let b = Browser::start().await;
    b.goto(&format!("{}/admin#fields", s.url)).await;
    b.sign_in("lab", "root").await;
    b.shown("#fields-table tr[data-id='Context_First_Name']")
        .await;
    for section in [
        "fields",
        "fieldsets",
        "users",
        "keys",
        "grants",
        "connectors",
        "webhooks",
        "audit",
        "status",
        "settings",
    ] {
        b.click(&format!("nav#sections a[data-section='{section}']"))
            .await;
        b.shown(&format!("#section-{section}")).await;
        b.assert_labelled(&format!("the console's {section}")).await;
        b.assert_fits(&format!("the console's {section} at 1280 px"))
            .await;
    }
    b.click("nav#sections a[data-section='fields']").await;

    b.fill("#field-id", "Loyalty_Tier").await;
    b.fill("#field-description", "Loyalty programme tier").await;
    b.select("#field-datatype", "string").await;
    b.select("#field-classification", "UNENCRYPTED").await;
    b.fill("#field-enum", "gold\nsilver").await;
    b.fill(
        "#field-translations",
        "en-US=Loyalty tier\nit-IT=Livello fedeltà",
    )
    .await;
    b.click("#field-save").await;
    b.shown("#fields-table tr[data-id='Loyalty_Tier']").await;
    let field = admin.field("Loyalty_Tier").await.expect("the field exists");
    // Stored under the locale's canonical form (DESIGN §4: en-US and en_US are one locale).
    let label = |l: &str| field.translations.get(l).map(String::as_str);
    assert_eq!(
        label("en_US"),
        Some("Loyalty tier"),
        "{:?}",
        field.translations
    );
    assert_eq!(
        label("it_IT"),
        Some("Livello fedeltà"),
        "{:?}",
        field.translations
    );
    let values: Vec<&str> = field
        .enum_values
        .iter()
        .flatten()
        .map(|v| v.value.as_str())
        .collect();
    assert_eq!(values, ["gold", "silver"]);
    b.shot("admin").await;

    // Status and live statistics.
    b.goto(&format!("{}/admin#status", s.url)).await;
    b.shown("#stats-table").await;
    b.shot("admin-status").await;

    b.click("#signout").await;
    b.shown("#signin").await;
    b.close().await;
}
