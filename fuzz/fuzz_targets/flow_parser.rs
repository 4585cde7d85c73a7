//! Any text as a flow file: the parser must return rules or an error with a
//! line and column inside the input, never panic; whatever it accepts must
//! print back to text that parses to the same rules.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match ctl::ofp::parse_flow_file(text, &()) {
        Ok(file) => {
            for (_, _, spec) in &file.flows {
                let line = ctl::ofp::format_flow_spec(spec, &());
                let again = ctl::ofp::parse_flow(&line, &())
                    .unwrap_or_else(|e| panic!("printed {line:?} does not parse: {e}"));
                assert_eq!(&again, spec, "round trip of {line:?}");
            }
        }
        Err(e) => {
            assert!(e.line >= 1 && e.line <= text.lines().count().max(1), "line {} out of range", e.line);
            assert!(e.column >= 1);
        }
    }
});
