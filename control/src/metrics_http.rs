//! The metrics endpoint's HTTP side: one thread, non-blocking sockets and poll(2), so no
//! client can hold it. Every connection has one deadline for all of it (request and
//! response: `DEADLINE` from its accept, however slowly its bytes trickle), a request is at
//! most `MAX_REQUEST` bytes, and at most `MAX_CONNS` are open at once: when a new one
//! comes and the table is full, the oldest goes (a slow client is the oldest soonest), so a
//! scrape that comes after a hundred slow clients is still answered. What is cut is
//! counted (`o7sctl stats`: metrics_timed_out, metrics_evicted, metrics_bad_request).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// All the time a connection gets, from accept to the last byte of the response.
pub const DEADLINE: Duration = Duration::from_secs(2);
/// Largest request (its line and headers).
pub const MAX_REQUEST: usize = 8192;
/// Most connections open at once.
pub const MAX_CONNS: usize = 64;

/// Requests answered.
pub static ANSWERED: AtomicU64 = AtomicU64::new(0);
/// Connections closed at their deadline.
pub static TIMED_OUT: AtomicU64 = AtomicU64::new(0);
/// Connections closed to make room for a newer one.
pub static EVICTED: AtomicU64 = AtomicU64::new(0);
/// Requests over `MAX_REQUEST` bytes, or closed before their end.
pub static BAD_REQUEST: AtomicU64 = AtomicU64::new(0);

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Wanted {
    /// `GET /metrics`.
    Metrics,
    /// Anything else.
    Other,
}

/// Whether `req` holds a whole request (up to the blank line after the headers) and what it
/// asks for; `None` while it is incomplete.
pub fn parse(req: &[u8]) -> Option<Wanted> {
    if !req.windows(4).any(|w| w == b"\r\n\r\n") && !req.windows(2).any(|w| w == b"\n\n") {
        return None;
    }
    let first = req.split(|b| *b == b'\n').next().unwrap_or(&[]);
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    if first.starts_with(b"GET /metrics ") || first == b"GET /metrics" {
        Some(Wanted::Metrics)
    } else {
        Some(Wanted::Other)
    }
}

/// The whole HTTP/1.0 response for `wanted`; `body` makes the metrics text.
pub fn response(wanted: &Wanted, body: &dyn Fn() -> String) -> Vec<u8> {
    let (status, ctype, body) = match wanted {
        Wanted::Metrics => (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body(),
        ),
        Wanted::Other => ("404 Not Found", "text/plain", "try /metrics\n".to_string()),
    };
    format!(
        "HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

struct Conn {
    s: TcpStream,
    since: Instant,
    req: Vec<u8>,
    /// The response and how much of it is written.
    out: Option<(Vec<u8>, usize)>,
}

/// What became of a connection after it was readable or writable.
enum Step {
    Keep,
    Close,
}

impl Conn {
    fn read(&mut self, body: &dyn Fn() -> String) -> Step {
        let mut buf = [0u8; 1024];
        loop {
            match self.s.read(&mut buf) {
                Ok(0) => {
                    BAD_REQUEST.fetch_add(1, Ordering::Relaxed);
                    return Step::Close;
                }
                Ok(n) => {
                    self.req.extend_from_slice(buf.get(..n).unwrap_or(&[]));
                    if let Some(w) = parse(&self.req) {
                        self.out = Some((response(&w, body), 0));
                        return self.write();
                    }
                    if self.req.len() >= MAX_REQUEST {
                        BAD_REQUEST.fetch_add(1, Ordering::Relaxed);
                        return Step::Close;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Step::Close,
            }
        }
    }

    fn write(&mut self) -> Step {
        let Some((out, done)) = self.out.as_mut() else {
            return Step::Keep;
        };
        while let Some(rest) = out.get(*done..).filter(|r| !r.is_empty()) {
            match self.s.write(rest) {
                Ok(0) => return Step::Close,
                Ok(n) => *done += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Keep,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Step::Close,
            }
        }
        ANSWERED.fetch_add(1, Ordering::Relaxed);
        Step::Close
    }
}

/// Serves `listener` until it fails; `body` renders the metrics.
pub fn run(listener: &TcpListener, body: &dyn Fn() -> String) -> io::Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    listener.set_nonblocking(true)?;
    let mut conns: Vec<Conn> = Vec::new();
    loop {
        let now = Instant::now();
        let before = conns.len();
        conns.retain(|c| now.duration_since(c.since) < DEADLINE);
        TIMED_OUT.fetch_add((before - conns.len()) as u64, Ordering::Relaxed);
        let wait = conns
            .iter()
            .map(|c| (c.since + DEADLINE).saturating_duration_since(now))
            .min();
        let (ready_listener, ready): (bool, Vec<bool>) = {
            let mut fds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
            for c in &conns {
                let ev = if c.out.is_some() {
                    PollFlags::POLLOUT
                } else {
                    PollFlags::POLLIN
                };
                fds.push(PollFd::new(c.s.as_fd(), ev));
            }
            let timeout = match wait {
                // Round up, so that a deadline is past when poll returns.
                Some(w) => PollTimeout::try_from(w.as_millis().saturating_add(1))
                    .unwrap_or(PollTimeout::MAX),
                None => PollTimeout::NONE,
            };
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
            let hit = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
            (
                fds.first().is_some_and(hit),
                fds.iter().skip(1).map(hit).collect(),
            )
        };
        // Connections first (their indices are those of the poll), then new ones.
        let mut i = 0;
        conns.retain_mut(|c| {
            let r = ready.get(i).copied().unwrap_or(false);
            i += 1;
            if !r {
                return true;
            }
            let step = if c.out.is_some() {
                c.write()
            } else {
                c.read(body)
            };
            matches!(step, Step::Keep)
        });
        if ready_listener {
            loop {
                match listener.accept() {
                    Ok((s, _)) => {
                        if s.set_nonblocking(true).is_err() {
                            continue;
                        }
                        if conns.len() >= MAX_CONNS {
                            // The oldest is first: connections are kept in accept order.
                            conns.remove(0);
                            EVICTED.fetch_add(1, Ordering::Relaxed);
                        }
                        conns.push(Conn {
                            s,
                            since: Instant::now(),
                            req: Vec::new(),
                            out: None,
                        });
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // Out of descriptors and the like: try again on the next round.
                    Err(e) => {
                        tracing::warn!("metrics endpoint: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_whole_at_its_blank_line_and_only_get_metrics_is_served() {
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Some(Wanted::Metrics)
        );
        assert_eq!(parse(b"GET /metrics\n\n"), Some(Wanted::Metrics));
        assert_eq!(
            parse(b"GET /metricsx HTTP/1.0\r\n\r\n"),
            Some(Wanted::Other)
        );
        assert_eq!(
            parse(b"POST /metrics HTTP/1.0\r\n\r\n"),
            Some(Wanted::Other)
        );
        let r = String::from_utf8(response(&Wanted::Metrics, &|| "m 1\n".into())).unwrap();
        assert!(r.starts_with("HTTP/1.0 200 OK\r\n"), "{r}");
        assert!(
            r.contains("Content-Length: 4\r\n") && r.ends_with("\r\n\r\nm 1\n"),
            "{r}"
        );
        let r = String::from_utf8(response(&Wanted::Other, &|| unreachable!())).unwrap();
        assert!(r.starts_with("HTTP/1.0 404 Not Found\r\n"), "{r}");
    }

    /// A hundred clients that send a byte now and then, and one that scrapes: it is
    /// answered at once; the slow ones are cut at their deadline or to make room, counted.
    #[test]
    fn slow_clients_do_not_hold_the_endpoint() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || run(&l, &|| "o7s_x 1\n# EOF\n".into()));
        let (t0, e0) = (
            TIMED_OUT.load(Ordering::Relaxed),
            EVICTED.load(Ordering::Relaxed),
        );
        let mut slow: Vec<TcpStream> = (0..100)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
                s
            })
            .collect();
        for s in &mut slow {
            let _ = s.write_all(b"X-Slow: 1\r\n");
        }
        let start = Instant::now();
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        let mut got = String::new();
        s.read_to_string(&mut got).unwrap();
        assert!(
            got.contains("200 OK") && got.ends_with("o7s_x 1\n# EOF\n"),
            "{got}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{:?}",
            start.elapsed()
        );
        // 100 slow ones and the scrape in a table of 64: at least 37 made room.
        assert!(EVICTED.load(Ordering::Relaxed) - e0 >= 37);
        // The rest are cut at their deadline, whatever they still send.
        std::thread::sleep(DEADLINE + Duration::from_millis(500));
        for s in &mut slow {
            let _ = s.write_all(b"X-Slow: 2\r\n");
        }
        assert!(
            TIMED_OUT.load(Ordering::Relaxed) - t0 >= 100 - 37 - 1,
            "timed out {}",
            TIMED_OUT.load(Ordering::Relaxed) - t0
        );
    }
}
