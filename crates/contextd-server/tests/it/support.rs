//! A real server on port 0 over real SQLite files, driven over real HTTP.

use std::sync::Arc;
use std::time::Duration;

use std::fmt::Debug;

use contextd_client::{Client, Error, Settings};
use contextd_core::crypto::{Keyring, MasterKey};
use contextd_core::service::{Context, ContextConfig, OrgBootstrap};
use contextd_proto::access::{NewKey, Role};
use contextd_proto::object::ObjectPatch;
use contextd_proto::object::{ObjectInput, SearchRequest};
use contextd_proto::system::EncryptionStatus;
use contextd_proto::{ContextObject, Kind, ObjectId};
use contextd_server::ServerConfig;
use contextd_store_sqlite::{SqliteKeyStore, SqliteStore};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::oneshot;
use uuid::Uuid;

/// One response, fully read.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Resp {
    /// The body member at a JSON pointer (`/data/Context_First_Name`), or Null.
    pub fn at(&self, pointer: &str) -> &Value {
        self.body.pointer(pointer).unwrap_or(&Value::Null)
    }

    /// A string member.
    pub fn str(&self, pointer: &str) -> String {
        self.at(pointer).as_str().unwrap_or_default().to_owned()
    }

    /// Asserts the status and that errors are problem JSON.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        if status >= 400 {
            let ct = self
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            assert_eq!(
                ct, "application/problem+json",
                "errors must be problem JSON"
            );
            assert_eq!(
                self.body["status"].as_u64(),
                Some(u64::from(status)),
                "problem status member"
            );
            assert!(
                self.body["type"].is_string()
                    && self.body["title"].is_string()
                    && self.body["detail"].is_string()
            );
        }
        self
    }
}

/// The wire type of an object body, from JSON written in a test (refused at once if it is not
/// one: the SDK sends only well-formed bodies).
pub fn input(body: Value) -> ObjectInput {
    serde_json::from_value(body).expect("an ObjectInput")
}

/// The wire type of a search, from JSON written in a test.
pub fn search(body: Value) -> SearchRequest {
    serde_json::from_value(body).expect("a SearchRequest")
}

/// The SDK on the server at `url` with `token` (the longest standard timeout).
pub fn client_at(url: &str, token: &str) -> Client {
    let settings = Settings::standard().with_timeout(Duration::from_millis(15_000));
    Client::new(url, token, settings).expect("an SDK client")
}

/// A JSON merge patch, from JSON written in a test.
pub fn patch(body: Value) -> ObjectPatch {
    body.as_object()
        .cloned()
        .expect("a merge patch is an object")
}

/// A data value of an object, or Null (withheld values are answered as null).
pub fn value<'a>(o: &'a ContextObject, field: &str) -> &'a Value {
    o.data.get(field).unwrap_or(&Value::Null)
}

/// A customer with base-fieldset `data`, made through the SDK.
pub async fn new_customer(c: &Client, data: Value) -> ObjectId {
    c.create(
        Kind::Customer,
        &input(serde_json::json!({"fieldsets": ["cisco.base.customer"], "data": data})),
    )
    .await
    .expect("customer")
    .id
}

/// A new API key with `role`, made by `admin`: its id and its token (shown once).
pub async fn key(admin: &Client, role: Role) -> (Uuid, String) {
    let k = admin
        .create_key(&NewKey {
            name: format!("{role} key"),
            role,
            expires_at: None,
        })
        .await
        .expect("key");
    let token = k.token.expect("the token is shown on creation");
    assert!(token.starts_with("ctxd_"), "the token is shown on creation");
    (k.id, token)
}

/// The encryption state of the client's partition, from `/v1/status`.
pub async fn encryption(c: &Client) -> EncryptionStatus {
    c.status()
        .await
        .expect("status")
        .encryption
        .expect("the status shows the encryption state")
}

/// Asserts a 403.
#[track_caller]
pub fn forbidden<T: Debug>(r: contextd_client::Result<T>) {
    assert!(matches!(r, Err(Error::Forbidden { .. })), "{r:?}");
}

/// Asserts a 404.
#[track_caller]
pub fn not_found<T: Debug>(r: contextd_client::Result<T>) {
    assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
}

/// Asserts a validation error that names `field` (among others).
#[track_caller]
pub fn invalid<T: Debug>(r: contextd_client::Result<T>, field: &str) {
    match r {
        Err(e @ Error::Validation { .. }) => assert!(
            e.field_errors().iter().any(|f| f.field == field),
            "{field} not among {:?}",
            e.field_errors()
        ),
        other => panic!("expected a validation error of {field}, got {other:?}"),
    }
}

/// A running server with its own data directory and the `default` org.
pub struct TestServer {
    pub url: String,
    pub dir: TempDir,
    pub context: Arc<Context>,
    pub http: reqwest::Client,
    /// The `default` org's tokens.
    pub org: OrgBootstrap,
    /// The master key the server runs with.
    pub master: MasterKey,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(ContextConfig::default(), ServerConfig::default()).await
    }

    pub async fn start_with(config: ContextConfig, server: ServerConfig) -> Self {
        Self::start_on(config, server, None).await
    }

    /// A server with `/metrics` on the operator listener `metrics` (none: on the main one).
    pub async fn start_on(
        config: ContextConfig,
        server: ServerConfig,
        metrics: Option<tokio::net::TcpListener>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("contextd.db")).expect("open data store");
        let keys = SqliteKeyStore::open(&dir.path().join("keys.db")).expect("open key store");
        let master = MasterKey::generate();
        let keyring = Keyring::new(master.clone(), Arc::new(keys), 1000);
        let context = Arc::new(Context::new(Arc::new(store), keyring, config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let org = context
            .create_org("default", &url)
            .await
            .expect("create org");
        let (tx, rx) = oneshot::channel();
        let listeners = contextd_server::Listeners {
            api: listener,
            metrics,
        };
        let task = tokio::spawn(contextd_server::serve_on(
            listeners,
            context.clone(),
            server,
            async {
                let _ = rx.await;
            },
        ));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        Self {
            url,
            dir,
            context,
            http,
            org,
            master,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// The lab admin token of the default org.
    pub fn lab(&self) -> &str {
        &self.org.lab_admin_token
    }

    /// The production admin token of the default org.
    pub fn prod(&self) -> &str {
        &self.org.production_admin_token
    }

    /// Sends a request with an optional JSON body and bearer token.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{}", self.url, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        Self::read(req.send().await.expect("request sent")).await
    }

    /// Sends a raw body with a content type.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Resp {
        let req = self
            .http
            .request(method, format!("{}{}", self.url, path))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body);
        Self::read(req.send().await.expect("request sent")).await
    }

    pub async fn read(resp: reqwest::Response) -> Resp {
        let status = resp.status();
        let headers = resp.headers().clone();
        // An event stream never ends: its body is not read (tests/it/events.rs reads them).
        let streaming = headers
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let bytes = if streaming {
            Default::default()
        } else {
            resp.bytes().await.expect("body")
        };
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn post(&self, token: &str, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(token), Some(&body))
            .await
    }

    pub async fn get(&self, token: &str, path: &str) -> Resp {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn put(&self, token: &str, path: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(token), Some(&body)).await
    }

    pub async fn patch(&self, token: &str, path: &str, body: Value) -> Resp {
        self.call(Method::PATCH, path, Some(token), Some(&body))
            .await
    }

    pub async fn delete(&self, token: &str, path: &str) -> Resp {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// The SDK on this server with `token`; the longest standard timeout, as test machines
    /// can be slow.
    pub fn client(&self, token: &str) -> Client {
        client_at(&self.url, token)
    }

    /// Creates a customer with the given base-fieldset data; returns its id.
    pub async fn customer(&self, token: &str, data: Value) -> String {
        let r = self
            .post(
                token,
                "/v1/customers",
                serde_json::json!({"fieldsets": ["cisco.base.customer"], "data": data}),
            )
            .await;
        r.expect(201);
        r.str("/id")
    }

    /// A lab admin principal of the default org, for calling the core directly.
    pub fn lab_admin(&self) -> contextd_core::auth::Principal {
        contextd_core::auth::Principal {
            id: uuid::Uuid::now_v7(),
            scope: contextd_core::Scope {
                org: self.org.org_id,
                partition: contextd_core::Partition::Lab,
            },
            role: contextd_core::auth::Role::Admin,
            kind: contextd_core::auth::PrincipalKind::ApiKey,
            granted: false,
        }
    }

    /// Stops the server gracefully.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A second server over the same SQLite files, as a second instance of a deployment.
pub struct SecondInstance {
    /// Its base URL.
    pub url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl SecondInstance {
    /// Starts it over `s`'s files.
    pub async fn start(s: &TestServer) -> Self {
        let store =
            SqliteStore::open(&s.dir.path().join("contextd.db")).expect("open the same data");
        let keys = SqliteKeyStore::open(&s.dir.path().join("keys.db")).expect("open the same keys");
        let keyring = Keyring::new(s.master.clone(), Arc::new(keys), 1000);
        let context = Arc::new(Context::new(
            Arc::new(store),
            keyring,
            ContextConfig::default(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(contextd_server::serve(
            listener,
            context,
            ServerConfig {
                sign_in_per_minute: 0,
                ..ServerConfig::default()
            },
            async {
                let _ = rx.await;
            },
        ));
        Self {
            url,
            shutdown: Some(tx),
            task,
        }
    }

    /// Stops it gracefully.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = self.task.await;
    }
}

impl TestServer {
    /// Stops the server and starts it again on the same address and files, as a restart of
    /// the process would (a new store, context and server; the same master key).
    pub async fn restart(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        let store =
            SqliteStore::open(&self.dir.path().join("contextd.db")).expect("reopen the data");
        let keys = SqliteKeyStore::open(&self.dir.path().join("keys.db")).expect("reopen the keys");
        let keyring = Keyring::new(self.master.clone(), Arc::new(keys), 1000);
        self.context = Arc::new(Context::new(
            Arc::new(store),
            keyring,
            ContextConfig::default(),
        ));
        let addr = self.url.trim_start_matches("http://").to_owned();
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .expect("bind the same address again");
        let (tx, rx) = oneshot::channel();
        self.task = Some(tokio::spawn(contextd_server::serve(
            listener,
            self.context.clone(),
            ServerConfig::default(),
            async {
                let _ = rx.await;
            },
        )));
        self.shutdown = Some(tx);
    }
}

impl TestServer {
    /// A server answering HTTPS with `server.tls`: `url` is `https://127.0.0.1:PORT`, and
    /// `http` trusts the CA certificates of `ca_pem` (and only the public CAs besides).
    pub async fn start_https(server: ServerConfig, ca_pem: &str) -> Self {
        assert!(server.tls.is_some(), "start_https needs ServerConfig::tls");
        let mut s = Self::start_on(ContextConfig::default(), server, None).await;
        s.url = s.url.replacen("http://", "https://", 1);
        let mut http = reqwest::Client::builder().timeout(Duration::from_secs(60));
        for ca in reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes()).expect("CA PEM") {
            http = http.add_root_certificate(ca);
        }
        s.http = http.build().expect("client");
        s
    }
}
