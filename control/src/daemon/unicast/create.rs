//! A unicast IPCP made from its configuration table: bootstrapped or enrolling, its membership
//! loaded (its directory entries signed and checked), its names registered, and the internal
//! acceptor of its N-1 flows.

use crate::daemon::unicast::{layer_conf, resume, unix_now, UniIpcp, UniRequest};
use crate::daemon::Owner;
use crate::registry::Accepted;
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::time::Instant;

impl Owner {
    /// Creates the unicast IPCP of a configuration table: bootstrapped, or enrolling.
    pub(in crate::daemon) fn unicast_create(
        &self,
        i: &crate::config::IpcpConf,
    ) -> Result<(), String> {
        let wait = super::incoming_wait(&self.settings);
        let mut uni = UniIpcp::new(&i.name, &i.conn, &i.reg, i.uni.withdraw, wait);
        self.uni_member(i, &mut uni)?;
        let (idx, dp_adopted) = {
            let st = self.st();
            (st.unicast.len(), st.dp_adopted)
        };
        let (now, unix) = (Instant::now(), unix_now());
        // A restarted o7sd that adopted the data plane: the IPCP takes its saved address
        // back if it joins the same layer (and claims the rest then: resume.rs).
        if dp_adopted {
            match resume::load_any(&self.settings.rundir, &i.name, idx, self.dp.pid()) {
                Ok(s) => {
                    if let Some(m) = uni.m.as_mut() {
                        m.propose_address_in(&s.layer, s.addr);
                    }
                    uni.resume_saved = Some(s);
                }
                Err(e) => tracing::info!("IPCP {}: nothing to resume ({e}).", i.name),
            }
        }
        let mut names = vec![i.name.clone()];
        if let (Some(layer), None, Some(m)) = (&i.bootstrap, &i.enrol, uni.m.as_mut()) {
            // The bootstrapper's configuration names itself as the DHT peer of those it
            // enrols (facts §6.5; the machine puts its address there).
            let addr = m.bootstrap(now, layer_conf(layer, 0, &i.uni));
            uni.addr = addr;
            uni.layer = Some(layer.clone());
            uni.state = "bootstrapped".into();
            names.push(layer.clone());
            tracing::info!(
                "Bootstrapped IPCP {} in unicast layer {layer} with address {addr:#010x}.",
                i.name
            );
        }
        // Its names: the machine publishes them once its directory can store them.
        if let Some(m) = uni.m.as_mut() {
            for n in &i.reg {
                m.register(now, unix, o7s_wire::hash::HashAlgo::Sha3_256.hash(n));
                if let Some(mb) = &uni.member {
                    if !crate::dir_proof::publishable_names(&mb.signer.cert).contains(n) {
                        tracing::warn!(
                            "IPCP {}: publishes {n}, but its member certificate does not name it (subjectAltName DNS): other members will ignore the entry.",
                            i.name
                        );
                    }
                }
            }
        }
        self.st().unicast.push(uni);
        self.uni_accept(idx, &names);
        if let Some(dst) = &i.enrol {
            if let Some(u) = self.st().unicast.get_mut(idx) {
                u.state = format!("enrolling through {dst}");
            }
            tracing::info!("IPCP {}: enrolling through {dst}.", i.name);
            self.uni_request(UniRequest::Enrol {
                uni: idx,
                dst: dst.clone(),
            });
        }
        Ok(())
    }

    /// Loads IPCP `i`'s membership (issue 26) into `u`; says once that its layer is open
    /// when it has none. False (logged) when the files cannot be used: the IPCP is not made.
    pub(in crate::daemon) fn uni_member(
        &self,
        i: &crate::config::IpcpConf,
        u: &mut UniIpcp,
    ) -> Result<(), String> {
        let Some(f) = &i.member else {
            tracing::warn!(
                "IPCP {}: its layer is open (no member_ca): any host that reaches it may enrol and connect, as in the reference.",
                i.name
            );
            return Ok(());
        };
        match crate::membership::Membership::load(&i.name, f) {
            Ok((m, warning)) => {
                if let Some(w) = warning {
                    tracing::warn!("IPCP {}: member_crt {w}", i.name);
                }
                tracing::info!(
                    "IPCP {}: members only (member_ca {}): every N-1 flow is authenticated.",
                    i.name,
                    f.ca
                );
                let m = Arc::new(m);
                // Its directory entries are signed with its key, others' checked.
                if let Some(machine) = u.m.take() {
                    u.m = Some(Box::new((*machine).with_signed_entries(
                        Arc::new(crate::dir_proof::DirProofs::new(
                            m.clone(),
                            o7s_wire::hash::HashAlgo::Sha3_256,
                        )),
                        Arc::new(crate::dir_proof::MemberSigner(m.clone())),
                    )));
                }
                u.member = Some(m);
                Ok(())
            }
            Err(e) => Err(format!(
                "IPCP {} (line {}): not created: {e}",
                i.name, i.line
            )),
        }
    }

    /// IPCP `uni` accepts N-1 flows for `names` (they are bound to o7sd).
    pub(in crate::daemon) fn uni_accept(&self, uni: usize, names: &[String]) {
        {
            let mut st = self.st();
            if let Some(m) = st.unicast.get(uni).and_then(|u| u.member.clone()) {
                for n in names {
                    st.members.insert(n.clone(), m.clone());
                }
            }
        }
        for n in names {
            self.name_create(n, None);
        }
        let (tx, rx) = sync_channel::<Accepted>(1);
        let pid = std::process::id() as i32;
        let id = {
            let mut st = self.st();
            // Bound to o7sd (autobind): a request that finds the acceptor busy with the
            // previous flow waits for it to come back, as for any bound process.
            for n in names {
                st.reg.bind_pid(pid, n);
            }
            st.reg.add_acceptor(pid, names, tx)
        };
        self.wake();
        self.uni_request(UniRequest::Accept {
            uni,
            names: names.to_vec(),
            id,
            rx,
        });
    }
}
