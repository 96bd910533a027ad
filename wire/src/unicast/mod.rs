//! The unicast layer's own headers: the data-transfer PCI, flow allocator messages and
//! link-state advertisements, and its protobuf messages (CEP, enrolment, configuration,
//! DHT).

pub mod dt;
pub mod fa;
pub mod lsa;
pub mod pb;
pub mod sdu;
