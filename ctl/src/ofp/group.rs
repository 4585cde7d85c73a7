//! Group lines in `ovs-ofctl add-group` form:
//! `group_id=1,type=select,bucket=weight:100,watch_port:2,actions=output:1,bucket=output:2`.
//!
//! Everything before the first `bucket=` describes the group; each `bucket=`
//! starts a bucket that runs to the next one. Inside a bucket, `bucket_id:N`,
//! `weight:N` and `watch_port:P` are bucket properties and anything else is
//! an action, until
//! `actions=`, after which everything is an action — the same reading as OVS's
//! `parse_bucket_str`, which is why `bucket=output:1` needs no `actions=`.
//! Bucket actions are checked without a match or a table, since a bucket runs
//! after whatever rule chose the group.

use super::actions::{self, Cx};
use super::error::{expected, fail, Res};
use super::group_hash;
use super::lexer::{self, Item};
use super::{value, ParseError, PortNames};
use flowtable::port::PortNo;
use flowtable::rule::MAX_BUCKET_ID;
use flowtable::{Bucket, GroupSpec, GroupType};
use std::collections::BTreeSet;

/// The weight a select-group bucket gets when none is written; `dump-groups`
/// prints it, so it is the value people expect to see.
const DEFAULT_SELECT_WEIGHT: u16 = 100;

/// The largest group number (OpenFlow's `OFPG_MAX`).
const MAX_GROUP_ID: u128 = 0xffff_ff00;

/// A bucket being read.
struct Draft<'a> {
    pos: usize,
    /// `bucket_id:N` and where it was written.
    bucket_id: Option<(u32, usize)>,
    weight: Option<u16>,
    watch_port: Option<PortNo>,
    actions: Vec<Item<'a>>,
    in_actions: bool,
}

impl<'a> Draft<'a> {
    /// Takes one item of the bucket.
    fn item(&mut self, item: Item<'a>, ports: &dyn PortNames) -> Res<()> {
        if self.in_actions {
            self.actions.push(item);
            return Ok(());
        }
        let cut = item.text.find([':', '=']).unwrap_or(item.text.len());
        let (key, arg, apos) = (
            &item.text[..cut],
            item.text.get(cut + 1..).unwrap_or(""),
            item.pos + cut + 1,
        );
        match key {
            "weight" => self.weight = Some(value::uint(arg, apos, 16, "weight")? as u16),
            "watch_port" => self.watch_port = Some(value::port(arg, apos, ports)?),
            "bucket_id" => {
                let id = value::uint(arg, apos, 32, key)?;
                if id > u128::from(MAX_BUCKET_ID) {
                    return fail(
                        apos,
                        format!("bucket_id {arg} is above the largest bucket id 0xffffff00"),
                    );
                }
                self.bucket_id = Some((id as u32, apos));
            }
            "watch_group" => {
                return fail(
                    item.pos,
                    "bucket watch_group is not supported by oxvs: buckets follow ports only",
                )
            }
            "actions" | "action" => {
                self.in_actions = true;
                if !arg.is_empty() {
                    self.actions.push(Item {
                        text: arg,
                        pos: apos,
                    });
                }
            }
            _ => self.actions.push(item),
        }
        Ok(())
    }
}

/// Parses a group line from byte `start` of `line`.
pub(crate) fn parse_at(line: &str, start: usize, ports: &dyn PortNames) -> Res<GroupSpec> {
    let mut id = None;
    let mut kind = None;
    let mut drafts: Vec<Draft<'_>> = Vec::new();
    let mut hash = None;
    let mut hash_fields = None;
    for item in lexer::split(&line[start..], start)? {
        let (key, val) = item.key_value();
        if key == "bucket" {
            let mut d = Draft {
                pos: item.pos,
                bucket_id: None,
                weight: None,
                watch_port: None,
                actions: Vec::new(),
                in_actions: false,
            };
            if let Some((text, pos)) = val.filter(|(t, _)| !t.is_empty()) {
                d.item(Item { text, pos }, ports)?;
            }
            drafts.push(d);
            continue;
        }
        if let Some(d) = drafts.last_mut() {
            d.item(item, ports)?;
            continue;
        }
        if item.text.starts_with("fields(") || key == "fields" {
            if hash_fields.is_some() {
                return fail(item.pos, "fields is given twice");
            }
            hash_fields = Some((group_hash::parse_fields(&item, ports)?, item.pos));
            continue;
        }
        let Some((text, pos)) = val else {
            return expected(item.pos, "group_id=, type= or bucket=", item.text);
        };
        match key {
            "group_id" if id.is_none() => {
                let g = value::uint(text, pos, 32, key)?;
                if g > MAX_GROUP_ID {
                    return fail(
                        pos,
                        format!("group_id {text} is above the largest group number 0xffffff00"),
                    );
                }
                id = Some(g as u32);
            }
            "type" if kind.is_none() => {
                kind = Some(match text {
                    "all" => GroupType::All,
                    "select" => GroupType::Select,
                    "indirect" => GroupType::Indirect,
                    "ff" | "fast_failover" => {
                        return fail(pos, format!("group type {text} is not supported"))
                    }
                    _ => return expected(pos, "all, select or indirect", text),
                });
            }
            "group_id" | "type" => return fail(item.pos, format!("{key} is given twice")),
            "selection_method" if hash.is_none() => match text {
                "hash" => hash = Some(item.pos),
                "dp_hash" => return fail(pos, "selection_method=dp_hash is not supported"),
                _ => return expected(pos, "hash", text),
            },
            "selection_method" => return fail(item.pos, "selection_method is given twice"),
            "selection_method_param" => {
                return fail(item.pos, format!("{key} is not supported"));
            }
            _ => return fail(item.pos, format!("unknown group key {key:?}")),
        }
    }
    let Some(id) = id else {
        return fail(start, "missing group_id=");
    };
    let Some(kind) = kind else {
        return fail(start, "missing type= (all, select or indirect)");
    };
    let hash_fields = match (hash, hash_fields) {
        (None, None) => None,
        (Some(pos), _) | (None, Some((_, pos))) if kind != GroupType::Select => {
            return fail(
                pos,
                "selection_method and fields apply to select groups only",
            );
        }
        (Some(_), Some((f, _))) => Some(f),
        (None, Some((_, pos))) => return fail(pos, "fields needs selection_method=hash"),
        (Some(pos), None) => return fail(pos, "selection_method=hash needs fields(...)"),
    };
    if kind == GroupType::Indirect && drafts.len() != 1 {
        let pos = drafts.get(1).map_or(line.len(), |d| d.pos);
        return fail(pos, "an indirect group has exactly one bucket");
    }
    let cx = Cx {
        table: None,
        m: None,
        ports,
    };
    let default_weight = if kind == GroupType::Select {
        DEFAULT_SELECT_WEIGHT
    } else {
        0
    };
    let ids = bucket_ids(&drafts)?;
    let mut buckets = Vec::with_capacity(drafts.len());
    for (d, bucket_id) in drafts.into_iter().zip(ids) {
        buckets.push(Bucket {
            bucket_id,
            weight: d.weight.unwrap_or(default_weight),
            watch_port: d.watch_port,
            actions: actions::parse(&d.actions, &cx)?,
        });
    }
    Ok(GroupSpec {
        id,
        kind,
        buckets,
        hash_fields,
    })
}

/// The bucket ids: those written (which must differ), and for each bucket
/// that names none the lowest id no other bucket has, in bucket order. So a
/// group that names no ids gets 0, 1, 2, ..., which is what OVS assigns
/// and prints (`ovs-ofctl -O OpenFlow15 dump-groups`).
fn bucket_ids(drafts: &[Draft<'_>]) -> Res<Vec<u32>> {
    let mut taken = BTreeSet::new();
    for d in drafts {
        if let Some((id, pos)) = d.bucket_id {
            if !taken.insert(id) {
                return fail(pos, format!("bucket_id {id} is given to two buckets"));
            }
        }
    }
    let mut next = 0u32;
    let mut ids = Vec::with_capacity(drafts.len());
    for d in drafts {
        ids.push(match d.bucket_id {
            Some((id, _)) => id,
            None => {
                while taken.contains(&next) {
                    next += 1;
                }
                taken.insert(next);
                next
            }
        });
    }
    Ok(ids)
}

/// Parses one group line (`ovs-ofctl add-group` syntax, or a line of
/// `dump-groups` output). Errors are reported as line 1.
pub fn parse_group(line: &str, ports: &dyn PortNames) -> Result<GroupSpec, ParseError> {
    parse_at(line, 0, ports).map_err(|e| e.at_line(line, 1))
}
