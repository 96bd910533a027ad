//! The engine of `o7s-dissect`: decodes every Ouroboros frame of a capture into a tree of
//! layers ([`Node`]).
//!
//! Which lower-layer flows carry a unicast layer is runtime knowledge that the bytes do not
//! state (see the blog post in the seeds). It can be given ([`LayerSpec`], `--layer`), and
//! otherwise the dissector guesses from the whole file: a flow whose SDUs are all 24-byte
//! link-state advertisements is a unicast Management flow, a flow whose SDUs almost all
//! decode as DT PCIs with one destination address is a unicast data-transfer flow. Guesses
//! are labelled as such in the output.

pub mod describe;
pub mod flows_csv;
pub mod node;
pub mod seed;
pub mod tshark;

use node::{hexn, Node};
use o7s_wire::capfile::{self, Record};
use o7s_wire::code::{EthCode, UdpCode};
use o7s_wire::ethernet::{mac_string, EthernetRepr};
use o7s_wire::frame::{DecodeOpts, DixBody, EthFrame, LlcBody, UdpMsg};
use o7s_wire::ip;
use o7s_wire::oap::Role;
use o7s_wire::unicast::dt::DtConfig;
use o7s_wire::unicast::lsa::Lsa;
use o7s_wire::unicast::sdu::{looks_like_lsa, DtPdu};
use std::collections::HashMap;
use std::net::IpAddr;

/// The lower layer a flow belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lower {
    /// eth-dix (key: eid).
    Dix,
    /// eth-llc (key: DSAP).
    Llc,
    /// udp4/udp6 (key: eid).
    Udp,
}

/// `--layer` knowledge: lower-layer endpoint `id` of `lower` (any lower layer if `None`)
/// carries a unicast layer with the given DT field sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSpec {
    /// Lower layer, or any.
    pub lower: Option<Lower>,
    /// The eid (dix, udp) or SAP (llc).
    pub id: u32,
    /// DT field sizes of the unicast layer.
    pub dt: DtConfig,
}

impl std::str::FromStr for LayerSpec {
    type Err = String;
    /// `[dix:|llc:|udp:]eid=0x41:unicast[,addr=4,eid=8]` (`sap=` for llc).
    fn from_str(s: &str) -> Result<Self, String> {
        let usage = "expected [dix:|llc:|udp:]eid=N:unicast[,addr=4,eid=8], e.g. eid=0x41:unicast";
        let (lower, rest) = match s.split_once(':') {
            Some(("dix", r)) => (Some(Lower::Dix), r),
            Some(("llc", r)) => (Some(Lower::Llc), r),
            Some(("udp", r)) => (Some(Lower::Udp), r),
            _ => (None, s),
        };
        let (id_part, kind) = rest
            .split_once(':')
            .ok_or_else(|| format!("'{s}': {usage}"))?;
        let id_str = id_part
            .strip_prefix("eid=")
            .or_else(|| id_part.strip_prefix("sap="))
            .ok_or_else(|| format!("'{s}': {usage}"))?;
        let id = parse_num(id_str).ok_or_else(|| format!("'{id_str}' is not a number"))?;
        let mut parts = kind.split(',');
        if parts.next() != Some("unicast") {
            return Err(format!(
                "'{s}': only 'unicast' layers can be named; {usage}"
            ));
        }
        let mut dt = DtConfig::DEFAULT;
        for p in parts {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| format!("'{p}': expected key=value"))?;
            let v = parse_num(v).ok_or_else(|| format!("'{v}' is not a number"))? as usize;
            match k {
                "addr" => dt.addr_size = v,
                "eid" => dt.eid_size = v,
                _ => return Err(format!("unknown unicast option '{k}' (addr, eid)")),
            }
        }
        let dt = DtConfig::new(dt.addr_size, dt.eid_size).map_err(|e| e.to_string())?;
        Ok(Self {
            lower,
            id: id as u32,
            dt,
        })
    }
}

fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Dissector settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// The eth-dix Ethertype.
    pub ethertype: u16,
    /// UDP port of udp layers.
    pub udp_port: u16,
    /// Name hash length of eth/unicast FLOW_REQs (`None`: guess).
    pub hash_len: Option<usize>,
    /// Known unicast layers.
    pub layers: Vec<LayerSpec>,
    /// Guess unicast layers on the other flows.
    pub guess: bool,
    /// Also list non-Ouroboros frames.
    pub all: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ethertype: o7s_wire::ethernet::ETHERTYPE_OUROBOROS,
            udp_port: o7s_wire::udp::DEFAULT_PORT,
            hash_len: None,
            layers: vec![],
            guess: true,
            all: false,
        }
    }
}

/// A lower-layer flow in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    lower: Lower,
    id: u32,
    dst: [u8; 16],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role2 {
    UnicastMgmt,
    UnicastDt,
    Unicast,
    Enrollment,
}

/// What a lower-layer flow carries, and how that is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Known {
    role: Role2,
    /// From the flow's own connection-establishment message (else a guess).
    learnt: bool,
}

/// What was found in a file.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    /// Records in the file.
    pub frames: usize,
    /// eth-dix frames.
    pub dix: usize,
    /// eth-llc frames.
    pub llc: usize,
    /// udp-layer datagrams.
    pub udp: usize,
    /// Frames of no Ouroboros layer.
    pub other: usize,
    /// Ouroboros frames with a malformed part (truncated captures excluded).
    pub malformed: usize,
    /// Frames the capture holds only partly (snaplen).
    pub truncated: usize,
}

/// One decoded frame.
#[derive(Debug, Clone)]
pub struct Dissected {
    /// Index in the file.
    pub index: usize,
    /// Whether it belongs to an Ouroboros layer.
    pub ouroboros: bool,
    /// The layers.
    pub node: Node,
}

/// An SDU of a lower-layer flow, located for classification.
struct Sdu<'a> {
    key: FlowKey,
    bytes: &'a [u8],
}

fn ip_key(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v) => v.to_ipv6_mapped().octets(),
        IpAddr::V6(v) => v.octets(),
    }
}

fn mac_key(m: [u8; 6]) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..6].copy_from_slice(&m);
    k
}

/// Decodes a whole capture file.
pub fn dissect_file(file: &[u8], opts: &Options) -> Result<(Vec<Dissected>, Summary), String> {
    let mut out = Vec::new();
    let mut sum = Summary::default();
    walk(file, opts, |r, dopts, roles| {
        let d = dissect_record(r, opts, dopts, roles);
        sum.frames += 1;
        if r.truncated() {
            sum.truncated += 1;
        }
        if d.ouroboros {
            match d
                .node
                .children
                .first()
                .and_then(|e| e.children.first())
                .map(|n| n.layer.as_str())
            {
                Some(l) if l.starts_with("eth-dix") => sum.dix += 1,
                Some(l) if l.starts_with("eth-llc") => sum.llc += 1,
                _ => sum.udp += 1,
            }
            if d.node.has_error() && !r.truncated() {
                sum.malformed += 1;
            }
        } else {
            sum.other += 1;
        }
        out.push(d);
    })?;
    Ok((out, sum))
}

/// Reads the records of a capture file in order, calling `each` with every record and what
/// is known or guessed at that point of which lower-layer flows carry what: the knowledge
/// [`dissect_file`] decodes with, shared by the other modes (e.g. [`flows_csv`]).
fn walk<'a>(
    file: &'a [u8],
    opts: &Options,
    mut each: impl FnMut(&Record<'a>, &DecodeOpts, &HashMap<FlowKey, Known>),
) -> Result<(), String> {
    let recs = capfile::parse(file).map_err(|e| format!("not a readable capture: {e}"))?;
    let dopts = DecodeOpts {
        ethertype: opts.ethertype,
        hash_len: opts.hash_len,
    };
    let mut roles: HashMap<FlowKey, Known> = if opts.guess {
        guess_roles(&recs, opts, &dopts)
            .into_iter()
            .map(|(k, role)| {
                (
                    k,
                    Known {
                        role,
                        learnt: false,
                    },
                )
            })
            .collect()
    } else {
        HashMap::new()
    };
    for r in &recs {
        // What the capture itself says beats a guess, from the frame that says it on: the
        // first SDU of each end of a new N-1 flow is its connection-establishment message,
        // and an endpoint id may serve another flow later.
        if let Some(s) = locate_sdu(r, opts, &dopts) {
            if let Some(role) = cep_role(s.bytes) {
                roles.insert(s.key, Known { role, learnt: true });
            }
        }
        each(r, &dopts, &roles);
    }
    Ok(())
}

/// Finds the lower-layer SDU of a record, if it is a data frame of an Ouroboros layer.
fn locate_sdu<'a>(r: &Record<'a>, opts: &Options, dopts: &DecodeOpts) -> Option<Sdu<'a>> {
    let (eth, payload) = EthernetRepr::parse(r.data).ok()?;
    if let Ok(Some(d)) = ip::udp_in(eth.type_len, payload) {
        if d.sport == opts.udp_port || d.dport == opts.udp_port {
            let dg = o7s_wire::udp::Datagram::new_checked(d.payload).ok()?;
            if dg.eid() == 0 {
                return None;
            }
            let key = FlowKey {
                lower: Lower::Udp,
                id: dg.eid(),
                dst: ip_key(d.dst),
            };
            return Some(Sdu {
                key,
                bytes: d.payload.get(4..)?,
            });
        }
        return None;
    }
    if eth.type_len == dopts.ethertype {
        let p = o7s_wire::dix::Packet::new_checked(payload).ok()?;
        if p.eid() == 0 {
            return None;
        }
        let key = FlowKey {
            lower: Lower::Dix,
            id: u32::from(p.eid()),
            dst: mac_key(eth.dst),
        };
        let len = usize::from(p.length());
        return Some(Sdu {
            key,
            bytes: payload.get(4..4 + len)?,
        });
    }
    None
}

/// The SDU of a lower-layer flow in a record, as [`dissect_file`] finds it (the SDUs of
/// the management endpoints left out), with the length it had on the wire.
#[derive(Debug, Clone)]
struct LowerSdu {
    key: FlowKey,
    /// What the capture holds of the SDU (all of it unless the record is truncated).
    bytes: Vec<u8>,
    /// Its length on the wire: for a record truncated by the capture's snaplen, the
    /// record's original length less the lower-layer headers (for eth-dix and eth-llc at
    /// most what their length field says, which leaves runt padding out).
    wire_len: usize,
}

/// Where `inner` starts within `outer`, if it is a part of it.
fn offset_in(outer: &[u8], inner: &[u8]) -> Option<usize> {
    let off = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    (off + inner.len() <= outer.len()).then_some(off)
}

/// Finds the SDU of a data frame of an eth-dix, eth-llc or udp layer: with the decoders
/// [`dissect_file`] uses for a complete record, from the headers alone for a truncated one.
fn lower_sdu(r: &Record<'_>, opts: &Options, dopts: &DecodeOpts) -> Option<LowerSdu> {
    if r.linktype != capfile::LINKTYPE_ETHERNET {
        return None;
    }
    let (eth, payload) = EthernetRepr::parse(r.data).ok()?;
    let cut = r.truncated();
    if let Ok(Some(d)) = ip::udp_in_with(eth.type_len, payload, cut) {
        if d.sport != opts.udp_port && d.dport != opts.udp_port {
            return None;
        }
        let key = |id| FlowKey {
            lower: Lower::Udp,
            id,
            dst: ip_key(d.dst),
        };
        if !cut {
            return match UdpMsg::decode(d.payload).ok()? {
                UdpMsg::Data { eid, sdu } => Some(LowerSdu {
                    key: key(eid),
                    wire_len: sdu.len(),
                    bytes: sdu,
                }),
                UdpMsg::Mgmt(..) => None,
            };
        }
        let dg = o7s_wire::udp::Datagram::new_checked(d.payload).ok()?;
        if dg.eid() == 0 {
            return None;
        }
        let sdu = dg.payload();
        let head = offset_in(r.data, sdu)?;
        return Some(LowerSdu {
            key: key(dg.eid()),
            wire_len: r.orig_len.saturating_sub(head),
            bytes: sdu.to_vec(),
        });
    }
    if !cut {
        return match EthFrame::decode(r.data, dopts).ok()?? {
            EthFrame::Dix(f) => match f.body {
                DixBody::Data(sdu) => Some(LowerSdu {
                    key: FlowKey {
                        lower: Lower::Dix,
                        id: u32::from(f.eid),
                        dst: mac_key(eth.dst),
                    },
                    wire_len: sdu.len(),
                    bytes: sdu,
                }),
                DixBody::Mgmt(..) | DixBody::LegacyMgmt(..) => None,
            },
            EthFrame::Llc(f) => match f.body {
                LlcBody::Data(sdu) => Some(LowerSdu {
                    key: FlowKey {
                        lower: Lower::Llc,
                        id: u32::from(f.llc.dsap),
                        dst: mac_key(eth.dst),
                    },
                    wire_len: sdu.len(),
                    bytes: sdu,
                }),
                LlcBody::Mgmt(..) => None,
            },
        };
    }
    // A truncated eth-dix or eth-llc frame: its header, and the SDU as far as it goes.
    let (lower, id, head_len, len_field) = if eth.type_len == dopts.ethertype {
        let hdr = payload.get(..o7s_wire::dix::HEADER_LEN)?;
        let eid = o7s_wire::field::be16(hdr, o7s_wire::dix::offsets::EID);
        if eid == o7s_wire::dix::MGMT_EID {
            return None;
        }
        let len = o7s_wire::field::be16(hdr, o7s_wire::dix::offsets::LENGTH);
        (
            Lower::Dix,
            u32::from(eid),
            o7s_wire::dix::HEADER_LEN,
            usize::from(len),
        )
    } else if eth.type_len <= o7s_wire::ethernet::MAX_8023_LEN {
        let dsap = o7s_wire::llc::sap_wire(*payload.first()?);
        if !(2..66).contains(&dsap) {
            return None;
        }
        let len = usize::from(eth.type_len).checked_sub(o7s_wire::llc::HEADER_LEN)?;
        (Lower::Llc, u32::from(dsap), o7s_wire::llc::HEADER_LEN, len)
    } else {
        return None;
    };
    let sdu = payload.get(head_len..(head_len + len_field).min(payload.len()))?;
    let head = offset_in(r.data, sdu)?;
    Some(LowerSdu {
        key: FlowKey {
            lower,
            id,
            dst: mac_key(eth.dst),
        },
        wire_len: r.orig_len.saturating_sub(head).min(len_field),
        bytes: sdu.to_vec(),
    })
}

fn guess_roles(recs: &[Record<'_>], opts: &Options, dopts: &DecodeOpts) -> HashMap<FlowKey, Role2> {
    let mut per_flow: HashMap<FlowKey, Vec<&[u8]>> = HashMap::new();
    for r in recs.iter().filter(|r| !r.truncated()) {
        // Keepalives (empty SDUs) go on every kind of flow: they say nothing of its role.
        if let Some(s) = locate_sdu(r, opts, dopts).filter(|s| !s.bytes.is_empty()) {
            per_flow.entry(s.key).or_default().push(s.bytes);
        }
    }
    let mut roles = HashMap::new();
    for (k, sdus) in per_flow {
        if sdus.iter().all(|s| looks_like_lsa(s)) {
            roles.insert(k, Role2::UnicastMgmt);
            continue;
        }
        let mut dsts: HashMap<u64, usize> = HashMap::new();
        let mut valid = 0;
        for s in &sdus {
            if let Ok(p) = DtPdu::decode(s, DtConfig::DEFAULT, opts.hash_len) {
                let fd = p.pci.eid & 0xffff_ffff;
                let sane_eid = p.pci.eid < 64 || (64..=0xffff).contains(&fd);
                if p.pci.ttl > 0 && u8::from(p.pci.qc) <= 2 && p.pci.dst_addr != 0 && sane_eid {
                    valid += 1;
                    *dsts.entry(p.pci.dst_addr).or_default() += 1;
                }
            }
        }
        let top = dsts.values().copied().max().unwrap_or(0);
        if valid * 10 >= sdus.len() * 9 && top * 10 >= valid * 9 && !sdus.is_empty() {
            roles.insert(k, Role2::UnicastDt);
        }
    }
    roles
}

fn spec_for(opts: &Options, key: &FlowKey) -> Option<LayerSpec> {
    opts.layers
        .iter()
        .copied()
        .find(|s| s.id == key.id && s.lower.is_none_or(|l| l == key.lower))
}

/// How what is known of a lower-layer flow was learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    Hint,
    Cep,
    Guess,
}

/// What an SDU of a lower-layer flow is read as.
#[derive(Debug, Clone, PartialEq)]
enum SduKind {
    /// An OCEP `cep_msg` opening the flow.
    Cep(o7s_wire::unicast::pb::CepMsg),
    /// A link-state advertisement of a unicast management flow.
    Lsa,
    /// A DT PDU of a unicast data-transfer flow with these field sizes.
    Dt(DtConfig),
    /// A unicast enrolment message.
    Enrollment,
    /// A keepalive: an SDU that was empty on the wire (o7s data planes send one on a flow,
    /// N-1 flows of a unicast layer included, that has sent nothing for a quarter of its
    /// QoS timeout; docs/WIRE.md). It carries no DT PCI. The role of the flow, if known.
    Keepalive(Option<Role2>),
    /// An application's SDU (or opaque).
    App,
}

/// Decides what an SDU of the flow `key` is, from what is known or guessed of the flow.
/// `wire_len` is its length on the wire (more than `sdu.len()` when the capture cut it): an
/// SDU empty on the wire is a keepalive, whatever the flow carries.
fn sdu_kind(
    sdu: &[u8],
    wire_len: usize,
    key: &FlowKey,
    opts: &Options,
    roles: &HashMap<FlowKey, Known>,
) -> (SduKind, How) {
    let (role, dt, how) = match (spec_for(opts, key), roles.get(key)) {
        (Some(s), _) => (Some(Role2::Unicast), s.dt, How::Hint),
        (None, Some(k)) if k.learnt => (Some(k.role), DtConfig::DEFAULT, How::Cep),
        (None, k) => (k.map(|k| k.role), DtConfig::DEFAULT, How::Guess),
    };
    if wire_len == 0 {
        return (SduKind::Keepalive(role), how);
    }
    if let Some(c) = ocep(sdu) {
        return (SduKind::Cep(c), how);
    }
    let kind = match role {
        Some(Role2::UnicastMgmt) | Some(Role2::Unicast) if looks_like_lsa(sdu) => SduKind::Lsa,
        Some(Role2::UnicastDt) | Some(Role2::Unicast) => SduKind::Dt(dt),
        Some(Role2::Enrollment) => SduKind::Enrollment,
        _ => SduKind::App,
    };
    (kind, how)
}

/// Decodes a lower-layer SDU according to what is known or guessed of its flow.
fn sdu_node(sdu: &[u8], key: &FlowKey, opts: &Options, roles: &HashMap<FlowKey, Known>) -> Node {
    let (kind, how) = sdu_kind(sdu, sdu.len(), key, opts, roles);
    let label = |n: Node, what: &str| match how {
        How::Guess => n.note(format!("GUESS: {what} (give --layer to be sure)")),
        How::Cep => n.note(format!("{what} (its CEP says so)")),
        How::Hint => n.note(format!("{what} (--layer)")),
    };
    match kind {
        SduKind::Cep(c) => describe::pb::cep(&c, sdu.len()),
        SduKind::Lsa => match Lsa::parse(sdu) {
            Ok(l) => label(describe::lsa(&l), "unicast layer management flow"),
            Err(e) => Node::new("link-state-advertisement").err(e),
        },
        SduKind::Dt(dt) => match DtPdu::decode(sdu, dt, opts.hash_len) {
            Ok(p) => label(describe::dt_pdu(&p), "unicast layer data-transfer flow"),
            Err(e) => label(Node::new("dt").err(e), "unicast layer data-transfer flow"),
        },
        SduKind::Enrollment => label(describe::pb::oep(sdu), "unicast layer enrolment flow"),
        SduKind::Keepalive(role) => match role {
            Some(r) => label(describe::keepalive(), role_name(r)),
            None => describe::keepalive(),
        },
        SduKind::App => describe::app_sdu(sdu),
    }
}

/// What a lower-layer flow with `role` is, in words.
fn role_name(role: Role2) -> &'static str {
    match role {
        Role2::UnicastMgmt => "unicast layer management flow",
        Role2::UnicastDt => "unicast layer data-transfer flow",
        Role2::Unicast => "unicast layer flow",
        Role2::Enrollment => "unicast layer enrolment flow",
    }
}

/// What the flow an OCEP `cep_msg` opens carries (its component name), if `sdu` is one.
fn cep_role(sdu: &[u8]) -> Option<Role2> {
    let (&tag, rest) = sdu.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let name = std::str::from_utf8(rest.get(..usize::from(len))?).ok()?;
    match (tag, name) {
        (0x0a, "Management") => Some(Role2::UnicastMgmt),
        (0x0a, "Data Transfer") => Some(Role2::UnicastDt),
        (0x0a, "Enrollment") => Some(Role2::Enrollment),
        _ => None,
    }
}

/// An OCEP `cep_msg` at the start of an N-1 flow (one naming a known component).
fn ocep(sdu: &[u8]) -> Option<o7s_wire::unicast::pb::CepMsg> {
    let c = o7s_wire::unicast::pb::decode::<o7s_wire::unicast::pb::CepMsg>(sdu).ok()?;
    c.component()
        .filter(|k| k.protocol() == c.protocol)
        .is_some()
        .then_some(c)
}

fn dissect_record(
    r: &Record<'_>,
    opts: &Options,
    dopts: &DecodeOpts,
    roles: &HashMap<FlowKey, Known>,
) -> Dissected {
    // Frames are numbered from 1, as tcpdump -# and Wireshark do.
    let mut top = Node::new(format!("#{}", r.index + 1))
        .f(
            "time",
            // A crafted capture's times may not fit: saturated, not overflowed.
            describe::utc(
                r.ts_sec
                    .saturating_mul(1_000_000_000)
                    .saturating_add(u64::from(r.ts_nsec)),
            ),
        )
        .f("len", r.orig_len);
    if r.truncated() {
        top = top.note(format!(
            "truncated by the capture: {} of {} bytes",
            r.data.len(),
            r.orig_len
        ));
    }
    if r.linktype != capfile::LINKTYPE_ETHERNET {
        let n = top.child(
            Node::new("link")
                .f("type", r.linktype)
                .note("not Ethernet: not decoded"),
        );
        return Dissected {
            index: r.index,
            ouroboros: false,
            node: n,
        };
    }
    let (eth, payload) = match EthernetRepr::parse(r.data) {
        Ok(x) => x,
        Err(e) => {
            return Dissected {
                index: r.index,
                ouroboros: false,
                node: top.child(Node::new("ethernet").err(e)),
            }
        }
    };
    let mut en = Node::new("ethernet")
        .f("src", mac_string(&eth.src))
        .f("dst", mac_string(&eth.dst))
        .f("type", hexn(u64::from(eth.type_len), 4));
    if r.truncated() {
        return truncated_record(r, opts, top, en, &eth, payload);
    }
    // UDP layers.
    if let Ok(Some(d)) = ip::udp_in(eth.type_len, payload) {
        if d.sport == opts.udp_port || d.dport == opts.udp_port {
            let mut un = Node::new("udp-layer")
                .f("src", format!("{}:{}", d.src, d.sport))
                .f("dst", format!("{}:{}", d.dst, d.dport))
                .f("len", d.payload.len());
            un.children.push(udp_msg(d.payload, r, opts, roles, &d));
            en.children.push(un);
            return Dissected {
                index: r.index,
                ouroboros: true,
                node: top.child(en),
            };
        }
    }
    match EthFrame::decode(r.data, dopts) {
        Ok(Some(EthFrame::Dix(f))) => {
            let mut dn = Node::new("eth-dix").f("eid", hexn(u64::from(f.eid), 4));
            let key = FlowKey {
                lower: Lower::Dix,
                id: u32::from(f.eid),
                dst: mac_key(eth.dst),
            };
            match &f.body {
                DixBody::Mgmt(m, t) => {
                    let mut mn = Node::new(format!("mgmt {}", m.code))
                        .f("seid", hexn(u64::from(m.seid), 4))
                        .f("deid", hexn(u64::from(m.deid), 4))
                        .f("response", m.response);
                    if m.code.carries_oap() {
                        mn.children.push(describe::qos(&m.qos));
                    }
                    describe::tail(t, eth_role(m.code), false, &mut mn.children);
                    dn.children.push(mn);
                }
                DixBody::LegacyMgmt(m, t) => {
                    let mut mn = Node::new(format!("mgmt-0.21 {}", m.code))
                        .f("seid", hexn(u64::from(m.seid), 4))
                        .f("deid", hexn(u64::from(m.deid), 4))
                        .f("cypher_s", m.cypher_s)
                        .f("response", m.response)
                        .note("Ouroboros 0.21 38-byte management message (tutorial 04)");
                    mn.children.push(describe::qos(&m.qos));
                    describe::tail(t, None, false, &mut mn.children);
                    dn.children.push(mn);
                }
                DixBody::Data(sdu) => {
                    dn.push("length", sdu.len());
                    dn.children.push(sdu_node(sdu, &key, opts, roles));
                }
            }
            if !f.padding.is_empty() {
                dn.push("padding", f.padding.len());
            }
            en.children.push(dn);
            Dissected {
                index: r.index,
                ouroboros: true,
                node: top.child(en),
            }
        }
        Ok(Some(EthFrame::Llc(f))) => {
            let mut ln = Node::new("eth-llc")
                .f("dsap", hexn(u64::from(f.llc.dsap), 2))
                .f("ssap", hexn(u64::from(f.llc.ssap), 2))
                .f("ctrl", hexn(u64::from(f.llc.ctrl), 2));
            match &f.body {
                LlcBody::Mgmt(m, t) => {
                    let mut mn = Node::new(format!("mgmt {}", m.code))
                        .f("ssap", hexn(u64::from(m.ssap), 2))
                        .f("dsap", hexn(u64::from(m.dsap), 2))
                        .f("response", m.response);
                    if m.code.carries_oap() {
                        mn.children.push(describe::qos(&m.qos));
                    }
                    describe::tail(t, eth_role(m.code), false, &mut mn.children);
                    ln.children.push(mn);
                }
                LlcBody::Data(sdu) => {
                    let key = FlowKey {
                        lower: Lower::Llc,
                        id: u32::from(f.llc.dsap),
                        dst: mac_key(eth.dst),
                    };
                    ln.children.push(sdu_node(sdu, &key, opts, roles));
                }
            }
            en.children.push(ln);
            Dissected {
                index: r.index,
                ouroboros: true,
                node: top.child(en),
            }
        }
        Ok(None) => Dissected {
            index: r.index,
            ouroboros: false,
            node: top.child(en.note("not Ouroboros")),
        },
        Err(e) => {
            let layer = if eth.type_len == opts.ethertype {
                "eth-dix"
            } else {
                "eth-llc"
            };
            en.children.push(Node::new(layer).err(e));
            Dissected {
                index: r.index,
                ouroboros: true,
                node: top.child(en),
            }
        }
    }
}

/// A frame the capture holds only partly: the lower-layer header, and what is there of the SDU.
fn truncated_record(
    r: &Record<'_>,
    opts: &Options,
    top: Node,
    mut en: Node,
    eth: &EthernetRepr,
    payload: &[u8],
) -> Dissected {
    let partial = |b: &[u8]| {
        Node::new("sdu (partial)")
            .f("captured", b.len())
            .f("bytes", node::hexs(b, 24))
    };
    if let Ok(Some(d)) = ip::udp_in_with(eth.type_len, payload, true) {
        if d.sport == opts.udp_port || d.dport == opts.udp_port {
            let mut un = Node::new("udp-layer")
                .f("src", format!("{}:{}", d.src, d.sport))
                .f("dst", format!("{}:{}", d.dst, d.dport));
            if let Ok(dg) = o7s_wire::udp::Datagram::new_checked(d.payload) {
                un.push("eid", hexn(u64::from(dg.eid()), 8));
                un.children.push(partial(dg.payload()));
            }
            en.children.push(un);
            return Dissected {
                index: r.index,
                ouroboros: true,
                node: top.child(en),
            };
        }
    }
    if eth.type_len == opts.ethertype && payload.len() >= 4 {
        let eid = o7s_wire::field::be16(payload, o7s_wire::dix::offsets::EID);
        let len = o7s_wire::field::be16(payload, o7s_wire::dix::offsets::LENGTH);
        let dn = Node::new("eth-dix")
            .f("eid", hexn(u64::from(eid), 4))
            .f("length", len)
            .child(partial(payload.get(4..).unwrap_or(&[])));
        en.children.push(dn);
        return Dissected {
            index: r.index,
            ouroboros: true,
            node: top.child(en),
        };
    }
    Dissected {
        index: r.index,
        ouroboros: false,
        node: top.child(en),
    }
}

fn eth_role(c: EthCode) -> Option<Role> {
    match c {
        EthCode::FlowReq => Some(Role::Request),
        EthCode::FlowReply => Some(Role::Response),
        _ => None,
    }
}

fn udp_msg(
    payload: &[u8],
    _r: &Record<'_>,
    opts: &Options,
    roles: &HashMap<FlowKey, Known>,
    d: &ip::UdpDatagram<'_>,
) -> Node {
    match UdpMsg::decode(payload) {
        Ok(UdpMsg::Mgmt(m, t)) => {
            let role = match m.code {
                UdpCode::FlowReq => Some(Role::Request),
                UdpCode::FlowReply => Some(Role::Response),
                UdpCode::Unknown(_) => None,
            };
            let mut mn = Node::new(format!("mgmt {}", m.code))
                .f("requester_eid", hexn(u64::from(m.requester_eid), 8))
                .f("responder_eid", hexn(u64::from(m.responder_eid), 8))
                .f("response", m.response);
            mn.children.push(describe::qos(&m.qos));
            describe::tail(&t, role, true, &mut mn.children);
            mn
        }
        Ok(UdpMsg::Data { eid, sdu }) => {
            let key = FlowKey {
                lower: Lower::Udp,
                id: eid,
                dst: ip_key(d.dst),
            };
            Node::new("data")
                .f("eid", hexn(u64::from(eid), 8))
                .f("length", sdu.len())
                .child(sdu_node(&sdu, &key, opts, roles))
        }
        Err(e) => Node::new("udp-layer message").err(e),
    }
}

/// Renders frames and the summary as text.
pub fn render_text(frames: &[Dissected], sum: &Summary, all: bool) -> String {
    let mut s = String::new();
    for f in frames.iter().filter(|f| all || f.ouroboros) {
        f.node.render(0, &mut s);
    }
    s.push_str(&format!(
        "{} frames: {} eth-dix, {} eth-llc, {} udp-layer, {} other; {} malformed, {} truncated by the capture\n",
        sum.frames, sum.dix, sum.llc, sum.udp, sum.other, sum.malformed, sum.truncated
    ));
    s
}

/// Renders frames as JSON lines, then the summary as a last line.
pub fn render_json(frames: &[Dissected], sum: &Summary, all: bool) -> String {
    let mut s = String::new();
    for f in frames.iter().filter(|f| all || f.ouroboros) {
        s.push_str(&f.node.to_json().to_string());
        s.push('\n');
    }
    s.push_str(&serde_json::json!({ "summary": sum }).to_string());
    s.push('\n');
    s
}
