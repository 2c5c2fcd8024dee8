//! The cluster parts of the Docker Engine API driven by Debian's docker CLI (20.10):
//! `version`, `info`, `node`, `network`, `secret`, `config`, `swarm join-token` and
//! `events`, each checked on the CLI's output and on Shoal's own state.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shoal_api::client::PayloadKind;
use shoal_api::node::Availability;
use support::daemons::{Daemon, block_on};
use support::wait_for;

/// Sends a raw request to the Docker socket (for what the CLI never sends).
fn raw(d: &Daemon, method: &str, path: &str, body: &str) -> (u16, serde_json::Value) {
    block_on(async {
        let http = reqwest::Client::builder().unix_socket(d.docker_socket()).build().unwrap();
        let resp = http
            .request(method.parse().unwrap(), format!("http://docker{path}"))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    })
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

#[test]
fn docker_version_and_info_show_the_engine_and_its_swarm() {
    let d = Daemon::init("m1");
    let me = block_on(d.client().node("m1")).unwrap();

    let version = d.docker_ok(&["version"]);
    assert!(version.contains("Server: Shoal"), "{version}");
    assert!(version.contains("API version:      1.41"), "{version}");
    let server = version.split("Server:").nth(1).unwrap();
    for field in ["Version:", "Go version:", "Git commit:", "Built:", "OS/Arch:"] {
        let line =
            server.lines().find(|l| l.trim_start().starts_with(field)).unwrap_or_else(|| panic!("{version}"));
        assert!(!line.trim_start()[field.len()..].trim().is_empty(), "{field} is blank: {version}");
    }

    let out = d.docker(&["info"]);
    let (info, warnings) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{info}{warnings}");
    assert!(info.contains("Swarm: active"), "{info}");
    assert!(info.contains("Is Manager: true"), "{info}");
    assert!(info.contains(&format!("NodeID: {}", me.id)), "{info}");
    assert!(info.contains("Managers: 1") && info.contains("Nodes: 1"), "{info}");
    let cluster = block_on(d.client().cluster(Default::default())).unwrap();
    assert!(info.contains(&format!("ClusterID: {}", cluster.id)), "{info}");
    assert!(!warnings.contains("WARNING"), "the CLI warned: {warnings}");

    // A second node shows in the counts.
    let _w = Daemon::worker("w1", &d);
    let info = d.docker_ok(&[
        "info",
        "--format",
        "{{.Swarm.Nodes}} {{.Swarm.Managers}} {{.Swarm.ControlAvailable}}",
    ]);
    assert_eq!(info.trim(), "2 1 true");
    assert_eq!(block_on(d.client().nodes(Default::default())).unwrap().len(), 2);

    // A node that is up is removed only with --force; a manager not at all.
    let e = d.docker_fails(&["node", "rm", "w1"]);
    assert!(e.contains("w1") && e.contains("up"), "{e}");
    assert!(block_on(d.client().node("w1")).is_ok());
    let e = d.docker_fails(&["node", "rm", "--force", "m1"]);
    assert!(e.contains("manager"), "{e}");
    assert_eq!(d.docker_ok(&["node", "rm", "--force", "w1"]).trim(), "w1");
    assert!(block_on(d.client().node("w1")).is_err());
    let info = d.docker_ok(&["info", "--format", "{{.Swarm.Nodes}}"]);
    assert_eq!(info.trim(), "1");

    // init and join on a node in a swarm are refused as dockerd refuses them.
    let e = d.docker_fails(&["swarm", "init"]);
    assert!(e.contains("already part of a swarm"), "{e}");
}

#[test]
fn docker_node_ls_inspect_update_and_stale_versions() {
    let d = Daemon::init("m1");
    let c = d.client();
    let me = block_on(c.node("m1")).unwrap();

    let ls = d.docker_ok(&["node", "ls"]);
    let row = ls.lines().find(|l| l.contains("m1")).unwrap_or_else(|| panic!("{ls}"));
    assert!(row.starts_with(&format!("{} *", me.id)), "{ls}");
    for col in ["Ready", "Active", "Leader"] {
        assert!(row.contains(col), "{ls}");
    }
    assert!(d.docker_ok(&["node", "ls", "-q", "-f", "role=worker"]).trim().is_empty());
    assert_eq!(d.docker_ok(&["node", "ls", "-q", "-f", "role=manager"]).trim(), me.id);

    assert_eq!(d.docker_ok(&["node", "inspect", "self", "--format", "{{.ID}}"]).trim(), me.id);
    let prefix = &me.id[..6];
    let shown = d.docker_ok(&[
        "node",
        "inspect",
        prefix,
        "--format",
        "{{.Description.Hostname}} {{.Spec.Role}} {{.Status.State}} {{.ManagerStatus.Leader}} {{.Description.Platform.Architecture}}",
    ]);
    assert_eq!(shown.trim(), format!("m1 manager ready true {}", std::env::consts::ARCH));
    let pretty = d.docker_ok(&["node", "inspect", "--pretty", "m1"]);
    assert!(pretty.contains("Hostname:") && pretty.contains("m1"), "{pretty}");
    let e = d.docker_fails(&["node", "inspect", "nosuchnode"]);
    assert!(e.contains("No such node"), "{e}");

    d.docker_ok(&["node", "update", "--availability", "drain", "--label-add", "zone=a", "m1"]);
    let n = block_on(c.node("m1")).unwrap();
    assert_eq!(n.spec.availability, Availability::Drain);
    assert_eq!(n.spec.labels.get("zone").map(String::as_str), Some("a"));
    let ls = d.docker_ok(&["node", "ls", "-f", "node.label=zone=a"]);
    assert!(ls.contains("Drain"), "{ls}");
    d.docker_ok(&["node", "update", "--availability", "active", "m1"]);
    assert_eq!(block_on(c.node("m1")).unwrap().spec.availability, Availability::Active);

    // An update read at an old version is refused, and nothing changes.
    let stale = n.meta.version;
    let (status, body) = raw(
        &d,
        "POST",
        &format!("/v1.41/nodes/{}/update?version={stale}", me.id),
        r#"{"Labels":{},"Role":"manager","Availability":"pause"}"#,
    );
    assert_eq!(status, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("update out of sequence"), "{body}");
    assert_eq!(block_on(c.node("m1")).unwrap().spec.availability, Availability::Active);
    // A name other than the hostname is refused by its field.
    let current = block_on(c.node("m1")).unwrap().meta.version;
    let (status, body) = raw(
        &d,
        "POST",
        &format!("/nodes/{}/update?version={current}", me.id),
        r#"{"Name":"other","Labels":{},"Role":"manager","Availability":"active"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap().starts_with("Name:"), "{body}");
}

#[test]
fn docker_networks_secrets_and_configs() {
    let d = Daemon::init("m1");
    let c = d.client();

    let id = d.docker_ok(&[
        "network",
        "create",
        "-d",
        "overlay",
        "--attachable",
        "--subnet",
        "10.77.0.0/24",
        "--label",
        "team=a",
        "front",
    ]);
    let n = block_on(c.network("front")).unwrap();
    assert_eq!(id.trim(), n.id);
    assert_eq!(n.subnet.to_string(), "10.77.0.0/24");
    assert!(n.spec.attachable);
    assert_eq!(n.spec.labels.get("team").map(String::as_str), Some("a"));
    let ls = d.docker_ok(&["network", "ls", "-f", "driver=overlay"]);
    let row = ls.lines().find(|l| l.contains("front")).unwrap_or_else(|| panic!("{ls}"));
    assert!(row.contains("overlay") && row.contains("swarm") && row.starts_with(&n.id[..12]), "{ls}");
    let shown = d.docker_ok(&[
        "network",
        "inspect",
        "front",
        "--format",
        "{{.Id}} {{.Scope}} {{(index .IPAM.Config 0).Subnet}}",
    ]);
    assert_eq!(shown.trim(), format!("{} swarm 10.77.0.0/24", n.id));
    d.docker_ok(&["network", "rm", "front"]);
    assert!(block_on(c.network("front")).is_err());
    let e = d.docker_fails(&["network", "rm", "front"]);
    assert!(e.contains("No such network"), "{e}");

    // A driver Shoal does not have is refused by name, and nothing is made.
    let e = d.docker_fails(&["network", "create", "-d", "someplugin/driver", "x"]);
    assert!(e.contains("Driver") && e.contains("someplugin/driver"), "{e}");
    assert!(block_on(c.network("x")).is_err());
    let e = d.docker_fails(&["network", "create", "-d", "overlay", "--ipv6", "x"]);
    assert!(e.contains("EnableIPv6"), "{e}");
    assert!(block_on(c.networks()).unwrap().iter().all(|n| n.spec.name != "x"));

    // Secrets: data from stdin, never shown.
    let id = d.docker_input(&["secret", "create", "--label", "k=v", "pw", "-"], Some("hunter2"));
    assert!(id.status.success(), "{}", String::from_utf8_lossy(&id.stderr));
    let s = block_on(c.payload(PayloadKind::Secret, "pw")).unwrap();
    assert_eq!(String::from_utf8(id.stdout).unwrap().trim(), s.id);
    assert_eq!(s.size, 7);
    let ls = d.docker_ok(&["secret", "ls", "-f", "label=k=v"]);
    assert!(ls.contains("pw") && ls.contains(&s.id), "{ls}");
    let inspect = d.docker_ok(&["secret", "inspect", "pw"]);
    assert!(
        !inspect.contains("hunter2") && !inspect.contains("aHVudGVy") && !inspect.contains("\"Data\""),
        "{inspect}"
    );
    let e = d.docker_input(&["secret", "create", "pw", "-"], Some("again"));
    assert!(!e.status.success());
    d.docker_ok(&["secret", "rm", "pw"]);
    assert!(block_on(c.payload(PayloadKind::Secret, "pw")).is_err());

    // Configs: their data is shown.
    let id = d.docker_input(&["config", "create", "app.conf", "-"], Some("port=80\n"));
    assert!(id.status.success(), "{}", String::from_utf8_lossy(&id.stderr));
    let conf = block_on(c.payload(PayloadKind::Config, "app.conf")).unwrap();
    assert_eq!(String::from_utf8(id.stdout).unwrap().trim(), conf.id);
    assert!(d.docker_ok(&["config", "ls"]).contains("app.conf"));
    let data = d.docker_ok(&["config", "inspect", "app.conf", "--format", "{{printf \"%s\" .Spec.Data}}"]);
    assert_eq!(data, "port=80\n\n");
    // Only labels change.
    let (status, body) = raw(
        &d,
        "POST",
        &format!("/configs/{}/update?version={}", conf.id, conf.meta.version),
        r#"{"Name":"app.conf","Labels":{"x":"y"},"Data":"b3RoZXI="}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["message"], "only updates to Labels are allowed");
    let (status, body) = raw(
        &d,
        "POST",
        &format!("/configs/{}/update?version={}", conf.id, conf.meta.version),
        r#"{"Name":"app.conf","Labels":{"x":"y"},"Data":"cG9ydD04MAo="}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(block_on(c.payload(PayloadKind::Config, "app.conf")).unwrap().labels.get("x").unwrap(), "y");
    d.docker_ok(&["config", "rm", "app.conf"]);
    assert!(block_on(c.payload(PayloadKind::Config, "app.conf")).is_err());
}

#[test]
fn docker_swarm_join_tokens_and_events() {
    let d = Daemon::init("m1");
    let c = d.client();
    let tokens = block_on(c.join_tokens()).unwrap();
    assert_eq!(d.docker_ok(&["swarm", "join-token", "-q", "worker"]).trim(), tokens.worker);
    let shown = d.docker_ok(&["swarm", "join-token", "manager"]);
    assert!(shown.contains(&format!("docker swarm join --token {}", tokens.manager)), "{shown}");
    let rotated = d.docker_ok(&["swarm", "join-token", "--rotate", "-q", "worker"]);
    let now = block_on(c.join_tokens()).unwrap();
    assert_ne!(now.worker, tokens.worker);
    assert_eq!(now.manager, tokens.manager);
    assert_eq!(rotated.trim(), now.worker);
    // `swarm update` maps what Shoal has, and refuses what it cannot honour.
    d.docker_ok(&["swarm", "update", "--task-history-limit", "3"]);
    let cluster = block_on(c.cluster(Default::default())).unwrap();
    assert_eq!(cluster.spec.task_history_limit, 3);
    let e = d.docker_fails(&["swarm", "update", "--external-ca", "protocol=cfssl,url=https://127.0.0.1:1"]);
    assert!(e.contains("CAConfig.ExternalCAs"), "{e}");

    // Events replay between two times, then the stream closes.
    let since = unix_now() - 1.0;
    let id = d.docker_ok(&["network", "create", "-d", "overlay", "ev1"]);
    d.docker_input(&["secret", "create", "ev-secret", "-"], Some("x"));
    d.docker_ok(&["network", "rm", "ev1"]);
    wait_for("the network to go", Duration::from_secs(10), || block_on(c.network("ev1")).is_err());
    let until = unix_now() + 0.5;
    std::thread::sleep(Duration::from_millis(600));
    let (since, until) = (format!("{since:.3}"), format!("{until:.3}"));
    let out = d.docker_ok(&["events", "--since", &since, "--until", &until, "-f", "type=network"]);
    assert!(out.contains(&format!("network create {} (name=ev1)", id.trim())), "{out}");
    assert!(out.contains(&format!("network remove {} (name=ev1)", id.trim())), "{out}");
    assert!(!out.contains("secret"), "{out}");
    let json = d.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "-f",
        "type=secret",
        "--format",
        "{{json .}}",
    ]);
    let ev: serde_json::Value = serde_json::from_str(json.lines().next().unwrap_or("null")).unwrap();
    assert_eq!(ev["Type"], "secret", "{json}");
    assert_eq!(ev["Action"], "create");
    assert_eq!(ev["scope"], "swarm");
    assert_eq!(ev["Actor"]["Attributes"]["name"], "ev-secret");
    assert_eq!(ev["Actor"]["ID"], block_on(c.payload(PayloadKind::Secret, "ev-secret")).unwrap().id);
}

#[test]
fn docker_events_stream_live_one_line_per_event() {
    use std::io::BufRead as _;
    let d = Daemon::init("m1");
    let until = format!("{:.3}", unix_now() + 60.0);
    let mut child = std::process::Command::new(support::docker::docker_cli())
        .args([
            "events",
            "--until",
            &until,
            "-f",
            "type=network",
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.ID}}",
        ])
        .env("DOCKER_HOST", format!("unix://{}", d.docker_socket().display()))
        .env("DOCKER_CONFIG", d.dir.join("docker-config"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    // The stream is open before the network is made: create networks until one
    // shows (the first may come before the CLI subscribed).
    let c = d.client();
    let mut seen = None;
    for i in 0..50 {
        d.docker_ok(&["network", "create", "-d", "overlay", &format!("live{i}")]);
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            seen = Some(line);
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let line = seen.expect("a network create event while the stream is open");
    assert!(line.starts_with("network create "), "{line}");
    let shown = line.rsplit(' ').next().unwrap();
    let n = block_on(c.network(shown)).unwrap_or_else(|e| panic!("{line}: not a network in Shoal: {e}"));
    assert!(n.spec.name.starts_with("live"), "{line}");
}
