//! Turns the wire crate's reprs into [`Node`]s.

use crate::node::{hexn, hexs, Node};
use o7s_wire::app::OpingMsg;
use o7s_wire::code::OpingType;
use o7s_wire::frame::{MgmtTail, Oap};
use o7s_wire::frct::FrctRepr;
use o7s_wire::hash::HashAlgo;
use o7s_wire::nid;
use o7s_wire::oap::{OapHdr, OapHdrV022, Role};
use o7s_wire::qos::QosSpec;
use o7s_wire::unicast::dt::PciRepr;
use o7s_wire::unicast::fa::FaMsg;
use o7s_wire::unicast::lsa::Lsa;
use o7s_wire::unicast::sdu::{DtBody, DtPdu};

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` of nanoseconds since the Unix epoch.
pub fn utc(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The QoS fields of a flow allocation message.
pub fn qos(q: &QosSpec) -> Node {
    let mut n = Node::new("qos");
    if let Some(p) = q.preset_name() {
        n.push("preset", p);
    }
    n.f("delay", q.delay)
        .f("bandwidth", q.bandwidth)
        .f("availability", q.availability)
        .f("loss", q.loss)
        .f("ber", q.ber)
        .f("in_order", q.in_order)
        .f("max_gap", q.max_gap)
        .f("timeout", q.timeout)
        .f("cube", q.cube().to_string())
}

/// A name hash, with the algorithm its length suggests.
pub fn hash(h: &[u8], udp: bool) -> Node {
    let algo = if udp && h.len() == 16 {
        Some(HashAlgo::Md5)
    } else {
        HashAlgo::sha3_of_len(h.len())
    };
    let mut n = Node::new("name-hash")
        .f("value", hex::encode(h))
        .f("len", h.len());
    if let Some(a) = algo {
        n.push("algo", a.config_name());
    } else {
        n = n.err(format!("{} bytes is no known hash length", h.len()));
    }
    n
}

fn spki_kind(der: &[u8]) -> Option<&'static str> {
    let h = hex::encode(der);
    if h.contains("06082a8648ce3d030107") {
        Some("EC P-256 SubjectPublicKeyInfo")
    } else if h.contains("06052b81040022") {
        Some("EC P-384 SubjectPublicKeyInfo")
    } else if h.contains("06052b81040023") {
        Some("EC P-521 SubjectPublicKeyInfo")
    } else if h.starts_with("302a300506032b656e") {
        Some("X25519 SubjectPublicKeyInfo")
    } else {
        None
    }
}

/// Certificate summary: subject, issuer, validity.
pub fn certificate(der: &[u8]) -> Node {
    let mut n = Node::new("certificate").f("len", der.len());
    match x509_parser::parse_x509_certificate(der) {
        Ok((rest, c)) => {
            n.push("subject", c.subject().to_string());
            n.push("issuer", c.issuer().to_string());
            n.push("not_after", c.validity().not_after.to_string());
            if !rest.is_empty() {
                n = n.err(format!("{} bytes after the certificate", rest.len()));
            }
        }
        Err(e) => n = n.err(format!("not a DER X.509 certificate: {e}")),
    }
    n
}

/// A 0.23 OAP header.
pub fn oap023(h: &OapHdr, role: Role, req_hash_len: Option<usize>) -> Node {
    let mut n = Node::new(format!(
        "oap-0.23 {}",
        if role == Role::Request {
            "request"
        } else {
            "response"
        }
    ))
    .f("id", hex::encode(h.id))
    .f("timestamp", utc(h.timestamp))
    .f("cipher", nid::describe(h.cipher_nid))
    .f("kdf", nid::describe(h.kdf_nid))
    .f("digest", nid::describe(h.md_nid))
    .f("crt_len", h.crt.len())
    .f("kex_len", h.kex.len())
    .f("data_len", h.data.len());
    if h.kex_flags != 0 {
        n.push("kex_flags", hexn(u64::from(h.kex_flags >> 14), 1));
    }
    if !h.crt.is_empty() {
        n.children.push(certificate(&h.crt));
    }
    if !h.kex.is_empty() {
        let mut k = Node::new("key-exchange").f("len", h.kex.len());
        if let Some(kind) = spki_kind(&h.kex) {
            k.push("format", kind);
        }
        k.push("bytes", hexs(&h.kex, 16));
        n.children.push(k);
    }
    if !h.data.is_empty() {
        n.children.push(
            Node::new("piggy-backed-data")
                .f("len", h.data.len())
                .f("bytes", hexs(&h.data, 16)),
        );
    }
    let hl = req_hash_len
        .or_else(|| nid::digest_len(h.md_nid))
        .unwrap_or(48);
    match h.split_tail(role, hl) {
        Ok((rh, sig)) => {
            if !rh.is_empty() {
                n.children.push(
                    Node::new("req-hash")
                        .f("len", rh.len())
                        .f("value", hex::encode(rh)),
                );
            }
            if !sig.is_empty() {
                n.children.push(
                    Node::new("signature")
                        .f("len", sig.len())
                        .f("bytes", hexs(sig, 16)),
                );
            }
        }
        Err(e) => {
            n = n.err(e).f("tail_len", h.tail.len());
        }
    }
    n
}

/// A 0.22 OAP header.
pub fn oap022(h: &OapHdrV022) -> Node {
    let mut n = Node::new("oap-0.22")
        .f("id", hex::encode(h.id))
        .f("timestamp", utc(h.timestamp))
        .f("crt_len", h.crt.len())
        .f("eph_len", h.eph.len())
        .f("data_len", h.data.len())
        .f("sig_len", h.sig.len())
        .note("Ouroboros 0.22 format (tutorial 06)");
    if !h.crt.is_empty() {
        n.children.push(certificate(&h.crt));
    }
    if !h.eph.is_empty() {
        let mut k = Node::new("ephemeral-key").f("len", h.eph.len());
        if let Some(kind) = spki_kind(&h.eph) {
            k.push("format", kind);
        }
        n.children.push(k);
    }
    n
}

/// The hash and OAP part after a management message.
pub fn tail(t: &MgmtTail, role: Option<Role>, udp: bool, out: &mut Vec<Node>) {
    if !t.hash.is_empty() {
        out.push(hash(&t.hash, udp));
    }
    match (&t.oap, role) {
        (Oap::Absent, _) => {}
        (Oap::V023(h), r) => out.push(oap023(h, r.unwrap_or(Role::Request), None)),
        (Oap::V022(h), _) => out.push(oap022(h)),
    }
}

/// A keepalive: an empty SDU, which an o7s flow end sends when it has sent nothing for a
/// quarter of the flow's QoS timeout (docs/WIRE.md); the peer counts it as traffic.
pub fn keepalive() -> Node {
    Node::new("keepalive").note("empty SDU")
}

/// Interprets an application SDU: keepalive (empty), oping, FRCT + oping, or opaque (guessed).
pub fn app_sdu(sdu: &[u8]) -> Node {
    if sdu.is_empty() {
        return keepalive();
    }
    if let Some(n) = oping(sdu) {
        return n;
    }
    if let Ok((f, rest)) = FrctRepr::parse(sdu) {
        let known = f.flags & 0x80 == 0 && f.flags != 0;
        let inner = if rest.is_empty() {
            Some(Node::new("(no payload)"))
        } else {
            oping(rest)
        };
        if known && (inner.is_some() || (rest.is_empty() && f.flags & 0x04 != 0)) {
            let mut n = frct(&f).note("guessed from the bytes");
            if let Some(i) = inner.filter(|_| !rest.is_empty()) {
                n.children.push(i);
            }
            return n;
        }
    }
    let mut n = Node::new("sdu")
        .f("len", sdu.len())
        .f("bytes", hexs(sdu, 24));
    if sdu.len() >= 28 {
        n = n.note(format!(
            "opaque; if encrypted (AEAD): iv 12, ciphertext {}, tag 16, key phase {}",
            sdu.len() - 28,
            sdu.first().map(|b| b >> 7).unwrap_or(0)
        ));
    }
    n
}

/// An FRCT header.
pub fn frct(f: &FrctRepr) -> Node {
    Node::new("frct")
        .f(
            "flags",
            format!("{} ({})", hexn(u64::from(f.flags), 2), f.flag_names()),
        )
        .f("rwe", f.rwe)
        .f("seqno", f.seqno)
        .f("ackno", f.ackno)
}

/// An oping message, if the bytes look like one.
pub fn oping(b: &[u8]) -> Option<Node> {
    let m = OpingMsg::parse(b).ok()?;
    if !m.is_plausible() || m.len() < o7s_wire::app::OPING_MIN_SIZE {
        return None;
    }
    let t = match m.msg_type() {
        OpingType::EchoRequest => "ECHO_REQUEST",
        OpingType::EchoReply => "ECHO_REPLY",
        OpingType::Unknown(_) => "UNKNOWN",
    };
    Some(
        Node::new("oping")
            .f("type", t)
            .f("id", m.id)
            .f("time", format!("{}.{:09}", m.tv_sec, m.tv_nsec))
            .f("size", m.len()),
    )
}

/// A DT PCI.
pub fn pci(p: &PciRepr) -> Node {
    Node::new("dt")
        .f("dst", hexn(p.dst_addr, 8))
        .f("qc", p.qc.to_string())
        .f("ttl", p.ttl)
        .f("ecn", p.ecn)
        .f("eid", hexn(p.eid, 16))
}

/// A flow allocator message.
pub fn fa(m: &FaMsg) -> Node {
    let mut n = Node::new(format!("flow-allocator {}", m.code))
        .f("s_addr", hexn(m.s_addr, 8))
        .f("r_eid", hexn(m.r_eid, 16))
        .f("s_eid", hexn(m.s_eid, 16))
        .f("response", m.response);
    if m.code == o7s_wire::code::FaCode::FlowUpdate {
        n.push("ece", m.ece);
    } else {
        n.children.push(qos(&m.qos));
    }
    n
}

/// A DT PDU of a unicast layer.
pub fn dt_pdu(p: &DtPdu) -> Node {
    let mut n = pci(&p.pci);
    match &p.body {
        DtBody::Fa(m, t) => {
            let mut f = fa(m);
            let role = match m.code {
                o7s_wire::code::FaCode::FlowReq => Some(Role::Request),
                o7s_wire::code::FaCode::FlowReply => Some(Role::Response),
                _ => None,
            };
            tail(t, role, false, &mut f.children);
            n.children.push(f);
        }
        DtBody::Component(b) if p.pci.eid == 1 => n.children.push(pb::dht(b)),
        DtBody::Component(b) => n.children.push(
            Node::new("component")
                .f("len", b.len())
                .f("bytes", hexs(b, 24)),
        ),
        DtBody::Flow(b) => n.children.push(app_sdu(b)),
    }
    n
}

/// An LSA.
pub fn lsa(l: &Lsa) -> Node {
    Node::new("link-state-advertisement")
        .f("d_addr", hexn(l.d_addr, 8))
        .f("s_addr", hexn(l.s_addr, 8))
        .f("seqno", l.seqno)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            utc(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
    }
}

/// The unicast layer's protobuf messages (`o7s_wire::unicast::pb`).
pub mod pb {
    use super::*;
    use o7s_wire::unicast::pb::{
        self, dht_code, CepMsg, DhtContactMsg, DhtMsg, EnrollAckMsg, EnrollReqMsg, EnrollRespMsg,
        IpcpConfigMsg,
    };
    use prost::Message;

    /// A `cep_msg`.
    pub fn cep(c: &CepMsg, len: usize) -> Node {
        Node::new("ocep cep_msg (protobuf)")
            .f("comp_name", c.comp_name.as_str())
            .f("protocol", c.protocol.as_str())
            .f("version", c.pref_version)
            .f(
                "syntax",
                match c.pref_syntax {
                    pb::SYNTAX_GPB => "GPB".to_string(),
                    pb::SYNTAX_FIXED => "FIXED".to_string(),
                    s => s.to_string(),
                },
            )
            .f("address", hexn(c.address, 8))
            .f("len", len)
    }

    fn contact(what: &str, c: &DhtContactMsg) -> Node {
        Node::new(what)
            .f("id", hexs(&c.id, 8))
            .f("addr", hexn(c.addr, 8))
    }

    fn config(c: &IpcpConfigMsg) -> Node {
        let mut n = Node::new("ipcp_config")
            .f("layer", c.layer_info.name.as_str())
            .f("dir_hash_algo", c.layer_info.dir_hash_algo)
            .f("ipcp_type", c.ipcp_type);
        if let Some(u) = &c.unicast {
            let mut d = Node::new("unicast")
                .f("addr_size", u.dt.addr_size)
                .f("eid_size", u.dt.eid_size)
                .f("max_ttl", u.dt.max_ttl)
                .f("routing", u.dt.routing.pol)
                .f("addr_auth", u.addr_auth_type)
                .f("cong_avoid", u.cong_avoid);
            if let Some(ls) = &u.dt.routing.ls {
                d.children.push(
                    Node::new("link_state")
                        .f("pol", ls.pol)
                        .f("t_recalc", ls.t_recalc)
                        .f("t_update", ls.t_update)
                        .f("t_timeo", ls.t_timeo),
                );
            }
            if let Some(h) = &u.dir.dht {
                d.children.push(
                    Node::new("dht")
                        .f("alpha", h.alpha)
                        .f("k", h.k)
                        .f("t_expire", h.t_expire)
                        .f("t_refresh", h.t_refresh)
                        .f("t_replicate", h.t_replicate)
                        .f("peer", hexn(h.peer, 8)),
                );
            }
            n.children.push(d);
        }
        n
    }

    /// An enrolment message: which of the three it is is told by its fields (a request
    /// has only the id, an acknowledgement the id and a result, a response the time and a
    /// configuration).
    pub fn oep(sdu: &[u8]) -> Node {
        if let Ok(r) = pb::decode::<EnrollRespMsg>(sdu) {
            let mut n = Node::new("oep enroll_resp (protobuf)")
                .f("id", hexs(&r.id, 8))
                .f("t_sec", r.t_sec)
                .f("t_nsec", r.t_nsec)
                .f("response", r.response);
            if let Some(c) = &r.conf {
                n.children.push(config(c));
            }
            return n;
        }
        let req = pb::decode::<EnrollReqMsg>(sdu)
            .ok()
            .filter(|m| m.encode_to_vec() == sdu);
        if let Some(r) = req {
            return Node::new("oep enroll_req (protobuf)").f("id", hexs(&r.id, 8));
        }
        match pb::decode::<EnrollAckMsg>(sdu) {
            Ok(a) => Node::new("oep enroll_ack (protobuf)")
                .f("id", hexs(&a.id, 8))
                .f("result", a.result),
            Err(e) => Node::new("oep enrolment message (protobuf)")
                .f("len", sdu.len())
                .err(e),
        }
    }

    /// A `dht_msg`.
    pub fn dht(b: &[u8]) -> Node {
        let m = match pb::decode::<DhtMsg>(b) {
            Ok(m) => m,
            Err(e) => {
                return Node::new("component (DHT, protobuf)")
                    .f("len", b.len())
                    .f("bytes", hexs(b, 24))
                    .err(e)
            }
        };
        let code = match m.code {
            dht_code::STORE => "STORE",
            dht_code::FIND_NODE_REQ => "FIND_NODE_REQ",
            dht_code::FIND_NODE_RSP => "FIND_NODE_RSP",
            dht_code::FIND_VALUE_REQ => "FIND_VALUE_REQ",
            _ => "FIND_VALUE_RSP",
        };
        let mut n = Node::new("dht_msg (protobuf)").f("code", code);
        n.children.push(contact("src", &m.src));
        if let Some(s) = &m.store {
            n.children.push(
                Node::new("store")
                    .f("key", hexs(&s.key, 8))
                    .f(
                        "val",
                        DhtMsg::addr_of(&s.val).map_or_else(|| hexs(&s.val, 8), |a| hexn(a, 8)),
                    )
                    .f("exp", s.exp),
            );
        }
        if let Some(f) = &m.find {
            n.children.push(
                Node::new("find")
                    .f("cookie", hexn(f.cookie, 16))
                    .f("key", hexs(&f.key, 8)),
            );
        }
        if let Some(r) = &m.node {
            let mut x = Node::new("node")
                .f("cookie", hexn(r.cookie, 16))
                .f("key", hexs(&r.key, 8))
                .f("contacts", r.contacts.len());
            for c in &r.contacts {
                x.children.push(contact("contact", c));
            }
            n.children.push(x);
        }
        if let Some(v) = &m.val {
            let vals: Vec<String> = v
                .values
                .iter()
                .map(|x| DhtMsg::addr_of(x).map_or_else(|| hexs(x, 8), |a| hexn(a, 8)))
                .collect();
            n.children
                .push(Node::new("values").f("addrs", vals.join(" ")));
        }
        n
    }
}
