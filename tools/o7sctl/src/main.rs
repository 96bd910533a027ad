//! `o7sctl`: the reference `irm` verbs against a running `o7sd`, plus views of ports, the
//! name cache, flows and counters. Keywords may be abbreviated to any unique prefix, as in
//! `irm` (`o7sctl name reg oping-server ipcp eth1`).

use clap::{Parser, Subcommand};
use o7s::proto::{Ctl, Reply};
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::ExitCode;

/// Configure and inspect a running o7sd.
#[derive(Debug, Parser)]
#[command(name = "o7sctl", version)]
struct Cli {
    /// Print listings as JSON.
    #[arg(long, global = true)]
    json: bool,
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
        Cmd::Stats => Ctl::Stats,
        Cmd::Config { words } => match verb(words, &["load"])? {
            (_, [file]) => {
                let p = std::path::Path::new(file);
                let abs = p.canonicalize().map_err(|e| format!("{file}: {e}"))?;
                Ctl::ConfigLoad {
                    path: abs.display().to_string(),
                }
            }
            _ => return Err("usage: config load FILE".into()),
        },
    })
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn render(rows: &[serde_json::Map<String, Value>]) -> String {
    let Some(first) = rows.first() else {
        return "(none)\n".into();
    };
    let cols: Vec<&String> = first.keys().collect();
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
    // `--json` may also come after the verb's words (`o7sctl ipcp list --json`).
    let mut json_late = false;
    let args: Vec<String> = std::env::args()
        .filter(|a| {
            let j = a == "--json";
            json_late |= j;
            !j
        })
        .collect();
    let mut cli = Cli::parse_from(args);
    cli.json |= json_late;
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
                print!("{}", render(&rows));
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
