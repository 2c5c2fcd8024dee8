//! Hosts for multi-node tests: one network namespace per host, each with a veth to a
//! bridge that lives in a namespace of its own (so the host's firewall never sees the
//! traffic). Addresses are 10.<a>.<b>.<n>/24, private to the namespaces this creates.
//! Everything is removed when the `Net` is dropped, also after a failed test.

use std::process::Command;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A test network: a switch namespace with a bridge, and hosts attached to it.
pub struct Net {
    tag: String,
    prefix: String,
    hosts: Vec<String>,
}

impl Net {
    /// A new, empty network.
    pub fn new() -> Net {
        let n = std::process::id() % 250 + 1;
        let salt = rand_byte();
        let tag = format!("sh{n:x}{salt:x}");
        let net = Net { prefix: format!("10.{}.{}", 200 + (salt % 50), n), tag, hosts: Vec::new() };
        ip(&["netns", "add", &net.switch()]);
        ip(&["-n", &net.switch(), "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &net.switch(), "link", "set", "br0", "up"]);
        net
    }

    fn switch(&self) -> String {
        format!("{}-sw", self.tag)
    }

    /// Adds host number `i` (1..=250); returns its namespace and address.
    pub fn host(&mut self, i: u8) -> (String, String) {
        let ns = format!("{}-h{i}", self.tag);
        let addr = format!("{}.{i}", self.prefix);
        ip(&["netns", "add", &ns]);
        let (inside, outside) = (format!("{}e{i}", self.tag), format!("{}s{i}", self.tag));
        ip(&[
            "-n",
            &ns,
            "link",
            "add",
            &inside,
            "type",
            "veth",
            "peer",
            "name",
            &outside,
            "netns",
            &self.switch(),
        ]);
        ip(&["-n", &ns, "link", "set", &inside, "name", "eth0"]);
        ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-n", &self.switch(), "link", "set", &outside, "master", "br0", "up"]);
        self.hosts.push(ns.clone());
        (ns, addr)
    }

    /// Cuts host `i` off the network (its link to the switch goes down), or puts it
    /// back.
    pub fn link(&self, i: u8, up: bool) {
        let outside = format!("{}s{i}", self.tag);
        ip(&["-n", &self.switch(), "link", "set", &outside, if up { "up" } else { "down" }]);
    }
}

fn rand_byte() -> u8 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (t.subsec_nanos() % 251) as u8
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain(std::iter::once(&self.switch())) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
