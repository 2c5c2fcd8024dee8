//! Hostile input, fuzzed (issue 17, item 7): Compose files and spec bodies built by
//! proptest, from random trees and from valid seeds with random mutations. Nothing may
//! panic; every refusal names the field at fault; every spec that passes validation
//! survives JSON and back unchanged.
//!
//! CI runs a few cases per property (`PROPTEST_CASES` overrides, see `scripts/fuzz`).
//! Failures proptest finds are kept in `tests/fuzz.proptest-regressions` and replayed
//! first on every run; each one found so far also has a named test below.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestRunner};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use shoal_api::compose::{self, ComposeError, Source, Stack};
use shoal_api::decode::from_json;
use shoal_api::{Validate, ValidationErrors};

mod common;

/// Cases per property in CI, unless `PROPTEST_CASES` says otherwise.
fn config(cases: u32) -> Config {
    // Failures are kept in tests/fuzz.proptest-regressions and replayed first.
    let mut c = Config {
        source_file: Some(file!()),
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
fn words() -> &'static [String] {
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
    let doc: Json = serde_json::from_str(include_str!("../../docs/api/openapi.json")).expect("openapi.json");
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
fn text() -> impl Strategy<Value = String> {
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
fn json() -> impl Strategy<Value = Json> {
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
enum Op {
    /// Replace the node with a value.
    Replace(Json),
    /// Remove the node from its parent.
    Remove,
    /// Add (or overwrite) a key of an object, or push onto an array.
    Insert(String, Json),
}

fn ops() -> impl Strategy<Value = Vec<(proptest::sample::Index, Op)>> {
    let op = prop_oneof![
        3 => json().prop_map(Op::Replace),
        1 => Just(Op::Remove),
        2 => (text(), json()).prop_map(|(k, v)| Op::Insert(k, v)),
    ];
    proptest::collection::vec((any::<proptest::sample::Index>(), op), 1..6)
}

/// Applies `ops` to `seed`, each at a node picked among all of them.
fn mutate(mut seed: Json, ops: &[(proptest::sample::Index, Op)]) -> Json {
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

mod fuzz_compose {
    use super::*;

    fn load(text: &str) -> Result<Stack, ComposeError> {
        let env: BTreeMap<&str, &str> = BTreeMap::from([("A", "1"), ("EMPTY", ""), ("PORT", "8080")]);
        compose::load(&Source {
            stack: "fz",
            text,
            dir: Path::new("/srv/fz"),
            env: &|k| env.get(k).map(|v| v.to_string()),
            read_file: &|p| {
                if p.starts_with("/srv/fz") {
                    Ok(b"data".to_vec())
                } else {
                    Err(io::Error::new(io::ErrorKind::NotFound, "No such file or directory"))
                }
            },
        })
    }

    /// The property: an error names where it is, and a stack that loads is valid.
    fn check(text: &str) -> Result<(), TestCaseError> {
        match load(text) {
            Err(ComposeError::Yaml(_)) => {}
            Err(ComposeError::Interpolate { path, problem }) => {
                prop_assert!(!path.is_empty(), "interpolation error without a path: {problem}");
            }
            Err(ComposeError::Invalid(errors)) => {
                prop_assert!(!errors.is_empty(), "an empty list of errors");
                for e in &errors {
                    prop_assert!(!e.field.is_empty(), "an error without a field: {e:?}");
                    prop_assert!(!e.message.is_empty(), "an error without a message: {e:?}");
                }
            }
            Ok(stack) => {
                for s in &stack.services {
                    prop_assert!(s.validate().is_ok(), "{}: {:?}", s.name, s.validate());
                    round_trip(s)?;
                }
                for n in &stack.networks {
                    prop_assert!(n.validate().is_ok(), "{}: {:?}", n.name, n.validate());
                    round_trip(n)?;
                }
                for p in stack.secrets.iter().chain(&stack.configs) {
                    prop_assert!(p.validate().is_ok(), "{}: {:?}", p.name, p.validate());
                }
            }
        }
        Ok(())
    }

    fn seeds() -> Vec<Json> {
        [
            include_str!("compose/web-db-worker.yml"),
            include_str!("compose/interpolation.yml"),
            include_str!("compose/unsupported.yml"),
        ]
        .iter()
        .map(|t| serde_yaml_ng::from_str(t).expect("the seed files are YAML"))
        .collect()
    }

    /// Valid Compose files with random changes anywhere in them.
    #[test]
    fn mutated_files_never_panic() {
        let seeds = seeds();
        let mut runner = TestRunner::new(config(128));
        let strategy = (proptest::sample::select(seeds), ops());
        runner
            .run(&strategy, |(seed, ops)| {
                let doc = mutate(seed, &ops);
                let text = serde_yaml_ng::to_string(&doc).expect("a JSON tree is YAML");
                check(&text)
            })
            .unwrap();
    }

    /// Random YAML trees shaped like a Compose file.
    #[test]
    fn generated_files_never_panic() {
        let service = proptest::collection::btree_map(text(), json(), 0..8);
        let services = proptest::collection::btree_map("[a-z_]{1,8}", service, 0..3);
        let strategy = (services, proptest::collection::btree_map(text(), json(), 0..3));
        let mut runner = TestRunner::new(config(128));
        runner
            .run(&strategy, |(services, top)| {
                let mut doc = serde_json::Map::new();
                doc.insert("services".into(), serde_json::to_value(services).unwrap());
                for (k, v) in top {
                    doc.insert(k, v);
                }
                check(&serde_yaml_ng::to_string(&Json::Object(doc)).unwrap())
            })
            .unwrap();
    }

    /// Any text at all, and text made of YAML's own punctuation.
    #[test]
    fn arbitrary_text_never_panics() {
        let strategy = prop_oneof![any::<String>(), "[-:{}\\[\\],&*!|>'\"%@` \n#?a1$<]{0,200}",];
        let mut runner = TestRunner::new(config(256));
        runner.run(&strategy, |text| check(&text)).unwrap();
    }

    /// Interpolation strings as every value of a service.
    #[test]
    fn interpolation_never_panics() {
        let piece = prop_oneof![proptest::sample::select(vec![
            "$", "$$", "{", "}", "${", ":-", "-", ":?", "?", ":+", "+", "A", "B", "EMPTY", "PORT", "x", " ",
            "1"
        ]),];
        let s = proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat());
        let strategy =
            (proptest::sample::select(vec!["image", "ports", "stop_grace_period", "user", "hostname"]), s);
        let mut runner = TestRunner::new(config(256));
        runner
            .run(&strategy, |(key, value)| {
                let value =
                    if key == "ports" { Json::Array(vec![Json::from(value)]) } else { Json::from(value) };
                let doc = serde_json::json!({ "services": { "web": { "image": "busybox", key: value } } });
                check(&serde_yaml_ng::to_string(&doc).unwrap())
            })
            .unwrap();
    }
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: &T) -> Result<(), TestCaseError> {
    let text = serde_json::to_vec(value).expect("a spec serializes");
    let back: T = from_json(&text)
        .map_err(|e| TestCaseError::fail(format!("{e} in {}", String::from_utf8_lossy(&text))))?;
    prop_assert_eq!(&back, value);
    Ok(())
}

mod fuzz_specs {
    use shoal_api::cluster::ClusterSpec;
    use shoal_api::network::NetworkSpec;
    use shoal_api::node::NodeSpec;
    use shoal_api::secret::PayloadSpec;
    use shoal_api::service::ServiceSpec;

    use super::*;

    /// Decodes `body`; a refusal names its field (or is about the body as a whole),
    /// and a spec that validates survives JSON and back.
    fn check<T>(body: &Json) -> Result<(), TestCaseError>
    where
        T: Serialize + DeserializeOwned + PartialEq + Debug + Validate,
    {
        let text = serde_json::to_vec(body).unwrap();
        match from_json::<T>(&text) {
            Err(e) => {
                prop_assert!(!e.message.is_empty());
                prop_assert!(
                    !e.field.is_empty() || !body.is_object(),
                    "an object body refused without naming a field: {e}"
                );
            }
            Ok(spec) => match spec.validate() {
                Err(ValidationErrors(errors)) => {
                    prop_assert!(!errors.is_empty());
                    for e in &errors {
                        prop_assert!(!e.field.is_empty(), "an error without a field: {e:?}");
                    }
                }
                Ok(()) => {
                    round_trip(&spec)?;
                    // Validation depends on nothing but the spec.
                    let back: T = from_json(&serde_json::to_vec(&spec).unwrap()).unwrap();
                    prop_assert!(back.validate().is_ok());
                }
            },
        }
        Ok(())
    }

    fn run<T>(seeds: Vec<Json>, cases: u32)
    where
        T: Serialize + DeserializeOwned + PartialEq + Debug + Validate,
    {
        let mut runner = TestRunner::new(config(cases));
        let strategy = prop_oneof![
            3 => (proptest::sample::select(seeds), ops()).prop_map(|(seed, ops)| mutate(seed, &ops)),
            1 => json(),
        ];
        runner.run(&strategy, |body| check::<T>(&body)).unwrap();
    }

    fn seed(v: impl Serialize) -> Json {
        serde_json::to_value(v).unwrap()
    }

    #[test]
    fn service_specs() {
        let minimal = ServiceSpec::new("web", "busybox");
        run::<ServiceSpec>(vec![seed(common::full_spec()), seed(&minimal)], 256);
    }

    #[test]
    fn network_specs() {
        let mut full = NetworkSpec::new("front");
        full.subnet = Some("10.1.0.0/24".parse().unwrap());
        full.gateway = Some("10.1.0.1".parse().unwrap());
        full.mtu = Some(1400);
        full.attachable = true;
        full.labels.insert("a".into(), "b".into());
        run::<NetworkSpec>(vec![seed(NetworkSpec::new("n")), seed(full)], 128);
    }

    #[test]
    fn payload_specs() {
        let p = PayloadSpec {
            name: "tls.crt".into(),
            labels: BTreeMap::from([("a".into(), "b".into())]),
            data: b"secret".to_vec(),
        };
        run::<PayloadSpec>(vec![seed(p)], 128);
    }

    #[test]
    fn node_specs() {
        run::<NodeSpec>(vec![seed(NodeSpec::default())], 64);
    }

    #[test]
    fn cluster_specs() {
        run::<ClusterSpec>(vec![seed(ClusterSpec::default())], 128);
    }
}
