//! Stamping BPF entry points from the catalogue.
//!
//! Every program is named by its catalogue row
//! (`monitor_common::catalogue::program::NAME`): the function name *is* the
//! program's symbol, its id comes from the row (a function without a row does
//! not compile), and a compile-time check holds its kind and hook to the row.
//! The stamped body counts the hit, binds `P` (the program's id) and reads
//! the arguments; the hook's own code is an ordinary function.
//!
//! * [`programs!`]: one program per line with its body (tracepoints, and
//!   function hooks whose entry and exit share state on both rungs).
//! * [`function!`]: the four programs of one kernel function (fentry, fexit,
//!   kprobe, kretprobe; any subset) from one typed argument struct. The entry
//!   handler gets the arguments and says whether the exit needs them; on the
//!   kprobe rung they are then kept in the hook's stash slot, and the
//!   kretprobe takes them back (the kprobe rung has no arguments at return).
//!   The fexit program reads them from its context.

/// One program per line: `KIND NAME(ctx) { body }`, KIND one of `tp_btf`,
/// `tracepoint`, `fentry`, `fexit`, `kprobe`, `kretprobe`. The body sees
/// `P`, the program's `ProbeId`, and returns nothing (the program returns 0).
macro_rules! programs {
    ($( $(#[$meta:meta])* $kind:ident $name:ident($ctx:ident) $body:block )*) => {$(
        $crate::stamp::program!($kind, $name, $ctx, [$(#[$meta])*], $body);
    )*};
}

/// One program of kind `$kind` (see [`programs!`]).
macro_rules! program {
    (@emit $attr:meta, $ctxty:ty, $pk:ident, $name:ident, $ctx:ident, [$($meta:tt)*], $body:block) => {
        $($meta)*
        #[$attr]
        pub fn $name($ctx: $ctxty) -> u32 {
            #[allow(dead_code, reason = "not every body names its program")]
            const P: monitor_common::catalogue::ProbeId = monitor_common::catalogue::program::$name;
            const _: () = assert!(
                P.kind() as u32 == monitor_common::catalogue::ProbeKind::$pk as u32,
                "the program's kind differs from its catalogue row"
            );
            $crate::emit::hit(P);
            $body;
            0
        }
    };
    (tp_btf, $($rest:tt)*) => { $crate::stamp::program!(@kind btf_tracepoint, BtfTracePointContext, TpBtf, $($rest)*); };
    (tracepoint, $($rest:tt)*) => { $crate::stamp::program!(@kind tracepoint, TracePointContext, Tracepoint, $($rest)*); };
    (fentry, $($rest:tt)*) => { $crate::stamp::program!(@kind fentry, FEntryContext, FEntry, $($rest)*); };
    (fexit, $($rest:tt)*) => { $crate::stamp::program!(@kind fexit, FExitContext, FExit, $($rest)*); };
    (kprobe, $($rest:tt)*) => { $crate::stamp::program!(@kind kprobe, ProbeContext, KProbe, $($rest)*); };
    (kretprobe, $($rest:tt)*) => { $crate::stamp::program!(@kind kretprobe, RetProbeContext, KRetProbe, $($rest)*); };
    (@kind $attr:ident, $ctxty:ident, $pk:ident, $name:ident, $ctx:ident, $meta:tt, $body:block) => {
        $crate::stamp::program!(@emit aya_ebpf::macros::$attr, aya_ebpf::programs::$ctxty,
            $pk, $name, $ctx, $meta, $body);
    };
}

/// Argument `n` of a kprobe (0 if the register cannot be read).
#[inline(always)]
pub fn karg(ctx: &aya_ebpf::programs::ProbeContext, n: usize) -> u64 {
    ctx.arg::<u64>(n).unwrap_or(0)
}

/// The programs of one kernel function from a typed argument struct:
///
/// ```text
/// function! {
///     /// int relocate_vma_down(struct vm_area_struct *vma, unsigned long shift)
///     StackMove: StackMoveArgs { vma: 0, shift: 1 } -> 2;
///     entry: fentry fentry_stack_move, kprobe kprobe_stack_move => stack_move_start;
///     exit: fexit fexit_stack_move, kretprobe kretprobe_stack_move => stack_move_end;
/// }
/// ```
///
/// `HOOK: Args { field: argument position, …; extra: initial value, … }`
/// declares the struct (all `u64`; the extra fields are filled by the entry
/// handler) and the hook whose stash slot keeps it; `-> N` is the position
/// of the return value for fexit (absent: the exit handler gets 0). Entry
/// handlers are `fn(ProbeId, &mut Args) -> bool` (true: the exit needs the
/// arguments), exit handlers `fn(ProbeId, &Args, ret: u64)`. `exit when COND:`
/// skips the kretprobe's stash lookup when COND is false (a hot function).
/// (Written `exit when { COND }:`.)
macro_rules! function {
    (
        $(#[$meta:meta])*
        $hook:ident: $args:ident $fields:tt $(-> $ret:literal)?;
        $(entry: $($ek:ident $ep:ident),+ => $entry:path;)?
        $(exit $(when $gate:block)?: $($xk:ident $xp:ident),+ => $exit:path;)?
    ) => {
        $crate::stamp::function!(@struct [$(#[$meta])*] $hook $args $fields);
        $crate::stamp::function!(@entries $args $fields [$($($ek $ep)+)?] [$($entry)?]);
        $crate::stamp::function!(@exits $args $fields [$($ret)?] [$($($gate)?)?]
            [$($($xk $xp)+)?] [$($exit)?]);
    };
    (@entries $args:ident $fields:tt [$($ek:ident $ep:ident)*] $entry:tt) => {
        $( $crate::stamp::function!(@entry $ek $ep $args $fields $entry); )*
    };
    (@exits $args:ident $fields:tt $ret:tt $gate:tt [$($xk:ident $xp:ident)*] $exit:tt) => {
        $( $crate::stamp::function!(@exit $xk $xp $args $fields $ret $gate $exit); )*
    };
    (@struct [$($meta:tt)*] $hook:ident $args:ident
        { $($f:ident: $pos:literal),* $(; $($x:ident = $d:expr),*)? }) => {
        $($meta)*
        #[repr(C)]
        #[derive(Clone, Copy)]
        pub struct $args {
            $(pub $f: u64,)*
            $($(pub $x: u64,)*)?
        }
        // SAFETY: only `u64` fields; the size is checked by `stash::put`.
        unsafe impl $crate::stash::Saved for $args {
            const HOOK: monitor_common::catalogue::HookId =
                monitor_common::catalogue::HookId::$hook;
        }
    };
    (@read $args:ident { $($f:ident: $pos:literal),* $(; $($x:ident = $d:expr),*)? }
        |$n:ident| $read:expr) => {
        $args {
            $($f: { let $n = $pos; $read },)*
            $($($x: $d,)*)?
        }
    };
    (@entry fentry $p:ident $args:ident $fields:tt [$entry:path]) => {
        $crate::stamp::programs! {
            fentry $p(ctx) {
                let _ = &ctx;
                let mut a = $crate::stamp::function!(@read $args $fields |n| ctx.arg::<u64>(n));
                const _: () = assert!(
                    P.hook() as u32 == <$args as $crate::stash::Saved>::HOOK as u32,
                    "the program serves another hook than its arguments' slot"
                );
                let _ = $entry(P, &mut a);
            }
        }
    };
    (@entry kprobe $p:ident $args:ident $fields:tt [$entry:path]) => {
        $crate::stamp::programs! {
            kprobe $p(ctx) {
                let _ = &ctx;
                let mut a = $crate::stamp::function!(@read $args $fields |n| $crate::stamp::karg(&ctx, n));
                const _: () = assert!(
                    P.hook() as u32 == <$args as $crate::stash::Saved>::HOOK as u32,
                    "the program serves another hook than its arguments' slot"
                );
                if $entry(P, &mut a) {
                    $crate::stash::put(&a);
                }
            }
        }
    };
    (@exit fexit $p:ident $args:ident $fields:tt [$($ret:literal)?] [$($gate:block)?] [$exit:path]) => {
        $crate::stamp::programs! {
            fexit $p(ctx) {
                let a = $crate::stamp::function!(@read $args $fields |n| ctx.arg::<u64>(n));
                const _: () = assert!(
                    P.hook() as u32 == <$args as $crate::stash::Saved>::HOOK as u32,
                    "the program serves another hook than its arguments' slot"
                );
                #[allow(unused_mut, unused_assignments, reason = "void functions have no return")]
                let mut ret = 0u64;
                $(ret = ctx.arg::<u64>($ret);)?
                $exit(P, &a, ret);
            }
        }
    };
    (@exit kretprobe $p:ident $args:ident $fields:tt $ret:tt [$($gate:block)?] [$exit:path]) => {
        $crate::stamp::programs! {
            kretprobe $p(ctx) {
                const _: () = assert!(
                    P.hook() as u32 == <$args as $crate::stash::Saved>::HOOK as u32,
                    "the program serves another hook than its arguments' slot"
                );
                $(if !$gate {
                    return 0;
                })?
                let s = $crate::stash::take::<$args>();
                if s.found {
                    $exit(P, &s.args, ctx.ret::<u64>());
                }
            }
        }
    };
}

pub(crate) use function;
pub(crate) use program;
pub(crate) use programs;
