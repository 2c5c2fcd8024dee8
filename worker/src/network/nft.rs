//! nftables rulesets as text transactions for `nft -f -`, and the runner that pipes
//! them into `nft` inside a namespace.
//!
//! Load balancing follows kube-proxy's nftables design (shared/reference/networking.md
//! §3.3, appendix B): a verdict map keyed `address . protocol . port` sends a packet to
//! one chain per service, which picks a backend chain with `numgen random mod N` and
//! DNATs there. The renderers are pure: the data plane keeps what it applied and asks
//! for the transaction from old to new, so a change touches only the services that
//! changed (one map element and a few chains), never the whole table. A service with no
//! backends rejects (TCP reset, ICMP for UDP) instead of letting clients hang.
//!
//! A VIP balances every port and protocol, as Swarm's do (a service does not declare
//! the ports it listens on): its key has port 0, its element goes in the map `vip`
//! keyed by address alone, and its backends DNAT the address and keep the port.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;

use super::NetworkError;
use super::desired::Proto;
use super::netns::Netns;

/// The load-balancing table inside a task's namespace.
pub(crate) const LB_TABLE: &str = "shoal-lb";
/// The embedded DNS redirect table inside a task's namespace.
pub(crate) const DNS_TABLE: &str = "shoal-dns";

/// A balanced port: where it is matched (a VIP, or any local address for the routing
/// mesh), the protocol and the port.
pub(crate) type SvcKey = (Option<Ipv4Addr>, Proto, u16);

/// What a balanced port leads to: the backends and their port.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SvcTarget {
    pub(crate) backends: Vec<Ipv4Addr>,
    pub(crate) port: u16,
}

/// The services of one table.
pub(crate) type Services = BTreeMap<SvcKey, SvcTarget>;

/// One balancing table: its name, and the hook rules that consult its map.
#[derive(Debug, Clone)]
pub(crate) struct LbTable {
    /// The table's name (family ip).
    pub(crate) name: String,
    /// Whether the map is keyed by address too (VIPs) or only by protocol and port.
    pub(crate) by_address: bool,
    /// The extra base chains and rules made with the table, as `add` commands without
    /// the table prefix, e.g. `chain out { type nat hook output priority -100; }`.
    pub(crate) base: Vec<String>,
}

impl LbTable {
    /// The VIP table of a task's namespace.
    pub(crate) fn vips() -> LbTable {
        LbTable {
            name: LB_TABLE.into(),
            by_address: true,
            base: vec![
                "map vip { type ipv4_addr : verdict; }".into(),
                "chain out { type nat hook output priority -100; policy accept; }".into(),
                "rule out ip daddr . meta l4proto . th dport vmap @svc".into(),
                "rule out ip daddr vmap @vip".into(),
            ],
        }
    }

    /// The routing mesh's table in the daemon's namespace, masquerading what leaves by
    /// `ingress_link`.
    pub(crate) fn ingress(prefix: &str, ingress_link: &str) -> LbTable {
        LbTable {
            name: format!("{prefix}-ingress"),
            by_address: false,
            base: vec![
                "chain pre { type nat hook prerouting priority -100; policy accept; }".into(),
                "rule pre fib daddr type local meta l4proto . th dport vmap @svc".into(),
                "chain out { type nat hook output priority -100; policy accept; }".into(),
                "rule out ip daddr != 127.0.0.0/8 fib daddr type local meta l4proto . th dport vmap @svc"
                    .into(),
                "chain post { type nat hook postrouting priority 100; policy accept; }".into(),
                format!("rule post oifname \"{ingress_link}\" ct status dnat masquerade"),
            ],
        }
    }

    /// The transaction from `old` to `new`; `old == None` means the table's contents are
    /// unknown, so it is made afresh (atomically: the transaction deletes and remakes it).
    pub(crate) fn update(&self, old: Option<&Services>, new: &Services) -> String {
        let t = &self.name;
        let mut out = String::new();
        let empty = Services::new();
        let old = match old {
            Some(old) => old,
            None => {
                let key = if self.by_address {
                    "ipv4_addr . inet_proto . inet_service"
                } else {
                    "inet_proto . inet_service"
                };
                let _ = writeln!(out, "table ip {t} {{}}\ndelete table ip {t}\nadd table ip {t}");
                let _ = writeln!(out, "add map ip {t} svc {{ type {key} : verdict; }}");
                for b in &self.base {
                    let _ = writeln!(
                        out,
                        "add {} ip {t} {}",
                        b.split_whitespace().next().unwrap_or(""),
                        b.split_once(' ').map_or("", |x| x.1)
                    );
                }
                &empty
            }
        };
        for (key, target) in new {
            let chain = chain_name(key);
            match old.get(key) {
                Some(was) if was == target => {}
                Some(was) => {
                    let _ = writeln!(out, "flush chain ip {t} {chain}");
                    backend_chains(&mut out, t, &chain, key.1, was.backends.len(), target);
                }
                None => {
                    let _ = writeln!(out, "add chain ip {t} {chain}");
                    backend_chains(&mut out, t, &chain, key.1, 0, target);
                    let _ = writeln!(
                        out,
                        "add element ip {t} {} {{ {} : goto {chain} }}",
                        map_of(key),
                        element(key)
                    );
                }
            }
        }
        for (key, was) in old {
            if !new.contains_key(key) {
                let chain = chain_name(key);
                let _ = writeln!(out, "delete element ip {t} {} {{ {} }}", map_of(key), element(key));
                let _ = writeln!(out, "flush chain ip {t} {chain}");
                for i in 0..was.backends.len() {
                    let _ = writeln!(out, "delete chain ip {t} {chain}_{i}");
                }
                let _ = writeln!(out, "delete chain ip {t} {chain}");
            }
        }
        out
    }
}

/// Fills the (flushed or new) service chain, reusing `had` backend chains.
fn backend_chains(out: &mut String, t: &str, chain: &str, proto: Proto, had: usize, target: &SvcTarget) {
    let n = target.backends.len();
    for (i, b) in target.backends.iter().enumerate() {
        if i < had {
            let _ = writeln!(out, "flush chain ip {t} {chain}_{i}");
        } else {
            let _ = writeln!(out, "add chain ip {t} {chain}_{i}");
        }
        if target.port == 0 {
            let _ = writeln!(out, "add rule ip {t} {chain}_{i} dnat to {b}");
        } else {
            let _ = writeln!(
                out,
                "add rule ip {t} {chain}_{i} meta l4proto {} dnat to {b}:{}",
                proto.as_str(),
                target.port
            );
        }
    }
    for i in n..had {
        let _ = writeln!(out, "delete chain ip {t} {chain}_{i}");
    }
    if n == 0 {
        let reject = match (proto, target.port) {
            (Proto::Tcp, _) | (_, 0) => "meta l4proto tcp reject with tcp reset",
            (Proto::Udp, _) => "reject",
        };
        let _ = writeln!(out, "add rule ip {t} {chain} {reject}");
        if target.port == 0 {
            let _ = writeln!(out, "add rule ip {t} {chain} reject");
        }
    } else {
        let arms: Vec<String> = (0..n).map(|i| format!("{i} : goto {chain}_{i}")).collect();
        let _ = writeln!(out, "add rule ip {t} {chain} numgen random mod {n} vmap {{ {} }}", arms.join(", "));
    }
}

/// The map a key's element lives in: `vip` for a whole VIP, `svc` otherwise.
fn map_of((addr, _, port): &SvcKey) -> &'static str {
    if addr.is_some() && *port == 0 { "vip" } else { "svc" }
}

fn chain_name((addr, proto, port): &SvcKey) -> String {
    match addr {
        Some(a) if *port == 0 => format!("v_{}", a.to_string().replace('.', "_")),
        Some(a) => format!("s_{}_{}_{port}", a.to_string().replace('.', "_"), proto.as_str()),
        None => format!("p_{}_{port}", proto.as_str()),
    }
}

fn element((addr, proto, port): &SvcKey) -> String {
    match addr {
        Some(a) if *port == 0 => a.to_string(),
        Some(a) => format!("{a} . {} . {port}", proto.as_str()),
        None => format!("{} . {port}", proto.as_str()),
    }
}

/// The embedded DNS redirect of a task's namespace (appendix C): `127.0.0.11:53` to the
/// resolver's ports, made afresh; `None` removes it.
pub(crate) fn dns(ports: Option<(u16, u16)>) -> String {
    let t = DNS_TABLE;
    let mut out = format!("table ip {t} {{}}\ndelete table ip {t}\n");
    if let Some((udp, tcp)) = ports {
        let _ = writeln!(out, "add table ip {t}");
        let _ =
            writeln!(out, "add chain ip {t} out {{ type nat hook output priority -100; policy accept; }}");
        let _ =
            writeln!(out, "add rule ip {t} out ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:{udp}");
        let _ =
            writeln!(out, "add rule ip {t} out ip daddr 127.0.0.11 tcp dport 53 dnat to 127.0.0.11:{tcp}");
    }
    out
}

/// A host-mode port resolved to the local task's gateway-bridge address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct HostDnat {
    pub(crate) protocol: Proto,
    pub(crate) published: u16,
    pub(crate) to: Ipv4Addr,
    pub(crate) target: u16,
}

/// The daemon namespace's NAT table, made afresh: masquerade of the gateway pool leaving
/// by another interface than the gateway bridge, and host-mode port DNATs.
pub(crate) fn host_nat(prefix: &str, gw_bridge: &str, pool: Ipv4Net, ports: &[HostDnat]) -> String {
    let t = format!("{prefix}-nat");
    let mut out = format!("table ip {t} {{}}\ndelete table ip {t}\nadd table ip {t}\n");
    let _ =
        writeln!(out, "add chain ip {t} pre {{ type nat hook prerouting priority -100; policy accept; }}");
    let _ = writeln!(out, "add chain ip {t} out {{ type nat hook output priority -100; policy accept; }}");
    let _ =
        writeln!(out, "add chain ip {t} post {{ type nat hook postrouting priority 100; policy accept; }}");
    let _ = writeln!(out, "add rule ip {t} post ip saddr {pool} oifname != \"{gw_bridge}\" masquerade");
    for p in ports {
        let m = format!("{} dport {} dnat to {}:{}", p.protocol.as_str(), p.published, p.to, p.target);
        let _ = writeln!(out, "add rule ip {t} pre fib daddr type local {m}");
        let _ = writeln!(out, "add rule ip {t} out ip daddr != 127.0.0.0/8 fib daddr type local {m}");
    }
    out
}

/// Removes a table if it is there.
pub(crate) fn delete_table(name: &str) -> String {
    format!("table ip {name} {{}}\ndelete table ip {name}\n")
}

/// Pipes a transaction into `nft -f -` inside `ns`; nothing for an empty one.
pub(crate) async fn run(ns: &Netns, text: String) -> Result<(), NetworkError> {
    if text.trim().is_empty() {
        return Ok(());
    }
    let name = ns.name().to_string();
    let (t0, bytes) = (std::time::Instant::now(), text.len());
    let output = ns
        .run(move || -> std::io::Result<std::process::Output> {
            let mut child = Command::new("nft")
                .args(["-f", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()?;
            if let Some(mut stdin) = child.stdin.take() {
                stdin.write_all(text.as_bytes())?;
            }
            child.wait_with_output()
        })
        .await?
        .map_err(|e| {
            NetworkError::io(format!("run nft in {name} (is the nftables package installed?)"), e)
        })?;
    // Timings for benchmarks: one `nft` process per transaction.
    tracing::debug!(ns = %name, bytes, us = t0.elapsed().as_micros() as u64, "nft");
    if output.status.success() {
        Ok(())
    } else {
        Err(NetworkError::Nft {
            ns: name,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(vip: [u8; 4], port: u16, backends: &[[u8; 4]]) -> (SvcKey, SvcTarget) {
        (
            (Some(vip.into()), Proto::Tcp, port),
            SvcTarget { backends: backends.iter().map(|b| (*b).into()).collect(), port },
        )
    }

    #[test]
    fn a_fresh_table_is_remade_with_every_service() {
        let new: Services = [svc([10, 0, 0, 9], 80, &[[10, 0, 0, 3], [10, 0, 0, 4]])].into();
        let text = LbTable::vips().update(None, &new);
        assert!(
            text.starts_with("table ip shoal-lb {}\ndelete table ip shoal-lb\nadd table ip shoal-lb\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "add map ip shoal-lb svc { type ipv4_addr . inet_proto . inet_service : verdict; }"
            )
        );
        assert!(
            text.contains("add rule ip shoal-lb out ip daddr . meta l4proto . th dport vmap @svc"),
            "{text}"
        );
        assert!(
            text.contains("add rule ip shoal-lb s_10_0_0_9_tcp_80_1 meta l4proto tcp dnat to 10.0.0.4:80")
        );
        assert!(text.contains(
            "numgen random mod 2 vmap { 0 : goto s_10_0_0_9_tcp_80_0, 1 : goto s_10_0_0_9_tcp_80_1 }"
        ));
        assert!(
            text.ends_with("add element ip shoal-lb svc { 10.0.0.9 . tcp . 80 : goto s_10_0_0_9_tcp_80 }\n")
        );
    }

    #[test]
    fn a_whole_vip_keeps_the_port_and_rejects_every_protocol_without_backends() {
        let text = LbTable::vips().update(None, &[svc([10, 0, 0, 9], 0, &[[10, 0, 0, 3]])].into());
        assert!(text.contains("add map ip shoal-lb vip { type ipv4_addr : verdict; }"), "{text}");
        assert!(text.contains("add rule ip shoal-lb out ip daddr vmap @vip"), "{text}");
        assert!(text.contains("add rule ip shoal-lb v_10_0_0_9_0 dnat to 10.0.0.3\n"), "{text}");
        assert!(text.ends_with("add element ip shoal-lb vip { 10.0.0.9 : goto v_10_0_0_9 }\n"), "{text}");
        let old: Services = [svc([10, 0, 0, 9], 0, &[[10, 0, 0, 3]])].into();
        let text = LbTable::vips().update(Some(&old), &[svc([10, 0, 0, 9], 0, &[])].into());
        assert!(text.contains("add rule ip shoal-lb v_10_0_0_9 meta l4proto tcp reject with tcp reset\nadd rule ip shoal-lb v_10_0_0_9 reject\n"), "{text}");
        let text = LbTable::vips().update(Some(&old), &Services::new());
        assert!(text.contains("delete element ip shoal-lb vip { 10.0.0.9 }"), "{text}");
    }

    #[test]
    fn an_update_touches_only_the_changed_services() {
        let a = svc([10, 0, 0, 9], 80, &[[10, 0, 0, 3], [10, 0, 0, 4]]);
        let b = svc([10, 0, 0, 8], 53, &[[10, 0, 0, 5]]);
        let old: Services = [a.clone(), b.clone()].into();
        let new: Services = [svc([10, 0, 0, 9], 80, &[[10, 0, 0, 3]]), b].into();
        let text = LbTable::vips().update(Some(&old), &new);
        assert_eq!(
            text,
            "flush chain ip shoal-lb s_10_0_0_9_tcp_80\n\
             flush chain ip shoal-lb s_10_0_0_9_tcp_80_0\n\
             add rule ip shoal-lb s_10_0_0_9_tcp_80_0 meta l4proto tcp dnat to 10.0.0.3:80\n\
             delete chain ip shoal-lb s_10_0_0_9_tcp_80_1\n\
             add rule ip shoal-lb s_10_0_0_9_tcp_80 numgen random mod 1 vmap { 0 : goto s_10_0_0_9_tcp_80_0 }\n"
        );
        assert_eq!(LbTable::vips().update(Some(&new), &new), "");
    }

    #[test]
    fn a_service_without_backends_rejects_and_a_removed_one_goes() {
        let old: Services = [svc([10, 0, 0, 9], 80, &[[10, 0, 0, 3]])].into();
        let none: Services = [svc([10, 0, 0, 9], 80, &[])].into();
        let text = LbTable::vips().update(Some(&old), &none);
        assert!(
            text.contains("add rule ip shoal-lb s_10_0_0_9_tcp_80 meta l4proto tcp reject with tcp reset"),
            "{text}"
        );
        let text = LbTable::vips().update(Some(&none), &Services::new());
        assert_eq!(
            text,
            "delete element ip shoal-lb svc { 10.0.0.9 . tcp . 80 }\n\
             flush chain ip shoal-lb s_10_0_0_9_tcp_80\n\
             delete chain ip shoal-lb s_10_0_0_9_tcp_80\n"
        );
    }

    #[test]
    fn ingress_ports_are_keyed_by_protocol_and_port() {
        let new: Services =
            [((None, Proto::Udp, 53), SvcTarget { backends: vec![[10, 255, 0, 5].into()], port: 5353 })]
                .into();
        let text = LbTable::ingress("sh", "shing").update(None, &new);
        assert!(text.contains("type inet_proto . inet_service : verdict"));
        assert!(
            text.contains("add rule ip sh-ingress p_udp_53_0 meta l4proto udp dnat to 10.255.0.5:5353"),
            "{text}"
        );
        assert!(text.contains("add element ip sh-ingress svc { udp . 53 : goto p_udp_53 }"));
        assert!(text.contains("oifname \"shing\" ct status dnat masquerade"));
    }

    #[test]
    fn dns_redirects_both_protocols_or_nothing() {
        let text = dns(Some((40000, 40001)));
        assert!(text.contains("udp dport 53 dnat to 127.0.0.11:40000"));
        assert!(text.contains("tcp dport 53 dnat to 127.0.0.11:40001"));
        assert_eq!(dns(None), "table ip shoal-dns {}\ndelete table ip shoal-dns\n");
    }
}
