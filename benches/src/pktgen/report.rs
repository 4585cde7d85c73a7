//! The JSON summary each mode ends with: one object on one line on stdout,
//! and the same text in `--json FILE`. The keys are an interface (the
//! benchmark scripts read them); new keys may be added, none renamed.

use serde_json::Value;
use std::path::Path;

/// Packets per second and megabits per second (frame bytes without FCS,
/// preamble or gap) over `seconds`; zeros for an empty interval.
pub fn rates(packets: u64, bytes: u64, seconds: f64) -> (f64, f64) {
    if seconds <= 0.0 {
        return (0.0, 0.0);
    }
    (packets as f64 / seconds, bytes as f64 * 8.0 / seconds / 1e6)
}

/// Rounds to three decimals, so summaries stay readable.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Prints `summary` on stdout and writes it to `file` if given.
pub fn emit(summary: &Value, file: Option<&Path>) -> Result<(), String> {
    let text = summary.to_string();
    println!("{text}");
    if let Some(path) = file {
        std::fs::write(path, format!("{text}\n"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(())
}
