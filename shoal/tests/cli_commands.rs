//! Every cluster command of the CLI against running daemons, checking what it prints:
//! service, node, network, secret, config, stack, cluster and events.

mod support;

use support::daemons::Daemon;

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

#[test]
fn service_commands() {
    let d = Daemon::init("m1");
    // Detached: no task can run here (no image), so waiting would never end.
    let id = d.ok(&[
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--replicas",
        "3",
        "-p",
        "8080:80",
        "--env",
        "A=1",
        "--limit-memory",
        "64m",
        "--limit-cpu",
        "0.5",
        "--constraint",
        "node.role==manager",
        "--update-parallelism",
        "2",
        "--update-delay",
        "10s",
        "--update-failure-action",
        "rollback",
        "--update-order",
        "start-first",
        "--restart-condition",
        "on-failure",
        "--health-cmd",
        "true",
        "--mount",
        "type=tmpfs,target=/cache,tmpfs-size=16m",
        "shoal/busybox",
        "httpd",
        "-f",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 25, "{id}");
    let ls = d.ok(&["service", "ls"]);
    let ls = lines(&ls);
    assert_eq!(
        ls[0].split_whitespace().collect::<Vec<_>>(),
        ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"]
    );
    assert!(ls[1].contains("web") && ls[1].contains("0/3") && ls[1].contains("*:8080->80/tcp"), "{ls:?}");
    assert_eq!(d.ok(&["service", "ls", "-q"]).trim(), id);

    let spec: serde_json::Value = serde_json::from_str(&d.ok(&["service", "inspect", "web"])).unwrap();
    let s = &spec[0]["spec"];
    assert_eq!(s["task_template"]["resources"]["limits"]["memory_bytes"], 64 << 20);
    assert_eq!(s["update_config"]["order"], "start-first");
    assert_eq!(s["update_config"]["failure_action"], "rollback");
    assert_eq!(s["task_template"]["restart_policy"]["condition"], "on-failure");
    assert_eq!(
        s["task_template"]["container"]["healthcheck"]["test"],
        serde_json::json!(["CMD-SHELL", "true"])
    );

    d.ok(&[
        "service",
        "update",
        "web",
        "-d",
        "--image",
        "shoal/busybox:2",
        "--env-add",
        "B=2",
        "--env-rm",
        "A",
        "--publish-rm",
        "80",
        // The image is not there, so the new tasks fail: without this the rollout
        // would roll itself back (the service's failure action) while the scale and
        // the rollback below run.
        "--update-failure-action",
        "continue",
    ]);
    let spec: serde_json::Value = serde_json::from_str(&d.ok(&["service", "inspect", "web"])).unwrap();
    assert_eq!(spec[0]["spec"]["task_template"]["container"]["env"], serde_json::json!(["B=2"]));
    assert_eq!(spec[0]["spec"]["endpoint_spec"]["ports"], serde_json::json!([]));
    assert_eq!(d.ok(&["service", "scale", "-d", "web=5"]).trim(), "web scaled to 5");
    let ls = d.ok(&["service", "ls"]);
    assert!(ls.contains("0/5"), "{ls}");
    assert!(d.ok(&["service", "rollback", "-d", "web"]).contains("rolled back"));
    assert!(d.ok(&["service", "ls"]).contains("0/3"), "the spec before the scale");

    let ps = d.ok(&["service", "ps", "web"]);
    assert!(ps.starts_with("ID") && ps.contains("DESIRED STATE"), "{ps}");
    let json: serde_json::Value =
        serde_json::from_str(&d.ok(&["service", "ls", "--format", "json"])).unwrap();
    assert_eq!(json[0]["spec"]["name"], "web");

    let err = d.fails(&["service", "create", "--name", "web", "shoal/busybox"]);
    assert!(err.contains("exists already"), "{err}");
    let err = d.fails(&["service", "create", "--name", "tiny", "--limit-memory", "1k", "shoal/busybox"]);
    assert!(err.contains("task_template.resources.limits.memory_bytes"), "{err}");
    let err = d.fails(&["service", "scale", "nothere=2"]);
    assert!(err.contains("no service \"nothere\""), "{err}");

    assert_eq!(d.ok(&["service", "rm", "web"]).trim(), "web");
    assert_eq!(lines(&d.ok(&["service", "ls"])).len(), 1);
    let err = d.fails(&["service", "rm", "web"]);
    assert!(err.contains("no service"), "{err}");

    // Where nothing listens, the error says which address and what to check.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["--host", "tcp://127.0.0.1:1", "--tlscacert", d.ca_file().to_str().unwrap(), "service", "ls"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the Shoal API at tcp://127.0.0.1:1") && err.contains("--api-addr"),
        "{err}"
    );
}

#[test]
fn network_secret_config_stack_cluster_and_events_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let d = Daemon::init("m1");

    let net = d.ok(&["network", "create", "front", "--subnet", "10.9.0.0/24", "--label", "a=b"]);
    assert_eq!(net.trim().len(), 25);
    let ls = d.ok(&["network", "ls"]);
    assert!(ls.contains("front") && ls.contains("10.9.0.0/24") && ls.contains("4096"), "{ls}");
    let inspect: serde_json::Value = serde_json::from_str(&d.ok(&["network", "inspect", "front"])).unwrap();
    assert_eq!(inspect[0]["gateway"], "10.9.0.1");
    assert_eq!(d.ok(&["network", "rm", "front"]).trim(), "front");

    let file = tmp.path().join("pw.txt");
    std::fs::write(&file, "hunter2").unwrap();
    d.ok(&["secret", "create", "pw", file.to_str().unwrap()]);
    d.ok(&["config", "create", "conf", file.to_str().unwrap()]);
    let ls = d.ok(&["secret", "ls"]);
    assert!(ls.contains("pw") && ls.contains(" 7 "), "{ls}");
    let inspect = d.ok(&["secret", "inspect", "pw"]);
    assert!(!inspect.contains("hunter2") && inspect.contains("\"size\": 7"), "{inspect}");
    assert!(d.ok(&["config", "ls"]).contains("conf"));
    d.ok(&["config", "rm", "conf"]);
    d.ok(&["secret", "rm", "pw"]);
    assert_eq!(lines(&d.ok(&["secret", "ls"])).len(), 1);

    let compose = tmp.path().join("stack.yml");
    std::fs::write(&compose, "services:\n  web: {image: shoal/busybox, deploy: {replicas: 2}}\n  db: {image: 'shoal/busybox:${TAG:-1}'}\nsecrets:\n  key: {file: ./pw.txt}\n").unwrap();
    let out = d.ok(&["stack", "deploy", "-c", compose.to_str().unwrap(), "shop"]);
    assert!(out.contains("created service shop_web") && out.contains("created secret shop_key"), "{out}");
    assert!(d.ok(&["stack", "deploy", "-c", compose.to_str().unwrap(), "shop"]).contains("up to date"));
    let ls = d.ok(&["stack", "ls"]);
    assert!(lines(&ls)[1].split_whitespace().collect::<Vec<_>>() == ["shop", "2", "1", "1", "0"], "{ls}");
    let services = d.ok(&["stack", "services", "shop"]);
    assert!(services.contains("shop_db") && services.contains("shop_web"), "{services}");
    assert!(d.ok(&["stack", "ps", "shop"]).starts_with("ID"));
    std::fs::write(&compose, "services:\n  web: {image: shoal/busybox, deploy: {replicas: many}}\n").unwrap();
    let err = d.fails(&["stack", "deploy", "-c", compose.to_str().unwrap(), "shop"]);
    assert!(err.contains("services.web.deploy.replicas"), "{err}");
    let out = d.ok(&["stack", "rm", "shop"]);
    assert!(out.contains("removed service shop_web") && out.contains("removed secret shop_key"), "{out}");

    let info = d.ok(&["cluster", "info"]);
    assert!(info.contains("Managers:") && info.contains("leader") && info.contains(&d.addr), "{info}");
    assert!(
        d.ok(&["cluster", "update", "--dispatcher-heartbeat", "2s", "--task-history-limit", "3"])
            .contains("updated")
    );
    let info: serde_json::Value =
        serde_json::from_str(&d.ok(&["cluster", "info", "--format", "json"])).unwrap();
    assert_eq!(
        (
            info["spec"]["dispatcher"]["heartbeat_period"].as_str(),
            info["spec"]["task_history_limit"].as_i64()
        ),
        (Some("2s"), Some(3))
    );
    let err = d.fails(&["cluster", "update", "--dispatcher-heartbeat", "1ms"]);
    assert!(err.contains("dispatcher.heartbeat_period"), "{err}");
    let join = d.ok(&["cluster", "join-token", "worker"]);
    assert!(join.contains(&format!("shoal daemon --join {} --token SHTKN-1-", d.addr)), "{join}");
    let old = d.ok(&["cluster", "join-token", "manager", "-q"]);
    let new = d.ok(&["cluster", "join-token", "manager", "--rotate", "-q"]);
    assert!(old.starts_with("SHTKN-1-") && old != new, "{old} {new}");
    let token = d.ok(&["cluster", "api-token"]);
    assert!(token.starts_with("SHAPI-1-"));
    let rotated = d.ok(&["cluster", "api-token", "--rotate"]);
    assert_ne!(token, rotated);
    let tcp = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["--host", &format!("tcp://{}", d.api_addr), "--token", rotated.trim(), "cluster", "info"])
        .args(["--tlscacert", d.ca_file().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(tcp.status.success(), "{}", String::from_utf8_lossy(&tcp.stderr));

    let events = d.ok(&["events", "--since", "0", "--filter-type", "service", "--limit", "3"]);
    let events = lines(&events);
    assert_eq!(events.len(), 3, "{events:?}");
    assert!(events[0].contains("service create") && events[0].contains("name=shop_"), "{events:?}");
    let json = d.ok(&["events", "--since", "0", "--limit", "1", "--format", "json"]);
    let first: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(first["object"]["kind"], "cluster");
    assert_eq!(first["object"]["object"]["api_token"], "", "tokens are not in events");
}

#[test]
fn node_commands() {
    let m1 = Daemon::init("m1");
    let _m2 = Daemon::join("m2", &m1);
    let ls = m1.ok(&["node", "ls"]);
    let ls = lines(&ls);
    assert_eq!(ls.len(), 3, "{ls:?}");
    assert!(ls[1].contains("m1") && ls[1].contains("Ready") && ls[1].contains("Leader"), "{ls:?}");
    assert!(ls[2].contains("m2") && ls[2].contains("Reachable"), "{ls:?}");

    m1.ok(&["node", "update", "m2", "--label-add", "zone=a", "--availability", "drain"]);
    let node: serde_json::Value = serde_json::from_str(&m1.ok(&["node", "inspect", "m2"])).unwrap();
    assert_eq!(node[0]["spec"]["labels"]["zone"], "a");
    assert_eq!(node[0]["spec"]["availability"], "drain");
    assert!(m1.ok(&["node", "ls"]).contains("Drain"));
    assert!(m1.ok(&["node", "ps", "m2"]).starts_with("ID"));

    let err = m1.fails(&["node", "rm", "m2"]);
    assert!(err.contains("demote it first"), "{err}");
    assert!(m1.ok(&["node", "demote", "m2"]).contains("demoted"));
    let info = m1.ok(&["cluster", "info"]);
    assert!(info.contains("learner"), "{info}");
    let err = m1.fails(&["node", "demote", "m1"]);
    assert!(err.contains("no majority"), "{err}");
    assert!(m1.ok(&["node", "promote", "m2"]).contains("promoted"));
    assert!(!m1.ok(&["cluster", "info"]).contains("learner"));
    m1.ok(&["node", "demote", "m2"]);
    assert_eq!(m1.ok(&["node", "rm", "m2"]).trim(), "m2");
    let ls = m1.ok(&["node", "ls"]);
    assert_eq!(lines(&ls).len(), 2, "{ls}");
    let err = m1.fails(&["node", "inspect", "m2"]);
    assert!(err.contains("no node \"m2\""), "{err}");
}
