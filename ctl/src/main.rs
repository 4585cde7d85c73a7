//! `oxvs-ctl`: the command-line tool of oxvs. Only parses arguments and
//! hands off to the library.

use ctl::ofp::parse_packet;
use ctl::trace::{load_bridge, render};
use std::process::ExitCode;

const USAGE: &str = "\
usage: oxvs-ctl trace --flows FILE [--port NAME=NO]... 'PACKET'
       oxvs-ctl parse-flows FILE

  trace        run a described packet (ovs-ofctl match syntax, e.g.
               'in_port=1,tcp,nw_src=10.244.1.2,nw_dst=10.244.2.3,tp_dst=80')
               through the rules and groups of FILE and show each table
               visited, the matching rules, the datapath actions and the
               megaflow that would be installed.
  parse-flows  check FILE and print its rules back in canonical form.

Without --port, every port number FILE mentions is a port named pN.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
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

fn run(args: &[String]) -> Result<String, String> {
    let Some(cmd) = args.first() else {
        return Err(USAGE.to_string());
    };
    let mut flows = None;
    let mut ports = Vec::new();
    let mut rest = Vec::new();
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--flows" => flows = Some(it.next().ok_or("--flows needs a file")?.clone()),
            "--port" => {
                let p = it.next().ok_or("--port needs NAME=NO")?;
                let (name, no) = p
                    .split_once('=')
                    .ok_or_else(|| format!("--port {p}: expected NAME=NO"))?;
                let no = no
                    .parse()
                    .map_err(|_| format!("--port {p}: {no} is not a port number"))?;
                ports.push((name.to_string(), no));
            }
            "-h" | "--help" => return Ok(format!("{USAGE}\n")),
            _ => rest.push(a.clone()),
        }
    }
    let read = |f: &str| std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"));
    match cmd.as_str() {
        "trace" => {
            let file = flows.ok_or("trace needs --flows FILE")?;
            let [packet] = rest.as_slice() else {
                return Err("trace needs one PACKET argument".into());
            };
            let br = load_bridge(&read(&file)?, &ports).map_err(|e| format!("{file}: {e}"))?;
            let key = parse_packet(packet, &br.ports).map_err(|e| format!("packet: {e}"))?;
            Ok(render(&br, &key, &br.ports))
        }
        "parse-flows" => {
            let [file] = rest.as_slice() else {
                return Err("parse-flows needs FILE".into());
            };
            let br = load_bridge(&read(file)?, &ports).map_err(|e| format!("{file}: {e}"))?;
            let mut out = String::new();
            for g in br.groups.iter() {
                out.push_str(&ctl::ofp::format_group(&g.spec, &br.ports));
                out.push('\n');
            }
            let mut rules: Vec<_> = br.cls.rules().collect();
            rules.sort_by_key(|r| (r.table, std::cmp::Reverse(r.priority)));
            for r in rules {
                out.push_str(&ctl::ofp::format_rule(r, 0, &br.ports));
                out.push('\n');
            }
            Ok(out)
        }
        "-h" | "--help" | "help" => Ok(format!("{USAGE}\n")),
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    }
}
