//! The kernel BTF reader (`--btf FILE`): any bytes parse or are refused with
//! an error, and every query the loader makes answers, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor::{btf::Btf, btfcheck};
use monitor_common::config::Field;

fuzz_target!(|data: &[u8]| {
    let Ok(btf) = Btf::parse(data) else { return };
    for (_, path) in Field::PATHS {
        let _ = btf.field_offset(path);
    }
    for name in ["exit_mmap", "__oom_reap_task_mm", "mm_struct", "task_struct"] {
        let _ = btf.func_params(name);
        let _ = btf.tracepoint_proto(name);
        let _ = btf.struct_size(name);
    }
    let _ = btf.func_names().count();
    assert!(btfcheck::layout_differences(&btf, &btf).is_empty());
});
