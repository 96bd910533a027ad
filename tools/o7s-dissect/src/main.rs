//! `o7s-dissect`: prints every Ouroboros frame of pcap/pcapng files layer by layer.

use clap::Parser;
use o7s_dissect::flows_csv::{FlowStats, DEFAULT_BIN_MS};
use o7s_dissect::{dissect_file, render_json, render_text, LayerSpec, Options};
use std::io::Write;
use std::process::ExitCode;

/// Print every Ouroboros frame (eth-dix, eth-llc, udp4/udp6 layers, unicast layers over
/// them, flow allocation, OAP, FRCT, oping) of capture files, layer by layer.
///
/// Which lower-layer flows carry a unicast layer cannot be read from the bytes; give it with
/// --layer, otherwise the dissector guesses and labels its guesses "GUESS".
///
/// With --flows-csv it prints, instead, the throughput of the unicast layer's flows per time
/// bin as CSV (header `bin,t_s,kind,dst,eid,pdus,bytes,mbit_s,ecn_marked,ecn_max`).
#[derive(Debug, Parser)]
#[command(name = "o7s-dissect", version)]
struct Cli {
    /// pcap or pcapng files (Ethernet link type); `-` reads standard input. A record cut
    /// short at the end (a capture still being written) is left out, with a note.
    #[arg(required = true)]
    files: Vec<std::path::PathBuf>,
    /// One JSON object per frame, then a summary object.
    #[arg(long)]
    json: bool,
    /// A lower-layer flow that carries a unicast layer, e.g. `eid=0x41:unicast`,
    /// `udp:eid=65:unicast`, `dix:eid=0x40:unicast,addr=4,eid=8`. Repeatable.
    #[arg(long = "layer", value_name = "SPEC")]
    layers: Vec<LayerSpec>,
    /// Do not guess which flows carry a unicast layer.
    #[arg(long)]
    no_guess: bool,
    /// Ethertype of the eth-dix layer.
    #[arg(long, default_value = "0xA000", value_parser = parse_u16)]
    ethertype: u16,
    /// UDP port of the udp layers.
    #[arg(long, default_value_t = 3435)]
    udp_port: u16,
    /// Name hash length in FLOW_REQs of eth and unicast layers (28, 32, 48, 64); guessed
    /// when not given.
    #[arg(long)]
    hash_len: Option<usize>,
    /// Also list frames of no Ouroboros layer.
    #[arg(long)]
    all: bool,
    /// Instead of the frames, print the unicast layer's per-flow throughput per time bin
    /// as CSV (more with --help).
    ///
    /// A header, then one row per time bin and flow that had PDUs, ordered by bin, kind,
    /// dst, eid. Columns:
    /// bin,t_s,kind,dst,eid,pdus,bytes,mbit_s,ecn_marked,ecn_max
    /// (bin 0 starts at the first record of the first file). Kind `data`: DT PDUs to an
    /// N+1 flow (eid >= 64) by DT destination address and eid; bytes counts whole DT PDUs
    /// as they were on the wire (also when cut by the snaplen), ecn_marked the PDUs with
    /// ECN > 0, ecn_max the largest ECN. Kind `flow_update`: flow allocator FLOW_UPDATEs by
    /// DT destination address and r_eid; ecn_max is the largest ECE. DT PDUs are found as
    /// without this flag (--layer, learnt from CEPs, or guessed); other frames are left
    /// out. A one-line summary goes to standard error.
    #[arg(long, conflicts_with_all = ["json", "all"])]
    flows_csv: bool,
    /// Bin length of --flows-csv, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_BIN_MS,
          value_parser = clap::value_parser!(u64).range(1..), requires = "flows_csv")]
    bin_ms: u64,
}

fn parse_u16(s: &str) -> Result<u16, String> {
    let v = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u16::from_str_radix(h, 16),
        None => s.parse(),
    };
    v.map_err(|e| format!("'{s}': {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(l) = cli.hash_len {
        if ![16, 28, 32, 48, 64].contains(&l) {
            eprintln!("o7s-dissect: --hash-len {l}: expected 16, 28, 32, 48 or 64");
            return ExitCode::from(2);
        }
    }
    let opts = Options {
        ethertype: cli.ethertype,
        udp_port: cli.udp_port,
        hash_len: cli.hash_len,
        layers: cli.layers,
        guess: !cli.no_guess,
        all: cli.all,
    };
    let mut status = ExitCode::SUCCESS;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut flows = if cli.flows_csv {
        match FlowStats::new(cli.bin_ms) {
            Ok(f) => Some(f),
            Err(e) => {
                eprintln!("o7s-dissect: --bin-ms: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    for path in &cli.files {
        // `-`: standard input (o7sctl capture ... -w - | o7s-dissect -).
        let read = if path.as_os_str() == "-" {
            let mut d = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut d).map(|_| d)
        } else {
            std::fs::read(path)
        };
        let data = match read {
            Ok(d) => d,
            Err(e) => {
                eprintln!("o7s-dissect: {}: {e}", path.display());
                status = ExitCode::from(2);
                continue;
            }
        };
        if let Ok((_, cut)) = o7s_wire::capfile::parse_partial(&data) {
            if cut > 0 {
                eprintln!(
                    "o7s-dissect: {}: the last {cut} bytes are a record cut short (a capture still being written?): left out",
                    path.display()
                );
            }
        }
        if let Some(f) = flows.as_mut() {
            if let Err(e) = f.add_file(&data, &opts) {
                eprintln!("o7s-dissect: {}: {e}", path.display());
                status = ExitCode::from(2);
            }
            continue;
        }
        match dissect_file(&data, &opts) {
            Ok((frames, sum)) => {
                let text = if cli.json {
                    render_json(&frames, &sum, opts.all)
                } else {
                    let head = if cli.files.len() > 1 {
                        format!("== {}\n", path.display())
                    } else {
                        String::new()
                    };
                    head + &render_text(&frames, &sum, opts.all)
                };
                if out.write_all(text.as_bytes()).is_err() {
                    return status;
                }
            }
            Err(e) => {
                eprintln!("o7s-dissect: {}: {e}", path.display());
                status = ExitCode::from(2);
            }
        }
    }
    if let Some(f) = flows {
        let _ = out.write_all(f.to_csv().as_bytes());
        eprintln!("o7s-dissect: {}", f.summary());
    }
    status
}
