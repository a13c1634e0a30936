//! The component-side registration resource, served on a real socket and driven over HTTP:
//! every state and URL rule of `GET`, every rule of `PUT`, both representations, the stores,
//! change notifications, the verdict cache and the service validator.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode as AxumStatus;
use axum::Router;
use base64::Engine as _;
use contextd_client::proto::connection::{ConnectionData, Credentials};
use contextd_client::proto::connectors::AppType;
use contextd_client::proto::OrgId;
use contextd_client::registration::{
    FileStore, MemoryStore, Registration, RegistrationState, RegistrationStatus, RegistrationStore,
    ServiceValidator, Validator, Verdict, DEFAULT_REF_URL,
};
use contextd_client::Settings;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::StatusCode;
use serde_json::{json, Value};

const SERVICE: &str = "https://context.example.com/ctx/";
const CALLBACK: &str = "https://component.example.com/registered?step=2";
const CALLBACK_ENCODED: &str = "https%3A%2F%2Fcomponent.example.com%2Fregistered%3Fstep%3D2";

/// A well-formed connectionData naming `service_url`, with production clientId `prod-id`.
fn connection_data(service_url: &str) -> String {
    let data = ConnectionData {
        service_url: service_url.to_owned(),
        org_id: OrgId::new(),
        credentials: Credentials {
            client_id: "prod-id".into(),
            client_secret: "prod-secret".into(),
        },
        credentials_lab_mode: Credentials {
            client_id: "lab-id".into(),
            client_secret: "lab-secret".into(),
        },
    };
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(&data).unwrap())
}

/// A validator answering `verdict`, counting its calls.
fn fixed(verdict: Verdict) -> (impl Validator, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let validator = move |_data: String| {
        seen.fetch_add(1, Ordering::SeqCst);
        let verdict = verdict.clone();
        async move { verdict }
    };
    (validator, calls)
}

fn registration(store: impl RegistrationStore, validator: impl Validator) -> Registration {
    Registration::new(store, validator)
        .service_url(SERVICE)
        .unwrap()
        .app_type(AppType::Voice)
}

/// Serves `registration` at its default refURL on a port of its own; the resource's URL.
async fn serve(registration: &Registration) -> String {
    let app = Router::new().nest(DEFAULT_REF_URL, registration.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}{DEFAULT_REF_URL}")
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        assert!(
            self.content_type.starts_with("application/json"),
            "{}",
            self.content_type
        );
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    fn status_json(&self) -> RegistrationStatus {
        serde_json::from_value(self.json()).unwrap()
    }

    fn xml(&self) -> &str {
        assert!(
            self.content_type.starts_with("application/xml"),
            "{}",
            self.content_type
        );
        &self.body
    }
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    Answer {
        status,
        content_type,
        body: response.text().await.unwrap(),
    }
}

/// `GET` with an optional callbackUrl (sent percent-encoded) and `Accept`.
async fn get(url: &str, callback: Option<&str>, accept: Option<&str>) -> Answer {
    let mut request = reqwest::Client::new().get(url);
    if let Some(callback) = callback {
        request = request.query(&[("callbackUrl", callback)]);
    }
    if let Some(accept) = accept {
        request = request.header(ACCEPT, accept);
    }
    send(request).await
}

async fn put_json(url: &str, body: Value) -> Answer {
    send(
        reqwest::Client::new()
            .put(url)
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_string()),
    )
    .await
}

async fn put_xml(url: &str, body: &str) -> Answer {
    send(
        reqwest::Client::new()
            .put(url)
            .header(CONTENT_TYPE, "application/xml")
            .body(body.to_owned()),
    )
    .await
}

fn xml_put_body(connection_data: &str) -> String {
    format!(
        "<contextServiceRegistration><connectionData>{connection_data}</connectionData></contextServiceRegistration>"
    )
}

fn xml(inner: &str) -> String {
    format!(
        "<contextServiceRegistration>{inner}<refURL>/unifiedconfig/config/contextservice</refURL></contextServiceRegistration>"
    )
}

// ---------------------------------------------------------------------------------------
// GET: states and URLs
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn not_registered_without_callback_gives_only_state_and_ref_url() {
    let (validator, calls) = fixed(Verdict::Valid);
    let url = serve(&registration(MemoryStore::new(), validator)).await;

    // No Accept: XML, as the original.
    let answer = get(&url, None, None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.xml(),
        xml("<state>notRegistered</state>"),
        "no URL but refURL"
    );

    let answer = get(&url, None, Some("application/json")).await;
    assert_eq!(
        answer.json(),
        json!({"state": "notRegistered", "refURL": "/unifiedconfig/config/contextservice"})
    );
    // An empty callbackUrl is no callbackUrl.
    let answer = get(&url, Some(""), None).await;
    assert_eq!(answer.xml(), xml("<state>notRegistered</state>"));
    assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing to validate");
}

#[tokio::test]
async fn not_registered_with_callback_gives_the_registration_url() {
    let (validator, _) = fixed(Verdict::Valid);
    let url = serve(&registration(MemoryStore::new(), validator)).await;
    let expected = format!(
        "https://context.example.com/ctx/register?callbackUrl={CALLBACK_ENCODED}&appType=voice"
    );

    let answer = get(&url, Some(CALLBACK), None).await;
    assert_eq!(
        answer.xml(),
        xml(&format!(
            "<state>notRegistered</state><registrationUrl>{}</registrationUrl>",
            expected.replace('&', "&amp;")
        ))
    );

    let status = get(&url, Some(CALLBACK), Some("application/json"))
        .await
        .status_json();
    assert_eq!(status.state, RegistrationState::NotRegistered);
    assert_eq!(status.registration_url.as_deref(), Some(expected.as_str()));
    assert_eq!(status.management_url, None);
    assert_eq!(status.deregistration_url, None);

    // The callbackUrl comes back intact from the registrationUrl's query.
    let registration_url = url::Url::parse(&expected).unwrap();
    let pairs: Vec<(String, String)> = registration_url.query_pairs().into_owned().collect();
    assert_eq!(
        pairs,
        vec![
            ("callbackUrl".to_owned(), CALLBACK.to_owned()),
            ("appType".to_owned(), "voice".to_owned())
        ]
    );
}

#[tokio::test]
async fn registered_without_callback_gives_the_management_url_only() {
    let (validator, _) = fixed(Verdict::Valid);
    let store = MemoryStore::with_connection_data(connection_data("https://cs.example.com:8443"));
    let url = serve(&registration(store, validator)).await;

    let answer = get(&url, None, None).await;
    assert_eq!(
        answer.xml(),
        xml("<state>registered</state><managementUrl>https://cs.example.com:8443/admin</managementUrl>")
    );
    let answer = get(&url, None, Some("application/json")).await;
    assert_eq!(
        answer.json(),
        json!({
            "state": "registered",
            "managementUrl": "https://cs.example.com:8443/admin",
            "refURL": "/unifiedconfig/config/contextservice"
        })
    );
}

#[tokio::test]
async fn registered_with_callback_adds_the_deregistration_url() {
    let (validator, _) = fixed(Verdict::Valid);
    // A path prefix in the serviceUrl is kept.
    let store = MemoryStore::with_connection_data(connection_data("https://cs.example.com/base"));
    let url = serve(&registration(store, validator)).await;
    let deregistration = format!(
        "https://cs.example.com/base/deregister?callbackUrl={CALLBACK_ENCODED}&clientId=prod-id"
    );

    let answer = get(&url, Some(CALLBACK), None).await;
    assert_eq!(
        answer.xml(),
        xml(&format!(
            "<state>registered</state><managementUrl>https://cs.example.com/base/admin</managementUrl>\
             <deregistrationUrl>{}</deregistrationUrl>",
            deregistration.replace('&', "&amp;")
        ))
    );
    let status = get(&url, Some(CALLBACK), Some("application/json"))
        .await
        .status_json();
    assert_eq!(status.state, RegistrationState::Registered);
    assert_eq!(
        status.deregistration_url.as_deref(),
        Some(deregistration.as_str())
    );
    assert_eq!(
        status.registration_url, None,
        "no registrationUrl when registered"
    );
}

#[tokio::test]
async fn malformed_connection_data_is_invalid_without_asking_the_validator() {
    let (validator, calls) = fixed(Verdict::Valid);
    let url = serve(&registration(
        MemoryStore::with_connection_data("this is not base64!"),
        validator,
    ))
    .await;

    assert_eq!(
        get(&url, None, None).await.xml(),
        xml("<state>invalid</state>"),
        "no URL without a callbackUrl"
    );
    let status = get(&url, Some(CALLBACK), Some("application/json"))
        .await
        .status_json();
    assert_eq!(status.state, RegistrationState::Invalid);
    assert_eq!(
        status.registration_url.as_deref(),
        Some(
            format!(
                "https://context.example.com/ctx/register?callbackUrl={CALLBACK_ENCODED}&appType=voice"
            )
            .as_str()
        )
    );
    assert_eq!(status.management_url, None);
    assert_eq!(status.deregistration_url, None);
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // A decodable connectionData whose serviceUrl is unusable is malformed too.
    let (validator, calls) = fixed(Verdict::Valid);
    let url = serve(&registration(
        MemoryStore::with_connection_data(connection_data("ftp://cs.example.com")),
        validator,
    ))
    .await;
    assert_eq!(
        get(&url, None, None).await.xml(),
        xml("<state>invalid</state>")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn connection_data_that_no_longer_authenticates_is_invalid() {
    let (validator, calls) = fixed(Verdict::Invalid("unauthorized: revoked".into()));
    let url = serve(&registration(
        MemoryStore::with_connection_data(connection_data("https://cs.example.com")),
        validator,
    ))
    .await;

    assert_eq!(
        get(&url, None, None).await.xml(),
        xml("<state>invalid</state>")
    );
    let answer = get(&url, Some(CALLBACK), None).await;
    assert_eq!(
        answer.xml(),
        xml(&format!(
            "<state>invalid</state><registrationUrl>https://context.example.com/ctx/register?callbackUrl={CALLBACK_ENCODED}&amp;appType=voice</registrationUrl>"
        )),
        "registrationUrl only, and only with a callbackUrl"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the verdict is remembered");
}

#[tokio::test]
async fn connection_data_that_could_not_be_checked_counts_as_registered() {
    let (validator, _) = fixed(Verdict::Unverified("the service timed out".into()));
    let url = serve(&registration(
        MemoryStore::with_connection_data(connection_data("https://cs.example.com")),
        validator,
    ))
    .await;
    let status = get(&url, None, Some("application/json"))
        .await
        .status_json();
    assert_eq!(status.state, RegistrationState::Registered);
    assert_eq!(
        status.management_url.as_deref(),
        Some("https://cs.example.com/admin")
    );
}

#[tokio::test]
async fn no_service_url_means_no_registration_url() {
    let (validator, _) = fixed(Verdict::Valid);
    let url = serve(&Registration::new(MemoryStore::new(), validator)).await;
    assert_eq!(
        get(&url, Some(CALLBACK), None).await.xml(),
        xml("<state>notRegistered</state>")
    );
}

#[tokio::test]
async fn callback_url_with_ampersand_and_angle_bracket_is_escaped_in_xml() {
    let (validator, _) = fixed(Verdict::Valid);
    let store = MemoryStore::with_connection_data(connection_data("https://cs.example.com"));
    let url = serve(&registration(store, validator)).await;
    let callback = "https://component.example.com/done?a=1&b=<x>&c=\"q\"";

    let answer = get(&url, Some(callback), None).await;
    let body = answer.xml();
    // Only markup uses `<`; every `&` in text is an entity.
    let text_only = body
        .replace("<contextServiceRegistration>", "")
        .replace("</contextServiceRegistration>", "");
    for tag in ["state", "managementUrl", "deregistrationUrl", "refURL"] {
        assert!(body.contains(&format!("<{tag}>")), "{body}");
    }
    let deregistration = body
        .split("<deregistrationUrl>")
        .nth(1)
        .and_then(|rest| rest.split("</deregistrationUrl>").next())
        .unwrap();
    assert!(!deregistration.contains('<'), "{deregistration}");
    assert!(
        deregistration.contains("&amp;clientId=prod-id"),
        "{deregistration}"
    );
    assert!(
        !deregistration.replace("&amp;", "").contains('&'),
        "{deregistration}"
    );
    assert_eq!(
        text_only.matches('<').count(),
        text_only.matches('>').count()
    );

    // Unescaped, the deregistrationUrl carries the callbackUrl intact (normalized: `<`, `>`
    // and `"` percent-encoded, as a browser would send them).
    let unescaped = deregistration.replace("&amp;", "&");
    let pairs: Vec<(String, String)> = url::Url::parse(&unescaped)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(
        pairs,
        vec![
            (
                "callbackUrl".to_owned(),
                "https://component.example.com/done?a=1&b=%3Cx%3E&c=%22q%22".to_owned()
            ),
            ("clientId".to_owned(), "prod-id".to_owned())
        ]
    );
    // The same URL in JSON, unescaped.
    let status = get(&url, Some(callback), Some("application/json"))
        .await
        .status_json();
    assert_eq!(
        status.deregistration_url.as_deref(),
        Some(unescaped.as_str())
    );
}

#[tokio::test]
async fn relative_or_non_http_callback_url_is_a_400() {
    let (validator, _) = fixed(Verdict::Valid);
    let url = serve(&registration(MemoryStore::new(), validator)).await;
    for callback in [
        "/relative/page",
        "relative",
        "//component.example.com/page",
        "javascript:alert(1)",
        "ftp://component.example.com/x",
        "data:text/html,<script>alert(1)</script>",
    ] {
        let answer = get(&url, Some(callback), None).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{callback}");
        let body = answer.xml();
        assert!(
            body.starts_with("<apiErrors><apiError><errorType>invalidCallbackUrl</errorType><errorMessage>callbackUrl must be an absolute http or https URL"),
            "{body}"
        );
        assert!(!body.contains("<script>"), "{body}");

        let answer = get(&url, Some(callback), Some("application/json")).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        let error = answer.json();
        assert_eq!(error["errorType"], "invalidCallbackUrl");
        assert!(
            error["errorMessage"]
                .as_str()
                .unwrap()
                .contains("absolute http or https URL"),
            "{error}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// PUT
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn put_without_connection_data_is_a_400() {
    let (validator, _) = fixed(Verdict::Valid);
    let url = serve(&registration(MemoryStore::new(), validator)).await;

    let answer = put_json(&url, json!({"state": "registered"})).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json()["errorType"], "missingConnectionData");
    let answer = put_json(&url, json!({"connectionData": null})).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json()["errorType"], "missingConnectionData");

    let answer = put_xml(
        &url,
        "<contextServiceRegistration><state>registered</state></contextServiceRegistration>",
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer.xml().contains(
            "<errorType>missingConnectionData</errorType><errorMessage>connectionData is required"
        ),
        "{}",
        answer.body
    );
    assert_eq!(
        get(&url, None, None).await.xml(),
        xml("<state>notRegistered</state>"),
        "nothing stored"
    );
}

#[tokio::test]
async fn put_of_more_than_4096_bytes_is_a_400_and_of_exactly_4096_is_accepted() {
    let (validator, _) = fixed(Verdict::Valid);
    let registration = registration(MemoryStore::new(), validator);
    let url = serve(&registration).await;

    let answer = put_json(&url, json!({"connectionData": "A".repeat(4097)})).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let error = answer.json();
    assert_eq!(error["errorType"], "connectionDataTooLong");
    assert!(
        error["errorMessage"].as_str().unwrap().contains("4096"),
        "{error}"
    );
    let answer = put_xml(&url, &xml_put_body(&"A".repeat(4097))).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.xml().contains("connectionDataTooLong"));
    assert_eq!(registration.connection_data().await.unwrap(), None);

    let exact = "A".repeat(4096);
    let answer = put_json(&url, json!({ "connectionData": exact })).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        registration.connection_data().await.unwrap().as_deref(),
        Some(exact.as_str())
    );
}

#[tokio::test]
async fn put_rules_register_refuse_another_accept_the_same_and_clear() {
    let (validator, _) = fixed(Verdict::Valid);
    let registration = registration(MemoryStore::new(), validator);
    let url = serve(&registration).await;
    let first = connection_data("https://cs.example.com");
    let second = connection_data("https://other.example.com");

    // Register.
    let answer = put_json(&url, json!({ "connectionData": first })).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        get(&url, None, Some("application/json"))
            .await
            .status_json()
            .state,
        RegistrationState::Registered
    );

    // Another value while one is set: 409, saying to deregister first; nothing changes.
    let answer = put_json(&url, json!({ "connectionData": second })).await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    let error = answer.json();
    assert_eq!(error["errorType"], "alreadyRegistered");
    let message = error["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("deregister before registering again"),
        "{message}"
    );
    assert!(message.contains("PUT an empty connectionData"), "{message}");
    let answer = put_xml(&url, &xml_put_body(&second)).await;
    assert_eq!(answer.status, StatusCode::CONFLICT);
    assert!(answer
        .xml()
        .contains("<errorType>alreadyRegistered</errorType>"));
    assert_eq!(
        registration.connection_data().await.unwrap().as_deref(),
        Some(first.as_str())
    );

    // The identical value: 200, in either format.
    assert_eq!(
        put_json(&url, json!({ "connectionData": first }))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        put_xml(&url, &xml_put_body(&first)).await.status,
        StatusCode::OK
    );

    // "" clears: notRegistered.
    let answer = put_json(&url, json!({"connectionData": ""})).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, "");
    assert_eq!(
        get(&url, None, None).await.xml(),
        xml("<state>notRegistered</state>")
    );
    assert_eq!(registration.connection_data().await.unwrap(), None);
    // Clearing again is fine; then another value is accepted.
    assert_eq!(
        put_xml(
            &url,
            "<contextServiceRegistration><connectionData/></contextServiceRegistration>"
        )
        .await
        .status,
        StatusCode::OK
    );
    assert_eq!(
        put_xml(&url, &xml_put_body(&second)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&url, None, Some("application/json"))
            .await
            .status_json()
            .management_url
            .as_deref(),
        Some("https://other.example.com/admin")
    );
}

#[tokio::test]
async fn put_of_a_value_that_does_not_authenticate_is_stored_and_then_invalid() {
    let (validator, calls) = fixed(Verdict::Invalid("unauthorized".into()));
    let url = serve(&registration(MemoryStore::new(), validator)).await;
    let answer = put_json(
        &url,
        json!({"connectionData": connection_data("https://cs.example.com")}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 0, "a PUT does not validate");
    assert_eq!(
        get(&url, None, None).await.xml(),
        xml("<state>invalid</state>")
    );
}

#[tokio::test]
async fn xml_and_json_both_ways() {
    let (validator, _) = fixed(Verdict::Valid);
    let registration = registration(MemoryStore::new(), validator);
    let url = serve(&registration).await;
    let data = connection_data("https://cs.example.com");

    // XML in (with a declaration, whitespace, and the elements a GET gave), JSON out.
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<contextServiceRegistration>\n  <state>notRegistered</state>\n  <connectionData>\n    {data}\n  </connectionData>\n  <refURL>/unifiedconfig/config/contextservice</refURL>\n</contextServiceRegistration>\n"
    );
    let answer = send(
        reqwest::Client::new()
            .put(&url)
            .header(CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(body),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        get(&url, None, Some("application/json")).await.json()["state"],
        "registered"
    );
    assert_eq!(
        registration.connection_data().await.unwrap().as_deref(),
        Some(data.as_str()),
        "whitespace around the value is ignored"
    );

    // JSON in, XML out (asked for, and by default).
    put_json(&url, json!({"connectionData": ""})).await;
    let answer = put_json(&url, json!({"connectionData": data, "refURL": "ignored"})).await;
    assert_eq!(answer.status, StatusCode::OK);
    for accept in [Some("application/xml"), Some("text/xml"), Some("*/*"), None] {
        let answer = get(&url, None, accept).await;
        assert!(answer
            .xml()
            .starts_with("<contextServiceRegistration><state>registered</state>"));
    }
    // Accept with qualities.
    let answer = get(&url, None, Some("application/xml;q=0.5, application/json")).await;
    assert_eq!(answer.json()["state"], "registered");
    let answer = get(&url, None, Some("application/json;q=0.2, text/xml;q=0.9")).await;
    assert!(answer.xml().contains("<state>registered</state>"));

    // Errors follow Accept, else the body's format.
    let answer = send(
        reqwest::Client::new()
            .put(&url)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/xml")
            .body("{}"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.xml().contains("missingConnectionData"));
    let answer = send(reqwest::Client::new().put(&url).body("{}")).await;
    assert_eq!(answer.json()["errorType"], "missingConnectionData");
    let answer = send(
        reqwest::Client::new()
            .put(&url)
            .body("<contextServiceRegistration/>"),
    )
    .await;
    assert!(answer.xml().contains("missingConnectionData"));
}

#[tokio::test]
async fn bad_bodies_methods_and_media_types() {
    let (validator, _) = fixed(Verdict::Valid);
    let url = serve(&registration(MemoryStore::new(), validator)).await;
    let client = reqwest::Client::new();

    let answer = put_xml(&url, "<contextServiceRegistration><connectionData>x").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer
        .xml()
        .contains("<errorType>malformedBody</errorType>"));
    let answer = put_xml(&url, "<other><connectionData>x</connectionData></other>").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer
        .xml()
        .contains("root element must be &lt;contextServiceRegistration&gt;"));
    let answer = send(
        client
            .put(&url)
            .header(CONTENT_TYPE, "application/json")
            .body("{not json"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json()["errorType"], "malformedBody");
    let answer = put_json(&url, json!({"connectionData": 7})).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json()["errorType"], "malformedBody");

    let answer = send(
        client
            .put(&url)
            .header(CONTENT_TYPE, "text/plain")
            .body("connectionData=x"),
    )
    .await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(answer.xml().contains("unsupportedMediaType"));

    let answer = put_json(&url, json!({"connectionData": "A".repeat(70_000)})).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.json()["errorType"], "bodyTooLarge");

    for method in [reqwest::Method::POST, reqwest::Method::DELETE] {
        let response = client.request(method.clone(), &url).send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method}"
        );
        assert_eq!(response.headers()["allow"], "GET, HEAD, PUT");
        assert!(response.text().await.unwrap().contains("methodNotAllowed"));
    }
    let response = client.head(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

// ---------------------------------------------------------------------------------------
// Stores, notifications, the verdict cache
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn file_store_survives_a_restart_and_is_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contextservice.connectiondata");
    let data = connection_data("https://cs.example.com");

    let (validator, _) = fixed(Verdict::Valid);
    let first = registration(FileStore::new(&path), validator);
    let url = serve(&first).await;
    assert_eq!(
        put_json(&url, json!({ "connectionData": data }))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), data);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }
    drop(first);

    // A new process: a new registration and router over the same file.
    let (validator, _) = fixed(Verdict::Valid);
    let second = registration(FileStore::new(&path), validator);
    let url = serve(&second).await;
    let status = get(&url, None, Some("application/json"))
        .await
        .status_json();
    assert_eq!(status.state, RegistrationState::Registered);
    assert_eq!(
        status.management_url.as_deref(),
        Some("https://cs.example.com/admin")
    );
    // The rule holds across the restart: another value is refused.
    assert_eq!(
        put_json(
            &url,
            json!({"connectionData": connection_data("https://x.example.com")})
        )
        .await
        .status,
        StatusCode::CONFLICT
    );
    // Deregistering removes the file; only the file was ever in the directory.
    assert_eq!(
        put_json(&url, json!({"connectionData": ""})).await.status,
        StatusCode::OK
    );
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn subscribers_see_each_change() {
    let (validator, _) = fixed(Verdict::Valid);
    let registration = registration(MemoryStore::new(), validator);
    let url = serve(&registration).await;
    let mut changes = registration.subscribe().await.unwrap();
    assert_eq!(*changes.borrow_and_update(), None);
    let data = connection_data("https://cs.example.com");

    put_json(&url, json!({ "connectionData": data })).await;
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(changes.borrow_and_update().as_deref(), Some(data.as_str()));

    // The same value again is no change.
    put_json(&url, json!({ "connectionData": data })).await;
    assert!(!changes.has_changed().unwrap());

    put_xml(
        &url,
        "<contextServiceRegistration><connectionData></connectionData></contextServiceRegistration>",
    )
    .await;
    tokio::time::timeout(Duration::from_secs(5), changes.changed())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(*changes.borrow_and_update(), None);

    // A later subscriber starts from the stored value.
    let store = MemoryStore::with_connection_data(data.clone());
    let (validator, _) = fixed(Verdict::Valid);
    let registered = Registration::new(store, validator);
    let receiver = registered.subscribe().await.unwrap();
    assert_eq!(receiver.borrow().as_deref(), Some(data.as_str()));
}

#[tokio::test]
async fn verdicts_are_remembered_and_forgotten_on_put() {
    let (validator, calls) = fixed(Verdict::Valid);
    let data = connection_data("https://cs.example.com");
    let registration = registration(MemoryStore::with_connection_data(data.clone()), validator);
    let url = serve(&registration).await;

    let answers = futures::future::join_all((0..20).map(|_| get(&url, None, None))).await;
    assert!(answers
        .iter()
        .all(|a| a.body.contains("<state>registered</state>")));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a burst of GETs asks once");

    // A PUT (even of the same value) forgets the verdict.
    put_json(&url, json!({ "connectionData": data })).await;
    get(&url, None, None).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // With no TTL, every GET asks.
    let (validator, calls) = fixed(Verdict::Valid);
    let uncached = registration_with(data, validator).verdict_ttl(Duration::ZERO);
    let url = serve(&uncached).await;
    get(&url, None, None).await;
    get(&url, None, None).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

fn registration_with(data: String, validator: impl Validator) -> Registration {
    registration(MemoryStore::with_connection_data(data), validator)
}

// ---------------------------------------------------------------------------------------
// The service validator
// ---------------------------------------------------------------------------------------

/// An address on which nobody listens.
async fn dead_address() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// A stand-in for contextd answering every request with `status` and `body`, except that when
/// `status` is 200 its token endpoint issues a token (for clients that exchange their
/// credential first).
async fn stand_in(status: AxumStatus, body: &'static str) -> String {
    let token = move || async move {
        if status == AxumStatus::OK {
            (
                AxumStatus::OK,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                r#"{"access_token":"issued","token_type":"Bearer","expires_in":600}"#,
            )
        } else {
            (
                status,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
        }
    };
    let app = Router::new()
        .route("/v1/token", axum::routing::post(token))
        .fallback(move || async move {
            (
                status,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn service_validator_on_an_unreachable_service_still_counts_as_registered() {
    let validator = ServiceValidator::new(Settings::default());
    let data = connection_data(&dead_address().await);
    let verdict = validator.validate(&data).await;
    assert!(
        matches!(&verdict, Verdict::Unverified(reason) if reason.contains("cannot reach")),
        "{verdict:?}"
    );
    assert!(!format!("{verdict:?}").contains("prod-secret"));

    // Through the resource: registered.
    let url = serve(&registration_with(data, validator)).await;
    let status = get(&url, Some(CALLBACK), Some("application/json"))
        .await
        .status_json();
    assert_eq!(status.state, RegistrationState::Registered);
    assert!(status.deregistration_url.is_some());
}

#[tokio::test]
async fn service_validator_calls_a_malformed_string_invalid() {
    let validator = ServiceValidator::new(Settings::default());
    for malformed in ["not base64!", "", "eyJhIjoxfQ=="] {
        let verdict = validator.validate(malformed).await;
        assert!(
            matches!(&verdict, Verdict::Invalid(reason) if reason.contains("invalid connectionData")),
            "{malformed:?}: {verdict:?}"
        );
    }
}

#[tokio::test]
async fn service_validator_follows_the_answer_of_the_service() {
    let validator = ServiceValidator::new(Settings::default());
    let whoami = r#"{"id":"0190b5a6-0000-7000-8000-000000000001","role":"machine","partition":"production","orgId":"0190b5a6-0000-7000-8000-000000000000"}"#;
    let cases = [
        (AxumStatus::OK, whoami, "valid"),
        (AxumStatus::UNAUTHORIZED, "{}", "invalid"),
        (AxumStatus::FORBIDDEN, "{}", "invalid"),
        (AxumStatus::INTERNAL_SERVER_ERROR, "{}", "unverified"),
    ];
    for (status, body, expected) in cases {
        let data = connection_data(&stand_in(status, body).await);
        let verdict = validator.validate(&data).await;
        let got = match &verdict {
            Verdict::Valid => "valid",
            Verdict::Invalid(_) => "invalid",
            Verdict::Unverified(_) => "unverified",
        };
        assert_eq!(got, expected, "{status}: {verdict:?}");
    }
}
