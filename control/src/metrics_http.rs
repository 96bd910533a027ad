//! The metrics endpoint's HTTP side: one thread, non-blocking sockets and poll(2), so no
//! client can hold it. Every connection has one deadline for all of it (request and
//! response: `DEADLINE` from its accept, however slowly its bytes trickle), a request is at
//! most `MAX_REQUEST` bytes, and at most `MAX_CONNS` are open at once: when a new one
//! comes and the table is full, the oldest goes (a slow client is the oldest soonest), so a
//! scrape that comes after a hundred slow clients is still answered. What is cut is
//! counted (`o7sctl stats`: metrics_timed_out, metrics_evicted, metrics_bad_request).
//! Only connections still sending their request make room: a scrape being answered is never
//! cut for a newcomer (when all are being answered, the newcomer is closed instead).
//!
//! A scrape is rendered at most once per `MAX_AGE`, and every connection in that time gets
//! the same bytes (one shared buffer): a client scraping in a loop costs one render a
//! second, not one each, and many slow readers hold one copy of the text, not one each.
//!
//! On a loopback address, a request must name the host by an IP address or `localhost`
//! (its `Host` header): a web page whose name was re-pointed at 127.0.0.1 (DNS rebinding)
//! names its own, and is answered 421 instead of this host's names, flows and layers.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// All the time a connection gets, from accept to the last byte of the response.
pub const DEADLINE: Duration = Duration::from_secs(2);
/// Largest request (its line and headers).
pub const MAX_REQUEST: usize = 8192;
/// Most connections open at once.
pub const MAX_CONNS: usize = 64;
/// How long a rendered scrape is served again before it is rendered anew.
pub const MAX_AGE: Duration = Duration::from_secs(1);
/// Least time between two log lines about a failing accept (out of descriptors).
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(10);

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
    /// Asked of another host than this one ([`Hosts`]): answered 421.
    Misdirected,
}

/// Which `Host` headers a request may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hosts {
    /// Any (the endpoint listens on an address others reach anyway).
    Any,
    /// An IP address or `localhost` (the endpoint listens on loopback only).
    AddressOrLocalhost,
}

impl Hosts {
    /// What an endpoint bound to `bound` accepts.
    pub fn for_bound(bound: &SocketAddr) -> Self {
        if bound.ip().is_loopback() {
            Self::AddressOrLocalhost
        } else {
            Self::Any
        }
    }

    /// Whether a request whose `Host` header is `host` (`None`: it has none, as an
    /// HTTP/1.0 request may) is for this host.
    fn allow(self, host: Option<&str>) -> bool {
        let Some(host) = host else {
            return true;
        };
        if self == Self::Any {
            return true;
        }
        // `[v6]:port`, `[v6]`, `v4:port`, `name:port`, `v4`, `name`.
        let name = match host.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or(""),
            None => host.rsplit_once(':').map_or(host, |(h, _)| h),
        };
        name.eq_ignore_ascii_case("localhost") || name.parse::<IpAddr>().is_ok()
    }
}

/// Whether `req` holds a whole request (up to the blank line after the headers) and what it
/// asks for; `None` while it is incomplete.
pub fn parse(req: &[u8], hosts: Hosts) -> Option<Wanted> {
    if !req.windows(4).any(|w| w == b"\r\n\r\n") && !req.windows(2).any(|w| w == b"\n\n") {
        return None;
    }
    let mut lines = req
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next().unwrap_or(&[]);
    let host = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| {
            let (k, v) = std::str::from_utf8(l).ok()?.split_once(':')?;
            k.trim().eq_ignore_ascii_case("host").then(|| v.trim())
        })
        .next();
    if !hosts.allow(host) {
        return Some(Wanted::Misdirected);
    }
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
        Wanted::Misdirected => (
            "421 Misdirected Request",
            "text/plain",
            "this endpoint answers requests for an IP address or localhost only\n".to_string(),
        ),
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
    out: Option<(Arc<[u8]>, usize)>,
}

/// The scrape last rendered, served again for [`MAX_AGE`].
#[derive(Default)]
struct Cache(Option<(Instant, Arc<[u8]>)>);

impl Cache {
    /// The response to `wanted`: the metrics as rendered less than [`MAX_AGE`] ago, or
    /// rendered now.
    fn response(&mut self, wanted: &Wanted, body: &dyn Fn() -> String) -> Arc<[u8]> {
        if *wanted != Wanted::Metrics {
            return response(wanted, body).into();
        }
        let now = Instant::now();
        match &self.0 {
            Some((at, r)) if now.duration_since(*at) < MAX_AGE => r.clone(),
            _ => {
                let r: Arc<[u8]> = response(wanted, body).into();
                self.0 = Some((now, r.clone()));
                r
            }
        }
    }
}

/// What became of a connection after it was readable or writable.
enum Step {
    Keep,
    Close,
}

impl Conn {
    fn read(&mut self, hosts: Hosts, cache: &mut Cache, body: &dyn Fn() -> String) -> Step {
        let mut buf = [0u8; 1024];
        loop {
            match self.s.read(&mut buf) {
                Ok(0) => {
                    BAD_REQUEST.fetch_add(1, Ordering::Relaxed);
                    return Step::Close;
                }
                Ok(n) => {
                    self.req.extend_from_slice(buf.get(..n).unwrap_or(&[]));
                    if let Some(w) = parse(&self.req, hosts) {
                        self.out = Some((cache.response(&w, body), 0));
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

/// Serves `listener` until it fails, to requests for `hosts`; `body` renders the metrics.
pub fn run(listener: &TcpListener, hosts: Hosts, body: &dyn Fn() -> String) -> io::Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    listener.set_nonblocking(true)?;
    let mut conns: Vec<Conn> = Vec::new();
    let mut cache = Cache::default();
    let mut accept_warned: Option<Instant> = None;
    let mut accept_failed_quietly = 0u64;
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
                c.read(hosts, &mut cache, body)
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
                            EVICTED.fetch_add(1, Ordering::Relaxed);
                            // The oldest still sending its request makes room (connections
                            // are kept in accept order); one being answered is not cut.
                            match conns.iter().position(|c| c.out.is_none()) {
                                Some(at) => {
                                    conns.remove(at);
                                }
                                None => continue,
                            }
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
                        let now = Instant::now();
                        if accept_warned.is_none_or(|t| now.duration_since(t) >= ACCEPT_WARN_EVERY)
                        {
                            tracing::warn!(
                                "metrics endpoint: accept: {e} ({accept_failed_quietly} more \
                                 failures since the last line)"
                            );
                            accept_warned = Some(now);
                            accept_failed_quietly = 0;
                        } else {
                            accept_failed_quietly += 1;
                        }
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
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n", Hosts::Any),
            None
        );
        assert_eq!(
            parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", Hosts::Any),
            Some(Wanted::Metrics)
        );
        assert_eq!(
            parse(b"GET /metrics\n\n", Hosts::Any),
            Some(Wanted::Metrics)
        );
        assert_eq!(
            parse(b"GET /metricsx HTTP/1.0\r\n\r\n", Hosts::Any),
            Some(Wanted::Other)
        );
        assert_eq!(
            parse(b"POST /metrics HTTP/1.0\r\n\r\n", Hosts::Any),
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

    #[test]
    fn on_loopback_a_request_for_another_host_is_misdirected() {
        let req = |host: &str| format!("GET /metrics HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let lo = Hosts::for_bound(&"127.0.0.1:9100".parse().unwrap());
        assert_eq!(lo, Hosts::AddressOrLocalhost);
        for ok in [
            "127.0.0.1:9100",
            "localhost:9100",
            "LOCALHOST",
            "[::1]:9100",
            "10.0.0.1",
        ] {
            assert_eq!(parse(req(ok).as_bytes(), lo), Some(Wanted::Metrics), "{ok}");
        }
        for bad in [
            "evil.example:9100",
            "evil.example",
            "127.0.0.1.evil.example",
        ] {
            assert_eq!(
                parse(req(bad).as_bytes(), lo),
                Some(Wanted::Misdirected),
                "{bad}"
            );
        }
        // Without a Host header (HTTP/1.0), and on an address others reach anyway.
        assert_eq!(
            parse(b"GET /metrics HTTP/1.0\r\n\r\n", lo),
            Some(Wanted::Metrics)
        );
        let any = Hosts::for_bound(&"10.0.0.1:9100".parse().unwrap());
        assert_eq!(
            parse(req("evil.example").as_bytes(), any),
            Some(Wanted::Metrics)
        );
        let r = String::from_utf8(response(&Wanted::Misdirected, &|| unreachable!())).unwrap();
        assert!(r.starts_with("HTTP/1.0 421 "), "{r}");
    }

    /// Scrapes within `MAX_AGE` of each other get the text rendered once.
    #[test]
    fn scrapes_close_together_are_rendered_once() {
        use std::sync::atomic::AtomicUsize;
        static RENDERS: AtomicUsize = AtomicUsize::new(0);
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            run(&l, Hosts::AddressOrLocalhost, &|| {
                RENDERS.fetch_add(1, Ordering::Relaxed);
                "o7s_x 1\n# EOF\n".into()
            })
        });
        let scrape = || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .unwrap();
            let mut got = String::new();
            s.read_to_string(&mut got).unwrap();
            assert!(got.ends_with("o7s_x 1\n# EOF\n"), "{got}");
        };
        let t0 = Instant::now();
        for _ in 0..10 {
            scrape();
        }
        // Ten scrapes within a second: one render (two if the second turned meanwhile).
        let within = t0.elapsed() < MAX_AGE;
        let n = RENDERS.load(Ordering::Relaxed);
        assert!(if within { n == 1 } else { n <= 2 }, "{n} renders");
        std::thread::sleep(MAX_AGE);
        scrape();
        assert_eq!(
            RENDERS.load(Ordering::Relaxed),
            n + 1,
            "rendered anew after MAX_AGE"
        );
    }

    /// A scrape being answered (a response larger than the socket's buffers, read slowly)
    /// is not cut when many new connections come: they make room among themselves.
    #[test]
    fn a_flood_of_connections_does_not_cut_a_scrape_being_answered() {
        let big: String = "o7s_x 1\n".repeat(1 << 19);
        let want = big.len();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || run(&l, Hosts::AddressOrLocalhost, &move || big.clone()));
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        // Its first bytes are on their way: the response is being written.
        let mut first = [0u8; 16];
        s.read_exact(&mut first).unwrap();
        let flood: Vec<TcpStream> = (0..2 * MAX_CONNS)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        let text = String::from_utf8_lossy(&first).into_owned() + &String::from_utf8_lossy(&rest);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        assert_eq!(body.len(), want, "the scrape was cut");
        drop(flood);
    }

    /// A hundred clients that send a byte now and then, and one that scrapes: it is
    /// answered at once; the slow ones are cut at their deadline or to make room, counted.
    #[test]
    fn slow_clients_do_not_hold_the_endpoint() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            run(&l, Hosts::AddressOrLocalhost, &|| "o7s_x 1\n# EOF\n".into())
        });
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
