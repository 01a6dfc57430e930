//! The metrics endpoint's request-head parser: any bytes from the network
//! give a method and a path within the head, or a status code to refuse them,
//! and a gzip yes or no from its `Accept-Encoding`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor::daemon::http::{accepts_gzip, head_end, parse_request_line};

fuzz_target!(|data: &[u8]| {
    let head = match head_end(data) {
        Some(end) => &data[..end],
        None => data,
    };
    let _ = accepts_gzip(head);
    match parse_request_line(head) {
        Ok((method, path)) => {
            assert!(method == "GET" || method == "HEAD", "{method}");
            assert!(path.starts_with('/'), "{path}");
        }
        Err(status) => assert!([400, 405, 505].contains(&status), "{status}"),
    }
});
