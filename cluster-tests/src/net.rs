//! The test network: a switch namespace with a bridge, and one namespace per host
//! with a veth to it. Addresses are 10.<a>.<b>.<n>/24, private to the namespaces this
//! creates; the machine's own namespace never sees the traffic. Dropped, it removes
//! every namespace (and with them the veths).

use std::process::Command;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A switch and its hosts.
#[derive(Debug)]
pub struct Net {
    tag: String,
    prefix: String,
    hosts: Vec<String>,
}

impl Net {
    /// A new network with no hosts.
    pub fn new() -> Net {
        let n = std::process::id() % 250 + 1;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let salt = (nanos.subsec_nanos() % 251) as u8;
        let tag = format!("sc{n:x}{salt:x}");
        let net = Net { prefix: format!("10.{}.{}", 150 + (salt % 50), n), tag, hosts: Vec::new() };
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
        self.hosts.push(ns.clone());
        let (inside, outside) = (format!("{}e{i}", self.tag), format!("{}s{i}", self.tag));
        let switch = self.switch();
        ip(&["-n", &ns, "link", "add", &inside, "type", "veth", "peer", "name", &outside, "netns", &switch]);
        ip(&["-n", &ns, "link", "set", &inside, "name", "eth0"]);
        ip(&["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-n", &switch, "link", "set", &outside, "master", "br0", "up"]);
        (ns, addr)
    }
}

impl Net {
    /// A namespace on the switch that runs no daemon: "the outside world" of the
    /// cluster (address `.250`), for egress tests and an upstream resolver.
    pub fn outside(&mut self) -> (String, String) {
        self.host(250)
    }
}

impl Default for Net {
    fn default() -> Self {
        Net::new()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain(std::iter::once(&self.switch())) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
