//! What a finding's picture shows, computed from its evidence: one lane per
//! task (with its role), the brackets each task ran, the race window, the
//! deciding event and the order that decides the verdict.
//!
//! The detector reports the verdict, its pattern and the evidence in per-mm
//! sequence order; which of those events *decided* it is read back here from
//! the pattern and the rule's definition (docs/detection.md). When no event
//! matches, the picture says so instead of guessing.

use super::adapter::{Bracket, Ev, FindingView, Outcome, Shape};

/// A lane: one task of the finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lane {
    pub pid: u32,
    pub tgid: u32,
    pub comm: String,
    pub kthread: bool,
    /// What the task does in this race (`OOM reaper`, `exiting owner`, …).
    pub role: String,
}

/// A bracket drawn in a lane, between two evidence columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bar {
    pub lane: usize,
    pub bracket: Bracket,
    /// Column of the opening event, `None` if it is not in the evidence.
    pub from: Option<usize>,
    /// Column of the closing event, `None` if it is not in the evidence.
    pub to: Option<usize>,
    /// Columns the bar covers: a missing end reaches to the nearest place
    /// where records are missing from the evidence (or the edge).
    pub span: (usize, usize),
}

/// Whether records of the mm are missing between columns `i` and `i + 1`.
fn gap_after(evs: &[Ev], i: usize) -> bool {
    match (evs.get(i), evs.get(i + 1)) {
        (Some(a), Some(b)) => a.mm_gen != b.mm_gen || b.seq > a.seq + 1,
        _ => true,
    }
}

/// The shaded race window, in evidence columns (inclusive).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub from: usize,
    pub to: usize,
    pub label: String,
}

#[derive(Clone, Debug)]
pub struct Story {
    pub lanes: Vec<Lane>,
    /// Lane of each evidence event (same index as `FindingView::evidence`).
    pub lane_of: Vec<usize>,
    pub bars: Vec<Bar>,
    pub window: Option<Window>,
    /// Column of the event that decided the verdict.
    pub deciding: Option<usize>,
    /// Why that event decides (one phrase).
    pub deciding_why: String,
    /// The deciding order: columns, each happening before the next.
    pub order: Vec<usize>,
}

/// Lane of an event: a `mark_victim` stands for its victim (as in the
/// finding's `tasks`), every other event for the task that ran it.
fn lane_pid(e: &Ev) -> u32 {
    e.victim.as_ref().map_or(e.pid, |v| v.0)
}

fn roles(pid: u32, evs: &[Ev]) -> String {
    let mut roles: Vec<&str> = Vec::new();
    let mut add = |r: &'static str| {
        if !roles.contains(&r) {
            roles.push(r);
        }
    };
    for e in evs {
        if e.victim.as_ref().is_some_and(|v| v.0 == pid) {
            add("OOM victim");
            continue;
        }
        if e.pid != pid {
            continue;
        }
        match e.kind {
            "reap_start" | "reap_end" | "reap_skip" | "reaper_unmap_start" | "reaper_unmap_end" => {
                add(if e.kthread {
                    "OOM reaper"
                } else {
                    "reaper (process_mrelease)"
                });
            }
            "mrelease_enter" | "mrelease_exit" => add("process_mrelease caller"),
            "exit_mmap_start" | "exit_mmap_end" | "unmap_vmas_start" | "unmap_vmas_end"
            | "mmdrop" => add("exiting owner"),
            "kthread_use_mm" | "kthread_unuse_mm" => add("kernel thread (kthread_use_mm)"),
            "fault" | "kernel_fault" => add(if e.kthread {
                "kernel thread faulting"
            } else if e.remote {
                "remote access (GUP, /proc/PID/mem)"
            } else {
                "owner faulting"
            }),
            "uffd_copy" | "uffd_copy_done" | "mfill_start" | "mfill_end" => {
                add("uffd monitor (UFFDIO_COPY)")
            }
            "uffd_change_begin" | "uffd_change_end" => add("mm changer (non-cooperative event)"),
            "fork" => add("forking task"),
            "migrate_start"
            | "migrate_end"
            | "migration_skip_temp_stack"
            | "migration_entry_in_temp_stack"
            | "migration_pte_removed" => add("migrator"),
            "migration_entry_wait" => add("waiting on a migration entry"),
            "exec" | "exec_mm_switch" | "stack_move_start" | "stack_move_end" => {
                add("exec'ing task")
            }
            _ => {}
        }
    }
    if roles.is_empty() {
        "task".to_owned()
    } else {
        roles.join(" · ")
    }
}

fn lanes(f: &FindingView) -> (Vec<Lane>, Vec<usize>) {
    let mut lanes: Vec<Lane> = f
        .tasks
        .iter()
        .map(|t| Lane {
            pid: t.pid,
            tgid: t.tgid,
            comm: t.comm.clone(),
            kthread: t.kthread,
            role: String::new(),
        })
        .collect();
    let mut lane_of = Vec::with_capacity(f.evidence.len());
    for e in &f.evidence {
        let pid = lane_pid(e);
        let idx = match lanes.iter().position(|l| l.pid == pid) {
            Some(i) => i,
            None => {
                // Not in `tasks` (cannot happen for findings the detector
                // made; a hand-written file may): a lane of its own.
                let (tgid, comm, kthread) = match &e.victim {
                    Some(v) => (v.1, v.2.clone(), false),
                    None => (e.tgid, e.comm.clone(), e.kthread),
                };
                lanes.push(Lane {
                    pid,
                    tgid,
                    comm,
                    kthread,
                    role: String::new(),
                });
                lanes.len() - 1
            }
        };
        lane_of.push(idx);
    }
    for l in &mut lanes {
        l.role = roles(l.pid, &f.evidence);
    }
    (lanes, lane_of)
}

fn bars(evs: &[Ev], lane_of: &[usize]) -> Vec<Bar> {
    let mut bars: Vec<Bar> = Vec::new();
    // Open bars per (lane, bracket): innermost last.
    let mut open: Vec<(usize, Bracket, usize)> = Vec::new();
    for (i, e) in evs.iter().enumerate() {
        let lane = lane_of[i];
        match e.shape {
            Shape::Open(b) => open.push((lane, b, i)),
            Shape::Close(b) => match open.iter().rposition(|(l, x, _)| *l == lane && *x == b) {
                Some(k) => {
                    let (_, _, from) = open.remove(k);
                    bars.push(Bar {
                        lane,
                        bracket: b,
                        from: Some(from),
                        to: Some(i),
                        span: (from, i),
                    });
                }
                None => {
                    let start = (0..i)
                        .rev()
                        .find(|&j| gap_after(evs, j))
                        .map_or(0, |j| j + 1);
                    bars.push(Bar {
                        lane,
                        bracket: b,
                        from: None,
                        to: Some(i),
                        span: (start, i),
                    });
                }
            },
            Shape::Point => {}
        }
    }
    for (lane, b, from) in open {
        let end = (from..evs.len())
            .find(|&j| gap_after(evs, j))
            .unwrap_or(evs.len().saturating_sub(1));
        bars.push(Bar {
            lane,
            bracket: b,
            from: Some(from),
            to: None,
            span: (from, end),
        });
    }
    bars.sort_by_key(|b| (b.lane, b.from, b.to));
    bars
}

fn find(evs: &[Ev], from: usize, pred: impl Fn(&Ev) -> bool) -> Option<usize> {
    evs.iter()
        .enumerate()
        .skip(from)
        .find(|(_, e)| pred(e))
        .map(|(i, _)| i)
}

/// Whether a bracket of one of these kinds is open after each event. Each
/// kind is counted on its own; a close whose open is not in the evidence
/// (omitted) does not close the others.
fn open_counts(evs: &[Ev], which: &[Bracket]) -> Vec<i64> {
    let mut n = vec![0i64; which.len()];
    evs.iter()
        .map(|e| {
            match e.shape {
                Shape::Open(b) => {
                    if let Some(k) = which.iter().position(|x| *x == b) {
                        n[k] += 1;
                    }
                }
                Shape::Close(b) => {
                    if let Some(k) = which.iter().position(|x| *x == b) {
                        n[k] = (n[k] - 1).max(0);
                    }
                }
                Shape::Point => {}
            }
            n.iter().sum()
        })
        .collect()
}

/// Overlap of reaper and exit brackets: the first column where both are
/// open, and the first column after it where one of them closes.
fn overlap(evs: &[Ev], a: &[Bracket], b: &[Bracket]) -> Option<(usize, usize)> {
    let ca = open_counts(evs, a);
    let cb = open_counts(evs, b);
    let start = (0..evs.len()).find(|&i| ca[i] > 0 && cb[i] > 0)?;
    let end = (start + 1..evs.len())
        .find(|&i| ca[i] == 0 || cb[i] == 0)
        .unwrap_or(evs.len() - 1);
    Some((start, end))
}

struct Decision {
    window: Option<(usize, usize, String)>,
    deciding: Option<usize>,
    why: String,
    /// Extra columns of the deciding order (besides window ends and the
    /// deciding event).
    via: Vec<usize>,
}

fn reaper(f: &FindingView) -> Decision {
    let evs = &f.evidence;
    let reap = [Bracket::Reap, Bracket::ReaperUnmap];
    let exit = [Bracket::ExitMmap];
    let last = evs.len().saturating_sub(1);
    let pattern = f.detail_str("pattern").unwrap_or("");
    let kind_at = |k: &str, from: usize| find(evs, from, |e| e.kind == k);
    match pattern {
        "exit_mmap_end_inside_reap" | "mmdrop_inside_reap" => {
            let k = if pattern == "mmdrop_inside_reap" {
                "mmdrop"
            } else {
                "exit_mmap_end"
            };
            let reaps = open_counts(evs, &reap);
            let deciding = (0..evs.len()).find(|&i| evs[i].kind == k && i > 0 && reaps[i - 1] > 0);
            let start = kind_at("reap_start", 0).or_else(|| kind_at("reaper_unmap_start", 0));
            Decision {
                window: match (start, deciding) {
                    (Some(s), Some(d)) => Some((s, d, "reaper bracket open".to_owned())),
                    _ => None,
                },
                deciding,
                why: format!("{k} while the reaper is inside __oom_reap_task_mm"),
                via: Vec::new(),
            }
        }
        "reap_after_exit_mmap_end" => {
            let end = kind_at("exit_mmap_end", 0);
            let deciding = end.and_then(|e| {
                find(evs, e + 1, |x| {
                    matches!(x.kind, "reap_start" | "reaper_unmap_start")
                })
            });
            Decision {
                window: end
                    .zip(deciding)
                    .map(|(e, d)| (e, d, "after exit_mmap ended (MMF_OOM_SKIP set)".to_owned())),
                deciding,
                why: "the reaper starts after exit_mmap has finished".to_owned(),
                via: Vec::new(),
            }
        }
        _ => {
            // overlap, overlap_unmap_vmas
            let ov = overlap(evs, &reap, &exit);
            let deep = if pattern == "overlap_unmap_vmas" || f.detail_bool("overlapped_unmap_vmas")
            {
                overlap(evs, &reap, &[Bracket::UnmapVmas])
            } else {
                None
            };
            let deciding = deep.or(ov).map(|(s, _)| s);
            Decision {
                window: ov.map(|(s, e)| {
                    (
                        s,
                        e.min(last),
                        "reaper and exit_mmap both running".to_owned(),
                    )
                }),
                deciding,
                why: if deep.is_some() {
                    "the reaper and exit_mmap's unmap_vmas are inside their brackets at once"
                        .to_owned()
                } else {
                    "the second bracket starts while the first is still open".to_owned()
                },
                via: Vec::new(),
            }
        }
    }
}

fn unstable(f: &FindingView) -> Decision {
    let evs = &f.evidence;
    let opened = find(evs, 0, |e| e.kind == "reap_start" || e.unstable);
    // Every accessor is judged (kthread, remote, the owner's threads).
    let qualifying = |e: &Ev| matches!(e.kind, "fault" | "kernel_fault");
    let result = f.detail_str("fault_result").unwrap_or("");
    let want: &[Outcome] = if result.starts_with("handled") {
        &[Outcome::Handled]
    } else if result.starts_with("sigbus") {
        &[Outcome::Sigbus]
    } else if result.starts_with("error") {
        &[Outcome::FaultError]
    } else if result.starts_with("unknown") {
        &[Outcome::Unknown]
    } else {
        &[]
    };
    let deciding = find(evs, 0, |e| qualifying(e) && want.contains(&e.outcome))
        .or_else(|| find(evs, 0, qualifying));
    Decision {
        window: opened.map(|o| {
            (
                o,
                evs.len().saturating_sub(1),
                "MMF_UNSTABLE set (mm reaped)".to_owned(),
            )
        }),
        deciding,
        why: format!(
            "a fault on the unstable mm by {}: {result}",
            f.detail_str("first_task").unwrap_or("a task")
        ),
        via: Vec::new(),
    }
}

fn migration(f: &FindingView) -> Decision {
    let evs = &f.evidence;
    let start = find(evs, 0, |e| {
        matches!(e.kind, "stack_move_start" | "exec_mm_switch")
    });
    let end = start.and_then(|s| find(evs, s + 1, |e| matches!(e.kind, "stack_move_end" | "exec")));
    let pattern = f.detail_str("pattern").unwrap_or("");
    let deciding = match pattern {
        "migration_entry_in_temp_stack" => find(evs, 0, |e| e.kind == pattern),
        "migration_skip_temp_stack" => find(evs, 0, |e| e.kind == pattern),
        "migration_pte_removed_in_window" => find(evs, 0, |e| e.kind == "migration_pte_removed"),
        "repeated_migration_entry_wait" => {
            evs.iter().rposition(|e| e.kind == "migration_entry_wait")
        }
        _ => None,
    };
    Decision {
        window: start.map(|s| {
            (
                s,
                end.unwrap_or(evs.len().saturating_sub(1)),
                "exec moving its temporary stack".to_owned(),
            )
        }),
        deciding,
        why: match pattern {
            "migration_entry_in_temp_stack" => {
                "a migration entry installed in a VMA still flagged VM_STACK_INCOMPLETE_SETUP"
            }
            "migration_skip_temp_stack" => "the rmap walk met the temporary stack and skipped it",
            "migration_pte_removed_in_window" => {
                "the migration's undo walk touched the moving stack"
            }
            _ => "the same task waited on the same migration entry again",
        }
        .to_owned(),
        via: Vec::new(),
    }
}

fn uffd(f: &FindingView) -> Decision {
    let evs = &f.evidence;
    let last = evs.len().saturating_sub(1);
    let pattern = f.detail_str("pattern").unwrap_or("");
    let change_window = f.detail_str("window") == Some("uffd_change_begin..uffd_change_end");
    let window = if change_window {
        let counts = open_counts(evs, &[Bracket::UffdChange]);
        find(evs, 0, |e| e.kind == "uffd_change_begin").map(|s| {
            let e = (s + 1..evs.len()).find(|&i| counts[i] == 0).unwrap_or(last);
            (s, e, "mmap_changing raised".to_owned())
        })
    } else {
        find(evs, 0, |e| e.outcome == Outcome::Eagain)
            .map(|s| (s, last, "mmap_changing seen raised (-EAGAIN)".to_owned()))
    };
    let wstart = window.as_ref().map_or(0, |w| w.0);
    // The mfill_start of the copy that ended at column `end`.
    let start_of = |end: usize| {
        (0..end)
            .rev()
            .find(|&i| evs[i].kind == "mfill_start" && evs[i].pid == evs[end].pid)
    };
    let (deciding, why, via) = match pattern {
        "copy_inside_window" => {
            let d = find(evs, wstart, |e| {
                e.kind == "mfill_end" && e.outcome == Outcome::Copied
            })
            .filter(|&d| start_of(d).is_some_and(|s| s > wstart));
            (
                d,
                "a copy that began after mmap_changing was raised succeeded",
                d.and_then(start_of).into_iter().collect(),
            )
        }
        "copy_overlapping_change" => {
            let d = find(evs, wstart, |e| {
                e.kind == "mfill_end" && e.outcome == Outcome::Copied
            });
            (
                d,
                "a copy that passed its check before the change finished after it",
                d.and_then(start_of).into_iter().collect(),
            )
        }
        _ => (
            find(evs, 0, |e| e.outcome == Outcome::Eagain),
            "UFFDIO_COPY refused with -EAGAIN while mmap_changing was raised",
            Vec::new(),
        ),
    };
    Decision {
        window,
        deciding,
        why: why.to_owned(),
        via,
    }
}

pub fn tell(f: &FindingView) -> Story {
    let (lanes, lane_of) = lanes(f);
    let bars = bars(&f.evidence, &lane_of);
    let d = if f.evidence.is_empty() {
        Decision {
            window: None,
            deciding: None,
            why: String::new(),
            via: Vec::new(),
        }
    } else {
        match f.rule {
            "reaper_exit_overlap" => reaper(f),
            "unstable_mm_fault" => unstable(f),
            "leftover_migration_entry" => migration(f),
            "uffd_copy_vs_mm_change" => uffd(f),
            _ => Decision {
                window: None,
                deciding: None,
                why: String::new(),
                via: Vec::new(),
            },
        }
    };
    let window = d.window.map(|(from, to, label)| Window { from, to, label });
    let mut order: Vec<usize> = Vec::new();
    if let Some(dec) = d.deciding {
        if let Some(w) = &window {
            order.push(w.from);
        }
        order.extend(&d.via);
        order.push(dec);
        if let Some(w) = &window
            && w.to > dec
        {
            order.push(w.to);
        }
        order.sort_unstable();
        order.dedup();
    }
    Story {
        lanes,
        lane_of,
        bars,
        window,
        deciding: d.deciding,
        deciding_why: d.why,
        order,
    }
}
