//! Generators shared by the fuzz tests of shoal-api (`api/tests/fuzz.rs`) and of the
//! manager's API (`manager/src/http/fuzz.rs`, which includes this file by path):
//! words a hostile author would try, JSON trees made of them, and mutations of valid
//! seeds anywhere in their tree.

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use serde_json::Value as Json;

/// Cases per property in CI, unless `PROPTEST_CASES` says otherwise.
/// Failures are kept beside `source` (pass `file!()`), in `<name>.proptest-regressions`,
/// and replayed first.
pub(crate) fn config(source: &'static str, cases: u32) -> Config {
    let mut c = Config {
        source_file: Some(source),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    c
}

/// Words a hostile author would try: field names and enum values of the API (read from
/// the OpenAPI document), Compose keys, and values on the edge of every parser. Made
/// once and borrowed: `select` copies an owned list into every value it makes.
pub(crate) fn words() -> &'static [String] {
    static WORDS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    WORDS.get_or_init(make_words)
}

fn make_words() -> Vec<String> {
    let mut out: Vec<String> = [
        // Compose keys
        "services",
        "networks",
        "volumes",
        "secrets",
        "configs",
        "version",
        "name",
        "image",
        "command",
        "entrypoint",
        "environment",
        "working_dir",
        "user",
        "hostname",
        "labels",
        "deploy",
        "ports",
        "healthcheck",
        "stop_grace_period",
        "stop_signal",
        "tmpfs",
        "read_only",
        "mode",
        "replicas",
        "endpoint_mode",
        "placement",
        "resources",
        "restart_policy",
        "update_config",
        "rollback_config",
        "constraints",
        "preferences",
        "spread",
        "max_replicas_per_node",
        "limits",
        "reservations",
        "cpus",
        "memory",
        "pids",
        "condition",
        "delay",
        "max_attempts",
        "window",
        "parallelism",
        "failure_action",
        "monitor",
        "max_failure_ratio",
        "order",
        "target",
        "published",
        "protocol",
        "aliases",
        "test",
        "interval",
        "timeout",
        "retries",
        "start_period",
        "start_interval",
        "disable",
        "type",
        "source",
        "size",
        "uid",
        "gid",
        "file",
        "external",
        "driver",
        "driver_opts",
        "attachable",
        "internal",
        "ipam",
        "config",
        "subnet",
        "<<",
        "x-extra",
        "build",
        // values on the edges
        "",
        " ",
        "0",
        "-1",
        "1",
        "65535",
        "65536",
        "99999999999999999999",
        "1e308",
        "-0",
        "NaN",
        "inf",
        "0.0000000001",
        "80",
        "80:80",
        "8080-8090:80-90/udp",
        "1-65535",
        "65535-1",
        ":80",
        "1.2.3.4:80:80",
        "80/sctp",
        "80/",
        "a:b:c:d",
        "1:2:3:4",
        "0:0",
        "10s",
        "1h30m",
        "1.5s",
        "-1s",
        "+5m",
        "0.5ms",
        "9999999999999999999h",
        "1.2.3s",
        ".s",
        "5µs",
        "5μs",
        "1g",
        "1.5G",
        "512m",
        "0.001k",
        "1t",
        "18446744073709551615",
        "-5m",
        "0.5",
        "1024.000000001",
        "2.",
        ".5",
        "busybox",
        "a/b:c@sha256:00",
        "UPPER/Case",
        "web",
        "db",
        "front",
        "back",
        "node.role==manager",
        "node.labels.x!=y",
        "node.id==",
        "==",
        "/",
        "/srv",
        "../etc",
        "/../..",
        "./rel",
        "~/x",
        "a\0b",
        "\u{202e}",
        "é",
        "SIGTERM",
        "SIGRTMIN+99",
        "KILL",
        "on-failure",
        "any",
        "none",
        "start-first",
        "stop-first",
        "pause",
        "continue",
        "rollback",
        "global",
        "replicated",
        "global-job",
        "replicated-job",
        "dnsrr",
        "vip",
        "host",
        "ingress",
        "tcp",
        "udp",
        "bind",
        "volume",
        "CMD",
        "CMD-SHELL",
        "NONE",
        "0755",
        "0o777",
        "07777",
        "99999",
        "true",
        "null",
        "10.0.0.0/8",
        "10.0.0.1/24",
        "::1/128",
        "300.1.1.1/24",
        "encrypted",
        "overlay",
        // interpolation
        "$",
        "$$",
        "${",
        "${}",
        "${A}",
        "${A:-x}",
        "${A-x}",
        "${A:?must}",
        "${A?}",
        "${A:+y}",
        "${A:-${B}}",
        "${A:-${B:-${C:-deep}}}",
        "${A:-${B",
        "${:-x}",
        "${1A}",
        "${A B}",
        "$A$B",
        "${A}${B}",
        "$1",
        "${A:x}",
        "${A:-}}",
        "}${",
        "${${A}}",
        "${A:-$}",
        "${A:?${B:?nested}}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    // Every property name and enum value the API documents.
    let doc: Json =
        serde_json::from_str(include_str!("../../../docs/api/openapi.json")).expect("openapi.json");
    fn walk(v: &Json, out: &mut Vec<String>) {
        match v {
            Json::Object(m) => {
                if let Some(Json::Object(props)) = m.get("properties") {
                    out.extend(props.keys().cloned());
                }
                if let Some(Json::Array(values)) = m.get("enum") {
                    out.extend(values.iter().filter_map(|v| v.as_str().map(str::to_owned)));
                }
                m.values().for_each(|v| walk(v, out));
            }
            Json::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&doc["components"], &mut out);
    out.sort();
    out.dedup();
    out
}

/// A string: one of [`words`], two of them joined, or anything at all.
pub(crate) fn text() -> impl Strategy<Value = String> {
    let words = words();
    prop_oneof![
        4 => proptest::sample::select(words),
        2 => (proptest::sample::select(words), proptest::sample::select(words))
            .prop_map(|(a, b)| format!("{a}{b}")),
        1 => any::<String>(),
        1 => "[a-z0-9_.:/$@{}=+-]{0,40}",
    ]
}

/// Any JSON value, with keys and strings from [`text`].
pub(crate) fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::from),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        any::<f64>().prop_map(Json::from),
        prop_oneof![Just(0u64), Just(1), Just(65535), Just(65536), Just(u32::MAX as u64 + 1)]
            .prop_map(Json::from),
        text().prop_map(Json::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            proptest::collection::btree_map(text(), inner, 0..6)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

/// One change to a tree: at the `at`-th node (in walk order), do `op`.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// Replace the node with a value.
    Replace(Json),
    /// Remove the node from its parent.
    Remove,
    /// Add (or overwrite) a key of an object, or push onto an array.
    Insert(String, Json),
}

pub(crate) fn ops() -> impl Strategy<Value = Vec<(proptest::sample::Index, Op)>> {
    let op = prop_oneof![
        3 => json().prop_map(Op::Replace),
        1 => Just(Op::Remove),
        2 => (text(), json()).prop_map(|(k, v)| Op::Insert(k, v)),
    ];
    proptest::collection::vec((any::<proptest::sample::Index>(), op), 1..6)
}

/// Applies `ops` to `seed`, each at a node picked among all of them.
pub(crate) fn mutate(mut seed: Json, ops: &[(proptest::sample::Index, Op)]) -> Json {
    for (at, op) in ops {
        let mut count = 0;
        count_nodes(&seed, &mut count);
        let target = at.index(count);
        let mut n = 0;
        apply(&mut seed, target, &mut n, op);
    }
    seed
}

fn count_nodes(v: &Json, n: &mut usize) {
    *n += 1;
    match v {
        Json::Object(m) => m.values().for_each(|v| count_nodes(v, n)),
        Json::Array(a) => a.iter().for_each(|v| count_nodes(v, n)),
        _ => {}
    }
}

/// Walks to the `target`-th node; returns true when the parent should remove it.
fn apply(v: &mut Json, target: usize, n: &mut usize, op: &Op) -> bool {
    if *n == target {
        match op {
            Op::Replace(new) => *v = new.clone(),
            Op::Remove => return true,
            Op::Insert(k, new) => match v {
                Json::Object(m) => {
                    m.insert(k.clone(), new.clone());
                }
                Json::Array(a) => a.push(new.clone()),
                other => *other = new.clone(),
            },
        }
        *n = usize::MAX;
        return false;
    }
    *n += 1;
    match v {
        Json::Object(m) => {
            let mut gone = None;
            for (k, child) in m.iter_mut() {
                if apply(child, target, n, op) {
                    gone = Some(k.clone());
                }
                if *n == usize::MAX {
                    break;
                }
            }
            if let Some(k) = gone {
                m.remove(&k);
            }
        }
        Json::Array(a) => {
            let mut gone = None;
            for (i, child) in a.iter_mut().enumerate() {
                if apply(child, target, n, op) {
                    gone = Some(i);
                }
                if *n == usize::MAX {
                    break;
                }
            }
            if let Some(i) = gone {
                a.remove(i);
            }
        }
        _ => {}
    }
    false
}
