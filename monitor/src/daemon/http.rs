//! A small HTTP/1.1 responder for `/metrics` and `/healthz`.
//!
//! Only what a scraper and a health checker need: `GET` and `HEAD`, one
//! request per connection (`Connection: close`), a bounded request head, a
//! short deadline to receive it and one to send the answer. Bodies sent with
//! a request are never read. Anything else gets a precise status code, never
//! a panic.
//!
//! No local user can starve it (slowloris): every connection is accepted at
//! once (nothing waits in the listen backlog behind idle clients), each
//! connection has its own task and budgets (head size, head deadline, answer
//! deadline), and at most `max_connections` are open: a new connection
//! evicts the oldest one still sending its head (else the oldest). A scraper
//! sends its head in its first packet and is answered before anything can
//! evict it, whatever a thousand idle or byte-a-second connections do.
//! Accept errors (EMFILE) evict the oldest connection to free a descriptor,
//! back off, and are logged at most once a minute.
//!
//! Why not hyper: it would bring a timeout for the head but neither the
//! connection cap with eviction nor the per-connection answer deadline;
//! those would still be written here, around a much larger parser. This
//! parser is a few lines and is fuzzed (`fuzz/`, target `http_head`).

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    task::AbortHandle,
    time::timeout,
};

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request line + headers accepted.
    pub max_head_bytes: usize,
    /// Time allowed to receive the whole request head.
    pub read_timeout: Duration,
    /// Time allowed to send the whole response.
    pub write_timeout: Duration,
    /// Connections open at once; beyond, the oldest is evicted.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 8 * 1024,
            // Scrapers and health checkers send the head at once.
            read_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(10),
            max_connections: 256,
        }
    }
}

/// A listen backlog long enough that a burst of connections does not drop
/// the scraper's SYN (the kernel caps it at `net.core.somaxconn`).
pub const BACKLOG: i32 = 4096;

/// Sets the listen backlog of a listening socket to [`BACKLOG`].
pub fn widen_backlog(listener: &std::net::TcpListener) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: listen(2) on a socket we own; calling it again only changes
    // the backlog.
    if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The open connections, for eviction.
#[derive(Default)]
struct Conns {
    next: u64,
    /// By id (= accept order): the task and whether its head is complete.
    open: BTreeMap<u64, (Option<AbortHandle>, Arc<AtomicBool>)>,
}

impl Conns {
    /// Closes the oldest connection still sending its head, else the oldest.
    fn evict_oldest(&mut self) -> bool {
        let victim = self
            .open
            .iter()
            .find(|(_, (_, done))| !done.load(Ordering::Relaxed))
            .or_else(|| self.open.iter().next())
            .map(|(id, _)| *id);
        let Some(id) = victim else { return false };
        if let Some((Some(task), _)) = self.open.remove(&id) {
            task.abort();
        }
        true
    }
}

fn lock(c: &Mutex<Conns>) -> std::sync::MutexGuard<'_, Conns> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

/// Logs an accept error at most once a minute, with how many were not logged.
struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    fn warn(&mut self, e: &std::io::Error) {
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
        {
            self.suppressed += 1;
            return;
        }
        let more = std::mem::take(&mut self.suppressed);
        log::warn!(
            "accepting a metrics connection: {e}{}",
            if more > 0 {
                format!(" ({more} more since the last report)")
            } else {
                String::new()
            }
        );
        self.last = Some(Instant::now());
    }
}

pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into().into_bytes(),
        }
    }
}

/// Answers a well-formed `GET` or `HEAD` request for `path` (query removed).
pub trait Handler: Send + Sync + 'static {
    fn get(&self, path: &str) -> Response;
}

const fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// The endpoint's own thread: scrapes are answered whatever the event loop
/// is doing (draining a burst, the detector, the recorder's writes, a map
/// walk, a stall in reclaim on the loop's side). Dropping it stops the
/// server and joins the thread.
pub struct ServerThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    /// Starts serving `listener` (already bound, non-blocking) on a new
    /// thread with its own single-threaded runtime.
    pub fn spawn(
        listener: std::net::TcpListener,
        handler: Arc<dyn Handler>,
        limits: Limits,
    ) -> std::io::Result<ServerThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = {
            let _in = runtime.enter();
            TcpListener::from_std(listener)?
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        () = serve(listener, handler, limits) => {}
                        _ = stopped => {}
                    }
                });
                // Open connections end with the runtime: their tasks are
                // dropped, their sockets closed.
                runtime.shutdown_timeout(Duration::from_millis(100));
            })?;
        Ok(ServerThread {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Serves until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, handler: Arc<dyn Handler>, limits: Limits) {
    let conns = Arc::new(Mutex::new(Conns::default()));
    let mut throttle = Throttle {
        last: None,
        suppressed: 0,
    };
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                let done = Arc::new(AtomicBool::new(false));
                let id = {
                    let mut c = lock(&conns);
                    while c.open.len() >= limits.max_connections.max(1) && c.evict_oldest() {}
                    let id = c.next;
                    c.next += 1;
                    c.open.insert(id, (None, done.clone()));
                    id
                };
                let (handler, conns2) = (handler.clone(), conns.clone());
                let task = tokio::spawn(async move {
                    connection(stream, handler.as_ref(), limits, &done).await;
                    lock(&conns2).open.remove(&id);
                });
                if let Some(entry) = lock(&conns).open.get_mut(&id) {
                    entry.0 = Some(task.abort_handle());
                }
                // Let the new connection read its head before the next
                // accept: a scraper's head is already there and marks it
                // done, so a storm of accepts (each evicting the oldest
                // connection still sending its head) cannot evict it first.
                tokio::task::yield_now().await;
            }
            Err(e) => {
                throttle.warn(&e);
                // EMFILE and friends: free a descriptor (then retry soon),
                // else back off instead of spinning.
                let freed = lock(&conns).evict_oldest();
                let pause = if freed { 10 } else { 100 };
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        }
    }
}

/// Why a request head could not be read.
#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    TooLarge,
    Timeout,
    /// The peer closed or reset the connection: nothing to answer.
    Closed,
}

async fn read_head(stream: &mut TcpStream, limits: Limits) -> Result<Vec<u8>, HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let read = async {
        let mut chunk = [0u8; 1024];
        loop {
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|_| HeadError::Closed)?;
            if n == 0 {
                return Err(HeadError::Closed);
            }
            buf.extend_from_slice(&chunk[..n]);
            match head_end(&buf) {
                Some(end) if end <= limits.max_head_bytes => {
                    buf.truncate(end);
                    return Ok(());
                }
                Some(_) => return Err(HeadError::TooLarge),
                None if buf.len() > limits.max_head_bytes => return Err(HeadError::TooLarge),
                None => {}
            }
        }
    };
    match timeout(limits.read_timeout, read).await {
        Ok(Ok(())) => Ok(buf),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(HeadError::Timeout),
    }
}

/// End of the head (`\r\n\r\n`, or `\n\n` from lenient clients).
pub fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = buf.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether the request head's `Accept-Encoding` allows gzip (RFC 9110
/// §12.5.3: a `gzip`, `x-gzip` or `*` coding whose `q` is not 0).
/// Prometheus asks for it on every scrape: the metrics body shrinks about
/// tenfold, so the answer takes one round trip instead of several, which
/// is what a scrape across a starved network path waits on.
pub fn accepts_gzip(head: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(head) else {
        return false;
    };
    text.lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| name.trim().eq_ignore_ascii_case("accept-encoding"))
        .flat_map(|(_, value)| value.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1.0), |(_, v)| v.trim().parse::<f32>().ok());
            ["gzip", "x-gzip", "*"]
                .iter()
                .any(|c| name.eq_ignore_ascii_case(c))
                && q.is_some_and(|q| q > 0.0)
        })
}

/// `body` gzipped at the fastest level (the metrics text compresses about
/// tenfold even there), or `None` if that does not make it smaller.
fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    enc.write_all(body).ok()?;
    let out = enc.finish().ok()?;
    (out.len() < body.len()).then_some(out)
}

/// The method and path of a request head, or the status to refuse it with.
/// Methods other than `GET` and `HEAD` get 405 whatever their target form
/// (`OPTIONS *`, `CONNECT host:port`); the target may be in origin form
/// (`/metrics`) or, as RFC 9112 requires servers to accept, absolute form
/// (`http://host:port/metrics`).
pub fn parse_request_line(head: &[u8]) -> Result<(&str, &str), u16> {
    let text = std::str::from_utf8(head).map_err(|_| 400u16)?;
    let line = text.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    if !version.starts_with("HTTP/") {
        return Err(400);
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(505);
    }
    if method.is_empty() || target.is_empty() || !method.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(400);
    }
    if method != "GET" && method != "HEAD" {
        return Err(405);
    }
    let origin = if target.starts_with('/') {
        target
    } else {
        let rest = ["http://", "https://"]
            .iter()
            .find_map(|scheme| {
                target
                    .get(..scheme.len())
                    .filter(|p| p.eq_ignore_ascii_case(scheme))
                    .map(|_| &target[scheme.len()..])
            })
            .ok_or(400u16)?;
        match rest.find(['/', '?', '#']) {
            Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
            Some(i) => &rest[i..],
            None => "/",
        }
    };
    let path = origin.split(['?', '#']).next().unwrap_or(origin);
    Ok((method, if path.is_empty() { "/" } else { path }))
}

async fn connection(
    mut stream: TcpStream,
    handler: &dyn Handler,
    limits: Limits,
    head_done: &AtomicBool,
) {
    let head = read_head(&mut stream, limits).await;
    head_done.store(true, Ordering::Relaxed);
    let mut gzip_ok = false;
    let (mut response, head_only, allow) = match head {
        Err(HeadError::Closed) => return,
        Err(HeadError::Timeout) => (Response::text(408, "request timeout\n"), false, false),
        Err(HeadError::TooLarge) => (
            Response::text(431, "request head too large\n"),
            false,
            false,
        ),
        Ok(head) => match parse_request_line(&head) {
            Err(405) => (
                Response::text(405, "only GET and HEAD are served\n"),
                false,
                true,
            ),
            Err(status) => (
                Response::text(status, format!("{}\n", reason(status).to_lowercase())),
                false,
                false,
            ),
            Ok((method, path)) => {
                gzip_ok = accepts_gzip(&head);
                (handler.get(path), method == "HEAD", false)
            }
        },
    };
    // Only a success is worth compressing; a HEAD gets the same headers as
    // the GET would.
    let encoded = response.status == 200 && gzip_ok && {
        match gzip(&response.body) {
            Some(z) => {
                response.body = z;
                true
            }
            None => false,
        }
    };
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\
         Cache-Control: no-store\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    )
    .into_bytes();
    if allow {
        out.extend_from_slice(b"Allow: GET, HEAD\r\n");
    }
    if response.status == 200 {
        out.extend_from_slice(b"Vary: Accept-Encoding\r\n");
    }
    if encoded {
        out.extend_from_slice(b"Content-Encoding: gzip\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&response.body);
    }
    let write = async {
        stream.write_all(&out).await?;
        stream.shutdown().await
    };
    let _ = timeout(limits.write_timeout, write).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;

    impl Handler for Echo {
        fn get(&self, path: &str) -> Response {
            match path {
                "/metrics" => Response {
                    status: 200,
                    content_type: "text/plain; version=0.0.4; charset=utf-8",
                    body: b"x 1\n".to_vec(),
                },
                "/big" => Response::text(200, Echo::big()),
                _ => Response::text(404, "not found\n"),
            }
        }
    }

    impl Echo {
        fn big() -> String {
            (0..2000)
                .map(|i| format!("series{{n=\"{i}\"}} {i}\n"))
                .collect()
        }
    }

    fn limits() -> Limits {
        Limits {
            max_head_bytes: 256,
            read_timeout: Duration::from_millis(300),
            write_timeout: Duration::from_secs(2),
            max_connections: 2,
        }
    }

    async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(request).await.expect("send");
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.expect("read");
        String::from_utf8(out).expect("utf-8")
    }

    fn with_server(f: impl AsyncFnOnce(std::net::SocketAddr)) {
        with_server_limits(limits(), f);
    }

    fn with_server_limits(limits: Limits, f: impl AsyncFnOnce(std::net::SocketAddr)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let server = tokio::spawn(serve(listener, Arc::new(Echo), limits));
            f(addr).await;
            server.abort();
        });
    }

    #[test]
    fn answers_get_and_head_with_length_and_close() {
        with_server(async |addr| {
            let r = exchange(addr, b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n").await;
            assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
            assert!(r.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
            assert!(r.contains("Content-Length: 4\r\n"));
            assert!(r.contains("Connection: close\r\n"));
            assert!(r.ends_with("\r\n\r\nx 1\n"), "{r}");
            let r = exchange(addr, b"HEAD /metrics HTTP/1.0\n\n").await;
            assert!(r.starts_with("HTTP/1.1 200 OK\r\n"));
            assert!(r.contains("Content-Length: 4\r\n"));
            assert!(r.ends_with("\r\n\r\n"), "HEAD has no body: {r}");
        });
    }

    #[test]
    fn refuses_what_it_does_not_serve() {
        with_server(async |addr| {
            let r = exchange(addr, b"GET /nope HTTP/1.1\r\n\r\n").await;
            assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
            let r = exchange(
                addr,
                b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
            )
            .await;
            assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
            assert!(r.contains("Allow: GET, HEAD\r\n"));
            let r = exchange(addr, b"GET /metrics HTTP/2.0\r\n\r\n").await;
            assert!(r.starts_with("HTTP/1.1 505 "), "{r}");
            let r = exchange(addr, b"garbage\r\n\r\n").await;
            assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
            let r = exchange(addr, b"GET \xff HTTP/1.1\r\n\r\n").await;
            assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
            let big = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(400));
            let r = exchange(addr, big.as_bytes()).await;
            assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
        });
    }

    /// Idle clients are cut off at the read deadline.
    #[test]
    fn idle_clients_get_408_at_the_deadline() {
        with_server(async |addr| {
            let mut idle = TcpStream::connect(addr).await.expect("connect");
            let mut out = Vec::new();
            idle.read_to_end(&mut out).await.expect("read");
            assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 408 "));
        });
    }

    /// With every slot taken by silent connections, a scrape evicts the
    /// oldest and is answered at once.
    #[test]
    fn a_scrape_evicts_the_oldest_idle_connection() {
        with_server(async |addr| {
            let mut idle1 = TcpStream::connect(addr).await.expect("connect");
            let _idle2 = TcpStream::connect(addr).await.expect("connect");
            tokio::time::sleep(Duration::from_millis(20)).await;
            let r = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
            assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
            let mut out = Vec::new();
            // Evicted: closed without an answer (or reset).
            let _ = idle1.read_to_end(&mut out).await;
            assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
        });
    }

    /// S1: 1,000 connections from one local user (500 silent, 500 sending
    /// a byte a second and reconnecting when closed) cannot starve
    /// `/metrics` with the default limits. The deadline is generous: the
    /// responder of the first release (16 slots taken before accept, 5 s
    /// each) needs over 300 s here.
    #[test]
    #[allow(clippy::print_stderr, reason = "the measured latencies")]
    fn a_thousand_slow_connections_do_not_starve_scrapes() {
        crate::sys::raise_fd_limit(4096);
        with_server_limits(Limits::default(), async |addr| {
            let mut attackers = Vec::new();
            for i in 0..1000 {
                attackers.push(tokio::spawn(async move {
                    loop {
                        let Ok(mut s) = TcpStream::connect(addr).await else {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        };
                        if i % 2 == 0 {
                            // Silent until closed.
                            let mut b = [0u8; 64];
                            let _ = s.read(&mut b).await;
                        } else {
                            for b in b"GET /metrics HTTP/1.1\r\nX: ".iter().cycle() {
                                if s.write_all(&[*b]).await.is_err() {
                                    break;
                                }
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                }));
            }
            tokio::time::sleep(Duration::from_secs(3)).await;
            let mut took = Vec::new();
            for _ in 0..10 {
                let start = Instant::now();
                let r = timeout(
                    Duration::from_secs(5),
                    exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n"),
                )
                .await
                .expect("a scrape is answered within 5 s under 1,000 slow connections");
                assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
                took.push(start.elapsed());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            eprintln!("scrapes under 1,000 slow connections took {took:?}");
            for a in attackers {
                a.abort();
            }
        });
    }

    #[test]
    fn gzip_when_asked_and_only_then() {
        with_server(async |addr| {
            let big = "GET /big HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n";
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(big.as_bytes()).await.expect("send");
            let mut out = Vec::new();
            s.read_to_end(&mut out).await.expect("read");
            let end = head_end(&out).expect("head");
            let head = format!("{}\r\n", std::str::from_utf8(&out[..end]).expect("utf-8"));
            assert!(head.contains("Content-Encoding: gzip\r\n"), "{head}");
            assert!(head.contains("Vary: Accept-Encoding\r\n"), "{head}");
            let body = &out[end + 4..];
            assert!(
                head.contains(&format!("Content-Length: {}\r\n", body.len())),
                "{head}"
            );
            let mut plain = String::new();
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(body), &mut plain)
                .expect("gunzip");
            assert_eq!(plain, Echo::big());
            // Not asked (or refused with q=0): plain.
            for request in [
                "GET /big HTTP/1.1\r\n\r\n",
                "GET /big HTTP/1.1\r\nAccept-Encoding: gzip;q=0, identity\r\n\r\n",
            ] {
                let answer = exchange(addr, request.as_bytes()).await;
                assert!(!answer.contains("Content-Encoding"), "{answer}");
                assert!(answer.ends_with(&Echo::big()), "{request}");
            }
            // Errors stay plain; a body gzip would not shrink stays plain.
            let answer =
                exchange(addr, b"GET /nope HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n").await;
            assert!(answer.starts_with("HTTP/1.1 404 ") && !answer.contains("Content-Encoding"));
            let answer = exchange(
                addr,
                b"GET /metrics HTTP/1.1\r\nAccept-Encoding: gzip\r\n\r\n",
            )
            .await;
            assert!(answer.ends_with("\r\n\r\nx 1\n"), "{answer}");
        });
    }

    #[test]
    fn accept_encoding() {
        let yes = [
            "GET / HTTP/1.1\r\nAccept-Encoding: gzip\r\n",
            "GET / HTTP/1.1\r\naccept-encoding:  deflate, GZIP;q=0.5\r\n",
            "GET / HTTP/1.1\r\nAccept-Encoding: *\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nAccept-Encoding: identity\r\nAccept-Encoding: x-gzip\r\n",
        ];
        let no = [
            "GET / HTTP/1.1\r\n",
            "GET / HTTP/1.1\r\nAccept-Encoding: gzip;q=0\r\n",
            "GET / HTTP/1.1\r\nAccept-Encoding: gzip;q=zero\r\n",
            "GET / HTTP/1.1\r\nAccept-Encoding: br, zstd\r\n",
            "GET /gzip HTTP/1.1\r\nX-Accept-Encoding: gzip\r\n",
            "Accept-Encoding: gzip\r\n",
        ];
        for h in yes {
            assert!(accepts_gzip(h.as_bytes()), "{h}");
        }
        for h in no {
            assert!(!accepts_gzip(h.as_bytes()), "{h}");
        }
    }

    #[test]
    fn head_end_and_request_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\n"), Some(14));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(parse_request_line(b"GET /a?b HTTP/1.1"), Ok(("GET", "/a")));
        assert_eq!(parse_request_line(b"GET a HTTP/1.1"), Err(400));
        assert_eq!(parse_request_line(b"GET /a  HTTP/1.1"), Err(400));
        // U9: absolute form (RFC 9112 3.2.2), and 405 whatever the target form.
        assert_eq!(
            parse_request_line(b"GET http://127.0.0.1:1/metrics?x HTTP/1.1"),
            Ok(("GET", "/metrics"))
        );
        assert_eq!(
            parse_request_line(b"GET HTTP://h HTTP/1.1"),
            Ok(("GET", "/"))
        );
        assert_eq!(
            parse_request_line(b"GET http://h?q HTTP/1.1"),
            Ok(("GET", "/"))
        );
        assert_eq!(parse_request_line(b"OPTIONS * HTTP/1.1"), Err(405));
        assert_eq!(parse_request_line(b"CONNECT h:443 HTTP/1.1"), Err(405));
        assert_eq!(parse_request_line(b"get /metrics HTTP/1.1"), Err(405));
        assert_eq!(parse_request_line(b"GET ftp://h/ HTTP/1.1"), Err(400));
    }
}
