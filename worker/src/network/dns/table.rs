//! The names each sandbox can resolve, and what one query gets from them (pure).
//!
//! The agent computes a [`SandboxNames`] per sandbox from the managers' state and puts
//! it in the node's [`DnsTable`]; every sandbox's server reads the table on every query,
//! so a swap is seen by the next query. [`SandboxNames::lookup`] is the whole decision
//! for one question: an answer, an empty answer, or "not ours".

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, PoisonError, RwLock};

use hickory_proto::rr::RecordType;

/// The TTL of a PTR answer whose name is not itself in the table (Docker's `respTTL`).
pub const PTR_TTL: u32 = 600;

/// The names one sandbox can resolve, computed by the agent (pure) from the managers'
/// state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SandboxNames {
    /// Lower-case names without the trailing dot (`web`, `tasks.web`, `web.mynet`,
    /// `db-alias`) -> answer. [`DnsTable::set`] lower-cases keys and drops a trailing
    /// dot, so other spellings still work.
    pub names: HashMap<String, NameAnswer>,
    /// Reverse records: IP -> name (PTR).
    pub reverse: HashMap<Ipv4Addr, String>,
    /// Forward unknown names upstream (false on internal-only sandboxes).
    pub forward: bool,
}

/// The A records of one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAnswer {
    /// The addresses (the server shuffles them per answer). May be empty: the name is
    /// known (so never forwarded) but has no address now.
    pub ips: Vec<Ipv4Addr>,
    /// Seconds the answer may be cached.
    pub ttl: u32,
}

/// What one question gets from a sandbox's names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// A records for a known name.
    A(NameAnswer),
    /// The name of a known address (the PTR's target, without the trailing dot).
    Ptr {
        /// The name.
        name: String,
        /// Seconds the answer may be cached.
        ttl: u32,
    },
    /// The name is known but has no record of the asked type: NOERROR with no answer,
    /// never forwarded (AAAA for an IPv4-only service must not leak upstream).
    Empty,
    /// Not a name of this sandbox: forwarded, or NXDOMAIN.
    Unknown,
}

impl SandboxNames {
    /// What a question for `qname` (any case, with or without the trailing dot) of type
    /// `qtype` gets.
    pub fn lookup(&self, qname: &str, qtype: RecordType) -> Lookup {
        let name = normalize(qname);
        if let Some(answer) = self.names.get(&name) {
            return match qtype {
                RecordType::A => Lookup::A(answer.clone()),
                _ => Lookup::Empty,
            };
        }
        if let Some(ip) = reverse_ip(&name)
            && let Some(target) = self.reverse.get(&ip)
        {
            return match qtype {
                RecordType::PTR => {
                    let target = normalize(target);
                    let ttl = self.names.get(&target).map_or(PTR_TTL, |a| a.ttl);
                    Lookup::Ptr { name: target, ttl }
                }
                _ => Lookup::Empty,
            };
        }
        Lookup::Unknown
    }

    fn normalized(self) -> SandboxNames {
        SandboxNames {
            names: self.names.into_iter().map(|(k, v)| (normalize(&k), v)).collect(),
            reverse: self.reverse,
            forward: self.forward,
        }
    }
}

/// Lower case, without the trailing dot.
fn normalize(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// The address of a reverse name `d.c.b.a.in-addr.arpa` (normalized).
fn reverse_ip(name: &str) -> Option<Ipv4Addr> {
    let octets = name.strip_suffix(".in-addr.arpa")?;
    let mut parts = octets.split('.').map(|p| p.parse::<u8>().ok());
    let (d, c, b, a) = (parts.next()??, parts.next()??, parts.next()??, parts.next()??);
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Addr::new(a, b, c, d))
}

/// The names of every sandbox on this node, by task id. Clones share the table; the
/// agent swaps one sandbox's names at a time and every server sees the swap on its
/// next query.
#[derive(Debug, Clone, Default)]
pub struct DnsTable {
    inner: Arc<RwLock<HashMap<String, Arc<SandboxNames>>>>,
}

impl DnsTable {
    /// Sets the names of `task_id`'s sandbox (keys lower-cased, trailing dots dropped).
    pub fn set(&self, task_id: &str, names: SandboxNames) {
        let names = Arc::new(names.normalized());
        self.write().insert(task_id.to_owned(), names);
    }

    /// Forgets `task_id`'s sandbox; its server, if still running, answers SERVFAIL.
    pub fn remove(&self, task_id: &str) {
        self.write().remove(task_id);
    }

    /// The names of `task_id`'s sandbox.
    pub fn get(&self, task_id: &str) -> Option<Arc<SandboxNames>> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner).get(task_id).cloned()
    }

    /// Keeps only the sandboxes whose task id `keep` accepts.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.write().retain(|id, _| keep(id));
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<SandboxNames>>> {
        // A panic elsewhere cannot leave a map half-written: every write is one call.
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> SandboxNames {
        let vip = NameAnswer { ips: vec![Ipv4Addr::new(10, 0, 0, 2)], ttl: 600 };
        let tasks = NameAnswer { ips: vec![Ipv4Addr::new(10, 0, 0, 3), Ipv4Addr::new(10, 0, 0, 4)], ttl: 5 };
        SandboxNames {
            names: HashMap::from([("web".into(), vip), ("tasks.web".into(), tasks)]),
            reverse: HashMap::from([
                (Ipv4Addr::new(10, 0, 0, 3), "web.1.abc".into()),
                (Ipv4Addr::new(10, 0, 0, 2), "web".into()),
            ]),
            forward: true,
        }
    }

    #[test]
    fn a_for_a_known_name_in_any_case_with_or_without_the_dot() {
        let n = names();
        let want = Lookup::A(n.names["web"].clone());
        assert_eq!(n.lookup("web", RecordType::A), want);
        assert_eq!(n.lookup("WeB.", RecordType::A), want);
        assert_eq!(n.lookup("tasks.web.", RecordType::A), Lookup::A(n.names["tasks.web"].clone()));
    }

    #[test]
    fn other_types_of_a_known_name_are_empty_not_unknown() {
        let n = names();
        for t in [RecordType::AAAA, RecordType::MX, RecordType::TXT, RecordType::SRV] {
            assert_eq!(n.lookup("web.", t), Lookup::Empty, "{t}");
        }
    }

    #[test]
    fn ptr_for_a_known_address_takes_the_names_ttl_or_the_default() {
        let n = names();
        assert_eq!(
            n.lookup("2.0.0.10.in-addr.arpa.", RecordType::PTR),
            Lookup::Ptr { name: "web".into(), ttl: 600 }
        );
        assert_eq!(
            n.lookup("3.0.0.10.IN-ADDR.ARPA", RecordType::PTR),
            Lookup::Ptr { name: "web.1.abc".into(), ttl: PTR_TTL }
        );
        assert_eq!(n.lookup("3.0.0.10.in-addr.arpa.", RecordType::A), Lookup::Empty);
        assert_eq!(n.lookup("9.0.0.10.in-addr.arpa.", RecordType::PTR), Lookup::Unknown);
    }

    #[test]
    fn malformed_reverse_names_are_unknown() {
        let n = names();
        for q in ["0.0.10.in-addr.arpa.", "1.3.0.0.10.in-addr.arpa.", "x.0.0.10.in-addr.arpa."] {
            assert_eq!(n.lookup(q, RecordType::PTR), Lookup::Unknown, "{q}");
        }
    }

    #[test]
    fn unknown_names_are_unknown() {
        assert_eq!(names().lookup("example.com.", RecordType::A), Lookup::Unknown);
        assert_eq!(names().lookup("tasks.db.", RecordType::AAAA), Lookup::Unknown);
    }

    #[test]
    fn the_table_normalizes_keys_and_swaps_whole_sandboxes() {
        let table = DnsTable::default();
        let mut n = names();
        let web = n.names.remove("web").expect("web is in the fixture");
        n.names.insert("Web.".into(), web.clone());
        table.set("t1", n);
        table.set("t2", SandboxNames::default());
        let got = table.get("t1").expect("t1 was set");
        assert_eq!(got.lookup("web", RecordType::A), Lookup::A(web));

        table.retain(|id| id == "t1");
        assert!(table.get("t2").is_none());
        table.remove("t1");
        assert!(table.get("t1").is_none());
    }
}
