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
use proptest::test_runner::TestRunner;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value as Json;
use shoal_api::compose::{self, ComposeError, Source, Stack};
use shoal_api::decode::from_json;
use shoal_api::{Validate, ValidationErrors};

mod common;
mod fuzz_support;

use fuzz_support::{json, mutate, ops, text};

/// Cases per property in CI; failures are kept in tests/fuzz.proptest-regressions.
fn config(cases: u32) -> proptest::test_runner::Config {
    fuzz_support::config(file!(), cases)
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

    /// Defaults nested deep, in any value (found: a thousand levels overflowed the stack).
    #[test]
    fn deep_interpolation_never_overflows() {
        let strategy = (
            proptest::sample::select(vec![1usize, 10, 31, 32, 33, 100, 1000, 5000]),
            proptest::sample::select(vec![
                "${A:-",
                "${MISSING:-",
                "${MISSING-",
                "${EMPTY:-",
                "${MISSING:?",
                "${A:+",
            ]),
            proptest::sample::select(vec!["image", "hostname", "stop_grace_period"]),
        );
        let mut runner = TestRunner::new(config(16));
        runner
            .run(&strategy, |(depth, open, key)| {
                let value = format!("{}x{}", open.repeat(depth), "}".repeat(depth));
                let doc = serde_json::json!({ "services": { "web": { "image": "busybox", key: value } } });
                check(&serde_yaml_ng::to_string(&doc).unwrap())
            })
            .unwrap();
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
