//! `oxvs-agent`: argument parsing only; the commands live in `cli`.

#![forbid(unsafe_code)]

mod cli;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match cli::run(&args) {
        Ok(out) => print!("{out}"),
        Err(e) => {
            eprintln!("oxvs-agent: {e}");
            std::process::exit(2);
        }
    }
}
