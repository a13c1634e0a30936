//! Retries only where repeating is safe, and never past the timeout.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use contextd_client::proto::object::ObjectInput;
use contextd_client::proto::{Kind, ObjectId};
use contextd_client::{Client, Error, Settings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How a peer treats each connection.
#[derive(Clone, Copy)]
enum Peer {
    /// Reads the request, then closes without a word.
    Drops,
    /// Answers 503 with a problem document.
    Unavailable,
    /// Reads the request and never answers.
    Silent,
}

/// A listener on port 0 behaving as `peer`; counts the requests it received.
async fn peer(peer: Peer) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = requests.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                if socket.read(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
                seen.fetch_add(1, Ordering::SeqCst);
                match peer {
                    Peer::Drops => {}
                    Peer::Unavailable => {
                        let body = r#"{"type":"urn:contextd:problem:storage","title":"Storage unavailable","status":503,"detail":"retry later"}"#;
                        let head = format!(
                            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        );
                        let _ = socket.write_all(head.as_bytes()).await;
                        let _ = socket.write_all(body.as_bytes()).await;
                    }
                    Peer::Silent => tokio::time::sleep(Duration::from_secs(60)).await,
                }
            });
        }
    });
    (url, requests)
}

fn client(url: &str, timeout_ms: u64) -> Client {
    let settings = Settings::standard()
        .with_timeout(Duration::from_millis(timeout_ms))
        .with_retries(3);
    Client::new(url, "ctxd_test", settings).expect("client")
}

#[tokio::test]
async fn a_read_is_retried_after_a_dropped_connection_and_a_create_is_not() {
    let (url, requests) = peer(Peer::Drops).await;
    let c = client(&url, 5000);
    let read = c.get(Kind::Customer, ObjectId::new()).await;
    assert!(matches!(read, Err(Error::Unreachable { .. })), "{read:?}");
    assert_eq!(requests.load(Ordering::SeqCst), 3, "a GET is tried 3 times");

    requests.store(0, Ordering::SeqCst);
    let create = c.create(Kind::Customer, &ObjectInput::default()).await;
    assert!(
        matches!(create, Err(Error::Unreachable { .. })),
        "{create:?}"
    );
    assert_eq!(
        requests.load(Ordering::SeqCst),
        1,
        "a create is never repeated: it might have been made"
    );
    let stats = c.stats_summary();
    assert_eq!(
        stats["customer.get.error.unreachable"]["count"], 1,
        "{stats}"
    );
    assert_eq!(
        stats["customer.create.error.unreachable"]["count"], 1,
        "{stats}"
    );
}

#[tokio::test]
async fn a_503_is_retried_for_a_search_and_reported_typed() {
    let (url, requests) = peer(Peer::Unavailable).await;
    let c = client(&url, 5000);
    let found = c
        .search(Kind::Customer, &contextd_client::Search::all().build())
        .await;
    match found {
        Err(Error::Server {
            status: 503, code, ..
        }) => {
            assert_eq!(code, Some(contextd_client::proto::ErrorCode::Storage));
        }
        other => panic!("expected the 503 as Server: {other:?}"),
    }
    assert_eq!(
        requests.load(Ordering::SeqCst),
        3,
        "a search is read-only: retried"
    );
}

#[tokio::test]
async fn a_silent_server_is_a_timeout_within_the_budget_retries_included() {
    let (url, requests) = peer(Peer::Silent).await;
    let c = client(&url, 400);
    let started = Instant::now();
    let read = c.get(Kind::Customer, ObjectId::new()).await;
    let took = started.elapsed();
    assert!(
        matches!(read, Err(Error::Timeout { after, .. }) if after == Duration::from_millis(400)),
        "{read:?}"
    );
    // The budget bounds the whole call: no retry starts after it ran out.
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    assert!(
        took >= Duration::from_millis(350),
        "gave up early: {took:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "did not stop at the budget: {took:?}"
    );
}

#[tokio::test]
async fn an_address_nobody_listens_on_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let c = client(&url, 2000);
    let r = c.status().await;
    assert!(matches!(r, Err(Error::Unreachable { .. })), "{r:?}");
    assert_eq!(r.err().map(|e| e.kind()), Some("unreachable"));
}
