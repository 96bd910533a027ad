//! Address collisions in a unicast layer. The flat address authority draws random 32-bit
//! addresses with no coordination (unicast facts §3.2), so two IPCPs can end up with one
//! address; link state finds it (LSAs of "our" links to members we have no DT connection
//! to) and says who moves: the younger IPCP ([`o7s_proto::linkstate::Collision`]). The
//! reference ignores collisions.
//!
//! The one that moves draws a new address that no LSA names, announces its links under
//! it, publishes its names again, and tells its Management neighbours with a Management
//! CEP on each connected Management flow (0.23 has no message for this; a reference
//! neighbour drops it as no LSA). A neighbour that gets one moves every connection to the
//! old address to the new one: its DT neighbour, its own link, the data plane's table.

use super::{random_addr, unix_now, UniIpcp};
use o7s_proto::linkstate::{Collision, Event as LsEvent};
use std::collections::BTreeSet;
use std::time::Instant;

impl UniIpcp {
    /// Acts on what link state found since it was last asked: another IPCP with our
    /// address.
    pub(in crate::daemon) fn tend_collision(&mut self, now: Instant) {
        // (The forwarding table is compared whole each turn, `uni_tables`: its change
        // events need no handling here.)
        let collision = self.ls.as_mut().and_then(|l| {
            std::iter::from_fn(|| l.poll_event()).find_map(|e| match e {
                LsEvent::Collision(c) => Some(c),
                LsEvent::TableChanged => None,
            })
        });
        match collision {
            Some(Collision::Keep) => tracing::warn!(
                "IPCP {}: another IPCP in layer {} announces links from our address {:#010x}: an address collision. It is younger (its links have lower seqnos): we keep the address and it should move (counted in ipcp list, address_collisions).",
                self.name,
                self.layer.as_deref().unwrap_or("-"),
                self.addr
            ),
            Some(Collision::Readdress)
                if self
                    .last_readdress
                    .is_some_and(|t| now.saturating_duration_since(t) < super::READDRESS_HOLD) =>
            {
                self.readdress_held += 1;
                tracing::warn!(
                    "IPCP {}: another IPCP in layer {} announces our address {:#010x} again, within {:?} of our last move: we stay (counted in ipcp list, readdress_held).",
                    self.name,
                    self.layer.as_deref().unwrap_or("-"),
                    self.addr,
                    super::READDRESS_HOLD
                );
            }
            Some(Collision::Readdress) => {
                self.last_readdress = Some(now);
                self.readdress(now);
            }
            None => {}
        }
    }

    /// Moves to a new address that no LSA names.
    fn readdress(&mut self, now: Instant) {
        let old = self.addr;
        let taken: BTreeSet<u64> = self
            .ls
            .as_ref()
            .map(|l| l.lsdb().iter().flat_map(|((s, d), _)| [*s, *d]).collect())
            .unwrap_or_default();
        let new = std::iter::repeat_with(random_addr)
            .find(|a| *a != old && !taken.contains(a))
            .unwrap_or(old);
        self.addr = new;
        self.readdressed += 1;
        self.conn.readdress(new);
        if let Some(ls) = self.ls.as_mut() {
            ls.readdress(now, new);
        }
        if let Some(d) = self.dht.as_mut() {
            let unix = unix_now();
            match &self.member {
                // A secured layer: each entry signed again for the new address.
                Some(m) => d.readdress_signed(now, unix, new, &mut |key, addr| {
                    crate::dir_proof::sign(m, key, addr, unix.as_secs()).unwrap_or_default()
                }),
                None => d.readdress(now, unix, new),
            }
        }
        if let Some(f) = self.fa.as_mut() {
            f.readdress(new);
        }
        tracing::warn!(
            "IPCP {}: another IPCP in layer {} has our address {old:#010x} and is as old or older: we move to {new:#010x}. Our Management neighbours are told, our names are published again; flows over the layer to this IPCP end when their peers' PDUs stop (the peers know the old address).",
            self.name,
            self.layer.as_deref().unwrap_or("-"),
        );
    }

    /// Management neighbour `old` said it moved to `new`: our connections to it (`moved`)
    /// follow, and its DT link if it is one of them.
    pub(in crate::daemon) fn neighbour_moved(
        &mut self,
        now: Instant,
        flow: u64,
        old: u64,
        new: u64,
        moved: &[u64],
    ) {
        tracing::info!(
            "IPCP {}: neighbour {old:#010x} moved to address {new:#010x} (said on N-1 flow {flow}; N-1 flows {moved:?} follow).",
            self.name
        );
        let dt = self.dt_nb.get(&old).copied().filter(|f| moved.contains(f));
        if let Some(f) = dt {
            self.dt_nb.remove(&old);
            self.dt_nb.insert(new, f);
            if let Some(ls) = self.ls.as_mut() {
                ls.remove_dt(old);
                ls.link_up(old);
                ls.add_dt(now, new);
            }
        }
    }
}
