//! `oxvs-ctl`'s commands: the command line turned into a [`Command`] for the
//! daemon, or into an offline run over a flow file.
//!
//! The syntax follows `ovs-ofctl` so that people and scripts that manage
//! Open vSwitch can manage oxvs: the same command names, the same flow
//! syntax, `--strict` and `--bundle`, `-` for standard input. The bridge
//! argument `ovs-ofctl` takes is accepted and ignored when it is `br0`
//! (oxvsd runs one bridge). Files are read here, on the client, and sent as
//! text; the daemon parses them with its own port names.

pub mod capture;
pub mod offline;

use crate::client::{self, ClientError, DEFAULT_SOCKET};
use crate::proto::Command;
use flowtable::PortNo;
use std::io::Read;
use std::path::PathBuf;

/// The usage text.
pub const USAGE: &str = "\
usage: oxvs-ctl [--socket PATH] COMMAND [ARG]...

Flows and groups (every change is one transaction; --bundle says so):
  add-flow [--bundle] FLOW           add or replace one flow
  add-flows [--bundle] FILE          flows from FILE ('-' for stdin); lines
                                     may start with add, modify, delete, ...
  mod-flows [--strict] [--bundle] FLOW
  del-flows [--strict] [--bundle] [MATCH]
  replace-flows [--bundle] FILE      make the flows exactly those of FILE
  diff-flows FILE                    '-' only in the switch, '+' only in FILE
  dump-flows [MATCH]
  add-group [--bundle] GROUP         mod-group [--bundle] GROUP
  del-groups [--bundle] [group_id=N] dump-groups
Switch:
  show  dump-ports [PORT]  dump-tables  dump-drops  pmd-stats  dump-megaflows
  dump-fastpath                      the XDP fast path entries (unless fast_path = off)
  revalidate --check                 re-translate every cached megaflow against
                                     the live rules; lists any mismatch
  dump-conntrack [zone=N]
  flush-conntrack [zone=N] [mark=V[/M]] [labels=V[/M]] [ORIG-TUPLE [REPLY-TUPLE]]
                                     remove connections; a tuple is e.g.
                                     ct_nw_src=10.244.1.5,ct_nw_proto=17,ct_tp_src=53
  trace PACKET                       trace a packet through the live rules
  capture PORT [--count N] [--timeout SECS] [-w FILE]
                                     packets received on and sent to PORT
                                     (default 10 packets, 10 s); -w writes
                                     a pcap file, otherwise one line each;
                                     PORT leaves the XDP fast path while
                                     it runs, so no packet bypasses it
  metrics                            the Prometheus text the daemon exports
Ports (added ports are kept with the rules across restarts):
  add-port NAME [no=N] [kind=auto|afxdp|af_packet] [mtu=M] [external-id:KEY=VALUE]...
                                     attach interface NAME (waits for it if it
                                     does not exist yet); prints the number
  del-port NAME|N                    detach an added port; rules naming it stay
  set-port NAME|N external-id:KEY=VALUE...   (an empty VALUE removes KEY)
  list-ports [--format json]
Offline (no daemon):
  trace --flows FILE [--port NAME=NO]... PACKET
  parse-flows [--port NAME=NO]... FILE

The socket defaults to /run/oxvs/oxvsd.sock. A first argument 'br0' after
the command is ignored, as ovs-ofctl takes a bridge name there. Without
--port, an offline FILE's port numbers become ports named pN.";

/// A parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// Print the usage.
    Help,
    /// Ask the daemon.
    Remote {
        /// The socket.
        socket: PathBuf,
        /// The request.
        cmd: Command,
        /// The file the request carries, named in front of errors that
        /// point at one of its lines.
        source: Option<String>,
    },
    /// `trace --flows FILE PACKET`.
    OfflineTrace {
        /// The flow file.
        file: String,
        /// `--port NAME=NO`.
        ports: Vec<(String, PortNo)>,
        /// The packet.
        packet: String,
    },
    /// `capture PORT`: the request, and where the pcap goes.
    Capture {
        /// The socket.
        socket: PathBuf,
        /// The request.
        cmd: Command,
        /// `-w FILE`.
        write: Option<String>,
    },
    /// `parse-flows FILE`.
    ParseFlows {
        /// The flow file.
        file: String,
        /// `--port NAME=NO`.
        ports: Vec<(String, PortNo)>,
    },
}

/// Runs a command line; `Ok` is the text to print.
pub fn run(args: &[String]) -> Result<String, String> {
    match parse(args, &mut |f| read_file(f))? {
        Invocation::Help => Ok(format!("{USAGE}\n")),
        Invocation::Remote {
            socket,
            cmd,
            source,
        } => client::call(&socket, cmd).map_err(|e| match (e, source) {
            (ClientError::Remote(f), Some(src)) if f.message.starts_with("line ") => {
                format!("{src}: {f}")
            }
            (e, _) => e.to_string(),
        }),
        Invocation::OfflineTrace {
            file,
            ports,
            packet,
        } => offline::trace(&read_file(&file)?, &file, &ports, &packet),
        Invocation::ParseFlows { file, ports } => {
            offline::parse_flows(&read_file(&file)?, &file, &ports)
        }
        Invocation::Capture { socket, cmd, write } => {
            let text = client::call(&socket, cmd).map_err(|e| e.to_string())?;
            let packets = capture::parse(&text)?;
            match write {
                Some(f) => {
                    std::fs::write(&f, capture::pcap(&packets)).map_err(|e| format!("{f}: {e}"))?;
                    Ok(format!("{} packets written to {f}\n", packets.len()))
                }
                None => Ok(capture::summary(&packets)),
            }
        }
    }
}

/// Reads a file, `-` meaning standard input.
pub fn read_file(f: &str) -> Result<String, String> {
    if f == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| format!("stdin: {e}"))?;
        return Ok(s);
    }
    std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))
}

/// Parses a command line. `read` loads the files that remote commands send.
pub fn parse(
    args: &[String],
    read: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<Invocation, String> {
    let mut socket = PathBuf::from(DEFAULT_SOCKET);
    let (mut strict, mut bundle) = (false, false);
    let (mut count, mut timeout, mut write) = (None, None, None);
    let mut flows = None;
    let mut format = None;
    let mut ports = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--socket" => socket = it.next().ok_or("--socket needs a path")?.into(),
            "--strict" => strict = true,
            "--bundle" => bundle = true,
            "--flows" => flows = Some(it.next().ok_or("--flows needs a file")?.clone()),
            "--port" => ports.push(port_arg(it.next().ok_or("--port needs NAME=NO")?)?),
            "--count" => {
                let n = it.next().ok_or("--count needs a number")?;
                count = Some(
                    n.parse::<u32>()
                        .map_err(|_| format!("--count {n}: not a number"))?,
                );
            }
            "--timeout" => {
                let n = it.next().ok_or("--timeout needs seconds")?;
                let secs = n.parse::<f64>().ok().filter(|s| *s > 0.0 && *s <= 3600.0);
                timeout = Some(secs.ok_or(format!("--timeout {n}: seconds from 0 to 3600"))?);
            }
            "-w" => write = Some(it.next().ok_or("-w needs a file")?.clone()),
            "--format" => format = Some(it.next().ok_or("--format needs json or text")?.clone()),
            "-h" | "--help" => return Ok(Invocation::Help),
            _ => words.push(a.clone()),
        }
    }
    let Some((cmd, rest)) = words.split_first() else {
        return Err(USAGE.to_string());
    };
    let mut rest = rest;
    if rest.first().is_some_and(|b| b == "br0") {
        rest = &rest[1..];
    }
    let no_flags = |name: &str| -> Result<(), String> {
        if strict || bundle {
            return Err(format!("{name} takes neither --strict nor --bundle"));
        }
        Ok(())
    };
    let name = cmd.as_str();
    let remote = |cmd| {
        Ok(Invocation::Remote {
            socket: socket.clone(),
            cmd,
            source: None,
        })
    };
    // A file's contents, and its name as errors should show it.
    let mut file = |rest: &[String]| -> Result<(String, String), String> {
        let f = one(name, rest, "FILE")?;
        let text = read(&f)?;
        Ok((text, if f == "-" { "stdin".into() } else { f }))
    };
    let from_file = |cmd, src: String| {
        Ok(Invocation::Remote {
            socket: socket.clone(),
            cmd,
            source: Some(src),
        })
    };
    if strict && !matches!(name, "mod-flows" | "del-flows") {
        return Err(format!("{name} does not take --strict"));
    }
    if name == "capture" {
        no_flags(name)?;
        return Ok(Invocation::Capture {
            socket: socket.clone(),
            cmd: Command::Capture {
                port: one(name, rest, "PORT")?,
                count: count.unwrap_or(10).max(1),
                timeout_ms: (timeout.unwrap_or(10.0) * 1000.0) as u32,
            },
            write,
        });
    }
    if count.is_some() || timeout.is_some() || write.is_some() {
        return Err(format!(
            "--count, --timeout and -w belong to capture, not {name}"
        ));
    }
    if format.is_some() && name != "list-ports" {
        return Err(format!("--format belongs to list-ports, not {name}"));
    }
    match name {
        "help" => Ok(Invocation::Help),
        "add-port" => {
            no_flags(name)?;
            let (port, args) = rest.split_first().ok_or("add-port needs a NAME argument")?;
            let mut cmd = PortArgs::default();
            for a in args {
                cmd.word(name, a, true)?;
            }
            remote(Command::AddPort {
                name: port.clone(),
                no: cmd.no,
                kind: cmd.kind,
                mtu: cmd.mtu,
                external_ids: cmd.ids,
            })
        }
        "del-port" => {
            no_flags(name)?;
            remote(Command::DelPort {
                port: one(name, rest, "NAME|N")?,
            })
        }
        "set-port" => {
            no_flags(name)?;
            let (port, args) = rest
                .split_first()
                .ok_or("set-port needs a NAME|N argument")?;
            if args.is_empty() {
                return Err("set-port needs at least one external-id:KEY=VALUE".into());
            }
            let mut cmd = PortArgs::default();
            for a in args {
                cmd.word(name, a, false)?;
            }
            remote(Command::SetPort {
                port: port.clone(),
                external_ids: cmd.ids,
            })
        }
        "list-ports" => {
            no_flags(name)?;
            if !rest.is_empty() {
                return Err("list-ports takes no arguments besides --format".into());
            }
            let json = match format.as_deref() {
                None | Some("text") => false,
                Some("json") => true,
                Some(f) => return Err(format!("--format {f}: expected json or text")),
            };
            remote(Command::ListPorts { json })
        }
        "trace" if flows.is_some() => {
            let packet = one(name, rest, "PACKET")?;
            Ok(Invocation::OfflineTrace {
                file: flows.unwrap_or_default(),
                ports,
                packet,
            })
        }
        "parse-flows" => Ok(Invocation::ParseFlows {
            file: one(name, rest, "FILE")?,
            ports,
        }),
        "add-flow" => remote(Command::AddFlow {
            flow: one(name, rest, "FLOW")?,
            bundle,
        }),
        "add-flows" => {
            let (text, src) = file(rest)?;
            from_file(Command::AddFlows { text, bundle }, src)
        }
        "mod-flows" => remote(Command::ModFlows {
            flow: one(name, rest, "FLOW")?,
            strict,
            bundle,
        }),
        "del-flows" => remote(Command::DelFlows {
            filter: optional(name, rest)?,
            strict,
            bundle,
        }),
        "replace-flows" => {
            let (text, src) = file(rest)?;
            from_file(Command::ReplaceFlows { text, bundle }, src)
        }
        "diff-flows" => {
            no_flags(name)?;
            let (text, src) = file(rest)?;
            from_file(Command::DiffFlows { text }, src)
        }
        "dump-flows" => {
            no_flags(name)?;
            remote(Command::DumpFlows {
                filter: optional(name, rest)?,
            })
        }
        "add-group" => remote(Command::AddGroup {
            group: one(name, rest, "GROUP")?,
            bundle,
        }),
        "mod-group" => remote(Command::ModGroup {
            group: one(name, rest, "GROUP")?,
            bundle,
        }),
        "del-groups" => remote(Command::DelGroups {
            filter: optional(name, rest)?,
            bundle,
        }),
        "dump-ports" => {
            no_flags(name)?;
            remote(Command::DumpPorts {
                port: optional(name, rest)?,
            })
        }
        "dump-conntrack" => {
            no_flags(name)?;
            let zone = match optional(name, rest)? {
                None => None,
                Some(z) => Some(
                    z.strip_prefix("zone=")
                        .and_then(|v| v.parse::<u16>().ok())
                        .ok_or_else(|| format!("dump-conntrack takes zone=N, not {z:?}"))?,
                ),
            };
            remote(Command::DumpConntrack { zone })
        }
        "flush-conntrack" => {
            no_flags(name)?;
            crate::ctflush::parse(rest)?;
            remote(Command::FlushConntrack {
                args: rest.to_vec(),
            })
        }
        "revalidate" => {
            no_flags(name)?;
            if rest != ["--check"] {
                return Err("revalidate takes --check (it only checks the caches)".into());
            }
            remote(Command::RevalidateCheck)
        }
        "trace" => {
            no_flags(name)?;
            remote(Command::Trace {
                packet: one(name, rest, "PACKET")?,
            })
        }
        _ => {
            let cmd = match name {
                "dump-groups" => Command::DumpGroups,
                "show" => Command::Show,
                "dump-tables" => Command::DumpTables,
                "dump-drops" => Command::DumpDrops,
                "pmd-stats" => Command::PmdStats,
                "dump-megaflows" => Command::DumpMegaflows,
                "dump-fastpath" => Command::DumpFastpath,
                "metrics" => Command::Metrics,
                other => return Err(format!("unknown command {other:?}\n{USAGE}")),
            };
            no_flags(name)?;
            if !rest.is_empty() {
                return Err(format!("{name} takes no arguments"));
            }
            remote(cmd)
        }
    }
}

/// The `KEY=VALUE` words of `add-port` and `set-port`.
#[derive(Default)]
struct PortArgs {
    no: Option<u32>,
    kind: Option<String>,
    mtu: Option<u32>,
    ids: std::collections::BTreeMap<String, String>,
}

impl PortArgs {
    /// Takes one word; `all`: `no=`, `kind=` and `mtu=` too (`add-port`),
    /// else only external ids (`set-port`). Errors name the word.
    fn word(&mut self, cmd: &str, w: &str, all: bool) -> Result<(), String> {
        if let Some(kv) = w.strip_prefix("external-id:") {
            let (k, v) = kv
                .split_once('=')
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| format!("{cmd}: {w:?}: expected external-id:KEY=VALUE"))?;
            self.ids.insert(k.to_string(), v.to_string());
            return Ok(());
        }
        let expected = if all {
            "expected no=N, kind=auto|afxdp|af_packet, mtu=M or external-id:KEY=VALUE"
        } else {
            "expected external-id:KEY=VALUE"
        };
        let bad = || format!("{cmd}: {w:?}: {expected}");
        let (k, v) = w.split_once('=').filter(|_| all).ok_or_else(bad)?;
        let number = |what: &str| {
            v.parse::<u32>()
                .map_err(|_| format!("{cmd}: {w:?}: {what} is a number"))
        };
        match k {
            "no" => self.no = Some(number("a port number")?),
            "mtu" => self.mtu = Some(number("an MTU")?),
            "kind" if ["auto", "afxdp", "af_packet"].contains(&v) => {
                self.kind = Some(v.to_string())
            }
            "kind" => return Err(format!("{cmd}: {w:?}: kind is auto, afxdp or af_packet")),
            _ => return Err(bad()),
        }
        Ok(())
    }
}

fn one(cmd: &str, rest: &[String], what: &str) -> Result<String, String> {
    match rest {
        [x] => Ok(x.clone()),
        _ => Err(format!("{cmd} needs one {what} argument")),
    }
}

fn optional(cmd: &str, rest: &[String]) -> Result<Option<String>, String> {
    match rest {
        [] => Ok(None),
        [x] => Ok(Some(x.clone())),
        _ => Err(format!("{cmd} takes at most one argument")),
    }
}

fn port_arg(p: &str) -> Result<(String, PortNo), String> {
    let (name, no) = p
        .split_once('=')
        .ok_or_else(|| format!("--port {p}: expected NAME=NO"))?;
    let no = no
        .parse()
        .map_err(|_| format!("--port {p}: {no} is not a port number"))?;
    Ok((name.to_string(), no))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &str) -> Result<Invocation, String> {
        let args: Vec<String> = args.split_whitespace().map(str::to_string).collect();
        parse(&args, &mut |f| Ok(format!("text of {f}")))
    }

    fn remote(args: &str) -> (PathBuf, Command) {
        match p(args).unwrap() {
            Invocation::Remote { socket, cmd, .. } => (socket, cmd),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn capture_takes_its_options() {
        match p("capture --count 3 -w /tmp/x.pcap v1p1").unwrap() {
            Invocation::Capture { cmd, write, .. } => {
                assert_eq!(
                    cmd,
                    Command::Capture {
                        port: "v1p1".into(),
                        count: 3,
                        timeout_ms: 10_000
                    }
                );
                assert_eq!(write.as_deref(), Some("/tmp/x.pcap"));
            }
            other => panic!("{other:?}"),
        }
        assert!(p("dump-flows --count 3")
            .unwrap_err()
            .contains("belong to capture"));
        assert!(p("capture --timeout 0 v1p1").is_err());
    }

    #[test]
    fn change_commands_carry_their_flags() {
        let (socket, cmd) = remote("--socket /tmp/s del-flows --strict --bundle br0 ip");
        assert_eq!(socket, PathBuf::from("/tmp/s"));
        assert_eq!(
            cmd,
            Command::DelFlows {
                filter: Some("ip".into()),
                strict: true,
                bundle: true
            }
        );
        let (socket, cmd) = remote("add-flows f.txt --bundle");
        assert_eq!(socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(
            cmd,
            Command::AddFlows {
                text: "text of f.txt".into(),
                bundle: true
            }
        );
        assert_eq!(
            remote("del-flows").1,
            Command::DelFlows {
                filter: None,
                strict: false,
                bundle: false
            }
        );
    }

    #[test]
    fn trace_is_offline_with_flows_and_live_without() {
        assert!(matches!(
            p("trace --flows f in_port=1").unwrap(),
            Invocation::OfflineTrace { .. }
        ));
        assert_eq!(
            remote("trace in_port=1").1,
            Command::Trace {
                packet: "in_port=1".into()
            }
        );
    }

    #[test]
    fn revalidate_only_checks() {
        assert_eq!(remote("revalidate br0 --check").1, Command::RevalidateCheck);
        assert!(p("revalidate").unwrap_err().contains("--check"));
        assert!(p("revalidate --strict --check").is_err());
    }

    #[test]
    fn port_commands_parse_their_words() {
        let (_, cmd) = remote(
            "add-port pod7 no=7 kind=afxdp mtu=1450 external-id:iface-id=ns/pod external-id:attached-mac=02:00:00:00:00:07",
        );
        let mut ids = std::collections::BTreeMap::new();
        ids.insert("iface-id".to_string(), "ns/pod".to_string());
        ids.insert("attached-mac".to_string(), "02:00:00:00:00:07".to_string());
        assert_eq!(
            cmd,
            Command::AddPort {
                name: "pod7".into(),
                no: Some(7),
                kind: Some("afxdp".into()),
                mtu: Some(1450),
                external_ids: ids,
            }
        );
        assert_eq!(
            remote("add-port pod8").1,
            Command::AddPort {
                name: "pod8".into(),
                no: None,
                kind: None,
                mtu: None,
                external_ids: Default::default(),
            }
        );
        assert_eq!(
            remote("del-port 7").1,
            Command::DelPort { port: "7".into() }
        );
        let (_, cmd) = remote("set-port pod7 external-id:iface-id=");
        let mut ids = std::collections::BTreeMap::new();
        ids.insert("iface-id".to_string(), String::new());
        assert_eq!(
            cmd,
            Command::SetPort {
                port: "pod7".into(),
                external_ids: ids
            }
        );
        assert_eq!(
            remote("list-ports --format json").1,
            Command::ListPorts { json: true }
        );
        assert_eq!(remote("list-ports").1, Command::ListPorts { json: false });
    }

    #[test]
    fn port_argument_errors_name_the_word() {
        let e = p("add-port pod7 no=x").unwrap_err();
        assert!(e.contains("\"no=x\"") && e.contains("number"), "{e}");
        let e = p("add-port pod7 kind=tap").unwrap_err();
        assert!(e.contains("\"kind=tap\""), "{e}");
        let e = p("add-port pod7 colour=red").unwrap_err();
        assert!(e.contains("\"colour=red\""), "{e}");
        let e = p("add-port pod7 external-id:=v").unwrap_err();
        assert!(e.contains("\"external-id:=v\""), "{e}");
        let e = p("set-port pod7 no=3").unwrap_err();
        assert!(e.contains("\"no=3\""), "{e}");
        assert!(p("set-port pod7").unwrap_err().contains("external-id"));
        assert!(p("add-port").unwrap_err().contains("NAME"));
        assert!(p("del-port a b").unwrap_err().contains("NAME|N"));
        let e = p("list-ports --format yaml").unwrap_err();
        assert!(e.contains("--format yaml"), "{e}");
        assert!(p("show --format json").unwrap_err().contains("list-ports"));
    }

    #[test]
    fn misuse_is_refused() {
        assert!(p("dump-flows --strict").unwrap_err().contains("--strict"));
        assert!(p("show extra").unwrap_err().contains("no arguments"));
        assert!(p("frobnicate").unwrap_err().contains("unknown command"));
        assert!(p("add-flow").unwrap_err().contains("FLOW"));
        assert!(p("").unwrap_err().starts_with("usage"));
    }
}
