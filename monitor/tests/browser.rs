//! Headless Chromium (the Debian package, installed by
//! `scripts/setup.sh --for-tests`) driven over the DevTools protocol on a
//! pipe (`--remote-debugging-pipe`: the browser reads commands from fd 3
//! and writes replies and events to fd 4, NUL-separated JSON). No
//! WebSocket, no port, no network.
//!
//! A [`Page`] records every console message, uncaught exception, log entry
//! and network request made while it was open, so a test can require
//! "no console errors, nothing loaded from anywhere".

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::{fd::FromRawFd as _, unix::process::CommandExt as _},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::util::tempdir::TempDir;

pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The browser, or `None` with the reason printed (the package is
/// installed by `scripts/setup.sh --for-tests`, so CI always has it).
pub fn chromium() -> Option<Browser> {
    if !Path::new(CHROMIUM).exists() {
        eprintln!(
            "skipped: {CHROMIUM} is missing (scripts/setup.sh --for-tests installs Debian's chromium)"
        );
        return None;
    }
    Some(Browser::launch())
}

pub struct Browser {
    child: Child,
    to: std::fs::File,
    from: mpsc::Receiver<Value>,
    next_id: u64,
    /// Events not yet claimed by a page.
    backlog: Vec<Value>,
    _profile: TempDir,
}

fn pipe() -> (i32, i32) {
    let mut fds = [0i32; 2];
    // SAFETY: fds has room for the two descriptors.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    (fds[0], fds[1])
}

impl Browser {
    fn launch() -> Browser {
        let profile = TempDir::new("chromium-profile");
        let (cmd_r, cmd_w) = pipe(); // browser reads commands on fd 3
        let (ev_r, ev_w) = pipe(); // browser writes on fd 4
        let mut cmd = Command::new(CHROMIUM);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork
        // and exec. Both ends are first moved above 10 so that neither is
        // overwritten by the other's dup2; dup2 clears close-on-exec.
        unsafe {
            cmd.pre_exec(move || {
                let r = libc::fcntl(cmd_r, libc::F_DUPFD, 10);
                let w = libc::fcntl(ev_w, libc::F_DUPFD, 10);
                if r < 0 || w < 0 || libc::dup2(r, 3) < 0 || libc::dup2(w, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {CHROMIUM}: {e}"));
        // SAFETY: the descriptors are ours and used once each.
        let (to, from) = unsafe {
            libc::close(cmd_r);
            libc::close(ev_w);
            (
                std::fs::File::from_raw_fd(cmd_w),
                std::fs::File::from_raw_fd(ev_r),
            )
        };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(from);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let msg = buf.strip_suffix(&[0]).unwrap_or(&buf);
                        if let Ok(v) = serde_json::from_slice::<Value>(msg)
                            && tx.send(v).is_err()
                        {
                            break;
                        }
                    }
                }
            }
        });
        Browser {
            child,
            to,
            from: rx,
            next_id: 0,
            backlog: Vec::new(),
            _profile: profile,
        }
    }

    fn recv(&mut self, deadline: Instant) -> Value {
        let left = deadline.saturating_duration_since(Instant::now());
        self.from
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no message from chromium within the deadline ({e})"))
    }

    /// Sends a command and waits for its reply (events meanwhile are kept).
    pub fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).expect("json");
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.recv(deadline);
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method} failed: {}", v["error"]);
                return v["result"].clone();
            }
            self.backlog.push(v);
        }
    }

    /// Opens `url` in a new tab and waits for its load event.
    pub fn open(&mut self, url: &str) -> Page<'_> {
        let target = self.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().expect("targetId").to_owned();
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        let session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_owned();
        for domain in [
            "Page.enable",
            "Runtime.enable",
            "Log.enable",
            "Network.enable",
        ] {
            self.call(Some(&session), domain, json!({}));
        }
        self.call(
            Some(&session),
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1400, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
        );
        self.backlog.clear();
        self.call(Some(&session), "Page.navigate", json!({"url": url}));
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self
            .backlog
            .iter()
            .any(|e| e["method"] == "Page.loadEventFired" && e["sessionId"] == session.as_str())
        {
            let v = self.recv(deadline);
            self.backlog.push(v);
        }
        Page {
            browser: self,
            session,
            target_id,
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Page<'b> {
    browser: &'b mut Browser,
    session: String,
    target_id: String,
}

impl Page<'_> {
    /// Evaluates an expression (awaiting a promise) and returns its value.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.browser.call(
            Some(&self.session.clone()),
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(
            r.get("exceptionDetails").is_none(),
            "evaluating {expr}: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Everything the page said or asked for that a self-contained report
    /// must not: console messages, uncaught exceptions, log entries of level
    /// warning or error, and requests for anything but `allowed_url`.
    pub fn complaints(&mut self, allowed_url: &str) -> Vec<String> {
        // Let queued events arrive.
        self.eval("new Promise(r => setTimeout(r, 200))");
        let mut out = Vec::new();
        for e in &self.browser.backlog {
            if e["sessionId"] != self.session.as_str() {
                continue;
            }
            let p = &e["params"];
            match e["method"].as_str().unwrap_or("") {
                "Runtime.consoleAPICalled" => out.push(format!(
                    "console.{}: {}",
                    p["type"].as_str().unwrap_or("?"),
                    p["args"]
                )),
                "Runtime.exceptionThrown" => out.push(format!(
                    "uncaught exception: {}",
                    p["exceptionDetails"]["exception"]["description"]
                        .as_str()
                        .unwrap_or_else(|| p["exceptionDetails"]["text"].as_str().unwrap_or("?"))
                )),
                "Log.entryAdded"
                    if matches!(p["entry"]["level"].as_str(), Some("error" | "warning")) =>
                {
                    out.push(format!(
                        "log {}: {}",
                        p["entry"]["level"], p["entry"]["text"]
                    ))
                }
                "Network.requestWillBeSent" => {
                    let url = p["request"]["url"].as_str().unwrap_or("");
                    if url != allowed_url && !url.starts_with("data:") {
                        out.push(format!("request: {url}"));
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// A PNG screenshot of the whole page, as base64.
    pub fn screenshot(&mut self) -> String {
        let r = self.browser.call(
            Some(&self.session.clone()),
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        r["data"].as_str().expect("screenshot data").to_owned()
    }

    /// A PNG of one region of the page (CSS pixels), as base64.
    pub fn clip_screenshot(&mut self, rect: &Value) -> String {
        let mut clip = rect.clone();
        clip["scale"] = json!(1);
        let r = self.browser.call(
            Some(&self.session.clone()),
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true, "clip": clip}),
        );
        r["data"].as_str().expect("screenshot data").to_owned()
    }

    /// Variance of the screenshot's luminance (0 for a blank page),
    /// measured by decoding the PNG in the browser (a canvas in this page).
    pub fn screenshot_variance(&mut self, png_base64: &str) -> f64 {
        let expr = format!(
            r#"new Promise((resolve, reject) => {{
                const img = new Image();
                img.onload = () => {{
                    const c = document.createElement("canvas");
                    c.width = img.width; c.height = img.height;
                    const g = c.getContext("2d");
                    g.drawImage(img, 0, 0);
                    const d = g.getImageData(0, 0, c.width, c.height).data;
                    let n = 0, sum = 0, sq = 0;
                    for (let i = 0; i < d.length; i += 4 * 7) {{
                        const y = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
                        n++; sum += y; sq += y * y;
                    }}
                    const mean = sum / n;
                    resolve(sq / n - mean * mean);
                }};
                img.onerror = () => reject(new Error("screenshot does not decode"));
                img.src = "data:image/png;base64,{png_base64}";
            }})"#
        );
        self.eval(&expr).as_f64().expect("variance")
    }
}

impl Drop for Page<'_> {
    fn drop(&mut self) {
        let id = self.target_id.clone();
        let _ = self
            .browser
            .call(None, "Target.closeTarget", json!({"targetId": id}));
    }
}
