//! `monitor generate` (hidden): man pages and shell completions for the
//! packages, rendered from the clap definitions so they cannot drift from the
//! binary. `cargo xtask dist` runs it; the names are those of the installed
//! command, `mm-race-monitor`.

use std::{io::Write as _, path::Path, process::ExitCode};

use anyhow::Context as _;
use clap::CommandFactory as _;
use clap_complete::Shell;

use super::args::{Cli, GenerateArgs};
use crate::build_info;

/// The command's name once installed (binary, man pages, completions).
pub const INSTALLED_NAME: &str = "mm-race-monitor";

/// Man pages are in section 8: system administration commands and daemons.
const SECTION: &str = "8";

pub fn run(args: &GenerateArgs) -> anyhow::Result<ExitCode> {
    if let Some(dir) = &args.man {
        man_pages(dir)?;
    }
    if let Some(dir) = &args.completions {
        completions(dir)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn command() -> clap::Command {
    let mut cmd = Cli::command()
        .name(INSTALLED_NAME)
        .bin_name(INSTALLED_NAME)
        .disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// One page per visible command: `mm-race-monitor.8`, `mm-race-monitor-run.8`, ….
fn man_pages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let date = build_info::BUILD_DATE
        .get(..10)
        .unwrap_or(build_info::BUILD_DATE);
    let root = command();
    let mut pages = vec![(INSTALLED_NAME.to_owned(), root.clone())];
    for sub in root.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("{INSTALLED_NAME}-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().display_name(name)));
    }
    for (name, cmd) in pages {
        let path = dir.join(format!("{name}.{SECTION}"));
        let man = clap_mangen::Man::new(cmd)
            .section(SECTION)
            .date(date)
            .source(format!("mm-race-monitor {}", build_info::VERSION))
            .manual("mm race monitor");
        let mut out = Vec::new();
        man.render(&mut out)?;
        if name == INSTALLED_NAME {
            out.extend_from_slice(FILES_AND_SEE_ALSO.as_bytes());
        }
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(&out))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Sections clap has no source for.
const FILES_AND_SEE_ALSO: &str = r#".SH FILES
.TP
\fI/etc/mm\-race\-monitor/monitor.toml\fR
Daemon configuration (\fBmm\-race\-monitor run \-\-config\fR); every key is optional.
.TP
\fI/var/lib/mm\-race\-monitor\fR
Trace files recorded by the daemon when \fBrecord.dir\fR is set.
.TP
\fImm\-race\-monitor.service\fR
The systemd unit: \fBsystemctl reload\fR starts a new trace file, \fBsystemctl stop\fR detaches every BPF program.
.SH EXIT STATUS
0 on success, 1 when \fBanalyze\fR found races or \fBcheck \-\-strict\fR found gaps, 2 on errors (one line on stderr).
.SH SEE ALSO
\fBsystemctl\fR(1), \fBjournalctl\fR(1), \fBbpftool\fR(8); docs/deployment.md and docs/detection.md in the source tree.
"#;

/// bash, zsh, fish (and elvish, PowerShell) completion scripts.
fn completions(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = command();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, INSTALLED_NAME, dir)
            .with_context(|| format!("writing the {shell} completions into {}", dir.display()))?;
    }
    Ok(())
}
