//! `o7sctl`: the reference `irm` verbs against a running `o7sd`, plus views of ports, the
//! name cache, flows, workers and counters. Verbs and keywords may be abbreviated to any
//! unique prefix, as in `irm` (`o7sctl name reg oping-server ipcp eth1`, `o7sctl wor l`).

mod capture;

use clap::{Parser, Subcommand};
use o7s::proto::{Ctl, Reply};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

/// Configure and inspect a running o7sd.
#[derive(Debug, Parser)]
#[command(name = "o7sctl", version, infer_subcommands = true)]
struct Cli {
    /// Print listings as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Print listings as one line per row even when wider than the terminal (by default a
    /// listing wider than $COLUMNS, or 160 characters, is printed as one block per row).
    #[arg(long, global = true)]
    table: bool,
    /// Runtime directory of the o7sd to talk to (default $O7S_RUNDIR or /run/o7s).
    #[arg(long, global = true)]
    rundir: Option<std::path::PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Keyword/value pairs, as irm takes them (keywords may be abbreviated).
#[derive(Debug, clap::Args)]
struct Words {
    /// KEYWORD VALUE ...
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "KEYWORD VALUE"
    )]
    words: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// IPCPs: list, create, bootstrap, enroll, connect, disconnect, destroy.
    #[command(infer_subcommands = true, subcommand_required = true)]
    Ipcp {
        #[command(subcommand)]
        verb: IpcpCmd,
    },
    /// Names: list, create, destroy, register, unregister.
    // `n` stays `name` as in irm (`neighbour` shares the letter).
    #[command(infer_subcommands = true, subcommand_required = true, alias = "n")]
    Name {
        #[command(subcommand)]
        verb: NameCmd,
    },
    /// Bind a program or a process to a name.
    #[command(infer_subcommands = true, subcommand_required = true)]
    Bind {
        #[command(subcommand)]
        what: BindCmd,
    },
    /// Unbind a program or a process from a name.
    #[command(infer_subcommands = true, subcommand_required = true)]
    Unbind {
        #[command(subcommand)]
        what: UnbindCmd,
    },
    /// Data-plane ports: device, MAC, MTU, I/O path, egress cap, counters (`port list`);
    /// `port set PORT rate 100M [queue 512]` caps what a port sends for unicast layers.
    #[command(infer_subcommands = true)]
    Port {
        #[command(subcommand)]
        verb: Option<PortCmd>,
    },
    /// The eth layers' name caches, like `arp -a` (`cache list`).
    #[command(infer_subcommands = true)]
    Cache {
        #[command(subcommand)]
        verb: Option<ListCmd>,
    },
    /// Flows with their counters (`flow list`).
    #[command(infer_subcommands = true)]
    Flow {
        #[command(subcommand)]
        verb: Option<ListCmd>,
    },
    /// Data-plane workers: CPU, polling, ports and flows owned, frames, sleeps, yields
    /// (`worker list`).
    #[command(infer_subcommands = true)]
    Worker {
        #[command(subcommand)]
        verb: Option<ListCmd>,
    },
    /// The unicast IPCPs' forwarding tables: destination, next hop, alternates
    /// (`route list`).
    #[command(infer_subcommands = true)]
    Route {
        #[command(subcommand)]
        verb: Option<ListCmd>,
    },
    /// The unicast IPCPs' link-state databases: source, destination, sequence number
    /// (`lsdb list`).
    #[command(infer_subcommands = true)]
    Lsdb {
        #[command(subcommand)]
        verb: Option<ListCmd>,
    },
    /// The unicast IPCPs' neighbours: Management and DT connections with addresses
    /// (`neighbour list`).
    #[command(infer_subcommands = true)]
    Neighbour {
        #[command(subcommand)]
        verb: Option<ListCmd>,
    },
    /// The unicast IPCPs' directory (DHT): keys, addresses, expiry (`dht list`).
    #[command(infer_subcommands = true)]
    Dht {
        #[command(subcommand)]
        verb: Option<ListCmd>,
    },
    /// Counters of dropped and refused messages, by reason.
    Stats,
    /// Capture what a port sends and receives, as pcap, data frames that AF_XDP carries
    /// included (tcpdump sees only the management frames of an AF_XDP port). Ctrl-C stops.
    /// Needs root (or --admin-group).
    Capture {
        /// The port: its id (`o7sctl port list`), device or IPCP name.
        target: String,
        /// Only this flow's data frames (`o7sctl flow list`).
        #[arg(long)]
        flow: Option<u64>,
        /// Write the pcap to FILE (`-`: standard output).
        #[arg(short = 'w', value_name = "FILE")]
        write: String,
        /// Stop after COUNT frames (0: at Ctrl-C).
        #[arg(short = 'c', default_value_t = 0)]
        count: u64,
        /// Bytes kept of each frame.
        #[arg(long, default_value_t = 65535, value_parser = clap::value_parser!(u32).range(64..=65535))]
        snaplen: u32,
    },
    /// Apply a configuration file (`config load FILE`).
    #[command(infer_subcommands = true, subcommand_required = true)]
    Config {
        #[command(subcommand)]
        verb: ConfigCmd,
    },
    /// Print a completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print o7sctl's manual page (roff: `o7sctl man | man -l -`).
    Man,
}

#[derive(Debug, Subcommand)]
enum ListCmd {
    /// List them (the default).
    List,
}

#[derive(Debug, Subcommand)]
enum PortCmd {
    /// List them (the default).
    List,
    /// `set PORT [rate RATE] [queue PDUS] [loss R] [dup R] [reorder R] [delay T] [corrupt R]`: cap
    /// what the port (id, device or IPCP name) sends on its N-1 flows of unicast layers at
    /// RATE bit/s (100M, 1G, 0 for none), each N-1 flow's PDUs waiting in a queue of at most
    /// PDUS (default 1024, the reference's rbuff); MB-ECN marks by that queue. On Ethernet
    /// and UDP ports, impair the data frames (datagrams) it receives, for tests and experiments: lose, duplicate
    /// or hold back behind later ones a share R of them (1%, 0.1%, 0.01; 0 for none), and
    /// hold every one for T (5ms, 200us; at most 1s), flip one bit of the SDU of a share R
    /// (a CRC32 trailer catches it). Counted in `port list` (impair_*).
    Set(Words),
}

#[derive(Debug, Subcommand)]
enum IpcpCmd {
    /// List the IPCPs (created ones too).
    List,
    /// `create name N type eth-dix|eth-llc|udp4|udp6`: an IPCP to bootstrap later.
    Create(Words),
    /// `bootstrap name N layer L type T ...` with, for eth-dix and eth-llc,
    /// `dev D [ethertype 0xA000] [hash SHA3_256]`; for udp4 and udp6,
    /// `ip A [port 3435] [dns SERVER]` (names are MD5 hashes, resolved through /etc/hosts or
    /// the DNS server); for unicast, nothing more (the reference's defaults; others may
    /// enrol through it). `type` may be left out for an IPCP made with `ipcp create`.
    Bootstrap(Words),
    /// `enroll name N dst D [autobind]`: a unicast IPCP (created if missing) enrols in a
    /// layer through the member named D.
    Enroll(Words),
    /// `connect name N dst D [component mgmt|dt]`: Management and DT connections (both
    /// when no component is given, Management first) to the member named D.
    Connect(Words),
    /// `disconnect name N dst D [component mgmt|dt]`: tear down the connections (both
    /// components when none is given) to member D, named as in `ipcp connect` or by its
    /// address as `route list` shows it; their N-1 flows are deallocated (the member sees
    /// them end by its peer time-out).
    Disconnect(Words),
    /// `destroy name N` (refused while it carries flows).
    Destroy(Words),
}

#[derive(Debug, Subcommand)]
enum NameCmd {
    /// List the names with their programs, processes and layers.
    List,
    /// `create N [lb spill|round-robin]` (default: spill, as a configuration file's).
    Create(Words),
    /// `destroy N`.
    Destroy(Words),
    /// `register N ipcp I|layer L ...`.
    Register(Words),
    /// `unregister N ipcp I|layer L ...`.
    Unregister(Words),
}

#[derive(Debug, Subcommand)]
enum BindCmd {
    /// `program PATH name N [auto] [-- ARGS...]`: processes running PATH accept flows for
    /// N; with `auto` the daemon starts it (with ARGS) when a flow arrives and nobody
    /// accepts.
    Program(Words),
    /// `process PID name N`: process PID (only it, while it lives) accepts flows for N.
    Process(Words),
}

#[derive(Debug, Subcommand)]
enum UnbindCmd {
    /// `program PATH name N`.
    Program(Words),
    /// `process PID name N`.
    Process(Words),
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// `load FILE`: o7sctl reads FILE and sends its text; refused whole, with file, line and
    /// key, if it has an error, or if it makes an IPCP that exists into something else
    /// (another kind, layer or device). IPCPs that exist as the file says are left as they
    /// are, so a file loads again without making anything twice.
    Load {
        /// The configuration file (the reference's TOML).
        file: std::path::PathBuf,
    },
}

fn matches(word: &str, full: &str) -> bool {
    !word.is_empty() && full.starts_with(word)
}

/// Parses `key value` pairs (keys by unique prefix); `flags` take no value.
fn pairs(
    words: &[String],
    keys: &[&'static str],
    flags: &[&'static str],
) -> Result<BTreeMap<&'static str, Vec<String>>, String> {
    let mut out: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    let mut it = words.iter();
    while let Some(w) = it.next() {
        if w == "--" {
            out.entry("--").or_default().extend(it.by_ref().cloned());
            break;
        }
        if let Some(f) = flags.iter().find(|f| matches(w, f)) {
            out.entry(f).or_default().push(String::new());
            continue;
        }
        let hits: Vec<&'static str> = keys.iter().copied().filter(|k| matches(w, k)).collect();
        let key = match hits.as_slice() {
            [k] => *k,
            [] => {
                return Err(format!(
                    "unknown keyword '{w}' (expected {})",
                    keys.join(", ")
                ))
            }
            _ => return Err(format!("'{w}' is ambiguous: {}", hits.join(", "))),
        };
        let v = it.next().ok_or_else(|| format!("'{key}' needs a value"))?;
        out.entry(key).or_default().push(v.clone());
    }
    Ok(out)
}

fn one(p: &BTreeMap<&str, Vec<String>>, k: &str) -> Result<String, String> {
    p.get(k)
        .and_then(|v| v.first())
        .cloned()
        .ok_or_else(|| format!("'{k}' is required"))
}

/// No words left over (a listing takes none).
fn bare(words: &[String], what: &str) -> Result<(), String> {
    match words.first() {
        None => Ok(()),
        Some(w) => Err(format!("'{w}': {what} takes no more words")),
    }
}

/// The request a command line makes; `None` for the commands o7sctl answers itself.
fn build(cmd: &Cmd) -> Result<Option<Ctl>, String> {
    Ok(Some(match cmd {
        Cmd::Ipcp { verb } => match verb {
            IpcpCmd::List => Ctl::IpcpList,
            IpcpCmd::Create(w) => {
                let p = pairs(&w.words, &["name", "type"], &[])?;
                Ctl::IpcpCreate {
                    name: one(&p, "name")?,
                    kind: one(&p, "type")?,
                }
            }
            IpcpCmd::Bootstrap(w) => {
                const SETTINGS: [&str; 7] =
                    ["type", "dev", "ethertype", "hash", "ip", "port", "dns"];
                let mut keys = vec!["name", "layer"];
                keys.extend(SETTINGS);
                let p = pairs(&w.words, &keys, &[])?;
                let mut settings = BTreeMap::new();
                for k in SETTINGS {
                    if let Ok(v) = one(&p, k) {
                        settings.insert(k.to_string(), v);
                    }
                }
                Ctl::IpcpBootstrap {
                    name: one(&p, "name")?,
                    layer: one(&p, "layer")?,
                    settings,
                }
            }
            IpcpCmd::Enroll(w) => {
                let p = pairs(&w.words, &["name", "dst"], &["autobind"])?;
                Ctl::IpcpEnroll {
                    name: one(&p, "name")?,
                    dst: one(&p, "dst")?,
                    autobind: p.contains_key("autobind"),
                }
            }
            IpcpCmd::Connect(w) => {
                let p = pairs(&w.words, &["name", "dst", "component"], &[])?;
                Ctl::IpcpConnect {
                    name: one(&p, "name")?,
                    dst: one(&p, "dst")?,
                    component: one(&p, "component").ok(),
                }
            }
            IpcpCmd::Disconnect(w) => {
                let p = pairs(&w.words, &["name", "dst", "component"], &[])?;
                Ctl::IpcpDisconnect {
                    name: one(&p, "name")?,
                    dst: one(&p, "dst")?,
                    component: one(&p, "component").ok(),
                }
            }
            IpcpCmd::Destroy(w) => Ctl::IpcpDestroy {
                name: one(&pairs(&w.words, &["name"], &[])?, "name")?,
            },
        },
        Cmd::Name { verb } => {
            let (w, kind) = match verb {
                NameCmd::List => return Ok(Some(Ctl::NameList)),
                NameCmd::Create(w) => (w, "create"),
                NameCmd::Destroy(w) => (w, "destroy"),
                NameCmd::Register(w) => (w, "register"),
                NameCmd::Unregister(w) => (w, "unregister"),
            };
            let (name, rest) = w.words.split_first().ok_or("a name is required")?;
            match kind {
                "create" => Ctl::NameCreate {
                    name: name.clone(),
                    lb: one(&pairs(rest, &["lb"], &[])?, "lb").ok(),
                },
                "destroy" => {
                    bare(rest, "name destroy N")?;
                    Ctl::NameDestroy { name: name.clone() }
                }
                _ => {
                    let p = pairs(rest, &["ipcp", "layer"], &[])?;
                    let targets: Vec<String> = p.values().flatten().cloned().collect();
                    if targets.is_empty() {
                        return Err("give 'ipcp NAME' or 'layer NAME'".into());
                    }
                    if kind == "register" {
                        Ctl::NameRegister {
                            name: name.clone(),
                            targets,
                        }
                    } else {
                        Ctl::NameUnregister {
                            name: name.clone(),
                            targets,
                        }
                    }
                }
            }
        }
        Cmd::Bind { what } => {
            let (w, program) = match what {
                BindCmd::Program(w) => (w, true),
                BindCmd::Process(w) => (w, false),
            };
            let (target, rest) = w.words.split_first().ok_or(if program {
                "the program is required"
            } else {
                "the pid is required"
            })?;
            if program {
                let p = pairs(rest, &["name"], &["auto"])?;
                Ctl::BindProgram {
                    prog: target.clone(),
                    name: one(&p, "name")?,
                    auto: p.contains_key("auto"),
                    args: p.get("--").cloned().unwrap_or_default(),
                }
            } else {
                let p = pairs(rest, &["name"], &[])?;
                Ctl::BindProcess {
                    pid: pid_of(target)?,
                    name: one(&p, "name")?,
                }
            }
        }
        Cmd::Unbind { what } => {
            let (w, program) = match what {
                UnbindCmd::Program(w) => (w, true),
                UnbindCmd::Process(w) => (w, false),
            };
            let (target, rest) = w.words.split_first().ok_or(if program {
                "the program is required"
            } else {
                "the pid is required"
            })?;
            let name = one(&pairs(rest, &["name"], &[])?, "name")?;
            if program {
                Ctl::UnbindProgram {
                    prog: target.clone(),
                    name,
                }
            } else {
                Ctl::UnbindProcess {
                    pid: pid_of(target)?,
                    name,
                }
            }
        }
        Cmd::Port {
            verb: Some(PortCmd::Set(w)),
        } => {
            let (target, rest) = w
                .words
                .split_first()
                .ok_or("port set: name the port (its id, device or IPCP)")?;
            let p = pairs(
                rest,
                &[
                    "rate", "queue", "loss", "dup", "reorder", "delay", "corrupt",
                ],
                &[],
            )?;
            let queue = match one(&p, "queue") {
                Ok(q) => Some(
                    q.parse::<u32>()
                        .map_err(|_| format!("queue {q}: expected a number of PDUs"))?,
                ),
                Err(_) => None,
            };
            let rate = one(&p, "rate").ok();
            if let Some(r) = &rate {
                o7s_abi::rate::parse_rate(r)?;
            }
            let rate_of = |k: &str| -> Result<Option<String>, String> {
                let Ok(v) = one(&p, k) else { return Ok(None) };
                o7s_abi::impair::parse_ppm(&v).map_err(|e| format!("{k} {e}"))?;
                Ok(Some(v))
            };
            let (loss, dup, reorder) = (rate_of("loss")?, rate_of("dup")?, rate_of("reorder")?);
            let corrupt = rate_of("corrupt")?;
            let delay = one(&p, "delay").ok();
            if let Some(d) = &delay {
                o7s_abi::impair::parse_delay(d).map_err(|e| format!("delay {e}"))?;
            }
            if [&rate, &loss, &dup, &reorder, &delay, &corrupt]
                .iter()
                .all(|v| v.is_none())
                && queue.is_none()
            {
                return Err("port set: give rate RATE, queue PDUS, and/or loss/dup/reorder/corrupt RATE, delay TIME".into());
            }
            Ctl::PortSet {
                target: target.clone(),
                loss,
                dup,
                reorder,
                delay,
                corrupt,
                rate,
                queue,
            }
        }
        Cmd::Port { .. } => Ctl::PortList,
        Cmd::Cache { .. } => Ctl::CacheList,
        Cmd::Flow { .. } => Ctl::FlowList,
        Cmd::Route { .. } => Ctl::RouteList,
        Cmd::Lsdb { .. } => Ctl::LsdbList,
        Cmd::Dht { .. } => Ctl::DhtList,
        Cmd::Neighbour { .. } => Ctl::NeighbourList,
        Cmd::Worker { .. } => Ctl::WorkerList,
        Cmd::Stats => Ctl::Stats,
        Cmd::Config {
            verb: ConfigCmd::Load { file },
        } => {
            let file = file.display().to_string();
            // Read here, with the caller's rights: the daemon never opens the path.
            let content = read_config(&file)?;
            let abs = std::path::Path::new(&file)
                .canonicalize()
                .map_err(|e| format!("{file}: {e}"))?;
            Ctl::ConfigLoad {
                path: abs.display().to_string(),
                content: Some(content),
            }
        }
        Cmd::Completions { .. } | Cmd::Man | Cmd::Capture { .. } => return Ok(None),
    }))
}

fn pid_of(s: &str) -> Result<i32, String> {
    s.parse().map_err(|_| format!("'{s}' is not a pid"))
}

/// The text of configuration file `file`: at most `MAX_CONFIG_BYTES`, UTF-8.
fn read_config(file: &str) -> Result<String, String> {
    use std::io::Read;
    let limit = o7s::proto::MAX_CONFIG_BYTES;
    let f = std::fs::File::open(file).map_err(|e| format!("{file}: {e}"))?;
    let mut bytes = Vec::new();
    f.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{file}: {e}"))?;
    if bytes.len() > limit {
        return Err(format!(
            "{file}: larger than {} KiB: not a configuration file",
            limit / 1024
        ));
    }
    String::from_utf8(bytes)
        .map_err(|_| format!("{file}: not UTF-8 text: not a configuration file"))
}

fn cell(v: &Value) -> String {
    match v {
        // What the daemon shows may come from the wire (a layer's name from its enroller):
        // control characters are printed escaped, never sent to the terminal.
        Value::String(s) if s.chars().any(char::is_control) => s.escape_default().to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A listing as one block per row: "-[ N ]-" and then "key  value" lines.
/// Columns that say what a row is come first, in this order; the counters follow in
/// alphabetical order.
const KEY_COLUMNS: &[&str] = &[
    "flow",
    "worker",
    "port",
    "name",
    "ipcp",
    "state",
    "side",
    "type",
    "layer",
    "dev",
    "link",
    "mac",
    "hash",
    "peer",
    "pid",
    "local",
    "remote",
    "qos",
    "core",
    "polling",
    "expires_in_s",
    "learnt",
    "src",
    "dst",
    "next_hop",
    "neighbour",
    "component",
    "address",
    "key",
];

/// The keys of `row`: the key columns first, then the rest; no nested object (exact values
/// that the row shows for reading, such as a flow's `ca`: `--json` has them).
fn ordered(row: &serde_json::Map<String, Value>) -> Vec<&String> {
    let rank = |k: &str| {
        KEY_COLUMNS
            .iter()
            .position(|c| *c == k)
            .unwrap_or(usize::MAX)
    };
    let mut keys: Vec<&String> = row
        .iter()
        .filter_map(|(k, v)| (!v.is_object()).then_some(k))
        .collect();
    keys.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    keys
}

fn render_records(rows: &[serde_json::Map<String, Value>]) -> String {
    let key_width = rows
        .iter()
        .flat_map(|r| r.keys())
        .map(|k| k.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        out.push_str(&format!("-[ {} ]-\n", i + 1));
        for k in ordered(r) {
            if let Some(v) = r.get(k) {
                out.push_str(&format!("{k:<key_width$}  {}\n", cell(v)));
            }
        }
    }
    out
}

/// A listing for a terminal `width` characters wide: a table, or one block per row when
/// the table would be wider (unless `table`).
fn render_for(rows: &[serde_json::Map<String, Value>], width: usize, table: bool) -> String {
    let t = render(rows);
    let widest = t.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    if table || widest <= width {
        t
    } else {
        render_records(rows)
    }
}

fn render(rows: &[serde_json::Map<String, Value>]) -> String {
    let Some(first) = rows.first() else {
        return "(none)\n".into();
    };
    let cols: Vec<&String> = ordered(first);
    let mut widths: Vec<usize> = cols.iter().map(|c| c.len()).collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            cols.iter()
                .map(|c| r.get(*c).map(cell).unwrap_or_default())
                .collect()
        })
        .collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |vals: Vec<&str>| {
        vals.iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
            + "\n"
    };
    let mut out = line(cols.iter().map(|c| c.as_str()).collect());
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn main() -> ExitCode {
    // `--json` and `--table` may also come after the verb's words (`o7sctl ipcp list
    // --json`).
    let (mut json_late, mut table_late) = (false, false);
    let args: Vec<String> = std::env::args()
        .filter(|a| {
            let (j, t) = (a == "--json", a == "--table");
            json_late |= j;
            table_late |= t;
            !j && !t
        })
        .collect();
    let mut cli = Cli::parse_from(args);
    cli.json |= json_late;
    cli.table |= table_late;
    if let Some(r) = &cli.rundir {
        std::env::set_var(o7s::proto::RUNDIR_ENV, r);
    }
    let ctl = match build(&cli.cmd) {
        Ok(Some(c)) => c,
        Ok(None) => return local(&cli.cmd),
        Err(e) => {
            eprintln!("o7sctl: {e}");
            return ExitCode::from(2);
        }
    };
    match o7s::control(ctl) {
        Ok(Reply::Ok) => ExitCode::SUCCESS,
        Ok(Reply::Table { rows }) => {
            let text = if cli.json {
                format!(
                    "{}\n",
                    Value::Array(rows.into_iter().map(Value::Object).collect())
                )
            } else {
                let width = std::env::var("COLUMNS")
                    .ok()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(160);
                render_for(&rows, width, cli.table)
            };
            emit(text.as_bytes())
        }
        Ok(Reply::Error { code, message }) => {
            eprintln!("o7sctl: {code}: {message}");
            ExitCode::FAILURE
        }
        Ok(other) => {
            eprintln!("o7sctl: unexpected reply {other:?}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("o7sctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The commands o7sctl answers itself (completions, the manual page) or streams (capture).
fn local(cmd: &Cmd) -> ExitCode {
    use clap::CommandFactory;
    let mut c = Cli::command();
    match cmd {
        Cmd::Capture {
            target,
            flow,
            write,
            count,
            snaplen,
        } => match capture::run(target, *flow, write, *count, *snaplen) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("o7sctl: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Completions { shell } => {
            // Made whole first: clap_complete panics when a write fails.
            let mut out = Vec::new();
            clap_complete::generate(*shell, &mut c, "o7sctl", &mut out);
            emit(&out)
        }
        _ => {
            let mut out = Vec::new();
            match clap_mangen::Man::new(c).render(&mut out) {
                Ok(()) => emit(&out),
                Err(e) => {
                    eprintln!("o7sctl: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Writes `bytes` to `w` whole. A reader that went away (`o7sctl completions bash | head
/// -1`) is no error: it has read what it wanted.
fn write_out(w: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    match w.write_all(bytes).and_then(|()| w.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

/// Writes `bytes` to standard output: success, also when its reader went away.
fn emit(bytes: &[u8]) -> ExitCode {
    match write_out(&mut std::io::stdout().lock(), bytes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("o7sctl: standard output: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod abbreviation_tests {
    use super::*;

    #[test]
    fn verbs_may_be_abbreviated_to_a_unique_prefix() {
        let cli = Cli::try_parse_from(["o7sctl", "wor", "l"]);
        assert!(matches!(cli.map(|c| c.cmd), Ok(Cmd::Worker { .. })));
        let cli = Cli::try_parse_from(["o7sctl", "po"]);
        assert!(matches!(cli.map(|c| c.cmd), Ok(Cmd::Port { .. })));
        // "c" could be cache, completions or config: refused, not guessed.
        assert!(Cli::try_parse_from(["o7sctl", "c", "list"]).is_err());
    }

    fn ctl(args: &[&str]) -> Result<Option<Ctl>, String> {
        let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        build(&cli.cmd)
    }

    #[test]
    fn port_set_takes_a_port_a_rate_and_a_queue_and_refuses_bad_ones() {
        match ctl(&[
            "o7sctl", "port", "set", "e3", "rate", "100M", "queue", "256",
        ]) {
            Ok(Some(Ctl::PortSet {
                target,
                rate,
                queue,
                loss: None,
                ..
            })) => {
                assert_eq!(target, "e3");
                assert_eq!(rate.as_deref(), Some("100M"));
                assert_eq!(queue, Some(256));
            }
            other => panic!("{other:?}"),
        }
        match ctl(&[
            "o7sctl", "port", "set", "e3", "loss", "1%", "dup", "0.1%", "reorder", "0.01", "delay",
            "5ms", "corrupt", "0.5%",
        ]) {
            Ok(Some(Ctl::PortSet {
                rate: None,
                queue: None,
                loss,
                dup,
                reorder,
                delay,
                corrupt,
                ..
            })) => {
                assert_eq!(
                    [loss, dup, reorder, delay, corrupt].map(|v| v.unwrap_or_default()),
                    ["1%", "0.1%", "0.01", "5ms", "0.5%"]
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            ctl(&["o7sctl", "port", "set", "2", "rate", "0"]),
            Ok(Some(Ctl::PortSet { queue: None, .. }))
        ));
        for bad in [
            &["o7sctl", "port", "set", "e3"][..],
            &["o7sctl", "port", "set"][..],
            &["o7sctl", "port", "set", "e3", "rate", "fast"][..],
            &["o7sctl", "port", "set", "e3", "queue", "many"][..],
            &["o7sctl", "port", "set", "e3", "loss", "101%"][..],
            &["o7sctl", "port", "set", "e3", "delay", "5 hours"][..],
        ] {
            assert!(ctl(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(ctl(&["o7sctl", "port"]), Ok(Some(Ctl::PortList))));
    }

    #[test]
    fn unknown_words_are_errors_with_suggestions() {
        let e = ctl(&["o7sctl", "port", "lisst"]).unwrap_err();
        assert!(e.contains("lisst"), "{e}");
        let e = ctl(&["o7sctl", "flow", "dealloc", "1"]).unwrap_err();
        assert!(e.contains("dealloc"), "{e}");
        let e = ctl(&["o7sctl", "nmae", "list"]).unwrap_err();
        assert!(e.contains("name"), "a suggestion: {e}");
        assert!(ctl(&["o7sctl", "name", "destroy", "x", "y"]).is_err());
        assert!(ctl(&[
            "o7sctl",
            "ipcp",
            "bootstrap",
            "name",
            "a",
            "layer",
            "l",
            "colour",
            "red"
        ])
        .unwrap_err()
        .contains("unknown keyword 'colour'"));
    }

    #[test]
    fn irm_words_still_work() {
        assert!(matches!(ctl(&["o7sctl", "port"]), Ok(Some(Ctl::PortList))));
        assert!(matches!(
            ctl(&["o7sctl", "po", "l"]),
            Ok(Some(Ctl::PortList))
        ));
        assert!(matches!(
            ctl(&["o7sctl", "n", "reg", "srv", "ipcp", "e1"]),
            Ok(Some(Ctl::NameRegister { .. }))
        ));
        let Ok(Some(Ctl::BindProgram { auto, args, .. })) = ctl(&[
            "o7sctl", "bind", "program", "/bin/x", "name", "n", "auto", "--", "-l", "-v",
        ]) else {
            panic!("bind program");
        };
        assert!(auto);
        assert_eq!(args, vec!["-l", "-v"]);
        let Ok(Some(Ctl::IpcpBootstrap { settings, .. })) = ctl(&[
            "o7sctl",
            "ipcp",
            "bootstrap",
            "name",
            "u",
            "layer",
            "l",
            "type",
            "udp4",
            "ip",
            "127.0.0.2",
            "dns",
            "127.0.0.1",
        ]) else {
            panic!("udp bootstrap");
        };
        assert_eq!(settings.get("ip").map(String::as_str), Some("127.0.0.2"));
    }

    #[test]
    fn completions_and_man_page_are_made() {
        assert!(matches!(ctl(&["o7sctl", "completions", "bash"]), Ok(None)));
        assert!(matches!(ctl(&["o7sctl", "man"]), Ok(None)));
        let mut out = Vec::new();
        clap_mangen::Man::new(<Cli as clap::CommandFactory>::command())
            .render(&mut out)
            .unwrap();
        let page = String::from_utf8(out).unwrap();
        assert!(page.contains("o7sctl") && page.contains("ipcp"), "{page}");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod output_tests {
    use super::*;

    /// A standard output whose reader went away after `room` bytes.
    struct Pipe {
        room: usize,
        got: Vec<u8>,
        error: std::io::ErrorKind,
    }

    impl Write for Pipe {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.got.len() >= self.room {
                return Err(self.error.into());
            }
            let n = b.len().min(self.room - self.got.len());
            self.got.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_reader_gone_is_no_error_and_other_errors_are() {
        let mut p = Pipe {
            room: 4,
            got: vec![],
            error: std::io::ErrorKind::BrokenPipe,
        };
        assert!(write_out(&mut p, b"line 1\nline 2\n").is_ok());
        assert_eq!(p.got, b"line");
        let mut full = Pipe {
            room: 4,
            got: vec![],
            error: std::io::ErrorKind::StorageFull,
        };
        assert!(write_out(&mut full, b"line 1\n").is_err());
    }

    /// A verb whose help says "Things: a, b, c." names every one of its subcommands and
    /// nothing else (`o7sctl --help` lists `ipcp enroll`, `connect`, `disconnect`).
    #[test]
    fn verb_summaries_list_exactly_their_subcommands() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let mut checked = vec![];
        for verb in cli.get_subcommands() {
            let about = verb.get_about().map(|a| a.to_string()).unwrap_or_default();
            let Some((_, list)) = about.split_once(": ") else {
                continue;
            };
            let said: Vec<&str> = list.trim_end_matches('.').split(", ").collect();
            if said.iter().any(|w| w.contains(' ')) {
                continue; // prose, not a list of verbs
            }
            let real: Vec<&str> = verb
                .get_subcommands()
                .map(|c| c.get_name())
                .filter(|n| *n != "help")
                .collect();
            assert_eq!(said, real, "o7sctl {}: {about}", verb.get_name());
            checked.push(verb.get_name().to_string());
        }
        assert_eq!(checked, ["ipcp", "name"]);
    }
}

#[cfg(test)]
mod render_tests {
    use super::*;

    fn rows() -> Vec<serde_json::Map<String, Value>> {
        let r = serde_json::json!({"port": 1, "io_path": "af_xdp (XDP skb mode, copy)", "rx": 7});
        vec![r.as_object().cloned().unwrap_or_default()]
    }

    #[test]
    fn narrow_listings_are_tables_and_wide_ones_blocks() {
        let wide = render_for(&rows(), 200, false);
        assert_eq!(wide.lines().count(), 2, "{wide}");
        let narrow = render_for(&rows(), 20, false);
        assert!(narrow.starts_with("-[ 1 ]-\n"), "{narrow}");
        assert!(
            narrow.contains("io_path  af_xdp (XDP skb mode, copy)\n"),
            "{narrow}"
        );
        assert!(narrow.contains("rx       7\n"), "{narrow}");
        assert_eq!(
            render_for(&rows(), 20, true),
            wide,
            "--table keeps the table"
        );
    }

    #[test]
    fn nested_objects_are_for_json_only() {
        let r = serde_json::json!({"flow": 3, "rate": "81.3M", "ca": {"rate_bps": 81_312_345}});
        let rows = vec![r.as_object().cloned().unwrap_or_default()];
        for t in [render_for(&rows, 200, false), render_for(&rows, 5, false)] {
            assert!(t.contains("81.3M"), "{t}");
            assert!(!t.contains("ca") && !t.contains("81312345"), "{t}");
        }
    }
}
