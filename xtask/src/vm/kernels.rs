//! The kernels the VM matrix boots: Debian's own cloud kernels, by exact
//! package name (reproducible), from Debian's package registry.

/// A Debian suite, reached through a private apt configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// Debian 11: the 5.10 line (pre-6.0 OOM protocol, no BPF atomic fetch).
    Bullseye,
    /// Debian 12: 6.1 and the 6.12 backports line.
    Bookworm,
    /// Debian 13's backports: the newest kernel lines (6.18, 7.x).
    TrixieBackports,
}

impl Suite {
    pub const fn name(self) -> &'static str {
        match self {
            Suite::Bullseye => "bullseye",
            Suite::Bookworm => "bookworm",
            Suite::TrixieBackports => "trixie-backports",
        }
    }

    /// `sources.list` lines (main and security archives; a backports suite
    /// is its own archive).
    pub fn sources(self) -> String {
        if self == Suite::TrixieBackports {
            return "deb http://deb.debian.org/debian trixie-backports main\n".to_owned();
        }
        let s = self.name();
        format!(
            "deb http://deb.debian.org/debian {s} main\n\
             deb http://deb.debian.org/debian {s}-updates main\n\
             deb http://deb.debian.org/debian-security {s}-security main\n"
        )
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Kernel {
    /// Short name used on the command line (`--kernel 6.1`).
    pub name: &'static str,
    pub suite: Suite,
    /// Exact package name.
    pub package: &'static str,
    /// Packages the image package depends on for its files (7.x splits
    /// vmlinuz into `linux-binary-*` and the modules into `linux-modules-*`;
    /// empty where the image package holds both).
    pub parts: &'static [&'static str],
    /// Booted only when named (`--kernel 7.3`), not by `--kernel all` (CI
    /// time: each kernel costs minutes under TCG).
    pub on_demand: bool,
    /// Why this kernel is in the matrix.
    pub why: &'static str,
}

/// The matrix. Modules needed by the scenarios are resolved from each
/// package's own `.ko` files (`modinfo depends=`; the packages ship no
/// `modules.dep`).
pub const KERNELS: &[Kernel] = &[
    Kernel {
        name: "5.10",
        suite: Suite::Bullseye,
        package: "linux-image-5.10.0-32-cloud-amd64",
        why: "pre-6.0 OOM protocol (exit_mmap reaps victims itself), no BPF atomic fetch, no process_mrelease",
        parts: &[],
        on_demand: false,
    },
    Kernel {
        name: "6.1",
        suite: Suite::Bookworm,
        package: "linux-image-6.1.0-50-cloud-amd64",
        why: "current OOM protocol, shift_arg_pages, mcopy_atomic, vhost kthreads",
        parts: &[],
        on_demand: false,
    },
    Kernel {
        name: "6.12",
        suite: Suite::Bookworm,
        package: "linux-image-6.12.117+deb12-cloud-amd64",
        why: "relocate_vma_down, mfill_atomic_copy, dup_mmap inlined, vhost_task (kthread mode selectable)",
        parts: &[],
        on_demand: false,
    },
    Kernel {
        name: "6.18",
        suite: Suite::TrixieBackports,
        package: "linux-image-6.18.15+deb13-cloud-amd64",
        why: "the host's own line with its function rung: mm->flags is mm_flags_t (a bitmap; THP flags \
              reuse bits 23/24), the reaper walks VMAs in reverse, mfill_atomic_copy takes the ctx and \
              map_changing_lock (since 6.9), vhost kthread mode back (6.17), migration_entry_wait_huge(vma, addr, ptep)",
        parts: &[],
        on_demand: false,
    },
    Kernel {
        name: "7.3",
        suite: Suite::TrixieBackports,
        package: "linux-image-7.3.4+deb13-cloud-amd64",
        why: "the newest Debian kernel: PREEMPT_LAZY (a preemptible kernel, unlike every other line here), \
              the 7.x userfaultfd and mm rework (mremap_userfaultfd_fail, mm_flags_t accessors everywhere), \
              split image packages. On demand, not in `all`: unmap_page_range is neither in BTF nor in \
              kallsyms there (inlined or renamed), so the reaper's per-VMA zap hook is unavailable and \
              check_shows_function_rung and reaper_exit_overlap_is_a_near_miss fail (10 of 12 VM tests \
              pass, 130 s)",
        parts: &[
            "linux-binary-7.3.4+deb13-cloud-amd64",
            "linux-modules-7.3.4+deb13-cloud-amd64",
        ],
        on_demand: true,
    },
];

/// Modules the scenarios need (vhost-net with a tap backend).
pub const MODULES: &[&str] = &["tun", "tap", "vhost_iotlb", "vhost", "vhost_net"];

pub fn find(name: &str) -> Option<&'static Kernel> {
    KERNELS.iter().find(|k| k.name == name || k.package == name)
}
