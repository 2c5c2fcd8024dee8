//! Free overlay addresses: the lowest host address of a subnet that nobody holds
//! (never the network, broadcast or gateway address), for the allocator and for
//! standalone containers' attachments.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use shoal_api::Network;

use crate::store::Store;

/// The addresses handed out in one round, so one round never gives one out twice.
#[derive(Debug)]
pub struct Round<'a> {
    store: &'a Store,
    given: HashSet<(String, Ipv4Addr)>,
}

impl<'a> Round<'a> {
    /// A round on `store`'s state.
    pub fn new(store: &'a Store) -> Round<'a> {
        Round { store, given: HashSet::new() }
    }

    /// The lowest free host address of `net` (with its prefix), now taken.
    pub fn take(&mut self, net: &Network) -> Option<Ipv4Net> {
        let first = u32::from(net.subnet.network()).saturating_add(1);
        let last = u32::from(net.subnet.broadcast()).saturating_sub(1);
        (first..=last).map(Ipv4Addr::from).find_map(|ip| {
            let key = (net.id.clone(), ip);
            if ip == net.gateway
                || self.store.address_holder(&net.id, ip).is_some()
                || self.given.contains(&key)
            {
                return None;
            }
            self.given.insert(key);
            Ipv4Net::new(ip, net.subnet.prefix_len()).ok()
        })
    }
}
