//! Message codes of the management protocols. Unknown values round-trip.

macro_rules! wire_code {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $val:expr, $s:expr;)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vm])* $var,)*
            /// A value this version does not know (kept as is).
            Unknown(u8),
        }
        impl From<u8> for $name {
            fn from(v: u8) -> Self {
                match v { $($val => Self::$var,)* x => Self::Unknown(x) }
            }
        }
        impl From<$name> for u8 {
            fn from(c: $name) -> u8 {
                match c { $($name::$var => $val,)* $name::Unknown(x) => x }
            }
        }
        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                match self { $(Self::$var => f.write_str($s),)* Self::Unknown(x) => write!(f, "UNKNOWN({x})") }
            }
        }
    };
}

wire_code! {
    /// eth-dix and eth-llc management codes.
    EthCode {
        /// Flow allocation request (+ hash + OAP request).
        FlowReq = 0, "FLOW_REQ";
        /// Flow allocation reply (+ OAP response).
        FlowReply = 1, "FLOW_REPLY";
        /// Broadcast name query (+ hash).
        NameQueryReq = 2, "NAME_QUERY_REQ";
        /// Name query answer (+ hash).
        NameQueryReply = 3, "NAME_QUERY_REPLY";
    }
}

wire_code! {
    /// udp4/udp6 management codes.
    UdpCode {
        /// Flow allocation request (+ MD5 + OAP request).
        FlowReq = 1, "FLOW_REQ";
        /// Flow allocation reply (+ OAP response).
        FlowReply = 2, "FLOW_REPLY";
    }
}

wire_code! {
    /// Unicast flow allocator codes.
    FaCode {
        /// Flow allocation request (+ hash + OAP request).
        FlowReq = 0, "FLOW_REQ";
        /// Flow allocation reply (+ OAP response).
        FlowReply = 1, "FLOW_REPLY";
        /// ECE feedback (MB-ECN).
        FlowUpdate = 2, "FLOW_UPDATE";
    }
}

wire_code! {
    /// oping message types (the low byte of the big-endian u32).
    OpingType {
        /// Echo request.
        EchoRequest = 0, "ECHO_REQUEST";
        /// Echo reply.
        EchoReply = 1, "ECHO_REPLY";
    }
}

impl EthCode {
    /// Whether a name hash follows the fixed message.
    pub fn carries_hash(self) -> bool {
        matches!(
            self,
            Self::FlowReq | Self::NameQueryReq | Self::NameQueryReply
        )
    }
    /// Whether an OAP header follows (after the hash, if any).
    pub fn carries_oap(self) -> bool {
        matches!(self, Self::FlowReq | Self::FlowReply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_eth_messages_carry_a_hash_and_which_an_oap_header() {
        let all = [
            EthCode::FlowReq,
            EthCode::FlowReply,
            EthCode::NameQueryReq,
            EthCode::NameQueryReply,
            EthCode::Unknown(9),
        ];
        let hash: Vec<bool> = all.iter().map(|c| c.carries_hash()).collect();
        let oap: Vec<bool> = all.iter().map(|c| c.carries_oap()).collect();
        // FLOW_REQ: hash and OAP; FLOW_REPLY: OAP only; name queries: hash only.
        assert_eq!(hash, [true, false, true, true, false]);
        assert_eq!(oap, [true, true, false, false, false]);
    }
}
