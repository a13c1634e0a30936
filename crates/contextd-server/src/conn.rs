//! Connections: the accept loop with its connection cap and timeouts, and the request-body
//! deadline. Without them one small client could hold every connection forever (issue 9).
//!
//! Timeouts, as nginx has them: a new connection must send a whole request head within the
//! header timeout; a kept-alive connection may sit idle (no request, no bytes either way) for
//! the idle timeout, and once the first byte of its next request arrives, the head must be in
//! within the header timeout; a body must arrive in full within the body timeout of its head
//! (else 408). A connection with a request in its handler has no connection deadline.
//!
//! On an HTTPS listener the TLS handshake comes first, in the connection's task, and the
//! header timeout counts from the connection's start: a client that connects and never
//! finishes a handshake, or a head after it, holds its slot no longer than a plain one.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::error::{ApiError, ErrorCode};

/// The connection-level limits of [`serve_connections`].
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Time allowed for a whole request head.
    pub header_timeout: Duration,
    /// Time allowed for a whole request body after its head.
    pub body_timeout: Duration,
    /// Time a kept-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

/// Largest connection cap honoured (the semaphore's limit on 32-bit targets is 2^29).
const MAX_CAP: usize = 1 << 24;

/// The first byte a TLS client sends: the type of a handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, lets in-flight
/// requests finish, closes idle connections and returns when every connection has ended.
/// With `tls`, every connection is HTTPS.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let cap = limits.max_connections.clamp(1, MAX_CAP);
    let slots = Arc::new(Semaphore::new(cap));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        // A slot first, then accept: beyond the cap, connections wait in the kernel's backlog
        // and established ones are untouched.
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.map_err(io::Error::other)?,
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        let (app, stop, tls) = (app.clone(), stop_rx.clone(), tls.clone());
        tokio::spawn(async move {
            serve_connection(stream, app, limits, tls, stop).await;
            drop(slot);
        });
    }
    drop(listener);
    // Receivers see the change even if they were created before it (their version is older).
    let _ = stop_tx.send(true);
    // Every connection hands its slot back when it ends.
    let all = u32::try_from(cap).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
    Ok(())
}

/// Per-connection errors are the client's business; others (out of file descriptors) are
/// logged and followed by a pause, as hyper and axum do, so the loop does not spin.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed; pausing 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Serves one connection, plain or over TLS.
async fn serve_connection(
    stream: TcpStream,
    app: Router,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    stop: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new());
    let io = Tracked {
        inner: stream,
        activity: activity.clone(),
    };
    match tls {
        None => serve_http(io, app, limits, activity, stop).await,
        // Boxed: the TLS state would otherwise grow every plain connection's task too.
        Some(acceptor) => Box::pin(serve_tls(io, acceptor, app, limits, activity, stop)).await,
    }
}

/// Serves one connection of an HTTPS listener: the handshake, then HTTP over it. Both the
/// handshake and the first head must be in within the header timeout of the connection's
/// start (the handshake's bytes start the head's clock in [`Activity`]). A client that
/// speaks plain HTTP to the port gets a plain-HTTP 400 saying to use `https://`, rather than
/// a TLS alert it can't read.
async fn serve_tls(
    io: Tracked<TcpStream>,
    acceptor: TlsAcceptor,
    app: Router,
    limits: ConnectionLimits,
    activity: Arc<Activity>,
    mut stop: watch::Receiver<bool>,
) {
    let deadline = activity.start + limits.header_timeout;
    let mut first = [0u8; 1];
    let peeked = tokio::select! {
        peeked = tokio::time::timeout_at(deadline, io.inner.peek(&mut first)) => peeked,
        () = stopped(&mut stop) => return,
    };
    match peeked {
        Ok(Ok(n)) if n > 0 => {}
        // Closed before a byte, or failed.
        Ok(_) => return,
        Err(_) => {
            tracing::debug!("closing a connection that sent nothing within the header timeout");
            return;
        }
    }
    if first[0] != TLS_HANDSHAKE {
        serve_http(io, https_only(), limits, activity, stop).await;
        return;
    }
    let accepted = tokio::select! {
        accepted = tokio::time::timeout_at(deadline, acceptor.accept(io)) => accepted,
        () = stopped(&mut stop) => return,
    };
    let stream = match accepted {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(
                "closing a connection whose TLS handshake did not end within the header timeout"
            );
            return;
        }
    };
    serve_http(stream, app, limits, activity, stop).await;
}

/// Resolves once the server is stopping.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopping| *stopping).await;
}

/// What a plain-HTTP request to an HTTPS listener gets: 400, and the connection is closed.
fn https_only() -> Router {
    Router::new().fallback(|| async {
        let mut response = ApiError::new(
            ErrorCode::BadRequest,
            "this port speaks HTTPS only: use an https:// URL",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    })
}

/// Serves HTTP/1 on one connection's stream, closing it when a deadline of [`Activity`]
/// passes.
async fn serve_http<S>(
    stream: S,
    app: Router,
    limits: ConnectionLimits,
    activity: Arc<Activity>,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let io = TokioIo::new(stream);
    let in_service = activity.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let busy = Busy::begin(&in_service);
        let (request, late) = with_body_deadline(request, limits.body_timeout);
        let app = app.clone();
        async move {
            let response = app.oneshot(request).await;
            drop(busy);
            match late {
                Some(late) if late.load(Ordering::Relaxed) => {
                    Ok(body_too_late(limits.body_timeout))
                }
                _ => response,
            }
        }
    });
    let conn = hyper::server::conn::http1::Builder::new().serve_connection(io, service);
    let mut conn = pin!(conn);
    let mut stopping = false;
    loop {
        let deadline = activity.deadline(&limits, stopping);
        // A head that starts while we sleep has a deadline of its own, no earlier than
        // now + header timeout: waking by then is soon enough to see it.
        let wake = deadline.map(|d| d.min(Instant::now() + limits.header_timeout));
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break;
            }
            _ = stop.changed(), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = activity.request_ended.notified() => {}
            () = sleep_until(wake) => {
                if activity.deadline(&limits, stopping).is_some_and(|d| d <= Instant::now()) {
                    // No request is in the handler: dropping the connection loses no answer.
                    tracing::debug!("closing a connection past its header or idle deadline");
                    break;
                }
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What a connection is doing, as seen by its socket and its service.
struct Activity {
    start: Instant,
    /// Milliseconds since `start` of the last byte read or written, or request end.
    last: AtomicU64,
    /// 1 + milliseconds since `start` of the first byte of a request head not yet complete;
    /// 0 when none is pending.
    head: AtomicU64,
    /// Requests in the handler.
    in_flight: AtomicUsize,
    /// A request has been served on this connection (it is kept alive).
    served: AtomicBool,
    /// Wakes the connection's watcher when a request ends.
    request_ended: Notify,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
            head: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            request_ended: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(&self, ms: u64) -> Instant {
        self.start + Duration::from_millis(ms)
    }

    fn read(&self) {
        let now = self.now_ms();
        self.last.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            // Bytes while no request is in the handler start (or continue) a request head.
            let _ = self
                .head
                .compare_exchange(0, now + 1, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.last.store(self.now_ms(), Ordering::Relaxed);
    }

    /// When the connection is to be closed; `None` while a request is in the handler.
    fn deadline(&self, limits: &ConnectionLimits, stopping: bool) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let head = self.head.load(Ordering::Relaxed);
        if head > 0 {
            return Some(self.at(head - 1) + limits.header_timeout);
        }
        if stopping {
            return Some(Instant::now());
        }
        let wait = if self.served.load(Ordering::Relaxed) {
            limits.idle_timeout
        } else {
            limits.header_timeout
        };
        Some(self.at(self.last.load(Ordering::Relaxed)) + wait)
    }
}

/// Marks a request as in the handler for as long as it lives.
struct Busy(Arc<Activity>);

impl Busy {
    fn begin(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.head.store(0, Ordering::Relaxed);
        activity.served.store(true, Ordering::Relaxed);
        Self(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.wrote();
        self.0.request_ended.notify_one();
    }
}

/// A socket that reports its reads and writes to the connection's [`Activity`]. Under TLS it
/// is the TCP socket beneath the TLS stream: handshake bytes count as the start of a head.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.wrote();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Gives a request body a deadline: it must arrive in full within `timeout` of the head. The
/// flag tells whether it missed it.
fn with_body_deadline(
    request: Request<Incoming>,
    timeout: Duration,
) -> (Request, Option<Arc<AtomicBool>>) {
    if request.body().is_end_stream() {
        return (request.map(Body::new), None);
    }
    let late = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + timeout;
    let flag = late.clone();
    let request = request.map(|inner| {
        Body::new(DeadlineBody {
            inner,
            deadline,
            sleep: None,
            late: flag,
        })
    });
    (request, Some(late))
}

/// The answer to a request whose body missed its deadline, whatever the handler made of the
/// failed read: 408, and the connection is closed (the rest of the body is never read).
fn body_too_late(timeout: Duration) -> Response {
    let mut response = ApiError::new(
        ErrorCode::RequestTimeout,
        format!(
            "the request body did not arrive within {}",
            humantime::format_duration(timeout)
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request body that fails once its deadline passes.
struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    /// Made on the first wait only: most bodies are in the first read.
    sleep: Option<Pin<Box<Sleep>>>,
    late: Arc<AtomicBool>,
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("the request body did not arrive in time")]
    TimedOut,
    #[error(transparent)]
    Read(#[from] hyper::Error),
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(BodyError::from)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.as_mut().poll(cx).is_ready() {
            this.late.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(BodyError::TimedOut)));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
