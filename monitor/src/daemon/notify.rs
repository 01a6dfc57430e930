//! systemd integration of `monitor run`: readiness and status, reload on
//! SIGHUP, and the watchdog (`sd_notify(3)` through the `sd-notify` crate;
//! all of it a no-op when systemd did not start the daemon).
//!
//! - `READY=1` + `STATUS=` once every hook is attached and `/metrics` is
//!   served (`Type=notify`); `STOPPING=1` when a stop begins.
//! - SIGHUP (`systemctl reload`, `ExecReload=kill -HUP $MAINPID`):
//!   `RELOADING=1`, then the recording starts a new trace file at the next
//!   drain (the current one is closed with its summary, so no record is lost
//!   between them and the counts still add up), then `READY=1`. Without
//!   recording there is nothing to reopen, and the daemon says so.
//! - `WatchdogSec=`: `WATCHDOG=1` at half the interval, sent from the
//!   daemon's stop future, which only runs when the session's poll loop
//!   reaches its `select!`, and only while `/healthz` is healthy (the ring
//!   buffer was read within 5 s). A poll loop that hangs — or a daemon that
//!   is stopped — stops the pings, and systemd restarts the service.

use std::{
    sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use sd_notify::NotifyState;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::sink::Health;

fn send(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        log::warn!("notifying systemd: {e}");
    }
}

/// The status line sent with `READY=1`, sent again after a reload.
static STATUS: OnceLock<String> = OnceLock::new();

/// `READY=1` with a status line.
pub fn ready(status: &str) {
    let _ = STATUS.set(status.to_owned());
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `STOPPING=1`.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// SIGHUP and the watchdog, driven from the daemon's stop future.
pub struct Control {
    hup: Signal,
    /// Set on SIGHUP, taken by the sink at its next flush.
    pub reopen: Arc<AtomicBool>,
    watchdog: Option<tokio::time::Interval>,
    /// Set once the daemon serves; until then the watchdog is not fed (the
    /// start-up is bounded by `TimeoutStartSec=` instead).
    pub health: Option<Arc<Health>>,
}

impl Control {
    /// Installs the SIGHUP handler (before loading, so a reload during
    /// start-up does not kill the daemon) and reads `WATCHDOG_USEC`.
    pub fn install() -> anyhow::Result<Control> {
        let hup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        let watchdog = sd_notify::watchdog_enabled().map(|every| {
            log::info!(
                "systemd watchdog: {every:?}, pinged every {:?}",
                ping_every(every)
            );
            let mut i = tokio::time::interval(ping_every(every));
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        Ok(Control {
            hup,
            reopen: Arc::new(AtomicBool::new(false)),
            watchdog,
            health: None,
        })
    }

    /// Handles one SIGHUP or watchdog tick; never resolves by itself
    /// otherwise. Meant as one arm of the stop future's `select!`.
    pub async fn step(&mut self) {
        let reopen = self.reopen.clone();
        let health = self.health.clone();
        tokio::select! {
            Some(()) = self.hup.recv() => {
                log::info!("SIGHUP: starting a new trace file");
                send(&[NotifyState::Reloading]);
                reopen.store(true, Ordering::Relaxed);
            }
            () = tick(self.watchdog.as_mut()) => {
                if feed(health.as_ref()) {
                    send(&[NotifyState::Watchdog]);
                }
            }
        }
    }
}

/// Whether to ping the watchdog now: only when the daemon is healthy.
fn feed(health: Option<&Arc<Health>>) -> bool {
    health.is_some_and(|h| h.check().is_ok())
}

async fn tick(i: Option<&mut tokio::time::Interval>) {
    match i {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Half the watchdog interval, as sd_watchdog_enabled(3) recommends, but
/// never below 100 ms.
fn ping_every(interval: Duration) -> Duration {
    (interval / 2).max(Duration::from_millis(100))
}

/// Called by the sink once it handled a SIGHUP.
pub fn reloaded() {
    let status = STATUS.get().map_or("running", String::as_str);
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_twice_per_interval() {
        assert_eq!(ping_every(Duration::from_secs(30)), Duration::from_secs(15));
        assert_eq!(
            ping_every(Duration::from_millis(50)),
            Duration::from_millis(100)
        );
    }

    #[test]
    fn no_ping_while_unhealthy() {
        assert!(!feed(None), "not serving yet: no ping");
        let h = Arc::new(Health::new(3, 27));
        assert!(feed(Some(&h)));
        h.stopping();
        assert!(
            !feed(Some(&h)),
            "a stopping daemon must not feed the watchdog"
        );
        let none = Arc::new(Health::new(0, 27));
        assert!(!feed(Some(&none)), "no hook attached: unhealthy, no ping");
    }
}
