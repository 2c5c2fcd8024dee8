//! The Docker Engine API on TCP (`--docker-addr`): HTTPS with the manager's
//! certificate, under the cluster API's rules. Debian's docker CLI verifies the
//! server against the cluster's CA (`DOCKER_TLS_VERIFY`, `ca.pem`) and sends the
//! API token through its config's `HttpHeaders`: the admin token may do everything,
//! the read-only one may list but not write nor see the join tokens, and no token
//! gets nothing.

mod support;

use support::daemons::{Daemon, block_on, free_addr};
use support::docker::docker_with;

/// `docker ARGS` over TCP to `addr`, sending `token` if any.
fn docker_tcp(d: &Daemon, addr: &str, token: Option<&str>, args: &[&str]) -> std::process::Output {
    let name = token.map_or("none".to_owned(), |t| t.chars().take(8).collect());
    let config = d.dir.join(format!("docker-tcp-{name}"));
    std::fs::create_dir_all(&config).unwrap();
    std::fs::copy(d.ca_file(), config.join("ca.pem")).unwrap();
    if let Some(token) = token {
        let headers = serde_json::json!({ "HttpHeaders": { "Authorization": format!("Bearer {token}") } });
        std::fs::write(config.join("config.json"), headers.to_string()).unwrap();
    }
    let host = format!("tcp://{addr}");
    let dir = config.to_str().unwrap();
    let env = [
        ("DOCKER_HOST", host.as_str()),
        ("DOCKER_CONFIG", dir),
        ("DOCKER_CERT_PATH", dir),
        ("DOCKER_TLS_VERIFY", "1"),
    ];
    docker_with(&env, args, None)
}

fn text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn the_tcp_listener_is_https_and_needs_a_token_whose_scope_it_keeps() {
    let addr = free_addr();
    let d = Daemon::init_with("m1", &["--docker-addr", &addr]);
    let c = d.client();
    let (admin, read_only) = block_on(async {
        (c.api_token().await.unwrap().token, c.read_only_api_token().await.unwrap().token)
    });

    // No token: refused, in Docker's error shape (the CLI prints the message).
    let out = docker_tcp(&d, &addr, None, &["node", "ls"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("API token"), "{}", text(&out));

    // The admin token: reads and writes, over a verified TLS connection.
    let out =
        docker_tcp(&d, &addr, Some(&admin), &["node", "ls", "--format", "{{.Hostname}} {{.ManagerStatus}}"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "m1 Leader");
    let out = docker_tcp(&d, &addr, Some(&admin), &["network", "create", "-d", "overlay", "tcpnet"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(block_on(c.network("tcpnet")).is_ok(), "the network is in Shoal's state");

    // The read-only token lists, but cannot write nor read the join tokens.
    let out = docker_tcp(&d, &addr, Some(&read_only), &["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("tcpnet"),
        "{}",
        text(&out)
    );
    let out = docker_tcp(&d, &addr, Some(&read_only), &["network", "rm", "tcpnet"]);
    assert!(!out.status.success() && text(&out).contains("may only read"), "{}", text(&out));
    assert!(block_on(c.network("tcpnet")).is_ok(), "still there");
    let out = docker_tcp(&d, &addr, Some(&read_only), &["swarm", "join-token", "-q", "worker"]);
    assert!(!out.status.success() && text(&out).contains("may only read"), "{}", text(&out));

    // Plain HTTP to the TLS listener gets nowhere.
    let host = format!("tcp://{addr}");
    let out = docker_with(&[("DOCKER_HOST", host.as_str())], &["node", "ls"], None);
    assert!(!out.status.success(), "{}", text(&out));
}
