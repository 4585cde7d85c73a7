//! `oxvs-cni`: reads the `CNI_*` environment and the configuration on
//! stdin, runs the command (see the `cni` library) and prints its result or
//! error object on stdout.

#![forbid(unsafe_code)]

use std::io::{Read, Write};

fn main() {
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        let err = cni::error::CniError::new(
            cni::error::Code::Io,
            "cannot read the network configuration from stdin",
            e.to_string(),
        );
        println!("{}", err.to_json(cni::config::DEFAULT_VERSION));
        std::process::exit(1);
    }
    let out = cni::run(|k| std::env::var(k).ok(), &stdin);
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(out.stdout.as_bytes());
    let _ = o.flush();
    std::process::exit(out.status);
}
