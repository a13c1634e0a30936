//! The ceiling: a bare HTTP echo server (axum, like contextd, and nothing else) on its own
//! two-thread runtime in this process, so that it competes for the CPU with the client the way
//! the real server does. `POST`/`PUT` echo the body; `GET` answers a small JSON object.

use std::net::SocketAddr;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;

/// A running echo server; stopped on drop.
pub struct Echo {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

async fn echo(method: Method, body: Bytes) -> Response {
    let json = [(header::CONTENT_TYPE, "application/json")];
    if method == Method::GET {
        (json, r#"{"items":[],"total":0,"nextCursor":null}"#).into_response()
    } else {
        (json, body).into_response()
    }
}

impl Echo {
    /// Starts the server on 127.0.0.1, a free port.
    pub fn start(worker_threads: usize) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .context("cannot bind the echo server")?;
        listener.set_nonblocking(true)?;
        let url = format!("http://{}", listener.local_addr()?);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(worker_threads.max(1))
            .thread_name("bench-echo")
            .enable_all()
            .build()
            .context("cannot start the echo server's runtime")?;
        let (tx, rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bench-echo".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("bench: echo server cannot listen: {e}");
                            return;
                        }
                    };
                    let app = axum::Router::new().fallback(echo);
                    let shutdown = async {
                        let _ = rx.await;
                    };
                    if let Err(e) = axum::serve(listener, app)
                        .with_graceful_shutdown(shutdown)
                        .await
                    {
                        eprintln!("bench: echo server failed: {e}");
                    }
                });
                runtime.shutdown_background();
            })
            .context("cannot start the echo server's thread")?;
        Ok(Self {
            url,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        // Keep-alive connections of the client's pool end the graceful shutdown late; the
        // thread is detached rather than joined so that dropping never blocks the client.
        drop(self.thread.take());
    }
}
