//! stdout and stderr that can neither wedge nor kill the process.
//!
//! `print!`/`eprintln!` panic when the stream is closed (EPIPE) and block
//! the caller while the reader does not read. Everything the monitor writes
//! to its standard streams goes through a [`Stream`] instead:
//!
//! - **direct** (the default, and what `check` and `analyze` use): the line is
//!   written at once with `write(2)`; a closed stream (EPIPE, or any write
//!   error) marks the stream closed and later lines are discarded, never a
//!   panic.
//! - **queued** ([`Stream::start_writer`], `trace` and the daemon once their
//!   capabilities are dropped): lines go into a queue bounded in bytes and a
//!   writer thread does the blocking `write(2)`. The caller never blocks; a
//!   line that does not fit is counted ([`Stream::dropped`]) and discarded.
//!   At exit, [`flush`] waits a bounded time for the queue to drain; whatever
//!   the reader does, the process ends on time.
//!
//! Lines are written whole (one `write` per line when they fit in the pipe),
//! so journald and concurrent writers never see half a finding.

use std::{
    collections::VecDeque,
    io,
    sync::{
        Condvar, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

pub struct Stream {
    fd: i32,
    name: &'static str,
    /// Bytes the queue may hold (queued mode).
    limit: usize,
    queue: Mutex<Queue>,
    changed: Condvar,
    dropped: AtomicU64,
    closed: AtomicBool,
}

struct Queue {
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
    /// A writer thread is running.
    queued: bool,
    /// The writer thread is inside `write(2)`.
    writing: bool,
}

/// Findings (daemon) and events (`trace`): a few MB absorb a burst while the
/// reader is slow; beyond that lines are counted and dropped.
pub static STDOUT: Stream = Stream::new(1, "stdout", 8 << 20);
/// Diagnostics: rarely more than a few lines a minute.
pub static STDERR: Stream = Stream::new(2, "stderr", 1 << 20);

impl Stream {
    const fn new(fd: i32, name: &'static str, limit: usize) -> Stream {
        Stream {
            fd,
            name,
            limit,
            queue: Mutex::new(Queue {
                lines: VecDeque::new(),
                bytes: 0,
                queued: false,
                writing: false,
            }),
            changed: Condvar::new(),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The reader went away (or writing failed): nothing is written any more.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Lines discarded because the queue was full (not counting those
    /// discarded after the stream closed).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `text` and a newline. Returns `false` if the line was not
    /// written or queued (stream closed, or queue full: then counted).
    pub fn line(&self, text: &str) -> bool {
        let mut bytes = Vec::with_capacity(text.len() + 1);
        bytes.extend_from_slice(text.as_bytes());
        bytes.push(b'\n');
        self.bytes(bytes)
    }

    /// Writes `bytes` as they are (a whole report, several lines).
    pub fn bytes(&self, bytes: Vec<u8>) -> bool {
        if self.is_closed() {
            return false;
        }
        let mut q = self.lock();
        if !q.queued {
            drop(q);
            return self.write_now(&bytes);
        }
        if q.bytes + bytes.len() > self.limit {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        q.bytes += bytes.len();
        q.lines.push_back(bytes);
        self.changed.notify_all();
        true
    }

    fn write_now(&self, mut bytes: &[u8]) -> bool {
        while !bytes.is_empty() {
            // SAFETY: writing from a valid buffer to a file descriptor this
            // process owns for its whole life (0–2 are never closed here).
            let n = unsafe { libc::write(self.fd, bytes.as_ptr().cast(), bytes.len()) };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                self.closed.store(true, Ordering::Relaxed);
                return false;
            }
            if n == 0 {
                self.closed.store(true, Ordering::Relaxed);
                return false;
            }
            bytes = &bytes[n as usize..];
        }
        true
    }

    /// Switches to queued mode: from now on a thread does the writing.
    ///
    /// The thread is created with the calling thread's credentials:
    /// callers start it after dropping capabilities (and switching user), so
    /// it holds nothing the process gave up.
    pub fn start_writer(&'static self) -> io::Result<()> {
        let mut q = self.lock();
        if q.queued {
            return Ok(());
        }
        std::thread::Builder::new()
            .name(format!("monitor-{}", self.name))
            .spawn(move || self.writer())?;
        q.queued = true;
        Ok(())
    }

    fn writer(&self) {
        loop {
            let line = {
                let mut q = self.lock();
                loop {
                    if let Some(l) = q.lines.pop_front() {
                        q.writing = true;
                        break l;
                    }
                    q = self.changed.wait(q).unwrap_or_else(|e| e.into_inner());
                }
            };
            let ok = self.write_now(&line);
            let mut q = self.lock();
            q.writing = false;
            q.bytes -= line.len();
            if !ok {
                q.lines.clear();
                q.bytes = 0;
            }
            self.changed.notify_all();
        }
    }

    /// Waits until everything queued is written, the stream closed, or the
    /// deadline passed. Returns whether the queue is empty.
    pub fn flush_until(&self, deadline: Instant) -> bool {
        let mut q = self.lock();
        loop {
            if (q.lines.is_empty() && !q.writing) || self.is_closed() {
                return q.lines.is_empty();
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            q = self
                .changed
                .wait_timeout(q, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// Flushes both streams, waiting at most `budget` in total. Lines still
/// queued afterwards are abandoned (the process is about to exit).
pub fn flush(budget: Duration) {
    let deadline = Instant::now() + budget;
    STDOUT.flush_until(deadline);
    STDERR.flush_until(deadline);
}

/// One line on stderr (`monitor: ` is the caller's).
pub fn say(text: &str) {
    STDERR.line(text);
}

/// Formats and writes one stderr line; never panics, never blocks once the
/// writer thread runs.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::say(&format!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe nobody reads: queued writes return at once and overflow is
    /// counted; direct writes after the reader closed report a closed stream.
    #[test]
    fn a_full_pipe_never_blocks_and_a_closed_one_never_panics() {
        let mut fds = [0i32; 2];
        // SAFETY: a two-element array for pipe(2).
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let s: &'static Stream = Box::leak(Box::new(Stream::new(fds[1], "test", 64 << 10)));
        s.start_writer().expect("thread");
        let start = Instant::now();
        let line = "x".repeat(1000);
        let mut queued = 0;
        for _ in 0..10_000 {
            if s.line(&line) {
                queued += 1;
            }
        }
        assert!(start.elapsed() < Duration::from_secs(5), "blocked");
        assert!(queued > 0 && queued < 10_000, "{queued}");
        assert_eq!(s.dropped(), 10_000 - queued);
        assert!(!s.flush_until(Instant::now() + Duration::from_millis(50)));

        // SAFETY: closing the read end makes the writer get EPIPE (SIGPIPE
        // is ignored by the Rust runtime).
        unsafe { libc::close(fds[0]) };
        assert!(s.flush_until(Instant::now() + Duration::from_secs(5)) || s.is_closed());
        assert!(s.is_closed());
        assert!(!s.line("after close"));
    }
}
