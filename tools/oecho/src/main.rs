//! `oecho`: the reference's echo tool. The server (`-l`) accepts flows for the names it is
//! bound to and sends every SDU back on the flow it came on (a thread per flow, at most
//! `--max-flows` at once); the client allocates a flow to `-n` (default `oecho`), writes
//! its message (`-m`, default the reference's "Client says hi!") `--count` times and prints
//! each echo, failing if one does not come back within `--timeout` or differs.
//!
//! The facts name only `-l` for the reference's oecho; the client's flags are o7s's, in the
//! style of oping's and ocbr's (`-n`, `-q`).

use clap::Parser;
use o7s::{Error, Flow, QosSpec};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Ouroboros echo: a server that sends every SDU back, and a client.
#[derive(Debug, Parser)]
#[command(name = "oecho", version)]
struct Cli {
    /// Run as server.
    #[arg(short = 'l', long)]
    listen: bool,
    /// Client: the server's name.
    #[arg(short = 'n', long = "server-name", default_value = "oecho")]
    name: String,
    /// Client: the message.
    #[arg(short = 'm', long, default_value = "Client says hi!")]
    message: String,
    /// Client: send it this many times (each waits for its echo).
    #[arg(short = 'c', long, default_value_t = 1)]
    count: u32,
    /// Client: QoS cube: raw, best, video, voice, data.
    #[arg(short = 'q', long, default_value = "raw")]
    qos: String,
    /// Client: how long to wait for each echo (and for the allocation), in ms.
    #[arg(short = 't', long, default_value_t = 2000)]
    timeout: u64,
    /// Server: a flow quiet this long (s) is closed.
    #[arg(long, default_value_t = 10)]
    idle: u64,
    /// Server: serve at most this many flows at once (one accepted beyond is closed).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    max_flows: u64,
    /// Server: exit after this many flows have been served (0: never).
    #[arg(long, default_value_t = 0)]
    flows: u64,
    /// Runtime directory of the o7sd to use (default $O7S_RUNDIR or /run/o7s).
    #[arg(long, value_name = "DIR")]
    rundir: Option<std::path::PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(r) = &cli.rundir {
        std::env::set_var(o7s::proto::RUNDIR_ENV, r);
    }
    if cli.listen {
        server(&cli)
    } else {
        client(&cli)
    }
}

/// Sends back what comes on `f` until its peer goes or it is quiet for `idle`.
fn echo(f: &mut Flow, idle: Duration) -> u64 {
    f.set_read_timeout(Some(idle));
    let mut buf = vec![0u8; 65536];
    let mut n = 0u64;
    loop {
        match f.read(&mut buf) {
            Ok(len) => {
                if f.write(buf.get(..len).unwrap_or_default()).is_err() {
                    break;
                }
                n += 1;
            }
            Err(Error::Timeout) => {
                eprintln!(
                    "oecho: flow {} quiet for {} s: closed",
                    f.info().id,
                    idle.as_secs()
                );
                break;
            }
            Err(_) => break,
        }
    }
    n
}

fn server(cli: &Cli) -> ExitCode {
    let active = AtomicU64::new(0);
    let idle = Duration::from_secs(cli.idle.max(1));
    std::thread::scope(|s| {
        let mut served = 0u64;
        while cli.flows == 0 || served < cli.flows {
            let mut f = match Flow::accept(None) {
                Ok(f) => f,
                Err(e) if e.daemon_away() => {
                    eprintln!("oecho: o7sd is away ({e}); waiting for it");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
                Err(e) => {
                    eprintln!("oecho: accept failed: {e}");
                    return ExitCode::FAILURE;
                }
            };
            served += 1;
            if active.load(Ordering::Relaxed) >= cli.max_flows {
                eprintln!(
                    "oecho: flow {} refused: {} flows served already",
                    f.info().id,
                    cli.max_flows
                );
                continue;
            }
            active.fetch_add(1, Ordering::Relaxed);
            println!(
                "New flow {} from {} over {}.",
                f.info().id,
                f.info().name,
                f.info().layer
            );
            let active = &active;
            s.spawn(move || {
                let n = echo(&mut f, idle);
                println!("Flow {} done: {n} SDUs echoed.", f.info().id);
                active.fetch_sub(1, Ordering::Relaxed);
            });
        }
        ExitCode::SUCCESS
    })
}

fn client(cli: &Cli) -> ExitCode {
    let Some(qos) = QosSpec::by_name(&cli.qos) else {
        eprintln!(
            "oecho: unknown QoS '{}' (raw, best, video, voice, data)",
            cli.qos
        );
        return ExitCode::from(2);
    };
    let t = Duration::from_millis(cli.timeout);
    let mut f = match Flow::alloc(&cli.name, qos, t) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("Failed to allocate flow: {e}.");
            return ExitCode::FAILURE;
        }
    };
    f.set_read_timeout(Some(t));
    let msg = cli.message.as_bytes();
    let mut buf = vec![0u8; msg.len().max(1) + 1];
    for i in 0..cli.count {
        if let Err(e) = f.write(msg) {
            eprintln!("oecho: write failed: {e}");
            return ExitCode::FAILURE;
        }
        match f.read(&mut buf) {
            Ok(n) if buf.get(..n) == Some(msg) => {
                println!("Server replied: {}", String::from_utf8_lossy(msg));
            }
            Ok(n) => {
                eprintln!(
                    "oecho: echo {i} differs: {:?}",
                    String::from_utf8_lossy(buf.get(..n).unwrap_or_default())
                );
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("oecho: no echo of message {i}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}
