//! Loading the BPF object for the running kernel and attaching the hook plan.
//!
//! 1. Parse the kernel's BTF and resolve every [`Field`] the programs read.
//! 2. Pick the BPF object by trying: the main object (atomic per-mm sequence
//!    numbers) if the kernel accepts BPF atomic fetch instructions, else the
//!    compat object.
//! 3. Walk [`plan::HOOKS`]: for each hook try its candidates best first, keep
//!    the first whose programs all load and attach, record why better ones
//!    were refused.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader, Pod,
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::{
        BtfTracePoint, FEntry, FExit, KProbe, Program, ProgramError, TracePoint,
        fentry::FEntryLinkId, fexit::FExitLinkId, kprobe::KProbeLinkId,
        tp_btf::BtfTracePointLinkId, trace_point::TracePointLinkId,
    },
};
use monitor_common::{
    catalogue::{EventId, HookId, ProbeId, Rung},
    config::{CONFIG_SYMBOL, Config, Field},
    maps::{self as names, CounterReason, Stat, state},
};
use monitor_detector::{
    ProbeRef,
    tracefile::{HookStatus, Refusal, RefusalKind},
};
use thiserror::Error;

use crate::{
    btf::{Btf, BtfError},
    plan::{self, Attach, Candidate, Func, HookSpec, Proto},
    sys,
};

static EBPF_MAIN: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor-ebpf"));
static EBPF_COMPAT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/monitor-ebpf-compat"));

/// The `.rodata` configuration as aya wants it.
#[derive(Clone, Copy)]
#[repr(transparent)]
struct PodConfig(Config);
// SAFETY: Config is #[repr(C)], made of integers only, without padding
// (checked at compile time in monitor-common).
unsafe impl Pod for PodConfig {}

#[derive(Debug, Error)]
pub enum LoadError {
    #[error(
        "cannot read kernel BTF from {path}: {err}; the monitor needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y (or pass --btf FILE with the running kernel's BTF)"
    )]
    BtfRead { path: PathBuf, err: std::io::Error },
    #[error("kernel BTF in {path} is unusable: {err}")]
    BtfParse { path: PathBuf, err: BtfError },
    #[error("kernel BTF in {path} is unusable: {message}")]
    AyaBtf { path: PathBuf, message: String },
    #[error("kernel BTF in {path} is refused: {message}")]
    BtfMismatch { path: PathBuf, message: String },
    #[error(
        "kernel BTF in {path} lacks {what}: the monitor cannot read {field} on this kernel \
         (is this the running kernel's BTF?)"
    )]
    RequiredField {
        path: PathBuf,
        field: &'static str,
        what: String,
    },
    #[error("loading the BPF object failed: {0}")]
    Object(String),
    #[error("no BPF object variant loads on this kernel: {0}")]
    NoObject(String),
}

/// Which of the two embedded objects is in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// Per-mm sequence numbers by atomic fetch-and-add (5.12+).
    Atomic,
    /// No BPF atomic fetch on this kernel: sequence numbers may repeat.
    Compat,
}

impl ObjectKind {
    pub const fn name(self) -> &'static str {
        match self {
            ObjectKind::Atomic => "atomic",
            ObjectKind::Compat => "compat",
        }
    }
}

#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub btf_path: PathBuf,
    /// Ring buffer size in bytes (power of two, ≥ page size).
    pub ring_bytes: u32,
    /// Never use a rung better than this (to test or benchmark fallbacks).
    pub max_rung: Rung,
    /// Only plan these hooks (`None` = all).
    pub only_hooks: Option<Vec<String>>,
    /// Make these hooks fail on purpose (tests of the degradation path).
    pub break_hooks: Vec<String>,
    /// When the page-fault programs are attached (`session.rs`).
    pub fault_programs: FaultPrograms,
    /// How long the fault gate stays open after the last victim activity
    /// (`gate::HOLD_NS`; shorter only in tests).
    pub fault_gate_hold: std::time::Duration,
}

/// When the page-fault programs (`handle_mm_fault`) are attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FaultPrograms {
    /// Only while the fault gate is open, where the rung can attach them
    /// again after the capability drop and the OOM reaper's delay covers the
    /// attach (`tp_btf` and fentry on 5.18+); always elsewhere.
    #[default]
    OnDemand,
    /// From start to stop (each fault then pays the trampoline or the
    /// tracepoint call, and one array read while the gate is closed).
    Always,
}

impl FaultPrograms {
    pub const ALL: [FaultPrograms; 2] = [FaultPrograms::OnDemand, FaultPrograms::Always];

    pub const fn name(self) -> &'static str {
        match self {
            FaultPrograms::OnDemand => "on-demand",
            FaultPrograms::Always => "always",
        }
    }

    pub fn parse(name: &str) -> Option<FaultPrograms> {
        FaultPrograms::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            btf_path: PathBuf::from("/sys/kernel/btf/vmlinux"),
            ring_bytes: names::EVENTS_DEFAULT_BYTES,
            max_rung: Rung::Fentry,
            only_hooks: None,
            break_hooks: Vec::new(),
            fault_programs: FaultPrograms::default(),
            fault_gate_hold: std::time::Duration::from_nanos(crate::gate::HOLD_NS),
        }
    }
}

/// The loaded monitor: the BPF object with its attached programs.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub object: ObjectKind,
    pub hooks: Vec<HookStatus>,
    pub config: Config,
    /// Optional fields the kernel's BTF does not have (hooks needing them are refused).
    pub missing_fields: Vec<(Field, String)>,
    mounted_tracefs: Option<sys::TracefsMount>,
    /// Every attachment made, with its link while attached.
    links: Vec<Attachment>,
}

/// One program attached for the plan: where, and its link while attached,
/// so that a hook can be detached and attached again with its programs
/// still loaded ([`Loaded::detach_hook`], [`Loaded::attach_hook`]).
struct Attachment {
    probe: ProbeId,
    attach: Attach,
    target: String,
    link: Option<LinkId>,
}

/// The link of one attachment, by program type.
enum LinkId {
    TpBtf(BtfTracePointLinkId),
    Tracepoint(TracePointLinkId),
    FEntry(FEntryLinkId),
    FExit(FExitLinkId),
    KProbe(KProbeLinkId),
}

/// The largest kernel BTF accepted (vmlinux BTF is 4–10 MB).
pub const MAX_BTF_BYTES: u64 = 256 << 20;

/// Reads and parses kernel BTF, with the errors users need to see.
pub fn read_btf(path: &Path) -> Result<(Btf, aya::Btf), LoadError> {
    let data =
        crate::secfs::read_regular(path, MAX_BTF_BYTES).map_err(|err| LoadError::BtfRead {
            path: path.to_owned(),
            err,
        })?;
    let btf = Btf::parse(&data).map_err(|err| LoadError::BtfParse {
        path: path.to_owned(),
        err,
    })?;
    crate::btfcheck::verify(&btf, &data, path).map_err(|message| LoadError::BtfMismatch {
        path: path.to_owned(),
        message,
    })?;
    let aya_btf =
        aya::Btf::parse(&data, aya::Endianness::default()).map_err(|e| LoadError::AyaBtf {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
    Ok((btf, aya_btf))
}

/// Builds the `.rodata` configuration for this kernel.
pub fn build_config(
    btf: &Btf,
    btf_path: &Path,
    ring_bytes: u32,
) -> Result<(Config, Vec<(Field, String)>), LoadError> {
    let mut config = Config::UNSET;
    let mut missing = Vec::new();
    for (field, path) in Field::PATHS {
        match btf.field_offset(path) {
            Ok(off) => config.offsets[field as usize] = off,
            Err(e) if field.is_required() => {
                return Err(LoadError::RequiredField {
                    path: btf_path.to_owned(),
                    field: path,
                    what: e.to_string(),
                });
            }
            Err(e) => missing.push((field, e.to_string())),
        }
    }
    // The memory controller's slot in `css_set.subsys`, if the array has it.
    config.memory_cgrp_id = match (
        btf.enum_value("memory_cgrp_id"),
        btf.array_len("css_set.subsys"),
    ) {
        (Some(id), Some(len)) if (0..i64::from(len)).contains(&id) => id as u32,
        _ => monitor_common::config::OFFSET_NONE,
    };
    config.wakeup_bytes = u64::from(ring_bytes / 16).max(4096);
    let syms = sys::Kallsyms::load(|n| n == "userfaultfd_ioctl");
    config.userfaultfd_ioctl = syms.address("userfaultfd_ioctl").unwrap_or(0);
    Ok((config, missing))
}

fn load_object(
    bytes: &[u8],
    aya_btf: &aya::Btf,
    config: &Config,
    ring_bytes: u32,
) -> Result<Ebpf, LoadError> {
    let pod = PodConfig(*config);
    EbpfLoader::new()
        .btf(Some(aya_btf))
        .override_global(CONFIG_SYMBOL, &pod, true)
        .map_max_entries(names::EVENTS, ring_bytes)
        .load(bytes)
        .map_err(|e| LoadError::Object(format!("{e:#}")))
}

/// A program of the object that contains the per-mm sequencing code and needs
/// no attach target to load: used to find out whether the verifier accepts
/// the main object's atomic fetch instruction.
const ATOMIC_PROBE: ProbeId = ProbeId::TpSysExitIoctl;

fn try_load_probe_program(ebpf: &mut Ebpf) -> Result<(), String> {
    let prog: &mut TracePoint = ebpf
        .program_mut(ATOMIC_PROBE.program())
        .ok_or("probe program missing from the object")?
        .try_into()
        .map_err(|e: ProgramError| e.to_string())?;
    prog.load().map_err(|e| summarize(&e))?;
    prog.unload().map_err(|e| e.to_string())
}

/// Loads everything: BTF, config, object, hook plan.
pub fn load(opts: &LoadOptions) -> Result<Loaded, LoadError> {
    sys::raise_memlock();
    let (btf, aya_btf) = read_btf(&opts.btf_path)?;
    let (config, missing_fields) = build_config(&btf, &opts.btf_path, opts.ring_bytes)?;

    let (mut ebpf, object) = {
        let mut main = load_object(EBPF_MAIN, &aya_btf, &config, opts.ring_bytes)?;
        match try_load_probe_program(&mut main) {
            Ok(()) => (main, ObjectKind::Atomic),
            Err(main_err) => {
                drop(main);
                let mut compat = load_object(EBPF_COMPAT, &aya_btf, &config, opts.ring_bytes)?;
                match try_load_probe_program(&mut compat) {
                    Ok(()) => {
                        log::info!(
                            "kernel refused BPF atomic fetch ({main_err}); using the compat object"
                        );
                        (compat, ObjectKind::Compat)
                    }
                    Err(compat_err) => {
                        return Err(LoadError::NoObject(format!(
                            "main object: {main_err}; compat object: {compat_err}"
                        )));
                    }
                }
            }
        }
    };

    // Before anything is attached: the kernel confirms the offsets.
    match crate::sanity::check(&mut ebpf, &config, &crate::cgroup::Mounts::discover()) {
        Ok(crate::sanity::Outcome::Agrees(n)) => {
            log::debug!("sanity read: {n} fields agree with the running kernel");
        }
        Ok(crate::sanity::Outcome::NotRun(why)) => log::warn!(
            "cannot sanity-read kernel fields at the offsets from {} ({why}): if that BTF is \
             not the running kernel's, records may be wrong",
            opts.btf_path.display()
        ),
        Err(message) => {
            return Err(LoadError::BtfMismatch {
                path: opts.btf_path.clone(),
                message: format!(
                    "it does not describe the running kernel: read at its offsets, {message}"
                ),
            });
        }
    }

    let symbols = plan::function_symbols();
    let kallsyms = sys::Kallsyms::load(|name| {
        let base = name.split('.').next().unwrap_or(name);
        symbols.contains(&base)
    });
    let mut planner = Planner {
        btf: &btf,
        aya_btf: &aya_btf,
        missing: missing_fields.iter().map(|(f, _)| *f).collect(),
        max_rung: opts.max_rung,
        break_hooks: &opts.break_hooks,
        kallsyms,
        traceable: None,
        tracefs: None,
        mounted_tracefs: None,
        links: Vec::new(),
    };
    let mut hooks = Vec::new();
    for spec in plan::HOOKS {
        if let Some(only) = &opts.only_hooks
            && !only.iter().any(|h| h == spec.id.name())
        {
            continue;
        }
        hooks.push(planner.plan_hook(&mut ebpf, spec));
    }
    // With __mmdrop hooked, it (not the end of exit_mmap) ends a generation.
    if hooks
        .iter()
        .any(|h| h.hook == HookId::Mmdrop && h.is_attached())
    {
        set_state_flag(&mut ebpf, state::END_AT_MMDROP)?;
    }
    set_state(&mut ebpf, state::STASH_HOOKS, stash_hooks(&hooks))?;
    // The UFFDIO_COPY filter (probes/uffd.rs): which hook writes the one
    // record per copy, and whether a copy's start state is known.
    let attached = |id: HookId| hooks.iter().any(|h| h.hook == id && h.is_attached());
    if attached(HookId::UffdIoctl) {
        set_state_flag(&mut ebpf, state::UFFD_FOLD_AT_IOCTL)?;
    }
    if hooks
        .iter()
        .any(|h| h.hook == HookId::MfillCopy && h.rung.is_function())
    {
        set_state_flag(&mut ebpf, state::UFFD_MFILL_HOOKED)?;
    }
    let (mounted_tracefs, links) = (planner.mounted_tracefs, planner.links);
    Ok(Loaded {
        ebpf,
        object,
        hooks,
        config,
        missing_fields,
        mounted_tracefs,
        links,
    })
}

struct Planner<'a> {
    btf: &'a Btf,
    aya_btf: &'a aya::Btf,
    missing: BTreeSet<Field>,
    max_rung: Rung,
    /// Hooks made to fail on purpose (`--test-break-hook`).
    break_hooks: &'a [String],
    kallsyms: sys::Kallsyms,
    /// Names in `available_filter_functions` (the functions ftrace, and so
    /// fentry and kprobes on these kernels, can attach to), if readable.
    traceable: Option<Option<BTreeSet<String>>>,
    /// Result of making tracefs available (tried once, lazily).
    tracefs: Option<Result<(), String>>,
    mounted_tracefs: Option<sys::TracefsMount>,
    links: Vec<Attachment>,
}

/// Symbol used for hooks broken on purpose: no kernel has it.
const BOGUS: &str = "monitor_test_no_such_symbol";

/// Why a candidate was refused: its kind and one sentence.
#[derive(Clone, Debug)]
struct Refused {
    kind: RefusalKind,
    reason: String,
}

fn refused(kind: RefusalKind, reason: impl Into<String>) -> Refused {
    Refused {
        kind,
        reason: reason.into(),
    }
}

/// A load error as a refusal: the verifier's, or the kernel's.
fn load_refused(e: &ProgramError) -> Refused {
    let reason = summarize(e);
    let kind = if reason.starts_with("rejected by the verifier") {
        RefusalKind::Verifier
    } else {
        RefusalKind::Load
    };
    refused(kind, reason)
}

/// A short, single-line reason from an aya program error.
fn summarize(e: &ProgramError) -> String {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            log::debug!("verifier log:\n{log}");
            // The verifier ends with statistics; the error is the last other line.
            let last = log
                .lines()
                .map(str::trim)
                .rfind(|l| {
                    !l.is_empty()
                        && !l.starts_with("processed")
                        && !l.starts_with("verification time")
                        && !l.starts_with("stack depth")
                        && !l.starts_with("mark_precise")
                })
                .unwrap_or("");
            if io_error.raw_os_error() == Some(libc::EPERM) && last.is_empty() {
                "the kernel refused to load it (EPERM: ftrace-based attachment is blocked here)"
                    .to_owned()
            } else if last.is_empty() {
                format!("rejected by the kernel: {io_error}")
            } else {
                format!("rejected by the verifier: {io_error}: {last}")
            }
        }
        other => {
            let mut s = other.to_string();
            let mut src = std::error::Error::source(other);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        }
    }
}

fn unload(prog: &mut Program) {
    let _ = match prog {
        Program::BtfTracePoint(p) => p.unload(),
        Program::TracePoint(p) => p.unload(),
        Program::FEntry(p) => p.unload(),
        Program::FExit(p) => p.unload(),
        Program::KProbe(p) => p.unload(),
        Program::RawTracePoint(p) => p.unload(),
        _ => Ok(()),
    };
}

/// The hooks whose stash slots a freed task may leave behind: those
/// attached at the kprobe rung, whose kretprobe can miss a return
/// (`maxactive`); `sched_process_free` removes their slots
/// (`monitor_common::maps::state::STASH_HOOKS`).
fn stash_hooks(hooks: &[HookStatus]) -> u64 {
    hooks
        .iter()
        .filter(|h| h.rung == Rung::Kprobe && (h.hook as u32) < 64)
        .fold(0, |m, h| m | 1 << h.hook as u32)
}

fn set_state(ebpf: &mut Ebpf, index: u32, value: u64) -> Result<(), LoadError> {
    let map = ebpf
        .map_mut(names::STATE)
        .ok_or_else(|| LoadError::Object("state map missing".into()))?;
    let mut state: Array<&mut MapData, u64> =
        Array::try_from(map).map_err(|e| LoadError::Object(e.to_string()))?;
    state
        .set(index, value, 0)
        .map_err(|e| LoadError::Object(e.to_string()))
}

fn set_state_flag(ebpf: &mut Ebpf, bit: u64) -> Result<(), LoadError> {
    let map = ebpf
        .map_mut(names::STATE)
        .ok_or_else(|| LoadError::Object("state map missing".into()))?;
    let mut state: Array<&mut MapData, u64> =
        Array::try_from(map).map_err(|e| LoadError::Object(e.to_string()))?;
    let cur = state.get(&state::FLAGS, 0).unwrap_or(0);
    state
        .set(state::FLAGS, cur | bit, 0)
        .map_err(|e| LoadError::Object(e.to_string()))
}

/// Adds a refusal unless the same one (rung, target, kind, reason) is
/// already listed: two candidates of one hook can differ only in their
/// programs (one per prototype of the same function), and a kernel refusing
/// the symbol itself refuses both alike; `check` says it once.
fn push_refusal(refusals: &mut Vec<Refusal>, r: Refusal) {
    let same = |x: &Refusal| {
        x.rung == r.rung && x.target == r.target && x.kind == r.kind && x.reason == r.reason
    };
    if !refusals.iter().any(same) {
        refusals.push(r);
    }
}

/// Whether the kernel can do kprobes at all (PMU or tracefs interface).
fn kprobes_supported() -> bool {
    Path::new("/sys/bus/event_source/devices/kprobe").exists()
        || Path::new(sys::TRACEFS).join("kprobe_events").exists()
        || Path::new("/sys/kernel/debug/tracing/kprobe_events").exists()
}

impl Planner<'_> {
    fn plan_hook(&mut self, ebpf: &mut Ebpf, spec: &HookSpec) -> HookStatus {
        let mut refusals = Vec::new();
        let broken = self.break_hooks.iter().any(|h| h == spec.id.name());
        for cand in spec.candidates {
            let target = if broken { BOGUS } else { cand.target };
            match self.try_candidate(ebpf, cand, broken) {
                Ok(symbol) => {
                    return HookStatus {
                        hook: spec.id,
                        rung: cand.rung,
                        target: Some(symbol.unwrap_or_else(|| cand.target.to_owned())),
                        programs: cand
                            .programs
                            .iter()
                            .map(|p| ProbeRef::known(p.probe))
                            .collect(),
                        refused: refusals,
                    };
                }
                Err(r) => push_refusal(
                    &mut refusals,
                    Refusal {
                        rung: cand.rung,
                        target: target.to_owned(),
                        kind: r.kind,
                        reason: r.reason,
                    },
                ),
            }
        }
        HookStatus {
            hook: spec.id,
            rung: Rung::Unavailable,
            target: None,
            programs: Vec::new(),
            refused: refusals,
        }
    }

    /// Tries one candidate; on success returns the symbol attached to (for
    /// function rungs; a compiler clone may have been chosen).
    fn try_candidate(
        &mut self,
        ebpf: &mut Ebpf,
        cand: &Candidate,
        broken: bool,
    ) -> Result<Option<String>, Refused> {
        if cand.rung < self.max_rung {
            return Err(refused(
                RefusalKind::NotTried,
                format!("not tried: --max-rung is {}", self.max_rung),
            ));
        }
        if let Some(field) = cand.fields.iter().find(|f| self.missing.contains(f)) {
            return Err(refused(
                RefusalKind::MissingField,
                format!(
                    "kernel BTF has no {} (needed to read the hook's data)",
                    field.path()
                ),
            ));
        }
        // Resolve every program's attach point before touching the kernel.
        let mut resolved: Vec<(ProbeId, Attach, String)> = Vec::new();
        for prog in cand.programs {
            let target = match (prog.attach, cand.func) {
                (
                    Attach::FEntry | Attach::FExit | Attach::KProbe | Attach::KRetProbe,
                    Some(func),
                ) => {
                    let symbol = if broken {
                        BOGUS
                    } else {
                        prog.symbol.unwrap_or(func.symbol)
                    };
                    self.check_function(cand.rung, &func, symbol)?
                }
                (Attach::TpBtf { tracepoint, proto }, _) => {
                    let tracepoint = if broken { BOGUS } else { tracepoint };
                    self.check_tracepoint(tracepoint, proto)?;
                    tracepoint.to_owned()
                }
                (Attach::Tracepoint { category, name }, _) => {
                    let name = if broken { BOGUS } else { name };
                    self.check_classic_tracepoint(category, name)?;
                    name.to_owned()
                }
                (_, None) => {
                    return Err(refused(
                        RefusalKind::Internal,
                        "function rung without a function (plan bug)",
                    ));
                }
            };
            resolved.push((prog.probe, prog.attach, target));
        }
        let mut loaded: Vec<Attachment> = Vec::new();
        for (probe, attach, target) in &resolved {
            match self.load_attach(ebpf, *probe, *attach, target) {
                Ok(link) => loaded.push(Attachment {
                    probe: *probe,
                    attach: *attach,
                    target: target.clone(),
                    link: Some(link),
                }),
                Err(e) => {
                    let names = loaded
                        .iter()
                        .map(|a| a.probe)
                        .chain(std::iter::once(*probe));
                    for name in names.map(ProbeId::program) {
                        if let Some(p) = ebpf.program_mut(name) {
                            unload(p);
                        }
                    }
                    return Err(e);
                }
            }
        }
        self.links.extend(loaded);
        Ok(cand.func.map(|_| {
            let mut targets: Vec<&str> = resolved.iter().map(|(_, _, t)| t.as_str()).collect();
            targets.dedup();
            targets.join("+")
        }))
    }

    fn check_tracepoint(&self, tracepoint: &str, proto: Proto) -> Result<(), Refused> {
        let Some(args) = self.btf.tracepoint_proto(tracepoint) else {
            return Err(refused(
                RefusalKind::Tracepoint,
                format!("tracepoint {tracepoint} does not exist on this kernel"),
            ));
        };
        let ok = match proto {
            Proto::Arity(n) => args.len() == n,
            Proto::Leading(want) => {
                args.len() >= want.len() && want.iter().zip(&args).all(|(w, a)| w == a)
            }
        };
        if ok {
            return Ok(());
        }
        let want = match proto {
            Proto::Arity(n) => format!("{n} arguments"),
            Proto::Leading(w) => format!("({}, …)", w.join(", ")),
        };
        Err(refused(
            RefusalKind::Tracepoint,
            format!(
                "tracepoint {tracepoint} has prototype ({}) here; the program expects {want}",
                args.join(", ")
            ),
        ))
    }

    fn check_classic_tracepoint(&mut self, category: &str, name: &str) -> Result<(), Refused> {
        self.ensure_tracefs()
            .map_err(|e| refused(RefusalKind::Tracefs, e))?;
        let exists = [
            Path::new(sys::TRACEFS),
            Path::new("/sys/kernel/debug/tracing"),
        ]
        .iter()
        .any(|root| {
            root.join("events")
                .join(category)
                .join(name)
                .join("id")
                .exists()
        });
        if exists {
            Ok(())
        } else {
            Err(refused(
                RefusalKind::Tracepoint,
                format!("tracepoint {category}:{name} does not exist on this kernel"),
            ))
        }
    }

    fn traceable(&mut self) -> Option<&BTreeSet<String>> {
        if self.traceable.is_none() {
            let _ = self.ensure_tracefs();
            let read = |root: &str| {
                std::fs::read_to_string(Path::new(root).join("available_filter_functions")).ok()
            };
            let list = read(sys::TRACEFS).or_else(|| read("/sys/kernel/debug/tracing"));
            self.traceable = Some(list.map(|text| {
                text.lines()
                    .filter_map(|l| l.split_whitespace().next())
                    .map(str::to_owned)
                    .collect()
            }));
        }
        self.traceable.as_ref().and_then(Option::as_ref)
    }

    /// Checks a function candidate without loading anything; returns the
    /// symbol to attach to.
    fn check_function(&mut self, rung: Rung, func: &Func, symbol: &str) -> Result<String, Refused> {
        // The prototype the programs assume, when the kernel's BTF describes it.
        if let Some(params) = self.btf.func_params(symbol) {
            if let Some(n) = func.arity
                && params.len() != n
            {
                return Err(refused(
                    RefusalKind::Prototype,
                    format!(
                        "{symbol} takes {} arguments here ({}); the program expects {n}",
                        params.len(),
                        params.join(", ")
                    ),
                ));
            }
            if symbol == func.symbol {
                for (i, want) in func.params {
                    match params.get(*i) {
                        Some(have) if have == want => {}
                        have => {
                            return Err(refused(
                                RefusalKind::Prototype,
                                format!(
                                    "{symbol} argument {i} is {} here; the program expects {want}",
                                    have.map_or("missing", String::as_str)
                                ),
                            ));
                        }
                    }
                }
            }
        } else if rung == Rung::Fentry {
            return Err(refused(
                RefusalKind::NoBtf,
                format!(
                    "no BTF FUNC record for {symbol} (inlined, renamed, or dropped by pahole): fentry needs one"
                ),
            ));
        }
        let symbols = self.kallsyms.text_symbols(symbol);
        let chosen = match rung {
            Rung::Fentry => symbols.iter().find(|s| *s == symbol).cloned(),
            _ => symbols.first().cloned(),
        };
        let Some(chosen) = chosen else {
            return Err(if symbols.is_empty() {
                refused(
                    RefusalKind::SymbolAbsent,
                    format!(
                        "{symbol} is not in /proc/kallsyms (inlined or renamed on this kernel)"
                    ),
                )
            } else {
                refused(
                    RefusalKind::OnlyClones,
                    format!(
                        "only compiler clones of {symbol} exist ({}); fentry needs the function itself",
                        symbols.join(", ")
                    ),
                )
            });
        };
        if rung == Rung::Kprobe && !kprobes_supported() {
            return Err(refused(
                RefusalKind::NoKprobes,
                "kprobes are not available on this kernel (CONFIG_KPROBES is off)",
            ));
        }
        if let Some(list) = self.traceable()
            && !list.contains(&chosen)
        {
            return Err(refused(
                RefusalKind::NotTraceable,
                format!(
                    "{chosen} is notrace (not in available_filter_functions: inline, noinstr or blacklisted)"
                ),
            ));
        }
        Ok(chosen)
    }

    fn ensure_tracefs(&mut self) -> Result<(), String> {
        if self.tracefs.is_none() {
            self.tracefs = Some(match sys::ensure_tracefs() {
                Ok(mounted) => {
                    self.mounted_tracefs = mounted;
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            });
        }
        self.tracefs.clone().unwrap_or(Ok(()))
    }

    fn load_attach(
        &mut self,
        ebpf: &mut Ebpf,
        probe: ProbeId,
        attach: Attach,
        target: &str,
    ) -> Result<LinkId, Refused> {
        let name = probe.program();
        let prog = ebpf.program_mut(name).ok_or_else(|| {
            refused(
                RefusalKind::Internal,
                format!("program {name} is missing from the BPF object"),
            )
        })?;
        let internal = |e: ProgramError| refused(RefusalKind::Internal, e.to_string());
        match attach {
            Attach::TpBtf { .. } => {
                let p: &mut BtfTracePoint = (&mut *prog).try_into().map_err(internal)?;
                p.load(target, self.aya_btf).map_err(|e| load_refused(&e))?;
            }
            Attach::Tracepoint { .. } => {
                let p: &mut TracePoint = (&mut *prog).try_into().map_err(internal)?;
                p.load().map_err(|e| load_refused(&e))?;
            }
            Attach::FEntry => {
                let p: &mut FEntry = (&mut *prog).try_into().map_err(internal)?;
                p.load(target, self.aya_btf).map_err(|e| load_refused(&e))?;
            }
            Attach::FExit => {
                let p: &mut FExit = (&mut *prog).try_into().map_err(internal)?;
                p.load(target, self.aya_btf).map_err(|e| load_refused(&e))?;
            }
            Attach::KProbe | Attach::KRetProbe => {
                let p: &mut KProbe = (&mut *prog).try_into().map_err(internal)?;
                p.load().map_err(|e| load_refused(&e))?;
            }
        }
        attach_loaded(prog, attach, target).map_err(|e| match e {
            AttachError::Type(e) => internal(e),
            AttachError::Attach(e) => refused(
                RefusalKind::Attach,
                format!("attach failed: {}", summarize(&e)),
            ),
        })
    }
}

/// Why attaching a loaded program failed.
enum AttachError {
    /// The program is not of the type its row says (a catalogue bug).
    Type(ProgramError),
    /// The kernel refused the attachment.
    Attach(ProgramError),
}

/// Attaches a loaded program where its row says, returning the link.
fn attach_loaded(prog: &mut Program, attach: Attach, target: &str) -> Result<LinkId, AttachError> {
    let ty = AttachError::Type;
    let at = AttachError::Attach;
    Ok(match attach {
        Attach::TpBtf { .. } => {
            let p: &mut BtfTracePoint = prog.try_into().map_err(ty)?;
            LinkId::TpBtf(p.attach().map_err(at)?)
        }
        Attach::Tracepoint { category, .. } => {
            let p: &mut TracePoint = prog.try_into().map_err(ty)?;
            LinkId::Tracepoint(p.attach(category, target).map_err(at)?)
        }
        Attach::FEntry => {
            let p: &mut FEntry = prog.try_into().map_err(ty)?;
            LinkId::FEntry(p.attach().map_err(at)?)
        }
        Attach::FExit => {
            let p: &mut FExit = prog.try_into().map_err(ty)?;
            LinkId::FExit(p.attach().map_err(at)?)
        }
        Attach::KProbe | Attach::KRetProbe => {
            let p: &mut KProbe = prog.try_into().map_err(ty)?;
            LinkId::KProbe(p.attach(target, 0).map_err(at)?)
        }
    })
}

/// Closes one link of a program (the program stays loaded).
fn detach_link(prog: &mut Program, link: LinkId) -> Result<(), ProgramError> {
    match (prog, link) {
        (Program::BtfTracePoint(p), LinkId::TpBtf(id)) => p.detach(id),
        (Program::TracePoint(p), LinkId::Tracepoint(id)) => p.detach(id),
        (Program::FEntry(p), LinkId::FEntry(id)) => p.detach(id),
        (Program::FExit(p), LinkId::FExit(id)) => p.detach(id),
        (Program::KProbe(p), LinkId::KProbe(id)) => p.detach(id),
        _ => Err(ProgramError::UnexpectedProgramType),
    }
}

/// Sums of the BPF-side counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// `[reason][event id]`, summed over CPUs.
    pub by_reason: Vec<Vec<u64>>,
    /// Hits per probe id.
    pub hits: Vec<(ProbeId, u64)>,
    pub stats: Vec<(Stat, u64)>,
    /// The fault gate (`state::FAULT_GATE`) is open.
    pub fault_gate_open: bool,
    /// Times a program opened the fault gate (`state::GATE_OPENS`).
    pub fault_gate_opens: u64,
    /// The page-fault programs' attachment (filled by the session).
    pub fault_programs: FaultAttach,
}

/// Where the page-fault programs stand when they attach on demand
/// ([`FaultPrograms::OnDemand`], `session.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultAttach {
    /// They are attached only while the fault gate is open (false: from
    /// start to stop, or not at all).
    pub on_demand: bool,
    /// Attached now.
    pub attached: bool,
    /// Attaches after a gate opening.
    pub attaches: u64,
    /// Attaches the kernel refused (the session retries).
    pub failures: u64,
    /// Sum of the delays from a gate opening to its attach done, and the last.
    pub delay_ns_sum: u64,
    pub last_delay_ns: u64,
}

impl Counters {
    pub fn total(&self, reason: CounterReason) -> u64 {
        self.by_reason
            .get(reason as usize)
            .map_or(0, |row| row.iter().sum())
    }

    pub fn get(&self, reason: CounterReason, id: EventId) -> u64 {
        self.by_reason
            .get(reason as usize)
            .and_then(|row| row.get(id as usize))
            .copied()
            .unwrap_or(0)
    }
}

impl Loaded {
    /// Takes the ring buffer out of the object (the reader owns it).
    pub fn take_ring(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        let map = self
            .ebpf
            .take_map(names::EVENTS)
            .ok_or_else(|| LoadError::Object("ring buffer map missing".into()))?;
        RingBuf::try_from(map).map_err(|e| LoadError::Object(e.to_string()))
    }

    /// A value of the `STATE` array (`monitor_common::maps::state`).
    pub fn state(&self, index: u32) -> Option<u64> {
        let map = self.ebpf.map(names::STATE)?;
        let a: Array<&MapData, u64> = Array::try_from(map).ok()?;
        a.get(&index, 0).ok()
    }

    /// Writes a value of the `STATE` array.
    pub fn set_state(&mut self, index: u32, value: u64) -> anyhow::Result<()> {
        let map = self
            .ebpf
            .map_mut(names::STATE)
            .ok_or_else(|| anyhow::anyhow!("state map missing"))?;
        let mut a: Array<&mut MapData, u64> = Array::try_from(map)?;
        a.set(index, value, 0)?;
        Ok(())
    }

    /// Reads the per-CPU counter maps.
    pub fn counters(&self) -> Counters {
        fn sum(map: &PerCpuArray<&MapData, u64>, index: u32) -> u64 {
            map.get(&index, 0).map(|v| v.iter().sum()).unwrap_or(0)
        }
        let mut out = Counters::default();
        if let Some(Ok(map)) = self
            .ebpf
            .map(names::COUNTERS)
            .map(PerCpuArray::<&MapData, u64>::try_from)
        {
            for reason in CounterReason::ALL {
                let mut row = vec![0u64; monitor_common::catalogue::MAX_EVENT_ID as usize];
                for id in EventId::ALL {
                    row[*id as usize] = sum(&map, reason.index(*id as u32));
                }
                out.by_reason.push(row);
            }
        }
        if let Some(Ok(map)) = self
            .ebpf
            .map(names::HITS)
            .map(PerCpuArray::<&MapData, u64>::try_from)
        {
            out.hits = ProbeId::ALL
                .iter()
                .map(|p| (*p, sum(&map, *p as u32)))
                .collect();
        }
        if let Some(Ok(map)) = self
            .ebpf
            .map(names::STATS)
            .map(PerCpuArray::<&MapData, u64>::try_from)
        {
            out.stats = Stat::ALL
                .iter()
                .map(|s| (*s, sum(&map, *s as u32)))
                .collect();
        }
        out.fault_gate_open = self.state(state::FAULT_GATE).is_some_and(|v| v != 0);
        out.fault_gate_opens = self.state(state::GATE_OPENS).unwrap_or(0);
        out
    }

    /// Closes the links of `hook`'s programs, which stay loaded (and keep
    /// their maps): [`Loaded::attach_hook`] attaches them again. Returns how
    /// many links were closed; an error names the first program the kernel
    /// refused to detach (the others are still detached).
    pub fn detach_hook(&mut self, hook: HookId) -> Result<usize, String> {
        let mut closed = 0;
        let mut first_err = None;
        for a in self.links.iter_mut().filter(|a| a.probe.hook() == hook) {
            let (Some(link), Some(prog)) =
                (a.link.take(), self.ebpf.program_mut(a.probe.program()))
            else {
                continue;
            };
            match detach_link(prog, link) {
                Ok(()) => closed += 1,
                Err(e) => {
                    first_err
                        .get_or_insert_with(|| format!("{}: {}", a.probe.program(), summarize(&e)));
                }
            }
        }
        first_err.map_or(Ok(closed), Err)
    }

    /// Attaches again the programs of `hook` that [`Loaded::detach_hook`]
    /// detached, where the plan had attached them. Returns how many links
    /// were made; on an error the programs attached before it stay attached.
    pub fn attach_hook(&mut self, hook: HookId) -> Result<usize, String> {
        let mut made = 0;
        for a in self
            .links
            .iter_mut()
            .filter(|a| a.probe.hook() == hook && a.link.is_none())
        {
            let name = a.probe.program();
            let prog = self
                .ebpf
                .program_mut(name)
                .ok_or_else(|| format!("program {name} is missing from the BPF object"))?;
            let link = attach_loaded(prog, a.attach, &a.target).map_err(|e| match e {
                AttachError::Type(e) | AttachError::Attach(e) => {
                    format!("{name}: {}", summarize(&e))
                }
            })?;
            a.link = Some(link);
            made += 1;
        }
        Ok(made)
    }

    /// Detaches and unloads every program. After this no record is produced.
    pub fn detach_all(&mut self) {
        self.links.clear();
        for (_, prog) in self.ebpf.programs_mut() {
            unload(prog);
        }
    }

    /// Unmounts tracefs now if the loader mounted it. Classic tracepoints need
    /// it only to resolve their ids at attach time; the daemon and `trace`
    /// call this right after attach (before dropping CAP_SYS_ADMIN, which
    /// unmounting needs), so that no kill leaves it mounted.
    pub fn release_tracefs(&mut self) {
        if let Some(m) = self.mounted_tracefs.take() {
            sys::unmount_tracefs(m);
        }
    }

    /// Program ids still loaded from this object (for checks after detach).
    pub fn loaded_program_names(&self) -> Vec<String> {
        self.ebpf
            .programs()
            .filter(|(_, p)| p.fd().is_ok())
            .map(|(n, _)| n.to_owned())
            .collect()
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        self.detach_all();
        self.release_tracefs();
    }
}

#[cfg(test)]
mod refusal_tests {
    use super::*;

    fn r(rung: Rung, target: &str, reason: &str) -> Refusal {
        Refusal {
            rung,
            target: target.to_owned(),
            kind: RefusalKind::default(),
            reason: reason.to_owned(),
        }
    }

    /// The same refusal of two candidates (two prototypes of one symbol) is
    /// listed once; a different rung, target or reason is kept.
    #[test]
    fn identical_refusals_are_listed_once() {
        let mut v = Vec::new();
        push_refusal(&mut v, r(Rung::Fentry, "f", "no BTF"));
        push_refusal(&mut v, r(Rung::Fentry, "f", "no BTF"));
        push_refusal(&mut v, r(Rung::Kprobe, "f", "no BTF"));
        push_refusal(&mut v, r(Rung::Fentry, "g", "no BTF"));
        push_refusal(&mut v, r(Rung::Fentry, "f", "inlined"));
        assert_eq!(v.len(), 4, "{v:?}");
    }
}
