//! The protobuf messages of a 0.23 unicast layer (unicast facts §1): connection
//! establishment (`cep_msg`), enrolment (`enroll_req/resp/ack_msg`), the layer
//! configuration an enrollee adopts (`ipcp_config_msg`), and the DHT directory (`dht_msg`).
//!
//! The reference encodes them with protobuf-c as proto2: fields in ascending number order
//! and every required field always present, even when 0. prost's `required` fields are
//! plain values that are always encoded, and prost writes fields in the order they are
//! declared, which here is the field-number order, so a decoded message re-encodes to the
//! same bytes (tested against every such message in the reference's captures). Repeated
//! scalars are unpacked, as proto2 has them by default.
//!
//! Each message travels raw, one per SDU, with no type tag: the receiver knows the type
//! from the component and the position in the exchange. [`decode`] adds what protobuf
//! does not check: a bound on the SDU's length, and per-message checks of lengths and
//! counts ([`Check`]), so that a peer cannot make us keep or walk huge lists.

use prost::Message;

/// Longest SDU decoded as one of these messages (the reference reads CEPs into 128 bytes
/// and DHT messages into one SDU).
pub const MAX_MSG_LEN: usize = 65_535;

/// Most contacts a DHT response may carry (the reference's k is at most 20).
pub const MAX_CONTACTS: usize = 20;

/// Most values a FIND_VALUE response may carry (the reference sends at most 8).
pub const MAX_VALUES: usize = 8;

/// Longest proof after a value's address: an o7s layer whose members sign their directory
/// entries (docs/WIRE.md "Signed directory entries") sends the 8-byte address and a proof
/// of at most this many bytes; the reference's values are the 8 bytes alone.
pub const MAX_PROOF_LEN: usize = 2048;

/// Longest DHT id or key (SHA3-512).
pub const MAX_KEY_LEN: usize = 64;

/// Why an SDU is not an acceptable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PbError {
    /// Longer than [`MAX_MSG_LEN`].
    #[error("message of {0} bytes is longer than {MAX_MSG_LEN}")]
    TooLong(usize),
    /// Not protobuf of this message's shape.
    #[error("not a valid {what}: {why}")]
    Malformed {
        /// The message type.
        what: &'static str,
        /// prost's reason.
        why: String,
    },
    /// Well-formed, but a field is out of bounds.
    #[error("{what}: {why}")]
    Invalid {
        /// The message type.
        what: &'static str,
        /// Which field and bound.
        why: String,
    },
}

/// Checks of a decoded message beyond its shape.
pub trait Check {
    /// The message type's name, for errors.
    const NAME: &'static str;
    /// `Err` with the field and bound that is not met.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Decodes one message from an SDU and checks it.
pub fn decode<M: Message + Default + Check>(sdu: &[u8]) -> Result<M, PbError> {
    if sdu.len() > MAX_MSG_LEN {
        return Err(PbError::TooLong(sdu.len()));
    }
    let m = M::decode(sdu).map_err(|e| PbError::Malformed {
        what: M::NAME,
        why: e.to_string(),
    })?;
    m.check()
        .map_err(|why| PbError::Invalid { what: M::NAME, why })?;
    Ok(m)
}

/// `fixed_conc_syntax_msg` (never sent by the reference).
#[derive(Clone, PartialEq, Eq, Message)]
pub struct FixedConcSyntaxMsg {
    /// Field ids.
    #[prost(uint32, repeated, packed = "false", tag = "1")]
    pub fids: Vec<u32>,
    /// Field lengths.
    #[prost(uint32, repeated, packed = "false", tag = "2")]
    pub lens: Vec<u32>,
}

/// `cep_msg`: the first SDU each way on every N-1 flow of a unicast layer (facts §2.2).
#[derive(Clone, PartialEq, Eq, Message)]
pub struct CepMsg {
    /// "Enrollment", "Management" or "Data Transfer".
    #[prost(string, required, tag = "1")]
    pub comp_name: String,
    /// "OEP", "LSP" or "dtp".
    #[prost(string, required, tag = "2")]
    pub protocol: String,
    /// 1.
    #[prost(int32, required, tag = "3")]
    pub pref_version: i32,
    /// Never sent.
    #[prost(int32, repeated, packed = "false", tag = "4")]
    pub supp_version: Vec<i32>,
    /// [`SYNTAX_GPB`] or [`SYNTAX_FIXED`].
    #[prost(int32, required, tag = "5")]
    pub pref_syntax: i32,
    /// Never sent.
    #[prost(int32, repeated, packed = "false", tag = "6")]
    pub supp_syntax: Vec<i32>,
    /// Never sent.
    #[prost(message, optional, tag = "7")]
    pub syntax_spec: Option<FixedConcSyntaxMsg>,
    /// The sender's address (0 for Enrollment).
    #[prost(uint64, required, tag = "8")]
    pub address: u64,
}

/// `proto_concrete_syntax` GPB.
pub const SYNTAX_GPB: i32 = 0;
/// `proto_concrete_syntax` FIXED.
pub const SYNTAX_FIXED: i32 = 2;

/// The components an N-1 flow of a unicast layer serves, as its CEP names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// Enrolment (OEP).
    Enrollment,
    /// Link-state management (LSP).
    Management,
    /// Data transfer (dtp).
    DataTransfer,
}

impl Component {
    /// All three.
    pub const ALL: [Self; 3] = [Self::Enrollment, Self::Management, Self::DataTransfer];

    /// The CEP's `comp_name`.
    pub fn comp_name(self) -> &'static str {
        match self {
            Self::Enrollment => "Enrollment",
            Self::Management => "Management",
            Self::DataTransfer => "Data Transfer",
        }
    }

    /// The CEP's `protocol`.
    pub fn protocol(self) -> &'static str {
        match self {
            Self::Enrollment => "OEP",
            Self::Management => "LSP",
            Self::DataTransfer => "dtp",
        }
    }

    /// The CEP's `pref_syntax`.
    pub fn syntax(self) -> i32 {
        match self {
            Self::DataTransfer => SYNTAX_FIXED,
            _ => SYNTAX_GPB,
        }
    }

    /// The component a `comp_name` names.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.comp_name() == name)
    }
}

impl CepMsg {
    /// The CEP the reference sends for `comp` (address 0 for Enrollment).
    pub fn new(comp: Component, address: u64) -> Self {
        Self {
            comp_name: comp.comp_name().into(),
            protocol: comp.protocol().into(),
            pref_version: 1,
            supp_version: vec![],
            pref_syntax: comp.syntax(),
            supp_syntax: vec![],
            syntax_spec: None,
            address: if comp == Component::Enrollment {
                0
            } else {
                address
            },
        }
    }

    /// The component it names, if one of the three.
    pub fn component(&self) -> Option<Component> {
        Component::from_name(&self.comp_name)
    }
}

impl Check for CepMsg {
    const NAME: &'static str = "cep_msg";
    fn check(&self) -> Result<(), String> {
        // The reference reads a CEP into 128 bytes.
        if self.comp_name.len() > 128 || self.protocol.len() > 128 {
            return Err("names longer than 128 bytes".into());
        }
        Ok(())
    }
}

/// Length of an enrolment id.
pub const ENROLL_ID_LEN: usize = 8;

/// `enroll_req_msg`: the enrollee's request.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct EnrollReqMsg {
    /// 8 random bytes.
    #[prost(bytes = "vec", required, tag = "1")]
    pub id: Vec<u8>,
}

impl Check for EnrollReqMsg {
    const NAME: &'static str = "enroll_req_msg";
    fn check(&self) -> Result<(), String> {
        check_id(&self.id)
    }
}

fn check_id(id: &[u8]) -> Result<(), String> {
    if id.len() == ENROLL_ID_LEN {
        Ok(())
    } else {
        Err(format!("id of {} bytes, not {ENROLL_ID_LEN}", id.len()))
    }
}

/// `enroll_resp_msg`: the enroller's answer, with the layer's configuration.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct EnrollRespMsg {
    /// The request's id.
    #[prost(bytes = "vec", required, tag = "1")]
    pub id: Vec<u8>,
    /// The enroller's CLOCK_REALTIME, seconds.
    #[prost(int64, required, tag = "2")]
    pub t_sec: i64,
    /// Nanoseconds.
    #[prost(int32, required, tag = "3")]
    pub t_nsec: i32,
    /// 0: accepted.
    #[prost(int32, required, tag = "4")]
    pub response: i32,
    /// The layer's configuration (present when `response` >= 0).
    #[prost(message, optional, tag = "5")]
    pub conf: Option<IpcpConfigMsg>,
}

impl Check for EnrollRespMsg {
    const NAME: &'static str = "enroll_resp_msg";
    fn check(&self) -> Result<(), String> {
        check_id(&self.id)?;
        if self.response >= 0 && self.conf.is_none() {
            return Err("accepted without a configuration".into());
        }
        Ok(())
    }
}

/// `enroll_ack_msg`: the enrollee's last word.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct EnrollAckMsg {
    /// The request's id.
    #[prost(bytes = "vec", required, tag = "1")]
    pub id: Vec<u8>,
    /// 0: the enrollee started.
    #[prost(int32, required, tag = "2")]
    pub result: i32,
}

impl Check for EnrollAckMsg {
    const NAME: &'static str = "enroll_ack_msg";
    fn check(&self) -> Result<(), String> {
        check_id(&self.id)
    }
}

/// `layer_info_msg`.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct LayerInfoMsg {
    /// The layer's name.
    #[prost(string, required, tag = "1")]
    pub name: String,
    /// `pol_dir_hash`: SHA3-224 0, SHA3-256 1, SHA3-384 2, SHA3-512 3.
    #[prost(uint32, required, tag = "2")]
    pub dir_hash_algo: u32,
}

/// `ipcp_config_msg`: what an enrollee adopts.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct IpcpConfigMsg {
    /// Name and directory hash.
    #[prost(message, required, tag = "1")]
    pub layer_info: LayerInfoMsg,
    /// `ipcp_type` (1: unicast).
    #[prost(uint32, required, tag = "2")]
    pub ipcp_type: u32,
    /// Unicast settings.
    #[prost(message, optional, tag = "3")]
    pub unicast: Option<UniConfigMsg>,
    /// udp4 settings.
    #[prost(message, optional, tag = "4")]
    pub udp4: Option<Udp4ConfigMsg>,
    /// udp6 settings.
    #[prost(message, optional, tag = "5")]
    pub udp6: Option<Udp6ConfigMsg>,
    /// eth settings.
    #[prost(message, optional, tag = "6")]
    pub eth: Option<EthConfigMsg>,
}

/// `ipcp_type` UNICAST.
pub const IPCP_UNICAST: u32 = 1;
/// `ipcp_type` BROADCAST.
pub const IPCP_BROADCAST: u32 = 2;

/// `uni_config_msg`.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct UniConfigMsg {
    /// Data transfer.
    #[prost(message, required, tag = "1")]
    pub dt: DtConfigMsg,
    /// Directory.
    #[prost(message, required, tag = "2")]
    pub dir: DirConfigMsg,
    /// `pol_addr_auth` (FLAT_RANDOM 0).
    #[prost(uint32, required, tag = "3")]
    pub addr_auth_type: u32,
    /// `pol_cong_avoid` (NONE 0, MB_ECN 1).
    #[prost(uint32, required, tag = "4")]
    pub cong_avoid: u32,
}

/// `dt_config_msg`.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct DtConfigMsg {
    /// Address bytes (4).
    #[prost(uint32, required, tag = "1")]
    pub addr_size: u32,
    /// Endpoint id bytes (8).
    #[prost(uint32, required, tag = "2")]
    pub eid_size: u32,
    /// TTL of new PDUs (60).
    #[prost(uint32, required, tag = "3")]
    pub max_ttl: u32,
    /// Routing.
    #[prost(message, required, tag = "4")]
    pub routing: RoutingConfigMsg,
}

/// `routing_config_msg`.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct RoutingConfigMsg {
    /// `pol_routing` (LINK_STATE 0).
    #[prost(uint32, required, tag = "1")]
    pub pol: u32,
    /// Link-state settings.
    #[prost(message, optional, tag = "2")]
    pub ls: Option<LsConfigMsg>,
}

/// `ls_config_msg`.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct LsConfigMsg {
    /// `pol_link_state`: SIMPLE 0, LFA 1, ECMP 2.
    #[prost(uint32, required, tag = "1")]
    pub pol: u32,
    /// Seconds between recomputations (4).
    #[prost(uint32, required, tag = "2")]
    pub t_recalc: u32,
    /// Seconds between own LSAs (15).
    #[prost(uint32, required, tag = "3")]
    pub t_update: u32,
    /// Seconds before an LSA ages out (60).
    #[prost(uint32, required, tag = "4")]
    pub t_timeo: u32,
}

/// `dir_config_msg`.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct DirConfigMsg {
    /// `pol_dir` (DHT 0).
    #[prost(uint32, required, tag = "1")]
    pub pol: u32,
    /// DHT settings.
    #[prost(message, optional, tag = "2")]
    pub dht: Option<DirDhtConfigMsg>,
}

/// `dir_dht_config_msg`.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct DirDhtConfigMsg {
    /// Lookups in parallel (3).
    #[prost(uint32, required, tag = "1")]
    pub alpha: u32,
    /// Bucket size (8).
    #[prost(uint32, required, tag = "2")]
    pub k: u32,
    /// Seconds a value lives (86400).
    #[prost(uint32, required, tag = "3")]
    pub t_expire: u32,
    /// Seconds between bucket refreshes (900).
    #[prost(uint32, required, tag = "4")]
    pub t_refresh: u32,
    /// Seconds between republications (900).
    #[prost(uint32, required, tag = "5")]
    pub t_replicate: u32,
    /// The bootstrap peer's address.
    #[prost(uint64, required, tag = "6")]
    pub peer: u64,
}

/// `eth_config_msg`.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct EthConfigMsg {
    /// Device.
    #[prost(string, required, tag = "1")]
    pub dev: String,
    /// Ethertype.
    #[prost(uint32, required, tag = "2")]
    pub ethertype: u32,
}

/// `udp4_config_msg`.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct Udp4ConfigMsg {
    /// `in_addr.s_addr` as stored.
    #[prost(uint32, required, tag = "1")]
    pub ip_addr: u32,
    /// Port.
    #[prost(uint32, required, tag = "2")]
    pub port: u32,
    /// DNS server (0: none).
    #[prost(uint32, required, tag = "3")]
    pub dns_addr: u32,
}

/// `udp6_config_msg`.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct Udp6ConfigMsg {
    /// 16 bytes.
    #[prost(bytes = "vec", required, tag = "1")]
    pub ip_addr: Vec<u8>,
    /// Port.
    #[prost(uint32, required, tag = "2")]
    pub port: u32,
    /// 16 bytes.
    #[prost(bytes = "vec", required, tag = "3")]
    pub dns_addr: Vec<u8>,
}

impl IpcpConfigMsg {
    /// A broadcast layer's configuration for layer `name`: its name, the directory hash the
    /// reference fixes for broadcast layers (SHA3-256), the type; nothing else.
    pub fn broadcast(name: &str) -> Self {
        Self {
            layer_info: LayerInfoMsg {
                name: name.into(),
                dir_hash_algo: 1,
            },
            ipcp_type: IPCP_BROADCAST,
            unicast: None,
            udp4: None,
            udp6: None,
            eth: None,
        }
    }

    /// The reference's default unicast configuration (`uni_default_conf`) for layer `name`,
    /// with `peer` as the DHT's bootstrap peer.
    pub fn unicast_default(name: &str, peer: u64) -> Self {
        Self {
            layer_info: LayerInfoMsg {
                name: name.into(),
                dir_hash_algo: 1,
            },
            ipcp_type: IPCP_UNICAST,
            unicast: Some(UniConfigMsg {
                dt: DtConfigMsg {
                    addr_size: 4,
                    eid_size: 8,
                    max_ttl: 60,
                    routing: RoutingConfigMsg {
                        pol: 0,
                        ls: Some(LsConfigMsg {
                            pol: 0,
                            t_recalc: 4,
                            t_update: 15,
                            t_timeo: 60,
                        }),
                    },
                },
                dir: DirConfigMsg {
                    pol: 0,
                    dht: Some(DirDhtConfigMsg {
                        alpha: 3,
                        k: 8,
                        t_expire: 86_400,
                        t_refresh: 900,
                        t_replicate: 900,
                        peer,
                    }),
                },
                addr_auth_type: 0,
                cong_avoid: 1,
            }),
            udp4: None,
            udp6: None,
            eth: None,
        }
    }
}

/// `dht_contact_msg`.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct DhtContactMsg {
    /// Node id.
    #[prost(bytes = "vec", required, tag = "1")]
    pub id: Vec<u8>,
    /// Its address.
    #[prost(uint64, required, tag = "2")]
    pub addr: u64,
}

/// `dht_find_req_msg`.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct DhtFindReqMsg {
    /// Request cookie (non-zero).
    #[prost(uint64, required, tag = "1")]
    pub cookie: u64,
    /// Key or node id.
    #[prost(bytes = "vec", required, tag = "2")]
    pub key: Vec<u8>,
}

/// `dht_find_node_rsp_msg`.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct DhtFindNodeRspMsg {
    /// The request's cookie.
    #[prost(uint64, required, tag = "1")]
    pub cookie: u64,
    /// The request's key.
    #[prost(bytes = "vec", required, tag = "2")]
    pub key: Vec<u8>,
    /// Up to k contacts.
    #[prost(message, repeated, tag = "3")]
    pub contacts: Vec<DhtContactMsg>,
}

/// `dht_find_value_rsp_msg`.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct DhtFindValueRspMsg {
    /// Up to 8 values (8-byte big-endian addresses).
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub values: Vec<Vec<u8>>,
}

/// `dht_store_msg`.
#[derive(Clone, PartialEq, Eq, Message)]
pub struct DhtStoreMsg {
    /// The name's hash.
    #[prost(bytes = "vec", required, tag = "1")]
    pub key: Vec<u8>,
    /// The registering IPCP's address, 8 bytes big-endian.
    #[prost(bytes = "vec", required, tag = "2")]
    pub val: Vec<u8>,
    /// Absolute expiry, UNIX seconds.
    #[prost(uint32, required, tag = "3")]
    pub exp: u32,
}

/// `dht_msg` codes.
pub mod dht_code {
    /// STORE.
    pub const STORE: u32 = 0;
    /// FIND_NODE_REQ.
    pub const FIND_NODE_REQ: u32 = 1;
    /// FIND_NODE_RSP.
    pub const FIND_NODE_RSP: u32 = 2;
    /// FIND_VALUE_REQ.
    pub const FIND_VALUE_REQ: u32 = 3;
    /// FIND_VALUE_RSP.
    pub const FIND_VALUE_RSP: u32 = 4;
}

/// `dht_msg`: every DHT message (PCI eid 1).
#[derive(Clone, PartialEq, Eq, Message)]
pub struct DhtMsg {
    /// [`dht_code`].
    #[prost(uint32, required, tag = "1")]
    pub code: u32,
    /// The sender (responses go to its address).
    #[prost(message, required, tag = "2")]
    pub src: DhtContactMsg,
    /// STORE.
    #[prost(message, optional, tag = "3")]
    pub store: Option<DhtStoreMsg>,
    /// FIND_NODE_REQ, FIND_VALUE_REQ.
    #[prost(message, optional, tag = "4")]
    pub find: Option<DhtFindReqMsg>,
    /// FIND_NODE_RSP, FIND_VALUE_RSP.
    #[prost(message, optional, tag = "5")]
    pub node: Option<DhtFindNodeRspMsg>,
    /// FIND_VALUE_RSP.
    #[prost(message, optional, tag = "6")]
    pub val: Option<DhtFindValueRspMsg>,
}

impl Check for DhtMsg {
    const NAME: &'static str = "dht_msg";
    fn check(&self) -> Result<(), String> {
        use dht_code::*;
        let key = |what: &str, k: &[u8]| {
            if k.is_empty() || k.len() > MAX_KEY_LEN {
                Err(format!("{what} of {} bytes (1..={MAX_KEY_LEN})", k.len()))
            } else {
                Ok(())
            }
        };
        key("src.id", &self.src.id)?;
        let needs = match self.code {
            STORE => self.store.is_some(),
            FIND_NODE_REQ | FIND_VALUE_REQ => self.find.is_some(),
            FIND_NODE_RSP => self.node.is_some(),
            FIND_VALUE_RSP => self.node.is_some() && self.val.is_some(),
            c => return Err(format!("unknown code {c}")),
        };
        if !needs {
            return Err(format!("code {} without its part", self.code));
        }
        if let Some(s) = &self.store {
            key("store.key", &s.key)?;
            if !(8..=8 + MAX_PROOF_LEN).contains(&s.val.len()) {
                return Err(format!(
                    "store.val of {} bytes (8, or 8 and a proof of at most {MAX_PROOF_LEN})",
                    s.val.len()
                ));
            }
        }
        if let Some(f) = &self.find {
            key("find.key", &f.key)?;
        }
        if let Some(n) = &self.node {
            key("node.key", &n.key)?;
            if n.contacts.len() > MAX_CONTACTS {
                return Err(format!(
                    "{} contacts (at most {MAX_CONTACTS})",
                    n.contacts.len()
                ));
            }
            for c in &n.contacts {
                key("contact id", &c.id)?;
            }
        }
        if let Some(v) = &self.val {
            if v.values.len() > MAX_VALUES {
                return Err(format!("{} values (at most {MAX_VALUES})", v.values.len()));
            }
            if let Some(x) = v
                .values
                .iter()
                .find(|x| !(8..=8 + MAX_PROOF_LEN).contains(&x.len()))
            {
                return Err(format!(
                    "a value of {} bytes (8, or 8 and a proof of at most {MAX_PROOF_LEN})",
                    x.len()
                ));
            }
        }
        Ok(())
    }
}

impl DhtMsg {
    /// The address in an 8-byte big-endian value.
    pub fn addr_of(val: &[u8]) -> Option<u64> {
        Some(u64::from_be_bytes(val.try_into().ok()?))
    }

    /// A value's address and the proof after it (empty for the reference's 8-byte values);
    /// `None` when shorter than 8 bytes.
    pub fn split_value(val: &[u8]) -> Option<(u64, &[u8])> {
        let (a, proof) = val.split_first_chunk::<8>()?;
        Some((u64::from_be_bytes(*a), proof))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn hx(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    const B: u64 = 0xe30f_5e97;

    // Exact bytes from uni-chain-ab.pcap (unicast facts §2.2 and §8.3).
    const CEP_ENROLL: &str = "0a0a456e726f6c6c6d656e7412034f4550180128004000";
    const CEP_MGMT_B: &str = "0a0a4d616e6167656d656e7412034c5350180128004097bdbd980e";
    const CEP_DT_B: &str = "0a0d44617461205472616e736665721203647470180128024097bdbd980e";
    const FIND_NODE_REQ: &str = "080112280a2083e0ac87bbeec66d846b68f1ef699691fd9a48189317e71b1bf437c789ed475f1097bdbd980e222c0884e9b09a8e9ce89b37122083e0ac87bbeec66d846b68f1ef699691fd9a48189317e71b1bf437c789ed475f";
    const STORE: &str = "080012280a20efdf91c6726e44c173fdcfe0b514633cf39ddb36633eb654a32984c2b95c14df10acbdeeba021a320a2042dee3b0415b4f690fd91cbd99876f1e9bd8d9745ef7fa32b142773af0349d54120800000000275b9eac18d1d2bad806";

    #[test]
    fn a_broadcast_layers_configuration_is_its_name_the_sha3_256_hash_and_type_2() {
        // layer_info { name "bc", dir_hash_algo 1 }, ipcp_type 2, nothing else.
        let c = IpcpConfigMsg::broadcast("bc");
        assert_eq!(c.encode_to_vec(), hx("0a060a02626310011002"));
        assert_eq!((c.ipcp_type, IPCP_BROADCAST), (2, 2));
        assert!(c.unicast.is_none() && c.eth.is_none() && c.udp4.is_none() && c.udp6.is_none());
    }

    #[test]
    fn the_reference_ceps_decode_and_are_what_we_send() {
        for (bytes, comp, addr) in [
            (CEP_ENROLL, Component::Enrollment, 0),
            (CEP_MGMT_B, Component::Management, B),
            (CEP_DT_B, Component::DataTransfer, B),
        ] {
            let b = hx(bytes);
            let c: CepMsg = decode(&b).unwrap();
            assert_eq!(c.component(), Some(comp));
            assert_eq!(c.address, addr);
            assert_eq!(c, CepMsg::new(comp, B), "{bytes}");
            assert_eq!(c.encode_to_vec(), b, "{bytes}: required zeros are encoded");
        }
    }

    #[test]
    fn the_reference_dht_messages_decode_and_re_encode() {
        let b = hx(FIND_NODE_REQ);
        let m: DhtMsg = decode(&b).unwrap();
        assert_eq!(m.code, dht_code::FIND_NODE_REQ);
        assert_eq!(m.src.addr, B);
        let f = m.find.as_ref().unwrap();
        assert_eq!(f.cookie, 0x3737_a0e0_e34c_3484, "the magic cookie");
        assert_eq!(f.key, m.src.id, "B looks itself up");
        assert_eq!(m.encode_to_vec(), b);
        let b = hx(STORE);
        let m: DhtMsg = decode(&b).unwrap();
        let s = m.store.as_ref().unwrap();
        assert_eq!(DhtMsg::addr_of(&s.val), Some(0x275b_9eac));
        assert_eq!(s.key, crate::hash::HashAlgo::Sha3_256.hash("oping"));
        assert_eq!(m.encode_to_vec(), b);
    }

    #[test]
    fn a_negative_response_is_a_ten_byte_varint_and_zero_fields_are_kept() {
        let r = EnrollRespMsg {
            id: vec![1; 8],
            t_sec: 0,
            t_nsec: 0,
            response: -1,
            conf: None,
        };
        let b = r.encode_to_vec();
        assert!(
            hex::encode(&b).contains("20ffffffffffffffffff01"),
            "{}",
            hex::encode(&b)
        );
        assert!(
            hex::encode(&b).contains("10001800"),
            "t_sec 0 and t_nsec 0 encoded"
        );
        assert_eq!(EnrollRespMsg::decode(b.as_slice()).unwrap(), r);
    }

    #[test]
    fn bad_messages_are_refused_with_a_reason() {
        assert!(matches!(
            decode::<DhtMsg>(&[0xff; 10]),
            Err(PbError::Malformed {
                what: "dht_msg",
                ..
            })
        ));
        assert!(matches!(
            decode::<CepMsg>(&vec![0; MAX_MSG_LEN + 1]),
            Err(PbError::TooLong(_))
        ));
        // A response with more contacts than any k: refused, not kept.
        let contact = DhtContactMsg {
            id: vec![7; 32],
            addr: 1,
        };
        let m = DhtMsg {
            code: dht_code::FIND_NODE_RSP,
            src: contact.clone(),
            store: None,
            find: None,
            node: Some(DhtFindNodeRspMsg {
                cookie: 1,
                key: vec![1; 32],
                contacts: vec![contact; MAX_CONTACTS + 1],
            }),
            val: None,
        };
        let e = decode::<DhtMsg>(&m.encode_to_vec()).unwrap_err();
        assert!(matches!(e, PbError::Invalid { .. }), "{e}");
        assert!(e.to_string().contains("21 contacts"), "{e}");
        // A code without its part, an enrolment id of the wrong length.
        let mut bare = m.clone();
        bare.node = None;
        assert!(decode::<DhtMsg>(&bare.encode_to_vec()).is_err());
        let req = EnrollReqMsg { id: vec![1; 4] };
        assert!(decode::<EnrollReqMsg>(&req.encode_to_vec()).is_err());
        // An accepted enrolment without its configuration (the reference's enrollee
        // would crash on it).
        let resp = EnrollRespMsg {
            id: vec![1; 8],
            t_sec: 1,
            t_nsec: 1,
            response: 0,
            conf: None,
        };
        assert!(decode::<EnrollRespMsg>(&resp.encode_to_vec()).is_err());
    }

    #[test]
    fn values_are_eight_bytes_or_eight_and_a_bounded_proof() {
        let src = DhtContactMsg {
            id: vec![7; 32],
            addr: 1,
        };
        let store = |n: usize| DhtMsg {
            code: dht_code::STORE,
            src: src.clone(),
            store: Some(DhtStoreMsg {
                key: vec![1; 32],
                val: vec![2; n],
                exp: 9,
            }),
            find: None,
            node: None,
            val: None,
        };
        let rsp = |n: usize| DhtMsg {
            code: dht_code::FIND_VALUE_RSP,
            src: src.clone(),
            store: None,
            find: None,
            node: Some(DhtFindNodeRspMsg {
                cookie: 1,
                key: vec![1; 32],
                contacts: vec![],
            }),
            val: Some(DhtFindValueRspMsg {
                values: vec![vec![3; 8], vec![3; n]],
            }),
        };
        for n in [8, 9, 8 + MAX_PROOF_LEN] {
            assert!(decode::<DhtMsg>(&store(n).encode_to_vec()).is_ok(), "{n}");
            assert!(decode::<DhtMsg>(&rsp(n).encode_to_vec()).is_ok(), "{n}");
        }
        for n in [0, 7, 9 + MAX_PROOF_LEN] {
            let e = decode::<DhtMsg>(&store(n).encode_to_vec()).unwrap_err();
            assert!(
                e.to_string().contains(&format!("store.val of {n} bytes")),
                "{e}"
            );
            let e = decode::<DhtMsg>(&rsp(n).encode_to_vec()).unwrap_err();
            assert!(
                e.to_string().contains(&format!("a value of {n} bytes")),
                "{e}"
            );
        }
        assert_eq!(
            DhtMsg::split_value(&[0, 0, 0, 0, 0, 0, 1, 2]),
            Some((0x102, &[][..]))
        );
        assert_eq!(
            DhtMsg::split_value(&[0, 0, 0, 0, 0, 0, 1, 2, 9, 8]),
            Some((0x102, &[9u8, 8][..]))
        );
        assert_eq!(DhtMsg::split_value(&[1; 7]), None);
        assert_eq!(DhtMsg::addr_of(&[0, 0, 0, 0, 0, 0, 1, 2, 9]), None);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_or_fail_without_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode::<CepMsg>(&b);
            let _ = decode::<DhtMsg>(&b);
            let _ = decode::<EnrollRespMsg>(&b);
            if let Ok(m) = decode::<DhtMsg>(&b) {
                // What we accept, we can send back.
                proptest::prop_assert!(decode::<DhtMsg>(&m.encode_to_vec()).is_ok());
            }
        }
    }
}
