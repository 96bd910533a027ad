//! A member's new address: announced on every connection (a CEP update) and followed when a
//! neighbour announces one.

use super::{Connections, Event, FlowId, State};
use o7s_wire::unicast::pb::{self, CepMsg, Component};
use prost::Message;

impl Connections {
    /// Our address is now `new` (another IPCP had ours): the configuration we give
    /// enrollees names it as their DHT peer, and every Management neighbour gets a
    /// Management CEP with it on the connected flow (and a connection that completes later,
    /// set up with the old address, has it sent again). 0.23 has no message for this: an
    /// o7s neighbour takes it ([`Connections::handle_update`]), the reference drops it as
    /// no LSA.
    pub fn readdress(&mut self, new: u64) {
        self.own_addr = new;
        if let Some(d) = self
            .conf
            .as_mut()
            .and_then(|c| c.unicast.as_mut())
            .and_then(|u| u.dir.dht.as_mut())
        {
            d.peer = new;
        }
        self.announce_address();
    }

    /// A Management CEP with our address on every connected Management flow.
    pub(super) fn announce_address(&mut self) {
        let cep = CepMsg::new(Component::Management, self.own_addr).encode_to_vec();
        let mgmt: Vec<FlowId> = self
            .connections()
            .into_iter()
            .filter(|c| c.1 == Component::Management)
            .map(|c| c.0)
            .collect();
        for f in mgmt {
            self.send(f, cep.clone());
        }
    }

    /// Whether an SDU of a Management flow is a Management CEP (a neighbour's new address,
    /// [`Connections::handle_update`]) rather than an LSA (those begin with a zero byte, no
    /// protobuf field).
    pub fn is_update(sdu: &[u8]) -> bool {
        pb::decode::<CepMsg>(sdu).is_ok_and(|c| c.component() == Some(Component::Management))
    }

    /// A Management CEP on connected Management flow `flow`: the neighbour's new address
    /// ([`Connections::readdress`]). Its connections move to it: `flow` and every
    /// connection to its old address that `same` says goes to the same neighbour (another
    /// IPCP may still have the old address). Returns whether it was such a CEP (else the
    /// caller gives the SDU to link state); a CEP with address 0 or ours is counted and
    /// ignored.
    pub fn handle_update(
        &mut self,
        flow: FlowId,
        sdu: &[u8],
        same: impl Fn(FlowId) -> bool,
    ) -> bool {
        let Some((Component::Management, old)) = self.connected(flow) else {
            return false;
        };
        if !Self::is_update(sdu) {
            return false;
        }
        let Ok(cep) = pb::decode::<CepMsg>(sdu) else {
            return false;
        };
        let new = cep.address;
        if new == 0 || new == self.own_addr || new == old {
            self.counters.unexpected += 1;
            return true;
        }
        let mut moved = vec![];
        for (id, f) in &mut self.flows {
            if let State::Up { peer_addr, .. } = &mut f.state {
                if *peer_addr == old && (*id == flow || same(*id)) {
                    *peer_addr = new;
                    moved.push(*id);
                }
            }
        }
        moved.sort_unstable();
        self.counters.readdressed += 1;
        self.events.push_back(Event::Readdressed {
            flow,
            old,
            new,
            moved,
        });
        true
    }
}
