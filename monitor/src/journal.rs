//! Syslog priorities for lines that reach journald.
//!
//! When systemd connects a process's stdout or stderr to the journal it sets
//! `JOURNAL_STREAM=<device>:<inode>` of that stream socket, and journald
//! (with `SyslogLevelPrefix=`, the default) reads a leading `<N>` on a line as
//! its priority and strips it. A line without one gets the unit's default
//! (`info`). So the monitor prefixes the lines that matter for
//! `journalctl -p warning` — errors, warnings, violations — and only when the
//! stream really is the journal: on a terminal, in a pipe or a file the lines
//! stay exactly as before.

use std::{os::fd::RawFd, sync::OnceLock};

/// syslog(3) priorities (`<syslog.h>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    Err = 3,
    Warning = 4,
    Notice = 5,
    Info = 6,
    Debug = 7,
}

impl Priority {
    const fn prefix(self) -> &'static str {
        match self {
            Priority::Err => "<3>",
            Priority::Warning => "<4>",
            Priority::Notice => "<5>",
            Priority::Info => "<6>",
            Priority::Debug => "<7>",
        }
    }

    pub fn from_level(level: log::Level) -> Priority {
        match level {
            log::Level::Error => Priority::Err,
            log::Level::Warn => Priority::Warning,
            log::Level::Info => Priority::Info,
            log::Level::Debug | log::Level::Trace => Priority::Debug,
        }
    }
}

/// `"<N>"` when stderr is the journal, `""` otherwise.
pub fn stderr(p: Priority) -> &'static str {
    static IS_JOURNAL: OnceLock<bool> = OnceLock::new();
    if *IS_JOURNAL.get_or_init(|| fd_is_journal(2)) {
        p.prefix()
    } else {
        ""
    }
}

/// `"<N>"` when stdout is the journal, `""` otherwise.
pub fn stdout(p: Priority) -> &'static str {
    static IS_JOURNAL: OnceLock<bool> = OnceLock::new();
    if *IS_JOURNAL.get_or_init(|| fd_is_journal(1)) {
        p.prefix()
    } else {
        ""
    }
}

fn fd_is_journal(fd: RawFd) -> bool {
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = parse_stream(&stream.to_string_lossy()) else {
        return false;
    };
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a `struct stat` into the buffer it is given.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: fstat succeeded, so the buffer is initialised.
    let st = unsafe { st.assume_init() };
    st.st_dev == dev && st.st_ino == ino
}

/// `"<dev>:<ino>"` in decimal (systemd.exec(5), `$JOURNAL_STREAM`).
fn parse_stream(s: &str) -> Option<(u64, u64)> {
    let (dev, ino) = s.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_values() {
        assert_eq!(parse_stream("8:12345"), Some((8, 12345)));
        assert_eq!(parse_stream("8"), None);
        assert_eq!(parse_stream("x:1"), None);
        assert_eq!(Priority::from_level(log::Level::Warn).prefix(), "<4>");
    }

    #[test]
    fn a_pipe_is_not_the_journal_even_with_the_variable_set() {
        // The variable names some other stream: only a matching (dev, ino) counts.
        let mut fds = [0; 2];
        // SAFETY: pipe writes two descriptors into the array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: as above, fstat fills the buffer.
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        assert_eq!(unsafe { libc::fstat(fds[1], st.as_mut_ptr()) }, 0);
        // SAFETY: fstat succeeded.
        let st = unsafe { st.assume_init() };
        let other = format!("{}:{}", st.st_dev, st.st_ino + 1);
        let same = format!("{}:{}", st.st_dev, st.st_ino);
        // SAFETY: tests in this module do not read the environment concurrently.
        unsafe { std::env::set_var("JOURNAL_STREAM", &other) };
        assert!(!fd_is_journal(fds[1]));
        unsafe { std::env::set_var("JOURNAL_STREAM", &same) };
        assert!(fd_is_journal(fds[1]));
        unsafe { std::env::remove_var("JOURNAL_STREAM") };
        // SAFETY: closing descriptors this test opened.
        unsafe {
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
    }
}
