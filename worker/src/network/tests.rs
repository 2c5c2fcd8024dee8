//! Root tests in a world of namespaces each test makes and always removes ([`Guard`]):
//! two "hosts" `h1` (192.0.2.1) and `h2` (192.0.2.2) joined by a veth underlay, an
//! "outside" namespace `ext` (198.51.100.2) reachable from h1 only, and a scratch
//! namespace the test's own thread runs in, so that nothing here touches the real host.
//! Each host runs its own [`Dataplane`], started on a thread inside that host.
//! No packet leaves these namespaces.

use std::fs::File;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use nix::sched::{CloneFlags, setns};

use super::dataplane::{Dataplane, DataplaneConfig};
use super::desired::*;
use super::*;

const N1: &str = "net-one";
const N2: &str = "net-two";
const ING: &str = "ingress";

/// Removes the world's namespaces (and our mounts in its run dirs) on drop, also on panic.
struct Guard {
    names: Vec<String>,
    run_dirs: Vec<PathBuf>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        for dir in &self.run_dirs {
            if let Ok(files) = std::fs::read_dir(dir.join("netns")) {
                for f in files.flatten() {
                    let _ = nix::mount::umount2(&f.path(), nix::mount::MntFlags::MNT_DETACH);
                }
            }
            let _ = std::fs::remove_dir_all(dir);
        }
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

#[derive(Debug, Clone)]
struct World {
    h1: String,
    h2: String,
    ext: String,
    scratch: String,
    run1: PathBuf,
    run2: PathBuf,
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("run a command");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Makes the world and runs `body` on a thread inside its scratch namespace.
fn in_world<F, Fut>(tag: &str, body: F)
where
    F: FnOnce(World) -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let pid = std::process::id();
    let name = |h: &str| format!("sht{pid}{tag}{h}");
    let mut guard = Guard { names: Vec::new(), run_dirs: Vec::new() };
    for h in ["h1", "h2", "ext", "w"] {
        sh(&["ip", "netns", "add", &name(h)]);
        guard.names.push(name(h));
        sh(&["ip", "-n", &name(h), "link", "set", "lo", "up"]);
    }
    let w = World {
        h1: name("h1"),
        h2: name("h2"),
        ext: name("ext"),
        scratch: name("w"),
        run1: tempfile::tempdir().expect("tempdir").keep(),
        run2: tempfile::tempdir().expect("tempdir").keep(),
    };
    guard.run_dirs = vec![w.run1.clone(), w.run2.clone()];
    sh(&["ip", "-n", &w.h1, "link", "add", "u1", "type", "veth", "peer", "name", "u2", "netns", &w.h2]);
    sh(&["ip", "-n", &w.h1, "addr", "add", "192.0.2.1/24", "dev", "u1"]);
    sh(&["ip", "-n", &w.h2, "addr", "add", "192.0.2.2/24", "dev", "u2"]);
    sh(&["ip", "-n", &w.h1, "link", "set", "u1", "up"]);
    sh(&["ip", "-n", &w.h2, "link", "set", "u2", "up"]);
    sh(&["ip", "-n", &w.h1, "link", "add", "x1", "type", "veth", "peer", "name", "x2", "netns", &w.ext]);
    sh(&["ip", "-n", &w.h1, "addr", "add", "198.51.100.1/24", "dev", "x1"]);
    sh(&["ip", "-n", &w.ext, "addr", "add", "198.51.100.2/24", "dev", "x2"]);
    sh(&["ip", "-n", &w.h1, "link", "set", "x1", "up"]);
    sh(&["ip", "-n", &w.ext, "link", "set", "x2", "up"]);
    let scratch = netns_path(&w.scratch);
    let result = std::thread::spawn(move || {
        enter(&scratch);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(body(w));
    })
    .join();
    drop(guard);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn netns_path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

/// Joins a namespace on the calling (test-owned) thread.
fn enter(path: &Path) {
    let f = File::open(path).expect("open a namespace");
    setns(f, CloneFlags::CLONE_NEWNET).expect("setns");
}

/// Runs `f` on a new thread inside `path`.
fn within<T: Send + 'static>(path: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        enter(&path);
        f()
    })
    .join()
    .expect("namespace thread")
}

fn config(run_dir: &Path, underlay: [u8; 4], prefix: &str) -> DataplaneConfig {
    let mut cfg = DataplaneConfig::new(run_dir.to_path_buf(), underlay.into());
    cfg.prefix = prefix.into();
    cfg
}

/// Starts a data plane from a thread inside host `ns`, as the daemon would.
fn start_in(ns: &str, cfg: DataplaneConfig) -> Result<Dataplane, NetworkError> {
    within(&netns_path(ns), move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(Dataplane::start(cfg))
    })
}

fn ping(ns: &Path, ip: &str) -> bool {
    Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["busybox", "ping", "-c1", "-W1", ip])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Polls `f` until it holds or 10 s pass.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn net(id: &str, vni: u32, subnet: &str, peers: &[(&str, &str)]) -> OverlayNet {
    let subnet: Ipv4Net = subnet.parse().expect("subnet");
    OverlayNet {
        id: id.into(),
        vni,
        subnet,
        gateway: subnet.hosts().next().expect("a host"),
        mtu: 1450,
        internal: false,
        encrypted: false,
        peers: peers.iter().map(|(a, b)| (a.parse().expect("ip"), b.parse().expect("ip"))).collect(),
    }
}

fn sandbox(task: &str, atts: &[(&str, &str)], egress: bool) -> Sandbox {
    Sandbox {
        task_id: task.into(),
        attachments: atts
            .iter()
            .map(|(n, a)| Attachment { network_id: (*n).into(), addr: a.parse().expect("addr") })
            .collect(),
        egress,
        ..Sandbox::default()
    }
}

fn node(nets: Vec<OverlayNet>, sbs: Vec<Sandbox>) -> NodeNet {
    NodeNet {
        networks: nets.into_iter().map(|n| (n.id.clone(), n)).collect(),
        sandboxes: sbs.into_iter().map(|s| (s.task_id.clone(), s)).collect(),
        ..NodeNet::default()
    }
}

fn ifindex(ns: &Path, dev: &str) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["ip", "-o", "link", "show", dev])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout).split(':').next().unwrap_or("").to_string()
}

/// The IPv4 address on `dev` inside `ns`, without its prefix.
fn addr_of(ns: &Path, dev: &str) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(["ip", "-o", "-4", "addr", "show", dev])
        .output()
        .expect("ip addr");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let cidr = text.split_whitespace().skip_while(|w| *w != "inet").nth(1).unwrap_or("");
    cidr.split('/').next().unwrap_or("").to_string()
}

/// A TCP server inside a namespace answering every connection with `reply`.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(ns: &Path, port: u16, reply: &'static str) -> Server {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let (path, flag) = (ns.to_path_buf(), stop.clone());
    let thread = std::thread::spawn(move || {
        enter(&path);
        let l = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind the test server");
        l.set_nonblocking(true).expect("nonblocking");
        let _ = tx.send(());
        while !flag.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut s, _)) => {
                    let _ = s.write_all(reply.as_bytes());
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    rx.recv().expect("server ready");
    Server { stop, thread: Some(thread) }
}

/// Connects from inside `ns` and reads the reply.
fn fetch(ns: &Path, to: &str) -> std::io::Result<String> {
    let to: SocketAddrV4 = to.parse().expect("address");
    within(ns, move || {
        let mut s = TcpStream::connect_timeout(&to.into(), Duration::from_secs(1))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
}

#[test]
fn two_hosts_sandboxes_reach_each_other_until_the_peer_goes_and_resync_adopts() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    in_world("a", |w| async move {
        let dp1 = start_in(&w.h1, config(&w.run1, [192, 0, 2, 1], "a")).expect("start h1");
        let dp2 = start_in(&w.h2, config(&w.run2, [192, 0, 2, 2], "b")).expect("start h2");
        assert_eq!(dp1.underlay_mtu(), 1500);
        let t1 = dp1.create_sandbox("t1").await.expect("sandbox t1");
        let t2 = dp2.create_sandbox("t2").await.expect("sandbox t2");
        let t3 = dp1.create_sandbox("t3").await.expect("sandbox t3");
        let stale = dp1.create_sandbox("stale").await.expect("sandbox stale");
        let want1 = node(
            vec![
                net(N1, 4097, "10.9.0.0/24", &[("10.9.0.3", "192.0.2.2")]),
                net(N2, 4098, "10.10.0.0/24", &[]),
            ],
            vec![
                sandbox("t1", &[(N1, "10.9.0.2/24")], false),
                sandbox("t3", &[(N2, "10.10.0.2/24")], false),
                sandbox("stale", &[(N1, "10.9.0.9/24")], false),
                sandbox("not-created-yet", &[(N1, "10.9.0.10/24")], false),
            ],
        );
        let want2 = node(
            vec![net(N1, 4097, "10.9.0.0/24", &[("10.9.0.2", "192.0.2.1"), ("10.9.0.9", "192.0.2.1")])],
            vec![sandbox("t2", &[(N1, "10.9.0.3/24")], false)],
        );
        dp1.apply(&want1).await.expect("apply h1");
        dp2.apply(&want2).await.expect("apply h2");
        eventually("t1 pings t2 across VXLAN", || ping(&t1, "10.9.0.3"));
        assert!(ping(&t2, "10.9.0.2"), "t2 pings t1");
        assert!(!ping(&t3, "10.9.0.2"), "a sandbox on another network reaches t1");
        dp1.apply(&want1).await.expect("apply again");

        let mut no_peer = want1.clone();
        if let Some(n) = no_peer.networks.get_mut(N1) {
            n.peers.clear();
        }
        dp1.apply(&no_peer).await.expect("apply without the peer");
        eventually("t2 is unreachable without its peer entry", || !ping(&t1, "10.9.0.3"));

        // A restarted daemon adopts what is there and removes the stale sandbox.
        let eth0 = ifindex(&t1, "eth0");
        drop(dp1);
        let dp1 = start_in(&w.h1, config(&w.run1, [192, 0, 2, 1], "a")).expect("restart h1");
        let mut after = want1.clone();
        after.sandboxes.remove("stale");
        dp1.resync(&after).await.expect("resync");
        assert!(!stale.exists(), "the stale sandbox's namespace is gone");
        assert_eq!(ifindex(&t1, "eth0"), eth0, "t1's interface was adopted, not remade");
        eventually("t1 pings t2 again once its peer is back", || ping(&t1, "10.9.0.3"));

        dp1.teardown().await.expect("teardown h1");
        dp2.teardown().await.expect("teardown h2");
        assert!(!t1.exists() && !t2.exists());
    });
}

#[test]
fn a_vip_balances_over_its_backends_and_rejects_without_them() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    in_world("b", |w| async move {
        let dp = start_in(&w.h1, config(&w.run1, [192, 0, 2, 1], "a")).expect("start");
        let c = dp.create_sandbox("c").await.expect("sandbox");
        let b1 = dp.create_sandbox("b1").await.expect("sandbox");
        let b2 = dp.create_sandbox("b2").await.expect("sandbox");
        let vip: Ipv4Addr = "10.9.0.100".parse().expect("vip");
        let mut want = node(
            vec![net(N1, 4097, "10.9.0.0/24", &[])],
            vec![
                sandbox("c", &[(N1, "10.9.0.2/24")], false),
                sandbox("b1", &[(N1, "10.9.0.3/24")], false),
                sandbox("b2", &[(N1, "10.9.0.4/24")], false),
            ],
        );
        let backends = vec!["10.9.0.3".parse().expect("ip"), "10.9.0.4".parse().expect("ip")];
        if let Some(s) = want.sandboxes.get_mut("c") {
            s.lb = vec![LbRule { vip, protocol: Proto::Tcp, port: 80, backends }];
            s.dns_ports = Some((5353, 5354));
        }
        dp.apply(&want).await.expect("apply");
        let _s1 = serve(&b1, 80, "b1");
        let _s2 = serve(&b2, 80, "b2");
        let mut seen = std::collections::BTreeSet::new();
        eventually("the VIP reaches both backends", || {
            if let Ok(r) = fetch(&c, "10.9.0.100:80") {
                seen.insert(r);
            }
            seen.len() == 2
        });

        // The DNS redirect: 127.0.0.11:53 lands on the resolver's port.
        let got = within(&c, || {
            let server = UdpSocket::bind("127.0.0.11:5353").expect("bind the resolver");
            server.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
            let client = UdpSocket::bind("127.0.0.1:0").expect("bind");
            client.send_to(b"q", "127.0.0.11:53").expect("send");
            let mut buf = [0u8; 8];
            server.recv_from(&mut buf).map(|(n, _)| buf[..n].to_vec())
        });
        assert_eq!(got.expect("the query reached the resolver"), b"q");

        if let Some(s) = want.sandboxes.get_mut("c") {
            s.lb[0].backends.clear();
        }
        dp.apply(&want).await.expect("apply without backends");
        let t = Instant::now();
        let err = fetch(&c, "10.9.0.100:80").expect_err("the VIP still answers");
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
        assert!(t.elapsed() < Duration::from_secs(1), "rejected, not hung");
        dp.teardown().await.expect("teardown");
    });
}

#[test]
fn routing_mesh_egress_and_host_ports_work_and_internal_sandboxes_stay_in() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    in_world("c", |w| async move {
        let dp1 = start_in(&w.h1, config(&w.run1, [192, 0, 2, 1], "a")).expect("start h1");
        let dp2 = start_in(&w.h2, config(&w.run2, [192, 0, 2, 2], "b")).expect("start h2");
        let ext = netns_path(&w.ext);
        let port = |published, target| IngressPort {
            protocol: Proto::Tcp,
            published,
            target,
            backends: vec!["10.255.0.5".parse().expect("ip")],
        };
        // h1: no local backend, only the mesh; plus an egress and an internal sandbox.
        let out = dp1.create_sandbox("out").await.expect("sandbox");
        let inner = dp1.create_sandbox("inner").await.expect("sandbox");
        let out2 = dp1.create_sandbox("out2").await.expect("sandbox");
        let mut want1 = node(
            vec![
                net(ING, 4100, "10.255.0.0/24", &[("10.255.0.5", "192.0.2.2"), ("10.255.0.3", "192.0.2.2")]),
                net(N1, 4097, "10.9.0.0/24", &[]),
            ],
            vec![
                sandbox("out", &[(N1, "10.9.0.2/24")], true),
                sandbox("inner", &[(N1, "10.9.0.3/24")], false),
                sandbox("out2", &[(N1, "10.9.0.4/24")], true),
            ],
        );
        want1.ingress = Some(Ingress {
            network_id: ING.into(),
            addr: "10.255.0.2/24".parse().expect("addr"),
            ports: vec![port(8000, 8080)],
        });
        want1.host_ports =
            vec![HostPort { protocol: Proto::Tcp, published: 7000, target: 9090, task_id: "out".into() }];
        let tb = dp2.create_sandbox("tb").await.expect("sandbox");
        let mut want2 = node(
            vec![net(ING, 4100, "10.255.0.0/24", &[("10.255.0.2", "192.0.2.1")])],
            vec![sandbox("tb", &[(ING, "10.255.0.5/24")], false)],
        );
        want2.ingress = Some(Ingress {
            network_id: ING.into(),
            addr: "10.255.0.3/24".parse().expect("addr"),
            ports: vec![port(8000, 8080)],
        });
        dp1.apply(&want1).await.expect("apply h1");
        dp2.apply(&want2).await.expect("apply h2");
        let _backend = serve(&tb, 8080, "tb");
        let _hosted = serve(&out, 9090, "out");

        eventually("the mesh on h1 reaches the backend on h2 from outside", || {
            fetch(&ext, "198.51.100.1:8000").is_ok_and(|r| r == "tb")
        });
        let h1 = netns_path(&w.h1);
        assert_eq!(fetch(&h1, "192.0.2.1:8000").expect("from h1 itself"), "tb");
        assert_eq!(fetch(&ext, "198.51.100.1:7000").expect("the host-mode port"), "out");
        eventually("the egress sandbox reaches outside", || ping(&out, "198.51.100.2"));
        assert!(!ping(&inner, "198.51.100.2"), "an internal sandbox reached outside");
        assert!(ping(&out2, "198.51.100.2"), "the second egress sandbox reaches outside");
        let out_gw = addr_of(&out, "eth1");
        assert!(out_gw.starts_with("172.18."), "{out_gw}");
        assert!(!ping(&out2, &out_gw), "sandboxes reach each other over the gateway bridge");

        // A published port held by a host process is a clear error.
        let holder = within(&h1, || TcpListener::bind("0.0.0.0:8001").expect("bind"));
        if let Some(ing) = want1.ingress.as_mut() {
            ing.ports.push(port(8001, 8080));
        }
        let err = dp1.apply(&want1).await.expect_err("a taken port was accepted");
        assert!(err.to_string().contains("published port 8001/tcp is already bound"), "{err}");
        drop(holder);
        dp1.teardown().await.expect("teardown h1");
        dp2.teardown().await.expect("teardown h2");
    });
}

#[test]
fn clear_errors_for_a_taken_vxlan_port_and_an_mtu_without_room() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    in_world("d", |w| async move {
        let holder = within(&netns_path(&w.h1), || UdpSocket::bind("0.0.0.0:4789").expect("bind"));
        let err = start_in(&w.h1, config(&w.run1, [192, 0, 2, 1], "a")).expect_err("started on a taken port");
        assert!(err.to_string().contains("VXLAN UDP port 4789 is already in use"), "{err}");
        assert!(err.to_string().contains("--data-path-port"), "{err}");
        drop(holder);
        let err = start_in(&w.h1, config(&w.run1, [203, 0, 113, 1], "a")).expect_err("a foreign underlay");
        assert!(matches!(err, NetworkError::NoUnderlay(_)), "{err}");

        let dp = start_in(&w.h1, config(&w.run1, [192, 0, 2, 1], "a")).expect("start");
        let mut n = net(N1, 4097, "10.9.0.0/24", &[]);
        n.mtu = 1460;
        let err = dp.apply(&node(vec![n.clone()], vec![])).await.expect_err("no room for VXLAN");
        assert!(err.to_string().contains("use at most 1450"), "{err}");
        n.mtu = 60;
        let err = dp.apply(&node(vec![n], vec![])).await.expect_err("below IPv4's minimum");
        assert!(err.to_string().contains("at least 68"), "{err}");
        dp.teardown().await.expect("teardown");
    });
}
