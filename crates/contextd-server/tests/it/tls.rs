//! HTTPS (issue 15): the server answers TLS with a certificate from PEM files and swaps it on
//! reload without dropping connections; every answer carries HSTS and the session cookie is
//! `Secure`; the SDK trusts a CA file (from a connectionData too) and refuses a certificate it
//! can't verify at once; plain HTTP, silent and stalled clients on the TLS port are turned
//! away in time. SIGHUP itself is the binary's test: here the reload is called directly.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contextd_client::proto::connectors::{AppType, NewConnector};
use contextd_client::proto::Kind;
use contextd_client::{Client, Error, Settings};
use contextd_server::tls::{Tls, TlsError, TlsSettings};
use contextd_server::ServerConfig;
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SerialNumber,
};
use reqwest::Method;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::signin::EXCLUSIVE;
use crate::support::{new_customer, value, TestServer};

const PING: &[u8] = b"GET /v1/ping HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
const HSTS: &str = "max-age=31536000";

/// A certificate authority of the test.
struct Ca {
    cert: Certificate,
    key: KeyPair,
    /// Its certificate, PEM: what clients trust.
    pem: String,
}

/// A server certificate issued by a [`Ca`], with its key.
struct Issued {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        let pem = cert.pem();
        Self { cert, key, pem }
    }

    /// A certificate for `localhost` and `127.0.0.1`, named `name`, with a key of its own.
    fn issue(&self, name: &str, serial: u64) -> Issued {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("certificate parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("issued");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

/// A server's PEM files, and the CA file its clients trust.
struct Files {
    _dir: tempfile::TempDir,
    settings: TlsSettings,
    ca: PathBuf,
}

impl Files {
    fn new(ca: &Ca, issued: &Issued) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let settings = TlsSettings {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        };
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &ca.pem).expect("write the CA file");
        let files = Self {
            _dir: dir,
            settings,
            ca: ca_file,
        };
        files.install(issued);
        files
    }

    /// Writes `issued` over the server's certificate and key files.
    fn install(&self, issued: &Issued) {
        std::fs::write(&self.settings.cert, &issued.cert_pem).expect("write the certificate");
        std::fs::write(&self.settings.key, &issued.key_pem).expect("write the key");
    }
}

/// A server on HTTPS with `files`, and its handle to reload them.
async fn https_server(files: &Files, ca: &Ca, config: ServerConfig) -> (TestServer, Tls) {
    let tls = Tls::load(files.settings.clone()).expect("the certificate and key load");
    let config = ServerConfig {
        tls: Some(tls.clone()),
        header_timeout: HEADER_TIMEOUT,
        ..config
    };
    (TestServer::start_https(config, &ca.pem).await, tls)
}

fn addr(s: &TestServer) -> String {
    s.url.trim_start_matches("https://").to_owned()
}

fn settings() -> Settings {
    Settings::standard().with_timeout(Duration::from_millis(15_000))
}

/// A TLS client trusting `ca_pem` only; a new one for each connection, so that no session is
/// resumed and each handshake shows the certificate served now.
fn trusting(ca_pem: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.expect("CA PEM")).expect("a CA certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// A new TLS connection to `addr`, its certificate verified against `ca_pem`.
async fn connect(addr: &str, ca_pem: &str) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("a server name");
    trusting(ca_pem)
        .connect(name, tcp)
        .await
        .expect("TLS handshake")
}

/// The certificate the server presented on `stream`, DER.
fn served_certificate(stream: &TlsStream<TcpStream>) -> Vec<u8> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.to_vec())
        .expect("the server presented a certificate")
}

/// `GET /v1/ping` on an open connection; the answer's status, `None` if it closed first.
async fn ping<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> Option<u16> {
    stream.write_all(PING).await.ok()?;
    stream.flush().await.ok()?;
    read_status(stream).await
}

/// Reads one answer (a `content-length` body) and returns its status.
async fn read_status<S: AsyncRead + Unpin>(stream: &mut S) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let status = head.get(9..12)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf.len() - head_end;
    while body < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => body += n,
        }
    }
    Some(status)
}

/// Waits until the server closes the connection (EOF, reset or a TLS error); `false` if it
/// was still open after `limit`.
async fn closes_within<S: AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> bool {
    let mut chunk = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// The session cookie a sign-in on `s` sets (creating the user first).
async fn session_cookie(s: &TestServer) -> String {
    s.post(
        s.lab(),
        "/v1/users",
        json!({"name": "ada", "role": "agent", "password": "correct horse battery"}),
    )
    .await
    .expect(201);
    let answer = s
        .http
        .post(format!("{}/v1/sessions", s.url))
        .json(&json!({"partition": "lab", "name": "ada", "password": "correct horse battery"}))
        .send()
        .await
        .expect("sign-in sent");
    let r = TestServer::read(answer).await;
    r.expect(201);
    r.headers
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a session cookie")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_is_served_over_https_with_hsts_and_the_sdk_trusts_a_ca_file() {
    let ca = Ca::new("contextd test CA");
    let files = Files::new(&ca, &ca.issue("contextd", 1));
    let (s, _tls) = https_server(&files, &ca, ServerConfig::default()).await;
    assert!(s.url.starts_with("https://127.0.0.1:"), "{}", s.url);

    // The SDK with the CA file: a ping, and an object written and read back.
    let lab = Client::new(&s.url, s.lab(), settings().with_ca_file(&files.ca)).expect("client");
    lab.ping().await.expect("ping over HTTPS");
    let id = new_customer(&lab, json!({"Context_First_Name": "Ada"})).await;
    let read = lab.get(Kind::Customer, id).await.expect("read back");
    assert_eq!(value(&read, "Context_First_Name"), &json!("Ada"));

    // Every answer carries HSTS: a success, an unknown route, a page.
    for path in ["/v1/ping", "/v1/no-such-route", "/desktop"] {
        let r = s.call(Method::GET, path, None, None).await;
        assert_eq!(
            r.headers
                .get("strict-transport-security")
                .and_then(|v| v.to_str().ok()),
            Some(HSTS),
            "{path}"
        );
    }

    // A connectionData names the https:// URL, and a client built from it with the CA file
    // exchanges its credential and calls over HTTPS.
    let prod = Client::new(&s.url, s.prod(), settings().with_ca_file(&files.ca)).expect("client");
    let data = prod
        .create_connector(&NewConnector {
            name: "ivr".into(),
            app_type: AppType::Voice,
            version: None,
        })
        .await
        .expect("a connector")
        .connection_data;
    let component = Client::from_connection_data(&data, settings().with_ca_file(&files.ca))
        .expect("a client from the connectionData");
    assert_eq!(component.base_url(), s.url);
    component
        .status()
        .await
        .expect("status through the connectionData over HTTPS");

    // Without the CA file the certificate is refused at once, with a reason that says so,
    // for a token and for a connectionData alike.
    let quick = Settings::standard()
        .with_timeout(Duration::from_secs(5))
        .with_retries(1);
    let strangers = [
        Client::new(&s.url, s.lab(), quick.clone()).expect("client"),
        Client::from_connection_data(&data, quick).expect("client"),
    ];
    for stranger in strangers {
        let started = Instant::now();
        match stranger.ping().await {
            Err(Error::Unreachable { reason, .. }) => assert!(
                reason.to_lowercase().contains("certificate"),
                "the reason names the certificate: {reason}"
            ),
            other => panic!("a certificate no trusted CA signed must be refused, got {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "refused at once, not after a timeout: {:?}",
            started.elapsed()
        );
    }

    // Plain HTTP to the HTTPS port gets a plain 400 that says to use https://, and the server
    // is none the worse for it.
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let answer = plain
        .get(format!("http://{}/v1/ping", addr(&s)))
        .send()
        .await
        .expect("a plain-HTTP answer");
    let r = TestServer::read(answer).await;
    r.expect(400);
    assert!(r.str("/detail").contains("https://"), "{}", r.body);
    assert!(r.headers.get("strict-transport-security").is_none());
    lab.ping().await.expect("still serving HTTPS");

    // A plain-HTTP server sends no HSTS.
    let plain_server = TestServer::start().await;
    let r = plain_server.call(Method::GET, "/v1/ping", None, None).await;
    r.expect(200);
    assert!(r.headers.get("strict-transport-security").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cookie_is_secure_on_https_and_behind_a_proxy_that_says_so() {
    let ca = Ca::new("contextd test CA");
    let files = Files::new(&ca, &ca.issue("contextd", 1));
    let (s, _tls) = https_server(&files, &ca, ServerConfig::default()).await;
    let cookie = session_cookie(&s).await;
    assert!(
        cookie.contains("; Secure") && cookie.contains("HttpOnly"),
        "cookie over HTTPS: {cookie}"
    );

    // Plain HTTP: not Secure by default (a browser would not send it back), Secure when the
    // operator says a proxy in front terminates TLS.
    let plain = TestServer::start().await;
    let cookie = session_cookie(&plain).await;
    assert!(
        !cookie.contains("Secure"),
        "cookie over plain HTTP: {cookie}"
    );
    let proxied = TestServer::start_with(
        Default::default(),
        ServerConfig {
            cookie_secure: Some(true),
            ..ServerConfig::default()
        },
    )
    .await;
    let cookie = session_cookie(&proxied).await;
    assert!(
        cookie.contains("; Secure"),
        "cookie behind a TLS proxy: {cookie}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_the_new_certificate_to_new_connections_and_keeps_open_ones() {
    let ca = Ca::new("contextd test CA");
    let first = ca.issue("contextd first", 1);
    let files = Files::new(&ca, &first);
    let (s, tls) = https_server(&files, &ca, ServerConfig::default()).await;
    let target = addr(&s);

    let mut before = connect(&target, &ca.pem).await;
    assert_eq!(served_certificate(&before), first.der);
    assert_eq!(ping(&mut before).await, Some(200));

    let second = ca.issue("contextd second", 2);
    assert_ne!(second.der, first.der);
    files.install(&second);
    tls.reload().expect("the new certificate loads");

    // The connection made before the reload goes on, kept alive, with its certificate.
    assert_eq!(
        ping(&mut before).await,
        Some(200),
        "a connection open across the reload keeps working"
    );
    assert_eq!(served_certificate(&before), first.der);
    // A new connection gets the new certificate; the SDK (same CA) goes on working.
    let mut after = connect(&target, &ca.pem).await;
    assert_eq!(served_certificate(&after), second.der);
    assert_eq!(ping(&mut after).await, Some(200));
    Client::new(&s.url, s.lab(), settings().with_ca_file(&files.ca))
        .expect("client")
        .status()
        .await
        .expect("the SDK over the new certificate");

    // Bad files: the reload fails, saying why, and the certificate in use stays.
    std::fs::write(&files.settings.key, "not a key\n").expect("spoil the key");
    let e = tls.reload().expect_err("a key file without a key");
    assert!(matches!(e, TlsError::NoKey { .. }), "{e}");
    assert!(e.to_string().contains("key.pem"), "{e}");
    let stranger = Ca::new("another CA").issue("contextd elsewhere", 3);
    std::fs::write(&files.settings.cert, &stranger.cert_pem).expect("another certificate");
    std::fs::write(&files.settings.key, &second.key_pem).expect("the second key");
    let e = tls
        .reload()
        .expect_err("a key that is not the certificate's");
    assert!(matches!(e, TlsError::Mismatch { .. }), "{e}");
    let mut still = connect(&target, &ca.pem).await;
    assert_eq!(served_certificate(&still), second.der);
    assert_eq!(ping(&mut still).await, Some(200));
    assert_eq!(ping(&mut before).await, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_stalled_and_idle_tls_clients_are_closed_after_the_header_timeout() {
    let _exclusive = EXCLUSIVE.lock().await;
    let ca = Ca::new("contextd test CA");
    let files = Files::new(&ca, &ca.issue("contextd", 1));
    let (s, _tls) = https_server(&files, &ca, ServerConfig::default()).await;
    let target = addr(&s);

    let opened = Instant::now();
    // Connects and sends nothing.
    let silent = TcpStream::connect(&target).await.expect("connect");
    // Starts a TLS record, then stops.
    let mut stalled = TcpStream::connect(&target).await.expect("connect");
    stalled.write_all(&[0x16, 0x03, 0x01]).await.expect("write");
    // Finishes the handshake and never sends a request.
    let idle = connect(&target, &ca.pem).await;

    // Meanwhile others are served.
    let client = Client::new(&s.url, s.lab(), settings().with_ca_file(&files.ca)).expect("client");
    client
        .ping()
        .await
        .expect("served while the others hold connections");

    let limit = HEADER_TIMEOUT * 4;
    let watch = move |name: &'static str, mut stream: Box<dyn AsyncRead + Unpin + Send>| {
        tokio::spawn(async move {
            let closed = closes_within(&mut stream, limit).await;
            (name, closed, opened.elapsed())
        })
    };
    let watchers = [
        watch("silent", Box::new(silent)),
        watch("stalled", Box::new(stalled)),
        watch("idle after the handshake", Box::new(idle)),
    ];
    for watcher in watchers {
        let (name, closed, after) = watcher.await.expect("watcher");
        assert!(
            closed,
            "the {name} connection was still open after {limit:?}"
        );
        assert!(
            after >= HEADER_TIMEOUT - Duration::from_millis(100),
            "the {name} connection was closed before the header timeout: {after:?}"
        );
    }
    client.ping().await.expect("still serving");
}
