//! Root tests of the resolver in network namespaces the tests make (and remove on
//! drop, panics included). Nothing here touches the real host's network:
//! - "host" plays the daemon's namespace: the resolver runs on a runtime whose threads
//!   are in it, so forwarded queries leave from there;
//! - "sandbox" is the container's: the resolver's sockets, the DNAT of :53, and the
//!   client;
//! - "upstream" holds fake nameservers (192.0.2.2 and .3), reached from "host"
//!   (192.0.2.1) over a veth pair.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use nix::sched::{CloneFlags, setns};

use super::*;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A network namespace made with `ip netns add`, deleted on drop.
struct Netns {
    name: String,
    path: PathBuf,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("shoal-dns-{}-{}-{tag}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        run("ip", &["netns", "add", &name]);
        Netns { path: PathBuf::from("/run/netns").join(&name), name }
    }

    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect("run a command");
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Enters `ns` with the calling thread.
fn enter(ns: &Path) {
    let file = File::open(ns).expect("open the namespace");
    setns(&file, CloneFlags::CLONE_NEWNET).expect("setns");
}

const HOST_IP: &str = "192.0.2.1";
const UP1: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const UP2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 3);

/// The three namespaces, wired.
struct World {
    host: Netns,
    sandbox: Netns,
    upstream: Netns,
}

impl World {
    fn new() -> World {
        let w = World { host: Netns::new("host"), sandbox: Netns::new("sbx"), upstream: Netns::new("up") };
        w.host.ip(&["link", "add", "h0", "type", "veth", "peer", "name", "u0", "netns", &w.upstream.name]);
        w.host.ip(&["addr", "add", &format!("{HOST_IP}/24"), "dev", "h0"]);
        w.upstream.ip(&["addr", "add", &format!("{UP1}/24"), "dev", "u0"]);
        w.upstream.ip(&["addr", "add", &format!("{UP2}/24"), "dev", "u0"]);
        for (ns, dev) in [(&w.host, "h0"), (&w.host, "lo"), (&w.upstream, "u0"), (&w.upstream, "lo")] {
            ns.ip(&["link", "set", dev, "up"]);
        }
        // The sandbox's lo stays down: serve must bring it up.
        w
    }

    /// Runs `body` on a runtime whose threads are all in "host".
    fn daemon<F, Fut>(&self, body: F)
    where
        F: FnOnce() -> Fut + Send,
        Fut: Future<Output = ()>,
    {
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                enter(&self.host.path);
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(body());
            });
            if let Err(panic) = h.join() {
                std::panic::resume_unwind(panic);
            }
        });
    }
}

/// Installs the DNAT of 127.0.0.11:53 to the resolver's ports in `ns` (appendix C,
/// with the TCP pair).
fn redirect(ns: &Netns, (udp, tcp): (u16, u16)) {
    let rules = format!(
        "table ip dns-redirect {{
           chain dns-dnat {{
             type nat hook output priority -100; policy accept;
             ip daddr 127.0.0.11 udp dport 53 dnat to 127.0.0.11:{udp}
             ip daddr 127.0.0.11 tcp dport 53 dnat to 127.0.0.11:{tcp}
           }}
           chain dns-snat {{
             type nat hook postrouting priority 100; policy accept;
             ip saddr 127.0.0.11 udp sport {udp} snat to :53
             ip saddr 127.0.0.11 tcp sport {tcp} snat to :53
           }}
         }}\n"
    );
    let mut child = Command::new("nsenter")
        .arg(format!("--net={}", ns.path.display()))
        .args(["nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nft");
    child.stdin.take().expect("stdin").write_all(rules.as_bytes()).expect("write the rules");
    let out = child.wait_with_output().expect("nft");
    assert!(out.status.success(), "nft: {}", String::from_utf8_lossy(&out.stderr));
}

/// One question as a client in the sandbox asks it.
#[derive(Clone)]
struct Ask {
    name: String,
    rtype: RecordType,
    tcp: bool,
    edns: Option<u16>,
}

fn ask(name: &str, rtype: RecordType) -> Ask {
    Ask { name: name.into(), rtype, tcp: false, edns: None }
}

impl Ask {
    fn tcp(mut self) -> Ask {
        self.tcp = true;
        self
    }

    fn edns(mut self, size: u16) -> Ask {
        self.edns = Some(size);
        self
    }

    /// Sends the question to 127.0.0.11:53 from a thread in `ns`; returns the raw
    /// reply (after checking its id).
    async fn raw(&self, ns: &Netns) -> io::Result<Vec<u8>> {
        let mut msg = Message::query();
        msg.metadata.recursion_desired = true;
        msg.add_query(Query::query(Name::from_ascii(&self.name).expect("a name"), self.rtype));
        if let Some(size) = self.edns {
            let mut edns = Edns::new();
            edns.set_max_payload(size);
            msg.set_edns(edns);
        }
        let id = msg.metadata.id;
        let bytes = msg.to_vec().expect("encode");
        let (path, tcp) = (ns.path.clone(), self.tcp);
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            enter(&path);
            let _ = tx.send(if tcp { exchange_tcp(&bytes) } else { exchange_udp(&bytes) });
        });
        let reply = rx.await.expect("the client thread answers")?;
        let got = Message::from_vec(&reply).expect("a readable reply");
        assert_eq!(got.metadata.id, id, "the reply's id is the query's");
        Ok(reply)
    }

    async fn send(&self, ns: &Netns) -> Message {
        let reply = self.raw(ns).await.unwrap_or_else(|e| panic!("ask {} {}: {e}", self.name, self.rtype));
        Message::from_vec(&reply).expect("a readable reply")
    }
}

const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);
const RESOLVER: (Ipv4Addr, u16) = (Ipv4Addr::new(127, 0, 0, 11), 53);

fn exchange_udp(query: &[u8]) -> io::Result<Vec<u8>> {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    socket.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    socket.connect(RESOLVER)?;
    socket.send(query)?;
    let mut buf = vec![0; 65535];
    let n = socket.recv(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn exchange_tcp(query: &[u8]) -> io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from(RESOLVER), CLIENT_TIMEOUT)?;
    stream.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    let len = u16::try_from(query.len()).expect("a short query");
    stream.write_all(&[&len.to_be_bytes()[..], query].concat())?;
    let mut len = [0; 2];
    stream.read_exact(&mut len)?;
    let mut buf = vec![0; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf)?;
    Ok(buf)
}

fn a_ips(msg: &Message) -> Vec<Ipv4Addr> {
    msg.answers
        .iter()
        .filter_map(|r| match r.data {
            RData::A(A(ip)) => Some(ip),
            _ => None,
        })
        .collect()
}

fn ips(range: std::ops::RangeInclusive<u8>) -> Vec<Ipv4Addr> {
    range.map(|i| Ipv4Addr::new(10, 0, 1, i)).collect()
}

const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn web_names(forward: bool) -> SandboxNames {
    SandboxNames {
        names: HashMap::from([
            ("web".into(), NameAnswer { ips: vec![VIP], ttl: 600 }),
            ("tasks.web".into(), NameAnswer { ips: ips(3..=5), ttl: 5 }),
            ("many".into(), NameAnswer { ips: ips(1..=100), ttl: 5 }),
        ]),
        reverse: HashMap::from([(Ipv4Addr::new(10, 0, 1, 3), "web.1.abc".into())]),
        forward,
    }
}

/// Serves the sandbox with `cfg` and the web names, with the DNAT in place.
async fn serve(w: &World, table: &DnsTable, cfg: DnsConfig) -> Dns {
    let dns = Dns::new(table.clone(), cfg);
    let ports = dns.serve("t1", &w.sandbox.path).await.expect("serve");
    assert_eq!(dns.serve("t1", &w.sandbox.path).await.expect("serve again"), ports, "serve is idempotent");
    redirect(&w.sandbox, ports);
    dns
}

#[test]
fn answers_the_sandboxs_names_behind_the_dnat() {
    let w = World::new();
    w.daemon(|| async {
        let table = DnsTable::default();
        table.set("t1", web_names(false));
        let dns = serve(&w, &table, DnsConfig::default()).await;
        assert_eq!(dns.running(), ["t1"]);
        let sbx = &w.sandbox;

        let web = ask("web", RecordType::A).send(sbx).await;
        assert_eq!((web.metadata.response_code, a_ips(&web)), (ResponseCode::NoError, vec![VIP]));
        assert_eq!(web.answers[0].ttl, 600);
        assert_eq!(web.answers[0].name, Name::from_ascii("web.").expect("a name"));

        let tasks = ask("tasks.web.", RecordType::A).send(sbx).await;
        assert_eq!(a_ips(&tasks).into_iter().collect::<BTreeSet<_>>(), ips(3..=5).into_iter().collect());
        assert!(tasks.answers.iter().all(|r| r.ttl == 5));
        let over_tcp = ask("tasks.web", RecordType::A).tcp().send(sbx).await;
        assert_eq!(a_ips(&over_tcp).len(), 3, "TCP answers too");

        let upper = ask("TASKS.Web", RecordType::A).send(sbx).await;
        assert_eq!(a_ips(&upper).len(), 3, "names match in any case");

        for t in [RecordType::AAAA, RecordType::MX] {
            let empty = ask("web", t).send(sbx).await;
            assert_eq!(
                (empty.metadata.response_code, empty.answers.len()),
                (ResponseCode::NoError, 0),
                "{t}"
            );
        }

        let ptr = ask("3.1.0.10.in-addr.arpa", RecordType::PTR).send(sbx).await;
        match &ptr.answers[..] {
            [r] => assert_eq!(
                r.data,
                RData::PTR(hickory_proto::rr::rdata::PTR(Name::from_ascii("web.1.abc.").expect("a name")))
            ),
            other => panic!("one PTR expected, got {other:?}"),
        }

        let unknown = ask("example.org", RecordType::A).send(sbx).await;
        assert_eq!(unknown.metadata.response_code, ResponseCode::NXDomain, "nothing forwarded: NXDOMAIN");

        // A swap is seen by the next query.
        let mut names = web_names(false);
        names.names.insert("web".into(), NameAnswer { ips: vec![Ipv4Addr::new(10, 0, 0, 99)], ttl: 600 });
        table.set("t1", names);
        let swapped = ask("web", RecordType::A).send(sbx).await;
        assert_eq!(a_ips(&swapped), [Ipv4Addr::new(10, 0, 0, 99)]);
        table.remove("t1");
        let gone = ask("web", RecordType::A).send(sbx).await;
        assert_eq!(gone.metadata.response_code, ResponseCode::ServFail, "a sandbox without names");

        dns.stop("t1").await;
        assert!(dns.running().is_empty());
        assert!(ask("web", RecordType::A).raw(sbx).await.is_err(), "a stopped resolver answers nothing");
    });
}

#[test]
fn shuffles_and_truncates_to_the_clients_size() {
    let w = World::new();
    w.daemon(|| async {
        let table = DnsTable::default();
        table.set("t1", web_names(false));
        let _dns = serve(&w, &table, DnsConfig::default()).await;
        let sbx = &w.sandbox;

        let mut orders = BTreeSet::new();
        for _ in 0..30 {
            orders.insert(a_ips(&ask("tasks.web", RecordType::A).send(sbx).await));
        }
        assert!(orders.len() > 1, "answers are shuffled: {orders:?}");

        let raw = ask("many", RecordType::A).raw(sbx).await.expect("an answer");
        let small = Message::from_vec(&raw).expect("readable");
        assert!(raw.len() <= 512 && small.metadata.truncation, "{} bytes", raw.len());
        assert!(!small.answers.is_empty() && small.answers.len() < 100);

        let big = ask("many", RecordType::A).edns(4096).send(sbx).await;
        assert_eq!((big.metadata.truncation, big.answers.len()), (false, 100), "EDNS 4096 holds them all");
        let mid = ask("many", RecordType::A).edns(1000).raw(sbx).await.expect("an answer");
        assert!(mid.len() <= 1000 && Message::from_vec(&mid).expect("readable").metadata.truncation);

        let tcp = ask("many", RecordType::A).tcp().send(sbx).await;
        assert_eq!((tcp.metadata.truncation, tcp.answers.len()), (false, 100), "TCP holds them all");
    });
}

#[test]
fn busybox_nslookup_resolves_and_fails_fast() {
    let w = World::new();
    w.daemon(|| async {
        let table = DnsTable::default();
        table.set("t1", web_names(false));
        let _dns = serve(&w, &table, DnsConfig::default()).await;
        let nslookup = |name: &'static str| {
            let net = format!("--net={}", w.sandbox.path.display());
            async move {
                let start = Instant::now();
                let out = tokio::process::Command::new("nsenter")
                    .args([&net, "/bin/busybox", "nslookup", name, "127.0.0.11"])
                    .output()
                    .await
                    .expect("run busybox");
                (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), start.elapsed())
            }
        };
        let (ok, out, _) = nslookup("web").await;
        assert!(ok && out.contains("10.0.0.2"), "{out}");
        let (ok, out, took) = nslookup("nosuch").await;
        assert!(!ok && out.contains("NXDOMAIN"), "{out}");
        assert!(took < Duration::from_secs(2), "NXDOMAIN fails fast, took {took:?}");
    });
}

/// How a fake upstream behaves.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// A for anything: 198.51.100.7.
    Answer,
    /// SERVFAIL for anything.
    ServFail,
    /// Never answers.
    Silent,
}

const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);

/// A fake nameserver on `ip:53` (UDP and TCP) in "upstream", counting the queries it
/// gets; stops on drop.
struct Upstream {
    queries: Arc<AtomicUsize>,
    tcp: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Upstream {
    fn start(w: &World, ip: Ipv4Addr, mode: Mode) -> Upstream {
        let (queries, stop) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
        let (tx, rx) = std::sync::mpsc::channel();
        let path = w.upstream.path.clone();
        let tcp = Arc::new(AtomicUsize::new(0));
        let (q, t, s) = (queries.clone(), tcp.clone(), stop.clone());
        let udp = std::thread::spawn(move || {
            enter(&path);
            let socket = UdpSocket::bind((ip, 53)).expect("bind the fake upstream");
            let listener = TcpListener::bind((ip, 53)).expect("bind the fake upstream (TCP)");
            socket.set_read_timeout(Some(Duration::from_millis(20))).expect("timeout");
            listener.set_nonblocking(true).expect("nonblocking");
            tx.send(()).expect("started");
            let mut buf = vec![0; 65535];
            while !s.load(Ordering::SeqCst) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    q.fetch_add(1, Ordering::SeqCst);
                    if let Some(reply) = reply_to(&buf[..n], mode) {
                        let _ = socket.send_to(&reply, from);
                    }
                }
                if let Ok((mut stream, _)) = listener.accept() {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
                    let mut len = [0; 2];
                    if stream.read_exact(&mut len).is_ok() {
                        let mut msg = vec![0; usize::from(u16::from_be_bytes(len))];
                        if stream.read_exact(&mut msg).is_ok() {
                            q.fetch_add(1, Ordering::SeqCst);
                            t.fetch_add(1, Ordering::SeqCst);
                            if let Some(reply) = reply_to(&msg, mode) {
                                let len = u16::try_from(reply.len()).expect("short");
                                let _ = stream.write_all(&[&len.to_be_bytes()[..], &reply].concat());
                            }
                        }
                    }
                }
            }
        });
        rx.recv().expect("the fake upstream starts");
        Upstream { queries, tcp, stop, threads: vec![udp] }
    }

    /// Queries received, over UDP and TCP.
    fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    /// Queries received over TCP.
    fn tcp_queries(&self) -> usize {
        self.tcp.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn reply_to(query: &[u8], mode: Mode) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    for q in &query.queries {
        reply.add_query(q.clone());
    }
    match mode {
        Mode::Silent => return None,
        Mode::ServFail => reply.metadata.response_code = ResponseCode::ServFail,
        Mode::Answer => {
            let name = query.queries.first()?.name().clone();
            reply.add_answer(Record::from_rdata(name, 42, RData::A(A(UPSTREAM_ANSWER))));
        }
    }
    reply.to_vec().ok()
}

fn forwarding(upstreams: &[Ipv4Addr]) -> DnsConfig {
    DnsConfig {
        upstreams: upstreams.iter().map(|ip| SocketAddr::from((*ip, 53))).collect(),
        timeout: Duration::from_millis(500),
        max_inflight: 1024,
    }
}

#[test]
fn unknown_names_are_forwarded_from_the_daemons_namespace() {
    let w = World::new();
    let up = Upstream::start(&w, UP1, Mode::Answer);
    w.daemon(|| async {
        let table = DnsTable::default();
        table.set("t1", web_names(true));
        let _dns = serve(&w, &table, forwarding(&[UP1])).await;
        let sbx = &w.sandbox;

        let got = ask("example.org", RecordType::A).send(sbx).await;
        assert_eq!((got.metadata.response_code, a_ips(&got)), (ResponseCode::NoError, vec![UPSTREAM_ANSWER]));
        assert_eq!(got.answers[0].ttl, 42, "the upstream's answer, as it came");
        assert_eq!((up.queries(), up.tcp_queries()), (1, 0));

        let tcp = ask("example.org", RecordType::A).tcp().send(sbx).await;
        assert_eq!(a_ips(&tcp), [UPSTREAM_ANSWER], "TCP is forwarded over TCP");
        assert_eq!((up.queries(), up.tcp_queries()), (2, 1));

        let known = ask("web", RecordType::AAAA).send(sbx).await;
        assert_eq!((known.metadata.response_code, known.answers.len()), (ResponseCode::NoError, 0));
        assert_eq!(up.queries(), 2, "a known name is never forwarded");
    });
}

#[test]
fn internal_sandboxes_forward_nothing() {
    let w = World::new();
    let up = Upstream::start(&w, UP1, Mode::Answer);
    w.daemon(|| async {
        let table = DnsTable::default();
        table.set("t1", web_names(false));
        let _dns = serve(&w, &table, forwarding(&[UP1])).await;
        let got = ask("example.org", RecordType::A).send(&w.sandbox).await;
        assert_eq!((got.metadata.response_code, got.answers.len()), (ResponseCode::NXDomain, 0));
    });
    assert_eq!(up.queries(), 0, "the upstream heard nothing");
}

#[test]
fn a_silent_or_failing_upstream_is_skipped_for_the_next() {
    for first in [Mode::Silent, Mode::ServFail] {
        let w = World::new();
        let bad = Upstream::start(&w, UP2, first);
        let good = Upstream::start(&w, UP1, Mode::Answer);
        w.daemon(|| async {
            let table = DnsTable::default();
            table.set("t1", web_names(true));
            let _dns = serve(&w, &table, forwarding(&[UP2, UP1])).await;
            let got = ask("example.org", RecordType::A).send(&w.sandbox).await;
            assert_eq!(a_ips(&got), [UPSTREAM_ANSWER]);
        });
        assert_eq!((bad.queries(), good.queries()), (1, 1));
    }
}

#[test]
fn no_answer_is_servfail_and_too_many_in_flight_are_refused() {
    let w = World::new();
    let silent = Upstream::start(&w, UP1, Mode::Silent);
    w.daemon(|| async {
        let table = DnsTable::default();
        table.set("t1", web_names(true));
        let cfg = DnsConfig { timeout: Duration::from_secs(2), max_inflight: 1, ..forwarding(&[UP1]) };
        let _dns = serve(&w, &table, cfg).await;
        let first = {
            let sbx = &w.sandbox;
            async move { ask("one.example", RecordType::A).send(sbx).await }
        };
        let second = async {
            let deadline = Instant::now() + Duration::from_secs(2);
            while silent.queries() == 0 {
                assert!(Instant::now() < deadline, "the first query never reached the upstream");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            ask("two.example", RecordType::A).send(&w.sandbox).await
        };
        let (first, second) = tokio::join!(first, second);
        assert_eq!(second.metadata.response_code, ResponseCode::Refused, "over max_inflight");
        assert_eq!(first.metadata.response_code, ResponseCode::ServFail, "no upstream answered");
    });
    assert_eq!(silent.queries(), 1);
}

#[tokio::test]
async fn serve_says_which_namespace_is_wrong() {
    let dns = Dns::new(DnsTable::default(), DnsConfig::default());
    let missing = Path::new("/run/netns/shoal-dns-no-such-namespace");
    let err = dns.serve("t1", missing).await.expect_err("no such namespace");
    assert!(matches!(err, DnsError::OpenNetns { .. }), "{err:?}");
    assert!(err.to_string().contains("shoal-dns-no-such-namespace"), "{err}");

    let not_a_netns = tempfile::NamedTempFile::new().expect("a temporary file");
    let err = dns.serve("t1", not_a_netns.path()).await.expect_err("not a namespace");
    assert!(matches!(err, DnsError::EnterNetns { .. }), "{err:?}");
    assert!(dns.running().is_empty());
}
