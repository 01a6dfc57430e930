//! The kernels the VM matrix boots: Debian's own cloud kernels, by exact
//! package name (reproducible), from Debian's package registry.

/// A Debian suite, reached through a private apt configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// Debian 11: the 5.10 line (pre-6.0 OOM protocol, no BPF atomic fetch).
    Bullseye,
    /// Debian 12: 6.1 and the 6.12 backports line.
    Bookworm,
}

impl Suite {
    pub const fn name(self) -> &'static str {
        match self {
            Suite::Bullseye => "bullseye",
            Suite::Bookworm => "bookworm",
        }
    }

    /// `sources.list` lines (main and security archives).
    pub fn sources(self) -> String {
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
    },
    Kernel {
        name: "6.1",
        suite: Suite::Bookworm,
        package: "linux-image-6.1.0-50-cloud-amd64",
        why: "current OOM protocol, shift_arg_pages, mcopy_atomic, vhost kthreads",
    },
    Kernel {
        name: "6.12",
        suite: Suite::Bookworm,
        package: "linux-image-6.12.117+deb12-cloud-amd64",
        why: "relocate_vma_down, mfill_atomic_copy, dup_mmap inlined, vhost_task (kthread mode selectable)",
    },
];

/// Modules the scenarios need (vhost-net with a tap backend).
pub const MODULES: &[&str] = &["tun", "tap", "vhost_iotlb", "vhost", "vhost_net"];

pub fn find(name: &str) -> Option<&'static Kernel> {
    KERNELS.iter().find(|k| k.name == name || k.package == name)
}
