//! Reading records from the BPF ring buffer and noticing loss.
//!
//! The BPF side submits records without waking the reader until a threshold of
//! pending bytes is crossed (`Config::wakeup_bytes`), so the reader wakes on
//! epoll readiness *or* on a short timer, and drains everything each time.

use std::{collections::BTreeMap, io, os::fd::AsRawFd};

use aya::maps::{MapData, RingBuf};
use monitor_common::{catalogue::EventId, maps::CounterReason};
use monitor_detector::tracefile::Loss;
use tokio::io::unix::AsyncFd;

use crate::loader::Counters;

pub struct Ring {
    fd: AsyncFd<RingBuf<MapData>>,
}

impl Ring {
    pub fn new(ring: RingBuf<MapData>) -> io::Result<Ring> {
        debug_assert!(ring.as_raw_fd() >= 0);
        // SAFETY: the ring buffer owns its map fd, which stays open and refers
        // to the same map for as long as the RingBuf (now owned by AsyncFd) lives.
        let fd = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Ring { fd })
    }

    /// Waits until the kernel signals data (a forced wakeup). Readiness is
    /// cleared before returning; the caller drains afterwards, so a wakeup that
    /// arrives meanwhile is not lost.
    pub async fn wait_readable(&self) -> io::Result<()> {
        let mut guard = self.fd.readable().await?;
        guard.clear_ready();
        Ok(())
    }

    /// Hands every record currently in the ring to `f`; returns how many.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> u64 {
        let ring = self.fd.get_mut();
        let mut n = 0;
        while let Some(item) = ring.next() {
            f(&item);
            n += 1;
        }
        n
    }
}

/// Turns increases of the ring-buffer-full counters into [`Loss`] records.
#[derive(Default)]
pub struct LossTracker {
    seen: BTreeMap<EventId, u64>,
}

impl LossTracker {
    pub fn update(&mut self, counters: &Counters, t: u64) -> Option<Loss> {
        let mut lost = BTreeMap::new();
        for id in EventId::ALL {
            let now = counters.get(CounterReason::RingbufFull, *id);
            let before = self.seen.insert(*id, now).unwrap_or(0);
            if now > before {
                lost.insert(*id, now - before);
            }
        }
        (!lost.is_empty()).then_some(Loss {
            t,
            lost,
            unknown_kinds: 0,
        })
    }
}
