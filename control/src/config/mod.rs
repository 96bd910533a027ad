//! The reference's TOML configuration (`irmd.conf`): `[name."x"]`, `[eth-dix.x]`,
//! `[eth-llc.x]`, `[udp4.x]`, `[udp6.x]`, `[local.x]`, `[broadcast.x]`, `[unicast.x]`, and the
//! tutorials' older `[udp.x]` (read as udp4). Errors name the file, the line and the key.

use o7s_wire::hash::HashAlgo;
use std::path::PathBuf;

/// A configuration error, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File.
    pub file: String,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// The key (or table) at fault.
    pub key: String,
    /// What is wrong.
    pub msg: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.key.as_str()) {
            // The file as a whole (it cannot be read): no line, no key.
            (0, "-") => write!(f, "{}: {}", self.file, self.msg),
            (0, key) => write!(f, "{}: {key}: {}", self.file, self.msg),
            (line, "-") => write!(f, "{}:{line}: {}", self.file, self.msg),
            (line, key) => write!(f, "{}:{line}: {key}: {}", self.file, self.msg),
        }
    }
}

impl std::error::Error for ConfigError {}

pub use o7s_proto::registry::Lb;

/// A `[name."x"]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameConf {
    /// The name.
    pub name: String,
    /// Programs bound to it, each with its arguments and whether it is auto-started.
    pub progs: Vec<(String, Vec<String>, bool)>,
    /// Load balancing.
    pub lb: Lb,
    /// Security file overrides (`server_crt_file`, ...), kept for the OAP issue.
    pub paths: Vec<(String, PathBuf)>,
    /// `server_auth = "required"` (an o7s key; default "optional", as the reference): a
    /// flow to this name needs the server's certificate and signature.
    pub server_auth_required: bool,
}

/// IPCP types, in the reference's order (used to pick a layer for an allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IpcpKind {
    /// local.
    Local,
    /// unicast.
    Unicast,
    /// broadcast.
    Broadcast,
    /// eth-llc.
    EthLlc,
    /// eth-dix.
    EthDix,
    /// udp4.
    Udp4,
    /// udp6.
    Udp6,
}

impl IpcpKind {
    /// The table / CLI spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Unicast => "unicast",
            Self::Broadcast => "broadcast",
            Self::EthLlc => "eth-llc",
            Self::EthDix => "eth-dix",
            Self::Udp4 => "udp4",
            Self::Udp6 => "udp6",
        }
    }
    /// Parses the spelling (`udp` is udp4).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "local" => Self::Local,
            "unicast" => Self::Unicast,
            "broadcast" => Self::Broadcast,
            "eth-llc" => Self::EthLlc,
            "eth-dix" => Self::EthDix,
            "udp4" | "udp" => Self::Udp4,
            "udp6" => Self::Udp6,
            _ => return None,
        })
    }
}

/// An IPCP table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpcpConf {
    /// IPCP name.
    pub name: String,
    /// Type.
    pub kind: IpcpKind,
    /// Layer to bootstrap.
    pub bootstrap: Option<String>,
    /// Layer member to enrol with.
    pub enrol: Option<String>,
    /// Names to register.
    pub reg: Vec<String>,
    /// Members to connect to (Management and DT) after enrolment (unicast).
    pub conn: Vec<String>,
    /// Directory hash.
    pub hash: HashAlgo,
    /// Device (eth layers).
    pub dev: Option<String>,
    /// Ethertype (eth-dix).
    pub ethertype: u16,
    /// Address (udp layers).
    pub ip: Option<String>,
    /// Port (udp layers).
    pub port: u16,
    /// DNS server (udp layers).
    pub dns: Option<String>,
    /// Egress cap of the port on what the worker sends for unicast layers, bit/s (`rate`,
    /// o7s's own key: "100M", or an integer; 0 for none).
    pub rate_bps: Option<u64>,
    /// Most PDUs waiting per N-1 flow under the cap (`queue`, o7s's own key).
    pub queue: Option<u32>,
    /// Impairments of the data frames the port receives (o7s's own keys `loss`, `dup`,
    /// `reorder`: "1%", "0.1%"; `delay`: "5ms"), checked, as written.
    pub impair: [Option<String>; 5],
    /// Line of the table header (for run-time messages).
    pub line: usize,
    /// A unicast layer's settings (`[unicast.X]` bootstrap keys; defaults otherwise).
    pub uni: UniSettings,
    /// Layer membership (o7s's own keys of `[unicast.X]` and `[broadcast.X]`, issue 26):
    /// `member_ca` (the layer CA's certificate, PEM), `member_crt` and `member_key` (this
    /// IPCP's certificate, CN = its name, and key). All three or none; with them every N-1
    /// flow of the IPCP is mutually authenticated under that CA.
    pub member: Option<MemberFiles>,
}

/// The files of a layer member (`member_ca`, `member_crt`, `member_key`), as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberFiles {
    /// The layer CA's certificate(s): the trust anchors of membership.
    pub ca: String,
    /// This IPCP's certificate.
    pub crt: String,
    /// Its private key.
    pub key: String,
}

/// The settings of a unicast layer a `[unicast.X]` table bootstraps (the reference's keys
/// and defaults, facts §3.4); an enrollee takes the enroller's instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UniSettings {
    /// TTL of new PDUs.
    pub max_ttl: u32,
    /// `pol_link_state`: SIMPLE 0, LFA 1, ECMP 2.
    pub routing: u32,
    /// Link-state timers, in seconds.
    pub t_recalc: u32,
    /// Link-state timers, in seconds.
    pub t_update: u32,
    /// Link-state timers, in seconds.
    pub t_timeo: u32,
    /// `pol_cong_avoid`: NONE 0, MB_ECN 1.
    pub cong_avoid: u32,
    /// DHT settings.
    pub dht_alpha: u32,
    /// DHT settings.
    pub dht_k: u32,
    /// DHT settings, in seconds.
    pub dht_t_expire: u32,
    /// DHT settings, in seconds.
    pub dht_t_refresh: u32,
    /// DHT settings, in seconds.
    pub dht_t_replicate: u32,
    /// o7s's own, local (not handed out at enrolment): flood the withdrawal of a lost DT
    /// link and recompute at once (`ls_withdraw`, default true); false is the reference's
    /// link state (nothing sent, the table waits for `ls_t_recalc`).
    pub withdraw: bool,
}

impl Default for UniSettings {
    fn default() -> Self {
        Self {
            max_ttl: 60,
            routing: 0,
            t_recalc: 4,
            t_update: 15,
            t_timeo: 60,
            cong_avoid: 1,
            dht_alpha: 3,
            dht_k: 8,
            dht_t_expire: 86_400,
            dht_t_refresh: 900,
            dht_t_replicate: 900,
            withdraw: true,
        }
    }
}

/// A whole configuration, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// Names.
    pub names: Vec<NameConf>,
    /// IPCPs.
    pub ipcps: Vec<IpcpConf>,
    /// Remarks for the log (e.g. `[udp.x]` read as udp4).
    pub notes: Vec<String>,
}

mod parse;
pub use parse::{bad_dev, load, parse};

/// The Ethertypes of protocols the host's own stack speaks, which an eth-dix layer may not
/// take: the data plane's XDP program steers every frame of its layer's Ethertype away
/// from the kernel, so a layer on 0x0800 would cut the host's IPv4 on that device. The
/// reference (a raw socket that only copies frames) accepts them.
const HOST_ETHERTYPES: &[(u16, &str)] = &[
    (0x0800, "IPv4"),
    (0x0806, "ARP"),
    (0x8035, "RARP"),
    (0x8100, "802.1Q VLAN"),
    (0x86DD, "IPv6"),
    (0x8847, "MPLS"),
    (0x8848, "MPLS"),
    (0x8863, "PPPoE discovery"),
    (0x8864, "PPPoE"),
    (0x888E, "802.1X"),
    (0x88A8, "802.1ad VLAN"),
    (0x88CC, "LLDP"),
    (0x88E5, "MACsec"),
    (0x88F7, "PTP"),
];

/// Why `e` cannot be an eth-dix layer's Ethertype, if it cannot: below 0x0600 (an 802.3
/// length), 0xFFFF (reserved), or a protocol of the host's own ([`HOST_ETHERTYPES`]).
pub fn ethertype_refused(e: u16) -> Option<String> {
    if e < 0x0600 || e == 0xFFFF {
        return Some(format!("{e:#06x}: must be at least 0x0600 and not 0xFFFF"));
    }
    HOST_ETHERTYPES
        .iter()
        .find(|(t, _)| *t == e)
        .map(|(_, what)| {
            format!(
                "{e:#06x} is {what}, which the host itself speaks: the layer would take \
                 those frames from the kernel (pick another, e.g. the default 0xA000)"
            )
        })
}

#[cfg(test)]
mod tests;
