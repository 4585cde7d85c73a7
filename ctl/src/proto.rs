//! The control protocol between `oxvs-ctl` and `oxvsd`, shared by both ends
//! so that they cannot disagree about a message's shape.
//!
//! A message is a frame: a 4-byte big-endian length, then that many bytes of
//! JSON. JSON because a person debugging a switch can read it with `socat`
//! and because the cost of encoding is nothing next to parsing 100 k flow
//! lines. Every request carries [`VERSION`]; the daemon reads the version
//! before anything else and refuses a mismatch with a message saying which
//! versions met, so an old client talking to a new daemon fails loudly
//! rather than being misunderstood. Frames larger than [`MAX_MESSAGE`] are
//! refused before their body is read, so a stray length prefix cannot make
//! the daemon allocate gigabytes.
//!
//! Requests carry flow text, not parsed rules: the daemon parses it with the
//! switch's own port names, so `output:v1p2` means what the switch means by
//! it, and errors come back with the line and column of the offending text.
//! Responses are text ready to print, in `ovs-ofctl` layout.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// The largest frame body either side accepts (64 MiB: a flow file of
/// 100 k rules is around 10 MiB).
pub const MAX_MESSAGE: usize = 64 << 20;

/// One request: a version and a command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Always [`VERSION`] when built by this crate.
    pub version: u32,
    /// What to do.
    pub cmd: Command,
}

impl Request {
    /// A request for `cmd` at this build's version.
    pub fn new(cmd: Command) -> Request {
        Request {
            version: VERSION,
            cmd,
        }
    }
}

/// The commands. Change commands are applied as one transaction each
/// (`bundle` is the user asking for that explicitly; the daemon gives it
/// either way), then the rule set is persisted and published once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "cmd")]
pub enum Command {
    /// `add-flow FLOW`.
    AddFlow {
        /// One flow line.
        flow: String,
        /// `--bundle`.
        bundle: bool,
    },
    /// `add-flows FILE`: lines may start with add, modify, delete, ...
    AddFlows {
        /// The whole file.
        text: String,
        /// `--bundle`.
        bundle: bool,
    },
    /// `mod-flows [--strict] FLOW`.
    ModFlows {
        /// One flow line with actions.
        flow: String,
        /// `--strict`.
        strict: bool,
        /// `--bundle`.
        bundle: bool,
    },
    /// `del-flows [--strict] [MATCH]`.
    DelFlows {
        /// The match; `None` deletes every flow.
        filter: Option<String>,
        /// `--strict`.
        strict: bool,
        /// `--bundle`.
        bundle: bool,
    },
    /// `replace-flows FILE`: make the flows exactly those of the file.
    ReplaceFlows {
        /// The whole file.
        text: String,
        /// `--bundle`.
        bundle: bool,
    },
    /// `diff-flows FILE`: `-` lines only in the switch, `+` only in the file.
    DiffFlows {
        /// The whole file.
        text: String,
    },
    /// `dump-flows [MATCH]`.
    DumpFlows {
        /// Only flows this match covers.
        filter: Option<String>,
    },
    /// `add-group GROUP`: fails if the group exists.
    AddGroup {
        /// One group line.
        group: String,
        /// `--bundle`.
        bundle: bool,
    },
    /// `mod-group GROUP`: fails if the group does not exist.
    ModGroup {
        /// One group line.
        group: String,
        /// `--bundle`.
        bundle: bool,
    },
    /// `del-groups [group_id=N]`.
    DelGroups {
        /// `group_id=N`; `None` deletes every group.
        filter: Option<String>,
        /// `--bundle`.
        bundle: bool,
    },
    /// `dump-groups`.
    DumpGroups,
    /// `show`: ports and how they are attached.
    Show,
    /// `dump-ports [PORT]`.
    DumpPorts {
        /// A port name or number.
        port: Option<String>,
    },
    /// `dump-tables`.
    DumpTables,
    /// `dump-drops`.
    DumpDrops,
    /// `pmd-stats`.
    PmdStats,
    /// `dump-conntrack [zone=N]`: the connection table.
    DumpConntrack {
        /// Only this zone.
        zone: Option<u16>,
    },
    /// `flush-conntrack [zone=N] [mark=V[/M]] [labels=V[/M]] [ORIG-TUPLE [REPLY-TUPLE]]`:
    /// removes the matching connections (see [`crate::ctflush`]).
    FlushConntrack {
        /// The arguments as typed; the daemon parses them again.
        args: Vec<String>,
    },
    /// `dump-megaflows`.
    DumpMegaflows,
    /// `dump-fastpath`: the XDP fast path's entries, one line each like
    /// `dump-megaflows`, with the counters the program keeps.
    DumpFastpath,
    /// `revalidate --check`: every poll thread brings its caches in line
    /// with the current rules, then translates every megaflow again from
    /// scratch and checks every EMC entry against its megaflow. The answer
    /// is a totals line (`mismatches: N`) and one line per entry the rules
    /// would not produce.
    RevalidateCheck,
    /// `trace PACKET` against the live rules.
    Trace {
        /// The packet, in match syntax.
        packet: String,
    },
    /// The Prometheus text exposition (what `GET /metrics` serves).
    Metrics,
    /// `add-port NAME [no=N] [kind=auto|afxdp|af_packet] [mtu=M]
    /// [external-id:KEY=VALUE ...]`: opens a port on every poll thread while
    /// the others keep forwarding, and persists it with the rules. The answer
    /// is the port's OpenFlow number and a newline.
    AddPort {
        /// The interface name.
        name: String,
        /// The OpenFlow number; `None` picks the lowest free one.
        no: Option<u32>,
        /// `auto` (the default), `afxdp` or `af_packet`.
        kind: Option<String>,
        /// The MTU to set on the interface, if any.
        mtu: Option<u32>,
        /// What OVS users keep in `external_ids`: `iface-id`,
        /// `attached-mac`, `container-id`, the pod's namespace and name.
        external_ids: BTreeMap<String, String>,
    },
    /// `del-port NAME|N`: drains and closes the port; rules that name it stay
    /// and count `drop_port_down`.
    DelPort {
        /// A port name or number.
        port: String,
    },
    /// `set-port NAME|N external-id:KEY=VALUE ...`: sets (an empty value
    /// removes) external ids.
    SetPort {
        /// A port name or number.
        port: String,
        /// The ids to set.
        external_ids: BTreeMap<String, String>,
    },
    /// `list-ports [--format json]`: every port, configured or added, with
    /// its number, kind, state and external ids. With `json` the answer is
    /// a JSON array of [`PortInfo`].
    ListPorts {
        /// Answer JSON instead of text.
        json: bool,
    },
    /// `capture PORT`: packets received on and sent to a port. The answer
    /// is one line per packet, `SECONDS.NANOS rx|tx HEX`.
    Capture {
        /// A port name or number.
        port: String,
        /// Stop after this many packets.
        count: u32,
        /// Or after this many milliseconds.
        timeout_ms: u32,
    },
}

/// One port as `list-ports --format json` describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    /// The interface (or tunnel port) name.
    pub name: String,
    /// The OpenFlow number.
    pub no: u32,
    /// How it is attached: `afxdp`, `af_packet`, `geneve`, or `waiting`
    /// while its interface does not exist.
    pub kind: String,
    /// Whether it came from the config file (`false`: added at run time).
    pub configured: bool,
    /// External ids (`iface-id`, `attached-mac`, `container-id`, ...).
    pub external_ids: BTreeMap<String, String>,
    /// The MTU `add-port mtu=M` set, if any.
    #[serde(default)]
    pub mtu: Option<u32>,
    /// `up` while a poll thread has it open, else `down`.
    #[serde(default)]
    pub state: String,
}

/// The daemon's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Response {
    /// Success: text to print as is (may be empty).
    Ok(String),
    /// Failure, with what kind and why.
    Err(Failure),
}

/// A refused or failed request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Which kind of failure.
    pub kind: FailureKind,
    /// The message for a person, e.g. `line 3, column 11: expected ...`.
    pub message: String,
}

impl Failure {
    /// A failure of `kind` saying `message`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Kinds of failure, so that scripts can tell "your input is wrong" from
/// "the daemon could not do it".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The request's protocol version is not the daemon's.
    Version,
    /// The frame was not a request (bad JSON, unknown command).
    Malformed,
    /// The frame's length is over [`MAX_MESSAGE`].
    TooLarge,
    /// Flow, group or packet text that does not parse.
    Parse,
    /// Parsed, but the switch refused it (unknown port, missing group, ...).
    Rejected,
    /// Too many clients at once.
    Busy,
    /// The daemon failed (state file not written, shutting down).
    Internal,
}

/// Why a frame could not be read or written. The doc comment of each variant
/// is its message.
#[derive(Debug)]
pub enum ProtoError {
    /// the peer closed the connection
    Closed,
    /// the peer closed the connection in the middle of a message
    Truncated,
    /// message of {0} bytes is over the limit of MAX_MESSAGE bytes
    TooLarge(usize),
    /// malformed message: {0}
    Malformed(String),
    /// protocol version {got} is not this side's version {want}
    Version {
        /// The version in the message.
        got: u32,
        /// Ours.
        want: u32,
    },
    /// {0}
    Io(std::io::Error),
}

impl std::fmt::Display for ProtoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtoError::Closed => write!(f, "the peer closed the connection"),
            ProtoError::Truncated => {
                write!(f, "the peer closed the connection in the middle of a message")
            }
            ProtoError::TooLarge(n) => {
                write!(f, "message of {n} bytes is over the limit of {MAX_MESSAGE} bytes")
            }
            ProtoError::Malformed(m) => write!(f, "malformed message: {m}"),
            ProtoError::Version { got, want } => write!(
                f,
                "protocol version {got} is not this side's version {want} (oxvs-ctl and oxvsd must come from the same release)"
            ),
            ProtoError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ProtoError {}

impl ProtoError {
    /// The failure reply a server sends for this error, if the peer is still
    /// there to read one.
    pub fn to_failure(&self) -> Option<Failure> {
        let kind = match self {
            ProtoError::TooLarge(_) => FailureKind::TooLarge,
            ProtoError::Malformed(_) => FailureKind::Malformed,
            ProtoError::Version { .. } => FailureKind::Version,
            ProtoError::Closed | ProtoError::Truncated | ProtoError::Io(_) => return None,
        };
        Some(Failure::new(kind, self.to_string()))
    }
}

/// Writes `msg` as one frame.
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> Result<(), ProtoError> {
    let body = serde_json::to_vec(msg).map_err(|e| ProtoError::Malformed(e.to_string()))?;
    if body.len() > MAX_MESSAGE {
        return Err(ProtoError::TooLarge(body.len()));
    }
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame).map_err(ProtoError::Io)?;
    w.flush().map_err(ProtoError::Io)
}

/// Reads one frame's body. A clean end of stream before the first byte is
/// [`ProtoError::Closed`]; an end anywhere later is [`ProtoError::Truncated`].
pub fn read_body<R: Read>(r: &mut R) -> Result<Vec<u8>, ProtoError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Err(ProtoError::Closed),
            Ok(0) => return Err(ProtoError::Truncated),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ProtoError::Io(e)),
        }
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(ProtoError::TooLarge(len));
    }
    let mut body = Vec::new();
    let n = r
        .take(len as u64)
        .read_to_end(&mut body)
        .map_err(ProtoError::Io)?;
    if n < len {
        return Err(ProtoError::Truncated);
    }
    Ok(body)
}

/// Decodes a request body, checking the version before the command so that
/// a request from another version is refused as such even when its command
/// has a shape this build does not know.
pub fn decode_request(body: &[u8]) -> Result<Request, ProtoError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ProtoError::Malformed(e.to_string()))?;
    let got = v
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| ProtoError::Malformed("no \"version\" number".into()))?;
    if got != u64::from(VERSION) {
        return Err(ProtoError::Version {
            got: u32::try_from(got).unwrap_or(u32::MAX),
            want: VERSION,
        });
    }
    serde_json::from_value(v).map_err(|e| ProtoError::Malformed(e.to_string()))
}

/// Decodes a response body.
pub fn decode_response(body: &[u8]) -> Result<Response, ProtoError> {
    serde_json::from_slice(body).map_err(|e| ProtoError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_survives_a_frame() {
        let req = Request::new(Command::AddFlows {
            text: "in_port=1,actions=drop\n".into(),
            bundle: true,
        });
        let mut buf = Vec::new();
        write_frame(&mut buf, &req).unwrap();
        assert_eq!(
            u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize,
            buf.len() - 4
        );
        let body = read_body(&mut &buf[..]).unwrap();
        assert_eq!(decode_request(&body).unwrap(), req);
        // The JSON is readable, which is the point of using it.
        let text = std::str::from_utf8(&body).unwrap();
        assert!(text.contains("\"cmd\":\"add-flows\""), "{text}");
    }

    #[test]
    fn end_of_stream_is_closed_before_a_frame_and_truncated_inside_one() {
        assert!(matches!(read_body(&mut &[][..]), Err(ProtoError::Closed)));
        assert!(matches!(
            read_body(&mut &[0u8, 0][..]),
            Err(ProtoError::Truncated)
        ));
        assert!(matches!(
            read_body(&mut &[0u8, 0, 0, 9, b'{'][..]),
            Err(ProtoError::Truncated)
        ));
    }

    #[test]
    fn an_oversized_length_is_refused_before_reading_the_body() {
        let frame = ((MAX_MESSAGE + 1) as u32).to_be_bytes();
        let e = read_body(&mut &frame[..]).unwrap_err();
        assert!(matches!(e, ProtoError::TooLarge(n) if n == MAX_MESSAGE + 1));
        assert_eq!(e.to_failure().unwrap().kind, FailureKind::TooLarge);
    }

    #[test]
    fn another_version_is_refused_even_with_an_unknown_command() {
        let e = decode_request(br#"{"version":7,"cmd":{"cmd":"teleport"}}"#).unwrap_err();
        assert!(matches!(
            e,
            ProtoError::Version {
                got: 7,
                want: VERSION
            }
        ));
        assert!(e.to_string().contains("version 7"), "{e}");
        let e = decode_request(b"\xff\x00garbage").unwrap_err();
        assert_eq!(e.to_failure().unwrap().kind, FailureKind::Malformed);
        let e = decode_request(br#"{"cmd":"show"}"#).unwrap_err();
        assert!(e.to_string().contains("version"), "{e}");
    }

    #[test]
    fn responses_round_trip() {
        for r in [
            Response::Ok("x\n".into()),
            Response::Err(Failure::new(FailureKind::Parse, "line 1, column 2: no")),
        ] {
            let mut buf = Vec::new();
            write_frame(&mut buf, &r).unwrap();
            let body = read_body(&mut &buf[..]).unwrap();
            assert_eq!(decode_response(&body).unwrap(), r);
        }
    }
}
