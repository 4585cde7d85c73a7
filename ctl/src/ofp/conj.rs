//! Conjunctive match syntax (ovs-ofctl(8), ovs-fields(7) "Conjunctive Match
//! Fields"): the `conjunction(id,k/n)` action and the `conj_id=N` field.
//!
//! A rule with `conjunction` actions is a clause of a conjunctive match, so
//! its action list may hold nothing else (OVS also allows `note`, which
//! oxvs does not have); the check runs over the whole parsed list so that it
//! can name the first action that breaks it, as OVS's message does.

use super::error::{expected, fail, Res};
use super::lexer::Item;
use super::value;
use flowtable::conjunction::MAX_CLAUSES;
use flowtable::Action;

/// What OVS says when `conjunction(...)` cannot be read.
const SYNTAX: &str = "\"conjunction\" syntax is \"conjunction(id,k/n)\"";

/// Parses the arguments of `conjunction(ID,K/N)`; `pos` is the action's
/// column, `args` what was between the parentheses (`None`: there were
/// none).
pub(crate) fn parse_conjunction(args: Option<&[Item<'_>]>, pos: usize) -> Res<Action> {
    let [id, clause] = args.unwrap_or_default() else {
        return fail(pos, SYNTAX);
    };
    let Some((k, n)) = clause.text.split_once('/') else {
        return expected(clause.pos, "k/n after the conjunction id", clause.text);
    };
    let n_pos = clause.pos + k.len() + 1;
    let id = value::uint(id.text, id.pos, 32, "a conjunction id")? as u32;
    let k = value::uint(k, clause.pos, 8, "a clause number")?;
    let n = value::uint(n, n_pos, 8, "a number of clauses")?;
    if n < 2 {
        return fail(n_pos, "conjunction must have at least 2 clauses");
    }
    if n > u128::from(MAX_CLAUSES) {
        return fail(n_pos, "conjunction must have at most 64 clauses");
    }
    if k < 1 {
        return fail(clause.pos, "clause index must be positive");
    }
    if k > n {
        return fail(
            clause.pos,
            format!("clause index {k} must be less than or equal to number of clauses {n}"),
        );
    }
    Ok(Action::Conjunction {
        id,
        clause: k as u8,
        n_clauses: n as u8,
    })
}

/// Refuses an action list that mixes `conjunction` with other actions;
/// `items` and `actions` run in step (`drop` never reaches here with others).
pub(crate) fn check_list(items: &[Item<'_>], actions: &[Action]) -> Res<()> {
    let is_conj = |a: &Action| matches!(a, Action::Conjunction { .. });
    if !actions.iter().any(is_conj) {
        return Ok(());
    }
    match items.iter().zip(actions).find(|(_, a)| !is_conj(a)) {
        None => Ok(()),
        Some((item, _)) => {
            let cut = item.text.find([':', '(']).unwrap_or(item.text.len());
            let name = &item.text[..cut];
            let name = if name.starts_with(|c: char| c.is_ascii_digit()) {
                "output"
            } else {
                name
            };
            fail(
                item.pos,
                format!(
                    "\"conjunction\" actions may be used along with \"note\" but not any \
                     other kind of action (such as the \"{name}\" action used here)"
                ),
            )
        }
    }
}

/// Reads the value of `conj_id=N` (32 bits, never masked).
pub(crate) fn parse_conj_id(text: &str, pos: usize) -> Res<u32> {
    if let Some(slash) = text.find('/') {
        return fail(pos + slash, "conj_id cannot be masked");
    }
    Ok(value::uint(text, pos, 32, "conj_id")? as u32)
}
