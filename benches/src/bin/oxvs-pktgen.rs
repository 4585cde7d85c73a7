//! `oxvs-pktgen`: parses the command line, stops cleanly on SIGINT/SIGTERM
//! (the summary is still printed), runs the mode and emits its summary.
//! The work lives in `oxvs_benches::pktgen`.
//!
//! Exit status: 0 after a run, 1 when the port or namespace cannot be
//! opened, 2 for a bad command line.

#![forbid(unsafe_code)]

use oxvs_benches::pktgen::{args, report, rx, tx};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

fn main() -> ExitCode {
    let mode = match args::parse(std::env::args().skip(1)) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("oxvs-pktgen: {e}\n(oxvs-pktgen --help for usage)");
            return ExitCode::from(2);
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("oxvs-pktgen: cannot handle signal {sig}: {e}");
        }
    }
    let (result, json) = match &mode {
        args::Mode::Help => {
            print!("{}", args::HELP);
            return ExitCode::SUCCESS;
        }
        args::Mode::Tx(o) => (tx::run(o, &stop), &o.common.json),
        args::Mode::Rx(c) => (rx::run(c, false, &stop), &c.json),
        args::Mode::Reflect(c) => (rx::run(c, true, &stop), &c.json),
    };
    match result.and_then(|s| report::emit(&s, json.as_deref())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oxvs-pktgen: {e}");
            ExitCode::FAILURE
        }
    }
}
