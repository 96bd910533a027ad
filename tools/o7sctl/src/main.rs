//! `o7sctl`: the reference `irm` verbs against a running `o7sd`, plus views of ports, the
//! name cache, flows, workers and counters. Verbs and keywords may be abbreviated to any
//! unique prefix, as in `irm` (`o7sctl name reg oping-server ipcp eth1`, `o7sctl wor l`).

use clap::{Parser, Subcommand};
use o7s::proto::{Ctl, Reply};
use serde_json::Value;
use std::collections::BTreeMap;
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

#[derive(Debug, Subcommand)]
enum Cmd {
    /// IPCPs: `list`, `bootstrap name N layer L type eth-dix|eth-llc dev D [ethertype 0xA000] [hash SHA3_256]`,
    /// `create name N type T`, `destroy name N`.
    Ipcp {
        /// Verb and keyword/value pairs.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
    /// Names: `list`, `create N [lb spill|round-robin]`, `destroy N`,
    /// `register N ipcp I|layer L ...`, `unregister N ipcp I|layer L ...`.
    Name {
        /// Verb and keyword/value pairs.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
    /// `bind program PATH name N [auto] [-- ARGS...]`, `bind process PID name N`.
    Bind {
        /// What to bind and keyword/value pairs.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
    /// `unbind program PATH name N`, `unbind process PID name N`.
    Unbind {
        /// What to unbind and keyword/value pairs.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
    /// Data-plane ports: device, MAC, MTU, I/O path, counters.
    Port {
        /// `list` (default).
        words: Vec<String>,
    },
    /// The eth layers' name caches (like `arp -a`).
    Cache {
        /// `list` (default).
        words: Vec<String>,
    },
    /// Flows with their counters.
    Flow {
        /// `list` (default).
        words: Vec<String>,
    },
    /// Data-plane workers: CPU, polling, ports and flows owned, frames, sleeps, yields.
    Worker {
        /// `list` (default).
        words: Vec<String>,
    },
    /// Counters of dropped and refused messages.
    Stats,
    /// `config load FILE`: apply a configuration file to the running daemon (refused whole,
    /// with file, line and key, if it has an error).
    Config {
        /// `load FILE`.
        words: Vec<String>,
    },
}

fn matches(word: &str, full: &str) -> bool {
    !word.is_empty() && full.starts_with(word)
}

fn verb<'a>(
    words: &'a [String],
    verbs: &[&'static str],
) -> Result<(&'static str, &'a [String]), String> {
    let Some((w, rest)) = words.split_first() else {
        return Err(format!("expected one of: {}", verbs.join(", ")));
    };
    let hits: Vec<&str> = verbs.iter().copied().filter(|v| matches(w, v)).collect();
    match hits.as_slice() {
        [v] => Ok((v, rest)),
        [] => Err(format!("'{w}': expected one of: {}", verbs.join(", "))),
        _ => Err(format!("'{w}' is ambiguous: {}", hits.join(", "))),
    }
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

fn build(cmd: &Cmd) -> Result<Ctl, String> {
    Ok(match cmd {
        Cmd::Ipcp { words } => match verb(words, &["list", "create", "bootstrap", "destroy"])? {
            ("list", _) => Ctl::IpcpList,
            ("create", rest) => {
                let p = pairs(rest, &["name", "type"], &[])?;
                Ctl::IpcpCreate {
                    name: one(&p, "name")?,
                    kind: one(&p, "type")?,
                }
            }
            ("bootstrap", rest) => {
                let p = pairs(
                    rest,
                    &["name", "layer", "type", "dev", "ethertype", "hash"],
                    &[],
                )?;
                let mut settings = BTreeMap::new();
                for k in ["type", "dev", "ethertype", "hash"] {
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
            (_, rest) => Ctl::IpcpDestroy {
                name: one(&pairs(rest, &["name"], &[])?, "name")?,
            },
        },
        Cmd::Name { words } => match verb(
            words,
            &["list", "create", "destroy", "register", "unregister"],
        )? {
            ("list", _) => Ctl::NameList,
            (v, rest) => {
                let (name, rest) = rest.split_first().ok_or("a name is required")?;
                match v {
                    "create" => Ctl::NameCreate {
                        name: name.clone(),
                        lb: one(&pairs(rest, &["lb"], &[])?, "lb").ok(),
                    },
                    "destroy" => Ctl::NameDestroy { name: name.clone() },
                    _ => {
                        let p = pairs(rest, &["ipcp", "layer"], &[])?;
                        let targets: Vec<String> = p.values().flatten().cloned().collect();
                        if targets.is_empty() {
                            return Err("give 'ipcp NAME' or 'layer NAME'".into());
                        }
                        if v == "register" {
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
        },
        Cmd::Bind { words } | Cmd::Unbind { words } => {
            let bind = matches!(cmd, Cmd::Bind { .. });
            let (what, rest) = verb(words, &["program", "process"])?;
            let (target, rest) = rest
                .split_first()
                .ok_or(format!("the {what} is required"))?;
            let p = pairs(rest, &["name"], &["auto"])?;
            let name = one(&p, "name")?;
            match (what, bind) {
                ("program", true) => Ctl::BindProgram {
                    prog: target.clone(),
                    name,
                    auto: p.contains_key("auto"),
                    args: p.get("--").cloned().unwrap_or_default(),
                },
                ("program", false) => Ctl::UnbindProgram {
                    prog: target.clone(),
                    name,
                },
                (_, b) => {
                    let pid: i32 = target
                        .parse()
                        .map_err(|_| format!("'{target}' is not a pid"))?;
                    if b {
                        Ctl::BindProcess { pid, name }
                    } else {
                        Ctl::UnbindProcess { pid, name }
                    }
                }
            }
        }
        Cmd::Port { .. } => Ctl::PortList,
        Cmd::Cache { .. } => Ctl::CacheList,
        Cmd::Flow { .. } => Ctl::FlowList,
        Cmd::Worker { .. } => Ctl::WorkerList,
        Cmd::Stats => Ctl::Stats,
        Cmd::Config { words } => match verb(words, &["load"])? {
            (_, [file]) => {
                // Read here, with the caller's rights: the daemon never opens the path.
                let content = read_config(file)?;
                let p = std::path::Path::new(file);
                let abs = p.canonicalize().map_err(|e| format!("{file}: {e}"))?;
                Ctl::ConfigLoad {
                    path: abs.display().to_string(),
                    content: Some(content),
                }
            }
            _ => return Err("usage: config load FILE".into()),
        },
    })
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
];

/// The keys of `row`: the key columns first, then the rest.
fn ordered(row: &serde_json::Map<String, Value>) -> Vec<&String> {
    let rank = |k: &str| {
        KEY_COLUMNS
            .iter()
            .position(|c| *c == k)
            .unwrap_or(usize::MAX)
    };
    let mut keys: Vec<&String> = row.keys().collect();
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
        Ok(c) => c,
        Err(e) => {
            eprintln!("o7sctl: {e}");
            return ExitCode::from(2);
        }
    };
    match o7s::control(ctl) {
        Ok(Reply::Ok) => ExitCode::SUCCESS,
        Ok(Reply::Table { rows }) => {
            if cli.json {
                println!(
                    "{}",
                    Value::Array(rows.into_iter().map(Value::Object).collect())
                );
            } else {
                let width = std::env::var("COLUMNS")
                    .ok()
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(160);
                print!("{}", render_for(&rows, width, cli.table));
            }
            ExitCode::SUCCESS
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

#[cfg(test)]
mod abbreviation_tests {
    use super::*;

    #[test]
    fn verbs_may_be_abbreviated_to_a_unique_prefix() {
        let cli = Cli::try_parse_from(["o7sctl", "wor", "l"]);
        assert!(matches!(cli.map(|c| c.cmd), Ok(Cmd::Worker { .. })));
        let cli = Cli::try_parse_from(["o7sctl", "po"]);
        assert!(matches!(cli.map(|c| c.cmd), Ok(Cmd::Port { .. })));
        // "c" could be cache or config: refused, not guessed.
        assert!(Cli::try_parse_from(["o7sctl", "c", "list"]).is_err());
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
}
