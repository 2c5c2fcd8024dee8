//! Secrets and configs stay secret (issue 17, item 4): on a cluster of a manager and
//! two workers, a secret and a config with random values reach the one task that
//! uses them, on w1, with their mode and owner; w2 never receives them; and neither
//! value, raw or base64, is found anywhere outside the task's tmpfs: not in any
//! node's data directory (daemon logs included, which the harness writes there),
//! not in any API answer (every list and inspect, events streamed for the whole
//! run, errors), not in what `shoal secret inspect` and friends print. The managers'
//! Raft store is grepped last, on its own: it holds them encrypted once at-rest
//! encryption is in.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use cluster_tests::{Cluster, block_on};
use common::*;
use shoal_api::PayloadSpec;
use shoal_api::client::PayloadKind;
use shoal_api::task_spec::FileReference;
use shoal_api::wire::{ReadOptions, TaskFilter};

/// `GET path` on a manager's API socket: the raw answer (headers and body).
fn get(sock: &Path, path: &str) -> String {
    curl(sock, &["--max-time", "10", &format!("http://shoal{path}")])
}

fn curl(sock: &Path, args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-sS", "-i", "--unix-socket"])
        .arg(sock)
        .args(args)
        .output()
        .expect("run curl");
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The events stream of the whole run, written to a file.
struct Events {
    child: Child,
    file: PathBuf,
}

impl Events {
    fn start(sock: &Path, file: PathBuf) -> Events {
        let out = std::fs::File::create(&file).expect("the events file");
        let child = Command::new("curl")
            .args(["-sS", "-N", "--unix-socket"])
            .arg(sock)
            .arg("http://shoal/v1/events")
            .stdout(Stdio::from(out))
            .stderr(Stdio::null())
            .spawn()
            .expect("run curl");
        Events { child, file }
    }

    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.file).unwrap_or_default()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Mount points under `dir`, from this process's mountinfo.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(PathBuf::from))
        .filter(|m| m.starts_with(dir) && m != dir)
        .collect()
}

/// Files under `dir` that contain one of `needles`: (path, needle). Links are not
/// followed and other mounts (network namespaces, a task's tmpfs) not entered: they
/// are not the node's disk. `only`: the files to look at (all when `None`).
fn files_containing(dir: &Path, needles: &[&str], only: &dyn Fn(&Path) -> bool) -> Vec<(String, String)> {
    let skip = mounts_under(dir);
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let path = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if skip.contains(&path) {
                continue;
            }
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() && only(&path) {
                let bytes = std::fs::read(&path).unwrap_or_default();
                for n in needles {
                    if contains(&bytes, n) {
                        found.push((path.display().to_string(), (*n).to_owned()));
                    }
                }
            }
        }
    }
    found
}

/// `text` without its terminal colours.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The Raft store of a manager: its log and snapshot.
fn is_raft_store(path: &Path) -> bool {
    path.parent().is_some_and(|p| p.ends_with("manager"))
        && path.file_name().is_some_and(|n| n == "raft.redb" || n == "snapshot.json")
}

#[test]
fn a_secret_reaches_only_its_task_and_is_found_nowhere_else() {
    let c = Cluster::builder().managers(1).workers(2).heartbeat(Duration::from_secs(1)).build();
    let client = c.client();
    let (m1, w1, w2) = (c.by_name("m1"), c.by_name("w1"), c.by_name("w2"));
    let sock = c.host(m1).data_dir().join("api.sock");
    let scratch = tempfile::tempdir().expect("a scratch dir");
    let events = Events::start(&sock, scratch.path().join("events"));

    let secret_value = format!("Sekr1t-{:032x}", rand::random::<u128>());
    let config_value = format!("K0nfig-{:032x}", rand::random::<u128>());
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let (secret_b64, config_b64) = (b64(&secret_value), b64(&config_value));
    let needles = [secret_value.as_str(), secret_b64.as_str(), config_value.as_str(), config_b64.as_str()];
    let payload = |name: &str, data: &str| PayloadSpec {
        name: name.into(),
        labels: Default::default(),
        data: data.as_bytes().to_vec(),
    };
    block_on(async {
        client.create_payload(PayloadKind::Secret, &payload("pw", &secret_value)).await.unwrap();
        client.create_payload(PayloadKind::Config, &payload("conf", &config_value)).await.unwrap();
    });

    let mut svc = replicated("reader", 1);
    svc.task_template.placement.constraints = vec!["node.hostname==w1".into()];
    let container = &mut svc.task_template.container;
    container.secrets = vec![FileReference { uid: 1000, gid: 2000, mode: 0o440, ..FileReference::new("pw") }];
    container.configs = vec![FileReference {
        target: Some("/etc/reader.conf".into()),
        uid: 33,
        gid: 44,
        mode: 0o604,
        ..FileReference::new("conf")
    }];
    block_on(client.create_service(&svc)).unwrap();
    let (_, tasks) = placement_until(&c, "reader", "the reader on w1", |p| p.get("w1") == Some(&1));
    let task = tasks.iter().find(|t| is_up(t)).expect("a running reader").clone();

    // The task reads them, with their mode and owner, from a tmpfs.
    let (code, out) = c.host(w1).exec(
        &task.id,
        &["sh", "-c", "stat -c '%n %a %u %g' /run/secrets/pw /etc/reader.conf; cat /run/secrets/pw; echo; cat /etc/reader.conf; echo; grep -c ' /run/secrets .* - tmpfs ' /proc/self/mountinfo"],
    );
    assert_eq!(code, 0, "{out}");
    let expected = format!(
        "/run/secrets/pw 440 1000 2000\n/etc/reader.conf 604 33 44\n{secret_value}\n{config_value}\n1\n"
    );
    assert_eq!(out, expected);

    // Only w1 received them; the logs name them and never show them.
    let log =
        |i: usize| plain(&std::fs::read_to_string(c.host(i).data_dir().join("log")).unwrap_or_default());
    let received = |i: usize, name: &str| {
        log(i).lines().any(|l| l.contains("received a payload") && l.contains(&format!("name={name}")))
    };
    assert!(received(w1, "pw") && received(w1, "conf"), "w1's log:\n{}", c.host(w1).log_tail(50));
    assert!(!received(w2, "pw") && !received(w2, "conf"), "w2's log:\n{}", c.host(w2).log_tail(50));
    assert!(!received(m1, "pw"), "m1 runs no reader");

    // Every API answer: each list, each inspect, logs; errors that could echo data.
    let mut answers = Vec::new();
    let nodes = block_on(client.nodes(ReadOptions::default())).unwrap();
    let all_tasks = block_on(client.tasks(&TaskFilter::default())).unwrap();
    let networks = block_on(client.networks()).unwrap();
    let mut paths: Vec<String> = [
        "/v1/cluster",
        "/v1/cluster/api-token",
        "/v1/cluster/join-tokens",
        "/v1/secrets",
        "/v1/secrets/pw",
        "/v1/configs",
        "/v1/configs/conf",
        "/v1/services",
        "/v1/services/reader",
        "/v1/services/reader/logs",
        "/v1/nodes",
        "/v1/networks",
        "/v1/stacks",
        "/v1/tasks",
    ]
    .map(String::from)
    .to_vec();
    paths.extend(nodes.iter().map(|n| format!("/v1/nodes/{}", n.id)));
    paths.extend(
        all_tasks.iter().flat_map(|t| [format!("/v1/tasks/{}", t.id), format!("/v1/tasks/{}/logs", t.id)]),
    );
    paths.extend(networks.iter().map(|n| format!("/v1/networks/{}", n.id)));
    for p in &paths {
        let answer = get(&sock, p);
        assert!(answer.starts_with("HTTP/1.1 200"), "GET {p}: {answer}");
        answers.push((format!("GET {p}"), answer));
    }
    let post = |path: &str, body: &str| {
        curl(
            &sock,
            &[
                "-X",
                "POST",
                "-H",
                "content-type: application/json",
                "--data-binary",
                body,
                &format!("http://shoal{path}"),
            ],
        )
    };
    // Not base64 (the '!' is the one bad character), a taken name, an unknown field.
    for (what, body) in [
        ("bad base64", format!(r#"{{"name":"pw2","data":"{secret_value}!"}}"#)),
        ("taken name", format!(r#"{{"name":"pw","data":"{secret_b64}"}}"#)),
        ("unknown field", format!(r#"{{"name":"pw3","data":"{secret_b64}","{secret_value}":1}}"#)),
    ] {
        let answer = post("/v1/secrets", &body);
        assert!(answer.starts_with("HTTP/1.1 4"), "{what}: {answer}");
        answers.push((format!("POST /v1/secrets ({what})"), answer));
    }
    // A secret in use cannot go; the error names the service.
    let rm = c.host(m1).shoal(&["secret", "rm", "pw"]);
    let rm_err = String::from_utf8_lossy(&rm.stderr).into_owned();
    assert!(!rm.status.success() && rm_err.contains("used by service reader"), "{rm_err}");
    answers.push(("shoal secret rm pw".into(), rm_err));
    // What the CLI prints.
    for args in [
        &["secret", "inspect", "pw"][..],
        &["secret", "ls"],
        &["config", "inspect", "conf"],
        &["config", "ls"],
        &["service", "inspect", "reader"],
        &["service", "ps", "reader"],
        &["node", "ls"],
    ] {
        let out = c.host(m1).shoal(args);
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "shoal {args:?}: {text}");
        answers.push((format!("shoal {}", args.join(" ")), text));
    }
    assert!(
        answers.iter().any(|(w, a)| w == "shoal secret inspect pw" && a.contains("\"pw\"")),
        "{answers:?}"
    );

    // The service goes: w1 forgets them and its tmpfs goes.
    block_on(client.remove_service("reader")).unwrap();
    c.wait("w1 to forget the payloads", Duration::from_secs(30), |c| {
        let forgot = log(w1).lines().filter(|l| l.contains("forgot a payload")).count() >= 2;
        let tmpfs = mounts_under(c.host(w1).data_dir()).iter().any(|m| m.ends_with("payloads"));
        forgot && !tmpfs
    });
    answers.push(("GET /v1/events (the whole run)".into(), events.stop()));
    assert!(
        answers.last().is_some_and(|(_, a)| a.contains("\"pw\"")),
        "the events stream saw the secret made"
    );

    for (what, answer) in &answers {
        for n in &needles {
            assert!(!answer.contains(n), "{what} shows {n}:\n{answer}");
        }
    }
    // Every node's data dir (daemon logs included) but the Raft store.
    for h in c.hosts() {
        let found = files_containing(h.data_dir(), &needles, &|p| !is_raft_store(p));
        assert_eq!(found, [], "{} has them on disk", h.name);
    }
    // The Raft store holds them, encrypted at rest: never in the clear.
    for h in c.hosts() {
        let found = files_containing(h.data_dir(), &needles, &is_raft_store);
        assert_eq!(found, [], "{}'s Raft store has them in the clear", h.name);
    }
}
