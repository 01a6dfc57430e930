//! A small HTTP/1.1 responder for `/metrics` and `/healthz`.
//!
//! Only what a scraper and a health checker need: `GET` and `HEAD`, one
//! request per connection (`Connection: close`), a bounded request head, a
//! deadline to receive it and one to send the answer, and a bounded number of
//! connections served at once (beyond it, new connections wait in the listen
//! backlog). Bodies sent with a request are never read. Anything else gets a
//! precise status code, never a panic.

use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
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
    /// Connections served concurrently.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 8 * 1024,
            read_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(10),
            max_connections: 16,
        }
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

/// Serves until the task is dropped or aborted.
pub async fn serve(listener: TcpListener, handler: Arc<dyn Handler>, limits: Limits) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        match listener.accept().await {
            Ok((stream, _peer)) => {
                let handler = handler.clone();
                tokio::spawn(async move {
                    connection(stream, handler.as_ref(), limits).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                log::warn!("accepting a metrics connection: {e}");
                drop(permit);
                tokio::time::sleep(Duration::from_millis(100)).await;
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
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = buf.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The method and path of a request head, or the status to refuse it with.
fn parse_request_line(head: &[u8]) -> Result<(&str, &str), u16> {
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
    if method.is_empty() || !target.starts_with('/') {
        return Err(400);
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    Ok((method, path))
}

async fn connection(mut stream: TcpStream, handler: &dyn Handler, limits: Limits) {
    let (response, head_only, allow) = match read_head(&mut stream, limits).await {
        Err(HeadError::Closed) => return,
        Err(HeadError::Timeout) => (Response::text(408, "request timeout\n"), false, false),
        Err(HeadError::TooLarge) => (
            Response::text(431, "request head too large\n"),
            false,
            false,
        ),
        Ok(head) => match parse_request_line(&head) {
            Err(status) => (
                Response::text(status, format!("{}\n", reason(status).to_lowercase())),
                false,
                false,
            ),
            Ok(("GET", path)) => (handler.get(path), false, false),
            Ok(("HEAD", path)) => (handler.get(path), true, false),
            Ok(_) => (
                Response::text(405, "only GET and HEAD are served\n"),
                false,
                true,
            ),
        },
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
                _ => Response::text(404, "not found\n"),
            }
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
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            let server = tokio::spawn(serve(listener, Arc::new(Echo), limits()));
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

    /// Idle clients are cut off at the read deadline and cannot starve the
    /// server: with both slots taken by silent connections, a scrape is
    /// still answered once their deadline passes.
    #[test]
    fn slow_clients_time_out_and_do_not_block_scrapes() {
        with_server(async |addr| {
            let mut idle1 = TcpStream::connect(addr).await.expect("connect");
            let _idle2 = TcpStream::connect(addr).await.expect("connect");
            let start = std::time::Instant::now();
            let r = exchange(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
            assert!(r.starts_with("HTTP/1.1 200 "), "{r}");
            assert!(start.elapsed() < Duration::from_secs(2));
            let mut out = Vec::new();
            idle1.read_to_end(&mut out).await.expect("read");
            assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 408 "));
        });
    }

    #[test]
    fn head_end_and_request_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\n"), Some(14));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(parse_request_line(b"GET /a?b HTTP/1.1"), Ok(("GET", "/a")));
        assert_eq!(parse_request_line(b"GET a HTTP/1.1"), Err(400));
        assert_eq!(parse_request_line(b"GET /a  HTTP/1.1"), Err(400));
    }
}
