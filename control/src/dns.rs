//! Name resolution of the udp layers through a DNS server (`dns=ADDR`): the record of a
//! name is its hex MD5 as an absolute name in the root zone (`<32 hex>.`), with the
//! registering IPCP's address (A or AAAA, TTL 86400). Registration adds it with a DNS
//! UPDATE (RFC 2136), unregistration deletes it, and lookups ask that server.

use hickory_proto::op::{update_message, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{rdata, Name, RData, Record, RecordSet, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

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
    sock.set_read_timeout(Some(timeout))?;
    sock.connect(server)?;
    sock.send(&bytes)?;
    let mut buf = [0u8; 4096];
    loop {
        let n = sock.recv(&mut buf)?;
        let reply = Message::from_bytes(buf.get(..n).unwrap_or(&[]))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        if reply.id() == msg.id() {
            return Ok(reply);
        }
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
    let mut m = Message::new();
    m.set_id(rand::random())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(false)
        .add_query(Query::query(name_of(hex)?, rtype));
    let reply = exchange(server, &m, timeout)?;
    if reply.response_code() == ResponseCode::NXDomain {
        return Ok(None);
    }
    check(&reply, "DNS query")?;
    Ok(reply.answers().iter().find_map(|r| match r.data() {
        Some(RData::A(a)) => Some(IpAddr::V4(a.0)),
        Some(RData::AAAA(a)) => Some(IpAddr::V6(a.0)),
        _ => None,
    }))
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
                sock.send_to(&r.to_bytes().unwrap(), from).unwrap();
                got.push(m);
            }
            got
        });
        (addr, t)
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
}
