//! `oxvsd --config node.toml`: the oxvs switch daemon. Parses arguments,
//! sets up logging and signals, and hands over to `datapath::daemon`.

use datapath::daemon::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

const USAGE: &str = "usage: oxvsd --config FILE\n\nRuns the oxvs switch described by FILE (TOML; see datapath/src/daemon/config.rs).\nSIGTERM or SIGINT stops it cleanly.";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut config = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" | "-c" => config = args.next().map(PathBuf::from),
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("oxvsd: unknown argument {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(path) = config else {
        eprintln!("oxvsd: --config FILE is required\n{USAGE}");
        return ExitCode::from(2);
    };
    let cfg = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("oxvsd: {e}");
            return ExitCode::from(2);
        }
    };
    let level = match cfg.switch.log.as_deref().unwrap_or("info") {
        "error" => tracing::Level::ERROR,
        "warn" => tracing::Level::WARN,
        "debug" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    let color = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(false)
        .with_ansi(color)
        .with_writer(std::io::stderr)
        .init();
    let shutdown = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, shutdown.clone()) {
            eprintln!("oxvsd: cannot handle signal {sig}: {e}");
            return ExitCode::from(1);
        }
    }
    tracing::info!(config = %path.display(), ports = cfg.ports.len(), "oxvsd starting");
    let runtime = datapath::daemon::open::RuntimeSizing::from_config(&cfg.switch);
    tracing::info!(
        fill = runtime.fill,
        umem_kib = runtime.umem_bytes() / 1024,
        "ports added at run time: fill ring and UMEM per queue"
    );
    let opener = datapath::daemon::open::opener(runtime);
    match datapath::daemon::run(cfg, opener, shutdown) {
        Ok(()) => {
            tracing::info!("oxvsd stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(1)
        }
    }
}
