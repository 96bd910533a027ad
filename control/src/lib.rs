//! The o7s control daemon, `o7sd`, as a library (so its parts can be tested).

pub mod auth;
pub mod authz;
pub mod config;
pub mod conns;
pub mod daemon;
pub mod dir_proof;
pub mod dns;
pub mod dp;
pub mod error;
pub mod eth;
pub mod membership;
pub mod metrics;
pub mod metrics_http;
pub mod registry;
pub mod replay;
pub mod security;
pub mod wirelog;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

static STOP: AtomicBool = AtomicBool::new(false);

/// Asks the daemon's main loop to shut down.
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Whether shutdown was asked for.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// SIGINT, SIGTERM, SIGQUIT and SIGHUP shut the daemon down.
pub fn install_signal_handlers() -> std::io::Result<()> {
    let flag = Arc::new(AtomicBool::new(false));
    for s in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGQUIT,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(s, flag.clone())?;
    }
    std::thread::spawn(move || loop {
        if flag.load(Ordering::SeqCst) {
            request_stop();
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    });
    Ok(())
}
