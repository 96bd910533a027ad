//! # o7s: the application library
//!
//! Apps allocate flows to names (`Flow::alloc`), accept flows for names they are bound to
//! (`Flow::accept`), and read and write SDUs. The daemon `o7sd` does the allocation; the
//! SDUs go straight between the app and the data plane through shared-memory rings
//! ([`ring`]), never through the daemon.
//!
//! Needs a running `o7sd` (its socket: `$O7S_RUNDIR/o7sd.sock`, default `/run/o7s`).

pub mod crc;
pub mod flow;
pub mod ipc;
pub mod proto;
mod reliable;
pub use o7s_abi::ring;

pub use flow::{control, wait_any, Error, Flow};
pub use o7s_wire::qos::QosSpec;

/// Raises this process's soft limit on open files to its hard limit (o7sd, the data plane
/// and busy apps hold several descriptors per flow: a socket, a memfd, two kick pipes); the
/// limit in effect afterwards.
pub fn raise_fd_limit() -> std::io::Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
            .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
    }
    Ok(hard.max(soft))
}
