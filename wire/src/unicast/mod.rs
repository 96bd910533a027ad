//! The unicast layer's own headers: the data-transfer PCI, flow allocator messages and
//! link-state advertisements.

pub mod dt;
pub mod fa;
pub mod lsa;
pub mod sdu;
