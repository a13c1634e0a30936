//! Connectors: connectionData → token → write, the token endpoint's OAuth 2.0 answers,
//! rotation with a grace period, revocation at once on every instance, and stale connectors.

use std::time::Duration;

use base64::Engine as _;
use contextd_client::proto::connection::ConnectionData;
use contextd_client::proto::connectors::{
    AppType, ConnectorCreated, ConnectorState, NewConnector, RotateConnector, TokenResponse,
};
use contextd_client::{Client, Error, Settings};
use contextd_core::service::ContextConfig;
use contextd_proto::{Kind, Partition};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{input, SecondInstance, TestServer};

fn sdk(connection_data: &str, lab: bool) -> Client {
    let settings = Settings::standard()
        .with_timeout(Duration::from_millis(15_000))
        .with_lab_mode(lab);
    Client::from_connection_data(connection_data, settings).expect("an SDK client")
}

fn decoded(connection_data: &str) -> ConnectionData {
    let json = base64::engine::general_purpose::STANDARD
        .decode(connection_data)
        .expect("base64");
    serde_json::from_slice(&json).expect("connectionData JSON")
}

async fn create(s: &TestServer, name: &str) -> ConnectorCreated {
    let r = s
        .post(
            s.prod(),
            "/v1/connectors",
            json!({"name": name, "appType": "voice", "version": "12.6"}),
        )
        .await;
    r.expect(201);
    assert_eq!(
        r.headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store"),
        "a connectionData is never cached"
    );
    serde_json::from_value(r.body).expect("ConnectorCreated")
}

/// Sends a token request as a form, optionally with HTTP Basic; the status and the JSON body.
async fn token(
    s: &TestServer,
    form: &str,
    basic: Option<(&str, &str)>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = s
        .http
        .post(format!("{}/v1/token", s.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.to_owned());
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

#[tokio::test]
async fn connection_data_is_exchanged_for_a_token_that_writes_in_its_partition() {
    let s = TestServer::start().await;
    let created = create(&s, "IVR").await;
    assert!(created.connection_data.len() <= 4096);
    let data = decoded(&created.connection_data);
    assert_eq!(data.service_url, s.url);
    assert_eq!(data.org_id, s.org.org_id);
    assert_eq!(created.connector.app_type, AppType::Voice);
    assert_eq!(created.connector.state, ConnectorState::Registered);

    // Production credentials write to production, lab ones to lab, through the SDK.
    let prod = sdk(&created.connection_data, false);
    let customer = prod
        .create(Kind::Customer, &input(json!({"fieldsets": ["cisco.base.customer"], "data": {"Context_First_Name": "Ivo"}})))
        .await
        .expect("a write with an exchanged token");
    assert_eq!(
        prod.whoami().await.expect("whoami").partition,
        Partition::Production
    );
    let lab = sdk(&created.connection_data, true);
    assert_eq!(
        lab.whoami().await.expect("whoami").partition,
        Partition::Lab
    );
    assert!(matches!(
        lab.get(Kind::Customer, customer.id).await,
        Err(Error::NotFound { .. })
    ));

    // The bootstrap connectionData printed at first start works the same way.
    let bootstrap = sdk(&s.org.connection_data, true);
    assert_eq!(
        bootstrap.whoami().await.expect("whoami").partition,
        Partition::Lab
    );

    let listed = s.client(s.prod()).connectors().await.expect("list");
    let ivr = listed
        .iter()
        .find(|c| c.id == created.connector.id)
        .expect("listed");
    assert!(
        ivr.last_seen.is_some(),
        "the exchange is its last sign of life"
    );
    assert_eq!(ivr.version.as_deref(), Some("12.6"));
}

#[tokio::test]
async fn the_token_endpoint_speaks_oauth_2() {
    let s = TestServer::start().await;
    let data = decoded(&create(&s, "chat").await.connection_data);
    let (id, secret) = (&data.credentials.client_id, &data.credentials.client_secret);

    let form = format!("grant_type=client_credentials&client_id={id}&client_secret={secret}");
    let (status, headers, body) = token(&s, &form, None).await;
    assert_eq!(status, 200, "{body}");
    let answer: TokenResponse = serde_json::from_value(body).expect("TokenResponse");
    assert_eq!(answer.token_type, "Bearer");
    assert!(answer.expires_in > 0 && answer.expires_in <= 3600);
    assert_eq!(
        headers.get("cache-control").and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    let with_basic = token(&s, "grant_type=client_credentials", Some((id, secret))).await;
    assert_eq!(with_basic.0, 200, "{}", with_basic.2);

    let wrong = token(&s, "grant_type=client_credentials", Some((id, "nope"))).await;
    assert_eq!(
        (wrong.0, wrong.2["error"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_client"))
    );
    assert!(
        wrong.1.get("www-authenticate").is_some(),
        "Basic gets a challenge"
    );
    let unknown = token(
        &s,
        &format!(
            "grant_type=client_credentials&client_id={}&client_secret=x",
            uuid::Uuid::now_v7()
        ),
        None,
    )
    .await;
    assert_eq!(unknown.2["error"], "invalid_client");
    let grant = token(
        &s,
        &format!("grant_type=password&client_id={id}&client_secret={secret}"),
        None,
    )
    .await;
    assert_eq!(
        (grant.0, grant.2["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
    let both = token(&s, &form, Some((id, secret))).await;
    assert_eq!(
        both.2["error"], "invalid_request",
        "one way of client authentication only"
    );
    let json_body = s
        .post(
            s.prod(),
            "/v1/token",
            json!({"grant_type": "client_credentials"}),
        )
        .await;
    assert_eq!(json_body.status, 400);
    assert_eq!(json_body.body["error"], "invalid_request");
    assert!(!wrong.2.to_string().contains(secret.as_str()));
}

#[tokio::test]
async fn only_a_production_admin_manages_connectors() {
    let s = TestServer::start().await;
    let lab = s
        .post(
            s.lab(),
            "/v1/connectors",
            json!({"name": "x", "appType": "custom"}),
        )
        .await;
    lab.expect(403);
    let bad = s
        .post(
            s.prod(),
            "/v1/connectors",
            json!({"name": "", "appType": "fax"}),
        )
        .await;
    assert_eq!(bad.status, 400);
    let listed = s
        .client(s.lab())
        .connectors()
        .await
        .expect("lab admins may list");
    assert!(
        listed.iter().any(|c| c.name == "default"),
        "the bootstrap connector: {listed:?}"
    );
}

#[tokio::test]
async fn rotation_keeps_old_secrets_for_their_grace_and_revocation_ends_everything_on_every_instance(
) {
    let s = TestServer::start().await;
    let admin = s.client(s.prod());
    let first = create(&s, "desktop").await;
    let old = decoded(&first.connection_data);
    let running = sdk(&first.connection_data, false);
    running
        .status()
        .await
        .expect("a token for the first secret");

    // Rotation with a grace: old and new secrets both work until it ends.
    let rotated = admin
        .rotate_connector(
            first.connector.id,
            &RotateConnector {
                grace_seconds: Some(3600),
            },
        )
        .await
        .expect("rotate");
    assert!(rotated.connector.grace_until.is_some());
    let new = decoded(&rotated.connection_data);
    assert_eq!(
        new.credentials.client_id, old.credentials.client_id,
        "client ids stay"
    );
    assert_ne!(new.credentials.client_secret, old.credentials.client_secret);
    for secret in [
        &old.credentials.client_secret,
        &new.credentials.client_secret,
    ] {
        let (status, _, body) = token(
            &s,
            "grant_type=client_credentials",
            Some((&old.credentials.client_id, secret)),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    // Without a grace, the replaced secret stops at once.
    let again = admin
        .rotate_connector(
            first.connector.id,
            &RotateConnector {
                grace_seconds: Some(0),
            },
        )
        .await
        .expect("rotate");
    let (status, _, _) = token(
        &s,
        "grant_type=client_credentials",
        Some((&old.credentials.client_id, &new.credentials.client_secret)),
    )
    .await;
    assert_eq!(status, 401, "a secret rotated without grace stops at once");

    // Revocation through one instance holds on another at once: secret and live token.
    let other = SecondInstance::start(&s).await;
    let latest = decoded(&again.connection_data);
    let live = token(
        &s,
        "grant_type=client_credentials",
        Some((
            &latest.credentials.client_id,
            &latest.credentials.client_secret,
        )),
    )
    .await;
    let bearer = live.2["access_token"].as_str().expect("a token").to_owned();
    let direct = crate::support::client_at(&other.url, &bearer);
    direct
        .whoami()
        .await
        .expect("the token works on the other instance");
    admin
        .revoke_connector(first.connector.id)
        .await
        .expect("revoke");
    assert!(
        matches!(direct.whoami().await, Err(Error::Unauthorized { .. })),
        "its tokens end at once"
    );
    let (status, _, _) = token(
        &s,
        "grant_type=client_credentials",
        Some((
            &latest.credentials.client_id,
            &latest.credentials.client_secret,
        )),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        matches!(running.status().await, Err(Error::Unauthorized { .. })),
        "a running component is refused"
    );
    let state = admin
        .connectors()
        .await
        .expect("list")
        .into_iter()
        .find(|c| c.id == first.connector.id)
        .map(|c| c.state);
    assert_eq!(state, Some(ConnectorState::Revoked));
    assert!(matches!(
        admin.revoke_connector(first.connector.id).await,
        Err(Error::NotFound { .. })
    ));
    other.stop().await;
}

#[tokio::test]
async fn a_connector_unseen_for_the_stale_period_is_stale() {
    let config = ContextConfig {
        // Long enough that a connector seen just now is not stale on a busy machine.
        connector_stale_after: chrono::Duration::seconds(2),
        ..ContextConfig::default()
    };
    let s = TestServer::start_with(config, contextd_server::ServerConfig::default()).await;
    let created = s
        .client(s.prod())
        .create_connector(&NewConnector {
            name: "email".into(),
            app_type: AppType::Email,
            version: None,
        })
        .await
        .expect("create");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let listed = s.client(s.prod()).connectors().await.expect("list");
    let state = listed
        .iter()
        .find(|c| c.id == created.connector.id)
        .map(|c| c.state);
    assert_eq!(state, Some(ConnectorState::Stale));
    sdk(&created.connection_data, false)
        .status()
        .await
        .expect("a token");
    let listed = s.client(s.prod()).connectors().await.expect("list");
    let state = listed
        .iter()
        .find(|c| c.id == created.connector.id)
        .map(|c| c.state);
    assert_eq!(state, Some(ConnectorState::Registered), "seen again");
}
