//! Name resolution of the udp layers through a DNS server (`dns=ADDR`): the record of a
//! name is its hex MD5 as an absolute name in the root zone (`<32 hex>.`), with the
//! registering IPCP's address (A or AAAA, TTL 86400). Registration adds it with a DNS
//! UPDATE (RFC 2136), unregistration deletes it, and lookups ask that server.

use hickory_proto::op::{update_message, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{rdata, Name, RData, Record, RecordSet, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// TTL of the records (as the reference).
pub const TTL: u32 = 86400;

fn name_of(hex: &str) -> io::Result<Name> {
    Name::from_ascii(format!("{hex}."))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
}

fn exchange(server: SocketAddr, msg: &Message, timeout: Duration) -> io::Result<Message> {
    let bytes = msg
        .to_bytes()
        .map_err(|e| io::Error::other(e.to_string()))?;
    let local: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .map_err(|_| io::Error::other("address"))?;
    let sock = UdpSocket::bind(local)?;
    sock.connect(server)?;
    sock.send(&bytes)?;
    let mut buf = [0u8; 4096];
    // One deadline for the whole exchange: datagrams that are not the answer (another id,
    // not a response, not DNS), from a confused server or a spoofer that found the port,
    // are skipped but do not make the wait longer.
    let deadline = Instant::now() + timeout;
    let mut skipped = 0u32;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no answer from the DNS server {server} within {timeout:?} ({skipped} datagrams that were not the answer)"),
            ));
        }
        sock.set_read_timeout(Some(left))?;
        let n = match sock.recv(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        };
        match Message::from_bytes(buf.get(..n).unwrap_or(&[])) {
            Ok(reply) if answers(&reply, msg) => return Ok(reply),
            _ => skipped += 1,
        }
    }
}

/// Whether `reply` is the answer to `msg`: a response with its id and op code, and for a
/// query its question (servers echo it; an UPDATE's zone may not be, nor the question of
/// an error such as FORMERR or REFUSED, which some servers send without it).
fn answers(reply: &Message, msg: &Message) -> bool {
    let question = msg.op_code() != OpCode::Query
        || reply.queries() == msg.queries()
        || (reply.queries().is_empty() && reply.response_code() != ResponseCode::NoError);
    reply.message_type() == MessageType::Response
        && reply.id() == msg.id()
        && reply.op_code() == msg.op_code()
        && question
}

/// An address a member may have: not unspecified, multicast or broadcast.
fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => !a.is_unspecified() && !a.is_multicast() && !a.is_broadcast(),
        IpAddr::V6(a) => !a.is_unspecified() && !a.is_multicast(),
    }
}

fn rdata_of(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(a) => RData::A(rdata::A(a)),
        IpAddr::V6(a) => RData::AAAA(rdata::AAAA(a)),
    }
}

fn check(reply: &Message, what: &str) -> io::Result<()> {
    match reply.response_code() {
        ResponseCode::NoError => Ok(()),
        rc => Err(io::Error::other(format!(
            "{what}: the DNS server answered {rc}"
        ))),
    }
}

/// Adds (replaces) the record of `hex` with `ip`.
pub fn register(server: SocketAddr, hex: &str, ip: IpAddr, timeout: Duration) -> io::Result<()> {
    let name = name_of(hex)?;
    let rtype = if ip.is_ipv4() {
        RecordType::A
    } else {
        RecordType::AAAA
    };
    // Remove a stale record first (ignored if there is none), then create ours.
    // (The record's class is the zone's, IN; delete_rrset turns the update into class ANY.)
    let m = update_message::delete_rrset(Record::with(name.clone(), rtype, 0), Name::root(), false);
    check(&exchange(server, &m, timeout)?, "DNS UPDATE (delete)")?;
    let mut set = RecordSet::with_ttl(name, rtype, TTL);
    set.add_rdata(rdata_of(ip));
    let m = update_message::create(set, Name::root(), false);
    check(&exchange(server, &m, timeout)?, "DNS UPDATE (add)")
}

/// Deletes the record of `hex`.
pub fn unregister(server: SocketAddr, hex: &str, v4: bool, timeout: Duration) -> io::Result<()> {
    let rtype = if v4 { RecordType::A } else { RecordType::AAAA };
    let m =
        update_message::delete_rrset(Record::with(name_of(hex)?, rtype, 0), Name::root(), false);
    check(&exchange(server, &m, timeout)?, "DNS UPDATE (delete)")
}

/// Looks `hex` up on `server`.
pub fn lookup(
    server: SocketAddr,
    hex: &str,
    v4: bool,
    timeout: Duration,
) -> io::Result<Option<IpAddr>> {
    let rtype = if v4 { RecordType::A } else { RecordType::AAAA };
    let name = name_of(hex)?;
    let mut m = Message::new();
    m.set_id(rand::random())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(false)
        .add_query(Query::query(name.clone(), rtype));
    let reply = exchange(server, &m, timeout)?;
    if reply.response_code() == ResponseCode::NXDomain {
        return Ok(None);
    }
    check(&reply, "DNS query")?;
    let found = address_in(&reply, &name, v4);
    // A truncated answer without the address says nothing of the name (this client has no
    // TCP): an error, not "not found".
    if found.is_none() && reply.truncated() {
        return Err(io::Error::other(
            "DNS query: the answer was truncated (TC) without the address",
        ));
    }
    Ok(found)
}

/// The first usable address of the record asked for (`name`, A or AAAA) in `reply`.
fn address_in(reply: &Message, name: &Name, v4: bool) -> Option<IpAddr> {
    reply
        .answers()
        .iter()
        .filter(|r| r.name() == name)
        .find_map(|r| match r.data() {
            Some(RData::A(a)) if v4 => Some(IpAddr::V4(a.0)),
            Some(RData::AAAA(a)) if !v4 => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .filter(|ip| usable(*ip))
}

/// Parses the `dns=` setting: an address, with port 53 unless given.
pub fn server_addr(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use hickory_proto::op::UpdateMessage;

    #[test]
    #[ignore = "needs a DNS server in O7S_TEST_DNS"]
    fn live() {
        let server = server_addr(&std::env::var("O7S_TEST_DNS").unwrap()).unwrap();
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        register(
            server,
            "6ae220aa6aae06c43878513c64db34b6",
            ip,
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(
            lookup(
                server,
                "6ae220aa6aae06c43878513c64db34b6",
                true,
                Duration::from_secs(1)
            )
            .unwrap(),
            Some(ip)
        );
    }

    /// A DNS server on loopback that answers `codes` in turn and returns what it was sent.
    fn fake_server(
        codes: Vec<ResponseCode>,
    ) -> (SocketAddr, std::thread::JoinHandle<Vec<Message>>) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut got = vec![];
            let mut buf = [0u8; 4096];
            for code in codes {
                let (n, from) = sock.recv_from(&mut buf).unwrap();
                let m = Message::from_bytes(&buf[..n]).unwrap();
                let mut r = Message::new();
                r.set_id(m.id())
                    .set_message_type(MessageType::Response)
                    .set_op_code(m.op_code())
                    .set_response_code(code);
                if m.op_code() == OpCode::Query {
                    r.add_queries(m.queries().to_vec());
                }
                sock.send_to(&r.to_bytes().unwrap(), from).unwrap();
                got.push(m);
            }
            got
        });
        (addr, t)
    }

    /// A truncated answer without the address is an error, not "not found".
    #[test]
    fn a_truncated_answer_is_an_error() {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let (n, from) = sock.recv_from(&mut buf).unwrap();
            let m = Message::from_bytes(&buf[..n]).unwrap();
            let mut r = Message::new();
            r.set_id(m.id())
                .set_message_type(MessageType::Response)
                .set_op_code(m.op_code())
                .set_truncated(true)
                .add_queries(m.queries().to_vec());
            sock.send_to(&r.to_bytes().unwrap(), from).unwrap();
        });
        let e = lookup(
            addr,
            "6ae220aa6aae06c43878513c64db34b6",
            true,
            Duration::from_secs(2),
        )
        .unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        t.join().unwrap();
    }

    #[test]
    fn register_replaces_the_record_with_two_updates() {
        let (addr, t) = fake_server(vec![ResponseCode::NoError, ResponseCode::NoError]);
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        register(
            addr,
            "6ae220aa6aae06c43878513c64db34b6",
            ip,
            Duration::from_secs(2),
        )
        .unwrap();
        let got = t.join().unwrap();
        let name = name_of("6ae220aa6aae06c43878513c64db34b6").unwrap();
        // First: delete the name's A records (class ANY, TTL 0, no data).
        assert_eq!(got[0].op_code(), OpCode::Update);
        let del = &got[0].updates()[0];
        assert_eq!((del.name(), del.record_type()), (&name, RecordType::A));
        assert_eq!(del.dns_class(), hickory_proto::rr::DNSClass::ANY);
        assert_eq!(del.ttl(), 0);
        // Then: add the A record with the address and a day's TTL.
        assert_eq!(got[1].op_code(), OpCode::Update);
        let add = &got[1].updates()[0];
        assert_eq!(
            (add.name(), add.record_type(), add.ttl()),
            (&name, RecordType::A, TTL)
        );
        assert_eq!(
            add.data(),
            Some(&RData::A(rdata::A("127.0.0.2".parse().unwrap())))
        );
    }

    #[test]
    fn a_refusing_server_is_an_error_that_says_so() {
        let (addr, t) = fake_server(vec![ResponseCode::Refused]);
        let e = unregister(addr, "ab", true, Duration::from_secs(2)).unwrap_err();
        assert!(e.to_string().contains("Refused"), "{e}");
        assert_eq!(t.join().unwrap().len(), 1);
    }

    /// A server that first sends what a spoofer or a confused server would (not DNS, a
    /// query, another id, another question, a wrong name's record, an unusable address),
    /// then, if `answer`, the answer: (its address, what it was asked).
    fn noisy_server(answer: Option<IpAddr>) -> (SocketAddr, std::thread::JoinHandle<()>) {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let (n, from) = sock.recv_from(&mut buf).unwrap();
            let q = Message::from_bytes(&buf[..n]).unwrap();
            let reply =
                |id: u16, kind: MessageType, queries: Vec<Query>, name: &Name, ip: IpAddr| {
                    let mut r = Message::new();
                    r.set_id(id)
                        .set_message_type(kind)
                        .set_op_code(OpCode::Query)
                        .add_queries(queries)
                        .add_answer(Record::from_rdata(name.clone(), TTL, rdata_of(ip)));
                    r.to_bytes().unwrap()
                };
            let asked = q.queries()[0].name().clone();
            let other = name_of("00000000000000000000000000000000").unwrap();
            let bad: IpAddr = "10.9.9.9".parse().unwrap();
            for d in [
                b"not dns at all".to_vec(),
                reply(
                    q.id(),
                    MessageType::Query,
                    q.queries().to_vec(),
                    &asked,
                    bad,
                ),
                reply(
                    q.id().wrapping_add(1),
                    MessageType::Response,
                    q.queries().to_vec(),
                    &asked,
                    bad,
                ),
                reply(
                    q.id(),
                    MessageType::Response,
                    vec![Query::query(other.clone(), RecordType::A)],
                    &asked,
                    bad,
                ),
            ] {
                sock.send_to(&d, from).unwrap();
            }
            if let Some(ip) = answer {
                // The answer, with another name's record first and an unusable one.
                let mut r = Message::new();
                r.set_id(q.id())
                    .set_message_type(MessageType::Response)
                    .set_op_code(OpCode::Query)
                    .add_queries(q.queries().to_vec())
                    .add_answer(Record::from_rdata(other, TTL, rdata_of(bad)))
                    .add_answer(Record::from_rdata(asked, TTL, rdata_of(ip)));
                sock.send_to(&r.to_bytes().unwrap(), from).unwrap();
            }
        });
        (addr, t)
    }

    #[test]
    fn what_is_not_the_answer_is_skipped_and_the_answer_is_checked() {
        let ip: IpAddr = "127.0.0.7".parse().unwrap();
        let (addr, t) = noisy_server(Some(ip));
        let got = lookup(
            addr,
            "6ae220aa6aae06c43878513c64db34b6",
            true,
            Duration::from_secs(2),
        );
        assert_eq!(got.unwrap(), Some(ip));
        t.join().unwrap();
        // An answer whose only usable-looking record is for another name, or unusable.
        let name = name_of("ab").unwrap();
        let mut r = Message::new();
        r.add_answer(Record::from_rdata(
            name_of("cd").unwrap(),
            TTL,
            rdata_of("10.0.0.1".parse().unwrap()),
        ))
        .add_answer(Record::from_rdata(
            name.clone(),
            TTL,
            rdata_of("0.0.0.0".parse().unwrap()),
        ))
        .add_answer(Record::from_rdata(
            name.clone(),
            TTL,
            rdata_of("224.0.0.1".parse().unwrap()),
        ))
        .add_answer(Record::from_rdata(
            name.clone(),
            TTL,
            rdata_of("::1".parse().unwrap()),
        ));
        assert_eq!(address_in(&r, &name, true), None);
        assert_eq!(address_in(&r, &name, false), Some("::1".parse().unwrap()));
        let mut r6 = Message::new();
        for ip in ["::", "ff02::1"] {
            r6.add_answer(Record::from_rdata(
                name.clone(),
                TTL,
                rdata_of(ip.parse().unwrap()),
            ));
        }
        assert_eq!(address_in(&r6, &name, false), None);
        // An AAAA record does not answer an A question, nor an A record an AAAA one.
        let mut only6 = Message::new();
        only6.add_answer(Record::from_rdata(
            name.clone(),
            TTL,
            rdata_of("::1".parse().unwrap()),
        ));
        assert_eq!(address_in(&only6, &name, true), None);
        let mut only4 = Message::new();
        only4.add_answer(Record::from_rdata(
            name.clone(),
            TTL,
            rdata_of("10.1.1.1".parse().unwrap()),
        ));
        assert_eq!(address_in(&only4, &name, false), None);
        let mut r4 = Message::new();
        r4.add_answer(Record::from_rdata(
            name.clone(),
            TTL,
            rdata_of("255.255.255.255".parse().unwrap()),
        ));
        assert_eq!(address_in(&r4, &name, true), None);
    }

    #[test]
    fn noise_does_not_make_the_wait_longer() {
        let (addr, t) = noisy_server(None);
        let start = Instant::now();
        let e = lookup(addr, "ab", true, Duration::from_millis(300)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        assert!(
            e.to_string()
                .contains("4 datagrams that were not the answer"),
            "{e}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        t.join().unwrap();
    }

    #[test]
    fn a_server_that_is_not_there_is_an_error_at_once() {
        // A port nobody listens on: the kernel's "port unreachable" ends the exchange
        // (it is not noise to wait through).
        let addr = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = lookup(addr, "ab", true, Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
    }

    #[test]
    fn an_error_without_the_question_is_the_answer() {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let (n, from) = sock.recv_from(&mut buf).unwrap();
            let q = Message::from_bytes(&buf[..n]).unwrap();
            // An error, without the question; and a NoError without it is not the answer.
            for code in [ResponseCode::NoError, ResponseCode::Refused] {
                let mut r = Message::new();
                r.set_id(q.id())
                    .set_message_type(MessageType::Response)
                    .set_op_code(OpCode::Query)
                    .set_response_code(code);
                sock.send_to(&r.to_bytes().unwrap(), from).unwrap();
            }
        });
        let e = lookup(addr, "ab", true, Duration::from_secs(2)).unwrap_err();
        assert!(e.to_string().contains("Refused"), "{e}");
        t.join().unwrap();
    }
}
