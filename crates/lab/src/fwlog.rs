//! The firewall's decision log: a reader of the NFLOG group the firewall table logs every
//! classification to ([`apiwall_kernel::LOG_GROUP`]), one per firewall host, writing Azure's
//! wording to `lab/logs/firewall-<name>.log` and a JSON line to `lab/logs/firewall-<name>.jsonl`.
//!
//! The NFLOG socket is made inside the firewall's namespace (netlink sockets keep the namespace
//! they were made in). The reader ends quietly when that namespace disappears or is replaced;
//! the controller starts a new one for a re-created namespace. Parsing and formatting are pure.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apiwall_kernel::{DEFAULT_DENY_PREFIX, LOG_GROUP};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::nflog::{
    ConfigCmd, ConfigMode, PacketNla, ULogMessage, config_request,
};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily};
use netlink_sys::{Socket, constants::NETLINK_NETFILTER};
use serde_json::json;

/// How much of each packet the kernel copies: enough for the IP and transport headers.
const COPY_RANGE: u32 = 128;
/// How often a reader with nothing to read checks that its namespace is still there.
const CHECK: Duration = Duration::from_millis(500);

/// Denial lines per second a reader writes (twice that in a burst). A Deny rule's flow is not
/// marked as admitted, so each of its packets is classified, and logged, again: a stranger can
/// send those as fast as they like. The lines over the limit are counted, and the count written.
const DENY_LINES_PER_SEC: f64 = 20.0;

/// A token bucket for denial lines.
struct DenyLimit {
    tokens: f64,
    last: std::time::Instant,
    suppressed: u64,
}

impl DenyLimit {
    fn new() -> Self {
        Self {
            tokens: 2.0 * DENY_LINES_PER_SEC,
            last: std::time::Instant::now(),
            suppressed: 0,
        }
    }

    /// Whether one more denial line may be written now.
    fn take(&mut self) -> bool {
        let now = std::time::Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * DENY_LINES_PER_SEC;
        self.tokens = (self.tokens + refill).min(2.0 * DENY_LINES_PER_SEC);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// The summary of what was not written, once the limit lets lines through again.
    fn summary(&mut self) -> Option<String> {
        (self.suppressed > 0 && self.tokens >= 1.0).then(|| {
            let n = std::mem::take(&mut self.suppressed);
            format!(
                "{n} denied requests were not logged (more than {DENY_LINES_PER_SEC} per second)"
            )
        })
    }
}

/// Who decided: a rule, or the default deny.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Rule {
        allow: bool,
        collection: String,
        rule: String,
    },
    DefaultDeny,
}

/// The NFLOG prefix's meaning: `Allow <collection>/<rule>`, `Deny <collection>/<rule>`, `Deny`.
pub fn parse_prefix(prefix: &str) -> Option<Verdict> {
    if prefix == DEFAULT_DENY_PREFIX {
        return Some(Verdict::DefaultDeny);
    }
    let (word, rest) = prefix.split_once(' ')?;
    let allow = match word {
        "Allow" => true,
        "Deny" => false,
        _ => return None,
    };
    let (collection, rule) = rest.split_once('/')?;
    Some(Verdict::Rule {
        allow,
        collection: collection.to_string(),
        rule: rule.to_string(),
    })
}

/// What the log says about a packet's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    pub source: IpAddr,
    pub destination: IpAddr,
    pub l4: L4,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    /// ICMP or ICMPv6, with its type.
    Icmp {
        kind: u8,
    },
    /// Any other IP protocol, by number.
    Other(u8),
}

impl L4 {
    fn protocol(&self) -> String {
        match self {
            L4::Tcp { .. } => "TCP".into(),
            L4::Udp { .. } => "UDP".into(),
            L4::Icmp { .. } => "ICMP".into(),
            L4::Other(n) => format!("IP protocol {n}"),
        }
    }

    fn ports(&self) -> Option<(u16, u16)> {
        match *self {
            L4::Tcp { sport, dport } | L4::Udp { sport, dport } => Some((sport, dport)),
            _ => None,
        }
    }
}

/// Parses an IPv4 or IPv6 packet's addresses and its TCP, UDP or ICMP header (IPv6 extension
/// headers are skipped). `None`: too short, or not IP.
pub fn parse_packet(p: &[u8]) -> Option<Packet> {
    let version = p.first()? >> 4;
    let (source, destination, mut proto, mut at) = match version {
        4 => {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            let s: [u8; 4] = p.get(12..16)?.try_into().ok()?;
            let d: [u8; 4] = p.get(16..20)?.try_into().ok()?;
            (IpAddr::from(s), IpAddr::from(d), *p.get(9)?, ihl)
        }
        6 => {
            let s: [u8; 16] = p.get(8..24)?.try_into().ok()?;
            let d: [u8; 16] = p.get(24..40)?.try_into().ok()?;
            (IpAddr::from(s), IpAddr::from(d), *p.get(6)?, 40)
        }
        _ => return None,
    };
    if version == 6 {
        // Hop-by-hop, routing, destination options; fragment (8 bytes).
        while matches!(proto, 0 | 43 | 60 | 44) {
            let next = *p.get(at)?;
            at += if proto == 44 {
                8
            } else {
                (usize::from(*p.get(at + 1)?) + 1) * 8
            };
            proto = next;
        }
    }
    let port =
        |i: usize| -> Option<u16> { Some(u16::from_be_bytes(p.get(i..i + 2)?.try_into().ok()?)) };
    let l4 = match proto {
        6 => L4::Tcp {
            sport: port(at)?,
            dport: port(at + 2)?,
        },
        17 => L4::Udp {
            sport: port(at)?,
            dport: port(at + 2)?,
        },
        1 | 58 => L4::Icmp { kind: *p.get(at)? },
        n => L4::Other(n),
    };
    Some(Packet {
        source,
        destination,
        l4,
    })
}

fn endpoint(a: IpAddr, port: Option<u16>) -> String {
    match port {
        Some(p) => std::net::SocketAddr::new(a, p).to_string(),
        None => a.to_string(),
    }
}

/// Azure's wording: `TCP request from 10.240.0.4:41532 to 198.51.100.10:443. Action: Allow. Rule
/// Collection: C. Rule: R`; `ICMP Type=8 request from A to B. …`; the default deny ends `Action:
/// Deny. No rule matched. Proceeding with default action`.
pub fn azure_line(p: &Packet, v: &Verdict) -> String {
    let ports = p.l4.ports();
    let what = match p.l4 {
        L4::Icmp { kind } => format!("ICMP Type={kind}"),
        l4 => l4.protocol(),
    };
    let head = format!(
        "{what} request from {} to {}.",
        endpoint(p.source, ports.map(|x| x.0)),
        endpoint(p.destination, ports.map(|x| x.1)),
    );
    match v {
        Verdict::Rule {
            allow,
            collection,
            rule,
        } => format!(
            "{head} Action: {}. Rule Collection: {collection}. Rule: {rule}",
            if *allow { "Allow" } else { "Deny" }
        ),
        Verdict::DefaultDeny => {
            format!("{head} Action: Deny. No rule matched. Proceeding with default action")
        }
    }
}

/// The JSON form: `ts`, `protocol`, `source`, `sourcePort`, `destination`, `destinationPort`,
/// `action`, `ruleCollection`, `rule` (ports `null` without ports, collection and rule `null` for
/// the default deny, which also has `actionReason: "Default Action"`; ICMP adds `icmpType`).
pub fn json_line(ts: SystemTime, p: &Packet, v: &Verdict) -> serde_json::Value {
    let ports = p.l4.ports();
    let mut j = json!({
        "ts": rfc3339(ts),
        "protocol": p.l4.protocol(),
        "source": p.source.to_string(),
        "sourcePort": ports.map(|x| x.0),
        "destination": p.destination.to_string(),
        "destinationPort": ports.map(|x| x.1),
    });
    let o = j.as_object_mut().expect("object");
    if let L4::Icmp { kind } = p.l4 {
        o.insert("icmpType".into(), kind.into());
    }
    match v {
        Verdict::Rule {
            allow,
            collection,
            rule,
        } => {
            o.insert(
                "action".into(),
                if *allow { "Allow" } else { "Deny" }.into(),
            );
            o.insert("ruleCollection".into(), collection.as_str().into());
            o.insert("rule".into(), rule.as_str().into());
        }
        Verdict::DefaultDeny => {
            o.insert("action".into(), "Deny".into());
            o.insert("ruleCollection".into(), serde_json::Value::Null);
            o.insert("rule".into(), serde_json::Value::Null);
            o.insert("actionReason".into(), "Default Action".into());
        }
    }
    j
}

/// UTC, RFC 3339 with microseconds: `2026-11-28T13:02:15.123456Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

/// `lab/logs/firewall-<name>.log` and `.jsonl` under `home`.
pub fn log_paths(home: &Path, firewall: &str) -> (PathBuf, PathBuf) {
    let dir = crate::lab::lab_dir(home).join("logs");
    (
        dir.join(format!("firewall-{firewall}.log")),
        dir.join(format!("firewall-{firewall}.jsonl")),
    )
}

/// The namespace file's identity: a re-created namespace of the same name is another one.
fn netns_id(netns: &str) -> Option<(u64, u64)> {
    let m = std::fs::metadata(format!("/run/netns/{netns}")).ok()?;
    Some((m.dev(), m.ino()))
}

/// Starts the reader of `firewall`'s decisions in namespace `netns`. The thread ends when the
/// namespace goes (or is replaced), or if the socket cannot be set up (logged).
pub fn spawn_reader(home: &Path, firewall: &str, netns: &str) -> std::io::Result<JoinHandle<()>> {
    let (log, jsonl) = log_paths(home, firewall);
    let (firewall, netns) = (firewall.to_string(), netns.to_string());
    std::thread::Builder::new()
        .name(format!("fwlog-{firewall}"))
        .spawn(move || {
            if let Err(e) = read(&netns, &log, &jsonl) {
                tracing::warn!(%firewall, %netns, error = %e, "firewall log reader stopped");
            }
        })
}

fn io(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// Sends an nflog config request and checks the kernel's acknowledgement.
fn configure(socket: &Socket, msg: NetlinkMessage<NetfilterMessage>) -> Result<(), String> {
    let mut buf = vec![0; msg.header.length as usize];
    msg.serialize(&mut buf[..]);
    socket.send(&buf, 0).map_err(|e| io("send", e))?;
    let mut rx = vec![0u8; 4096];
    let n = socket
        .recv(&mut &mut rx[..], 0)
        .map_err(|e| io("recv", e))?;
    let reply =
        <NetlinkMessage<NetfilterMessage>>::deserialize(&rx[..n]).map_err(|e| io("ack", e))?;
    match reply.payload {
        NetlinkPayload::Error(e) if e.code.is_some() => Err(io("nflog config", e.to_io())),
        _ => Ok(()),
    }
}

/// Opens the NFLOG socket inside `netns`, bound to [`LOG_GROUP`].
fn open(netns: &str) -> Result<Socket, String> {
    apiwall_kernel::in_netns(netns, || -> Result<Socket, String> {
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(|e| io("socket", e))?;
        socket.bind_auto().map_err(|e| io("bind", e))?;
        configure(
            &socket,
            config_request(
                NetfilterProtoFamily::Unspec,
                LOG_GROUP,
                vec![
                    ConfigCmd::Bind.into(),
                    ConfigMode::new_packet(COPY_RANGE).into(),
                ],
            ),
        )?;
        Ok(socket)
    })
    .map_err(|e| e.to_string())?
}

fn read(netns: &str, log: &Path, jsonl: &Path) -> Result<(), String> {
    let Some(id) = netns_id(netns) else {
        return Ok(());
    };
    let socket = open(netns)?;
    rustix::net::sockopt::set_socket_timeout(
        &socket,
        rustix::net::sockopt::Timeout::Recv,
        Some(CHECK),
    )
    .map_err(|e| io("SO_RCVTIMEO", e))?;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io(&dir.display().to_string(), e))?;
    }
    let append = |p: &Path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map_err(|e| io(&p.display().to_string(), e))
    };
    let (mut text, mut json) = (append(log)?, append(jsonl)?);
    let mut limit = DenyLimit::new();
    let mut rx = vec![0u8; 1 << 16];
    loop {
        let n = match socket.recv(&mut &mut rx[..], 0) {
            Ok(n) => n,
            Err(e) => {
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) || e.raw_os_error() == Some(105)
                // ENOBUFS: lines were lost; keep reading.
                {
                    if netns_id(netns) != Some(id) {
                        return Ok(());
                    }
                    continue;
                }
                return Err(io("recv", e));
            }
        };
        let mut off = 0;
        while off < n {
            let Ok(msg) = <NetlinkMessage<NetfilterMessage>>::deserialize(&rx[off..n]) else {
                break;
            };
            let len = msg.header.length as usize;
            if let NetlinkPayload::InnerMessage(NetfilterMessage {
                inner: NetfilterMessageInner::ULog(ULogMessage::Packet(nlas)),
                ..
            }) = &msg.payload
            {
                let mut prefix = None;
                let mut packet = None;
                for nla in nlas {
                    match nla {
                        PacketNla::Prefix(p) => prefix = parse_prefix(&p.to_string_lossy()),
                        PacketNla::Payload(p) => packet = parse_packet(p),
                        _ => {}
                    }
                }
                let denied = !matches!(prefix, Some(Verdict::Rule { allow: true, .. }));
                if let Some(line) = limit.summary() {
                    let _ = text.write_all(format!("{line}\n").as_bytes());
                }
                if denied && !limit.take() {
                    // Over the denial limit: counted, not written.
                } else if let (Some(v), Some(p)) = (prefix, packet) {
                    // One write per line: a reader never sees half a line.
                    let _ = text.write_all(format!("{}\n", azure_line(&p, &v)).as_bytes());
                    let j = json_line(SystemTime::now(), &p, &v);
                    let _ = json.write_all(format!("{j}\n").as_bytes());
                }
            }
            if len == 0 {
                break;
            }
            off += len.next_multiple_of(4);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4_tcp() -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[9] = 6;
        p[12..16].copy_from_slice(&[10, 240, 0, 4]);
        p[16..20].copy_from_slice(&[198, 51, 100, 10]);
        p[20..22].copy_from_slice(&41532u16.to_be_bytes());
        p[22..24].copy_from_slice(&443u16.to_be_bytes());
        p
    }

    fn allow() -> Verdict {
        parse_prefix(&apiwall_kernel::log_prefix(
            apiwall_model::resources::Action::Allow,
            "myAzureFirewallCollection",
            "AllowTCPOutbound",
        ))
        .unwrap()
    }

    #[test]
    fn tcp_allow_reads_as_azure_writes_it() {
        let p = parse_packet(&v4_tcp()).unwrap();
        assert_eq!(
            azure_line(&p, &allow()),
            "TCP request from 10.240.0.4:41532 to 198.51.100.10:443. Action: Allow. Rule Collection: myAzureFirewallCollection. Rule: AllowTCPOutbound"
        );
        let j = json_line(UNIX_EPOCH, &p, &allow());
        assert_eq!(
            j,
            json!({"ts": "1970-01-01T00:00:00.000000Z", "protocol": "TCP", "source": "10.240.0.4",
                "sourcePort": 41532, "destination": "198.51.100.10", "destinationPort": 443,
                "action": "Allow", "ruleCollection": "myAzureFirewallCollection",
                "rule": "AllowTCPOutbound"})
        );
    }

    #[test]
    fn icmp_has_a_type_and_no_ports() {
        let mut p = v4_tcp();
        p[9] = 1;
        p[20] = 8;
        let p = parse_packet(&p).unwrap();
        let v = parse_prefix("Deny c/r").unwrap();
        assert_eq!(
            azure_line(&p, &v),
            "ICMP Type=8 request from 10.240.0.4 to 198.51.100.10. Action: Deny. Rule Collection: c. Rule: r"
        );
        let j = json_line(UNIX_EPOCH, &p, &v);
        assert_eq!(j["icmpType"], 8);
        assert!(j["sourcePort"].is_null());
    }

    #[test]
    fn udp_over_ipv6_past_an_extension_header_and_default_deny() {
        let mut p = vec![0u8; 60];
        p[0] = 0x60;
        p[6] = 60; // destination options, 8 bytes
        p[8..24].copy_from_slice(&"fd00::4".parse::<std::net::Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        p[40] = 17;
        p[41] = 0;
        p[48..50].copy_from_slice(&5353u16.to_be_bytes());
        p[50..52].copy_from_slice(&53u16.to_be_bytes());
        let p = parse_packet(&p).unwrap();
        assert_eq!(
            p.l4,
            L4::Udp {
                sport: 5353,
                dport: 53
            }
        );
        let v = parse_prefix(DEFAULT_DENY_PREFIX).unwrap();
        assert_eq!(
            azure_line(&p, &v),
            "UDP request from [fd00::4]:5353 to [2001:db8::1]:53. Action: Deny. No rule matched. Proceeding with default action"
        );
        let j = json_line(UNIX_EPOCH, &p, &v);
        assert!(j["rule"].is_null());
        assert_eq!(j["actionReason"], "Default Action");
    }

    #[test]
    fn denial_lines_are_rate_limited_and_counted() {
        let mut l = DenyLimit::new();
        let written = (0..1000).filter(|_| l.take()).count();
        assert!(written <= 2 * DENY_LINES_PER_SEC as usize + 1, "{written}");
        assert!(l.suppressed >= 1000 - written as u64);
        assert!(
            l.summary().is_none(),
            "no summary while still over the limit"
        );
        l.tokens = 1.0;
        assert!(
            l.summary()
                .unwrap()
                .starts_with(&format!("{} denied requests", 1000 - written))
        );
    }

    #[test]
    fn junk_is_refused() {
        assert_eq!(parse_packet(&[]), None);
        assert_eq!(parse_packet(&[0x45, 0, 0]), None);
        assert_eq!(parse_packet(&[0x20; 40]), None);
        assert_eq!(parse_prefix("apiwall x deny: "), None);
        assert_eq!(parse_prefix("Allow nocollection"), None);
    }

    #[test]
    fn timestamps_are_utc_rfc3339() {
        let t = UNIX_EPOCH + Duration::from_micros(1_795_870_935_123_456);
        assert_eq!(rfc3339(t), "2026-11-28T13:02:15.123456Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000000Z"
        );
    }
}
