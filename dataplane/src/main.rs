//! `o7s-dataplane`: started by `o7sd` with its control channel as descriptor 3
//! (`O7S_CTL_FD`). Not meant to be run by hand.

#![allow(unsafe_code)]

use o7s::ipc::Channel;
use std::os::fd::{FromRawFd, OwnedFd};

fn main() -> std::process::ExitCode {
    // The BPF loader logs every relocation at debug level: keep it at info unless asked.
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("O7S_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if !std::env::var("O7S_LOG").unwrap_or_default().contains("aya") {
        for d in ["aya=info", "aya_obj=info"] {
            if let Ok(d) = d.parse() {
                filter = filter.add_directive(d);
            }
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    let Some(fd) = std::env::var("O7S_CTL_FD")
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        eprintln!("o7s-dataplane: started by o7sd only (O7S_CTL_FD is not set)");
        return std::process::ExitCode::from(2);
    };
    // A data plane of another build must not misread o7sd's messages or the flow memory.
    if let Err(e) = o7s_abi::check_version(std::env::var(o7s_abi::ABI_ENV).ok().as_deref()) {
        eprintln!("o7s-dataplane: {e}");
        return std::process::ExitCode::from(o7s_abi::EXIT_ABI_MISMATCH);
    }
    if let Err(e) = o7s::raise_fd_limit() {
        tracing::warn!("cannot raise the open-file limit: {e}");
    }
    // No parent-death signal: the data plane outlives a crashed o7sd and keeps forwarding
    // until a new one adopts it (`O7S_DP_SOCK`, dataplane/src/upstream.rs).
    // Safety: o7sd passes the channel's descriptor; nothing else in this process owns it.
    let ch = Channel::from_fd(unsafe { OwnedFd::from_raw_fd(fd) });
    // `O7S_DP_CORE=0,1`: one worker per CPU behind a router; else one worker.
    let cores: Vec<String> = std::env::var("O7S_DP_CORE")
        .unwrap_or_default()
        .split(',')
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
        .collect();
    let result = if cores.len() > 1 {
        o7s_dataplane::router::Router::start(ch, &cores).and_then(|mut r| r.run())
    } else {
        o7s_dataplane::worker::Dataplane::new(ch).run()
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("data plane failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
