//! Slow clients (issue 9, item 5): half-sent heads, idle keep-alive connections and slow
//! bodies are closed on time, and a cap on connections queues new ones without harming
//! established ones. Raw sockets, so that the client does exactly what a slow one does.

use std::time::{Duration, Instant};

use contextd_core::service::ContextConfig;
use contextd_server::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::signin::EXCLUSIVE;
use crate::support::TestServer;

const HALF_HEAD: &[u8] = b"GET /v1/ping HTTP/1.1\r\nHost: x\r\n";
const PING: &[u8] = b"GET /v1/ping HTTP/1.1\r\nHost: x\r\n\r\n";

fn addr(s: &TestServer) -> String {
    s.url.trim_start_matches("http://").to_owned()
}

/// One response read from a raw connection: status, head and body.
struct RawResponse {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Reads one response (a `content-length` body); `None` if the connection closed first.
async fn read_response(stream: &mut TcpStream) -> Option<RawResponse> {
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
    let mut body = buf[head_end..].to_vec();
    while body.len() < length {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Some(RawResponse { status, head, body })
}

/// Waits until the server closes the connection (EOF or reset); how long that took, or
/// `None` if it was still open after `limit`. Bytes the server sends first are skipped.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut chunk = [0u8; 1024];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

async fn ping(stream: &mut TcpStream) -> Option<RawResponse> {
    stream.write_all(PING).await.ok()?;
    read_response(stream).await
}

fn server(config: ServerConfig) -> impl std::future::Future<Output = TestServer> {
    TestServer::start_with(ContextConfig::default(), config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_half_sent_heads_are_closed_in_time_and_others_are_served_meanwhile() {
    let _exclusive = EXCLUSIVE.lock().await;
    let header_timeout = Duration::from_secs(2);
    let s = server(ServerConfig {
        header_timeout,
        ..ServerConfig::default()
    })
    .await;
    let target = addr(&s);
    let mut held = Vec::with_capacity(2_000);
    for _ in 0..2_000 {
        let mut stream = TcpStream::connect(&target).await.expect("connect");
        stream.write_all(HALF_HEAD).await.expect("write");
        held.push((stream, Instant::now()));
    }
    let watchers: Vec<_> = held
        .into_iter()
        .map(|(mut stream, sent)| {
            tokio::spawn(async move {
                let closed = closed_within(&mut stream, Duration::from_secs(20)).await;
                closed.map(|_| sent.elapsed())
            })
        })
        .collect();

    // While the 2,000 are held, others are answered promptly, anonymous and authenticated.
    let fresh = reqwest::Client::new();
    let until = Instant::now() + header_timeout;
    while Instant::now() < until {
        let started = Instant::now();
        let ping = fresh
            .get(format!("{}/v1/ping", s.url))
            .send()
            .await
            .expect("ping");
        assert_eq!(ping.status(), 200);
        let status = fresh
            .get(format!("{}/v1/status", s.url))
            .bearer_auth(s.lab())
            .send()
            .await
            .expect("status");
        assert_eq!(status.status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "answered promptly"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut lifetimes = Vec::with_capacity(2_000);
    for w in watchers {
        lifetimes.push(w.await.expect("watcher").expect("closed by the server"));
    }
    let (shortest, longest) = (
        lifetimes.iter().min().copied().unwrap_or_default(),
        lifetimes.iter().max().copied().unwrap_or_default(),
    );
    // Held for the header timeout (the server's clock starts at accept, after our write
    // began), and closed within a margin after it.
    assert!(
        shortest >= header_timeout - Duration::from_millis(300),
        "closed too early: {shortest:?}"
    );
    assert!(
        longest <= header_timeout + Duration::from_secs(3),
        "closed too late: {longest:?}"
    );
    // And the server still works afterwards.
    let after = s.get(s.lab(), "/v1/status").await;
    after.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_connection_cap_new_connections_wait_and_established_ones_keep_working() {
    let _exclusive = EXCLUSIVE.lock().await;
    let header_timeout = Duration::from_secs(2);
    let s = server(ServerConfig {
        header_timeout,
        max_connections: 50,
        ..ServerConfig::default()
    })
    .await;
    let target = addr(&s);
    // One established keep-alive connection, then 49 holders that fill the cap.
    let mut kept = TcpStream::connect(&target).await.expect("connect");
    assert_eq!(ping(&mut kept).await.map(|r| r.status), Some(200));
    let mut holders = Vec::new();
    for _ in 0..49 {
        let mut h = TcpStream::connect(&target).await.expect("connect");
        h.write_all(HALF_HEAD).await.expect("write");
        holders.push(h);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held_since = Instant::now();

    // A new connection: the kernel completes it, the server doesn't take it yet.
    let queued = tokio::spawn({
        let target = target.clone();
        async move {
            let mut c = TcpStream::connect(&target).await.expect("connect");
            let response = ping(&mut c).await;
            (response.map(|r| r.status), held_since.elapsed())
        }
    });

    // The established connection keeps working meanwhile.
    for _ in 0..3 {
        let started = Instant::now();
        let r = ping(&mut kept)
            .await
            .expect("answered on the kept connection");
        assert_eq!(r.status, 200);
        assert!(started.elapsed() < Duration::from_millis(500));
        assert!(!queued.is_finished(), "the 51st connection waits");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // The holders are closed by the header timeout; then the queued one is served.
    let (status, waited) = queued.await.expect("queued task");
    assert_eq!(status, Some(200));
    assert!(
        waited >= header_timeout - Duration::from_millis(600),
        "it waited for a free slot: {waited:?}"
    );
    assert!(
        waited <= header_timeout + Duration::from_secs(3),
        "served once slots were free: {waited:?}"
    );
    for mut h in holders {
        assert!(closed_within(&mut h, Duration::from_secs(1))
            .await
            .is_some());
    }
    assert_eq!(ping(&mut kept).await.map(|r| r.status), Some(200));
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout() {
    let idle_timeout = Duration::from_secs(1);
    let s = server(ServerConfig {
        idle_timeout,
        header_timeout: Duration::from_secs(10),
        ..ServerConfig::default()
    })
    .await;
    let target = addr(&s);
    // Requests closer together than the idle timeout keep a connection open past it.
    let mut busy = TcpStream::connect(&target).await.expect("connect");
    for _ in 0..5 {
        assert_eq!(ping(&mut busy).await.map(|r| r.status), Some(200));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // An idle one is closed after the idle timeout, not the (longer) header timeout.
    let mut idle = TcpStream::connect(&target).await.expect("connect");
    assert_eq!(ping(&mut idle).await.map(|r| r.status), Some(200));
    let after = closed_within(&mut idle, Duration::from_secs(5))
        .await
        .expect("the idle connection is closed");
    assert!(
        after >= idle_timeout - Duration::from_millis(200),
        "closed early: {after:?}"
    );
    assert!(
        after <= idle_timeout + Duration::from_secs(2),
        "closed late: {after:?}"
    );
}

#[tokio::test]
async fn a_body_that_stops_arriving_gets_408_and_the_connection_is_closed() {
    let body_timeout = Duration::from_secs(1);
    let s = server(ServerConfig {
        body_timeout,
        ..ServerConfig::default()
    })
    .await;
    let mut c = TcpStream::connect(addr(&s)).await.expect("connect");
    c.write_all(
        b"POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"name\":\"",
    )
    .await
    .expect("write");
    let started = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), read_response(&mut c))
        .await
        .expect("answered in time")
        .expect("a response");
    let took = started.elapsed();
    assert_eq!(r.status, 408);
    assert!(r.head.contains("content-type: application/problem+json"));
    assert!(r.head.contains("connection: close"));
    let problem: serde_json::Value = serde_json::from_slice(&r.body).expect("problem JSON");
    assert_eq!(problem["status"], 408);
    assert!(
        took >= body_timeout - Duration::from_millis(200)
            && took <= body_timeout + Duration::from_secs(2),
        "answered after the body timeout: {took:?}"
    );
    assert!(closed_within(&mut c, Duration::from_secs(2))
        .await
        .is_some());

    // A body that arrives in time, even in pieces, is served as usual.
    let mut c = TcpStream::connect(addr(&s)).await.expect("connect");
    let body = br#"{"partition": "lab", "name": "nobody", "password": "wrong password!"}"#;
    let head = format!(
        "POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).await.expect("write");
    c.write_all(&body[..10]).await.expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.write_all(&body[10..]).await.expect("write");
    let r = read_response(&mut c).await.expect("a response");
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_closes_idle_connections() {
    let s = server(ServerConfig::default()).await;
    let target = addr(&s);
    let mut idle = TcpStream::connect(&target).await.expect("connect");
    assert_eq!(ping(&mut idle).await.map(|r| r.status), Some(200));
    // A request in flight: its head is in, its body not yet.
    let mut in_flight = TcpStream::connect(&target).await.expect("connect");
    let body = br#"{"partition": "lab", "name": "nobody", "password": "wrong password!"}"#;
    let head = format!(
        "POST /v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    in_flight.write_all(head.as_bytes()).await.expect("write");
    in_flight.write_all(&body[..10]).await.expect("write");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let stopped = tokio::spawn(s.stop());
    assert!(
        closed_within(&mut idle, Duration::from_secs(2))
            .await
            .is_some(),
        "an idle connection is closed at once"
    );
    assert!(!stopped.is_finished(), "the server waits for the request");
    in_flight.write_all(&body[10..]).await.expect("write");
    let r = read_response(&mut in_flight).await.expect("answered");
    assert_eq!(r.status, 401);
    assert!(r.head.contains("connection: close"));
    tokio::time::timeout(Duration::from_secs(5), stopped)
        .await
        .expect("the server stops once the request is answered")
        .expect("joined");
    assert!(
        TcpStream::connect(&target).await.is_err(),
        "no longer listening"
    );
}
