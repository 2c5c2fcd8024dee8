//! The overlay across hosts (issue 16): service names and VIPs answer from any host
//! and spread over every replica; DNS answers every name form and forwards the rest
//! to a resolver in a namespace the test made; a published port answers on every
//! host; egress reaches "outside" but not from an internal network; networks are
//! isolated from each other; killed replicas stop getting traffic; a worker whose
//! daemon dies keeps its containers' networking and rebuilds on restart; a rolling
//! update never leaves the name unanswered for more than a second; a leader failover
//! in the middle of network changes hands out no address twice; an encrypted overlay
//! (issue 17) carries services' traffic between hosts with no plaintext on the wire,
//! through the node's periodic full wiring and a restart of its daemon.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsFd as _;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cluster_tests::{Cluster, Host, block_on, faults};
use common::*;
use shoal_api::service::{EndpointMode, PortConfig};
use shoal_api::task_spec::NetworkAttachmentConfig;
use shoal_api::wire::{ReadOptions, TaskFilter};
use shoal_api::{NetworkSpec, ServiceSpec, Task};

/// What the fake upstream resolver answers for `outside.example`.
const OUTSIDE_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 55);

/// An HTTP server on :8080 answering its hostname (the task id's first 12 characters).
fn web(name: &str, replicas: u64, network: &str) -> ServiceSpec {
    let mut s = on_workers(name, replicas);
    s.task_template.container.args = [
        "sh",
        "-c",
        "mkdir -p /tmp/www && hostname > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
    ]
    .map(String::from)
    .to_vec();
    attached(s, network)
}

fn attached(mut s: ServiceSpec, network: &str) -> ServiceSpec {
    s.task_template.networks = vec![NetworkAttachmentConfig { target: network.into(), aliases: vec![] }];
    s
}

fn running_tasks(c: &Cluster, service: &str) -> Vec<Task> {
    let filter = TaskFilter { service: Some(service.into()), ..Default::default() };
    block_on(c.client().tasks(&filter)).map(|t| t.into_iter().filter(is_up).collect()).unwrap_or_default()
}

/// Waits until `service` has `n` running tasks; returns them.
fn wait_running(c: &Cluster, service: &str, n: usize) -> Vec<Task> {
    c.wait(&format!("{n} running {service} tasks"), Duration::from_secs(60), |c| {
        running_tasks(c, service).len() == n
    });
    running_tasks(c, service)
}

/// The host running a task.
fn host_of<'a>(c: &'a Cluster, t: &Task) -> &'a Host {
    let nodes = block_on(c.client().nodes(ReadOptions::default())).expect("nodes");
    let name = nodes
        .iter()
        .find(|n| Some(&n.id) == t.node_id.as_ref())
        .expect("its node")
        .description
        .hostname
        .clone();
    c.host(c.by_name(&name))
}

fn addr_of(t: &Task) -> Ipv4Addr {
    t.networks[0].addresses[0].addr()
}

/// The addresses `nslookup NAME` prints inside a task's container (none if it fails).
fn lookup(c: &Cluster, t: &Task, name: &str) -> Vec<Ipv4Addr> {
    let (code, out) = host_of(c, t).exec(&t.id, &["nslookup", name]);
    if code != 0 {
        return Vec::new();
    }
    let mut ips: Vec<Ipv4Addr> = out
        .split("Name:")
        .skip(1)
        .flat_map(|part| part.lines().filter_map(|l| l.strip_prefix("Address:")).map(str::trim))
        .filter_map(|a| a.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// `count` GETs of `url` from inside a task's container: the answers, one per line.
fn fetch(c: &Cluster, t: &Task, url: &str, count: usize) -> Vec<String> {
    // Busybox's `wget -T` crashes (Debian's busybox-static 1.35): `timeout` bounds it.
    let script =
        format!("for i in $(seq {count}); do timeout 2 wget -q -O- {url} 2>/dev/null || echo FAILED; done");
    let (_, out) = host_of(c, t).exec(&t.id, &["sh", "-c", &script]);
    out.lines().map(str::to_owned).collect()
}

fn hostname(t: &Task) -> String {
    t.id.chars().take(12).collect()
}

/// A resolver for the outside world, in the outside namespace: `outside.example` is
/// `OUTSIDE_ANSWER`, every other name NXDOMAIN. Counts the queries it gets.
struct FakeUpstream {
    queries: Arc<AtomicUsize>,
}

impl FakeUpstream {
    fn start(netns: &str) -> FakeUpstream {
        let queries = Arc::new(AtomicUsize::new(0));
        let path = format!("/run/netns/{netns}");
        let (tx, rx) = std::sync::mpsc::channel();
        let counter = queries.clone();
        // A thread of its own, moved into the namespace: the socket is bound there.
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("the outside namespace");
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("enter it");
            let sock = UdpSocket::bind("0.0.0.0:53").expect("bind :53 outside");
            tx.send(()).expect("started");
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                counter.fetch_add(1, Ordering::SeqCst);
                if let Some(reply) = answer(&buf[..n]) {
                    let _ = sock.send_to(&reply, from);
                }
            }
        });
        rx.recv().expect("the fake upstream started");
        FakeUpstream { queries }
    }
}

/// A DNS reply to `query` (RFC 1035 wire form, one question).
fn answer(query: &[u8]) -> Option<Vec<u8>> {
    let mut i = 12;
    let mut labels = Vec::new();
    while *query.get(i)? != 0 {
        let len = usize::from(query[i]);
        labels.push(String::from_utf8_lossy(query.get(i + 1..i + 1 + len)?).to_lowercase());
        i += 1 + len;
    }
    let qtype = u16::from_be_bytes([*query.get(i + 1)?, *query.get(i + 2)?]);
    let question = query.get(12..i + 5)?;
    let known = labels.join(".") == "outside.example";
    let answers = u16::from(known && qtype == 1);
    let mut r = Vec::new();
    r.extend_from_slice(&query[..2]);
    r.extend_from_slice(&[0x81, if known { 0x80 } else { 0x83 }]);
    r.extend_from_slice(&[0, 1, 0, answers as u8, 0, 0, 0, 0]);
    r.extend_from_slice(question);
    if answers == 1 {
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&OUTSIDE_ANSWER.octets());
    }
    Some(r)
}

/// An HTTP server in a namespace (and the directory it serves), killed when dropped.
struct Httpd(Child, #[allow(dead_code)] tempfile::TempDir);

impl Httpd {
    fn start(netns: &str, port: u16, body: &str) -> Httpd {
        let dir = tempfile::tempdir().expect("a dir");
        std::fs::write(dir.path().join("index.html"), body).expect("index");
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{netns}"))
            .args(["busybox", "httpd", "-f", "-p", &port.to_string(), "-h"])
            .arg(dir.path())
            .spawn()
            .expect("busybox httpd");
        Httpd(child, dir)
    }
}

impl Drop for Httpd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `wget` from a namespace (no container): the body, or `None`.
fn wget_from(netns: &str, url: &str) -> Option<String> {
    let out = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{netns}"))
        .args(["busybox", "timeout", "3", "busybox", "wget", "-q", "-O-", url])
        .output()
        .expect("busybox wget");
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn names_vips_spread_mesh_egress_isolation_and_a_dead_worker() {
    let mut c = Cluster::builder().managers(1).workers(2).heartbeat(Duration::from_secs(1)).outside().build();
    let (outside_ns, outside_addr) = {
        let (ns, addr) = c.outside().expect("an outside namespace");
        (ns.to_owned(), addr.to_owned())
    };
    let upstream = FakeUpstream::start(&outside_ns);
    let _outside_web = Httpd::start(&outside_ns, 8081, "the outside world");
    let client = c.client();
    block_on(async {
        let mut front = NetworkSpec::new("front");
        front.attachable = true;
        client.create_network(&front).await?;
        let mut back = NetworkSpec::new("back");
        back.internal = true;
        client.create_network(&back).await?;
        let mut w = web("web", 3, "front");
        w.task_template.networks[0].aliases = vec!["www".into()];
        w.endpoint_spec.ports = vec![PortConfig::ingress(8080, Some(8080), Default::default())];
        client.create_service(&w).await?;
        let mut probe = attached(replicated("probe", 1), "front");
        probe.task_template.placement.constraints = vec!["node.role==manager".into()];
        client.create_service(&probe).await?;
        client.create_service(&web("db", 1, "back")).await?;
        let mut rr = attached(on_workers("rr", 2), "front");
        rr.endpoint_spec.mode = EndpointMode::Dnsrr;
        client.create_service(&rr).await?;
        let mut on_w2 = web("hostport", 1, "front");
        on_w2.task_template.placement.constraints = vec!["node.hostname==w2".into()];
        on_w2.endpoint_spec.ports = vec![PortConfig {
            publish_mode: shoal_api::service::PublishMode::Host,
            ..PortConfig::ingress(8080, Some(8090), Default::default())
        }];
        client.create_service(&on_w2).await
    })
    .expect("networks and services");
    let webs = wait_running(&c, "web", 3);
    let probe = wait_running(&c, "probe", 1).remove(0);
    let db = wait_running(&c, "db", 1).remove(0);
    let rr = wait_running(&c, "rr", 2);
    let svc = block_on(client.service("web")).expect("web");
    let vip = svc.endpoint.virtual_ips.iter().find(|v| v.network_id == webs[0].networks[0].network_id);
    let vip = vip.expect("a VIP on front").addr.addr();
    assert!(svc.endpoint.virtual_ips.len() == 2, "a VIP on front and one on ingress: {:?}", svc.endpoint);

    // The CLI shows them: VIPs in `service inspect`, addresses in `task inspect`,
    // who is on a network in `network inspect`.
    let m1 = c.host(c.by_name("m1"));
    assert!(m1.ok(&["service", "inspect", "web"]).contains(&vip.to_string()));
    assert!(m1.ok(&["task", "inspect", &webs[0].id]).contains(&addr_of(&webs[0]).to_string()));
    let inspect = m1.ok(&["network", "inspect", "front"]);
    assert!(webs.iter().all(|t| inspect.contains(&t.id)), "{inspect}");

    // DNS: every name form, only on shared networks, the rest forwarded.
    let mut task_ips: Vec<Ipv4Addr> = webs.iter().map(addr_of).collect();
    task_ips.sort();
    let mut rr_ips: Vec<Ipv4Addr> = rr.iter().map(addr_of).collect();
    rr_ips.sort();
    c.wait("the probe's resolver to know web", Duration::from_secs(20), |c| {
        lookup(c, &probe, "web") == [vip]
    });
    assert_eq!(lookup(&c, &probe, "www"), [vip], "the alias");
    assert_eq!(lookup(&c, &probe, "web.front"), [vip], "the name in its network");
    // Task addresses come from the node's copy of the network map, which is pushed
    // after the tasks run: waited for, as the VIP above.
    c.wait(&format!("tasks.web to answer {task_ips:?}"), Duration::from_secs(20), |c| {
        lookup(c, &probe, "tasks.web") == task_ips
    });
    c.wait(&format!("dnsrr rr to answer the task addresses {rr_ips:?}"), Duration::from_secs(20), |c| {
        lookup(c, &probe, "rr") == rr_ips
    });
    assert_eq!(lookup(&c, &probe, &format!("web.{}", webs[0].slot.expect("a slot"))), [addr_of(&webs[0])]);
    assert!(lookup(&c, &probe, "db").is_empty(), "db is on a network the probe is not on");
    let before = upstream.queries.load(Ordering::SeqCst);
    assert_eq!(lookup(&c, &probe, "outside.example"), [OUTSIDE_ANSWER], "forwarded to the outside resolver");
    assert!(upstream.queries.load(Ordering::SeqCst) > before);
    let before = upstream.queries.load(Ordering::SeqCst);
    assert!(lookup(&c, &db, "outside.example").is_empty(), "an internal network forwards nothing");
    assert_eq!(upstream.queries.load(Ordering::SeqCst), before);

    // By name and by VIP, spread over every replica, from a host that runs none.
    let hosts: BTreeSet<String> = webs.iter().map(hostname).collect();
    let answers = fetch(&c, &probe, "http://web:8080/", 30);
    let seen: BTreeMap<&str, usize> = answers.iter().fold(BTreeMap::new(), |mut m, a| {
        *m.entry(a.as_str()).or_default() += 1;
        m
    });
    assert_eq!(
        seen.keys().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
        hosts,
        "answers per replica: {seen:?}"
    );
    let by_vip = fetch(&c, &probe, &format!("http://{vip}:8080/"), 6);
    assert!(by_vip.iter().all(|a| hosts.contains(a)), "{by_vip:?}");

    // The routing mesh: every host answers, m1 (no replica) too.
    for h in c.hosts() {
        let url = format!("http://{}:8080/", h.addr);
        let body = wget_from(&outside_ns, &url);
        assert!(body.as_ref().is_some_and(|b| hosts.contains(b)), "{} answered {body:?}", h.name);
    }

    // Host mode: only the task's own node answers.
    wait_running(&c, "hostport", 1);
    let addr = |name: &str| c.host(c.by_name(name)).addr.clone();
    assert!(wget_from(&outside_ns, &format!("http://{}:8090/", addr("w2"))).is_some(), "w2 runs it");
    assert_eq!(wget_from(&outside_ns, &format!("http://{}:8090/", addr("w1"))), None, "w1 does not");

    // Egress to the outside, but not from an internal network; networks are apart.
    let outside_url = format!("http://{outside_addr}:8081/");
    assert_eq!(fetch(&c, &probe, &outside_url, 1), ["the outside world"]);
    assert_eq!(fetch(&c, &db, &outside_url, 1), ["FAILED"], "db is on an internal network only");
    assert_eq!(
        fetch(&c, &probe, &format!("http://{}:8080/", addr_of(&db)), 1),
        ["FAILED"],
        "front cannot reach back"
    );

    // A standalone container on the attachable network: it reaches the service by
    // name, and tasks reach it by its id; removed, it gives its address back.
    let refused =
        m1.shoal(&["container", "run", "-d", "--network", "back", "--name", "nope", "shoal/busybox", "true"]);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("network back is not attachable"), "{err}");
    let run = ["container", "run", "-d", "--network", "front", "--name", "box1", "shoal/busybox", "sh", "-c"];
    let mut args = run.to_vec();
    args.push("trap 'exit 0' TERM; while true; do sleep 0.2; done");
    m1.ok(&args);
    let (_, out) =
        m1.exec_container("box1", &["sh", "-c", "timeout 2 wget -q -O- http://web:8080/ 2>/dev/null"]);
    assert!(hosts.contains(out.trim()), "box1 got {out:?}");
    let node = block_on(client.node("m1")).expect("m1");
    let box_ip =
        node.attachments.iter().find(|a| a.container_id == "box1").expect("box1's attachment").addr.addr();
    assert_eq!(lookup(&c, &probe, "box1"), [box_ip]);
    m1.ok(&["container", "rm", "-f", "box1"]);
    let node = block_on(client.node("m1")).expect("m1");
    assert!(node.attachments.is_empty(), "{:?}", node.attachments);

    // A killed replica stops getting traffic; its replacement gets it.
    let victim = webs.iter().find(|t| host_of(&c, t).name == "w2").expect("a web task on w2").clone();
    host_of(&c, &victim).ok(&["container", "stop", "-t", "1", &format!("task.{}", victim.id)]);
    // Polled back to back (each poll is an API read and one exec, ~0.1 s), so the lag
    // is measured to about that.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut first_answer = None;
    let mut replacement = None;
    while first_answer.is_none() {
        assert!(Instant::now() < deadline, "no replacement answered within 30 s");
        let answers = fetch(&c, &probe, "http://web:8080/", 6);
        let now = chrono::Utc::now();
        if let Some(r) = running_tasks(&c, "web").into_iter().find(|t| !webs.iter().any(|w| w.id == t.id)) {
            if answers.contains(&hostname(&r)) {
                first_answer = Some(now);
            }
            replacement = Some(r);
        }
    }
    let replacement = replacement.expect("a replacement");
    let lag = first_answer.expect("answered") - replacement.status.timestamp;
    println!("the replacement answered by name {} ms after it was RUNNING", lag.num_milliseconds());
    assert!(lag <= chrono::TimeDelta::seconds(1), "the moved task answered {lag} after RUNNING");
    let now: BTreeSet<String> = running_tasks(&c, "web").iter().map(hostname).collect();
    c.wait("the probe to reach every live replica", Duration::from_secs(10), |c| {
        let answers = fetch(c, &probe, "http://web:8080/", 20);
        answers.iter().all(|a| now.contains(a)) && answers.iter().collect::<BTreeSet<_>>().len() == 3
    });

    // w1's daemon dies: its containers keep their networking; back, it rebuilds.
    let w1 = c.by_name("w1");
    faults::kill(&mut c, w1);
    let answers = fetch(&c, &probe, "http://web:8080/", 20);
    assert!(
        answers.iter().all(|a| now.contains(a)),
        "every request answered with w1's daemon dead: {answers:?}"
    );
    faults::restart(&mut c, w1);
    c.wait_ready(w1);
    c.wait("the probe to reach every replica after w1's restart", Duration::from_secs(20), |c| {
        let answers = fetch(c, &probe, "http://web:8080/", 20);
        answers.iter().all(|a| now.contains(a)) && answers.iter().collect::<BTreeSet<_>>().len() == 3
    });
    let on_w1: Vec<Task> =
        running_tasks(&c, "web").into_iter().filter(|t| host_of(&c, t).name == "w1").collect();
    for t in &on_w1 {
        c.wait("the resolver of a task on w1 to answer again", Duration::from_secs(10), |c| {
            lookup(c, t, "tasks.rr") == rr_ips
        });
    }
    let sandboxes: BTreeSet<String> = std::fs::read_dir(c.host(w1).data_dir().join("net/netns"))
        .expect("w1's namespaces")
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().strip_prefix("t-").map(str::to_owned))
        .collect();
    let live: BTreeSet<String> = c.host(w1).running_task_containers().into_iter().collect();
    assert_eq!(sandboxes, live, "w1 keeps a sandbox per running task and nothing stale");
}

#[test]
fn a_rolling_update_keeps_the_name_answering() {
    let c = Cluster::builder().managers(1).workers(2).heartbeat(Duration::from_secs(1)).build();
    let client = c.client();
    block_on(async {
        client.create_network(&NetworkSpec::new("front")).await?;
        let mut probe = attached(replicated("probe", 1), "front");
        probe.task_template.placement.constraints = vec!["node.role==manager".into()];
        client.create_service(&probe).await?;
        let mut w = web("web", 2, "front");
        w.update_config.parallelism = 1;
        w.update_config.order = shoal_api::service::UpdateOrder::StartFirst;
        client.create_service(&w).await
    })
    .expect("services");
    wait_running(&c, "web", 2);
    let probe = wait_running(&c, "probe", 1).remove(0);
    c.wait("web to answer", Duration::from_secs(20), |c| {
        fetch(c, &probe, "http://web:8080/", 1)[0] != "FAILED"
    });
    let svc = block_on(client.service("web")).expect("web");
    let mut spec = svc.spec.clone();
    spec.task_template.force_update += 1;
    block_on(client.update_service("web", svc.meta.version, &spec)).expect("update");
    let start = Instant::now();
    let mut last_answer = Instant::now();
    let mut worst = Duration::ZERO;
    let mut requests = 0;
    while start.elapsed() < Duration::from_secs(60) {
        let ok = fetch(&c, &probe, "http://web:8080/", 1).first().is_some_and(|a| a != "FAILED");
        requests += 1;
        if ok {
            worst = worst.max(last_answer.elapsed());
            last_answer = Instant::now();
        }
        let done = block_on(client.service("web")).is_ok_and(|s| {
            s.update_status.is_some_and(|u| u.state == shoal_api::service::UpdateState::Completed)
        });
        if done && requests > 10 {
            break;
        }
    }
    worst = worst.max(last_answer.elapsed());
    println!("rolling update: {requests} requests, longest time without an answer {worst:?}");
    assert!(worst <= Duration::from_secs(1), "the name went unanswered for {worst:?}");
}

#[test]
fn a_leader_failover_during_network_changes_hands_out_no_address_twice() {
    let mut c = Cluster::builder().managers(3).heartbeat(Duration::from_secs(1)).build();
    for round in 0..3 {
        let net = format!("n{round}");
        let client = c.client();
        block_on(client.create_network(&NetworkSpec::new(&net))).expect("network");
        for s in 0..3 {
            let mut spec = attached(replicated(&format!("s{round}-{s}"), 4), &net);
            spec.endpoint_spec.ports = vec![PortConfig::ingress(80, None, Default::default())];
            block_on(c.client().create_service(&spec)).expect("service");
        }
        // The leader dies while the allocator works on what was just asked.
        let leader = c.wait_leader(Duration::from_secs(30));
        faults::kill(&mut c, leader);
        c.wait_leader(Duration::from_secs(30));
        faults::restart(&mut c, leader);
    }
    c.wait("every task placed", Duration::from_secs(90), |c| {
        block_on(c.client().tasks(&TaskFilter::default())).is_ok_and(|t| {
            t.iter().filter(|t| t.desired_state == shoal_api::TaskState::Running).count() == 36
                && t.iter().all(|t| !t.networks.is_empty())
        })
    });
    let client = c.client();
    let mut held: BTreeMap<(String, Ipv4Addr), String> = BTreeMap::new();
    let mut claim = |net: &str, ip: Ipv4Addr, who: String| {
        if let Some(other) = held.insert((net.to_owned(), ip), who.clone()) {
            panic!("{ip} on {net} is held by both {other} and {who}");
        }
    };
    for s in block_on(client.services(&Default::default())).expect("services") {
        for v in &s.endpoint.virtual_ips {
            claim(&v.network_id, v.addr.addr(), format!("service {}", s.spec.name));
        }
    }
    for t in block_on(client.tasks(&TaskFilter::default())).expect("tasks") {
        if t.status.state.is_terminal() {
            continue;
        }
        for n in &t.networks {
            for a in &n.addresses {
                claim(&n.network_id, a.addr(), format!("task {}", t.id));
            }
        }
    }
    for n in block_on(client.nodes(ReadOptions::default())).expect("nodes") {
        if let Some(a) = &n.ingress {
            claim(&a.network_id, a.addr.addr(), format!("node {}", n.description.hostname));
        }
    }
    assert!(held.len() > 36 + 9, "{} addresses held", held.len());
}

/// Every frame on a host's underlay (`eth0` of its namespace) while it runs: an
/// AF_PACKET socket on a thread inside that namespace.
struct Capture {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Vec<u8>>>,
}

impl Capture {
    fn start(netns: &str) -> Capture {
        let path = format!("/run/netns/{netns}");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let ns = std::fs::File::open(&path).expect("the host's namespace");
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("enter it");
            let proto = (libc::ETH_P_ALL as u16).to_be();
            // SAFETY: a plain socket(2) call; the result is checked.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
            assert!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
            // SAFETY: `fd` was just opened and nothing else owns it.
            let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
            // SAFETY: a NUL-terminated name.
            let index = unsafe { libc::if_nametoindex(c"eth0".as_ptr()) };
            assert!(index > 0, "the host's eth0");
            // SAFETY: sockaddr_ll is plain data; all zero is a valid start.
            let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = proto;
            addr.sll_ifindex = index as i32;
            // SAFETY: binds `fd` to an address of the size given.
            let r = unsafe {
                libc::bind(
                    raw,
                    (&addr as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(r, 0, "bind to eth0: {}", std::io::Error::last_os_error());
            let timeout = libc::timeval { tv_sec: 0, tv_usec: 100_000 };
            // SAFETY: sets a timeval option of its size.
            unsafe {
                libc::setsockopt(
                    raw,
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&timeout as *const libc::timeval).cast(),
                    std::mem::size_of::<libc::timeval>() as u32,
                )
            };
            tx.send(()).expect("started");
            let mut frames = Vec::new();
            let mut buf = vec![0u8; 65_536];
            loop {
                let stopping = flag.load(Ordering::SeqCst);
                // SAFETY: reads into a buffer we own, of its length.
                let n = unsafe { libc::recv(raw, buf.as_mut_ptr().cast(), buf.len(), 0) };
                if n > 0 {
                    frames.push(buf[..n as usize].to_vec());
                } else if stopping {
                    // Asked to stop and nothing more queued: every frame is read.
                    break;
                }
            }
            frames
        });
        rx.recv().expect("the capture started");
        Capture { stop, thread }
    }

    fn finish(self) -> Vec<Vec<u8>> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the capture thread")
    }
}

/// Frames that are IPv4 UDP to `port`.
fn udp_to(frames: &[Vec<u8>], port: u16) -> usize {
    frames
        .iter()
        .filter(|f| {
            f.len() > 38 && f[12..14] == [0x08, 0x00] && f[23] == 17 && {
                let ihl = usize::from(f[14] & 0x0f) * 4;
                f.get(14 + ihl + 2..14 + ihl + 4) == Some(&port.to_be_bytes()[..])
            }
        })
        .count()
}

fn contains(frames: &[Vec<u8>], marker: &[u8]) -> bool {
    frames.iter().any(|f| f.windows(marker.len()).any(|w| w == marker))
}

#[test]
fn an_encrypted_overlay_carries_no_plaintext_between_hosts() {
    let c = Cluster::builder().managers(1).workers(2).heartbeat(Duration::from_secs(1)).build();
    let client = c.client();
    let marker = format!("SHOAL-MARKER-{:016x}", rand::random::<u64>());
    let server = |name: &str, network: &str| {
        let mut s = web(name, 1, network);
        let script = format!(
            "mkdir -p /tmp/www && echo {marker} > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"
        );
        s.task_template.container.args = ["sh", "-c", &script].map(String::from).to_vec();
        s.task_template.placement.constraints = vec!["node.hostname==w1".into()];
        s
    };
    let probe = |name: &str, network: &str| {
        let mut s = attached(replicated(name, 1), network);
        s.task_template.placement.constraints = vec!["node.hostname==w2".into()];
        s
    };
    block_on(async {
        let mut sealed = NetworkSpec::new("sealed");
        sealed.options.insert("encrypted".into(), String::new());
        client.create_network(&sealed).await?;
        client.create_network(&NetworkSpec::new("plain")).await?;
        client.create_service(&server("sweb", "sealed")).await?;
        client.create_service(&probe("sprobe", "sealed")).await?;
        client.create_service(&server("pweb", "plain")).await?;
        client.create_service(&probe("pprobe", "plain")).await
    })
    .expect("networks and services");
    let sprobe = wait_running(&c, "sprobe", 1).remove(0);
    let pprobe = wait_running(&c, "pprobe", 1).remove(0);
    wait_running(&c, "sweb", 1);
    wait_running(&c, "pweb", 1);
    let w2 = c.host(c.by_name("w2"));
    assert_eq!(host_of(&c, &sprobe).name, "w2");

    // By name, across hosts, on the encrypted network.
    c.wait("the encrypted network to carry web's answer by name", Duration::from_secs(30), |c| {
        fetch(c, &sprobe, "http://sweb:8080/", 1) == [marker.clone()]
    });
    let sealed = Capture::start(w2.netns());
    let answers = fetch(&c, &sprobe, "http://sweb:8080/", 5);
    let frames = sealed.finish();
    assert!(answers.iter().all(|a| *a == marker), "{answers:?}");
    let port = shoal_api::cluster::DATA_PATH_PORT;
    let carried = udp_to(&frames, port + 1);
    println!(
        "encrypted: {} frames on w2's underlay, {carried} sealed, {} plain VXLAN",
        frames.len(),
        udp_to(&frames, port)
    );
    assert!(carried >= 5, "the answers crossed sealed ({carried} sealed packets)");
    assert_eq!(udp_to(&frames, port), 0, "nothing went over plain VXLAN");
    assert!(!contains(&frames, marker.as_bytes()), "the marker crossed the underlay in the clear");

    // The same capture sees the marker on a plain overlay: it would catch a leak.
    c.wait("the plain network to carry web's answer", Duration::from_secs(30), |c| {
        fetch(c, &pprobe, "http://pweb:8080/", 1) == [marker.clone()]
    });
    let plain = Capture::start(w2.netns());
    let answers = fetch(&c, &pprobe, "http://pweb:8080/", 5);
    let frames = plain.finish();
    assert!(answers.iter().all(|a| *a == marker), "{answers:?}");
    assert!(udp_to(&frames, port) >= 5, "the plain overlay is VXLAN");
    assert!(contains(&frames, marker.as_bytes()), "a plain overlay shows the marker");

    // The node's full wiring (every 30 s) adopts the encrypted overlay its forwarder
    // carries instead of making it again: the network's namespace stays the same one.
    let vni = block_on(client.network("sealed")).expect("the network").vni;
    let w1 = c.by_name("w1");
    let ov = c.host(w1).data_dir().join(format!("net/netns/ov-{vni:06x}"));
    let inode = |p: &std::path::Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).expect("ns"));
    let before = inode(&ov);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(35) {
        assert_eq!(
            fetch(&c, &sprobe, "http://sweb:8080/", 1),
            std::slice::from_ref(&marker),
            "through a full wiring"
        );
    }
    assert_eq!(inode(&ov), before, "the full wiring remade the encrypted overlay");

    // A restarted daemon makes it again (its TAP died with the old process).
    let mut c = c;
    faults::kill(&mut c, w1);
    faults::restart(&mut c, w1);
    c.wait_ready(w1);
    c.wait("the encrypted network to answer after w1's restart", Duration::from_secs(30), |c| {
        fetch(c, &sprobe, "http://sweb:8080/", 1) == [marker.clone()]
    });
}
