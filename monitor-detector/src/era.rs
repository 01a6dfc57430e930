//! Kernel eras: what counts as a near miss and what as a violation depends on
//! which fixes the traced kernel carries (`docs/kernel.md`).
//!
//! The era is derived from the `uname -r` string recorded in the trace header
//! (`6.1.0-50-cloud-amd64`, `6.12.117+deb12-cloud-amd64`, `5.10.0-32-cloud-amd64`,
//! `6.18.44-fc-v669`): only `major.minor` is used. Distribution backports are not
//! visible in the release string; where a backport could move a verdict the rule
//! documents it (`docs/detection.md`).

use std::fmt;

use serde::Serialize;

/// `major.minor` of a kernel release.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct KernelVersion {
    pub major: u32,
    pub minor: u32,
}

impl KernelVersion {
    pub const fn new(major: u32, minor: u32) -> Self {
        KernelVersion { major, minor }
    }

    /// Parses the leading `major.minor` of a `uname -r` string. Returns `None`
    /// when the string does not start with two dot-separated numbers.
    pub fn parse(release: &str) -> Option<KernelVersion> {
        let mut parts = release.trim().splitn(3, '.');
        let major = leading_number(parts.next()?)?;
        let minor = leading_number(parts.next()?)?;
        // Guard against nonsense such as "999999.1": Linux majors are small.
        (major > 0 && major < 100 && minor < 1000).then_some(KernelVersion { major, minor })
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

fn leading_number(s: &str) -> Option<u32> {
    let digits: &str = &s[..s.bytes().take_while(u8::is_ascii_digit).count()];
    if digits.is_empty() || digits.len() > 6 {
        return None;
    }
    digits.parse().ok()
}

/// The OOM reaper vs `exit_mmap` protocol in force (`docs/kernel.md`, "The four races").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OomEra {
    /// Before v4.6: no OOM reaper.
    NoReaper,
    /// v4.6–v4.13: the reaper pins `mm_users`, so `exit_mmap` cannot start while
    /// it runs: any overlap is a violation.
    ReaperPinsMm,
    /// v4.14–v5.19: the reaper no longer pins the mm; `exit_mmap` of a victim
    /// (v4.17+, backported to 4.14/4.16 stable) reaps the mm itself, sets
    /// `MMF_OOM_SKIP` and takes `mmap_sem` for write once as a barrier before
    /// `unmap_vmas`. An external reaper may overlap the start of `exit_mmap`
    /// (legal), never its `unmap_vmas` (the BUG behind 27ae357fa82b).
    ExitBarrier,
    /// v6.0+ (bf3980c85212): `exit_mmap`'s `unmap_vmas` runs under the read lock
    /// and may legally overlap the reaper's zap; teardown needs the write lock.
    SharedReadLock,
    /// The release string could not be parsed.
    Unknown,
}

impl OomEra {
    pub fn of(v: Option<KernelVersion>) -> OomEra {
        match v {
            None => OomEra::Unknown,
            Some(v) if v < KernelVersion::new(4, 6) => OomEra::NoReaper,
            Some(v) if v < KernelVersion::new(4, 14) => OomEra::ReaperPinsMm,
            Some(v) if v < KernelVersion::new(6, 0) => OomEra::ExitBarrier,
            Some(_) => OomEra::SharedReadLock,
        }
    }

    pub const fn describe(self) -> &'static str {
        match self {
            OomEra::NoReaper => "before 4.6: no OOM reaper",
            OomEra::ReaperPinsMm => "4.6-4.13: the reaper pins mm_users, no overlap possible",
            OomEra::ExitBarrier => {
                "4.14-5.19: exit_mmap reaps a victim itself, then a write-lock barrier before unmap_vmas"
            }
            OomEra::SharedReadLock => {
                "6.0+: exit_mmap unmaps under the read lock (overlap legal), tears down under the write lock"
            }
            OomEra::Unknown => "unknown kernel release",
        }
    }
}

/// Everything the rules need to know about the traced kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Era {
    /// The release string as recorded.
    pub release: String,
    /// Parsed `major.minor`, `None` if unrecognised.
    pub version: Option<KernelVersion>,
    pub oom: OomEra,
}

impl Era {
    pub fn from_release(release: &str) -> Era {
        let version = KernelVersion::parse(release);
        Era {
            release: release.to_owned(),
            version,
            oom: OomEra::of(version),
        }
    }

    /// Whether the release was recognised. When it was not, rules never report
    /// more than a near miss (`docs/detection.md`, "Unknown kernels").
    pub fn is_known(&self) -> bool {
        self.version.is_some()
    }

    /// Whether the kernel is at least `major.minor` (false when unknown).
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        self.version
            .is_some_and(|v| v >= KernelVersion::new(major, minor))
    }

    /// v6.9 (5e4c24a57b0c): `mmap_changing` is protected by
    /// `ctx->map_changing_lock`, which also serializes `userfaultfd_remove`.
    pub fn uffd_remove_serialized(&self) -> bool {
        self.at_least(6, 9)
    }

    /// A short human label, e.g. `6.12 (6.0+: exit_mmap unmaps under …)`.
    pub fn label(&self) -> String {
        match self.version {
            Some(v) => format!("{v} ({})", self.oom.describe()),
            None => format!("{:?} (unrecognised release)", self.release),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_releases_we_meet() {
        for (s, want) in [
            ("6.1.0-50-cloud-amd64", Some((6, 1))),
            ("6.12.117+deb12-cloud-amd64", Some((6, 12))),
            ("5.10.0-32-cloud-amd64", Some((5, 10))),
            ("6.18.44-fc-v669", Some((6, 18))),
            ("4.9", Some((4, 9))),
            ("6.9-rc1", Some((6, 9))),
            ("", None),
            ("linux", None),
            ("6", None),
            ("6.x", None),
            ("999999.1", None),
        ] {
            assert_eq!(
                KernelVersion::parse(s),
                want.map(|(a, b)| KernelVersion::new(a, b)),
                "{s:?}"
            );
        }
    }

    #[test]
    fn oom_eras_follow_the_history_table() {
        let era = |s: &str| Era::from_release(s).oom;
        assert_eq!(era("4.4.0"), OomEra::NoReaper);
        assert_eq!(era("4.9.0"), OomEra::ReaperPinsMm);
        assert_eq!(era("4.14.0"), OomEra::ExitBarrier);
        assert_eq!(era("5.10.0-32-cloud-amd64"), OomEra::ExitBarrier);
        assert_eq!(era("5.19.17"), OomEra::ExitBarrier);
        assert_eq!(era("6.0.0"), OomEra::SharedReadLock);
        assert_eq!(era("6.18.44-fc-v669"), OomEra::SharedReadLock);
        assert_eq!(era("weird"), OomEra::Unknown);
        assert!(Era::from_release("6.9.1").uffd_remove_serialized());
        assert!(!Era::from_release("6.1.0").uffd_remove_serialized());
        assert!(!Era::from_release("x").uffd_remove_serialized());
    }
}
