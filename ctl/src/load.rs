//! Turning a parsed flow file into bridge changes, shared by the offline
//! trace, the tests and (later) the control socket.

use crate::ofp::{FlowCommand, FlowFile};
use flowtable::bridge::{Change, FlowFilter};

/// The changes a flow file asks for, groups first (so that a file can use a
/// group before the line that defines it), with each change's line number.
pub fn file_changes(file: &FlowFile) -> (Vec<Change>, Vec<usize>) {
    let mut changes = Vec::new();
    let mut lines = Vec::new();
    for (line, g) in &file.groups {
        changes.push(Change::AddGroup(g.clone()));
        lines.push(*line);
    }
    for (line, cmd, spec) in &file.flows {
        changes.push(match cmd {
            FlowCommand::Add => Change::AddFlow(spec.clone()),
            FlowCommand::Modify => {
                Change::ModifyFlows(FlowFilter::from_spec(spec, false), spec.actions.clone())
            }
            FlowCommand::ModifyStrict => {
                Change::ModifyFlows(FlowFilter::from_spec(spec, true), spec.actions.clone())
            }
            FlowCommand::Delete => Change::DeleteFlows(FlowFilter::from_spec(spec, false)),
            FlowCommand::DeleteStrict => Change::DeleteFlows(FlowFilter::from_spec(spec, true)),
        });
        lines.push(*line);
    }
    (changes, lines)
}
