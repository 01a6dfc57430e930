//! The BPF ring-buffer record decoder: any bytes decode or are refused,
//! never a panic, and what decodes survives the trace-file round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use monitor_detector::{
    Event,
    tracefile::{Line, parse_line, to_line},
};

fuzz_target!(|data: &[u8]| {
    if let Ok(ev) = Event::decode(data) {
        let line = Line::Event(ev);
        let text = to_line(&line);
        assert_eq!(parse_line(&text).as_ref(), Ok(&line), "{text}");
    }
});
