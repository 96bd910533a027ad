//! The reference's TOML configuration (`irmd.conf`): `[name."x"]`, `[eth-dix.x]`,
//! `[eth-llc.x]`, `[udp4.x]`, `[udp6.x]`, `[local.x]`, `[broadcast.x]`, `[unicast.x]`, and the
//! tutorials' older `[udp.x]` (read as udp4). Errors name the file, the line and the key.

use o7s_wire::hash::HashAlgo;
use std::path::{Path, PathBuf};

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

struct Src<'a> {
    file: String,
    text: &'a str,
}

impl Src<'_> {
    fn err(&self, line: usize, key: &str, msg: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line,
            key: key.to_string(),
            msg: msg.into(),
        }
    }

    /// Line of the header of `[top.sub]` (quoted or not).
    fn header_line(&self, top: &str, sub: &str) -> usize {
        let forms = [
            format!("[{top}.{sub}]"),
            format!("[{top}.\"{sub}\"]"),
            format!("[\"{top}\".\"{sub}\"]"),
        ];
        self.text
            .lines()
            .position(|l| {
                let t: String = l
                    .split('#')
                    .next()
                    .unwrap_or("")
                    .chars()
                    .filter(|c| !c.is_whitespace())
                    .collect();
                forms.contains(&t)
            })
            .map(|i| i + 1)
            .unwrap_or(0)
    }

    /// Line of `key = ...` in the table whose header is on `header` (1-based).
    fn key_line(&self, header: usize, key: &str) -> usize {
        for (i, l) in self.text.lines().enumerate().skip(header) {
            let t = l.trim_start();
            if t.starts_with('[') {
                break;
            }
            let k = t.split('=').next().unwrap_or("").trim().trim_matches('"');
            if k == key && t.contains('=') {
                return i + 1;
            }
        }
        header
    }

    fn line_of_offset(&self, off: usize) -> usize {
        self.text
            .get(..off)
            .map(|s| s.matches('\n').count() + 1)
            .unwrap_or(0)
    }
}

fn str_list(v: &toml::Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|x| x.as_str().map(str::to_string))
        .collect()
}

/// Reads a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        line: 0,
        key: "-".into(),
        msg: format!("cannot read: {e}"),
    })?;
    parse(&text, &path.display().to_string())
}

/// Parses configuration text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
    let src = Src {
        file: file.to_string(),
        text,
    };
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e.span().map(|s| src.line_of_offset(s.start)).unwrap_or(0);
        src.err(line, "-", format!("not valid TOML: {}", e.message()))
    })?;
    let mut cfg = Config::default();
    for (top, val) in &table {
        let Some(sub) = val.as_table() else {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with(top.as_str()))
                .map_or(0, |i| i + 1);
            return Err(src.err(
                line,
                top,
                "expected a table such as [name.\"x\"] or [eth-dix.x]",
            ));
        };
        if top == "name" {
            for (name, v) in sub {
                cfg.names.push(parse_name(&src, name, v)?);
            }
            continue;
        }
        let Some(kind) = IpcpKind::parse(top) else {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with(&format!("[{top}")))
                .map_or(0, |i| i + 1);
            return Err(src.err(
                line,
                top,
                "unknown top-level table (name, local, eth-llc, eth-dix, udp4, udp6, broadcast, unicast)",
            ));
        };
        if top == "udp" {
            cfg.notes.push(format!(
                "{file}: [udp.*] is the tutorials' older spelling, read as [udp4.*]"
            ));
        }
        for (name, v) in sub {
            let i = parse_ipcp(&src, top, kind, name, v)?;
            if let Some(other) = cfg.ipcps.iter().find(|o| o.name == i.name) {
                return Err(src.err(
                    i.line,
                    name,
                    format!(
                        "an IPCP named {name} is already in this file ([{}.{name}], line {}): IPCP names are unique",
                        other.kind.as_str(),
                        other.line
                    ),
                ));
            }
            cfg.ipcps.push(i);
        }
    }
    Ok(cfg)
}

fn parse_name(src: &Src<'_>, name: &str, v: &toml::Value) -> Result<NameConf, ConfigError> {
    let hl = src.header_line("name", name);
    let t = v
        .as_table()
        .ok_or_else(|| src.err(hl, name, "expected a table"))?;
    let mut n = NameConf {
        name: name.to_string(),
        progs: vec![],
        lb: Lb::Spill,
        paths: vec![],
    };
    let mut progs = vec![];
    let mut args: Option<Vec<String>> = None;
    for (k, val) in t {
        let kl = src.key_line(hl, k);
        match k.as_str() {
            "prog" => {
                progs = str_list(val)
                    .ok_or_else(|| src.err(kl, k, "expected a list of program paths"))?
            }
            "args" => {
                args = Some(
                    str_list(val)
                        .ok_or_else(|| src.err(kl, k, "expected a list of argument strings"))?,
                )
            }
            "lb" => {
                let s = val
                    .as_str()
                    .ok_or_else(|| src.err(kl, k, "expected a string"))?;
                n.lb = Lb::parse(s).ok_or_else(|| {
                    src.err(
                        kl,
                        k,
                        format!("'{s}': expected \"spill\" or \"round-robin\""),
                    )
                })?;
            }
            "server_enc_file" | "server_crt_file" | "server_key_file" | "client_enc_file"
            | "client_crt_file" | "client_key_file" => {
                let s = val
                    .as_str()
                    .ok_or_else(|| src.err(kl, k, "expected a path"))?;
                n.paths.push((k.clone(), PathBuf::from(s)));
            }
            _ => return Err(src.err(kl, k, format!("unknown key in [name.\"{name}\"]"))),
        }
    }
    for (i, p) in progs.into_iter().enumerate() {
        let a = args.as_ref().and_then(|a| a.get(i));
        let list = a
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        n.progs.push((p, list, a.is_some()));
    }
    Ok(n)
}

fn parse_ipcp(
    src: &Src<'_>,
    top: &str,
    kind: IpcpKind,
    name: &str,
    v: &toml::Value,
) -> Result<IpcpConf, ConfigError> {
    let hl = src.header_line(top, name);
    let t = v
        .as_table()
        .ok_or_else(|| src.err(hl, name, "expected a table"))?;
    let mut c = IpcpConf {
        name: name.to_string(),
        kind,
        bootstrap: None,
        enrol: None,
        reg: vec![],
        conn: vec![],
        hash: if matches!(kind, IpcpKind::Udp4 | IpcpKind::Udp6) {
            HashAlgo::Md5
        } else {
            HashAlgo::Sha3_256
        },
        dev: None,
        rate_bps: None,
        queue: None,
        impair: [None, None, None, None, None],
        ethertype: o7s_wire::ethernet::ETHERTYPE_OUROBOROS,
        ip: None,
        port: o7s_wire::udp::DEFAULT_PORT,
        dns: None,
        line: hl,
        uni: UniSettings::default(),
        member: None,
    };
    let mut member: [Option<String>; 3] = [None, None, None];
    let kinds_ok = |ks: &[IpcpKind]| ks.contains(&kind);
    // The layers whose ports carry a unicast layer's PDUs: they may have an egress cap.
    const SHAPED: [IpcpKind; 4] = [
        IpcpKind::EthDix,
        IpcpKind::EthLlc,
        IpcpKind::Udp4,
        IpcpKind::Udp6,
    ];
    for (k, val) in t {
        let kl = src.key_line(hl, k);
        let s = || {
            val.as_str()
                .map(str::to_string)
                .ok_or_else(|| src.err(kl, k, "expected a string"))
        };
        match k.as_str() {
            "bootstrap" => c.bootstrap = Some(s()?),
            "enrol" | "enroll" => c.enrol = Some(s()?),
            "reg" => {
                c.reg = str_list(val).ok_or_else(|| src.err(kl, k, "expected a list of names"))?
            }
            "autobind" => {
                val.as_bool()
                    .ok_or_else(|| src.err(kl, k, "expected true or false"))?;
            }
            "conn" => {
                c.conn =
                    str_list(val).ok_or_else(|| src.err(kl, k, "expected a list of IPCP names"))?;
            }
            "hash" if !kinds_ok(&[IpcpKind::Udp4, IpcpKind::Udp6, IpcpKind::Broadcast]) => {
                let h = s()?;
                c.hash = HashAlgo::from_config_name(&h)
                    .filter(|a| *a != HashAlgo::Md5)
                    .ok_or_else(|| {
                        src.err(
                            kl,
                            k,
                            format!("'{h}': expected SHA3_224, SHA3_256, SHA3_384 or SHA3_512"),
                        )
                    })?;
            }
            "dev" if kinds_ok(&[IpcpKind::EthDix, IpcpKind::EthLlc]) => c.dev = Some(s()?),
            "ethertype" if kind == IpcpKind::EthDix => {
                let e = val
                    .as_integer()
                    .ok_or_else(|| src.err(kl, k, "expected an integer such as 0xA000"))?;
                if !(0x0600..0xFFFF).contains(&e) {
                    return Err(src.err(
                        kl,
                        k,
                        format!("{e:#x}: must be at least 0x0600 and not 0xFFFF"),
                    ));
                }
                c.ethertype = e as u16;
            }
            "ip" if kinds_ok(&[IpcpKind::Udp4, IpcpKind::Udp6]) => {
                let ip = s()?;
                let ok = match ip.parse::<std::net::IpAddr>() {
                    Ok(a) => a.is_ipv4() == (kind == IpcpKind::Udp4),
                    Err(_) => false,
                };
                if !ok {
                    let fam = if kind == IpcpKind::Udp4 {
                        "IPv4"
                    } else {
                        "IPv6"
                    };
                    return Err(src.err(kl, k, format!("'{ip}' is not an {fam} address")));
                }
                c.ip = Some(ip);
            }
            "dns" if kinds_ok(&[IpcpKind::Udp4, IpcpKind::Udp6]) => c.dns = Some(s()?),
            "rate" if kinds_ok(&SHAPED) => {
                let r = match val {
                    toml::Value::Integer(i) => o7s_abi::rate::parse_rate(&i.to_string()),
                    toml::Value::String(t) => o7s_abi::rate::parse_rate(t),
                    _ => Err("expected a rate such as \"100M\" or bit/s as an integer".into()),
                };
                c.rate_bps = Some(r.map_err(|e| src.err(kl, k, e))?);
            }
            "loss" | "dup" | "reorder" | "delay" | "corrupt"
                if kinds_ok(&[
                    IpcpKind::EthDix,
                    IpcpKind::EthLlc,
                    IpcpKind::Udp4,
                    IpcpKind::Udp6,
                ]) =>
            {
                let text = match val {
                    toml::Value::String(t) => t.clone(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Integer(i) => i.to_string(),
                    _ => String::new(),
                };
                let at = ["loss", "dup", "reorder", "delay", "corrupt"]
                    .iter()
                    .position(|x| *x == k.as_str())
                    .unwrap_or(0);
                let ok = if at == 3 {
                    o7s_abi::impair::parse_delay(&text).map(|_| ())
                } else {
                    o7s_abi::impair::parse_ppm(&text).map(|_| ())
                };
                ok.map_err(|e| src.err(kl, k, e))?;
                if let Some(slot) = c.impair.get_mut(at) {
                    *slot = Some(text);
                }
            }
            "queue" if kinds_ok(&SHAPED) => {
                let q = val
                    .as_integer()
                    .filter(|q| (1..=i64::from(o7s_abi::rate::MAX_QUEUE)).contains(q))
                    .ok_or_else(|| {
                        src.err(
                            kl,
                            k,
                            format!(
                                "expected a number of PDUs, 1 to {}",
                                o7s_abi::rate::MAX_QUEUE
                            ),
                        )
                    })?;
                c.queue = u32::try_from(q).ok();
            }
            "port" if kinds_ok(&[IpcpKind::Udp4, IpcpKind::Udp6]) => {
                let p = val
                    .as_integer()
                    .ok_or_else(|| src.err(kl, k, "expected an integer"))?;
                c.port = u16::try_from(p)
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| src.err(kl, k, format!("{p}: not a port")))?;
            }
            "addr_size" | "eid_size" | "max_ttl" | "addr-auth" | "routing" | "ls_t_recalc"
            | "ls_t_update" | "ls_t_timeo" | "congestion" | "directory" | "dht_alpha" | "dht_k"
            | "dht_t_expire" | "dht_t_refresh" | "dht_t_replicate" | "ls_withdraw"
                if kind == IpcpKind::Unicast =>
            {
                uni_key(src, kl, k, val, &mut c.uni)?
            }
            "member_ca" | "member_crt" | "member_key"
                if kinds_ok(&[IpcpKind::Unicast, IpcpKind::Broadcast]) =>
            {
                let at = ["member_ca", "member_crt", "member_key"]
                    .iter()
                    .position(|x| *x == k.as_str())
                    .unwrap_or(0);
                let path = s()?;
                if path.is_empty() {
                    return Err(src.err(kl, k, "expected a file name"));
                }
                if let Some(slot) = member.get_mut(at) {
                    *slot = Some(path);
                }
            }
            _ => {
                return Err(src.err(
                    kl,
                    k,
                    format!("unknown key for [{top}.{name}] ({})", kind.as_str()),
                ))
            }
        }
    }
    if c.bootstrap.is_none() && c.enrol.is_none() {
        return Err(src.err(
            hl,
            name,
            "needs bootstrap=\"<layer>\" or enrol=\"<member>\"",
        ));
    }
    c.member = match member {
        [Some(ca), Some(crt), Some(key)] => Some(MemberFiles { ca, crt, key }),
        [None, None, None] => None,
        _ => {
            return Err(src.err(
                hl,
                "member_ca",
                "member_ca, member_crt and member_key go together (the layer CA, this IPCP's certificate and its key)",
            ))
        }
    };
    if matches!(kind, IpcpKind::EthDix | IpcpKind::EthLlc) && c.dev.is_none() && c.enrol.is_none() {
        return Err(src.err(
            hl,
            "dev",
            format!("[{top}.{name}] needs dev=\"<interface>\""),
        ));
    }
    if matches!(kind, IpcpKind::Udp4 | IpcpKind::Udp6) && c.ip.is_none() && c.enrol.is_none() {
        return Err(src.err(hl, "ip", format!("[{top}.{name}] needs ip=\"<address>\"")));
    }
    Ok(c)
}

/// One bootstrap key of a `[unicast.X]` table, checked against the reference's limits.
fn uni_key(
    src: &Src<'_>,
    kl: usize,
    k: &str,
    val: &toml::Value,
    u: &mut UniSettings,
) -> Result<(), ConfigError> {
    let int = |lo: i64, hi: i64| -> Result<u32, ConfigError> {
        let v = val
            .as_integer()
            .ok_or_else(|| src.err(kl, k, "expected an integer"))?;
        if !(lo..=hi).contains(&v) {
            return Err(src.err(kl, k, format!("{v}: must be {lo}..={hi}")));
        }
        u32::try_from(v).map_err(|_| src.err(kl, k, format!("{v}: out of range")))
    };
    let word = || {
        val.as_str()
            .map(str::to_string)
            .ok_or_else(|| src.err(kl, k, "expected a string"))
    };
    match k {
        // The flat address policy and DT have these sizes only.
        "addr_size" => {
            int(4, 4)?;
        }
        "eid_size" => {
            int(8, 8)?;
        }
        "max_ttl" => u.max_ttl = int(1, 255)?,
        "addr-auth" => {
            let w = word()?;
            if w != "flat" {
                return Err(src.err(kl, k, format!("'{w}': only \"flat\" exists")));
            }
        }
        "routing" => {
            u.routing = match word()?.as_str() {
                "link-state" | "link_state" => 0,
                "lfa" => 1,
                "ecmp" => 2,
                w => {
                    return Err(src.err(kl, k, format!("'{w}': expected link-state, lfa or ecmp")))
                }
            }
        }
        "ls_t_recalc" => u.t_recalc = int(1, 3600)?,
        "ls_withdraw" => {
            u.withdraw = val
                .as_bool()
                .ok_or_else(|| src.err(kl, k, "expected true or false"))?;
        }
        "ls_t_update" => u.t_update = int(1, 3600)?,
        "ls_t_timeo" => u.t_timeo = int(1, 86_400)?,
        "congestion" => {
            u.cong_avoid = match word()?.as_str() {
                "none" => 0,
                // The reference reads "lfa" as MB-ECN and refuses "mb-ecn" (a bug, facts
                // §3.4): both mean MB-ECN here.
                "mb-ecn" | "lfa" => 1,
                w => return Err(src.err(kl, k, format!("'{w}': expected none or mb-ecn"))),
            }
        }
        "directory" => {
            let w = word()?;
            if !w.eq_ignore_ascii_case("dht") {
                return Err(src.err(kl, k, format!("'{w}': only \"DHT\" exists")));
            }
        }
        "dht_alpha" => u.dht_alpha = int(1, 10)?,
        "dht_k" => u.dht_k = int(1, 20)?,
        "dht_t_expire" => u.dht_t_expire = int(10, 86_400)?,
        "dht_t_refresh" => u.dht_t_refresh = int(3, 3600)?,
        "dht_t_replicate" => u.dht_t_replicate = int(3, 3600)?,
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn unicast_settings_are_read_and_checked() {
        let c = parse(
            "[unicast.u]\nbootstrap=\"l\"\nrouting=\"lfa\"\nls_t_update=5\ndht_k=4\ncongestion=\"none\"\n",
            "u.conf",
        )
        .unwrap();
        let u = c.ipcps[0].uni;
        assert_eq!((u.routing, u.t_update, u.dht_k, u.cong_avoid), (1, 5, 4, 0));
        for (bad, want) in [
            (
                "routing=\"ospf\"",
                "u.conf:3: routing: 'ospf': expected link-state, lfa or ecmp",
            ),
            ("dht_k=21", "u.conf:3: dht_k: 21: must be 1..=20"),
            ("addr_size=2", "u.conf:3: addr_size: 2: must be 4..=4"),
            (
                "dht_t_expire=\"x\"",
                "u.conf:3: dht_t_expire: expected an integer",
            ),
        ] {
            let e = parse(&format!("[unicast.u]\nbootstrap=\"l\"\n{bad}\n"), "u.conf").unwrap_err();
            assert_eq!(e.to_string(), want);
        }
    }

    #[test]
    fn tutorial04_server() {
        let t = "[name.\"oping-server\"]\nprog=[\"/usr/bin/oping\"]\nargs=[\"-l\"]\n\n[eth-dix.wifi1]\nbootstrap=\"wifi-network\"\ndev=\"wlan0\"\nreg=[\"oping-server\"]\n";
        let c = parse(t, "tut04.conf").unwrap();
        assert_eq!(
            c.names[0].progs,
            vec![("/usr/bin/oping".into(), vec!["-l".into()], true)]
        );
        assert_eq!(c.ipcps[0].kind, IpcpKind::EthDix);
        assert_eq!(c.ipcps[0].dev.as_deref(), Some("wlan0"));
        assert_eq!(c.ipcps[0].reg, vec!["oping-server"]);
        assert_eq!(c.ipcps[0].ethertype, 0xA000);
    }

    #[test]
    fn older_udp_table_and_lb() {
        let t = "[name.oping]\nlb=\"round-robin\"\nprog=[\"/usr/bin/oping\"]\n[udp.udp1]\nbootstrap=\"u\"\nip=\"127.0.0.1\"\n";
        let c = parse(t, "t05").unwrap();
        assert_eq!(c.names[0].lb, Lb::RoundRobin);
        assert!(!c.names[0].progs[0].2, "no args: not auto-started");
        assert_eq!(c.ipcps[0].kind, IpcpKind::Udp4);
        assert_eq!(c.ipcps[0].hash, HashAlgo::Md5);
        assert_eq!(c.notes.len(), 1);
    }

    #[test]
    fn ls_withdraw_is_a_local_boolean_on_by_default() {
        let on = parse("[unicast.u]\nbootstrap=\"l\"\n", "w.conf").unwrap();
        assert!(on.ipcps[0].uni.withdraw);
        let off = parse(
            "[unicast.u]\nbootstrap=\"l\"\nls_withdraw=false\n",
            "w.conf",
        )
        .unwrap();
        assert!(!off.ipcps[0].uni.withdraw);
        let e = parse("[unicast.u]\nbootstrap=\"l\"\nls_withdraw=0\n", "w.conf").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (3, "ls_withdraw"));
    }

    #[test]
    fn impairment_keys_are_read_for_ethernet_and_udp_and_refused_elsewhere() {
        let c = parse(
            "[eth-dix.x]\nbootstrap=\"l\"\ndev=\"lo\"\nloss=\"1%\"\ndup=0.001\nreorder=\"0.5%\"\ndelay=\"5ms\"\ncorrupt=\"0.2%\"\n",
            "i.conf",
        )
        .unwrap();
        assert_eq!(
            c.ipcps[0].impair,
            [
                Some("1%".to_string()),
                Some("0.001".to_string()),
                Some("0.5%".to_string()),
                Some("5ms".to_string()),
                Some("0.2%".to_string())
            ]
        );
        let e = parse(
            "[eth-dix.x]\nbootstrap=\"l\"\ndev=\"lo\"\ncorrupt=\"lots\"\n",
            "i.conf",
        )
        .unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (4, "corrupt"));
        let e = parse(
            "[eth-llc.x]\nbootstrap=\"l\"\ndev=\"lo\"\nloss=\"120%\"\n",
            "i.conf",
        )
        .unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (4, "loss"));
        let e = parse(
            "[eth-dix.x]\nbootstrap=\"l\"\ndev=\"lo\"\ndelay=\"3s\"\n",
            "i.conf",
        )
        .unwrap_err();
        assert_eq!(e.key, "delay");
        let u = parse(
            "[udp4.x]\nbootstrap=\"l\"\nip=\"127.0.0.1\"\nloss=\"1%\"\n",
            "i.conf",
        )
        .unwrap();
        assert_eq!(u.ipcps[0].impair[0].as_deref(), Some("1%"));
        assert!(parse("[unicast.x]\nbootstrap=\"l\"\nloss=\"1%\"\n", "i.conf").is_err());
        assert!(parse("[local.x]\nbootstrap=\"l\"\ndelay=\"1ms\"\n", "i.conf").is_err());
    }

    #[test]
    fn member_keys_go_together_on_unicast_and_broadcast_tables_only() {
        let c = parse(
            "[unicast.u]\nbootstrap=\"l\"\nmember_ca=\"/ca.pem\"\nmember_crt=\"/u.pem\"\nmember_key=\"/u.key\"\n",
            "m.conf",
        )
        .unwrap();
        assert_eq!(
            c.ipcps[0].member,
            Some(MemberFiles {
                ca: "/ca.pem".into(),
                crt: "/u.pem".into(),
                key: "/u.key".into()
            })
        );
        let c = parse("[broadcast.b]\nbootstrap=\"l\"\n", "m.conf").unwrap();
        assert_eq!(c.ipcps[0].member, None);
        let e = parse(
            "[broadcast.b]\nbootstrap=\"l\"\nmember_ca=\"/ca.pem\"\nmember_key=\"/u.key\"\n",
            "m.conf",
        )
        .unwrap_err();
        assert_eq!(e.key, "member_ca");
        assert!(e.to_string().contains("go together"), "{e}");
        let e = parse(
            "[eth-dix.e]\nbootstrap=\"l\"\ndev=\"lo\"\nmember_ca=\"/ca.pem\"\n",
            "m.conf",
        )
        .unwrap_err();
        assert_eq!(e.key, "member_ca");
        let e = parse("[unicast.u]\nbootstrap=\"l\"\nmember_crt=\"\"\n", "m.conf").unwrap_err();
        assert_eq!(e.key, "member_crt");
    }

    #[test]
    fn an_ipcp_name_is_given_once_across_kinds() {
        let e = parse(
            "[eth-dix.x]\nbootstrap=\"l\"\ndev=\"lo\"\n\n[unicast.x]\nbootstrap=\"u\"\n",
            "t.conf",
        )
        .unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (5, "x"));
        assert!(e.to_string().contains("[eth-dix.x], line 1"), "{e}");
        assert!(parse(
            "[eth-dix.x]\nbootstrap=\"l\"\ndev=\"lo\"\n\n[unicast.y]\nbootstrap=\"u\"\n",
            "t.conf"
        )
        .is_ok());
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = parse(
            "[eth-dix.x]\nbootstrap=\"l\"\ndev=\"lo\"\nethertype=0x05\n",
            "a.conf",
        )
        .unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.line, e.key.as_str()),
            ("a.conf", 4, "ethertype")
        );
        let e = parse("[name.n]\n\nlb=\"fast\"\n", "b.conf").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (3, "lb"));
        assert!(e.to_string().starts_with("b.conf:3: lb: 'fast'"), "{e}");
        let e = parse("[eth-dix.x]\nbootstrap=\"l\"\n", "c.conf").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (1, "dev"));
        let e = parse("[frobnicate.x]\nbootstrap=\"l\"\n", "d.conf").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (1, "frobnicate"));
        let e = parse(
            "[eth-dix.x]\nbootstrap=\"l\"\ndev=\"lo\"\ncolour=1\n",
            "e.conf",
        )
        .unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (4, "colour"));
        let e = parse("[eth-dix.x\n", "f.conf").unwrap_err();
        assert_eq!(e.line, 1);
        let e = parse(
            "[eth-llc.x]\nbootstrap=\"l\"\ndev=\"lo\"\nethertype=0xA000\n",
            "g.conf",
        )
        .unwrap_err();
        assert_eq!(
            (e.line, e.key.as_str()),
            (4, "ethertype"),
            "eth-llc has no Ethertype"
        );
    }
}
