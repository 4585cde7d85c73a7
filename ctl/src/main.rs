//! `oxvs-ctl`: the command-line tool of oxvs. Only hands the arguments to
//! the library ([`ctl::cmd`]) and prints what comes back.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match ctl::cmd::run(&args) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("oxvs-ctl: {e}");
            ExitCode::from(2)
        }
    }
}
