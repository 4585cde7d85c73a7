//! Multi-line input in `ovs-ofctl add-flows` form: one flow per line, an
//! optional command word in front (`add`, `modify`, `delete_strict`, ...),
//! blank lines and `#` comments skipped, and `group_id=` lines holding group
//! definitions in `add-group` form so that one file can set up a bridge.
//!
//! The first bad line stops parsing and is reported with its own line number;
//! nothing partial is returned, so applying a file all-or-nothing is up to
//! the caller and never has to undo half a parse.

use super::error::ParseError;
use super::{flow, group, lexer, PortNames};
use flowtable::{FlowSpec, GroupSpec};

/// What a line of a flow file asks for (`ovs-ofctl(8)`, `add-flows`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowCommand {
    /// `add` (the default): install or replace the rule.
    Add,
    /// `modify` / `mod`: change the actions of every rule the match covers.
    Modify,
    /// `modify_strict`: change the actions of the rule with exactly this
    /// match and priority.
    ModifyStrict,
    /// `delete` / `del`: remove every rule the match covers.
    Delete,
    /// `delete_strict`: remove the rule with exactly this match and priority.
    DeleteStrict,
}

impl FlowCommand {
    /// The command words a line may start with.
    const WORDS: [(&'static str, FlowCommand); 7] = [
        ("add", FlowCommand::Add),
        ("modify", FlowCommand::Modify),
        ("mod", FlowCommand::Modify),
        ("modify_strict", FlowCommand::ModifyStrict),
        ("delete", FlowCommand::Delete),
        ("del", FlowCommand::Delete),
        ("delete_strict", FlowCommand::DeleteStrict),
    ];

    /// Whether the line must carry `actions=` (add and modify) or must not
    /// (delete, as in `ovs-ofctl del-flows`).
    pub fn takes_actions(self) -> bool {
        !matches!(self, FlowCommand::Delete | FlowCommand::DeleteStrict)
    }
}

/// A parsed flow file: flows and groups, each with its 1-based line number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowFile {
    /// The flow lines in file order.
    pub flows: Vec<(usize, FlowCommand, FlowSpec)>,
    /// The `group_id=` lines in file order.
    pub groups: Vec<(usize, GroupSpec)>,
}

/// Parses a flow file. Lines are numbered from 1; the first bad line is the
/// error, with its column counted within that line.
pub fn parse_flow_file(text: &str, ports: &dyn PortNames) -> Result<FlowFile, ParseError> {
    let mut out = FlowFile::default();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let start = line.len() - trimmed.len();
        if trimmed.starts_with("group_id=") {
            let g = group::parse_at(line, start, ports).map_err(|e| e.at_line(line, n))?;
            out.groups.push((n, g));
            continue;
        }
        let word_len = trimmed.find(lexer::is_separator).unwrap_or(trimmed.len());
        let word = &trimmed[..word_len];
        let (cmd, from) = match FlowCommand::WORDS.iter().find(|(w, _)| *w == word) {
            Some((_, c)) => (*c, start + word_len),
            None => (FlowCommand::Add, start),
        };
        let spec = flow::parse_line(line, from, cmd, ports).map_err(|e| e.at_line(line, n))?;
        out.flows.push((n, cmd, spec));
    }
    Ok(out)
}
