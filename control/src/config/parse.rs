//! Reading a configuration file: the TOML parsed, each section checked, and every error
//! named with its file, line and key.

use crate::config::{Config, ConfigError, IpcpConf, IpcpKind, MemberFiles, NameConf, UniSettings};
use o7s_proto::ipcp::unicast::{dht_bounds, ls_bounds};
use o7s_proto::registry::Lb;
use o7s_wire::hash::HashAlgo;
use std::path::{Path, PathBuf};

pub(super) struct Src<'a> {
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

pub(super) fn str_list(v: &toml::Value) -> Option<Vec<String>> {
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
        // `[unicast]` alone, its keys right under it: the table has no name.
        if sub.values().any(|v| !v.is_table()) {
            let line = text
                .lines()
                .position(|l| l.trim() == format!("[{top}]"))
                .map_or(0, |i| i + 1);
            return Err(src.err(line, top, format!("[{top}] needs a name: [{top}.NAME]")));
        }
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
            let both = [IpcpKind::Unicast, IpcpKind::Broadcast];
            if !i.conn.is_empty() && !both.contains(&i.kind) {
                cfg.notes.push(format!(
                    "{file}:{}: [{top}.{name}] conn: only unicast and broadcast IPCPs connect; ignored",
                    i.line
                ));
            }
            if !i.reg.is_empty() && i.kind == IpcpKind::Broadcast {
                cfg.notes.push(format!(
                    "{file}:{}: [{top}.{name}] reg: o7s registers no names in a broadcast layer (apps join it by its name); ignored",
                    i.line
                ));
            }
            cfg.ipcps.push(i);
        }
    }
    Ok(cfg)
}

pub(super) fn parse_name(
    src: &Src<'_>,
    name: &str,
    v: &toml::Value,
) -> Result<NameConf, ConfigError> {
    let hl = src.header_line("name", name);
    o7s::proto::check_name(name)
        .map_err(|why| src.err(hl, &name.escape_debug().to_string(), why))?;
    let t = v
        .as_table()
        .ok_or_else(|| src.err(hl, name, "expected a table"))?;
    let mut n = NameConf {
        name: name.to_string(),
        progs: vec![],
        lb: Lb::Spill,
        paths: vec![],
        server_auth_required: false,
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
                // As the reference (realpath): the file must exist. A mistyped path would
                // otherwise leave the name without encryption or authentication.
                if let Err(e) = std::fs::metadata(s) {
                    return Err(src.err(kl, k, format!("'{s}': {e}")));
                }
                n.paths.push((k.clone(), PathBuf::from(s)));
            }
            "server_auth" => {
                n.server_auth_required = match val.as_str() {
                    Some("required") => true,
                    Some("optional") => false,
                    _ => {
                        return Err(src.err(
                            kl,
                            k,
                            "expected \"required\" or \"optional\" (the default)",
                        ))
                    }
                }
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

pub(super) fn parse_ipcp(
    src: &Src<'_>,
    top: &str,
    kind: IpcpKind,
    name: &str,
    v: &toml::Value,
) -> Result<IpcpConf, ConfigError> {
    let hl = src.header_line(top, name);
    // A name as the daemon takes it from o7sctl and apps (o7s::proto::check_name).
    let named = |line: usize, k: &str, n: String| -> Result<String, ConfigError> {
        o7s::proto::check_name(&n)
            .map(|()| n)
            .map_err(|why| src.err(line, k, why))
    };
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
    named(hl, &name.escape_debug().to_string(), name.to_string())?;
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
            "bootstrap" => c.bootstrap = Some(named(kl, k, s()?)?),
            "enrol" | "enroll" if kinds_ok(&[IpcpKind::Unicast, IpcpKind::Broadcast]) => {
                c.enrol = Some(named(kl, k, s()?)?)
            }
            "enrol" | "enroll" => {
                return Err(src.err(
                    kl,
                    k,
                    format!("a {top} IPCP bootstraps a layer of its own: enrol is for unicast and broadcast IPCPs"),
                ))
            }
            "reg" => {
                c.reg = str_list(val).ok_or_else(|| src.err(kl, k, "expected a list of names"))?;
                for n in &c.reg {
                    named(kl, k, n.clone())?;
                }
            }
            "autobind" => {
                val.as_bool()
                    .ok_or_else(|| src.err(kl, k, "expected true or false"))?;
            }
            "conn" => {
                c.conn =
                    str_list(val).ok_or_else(|| src.err(kl, k, "expected a list of IPCP names"))?;
                for n in &c.conn {
                    named(kl, k, n.clone())?;
                }
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
                // The reference's unicast directory may hash with another; o7s's does not,
                // and a layer whose members hash apart finds no names.
                if kind == IpcpKind::Unicast && c.hash != HashAlgo::Sha3_256 {
                    return Err(src.err(
                        kl,
                        k,
                        format!("'{h}': o7s's unicast layers hash names with SHA3_256 only (the reference's default)"),
                    ));
                }
            }
            "dev" if kinds_ok(&[IpcpKind::EthDix, IpcpKind::EthLlc]) => {
                let d = s()?;
                if let Some(why) = bad_dev(&d) {
                    return Err(src.err(kl, k, format!("'{}': {why}", d.escape_debug())));
                }
                c.dev = Some(d);
            }
            "ethertype" if kind == IpcpKind::EthDix => {
                let e = val
                    .as_integer()
                    .ok_or_else(|| src.err(kl, k, "expected an integer such as 0xA000"))?;
                let e = u16::try_from(e)
                    .map_err(|_| src.err(kl, k, format!("{e}: must fit 16 bits")))?;
                if let Some(why) = super::ethertype_refused(e) {
                    return Err(src.err(kl, k, why));
                }
                c.ethertype = e;
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
            "dns" if kinds_ok(&[IpcpKind::Udp4, IpcpKind::Udp6]) => {
                let d = s()?;
                if crate::dns::server_addr(&d).is_none() {
                    return Err(src.err(
                        kl,
                        k,
                        format!("'{}': expected an IP address (and port), such as 127.0.0.1 or [::1]:53", d.escape_debug()),
                    ));
                }
                c.dns = Some(d);
            }
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
    if matches!(kind, IpcpKind::EthDix | IpcpKind::EthLlc) && c.dev.is_none() {
        return Err(src.err(
            hl,
            "dev",
            format!("[{top}.{name}] needs dev=\"<interface>\""),
        ));
    }
    if matches!(kind, IpcpKind::Udp4 | IpcpKind::Udp6) && c.ip.is_none() {
        return Err(src.err(hl, "ip", format!("[{top}.{name}] needs ip=\"<address>\"")));
    }
    Ok(c)
}

/// One bootstrap key of a `[unicast.X]` table, checked against the reference's limits.
pub(super) fn uni_key(
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
    let bounded = |(lo, hi): (u32, u32)| int(i64::from(lo), i64::from(hi));
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
        "ls_t_recalc" => u.t_recalc = bounded(ls_bounds::T_RECALC)?,
        "ls_withdraw" => {
            u.withdraw = val
                .as_bool()
                .ok_or_else(|| src.err(kl, k, "expected true or false"))?;
        }
        "ls_t_update" => u.t_update = bounded(ls_bounds::T_UPDATE)?,
        "ls_t_timeo" => u.t_timeo = bounded(ls_bounds::T_TIMEO)?,
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
        "dht_alpha" => u.dht_alpha = bounded(dht_bounds::ALPHA)?,
        "dht_k" => u.dht_k = bounded(dht_bounds::K)?,
        "dht_t_expire" => u.dht_t_expire = bounded(dht_bounds::T_EXPIRE)?,
        "dht_t_refresh" => u.dht_t_refresh = bounded(dht_bounds::T_REFRESH)?,
        "dht_t_replicate" => u.dht_t_replicate = bounded(dht_bounds::T_REPLICATE)?,
        _ => {}
    }
    Ok(())
}

/// Why `dev` cannot be a network interface's name (Linux: 1 to 15 bytes, no `/`, no
/// white space, not `.` or `..`), if it cannot: it becomes a path under /sys/class/net.
pub fn bad_dev(dev: &str) -> Option<&'static str> {
    if dev.is_empty() || dev.len() > 15 {
        Some("an interface name has 1 to 15 bytes")
    } else if dev == "." || dev == ".." || dev.contains('/') {
        Some("an interface name is not '.' or '..' and holds no '/'")
    } else if dev.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("an interface name holds no white space or control characters")
    } else {
        None
    }
}
