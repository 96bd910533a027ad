//! `obc`: the reference's broadcast tool. It joins a broadcast layer (`-n`, the reference's
//! `flow_join`); with `-l` it prints every message that comes from the other members, else
//! it writes its message (`-m`) to the layer and leaves.
//!
//! o7s's own flags: `--count` (a listener leaves after that many messages), `--timeout` (a
//! listener that waits longer than that for the next message fails), `--repeat` and
//! `--interval` (a sender writes its message more than once).

use clap::Parser;
use o7s::{Error, Flow};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

/// Ouroboros broadcast: send a message to a broadcast layer, or listen to one.
#[derive(Debug, Parser)]
#[command(name = "obc", version)]
struct Cli {
    /// Listen: print every message from the layer.
    #[arg(short = 'l', long)]
    listen: bool,
    /// The broadcast layer to join.
    #[arg(short = 'n', long = "name")]
    name: String,
    /// The message to send.
    #[arg(short = 'm', long, default_value = "Hello from obc!")]
    message: String,
    /// Listener: leave after this many messages (0: never).
    #[arg(short = 'c', long, default_value_t = 0)]
    count: u64,
    /// Listener: fail when no message comes for this many ms (0: wait for ever).
    #[arg(short = 't', long, default_value_t = 0)]
    timeout: u64,
    /// Sender: write the message this many times.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    repeat: u64,
    /// Sender: pause between two writes, in ms.
    #[arg(long, default_value_t = 0)]
    interval: u64,
    /// Runtime directory of the o7sd to use (default $O7S_RUNDIR or /run/o7s).
    #[arg(long, value_name = "DIR")]
    rundir: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(r) = &cli.rundir {
        std::env::set_var(o7s::proto::RUNDIR_ENV, r);
    }
    let mut f = match Flow::join(&cli.name) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("obc: cannot join broadcast layer {}: {e}", cli.name);
            return ExitCode::FAILURE;
        }
    };
    if cli.listen {
        listen(&cli, &mut f)
    } else {
        send(&cli, &f)
    }
}

fn listen(cli: &Cli, f: &mut Flow) -> ExitCode {
    if cli.timeout > 0 {
        f.set_read_timeout(Some(Duration::from_millis(cli.timeout)));
    }
    eprintln!("obc: listening on broadcast layer {}", cli.name);
    let mut buf = vec![0u8; 65536];
    let mut got = 0u64;
    let mut out = std::io::stdout();
    while cli.count == 0 || got < cli.count {
        match f.read(&mut buf) {
            Ok(n) => {
                got += 1;
                let text = String::from_utf8_lossy(buf.get(..n).unwrap_or_default());
                // Any member may send any bytes: control characters (terminal escapes)
                // are shown escaped, not sent to the terminal.
                let text = shown(&text);
                let _ = writeln!(out, "Message received: {text}");
                let _ = out.flush();
            }
            Err(Error::Timeout) => {
                eprintln!("obc: no message for {} ms ({got} received)", cli.timeout);
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("obc: read failed after {got} messages: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn send(cli: &Cli, f: &Flow) -> ExitCode {
    for i in 0..cli.repeat {
        if i > 0 && cli.interval > 0 {
            std::thread::sleep(Duration::from_millis(cli.interval));
        }
        if let Err(e) = f.write(cli.message.as_bytes()) {
            eprintln!("obc: write failed: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!(
        "Sent {} message(s) to broadcast layer {}.",
        cli.repeat, cli.name
    );
    ExitCode::SUCCESS
}

/// `s` with its control characters escaped (`\u{1b}`), the rest as it is.
fn shown(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let e: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            e
        })
        .collect()
}
