//! `unstable_mm_fault`: a page fault on an mm after the OOM reaper set
//! `MMF_UNSTABLE`, by any task (3f70dc38cec2 for kernel threads, 6b31d5955cb2
//! for every task since v4.13; `docs/kernel.md`, "The four races";
//! `docs/detection.md`, "unstable_mm_fault").
//!
//! The mm counts as unstable for a fault when the fault's own `mm_flags` has
//! bit 22 set; when the flags could not be read (`READ_ERROR`, or zero), when
//! the reaper already started on this generation or an earlier event showed
//! the bit.
//!
//! Each fault is classified by its accessor ([`Accessor`]):
//! * `kthread`: a kernel thread (`PF_KTHREAD`) between `kthread_use_mm` and
//!   `kthread_unuse_mm` (a vhost worker in kthread mode, 3f70dc38cec2);
//! * `remote`: `current->mm` is another mm (GUP through `/proc/PID/mem`,
//!   `process_vm_readv`, `access_remote_vm`);
//! * `owner_kernel`: one of the owner's threads in kernel mode: a
//!   `copy_from_user`/`get_user` in a syscall (the `write(2)` of 6b31d5955cb2,
//!   which would write zeroes to a file) or in exit (`futex_cleanup` →
//!   `get_user` of the robust list); `handle_mm_fault` without
//!   `FAULT_FLAG_USER`, or `exceptions:page_fault_kernel` on the tracepoint
//!   rung (it fires only for `!user_mode(regs)`). `PF_USER_WORKER` vhost tasks
//!   and `PF_IO_WORKER` io_uring workers are the owner's threads and always
//!   fault in kernel mode: `owner_kernel` too;
//! * `owner_user`: one of the owner's threads in user mode (`FAULT_FLAG_USER`).
//!
//! Since v4.13 `check_stable_address_space()` refuses every one of them, so
//! the verdicts are the same for all four accessors. Per fault, by its
//! `vm_fault_t` result:
//! * `VM_FAULT_SIGBUS` (or another `VM_FAULT_ERROR` bit): the protection held:
//!   near miss (`fault_result = "sigbus"`);
//! * no error bit, no `VM_FAULT_RETRY`/`NOPAGE`: the fault was handled on an
//!   `MMF_UNSTABLE` mm, so a reaped page may have been re-instantiated as zeros:
//!   violation — unless the entry probe saw the flag still clear when the
//!   fault began (`unstable_at_entry == Some(false)`): its check may have
//!   passed before the reaper started, a legal race (near miss); or unless
//!   the reaper had not finished (no `reap_end` yet, or only partial ones,
//!   `ret` 0): a fault by any accessor may have hit a PTE the reaper had not
//!   zapped yet, which is handled without reaching
//!   `check_stable_address_space()` (legal); or unless the
//!   VMA is one `__oom_reap_task_mm` does not unmap (`VM_SHARED` file
//!   mappings, `VM_HUGETLB`, `VM_PFNMAP`): its pages still hold real data;
//! * `VM_FAULT_RETRY` (the fault will be retried and reported again) or
//!   `VM_FAULT_NOPAGE` (a driver installed the PTE itself: a PFN mapping the
//!   reaper skips): counted, no verdict;
//! * no result (tracepoint rung, `kernel_fault`): uncertain, `fault_result =
//!   "unknown (tracepoint rung)"`.
//!
//! One window per mm generation: it opens at the first qualifying fault and
//! closes when the generation ends (or at the end of input); the finding
//! aggregates every fault in it (worst verdict wins: violation, then
//! uncertain, then near miss) and names the accessors of the faults that
//! decided it (`accessor`) and the first such task (`first_task`).

use monitor_common::{
    event::hdr,
    fault_flag,
    mmf::MMF_UNSTABLE,
    pf::{PF_IO_WORKER, PF_KTHREAD, PF_USER_WORKER},
    vm_fault,
};

/// `VM_SHARED` in `vma->vm_flags`.
const VM_SHARED: u64 = 0x8;
/// `VM_PFNMAP`, `VM_HUGETLB`: VMAs `__oom_reap_task_mm` skips on every
/// kernel of the matrix (`if (vma->vm_flags & (VM_HUGETLB|VM_PFNMAP))
/// continue;`, or `!can_madv_lru_vma()` before 5.18).
const VM_NOT_REAPED: u64 = 0x0000_0400 | 0x0040_0000;
use serde_json::Value;

use super::{
    Close, Ctx, Globals, Grade, MmRule, Noted, Taint, Verdict, Window,
    coverage::{Builder, RuleCoverage, Seen, seen},
    details, emit, hex, mm_rule_common, reuse_keeping,
};
use monitor_common::catalogue::HookId;

use crate::{
    event::{Data, Event, Fault, FaultExt},
    finding::FindingKind,
    sequencer::MmKey,
    tracefile::HookStatus,
};

const KIND: FindingKind = FindingKind::UnstableMmFault;
const UNSTABLE_BIT: u64 = 1 << MMF_UNSTABLE;

/// Who made a fault on an unstable mm (the `accessor` detail and metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accessor {
    /// A kernel thread using the mm (`kthread_use_mm`).
    Kthread,
    /// A task whose `current->mm` is another mm (GUP, `/proc/PID/mem`).
    Remote,
    /// The owner's thread in kernel mode (`copy_from_user`/`get_user` in a
    /// syscall or in exit; user workers).
    OwnerKernel,
    /// The owner's thread in user mode.
    OwnerUser,
}

impl Accessor {
    pub const ALL: [Accessor; 4] = [
        Accessor::Kthread,
        Accessor::Remote,
        Accessor::OwnerKernel,
        Accessor::OwnerUser,
    ];

    /// Stable name (finding detail, metric label).
    pub const fn name(self) -> &'static str {
        match self {
            Accessor::Kthread => "kthread",
            Accessor::Remote => "remote",
            Accessor::OwnerKernel => "owner_kernel",
            Accessor::OwnerUser => "owner_user",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }

    const fn describe(self) -> &'static str {
        match self {
            Accessor::Kthread => "a kernel thread using the mm (kthread_use_mm)",
            Accessor::Remote => {
                "a task that does not own the mm (remote access: GUP, /proc/PID/mem)"
            }
            Accessor::OwnerKernel => {
                "the owner's thread in kernel mode (copy_from_user/get_user in a syscall or in exit)"
            }
            Accessor::OwnerUser => "the owner's thread in user mode",
        }
    }

    /// The accessor of a fault record.
    pub fn of(ev: &Event, f: &Fault) -> Accessor {
        if ev.task_flags & PF_KTHREAD != 0 {
            return Accessor::Kthread;
        }
        if f.current_mm != 0 && f.current_mm != ev.mm {
            return Accessor::Remote;
        }
        if ev.task_flags & (PF_USER_WORKER | PF_IO_WORKER) != 0 {
            return Accessor::OwnerKernel;
        }
        match ev.data {
            // exceptions:page_fault_kernel fires only for a kernel-mode fault;
            // its fault_flags are the x86 error code.
            Data::KernelFault(_) => Accessor::OwnerKernel,
            _ if f.fault_flags & fault_flag::USER != 0 => Accessor::OwnerUser,
            _ => Accessor::OwnerKernel,
        }
    }
}

/// Per accessor: faults, and those of each verdict class.
#[derive(Clone, Copy, Debug, Default)]
struct ByAccessor {
    faults: u64,
    refused: u64,
    handled: u64,
    legal: u64,
    unknown: u64,
    /// The first fault of the class that decides the verdict is looked up
    /// from these: (pid, comm) of the first fault of each class.
    first: [Option<(u32, [u8; 16])>; 4],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Sigbus,
    OtherError,
    Handled,
    /// Handled, but the fault began before `MMF_UNSTABLE` was set: its
    /// stability check may have passed before the reaper started (legal).
    HandledRaced,
    /// Handled on a `VM_SHARED`, `VM_HUGETLB` or `VM_PFNMAP` mapping, which
    /// `__oom_reap_task_mm` does not zap: the page still holds real data (legal).
    HandledShared,
    Retry,
    NoPage,
    Unknown,
}

fn outcome(f: &Fault) -> Outcome {
    match f.result() {
        None => Outcome::Unknown,
        Some(r) if r & vm_fault::SIGBUS != 0 => Outcome::Sigbus,
        Some(r) if r & vm_fault::ERROR != 0 => Outcome::OtherError,
        Some(r) if r & vm_fault::RETRY != 0 => Outcome::Retry,
        Some(r) if r & vm_fault::NOPAGE != 0 => Outcome::NoPage,
        Some(_) if f.vm_flags & (VM_SHARED | VM_NOT_REAPED) != 0 => Outcome::HandledShared,
        Some(_) if f.unstable_at_entry() == Some(false) => Outcome::HandledRaced,
        Some(_) => Outcome::Handled,
    }
}

#[derive(Clone, Debug)]
struct FaultWindow {
    w: Window,
    sigbus: u64,
    other_error: u64,
    handled: u64,
    raced: u64,
    shared: u64,
    retry: u64,
    nopage: u64,
    unknown: u64,
    by: [ByAccessor; 4],
    /// The first fault that decided the verdict class, for the details.
    /// (address, vm_fault_t, vm_flags) of the first handled fault.
    first_handled: Option<(u64, u32, u64)>,
}

pub(crate) struct State {
    key: MmKey,
    victims: Vec<Noted>,
    /// The first event showing the reaper started (or MMF_UNSTABLE set).
    unstable_since: Option<Noted>,
    kthread_users: Vec<Noted>,
    /// A `reap_end` of this generation was seen: the reaper has unmapped
    /// every VMA it reaps.
    reap_ended: bool,
    window: Option<FaultWindow>,
    taint: Taint,
}

/// Whether the event's own `mm_flags` show `MMF_UNSTABLE`.
pub(crate) fn shows_unstable(ev: &Event) -> bool {
    flags_of(ev).is_some_and(|f| f & UNSTABLE_BIT != 0)
}

fn flags_of(ev: &Event) -> Option<u64> {
    if ev.hdr_flags & hdr::READ_ERROR != 0 {
        return None;
    }
    let f = match &ev.data {
        Data::MarkVictim(p) => p.mm_flags,
        Data::ReapStart(p) | Data::ReapEnd(p) | Data::ReapSkip(p) => p.mm_flags,
        Data::ExitMmapStart(p)
        | Data::ExitMmapEnd(p)
        | Data::MmDrop(p)
        | Data::KthreadUseMm(p)
        | Data::KthreadUnuseMm(p) => p.mm_flags,
        Data::Fault(p) | Data::KernelFault(p) => p.mm_flags,
        _ => return None,
    };
    // A zero flag word is not a real mm's flags (the dumpable bits are set on
    // every live mm): treat it as unread.
    (f != 0).then_some(f)
}

impl State {
    pub(crate) fn new(key: MmKey) -> Self {
        State {
            key,
            victims: Vec::new(),
            unstable_since: None,
            kthread_users: Vec::new(),
            reap_ended: false,
            window: None,
            taint: Taint::for_key(key),
        }
    }

    pub(crate) fn open_windows(&self) -> u64 {
        u64::from(self.window.is_some())
    }

    pub(crate) fn on_loss(&mut self, note: &str) {
        if let Some(w) = &mut self.window {
            w.w.lose(note);
        }
        // The unstable state itself is a fact of the generation, not a bracket:
        // once seen it stays true, so loss only matters to open windows.
    }

    /// Any event carrying this mm's flags may show `MMF_UNSTABLE`.
    pub(crate) fn observe_flags(&mut self, ev: &Event, ctx: &Ctx<'_>) {
        if self.unstable_since.is_none() && flags_of(ev).is_some_and(|f| f & UNSTABLE_BIT != 0) {
            self.unstable_since = Some(ctx.note(ev));
        }
    }

    pub(crate) fn on_event(&mut self, ev: &Event, ctx: &mut Ctx<'_>) {
        match &ev.data {
            Data::MarkVictim(_) => {
                if self.victims.len() < 2 {
                    self.victims.push(ctx.note(ev));
                }
                self.observe_flags(ev, ctx);
            }
            Data::ReapStart(_)
                // `__oom_reap_task_mm` sets MMF_UNSTABLE as its first action.
                if self.unstable_since.is_none() => {
                    self.unstable_since = Some(ctx.note(ev));
                }
            // Only a complete reap (1), or one whose result the rung cannot
            // see (-1), zapped every VMA it reaps; 0 = a VMA was skipped (its
            // mmu notifier would block) and the reaper tries again.
            Data::ReapEnd(r) if r.ret != 0 => self.reap_ended = true,
            Data::KthreadUseMm(_) => {
                if self.kthread_users.len() < 4 {
                    self.kthread_users.push(ctx.note(ev));
                }
                self.observe_flags(ev, ctx);
                if let Some(w) = &mut self.window {
                    w.w.push(ctx.note(ev));
                }
            }
            Data::KthreadUnuseMm(_) => {
                self.observe_flags(ev, ctx);
                if let Some(w) = &mut self.window {
                    w.w.push(ctx.note(ev));
                }
            }
            Data::Fault(f) | Data::KernelFault(f) => {
                let flags = flags_of(ev);
                let unstable = match flags {
                    Some(fl) => fl & UNSTABLE_BIT != 0,
                    None => self.unstable_since.is_some(),
                };
                self.observe_flags(ev, ctx);
                if !unstable {
                    return;
                }
                let acc = Accessor::of(ev, f);
                let mut out = outcome(f);
                if out == Outcome::Handled && !self.reap_ended {
                    // Until the reaper has finished, a fault by any accessor
                    // may hit a PTE it has not zapped yet and be handled
                    // without instantiating a page from nothing: a present
                    // PTE never reaches check_stable_address_space() (a
                    // write to a zero-page or COW PTE goes through
                    // wp_page_copy(), which has no check). Recorded on real
                    // 6.12 guests: an exiting thread's handled write at an
                    // address the reaper unmapped 50 ms later, and a vhost
                    // worker's handled fault while the reaper, slowed by a
                    // stress-ng load, was still zapping (the soak). Legal.
                    out = Outcome::HandledRaced;
                }
                let w = self.window(ctx, ev.pid);
                w.w.push(ctx.note(ev));
                let by = &mut w.by[acc.index()];
                by.faults += 1;
                let class = match out {
                    Outcome::Sigbus | Outcome::OtherError => Some((0, &mut by.refused)),
                    Outcome::Handled => Some((1, &mut by.handled)),
                    Outcome::HandledRaced | Outcome::HandledShared => Some((2, &mut by.legal)),
                    Outcome::Unknown => Some((3, &mut by.unknown)),
                    Outcome::Retry | Outcome::NoPage => None,
                };
                if let Some((i, n)) = class {
                    *n += 1;
                    by.first[i].get_or_insert((ev.pid, ev.comm));
                }
                match out {
                    Outcome::Sigbus => w.sigbus += 1,
                    Outcome::OtherError => w.other_error += 1,
                    Outcome::Handled => {
                        w.handled += 1;
                        if w.first_handled.is_none() {
                            w.first_handled = Some((f.address, f.result().unwrap_or(0), f.vm_flags));
                        }
                    }
                    Outcome::HandledRaced => w.raced += 1,
                    Outcome::HandledShared => w.shared += 1,
                    Outcome::Retry => w.retry += 1,
                    Outcome::NoPage => w.nopage += 1,
                    Outcome::Unknown => w.unknown += 1,
                }
            }
            _ => {}
        }
        let open = self.window.is_some();
        self.taint.settle(open);
    }

    fn window(&mut self, ctx: &Ctx<'_>, pid: u32) -> &mut FaultWindow {
        let (victims, unstable_since, kthread_users, taint) = (
            &self.victims,
            &self.unstable_since,
            &self.kthread_users,
            &self.taint,
        );
        self.window.get_or_insert_with(|| {
            let mut w = Window::new(ctx, taint);
            w.evidence.extend(
                victims
                    .iter()
                    .chain(unstable_since.iter())
                    .chain(kthread_users.iter().filter(|n| n.ev.pid == pid)),
            );
            FaultWindow {
                w,
                sigbus: 0,
                other_error: 0,
                handled: 0,
                raced: 0,
                shared: 0,
                retry: 0,
                nopage: 0,
                unknown: 0,
                by: [ByAccessor::default(); 4],
                first_handled: None,
            }
        })
    }

    pub(crate) fn end(&mut self, close: Close, ctx: &mut Ctx<'_>) {
        let Some(w) = self.window.take() else {
            return;
        };
        // The class that decides the verdict (as below): its accessors name
        // who made the access.
        let class = if w.handled > 0 {
            1
        } else if w.unknown > 0 {
            3
        } else if w.sigbus + w.other_error == 0 && w.raced + w.shared > 0 {
            2
        } else {
            0
        };
        let count = |b: &ByAccessor| match class {
            0 => b.refused,
            1 => b.handled,
            2 => b.legal,
            _ => b.unknown,
        };
        let deciding: Vec<Accessor> = Accessor::ALL
            .into_iter()
            .filter(|a| count(&w.by[a.index()]) > 0)
            .collect();
        let first_task = deciding
            .iter()
            .find_map(|a| w.by[a.index()].first[class])
            .map(|(pid, comm)| format!("{pid} ({})", crate::event::c_str(&comm)));
        let mut who = deciding
            .iter()
            .map(|a| a.describe())
            .collect::<Vec<_>>()
            .join(" and ");
        if who.is_empty() {
            who = "a task".to_owned();
        }
        if let Some(t) = &first_task {
            who = format!("{who}, first task {t}");
        }
        let whom = {
            let mut c = who.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        };
        let counted = format!(
            "{} fault(s): {} SIGBUS, {} other error, {} handled without error, {} handled \
             while the reaper was running, {} handled on a shared mapping, {} result unknown",
            w.sigbus
                + w.other_error
                + w.handled
                + w.raced
                + w.shared
                + w.unknown
                + w.retry
                + w.nopage,
            w.sigbus,
            w.other_error,
            w.handled,
            w.raced,
            w.shared,
            w.unknown
        );
        let (grade, result, explanation) = if w.handled > 0 {
            let (addr, ret, _) = w.first_handled.unwrap_or((0, 0, 0));
            (
                Grade::Violation,
                format!("handled (vm_fault_t {ret:#x}, no error bit)"),
                format!(
                    "A fault by {who} at {addr:#x} on this mm after the OOM reaper set \
                     MMF_UNSTABLE returned without VM_FAULT_ERROR: check_stable_address_space \
                     should have turned it into SIGBUS, so reaped memory may have been \
                     re-instantiated as zeros ({counted})."
                ),
            )
        } else if w.unknown > 0 {
            (
                Grade::Uncertain,
                "unknown (tracepoint rung)".to_owned(),
                format!(
                    "{whom} faulted on this mm after the OOM reaper set MMF_UNSTABLE; the \
                     tracepoint rung does not see the fault's result, so whether the kernel \
                     refused it with SIGBUS cannot be told ({counted})."
                ),
            )
        } else if w.shared > 0 && w.raced == 0 && w.sigbus + w.other_error == 0 {
            (
                Grade::NearMissObserved,
                "handled on a shared mapping".to_owned(),
                format!(
                    "{whom} faulted on this mm after the OOM reaper set MMF_UNSTABLE, on a \
                     VM_SHARED mapping that __oom_reap_task_mm does not unmap: the page \
                     still holds real data; legal ({counted})."
                ),
            )
        } else if w.raced + w.shared > 0 && w.sigbus + w.other_error == 0 {
            (
                Grade::NearMissObserved,
                "handled while the reaper was running".to_owned(),
                format!(
                    "{whom} faulted on this mm while the OOM reaper was running: the fault \
                     began before MMF_UNSTABLE was set (its stability check could pass \
                     before the reaper started), or came before the reaper's last complete \
                     pass and may have hit a PTE not zapped yet (a present PTE never reaches \
                     check_stable_address_space); the page held real data; legal ({counted})."
                ),
            )
        } else if w.sigbus + w.other_error > 0 {
            (
                Grade::NearMissObserved,
                if w.other_error == 0 {
                    "sigbus".to_owned()
                } else {
                    "error".to_owned()
                },
                format!(
                    "{whom} faulted on this mm after the OOM reaper set MMF_UNSTABLE and the \
                     kernel refused the fault (VM_FAULT_SIGBUS from \
                     check_stable_address_space): the protection held ({counted})."
                ),
            )
        } else {
            // Only retried or driver-handled faults: no verdict.
            ctx.stats.windows_without_verdict += 1;
            return;
        };
        let mut d = details([
            ("fault_result", Value::from(result)),
            ("sigbus_count", Value::from(w.sigbus)),
            ("error_count", Value::from(w.other_error)),
            ("handled_count", Value::from(w.handled)),
            ("handled_during_flag_set_count", Value::from(w.raced)),
            ("handled_shared_count", Value::from(w.shared)),
            ("unknown_count", Value::from(w.unknown)),
            ("retry_count", Value::from(w.retry)),
            ("nopage_count", Value::from(w.nopage)),
            (
                "accessor",
                Value::from(deciding.iter().map(|a| a.name()).collect::<Vec<_>>()),
            ),
            ("kthread_faults", Value::from(w.by[0].faults)),
            ("remote_faults", Value::from(w.by[1].faults)),
            ("owner_kernel_faults", Value::from(w.by[2].faults)),
            ("owner_user_faults", Value::from(w.by[3].faults)),
        ]);
        if let Some(t) = first_task {
            d.insert("first_task".into(), Value::from(t));
        }
        if let Some((addr, _, vm_flags)) = w.first_handled {
            d.insert("first_handled_address".into(), hex(addr));
            if vm_flags == 0 {
                d.insert(
                    "caveat".into(),
                    Value::from(
                        "the fault record carries no VMA flags: a handled fault on a VM_SHARED \
                         mapping (which the reaper skips) or on a present PTE would look the same",
                    ),
                );
            }
        }
        let verdict = Verdict::new(KIND, self.key, grade, explanation, d, close);
        emit(ctx, w.w, verdict);
    }
}

impl MmRule for State {
    const RULE: FindingKind = KIND;
    mm_rule_common!();
    reuse_keeping!(victims, kthread_users);
    /// The reaper's brackets only matter once the mm is seen unstable (to
    /// learn that `MMF_UNSTABLE` is set, for faults whose own flags cannot be
    /// read). A fault, or a `kthread_unuse_mm`, on a generation not known to
    /// be unstable changes nothing unless its own flags show the bit: only
    /// victims, reaper starts and kernel threads using the mm are kept
    /// before that.
    fn wants(ev: &Event, _: &Globals) -> bool {
        match ev.data {
            Data::MarkVictim(_) | Data::ReapStart(_) | Data::KthreadUseMm(_) => true,
            _ => shows_unstable(ev),
        }
    }
    fn on_event(&mut self, ev: &Event, _: &mut Globals, ctx: &mut Ctx<'_>) {
        State::on_event(self, ev, ctx);
    }
    fn end(&mut self, close: Close, _: Option<&Event>, _: &mut Globals, ctx: &mut Ctx<'_>) {
        State::end(self, close, ctx);
    }
}

/// What this rule can see under the hook plan.
pub(crate) fn coverage(hooks: &[HookStatus]) -> RuleCoverage {
    let mut b = Builder::new(FindingKind::UnstableMmFault);
    match seen(hooks, HookId::HandleMmFault) {
        Seen::Unavailable => {
            b.missing(HookId::HandleMmFault);
            b.disable("handle_mm_fault is unavailable: faults are invisible");
        }
        Seen::Tracepoint => b.degrade(
            "handle_mm_fault is on the tracepoint rung (exceptions:page_fault_kernel): \
             the fault's result is invisible (findings are `uncertain`) and remote \
             (GUP, /proc/PID/mem) faults are not seen",
        ),
        Seen::Function => {}
    }
    if seen(hooks, HookId::KthreadUseMm) == Seen::Unavailable {
        // Evidence only.
        b.missing(HookId::KthreadUseMm);
    }
    if seen(hooks, HookId::OomReap) == Seen::Unavailable
        && seen(hooks, HookId::MarkVictim) == Seen::Unavailable
    {
        b.missing(HookId::OomReap);
        b.missing(HookId::MarkVictim);
        b.degrade(
            "neither oom_reap nor mark_victim is attached: a fault whose mm flags could not \
             be read cannot be placed after the reaper started",
        );
    }
    b.build()
}
