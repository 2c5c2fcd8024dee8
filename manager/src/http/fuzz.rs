//! The API's JSON bodies, fuzzed (issue 17, item 7): for every endpoint that takes a
//! body, valid bodies with random changes anywhere in them, and arbitrary JSON or
//! bytes, sent through the real router of a one-manager cluster (in process, no
//! socket). No reply may be a 5xx; a 400 or 422 about an object body names the field.
//!
//! CI runs a few cases (`PROPTEST_CASES` overrides, see `scripts/fuzz`); failures are
//! kept in `src/http/fuzz.proptest-regressions` and replayed first.

use std::sync::Arc;

use axum::body::Body as HttpBody;
use axum::http::{Method, Request, StatusCode};
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{Value as Json, json};
use shoal_api::service::ServiceSpec;
use shoal_api::wire::ErrorBody;
use shoal_api::{NetworkSpec, Validate as _};
use tower::ServiceExt as _;

use super::{Api, router};
use crate::dispatcher::Dispatcher;
use crate::manager::{Manager, ManagerConfig};
use crate::store::{Kind, Object};

use crate::fuzz_support;

use fuzz_support::{json as any_json, mutate, ops};

/// A one-manager cluster with a service `web` and a network `front`.
struct Fixture {
    _dir: tempfile::TempDir,
    manager: Arc<Manager>,
    app: axum::Router,
    /// Endpoint (method, path) and a valid body for it.
    seeds: Vec<(Method, String, Json)>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ManagerConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap());
    cfg.heartbeat_ms = 50;
    cfg.election_ms = (150, 300);
    let manager = Manager::start(&cfg, "127.0.0.1:1".into()).await.unwrap();
    manager.init().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    // The cluster object is written once it leads.
    while !(manager.leads_with_full_state() && manager.cluster().is_some()) {
        assert!(std::time::Instant::now() < deadline, "the manager never led");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let description = crate::testing::node("m1", &[]).description;
    manager.register_node("m1", description, "127.0.0.1".parse().unwrap()).await.unwrap();
    let api = Api::new(manager.clone(), Dispatcher::new(manager.clone()), None);
    let app = router(api, false);
    let mut f = Fixture { _dir: dir, manager, app, seeds: Vec::new() };
    let web = ServiceSpec::new("web", "busybox");
    let (status, body) = f.call(Method::POST, "/v1/services", serde_json::to_vec(&web).unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let front = NetworkSpec { attachable: true, ..NetworkSpec::new("front") };
    let (status, body) = f.call(Method::POST, "/v1/networks", serde_json::to_vec(&front).unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (service_id, service_version, node_id, node_version) = f.manager.read(|s| {
        let svc = s.list(Kind::Service).find_map(|o| match o {
            Object::Service(x) => Some((x.id.clone(), x.meta.version)),
            _ => None,
        });
        let node = s.list(Kind::Node).find_map(|o| match o {
            Object::Node(x) => Some((x.id.clone(), x.meta.version)),
            _ => None,
        });
        let (sid, sv) = svc.expect("the service");
        let (nid, nv) = node.expect("this manager's node");
        (sid, sv, nid, nv)
    });
    let cluster = f.manager.cluster().expect("the cluster");
    let (cluster_spec, cluster_version) = (cluster.spec, cluster.meta.version);
    let node_spec = f.manager.read(|s| match s.get(Kind::Node, &node_id) {
        Some(Object::Node(n)) => n.spec.clone(),
        _ => unreachable!("read above"),
    });
    let mut full = ServiceSpec::new("api", "busybox:1");
    full.task_template.container.env = vec!["A=1".into()];
    full.task_template.networks = vec![shoal_api::task_spec::NetworkAttachmentConfig {
        target: "front".into(),
        aliases: vec!["x".into()],
    }];
    assert!(full.validate().is_ok());
    f.seeds = vec![
        (Method::POST, "/v1/services".into(), serde_json::to_value(&full).unwrap()),
        (
            Method::PUT,
            format!("/v1/services/{service_id}"),
            json!({ "version": service_version, "spec": serde_json::to_value(&web).unwrap() }),
        ),
        (Method::POST, format!("/v1/services/{service_id}/scale"), json!({ "replicas": 2 })),
        (
            Method::POST,
            "/v1/networks".into(),
            json!({ "name": "back", "subnet": "10.9.0.0/24", "attachable": true }),
        ),
        (
            Method::POST,
            "/v1/secrets".into(),
            json!({ "name": "pw", "data": "c2VjcmV0", "labels": { "a": "b" } }),
        ),
        (Method::POST, "/v1/configs".into(), json!({ "name": "conf", "data": "Y29uZg==" })),
        (
            Method::PUT,
            format!("/v1/nodes/{node_id}"),
            json!({ "version": node_version, "spec": serde_json::to_value(&node_spec).unwrap() }),
        ),
        (
            Method::POST,
            format!("/v1/nodes/{node_id}/attachments"),
            json!({ "network": "front", "container_id": "c1" }),
        ),
        (
            Method::PUT,
            "/v1/stacks/shop".into(),
            json!({
                "compose": "services:\n  web:\n    image: busybox\n    ports: [\"8080:80\"]\n    secrets: [pw]\nsecrets:\n  pw:\n    file: ./pw.txt\n",
                "dir": "/srv",
                "env": { "TAG": "1" },
                "files": { "/srv/pw.txt": "c2VjcmV0" },
            }),
        ),
        (
            Method::PUT,
            "/v1/cluster".into(),
            json!({ "version": cluster_version, "spec": serde_json::to_value(&cluster_spec).unwrap() }),
        ),
    ];
    f
}

impl Fixture {
    async fn call(&self, method: Method, path: &str, body: Vec<u8>) -> (StatusCode, String) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(HttpBody::from(body))
            .unwrap();
        let reply = self.app.clone().oneshot(req).await.unwrap();
        let status = reply.status();
        let bytes = axum::body::to_bytes(reply.into_body(), usize::MAX).await.unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// The body a case sends.
#[derive(Debug, Clone)]
enum Sent {
    Json(Json),
    Bytes(Vec<u8>),
}

fn check(status: StatusCode, reply: &str, sent: &Sent) -> Result<(), TestCaseError> {
    prop_assert!(!status.is_server_error(), "{status}: {reply}");
    if status.is_client_error() {
        let body: ErrorBody = serde_json::from_str(reply)
            .map_err(|e| TestCaseError::fail(format!("{status} without an error body ({e}): {reply}")))?;
        // `bad_request` and `invalid` are about the body; `refused`, `conflict` and
        // `not_found` about the state it meets (a network that is not attachable).
        let about_body = matches!(body.error.code.as_str(), "bad_request" | "invalid");
        if about_body && matches!(sent, Sent::Json(Json::Object(_))) {
            prop_assert!(
                body.error.field.as_deref().is_some_and(|f| !f.is_empty()),
                "{status} names no field: {reply}"
            );
        }
    } else {
        prop_assert!(status.is_success(), "{status}: {reply}");
    }
    Ok(())
}

#[test]
fn write_bodies_never_fail_the_server() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let f = rt.block_on(fixture());
    let seeds = f.seeds.clone();
    let endpoint = proptest::sample::select((0..seeds.len()).collect::<Vec<_>>());
    let sent = prop_oneof![
        6 => (endpoint.clone(), ops()).prop_map({
            let seeds = seeds.clone();
            move |(i, ops)| (i, Sent::Json(mutate(seeds[i].2.clone(), &ops)))
        }),
        2 => (endpoint.clone(), any_json()).prop_map(|(i, v)| (i, Sent::Json(v))),
        1 => (endpoint, proptest::collection::vec(any::<u8>(), 0..64)).prop_map(|(i, b)| (i, Sent::Bytes(b))),
    ];
    let mut runner = TestRunner::new(fuzz_support::config(file!(), 96));
    runner
        .run(&sent, |(i, sent)| {
            let (method, path, _) = &seeds[i];
            let bytes = match &sent {
                Sent::Json(v) => serde_json::to_vec(v).unwrap(),
                Sent::Bytes(b) => b.clone(),
            };
            let (status, reply) = rt.block_on(f.call(method.clone(), path, bytes));
            check(status, &reply, &sent)
        })
        .unwrap();
    rt.block_on(f.manager.shutdown());
}
