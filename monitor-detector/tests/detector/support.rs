//! Building traces: a recorder that assigns per-mm sequence numbers the way
//! the BPF side does (`monitor-ebpf/src/emit.rs`), so fixtures and property
//! tests produce realistic records without hand-numbering them.

use std::collections::BTreeMap;

use monitor_common::{
    catalogue::{EventId, HookId, ProbeId, Rung},
    event::{Token, fixed_str, reap_source, uffd_event},
};
use monitor_common::{
    event::hdr,
    mmf::{MMF_OOM_SKIP, MMF_UNSTABLE},
    pf::PF_KTHREAD,
    vm_flags,
};
use monitor_detector::{
    ProbeRef,
    event::{
        Data, Event, Exec, ExecMmSwitch, Fault, Fork, MarkVictim, Migrate, MmState, Reap,
        ReapSource, StackMove, UffdChange, UffdCopy, UffdEventKind, VmaRange,
    },
    tracefile::{
        FORMAT_NAME, FORMAT_VERSION, Header, HookStatus, Line, Loss, Refusal, RefusalKind, Summary,
        to_line,
    },
};

/// Kernel releases the fixtures are recorded on.
pub const R510: &str = "5.10.0-32-cloud-amd64";
pub const R612: &str = "6.12.117+deb12-cloud-amd64";
pub const R618: &str = "6.18.44-fc-v669";

/// `PF_RANDOMIZE`: set on every ordinary user task.
const PF_RANDOMIZE: u32 = 0x0040_0000;

/// A task as the header of a record describes it.
#[derive(Clone, Copy, Debug)]
pub struct Task {
    pub pid: u32,
    pub tgid: u32,
    pub comm: &'static str,
    pub flags: u32,
}

pub const fn user(pid: u32, tgid: u32, comm: &'static str) -> Task {
    Task {
        pid,
        tgid,
        comm,
        flags: PF_RANDOMIZE,
    }
}

pub const fn kthread(pid: u32, comm: &'static str) -> Task {
    Task {
        pid,
        tgid: pid,
        comm,
        flags: PF_KTHREAD,
    }
}

pub const OOM_REAPER: Task = kthread(40, "oom_reaper");

/// `mm->flags` of an ordinary 6.x process (dumpable, default coredump
/// filter, THP) and of a reaped one.
pub const MM_FLAGS: u64 = 0x0002_00cd;
pub const MM_FLAGS_UNSTABLE: u64 = MM_FLAGS | (1 << MMF_UNSTABLE) | (1 << 25);
pub const MM_FLAGS_DEAD: u64 = MM_FLAGS_UNSTABLE | (1 << MMF_OOM_SKIP);

/// One mm generation: its address and the generation id (the ktime of its
/// first record, as the BPF side stamps it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mm {
    pub addr: u64,
    pub generation: u64,
}

pub const NO_MM: Mm = Mm {
    addr: 0,
    generation: 0,
};

/// A trace being recorded.
pub struct Trace {
    pub header: Header,
    pub lines: Vec<Line>,
    seqs: BTreeMap<(u64, u64), u64>,
    pub t: u64,
    pub cpu: u32,
}

impl Trace {
    pub fn new(kernel_release: &str, hooks: Vec<HookStatus>, start_ns: u64) -> Trace {
        let bpf_object = if kernel_release.starts_with("5.") {
            "compat"
        } else {
            "atomic"
        };
        Trace {
            header: Header {
                format: FORMAT_NAME.to_owned(),
                version: FORMAT_VERSION,
                wire_version: 1,
                monitor_version: "0.1.0".to_owned(),
                kernel_release: kernel_release.to_owned(),
                hostname: "vm-test".to_owned(),
                bpf_object: bpf_object.to_owned(),
                start_ktime_ns: start_ns,
                start_unix_ms: 1_795_000_000_000,
                hooks,
                filters: BTreeMap::new(),
            },
            lines: Vec::new(),
            seqs: BTreeMap::new(),
            t: start_ns,
            cpu: 0,
        }
    }

    pub fn on_cpu(&mut self, cpu: u32) -> &mut Self {
        self.cpu = cpu;
        self
    }

    /// A new mm generation at `addr`, stamped with the current time.
    pub fn mm(&self, addr: u64) -> Mm {
        Mm {
            addr,
            generation: self.t,
        }
    }

    /// Records one event; returns its sequence number (0 if unsequenced).
    pub fn emit(&mut self, task: Task, mm: Mm, probe: &str, data: Data) -> u64 {
        self.emit_flags(task, mm, probe, data, 0)
    }

    /// Like [`Trace::emit`] with extra header flags (e.g. `END_GENERATION`).
    pub fn emit_flags(&mut self, task: Task, mm: Mm, probe: &str, data: Data, flags: u32) -> u64 {
        self.t += 1_000 + u64::from(self.cpu) * 37;
        let (seq, mut hdr_flags) = if mm.addr == 0 {
            (0, hdr::UNSEQUENCED)
        } else {
            let s = self.seqs.entry((mm.addr, mm.generation)).or_insert(0);
            *s += 1;
            (*s, if *s == 1 { hdr::NEW_GENERATION } else { 0 })
        };
        if self.header.bpf_object == "compat" {
            hdr_flags |= hdr::SEQ_NON_ATOMIC;
        }
        hdr_flags |= flags;
        let ev = Event {
            t: self.t,
            cpu: self.cpu,
            pid: task.pid,
            tgid: task.tgid,
            comm: fixed_str(task.comm),
            task_flags: task.flags,
            mm: mm.addr,
            mm_gen: if mm.addr == 0 { 0 } else { mm.generation },
            seq,
            cgroup_id: 0,
            memcg_id: 0,
            hdr_flags,
            probe: {
                let p = ProbeId::from_name(probe)
                    .unwrap_or_else(|| panic!("{probe} is not a program of the catalogue"));
                // Legacy kinds keep the programs that used to write them.
                assert!(p.wrote(data.id()), "{probe} does not emit {}", data.id());
                ProbeRef::known(p)
            },
            data,
        };
        self.lines.push(Line::Event(ev));
        seq
    }

    pub fn loss(&mut self, kinds: &[(&str, u64)]) {
        self.lines.push(Line::Loss(Loss {
            t: self.t + 500,
            lost: kinds
                .iter()
                .map(|(k, n)| (EventId::from_name(k).expect("event kind"), *n))
                .collect(),
            unknown_kinds: 0,
        }));
    }

    pub fn to_jsonl(&self) -> String {
        let mut s = to_line(&Line::Header(self.header.clone()));
        s.push('\n');
        for l in &self.lines {
            s.push_str(&to_line(l));
            s.push('\n');
        }
        s
    }
}

// ---------------------------------------------------------------------------
// Payload constructors.

pub fn mark_victim(victim: Task, flags: u64) -> Data {
    Data::MarkVictim(MarkVictim {
        victim_pid: victim.pid,
        victim_tgid: victim.tgid,
        victim_comm: fixed_str(victim.comm),
        uid: 1000,
        mm_flags: flags,
        _pad0: 0,
        victim_cgroup_id: 0,
        victim_memcg_id: 0,
    })
}

fn reap(victim_pid: u32, source: ReapSource, ret: i32, flags: u64) -> Reap {
    Reap {
        victim_pid,
        source: match source {
            ReapSource::Tracepoint => reap_source::TRACEPOINT,
            ReapSource::Function => reap_source::FUNCTION,
            ReapSource::Unknown => 0,
        },
        ret,
        mm_flags: flags,
        _pad0: 0,
    }
}

pub fn reap_skip_tp(victim_pid: u32, flags: u64) -> Data {
    Data::ReapSkip(reap(victim_pid, ReapSource::Tracepoint, -1, flags))
}

/// Function rung: `__oom_reap_task_mm` entry / return.
pub fn reap_start_fn(flags: u64) -> Data {
    Data::ReapStart(reap(0, ReapSource::Function, -1, flags))
}

pub fn reap_end_fn(ret: i32, flags: u64) -> Data {
    Data::ReapEnd(reap(0, ReapSource::Function, ret, flags))
}

pub fn vma(start: u64, end: u64, flags: u64, address: u64) -> VmaRange {
    VmaRange {
        vm_start: start,
        vm_end: end,
        vm_flags: flags,
        address,
    }
}

pub fn mm_state(flags: u64) -> MmState {
    MmState { mm_flags: flags }
}

pub fn fault(
    address: u64,
    flags: u64,
    current_mm: u64,
    fault_flags: u32,
    ret: Option<u32>,
) -> Fault {
    Fault {
        address,
        mm_flags: flags,
        current_mm,
        vm_flags: 0,
        fault_flags,
        ret: ret.map_or(u64::MAX, u64::from),
        entry_flags: 0,
    }
}

pub fn exec(filename: &str, old_pid: u32) -> Data {
    Data::Exec(Exec {
        old_pid,
        _pad0: 0,
        filename: fixed_str(filename),
    })
}

pub fn exec_switch(new_comm: &str) -> Data {
    Data::ExecMmSwitch(ExecMmSwitch {
        new_comm: fixed_str(new_comm),
    })
}

/// The temporary exec stack before/after `shift_arg_pages`.
pub const TEMP_STACK_FLAGS: u64 = 0x0011_8173 | vm_flags::VM_STACK_INCOMPLETE_SETUP;

pub fn stack_move(start: u64, end: u64, shift: u64, ret: i64) -> StackMove {
    StackMove {
        vm_start: start,
        vm_end: end,
        vm_flags: TEMP_STACK_FLAGS,
        shift,
        ret,
    }
}

pub fn migrate(reason: u32) -> Migrate {
    Migrate {
        succeeded: 0,
        failed: 0,
        thp_succeeded: 0,
        thp_failed: 0,
        thp_split: 0,
        large_folio_split: 0,
        mode: 1,
        reason,
        ptes_set: 0,
        ptes_removed: 0,
        start_seen: 1,
        _pad0: 0,
    }
}

/// `MR_COMPACTION`.
pub const MR_COMPACTION: u32 = 0;

pub fn migrate_end(reason: u32, succeeded: u64, ptes_set: u64, ptes_removed: u64) -> Data {
    Data::MigrateEnd(Migrate {
        succeeded,
        ptes_set,
        ptes_removed,
        ..migrate(reason)
    })
}

pub fn uffd_copy(dst: u64, ret: i64, mmap_changing: i32) -> UffdCopy {
    UffdCopy {
        dst,
        len: 4096,
        ret,
        mmap_changing,
        fd: 5,
    }
}

pub fn uffd_change(kind: UffdEventKind, mmap_changing: i32, start: u64, end: u64) -> UffdChange {
    UffdChange {
        kind: match kind {
            UffdEventKind::Fork => uffd_event::FORK,
            UffdEventKind::Remap => uffd_event::REMAP,
            UffdEventKind::Remove => uffd_event::REMOVE,
            UffdEventKind::Unmap => uffd_event::UNMAP,
            UffdEventKind::Unknown => 0,
        },
        mmap_changing,
        start,
        end,
    }
}

pub fn fork(child: Task, child_mm: u64) -> Data {
    Data::Fork(Fork {
        child_pid: child.pid,
        child_tgid: child.tgid,
        child_mm,
    })
}

// ---------------------------------------------------------------------------
// Hook plans (programs from the catalogue: the hook's programs at the rung).

fn hook(name: &str, rung: &str, target: Option<&str>, refused: Vec<Refusal>) -> HookStatus {
    let hook = HookId::from_name(name).expect("hook");
    let rung = Rung::from_name(rung).expect("rung");
    HookStatus {
        hook,
        rung,
        target: target.map(str::to_owned),
        programs: hook
            .probes()
            .filter(|p| rung != Rung::Unavailable && p.rung() == rung)
            .map(ProbeRef::known)
            .collect(),
        refused,
    }
}

fn refused(rung: &str, target: &str, reason: &str) -> Refusal {
    Refusal {
        rung: Rung::from_name(rung).expect("rung"),
        target: target.to_owned(),
        kind: RefusalKind::Unknown,
        reason: reason.to_owned(),
    }
}

/// Function-rung hook plan (Debian 6.1/6.12 and 5.10 kernels in a VM).
pub fn hooks_function(release: &str) -> Vec<HookStatus> {
    let (stack, mfill) = if release.starts_with("6.12") {
        ("relocate_vma_down", "mfill_atomic_copy")
    } else {
        ("shift_arg_pages", "mcopy_atomic")
    };
    let tp = |name: &str, target: &str| hook(name, "tracepoint", Some(target), Vec::new());
    let f = |name: &str, target: &str| hook(name, "fentry", Some(target), Vec::new());
    vec![
        f("oom_reap", "__oom_reap_task_mm"),
        tp("mark_victim", "oom:mark_victim"),
        f("exit_mmap", "exit_mmap"),
        f("unmap_page_range", "unmap_page_range"),
        f("unmap_vmas", "unmap_vmas"),
        f("mmdrop", "__mmdrop"),
        tp("process_mrelease", "syscalls:sys_enter_process_mrelease"),
        f("remove_migration_ptes", "remove_migration_pte"),
        tp("migrate_pages", "migrate:mm_migrate_pages"),
        f("try_to_migrate_one", "try_to_migrate_one"),
        hook(
            "invalid_migration_vma",
            "kprobe",
            Some("invalid_migration_vma"),
            vec![refused(
                "fentry",
                "invalid_migration_vma",
                "no BTF FUNC record for this symbol",
            )],
        ),
        f("migration_entry_wait", "migration_entry_wait"),
        f("stack_move", stack),
        tp("exec", "sched:sched_process_exec"),
        tp("fork", "sched:sched_process_fork"),
        f("handle_mm_fault", "handle_mm_fault"),
        f("kthread_use_mm", "kthread_use_mm"),
        f("mfill_copy", mfill),
        f("uffd_ioctl", "userfaultfd_ioctl"),
        f("uffd_fork", "dup_userfaultfd"),
        f("uffd_remap", "mremap_userfaultfd_prep"),
        f("uffd_unmap", "userfaultfd_unmap_prep"),
        f("uffd_remove", "userfaultfd_remove"),
        f("uffd_event_wait", "userfaultfd_event_wait_completion"),
    ]
}

/// Tracepoint-only hook plan (the 6.18 host: no kprobes, fentry refused).
pub fn hooks_tracepoint() -> Vec<HookStatus> {
    let no_kprobes = |target: &str| {
        vec![
            refused(
                "fentry",
                target,
                "program load failed: EPERM (ftrace function tracing blocked)",
            ),
            refused("kprobe", target, "CONFIG_KPROBES is not set"),
        ]
    };
    let tp = |name: &str, target: &str, fn_target: &str| {
        hook(name, "tracepoint", Some(target), no_kprobes(fn_target))
    };
    let none = |name: &str, fn_target: &str| hook(name, "unavailable", None, no_kprobes(fn_target));
    vec![
        tp("oom_reap", "oom:start_task_reaping", "__oom_reap_task_mm"),
        tp("mark_victim", "oom:mark_victim", "mark_oom_victim"),
        tp("exit_mmap", "mmap:exit_mmap", "exit_mmap"),
        none("unmap_page_range", "unmap_page_range"),
        none("unmap_vmas", "unmap_vmas"),
        none("mmdrop", "__mmdrop"),
        tp(
            "process_mrelease",
            "syscalls:sys_enter_process_mrelease",
            "process_mrelease",
        ),
        tp(
            "remove_migration_ptes",
            "migrate:remove_migration_pte",
            "remove_migration_pte",
        ),
        tp(
            "set_migration_pte",
            "migrate:set_migration_pte",
            "set_migration_pte",
        ),
        tp("migrate_pages", "migrate:mm_migrate_pages", "migrate_pages"),
        none("try_to_migrate_one", "try_to_migrate_one"),
        none("invalid_migration_vma", "invalid_migration_vma"),
        none("migration_entry_wait", "migration_entry_wait"),
        tp("stack_move", "task:task_rename", "relocate_vma_down"),
        tp("exec", "sched:sched_process_exec", "begin_new_exec"),
        tp("fork", "sched:sched_process_fork", "dup_mmap"),
        tp(
            "handle_mm_fault",
            "exceptions:page_fault_kernel",
            "handle_mm_fault",
        ),
        none("kthread_use_mm", "kthread_use_mm"),
        none("mfill_copy", "mfill_atomic_copy"),
        tp("uffd_ioctl", "syscalls:sys_exit_ioctl", "userfaultfd_ioctl"),
        none("uffd_fork", "dup_userfaultfd"),
        none("uffd_remap", "mremap_userfaultfd_prep"),
        none("uffd_unmap", "userfaultfd_unmap_prep"),
        none("uffd_remove", "userfaultfd_remove"),
        none("uffd_event_wait", "userfaultfd_event_wait_completion"),
    ]
}

// ---------------------------------------------------------------------------
// Compact trace text (`tests/fixtures/*.trace`), one event per line.

/// Splits a line at white space; a `"…"` part (JSON string syntax) may hold
/// spaces.
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let mut lit = String::from('"');
                loop {
                    let Some(n) = chars.next() else {
                        return Err("unterminated string".into());
                    };
                    lit.push(n);
                    if n == '\\' {
                        lit.extend(chars.next());
                    } else if n == '"' {
                        break;
                    }
                }
                let s: String = serde_json::from_str(&lit).map_err(|e| e.to_string())?;
                // Quoted: marked so that "123" stays a string.
                cur.push('\u{0}');
                cur.push_str(&s);
            }
            c if c.is_whitespace() => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// A `key=value` word's value as a field token.
fn token(v: &str) -> Token<'_> {
    if let Some(s) = v.strip_prefix('\u{0}') {
        return Token::Str(s);
    }
    match v {
        "true" => Token::Bool(true),
        "false" => Token::Bool(false),
        "null" => Token::Null,
        _ if v.starts_with('-') || v.starts_with(|c: char| c.is_ascii_digit()) => {
            if v.starts_with("0x") {
                Token::Str(v)
            } else {
                Token::Num(v)
            }
        }
        _ => Token::Str(v),
    }
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('\u{0}').unwrap_or(v)
}

/// `S.NNNNNNNNN` seconds as nanoseconds.
fn seconds(v: &str) -> Result<u64, String> {
    let (s, ns) = v
        .split_once('.')
        .ok_or_else(|| format!("time {v}: want S.NNNNNNNNN"))?;
    let s: u64 = s.parse().map_err(|_| format!("time {v}"))?;
    let ns: u64 = ns.parse().map_err(|_| format!("time {v}"))?;
    Ok(s * 1_000_000_000 + ns)
}

/// Parses a compact trace. Every program must be a catalogue program that
/// emits the event kind written beside it, and every payload field one of
/// the kind's fields:
///
/// ```text
/// kernel 6.12.117+deb12-cloud-amd64     the traced kernel
/// plan function                         or `tracepoint`: the hook plan of that host
/// start 33402118000                     the recording's start (ns)
/// task reaper 40/40 oom_reaper kthread  an alias, pid/tgid, comm, [kthread | flags=0x…]
/// mm victim 0xffff88800541a380          an alias for an mm address
/// 35.445748333 cpu1 reaper fentry_oom_reap reap_start victim/33437746296#2 [!end …] source=function …
/// loss 40.000002537 fault=5310 reap_end=1
/// summary produced=18 delivered=18 ended_by=duration
/// ```
///
/// An event's mm is `-` (none) or `ALIAS/GENERATION#SEQ`; its header flags
/// are derived (unsequenced, new generation at seq 1, non-atomic on a 5.x
/// kernel) plus `!end`, `!read_error`, `!map_full`, `!replayed`, or given whole as
/// `!flags=0x…`. Payload fields not written are 0.
pub fn parse_trace(text: &str) -> Result<Trace, String> {
    let mut release = None;
    let mut plan = None;
    let mut start = 0u64;
    let mut tasks: BTreeMap<String, (Task, String)> = BTreeMap::new();
    let mut mms: BTreeMap<String, u64> = BTreeMap::new();
    let mut body: Vec<Vec<String>> = Vec::new();
    for (no, raw) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}", no + 1);
        let line = raw
            .split_once('#')
            .filter(|_| raw.trim_start().starts_with('#'))
            .map_or(raw, |_| "");
        let w = words(line).map_err(at)?;
        let Some(first) = w.first() else { continue };
        match first.as_str() {
            "kernel" => release = w.get(1).cloned(),
            "plan" => plan = w.get(1).cloned(),
            "start" => {
                start = w
                    .get(1)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| at("start N".into()))?
            }
            "task" => {
                let (alias, ids, comm) = match &w[..] {
                    [_, a, i, c, ..] => (a, i, unquote(c)),
                    _ => return Err(at("task ALIAS PID/TGID COMM".into())),
                };
                let (pid, tgid) = ids
                    .split_once('/')
                    .and_then(|(p, t)| Some((p.parse().ok()?, t.parse().ok()?)))
                    .ok_or_else(|| at(format!("bad pid/tgid {ids}")))?;
                let flags = match w.get(4).map(String::as_str) {
                    None => PF_RANDOMIZE,
                    Some("kthread") => PF_KTHREAD,
                    Some(f) => f
                        .strip_prefix("flags=0x")
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .ok_or_else(|| at(format!("bad task flags {f}")))?,
                };
                let task = Task {
                    pid,
                    tgid,
                    comm: "",
                    flags,
                };
                tasks.insert(alias.clone(), (task, comm.to_owned()));
            }
            "mm" => {
                let addr = w
                    .get(2)
                    .and_then(|a| u64::from_str_radix(a.strip_prefix("0x")?, 16).ok())
                    .ok_or_else(|| at("mm ALIAS 0xADDR".into()))?;
                mms.insert(w.get(1).cloned().unwrap_or_default(), addr);
            }
            _ => body.push(w),
        }
    }
    let release = release.ok_or("no `kernel` line")?;
    let hooks = match plan.as_deref() {
        Some("function") => hooks_function(&release),
        Some("tracepoint") => hooks_tracepoint(),
        other => return Err(format!("plan {other:?}: want function or tracepoint")),
    };
    let mut tr = Trace::new(&release, hooks, start);
    let compat = tr.header.bpf_object == "compat";
    for w in body {
        let ctx = w.join(" ");
        let at = |e: String| format!("{ctx}: {e}");
        match w[0].as_str() {
            "loss" => {
                let t = seconds(w.get(1).ok_or_else(|| at("loss T K=N…".into()))?).map_err(at)?;
                let mut lost = BTreeMap::new();
                for kv in &w[2..] {
                    let (k, n) = kv.split_once('=').ok_or_else(|| at(kv.clone()))?;
                    let id =
                        EventId::from_name(k).ok_or_else(|| at(format!("no event kind {k}")))?;
                    lost.insert(id, n.parse().map_err(|_| at(kv.clone()))?);
                }
                tr.lines.push(Line::Loss(Loss {
                    t,
                    lost,
                    unknown_kinds: 0,
                }));
            }
            "summary" => {
                let mut s = Summary::default();
                for kv in &w[1..] {
                    let (k, v) = kv.split_once('=').ok_or_else(|| at(kv.clone()))?;
                    let n = || v.parse::<u64>().map_err(|_| at(kv.clone()));
                    match k {
                        "produced" => s.produced = n()?,
                        "delivered" => s.delivered = n()?,
                        "lost" => s.lost = n()?,
                        "duration_ms" => s.duration_ms = n()?,
                        "ended_by" => s.ended_by = unquote(v).to_owned(),
                        _ => return Err(at(format!("summary has no {k}"))),
                    }
                }
                tr.lines.push(Line::Summary(s));
            }
            _ => {
                let [t, cpu, task, program, kind, mm, rest @ ..] = &w[..] else {
                    return Err(at("T cpuN TASK PROGRAM KIND MM …".into()));
                };
                let probe = ProbeId::from_name(program)
                    .ok_or_else(|| at(format!("{program} is not a program of the catalogue")))?;
                let id =
                    EventId::from_name(kind).ok_or_else(|| at(format!("no event kind {kind}")))?;
                if !probe.wrote(id) {
                    return Err(at(format!("{program} does not emit {kind} (catalogue)")));
                }
                let (task, comm) = tasks
                    .get(task)
                    .ok_or_else(|| at(format!("no task {task}")))?;
                let (addr, generation, seq) = if mm == "-" {
                    (0, 0, 0)
                } else {
                    let (a, gs) = mm.split_once('/').ok_or_else(|| at(format!("mm {mm}")))?;
                    let (g, s) = gs.split_once('#').ok_or_else(|| at(format!("mm {mm}")))?;
                    let addr = *mms.get(a).ok_or_else(|| at(format!("no mm {a}")))?;
                    (
                        addr,
                        g.parse().map_err(|_| at(mm.clone()))?,
                        s.parse().map_err(|_| at(mm.clone()))?,
                    )
                };
                let mut hdr_flags = if addr == 0 { hdr::UNSEQUENCED } else { 0 }
                    | if addr != 0 && seq == 1 {
                        hdr::NEW_GENERATION
                    } else {
                        0
                    }
                    | if compat { hdr::SEQ_NON_ATOMIC } else { 0 };
                let mut data = Data::zeroed(id);
                for word in rest {
                    if let Some(flag) = word.strip_prefix('!') {
                        match flag {
                            "end" => hdr_flags |= hdr::END_GENERATION,
                            "read_error" => hdr_flags |= hdr::READ_ERROR,
                            "map_full" => hdr_flags |= hdr::SEQ_MAP_FULL,
                            "replayed" => hdr_flags |= hdr::REPLAYED,
                            f => {
                                hdr_flags = f
                                    .strip_prefix("flags=0x")
                                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                                    .ok_or_else(|| at(format!("flag {f}")))?;
                            }
                        }
                        continue;
                    }
                    let (k, v) = word
                        .split_once('=')
                        .ok_or_else(|| at(format!("{word}: want KEY=VALUE")))?;
                    match data.fields_mut().set(k, token(v)) {
                        Ok(true) => {}
                        Ok(false) => return Err(at(format!("{kind} has no field {k}"))),
                        Err(b) => return Err(at(format!("{k}: expected {}", b.expected))),
                    }
                }
                let cpu = cpu
                    .strip_prefix("cpu")
                    .and_then(|c| c.parse().ok())
                    .ok_or_else(|| at(format!("cpu {cpu}")))?;
                tr.lines.push(Line::Event(Event {
                    t: seconds(t).map_err(at)?,
                    cpu,
                    pid: task.pid,
                    tgid: task.tgid,
                    comm: fixed_str(comm),
                    task_flags: task.flags,
                    mm: addr,
                    mm_gen: generation,
                    seq,
                    cgroup_id: 0,
                    memcg_id: 0,
                    hdr_flags,
                    probe: ProbeRef::known(probe),
                    data,
                }));
            }
        }
    }
    Ok(tr)
}
