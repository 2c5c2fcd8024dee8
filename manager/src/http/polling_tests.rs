//! The polling API against a real one-manager cluster in process (Raft, the
//! controllers making and removing tasks, the real router; no socket): pages walk
//! every task once while tasks come and go, blocking queries wake on a change of
//! their kind and not on others, task counts, the state filter, fields, ETags, and
//! bad paging input.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body as HttpBody;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use serde_json::Value as Json;
use shoal_api::service::{ServiceMode, ServiceSpec};
use shoal_api::wire::ServiceWithStatus;
use shoal_api::{Task, TaskState, TaskStatus};
use tower::ServiceExt as _;

use super::polling::{INDEX_HEADER, NEXT_CURSOR_HEADER};
use super::{Api, router};
use crate::dispatcher::Dispatcher;
use crate::manager::{Manager, ManagerConfig, ManagerError};
use crate::orchestrator::runner::Controllers;
use crate::store::{Change, Kind, Object, StoreError, Transaction};

struct Fixture {
    _dir: tempfile::TempDir,
    manager: Arc<Manager>,
    _controllers: Controllers,
    app: axum::Router,
}

/// A one-manager cluster, its node ready for tasks, with the controllers running.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ManagerConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap());
    cfg.heartbeat_ms = 50;
    cfg.election_ms = (150, 300);
    let manager = Manager::start(&cfg, "127.0.0.1:1".into()).await.unwrap();
    manager.init().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(manager.leads_with_full_state() && manager.cluster().is_some()) {
        assert!(Instant::now() < deadline, "the manager never led");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let description = crate::testing::node("m1", &[]).description;
    manager.register_node("m1", description, "127.0.0.1".parse().unwrap()).await.unwrap();
    let controllers = Controllers::start(manager.clone());
    let api = Api::new(manager.clone(), Dispatcher::new(manager.clone()), None);
    Fixture { _dir: dir, manager: manager.clone(), _controllers: controllers, app: router(api, false) }
}

impl Fixture {
    async fn call(&self, method: Method, path: &str, body: Option<Json>, headers: &[(&str, &str)]) -> Reply {
        let mut req = Request::builder().method(method).uri(path).header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = body.map_or_else(HttpBody::empty, |b| HttpBody::from(serde_json::to_vec(&b).unwrap()));
        let resp = self.app.clone().oneshot(req.body(body).unwrap()).await.unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.unwrap();
        let json = if bytes.is_empty() { Json::Null } else { serde_json::from_slice(&bytes).unwrap() };
        Reply { status, headers, json }
    }

    async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None, &[]).await
    }

    async fn create(&self, name: &str, mode: ServiceMode) {
        let mut spec = ServiceSpec::new(name, "busybox");
        spec.mode = mode;
        let r =
            self.call(Method::POST, "/v1/services", Some(serde_json::to_value(&spec).unwrap()), &[]).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    }

    fn tasks(&self) -> Vec<Task> {
        self.manager.read(|s| {
            s.list(Kind::Task)
                .filter_map(|o| match o {
                    Object::Task(t) => Some(t.clone()),
                    _ => None,
                })
                .collect()
        })
    }

    /// Waits until the store's tasks satisfy `cond`.
    async fn tasks_until(&self, what: &str, cond: impl Fn(&[Task]) -> bool) -> Vec<Task> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let tasks = self.tasks();
            if cond(&tasks) {
                return tasks;
            }
            assert!(Instant::now() < deadline, "{what}: never happened; tasks: {tasks:#?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sets a task's observed state, as its node's report would.
    async fn report(&self, task_id: &str, state: TaskState) {
        loop {
            let Some(Object::Task(mut t)) = self.manager.read(|s| s.get(Kind::Task, task_id).cloned()) else {
                panic!("task {task_id} is gone")
            };
            let version = t.meta.version;
            t.status = TaskStatus::new(state, chrono::Utc::now(), "reported");
            let change = Change::Update { object: Object::Task(t), expected_version: version };
            match self.manager.propose(Transaction { changes: vec![change] }).await {
                Ok(_) => return,
                Err(ManagerError::Store(StoreError::Conflict { .. })) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    json: Json,
}

impl Reply {
    fn index(&self) -> u64 {
        self.headers[INDEX_HEADER].to_str().unwrap().parse().unwrap()
    }

    fn next(&self) -> Option<String> {
        self.headers.get(NEXT_CURSOR_HEADER).map(|v| v.to_str().unwrap().to_owned())
    }

    fn ids(&self) -> Vec<String> {
        self.json.as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap().to_owned()).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_walk_every_task_once_while_tasks_come_and_go() {
    let f = Arc::new(fixture().await);
    for i in 0..4 {
        f.create(&format!("steady-{i}"), ServiceMode::Replicated { replicas: 5 }).await;
    }
    f.tasks_until("20 tasks", |ts| ts.len() >= 20).await;

    // Services made, scaled and removed all through the walks.
    let stop = Arc::new(AtomicBool::new(false));
    let churn = {
        let (f, stop) = (f.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                f.create(&format!("churn-{i}"), ServiceMode::Replicated { replicas: 3 }).await;
                let replicas = if i.is_multiple_of(2) { 8 } else { 2 };
                let body = serde_json::json!({ "replicas": replicas });
                let path = format!("/v1/services/steady-{}/scale", i % 4);
                let r = f.call(Method::POST, &path, Some(body), &[]).await;
                assert_eq!(r.status, StatusCode::OK, "{}", r.json);
                if i >= 2 {
                    let r = f.call(Method::DELETE, &format!("/v1/services/churn-{}", i - 2), None, &[]).await;
                    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.json);
                }
                i += 1;
            }
            i
        })
    };

    let mut indexes = f.manager.indexes();
    let (mut walks, mut pages_total) = (0, 0);
    for _ in 0..12 {
        let before: BTreeSet<String> = f.tasks().into_iter().map(|t| t.id).collect();
        let mut seen: Vec<String> = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/tasks?limit=7&cursor={c}"),
                None => "/v1/tasks?limit=7".to_owned(),
            };
            let r = f.get(&path).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.json);
            assert!(r.ids().len() <= 7, "a page holds at most the limit");
            seen.extend(r.ids());
            pages_total += 1;
            cursor = r.next();
            if cursor.is_none() {
                break;
            }
            // Tasks change between every two pages.
            let at = indexes.borrow_and_update().of(&[Kind::Task]);
            let changed = indexes.wait_for(|ix| ix.of(&[Kind::Task]) > at);
            tokio::time::timeout(Duration::from_secs(10), changed)
                .await
                .expect("tasks keep changing")
                .unwrap();
        }
        let after: BTreeSet<String> = f.tasks().into_iter().map(|t| t.id).collect();
        let unique: BTreeSet<String> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len(), "no task is returned twice: {seen:?}");
        let throughout: BTreeSet<&String> = before.intersection(&after).collect();
        let missed: Vec<&&String> = throughout.iter().filter(|id| !unique.contains(**id)).collect();
        assert!(missed.is_empty(), "tasks there all through the walk were missed: {missed:?}");
        walks += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = churn.await.unwrap();
    assert!(rounds >= 3, "the churn ran ({rounds} rounds)");
    assert!(pages_total > walks * 3, "walks took several pages each ({pages_total} pages in {walks} walks)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_query_wakes_on_a_change_of_its_kind_and_times_out_otherwise() {
    let f = Arc::new(fixture().await);
    f.create("web", ServiceMode::Replicated { replicas: 1 }).await;
    let task = f.tasks_until("the task on its node", |ts| ts.iter().any(|t| t.node_id.is_some())).await;
    // Let the controllers finish with it, so no write is in flight.
    let quiet = f.get("/v1/services").await.index();

    // Nothing changes a service: the wait runs out and the index is the same, even
    // though a task changes meanwhile.
    let waiting = {
        let f = f.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let r = f.get(&format!("/v1/services?wait_index={quiet}&wait=1s")).await;
            (started.elapsed(), r.index(), r.status)
        })
    };
    f.report(&task[0].id, TaskState::Running).await;
    let (took, index, status) = waiting.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(index, quiet, "no service changed");
    assert!(took >= Duration::from_secs(1), "it waited the second asked ({took:?})");
    assert!(took < Duration::from_millis(1000 + 1000 / 16 + 1500), "and not much more ({took:?})");

    // A task list waiting on the same index wakes for the task's change at once.
    let r = f.get(&format!("/v1/tasks?wait_index={quiet}&wait=30s")).await;
    assert!(r.index() > quiet);

    // A new service wakes a services wait at once.
    let waiting = {
        let f = f.clone();
        tokio::spawn(async move { f.get(&format!("/v1/services?wait_index={quiet}&wait=30s")).await })
    };
    // Pacing only: the request is given time to block; it must still be waiting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the query blocks while nothing changes");
    let changed = Instant::now();
    f.create("api", ServiceMode::Replicated { replicas: 1 }).await;
    let r = waiting.await.unwrap();
    assert!(changed.elapsed() < Duration::from_secs(3), "woken by the change ({:?})", changed.elapsed());
    assert!(r.index() > quiet);
    let names: Vec<&str> =
        r.json.as_array().unwrap().iter().map(|s| s["spec"]["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["api", "web"]);

    // An index already passed answers at once.
    let started = Instant::now();
    let r = f.get(&format!("/v1/services?wait_index={}&wait=30s", quiet - 1)).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_states_fields_etags_and_bad_paging_input() {
    let f = fixture().await;
    f.create("web", ServiceMode::Replicated { replicas: 3 }).await;
    f.create("agent", ServiceMode::Global).await;
    let tasks = f
        .tasks_until("4 tasks on the node", |ts| ts.len() == 4 && ts.iter().all(|t| t.node_id.is_some()))
        .await;
    let web_id = f.manager.read(|s| s.by_name(Kind::Service, "web").unwrap().id().to_owned());
    let web: Vec<&Task> = tasks.iter().filter(|t| t.service_id == web_id).collect();
    f.report(&web[0].id, TaskState::Running).await;
    f.report(&web[1].id, TaskState::Running).await;
    let agent = tasks.iter().find(|t| t.service_id != web_id).unwrap();
    f.report(&agent.id, TaskState::Running).await;

    // Docker's service status: running with desired running, replicas, the nodes of a
    // global service.
    let r = f.get("/v1/services?status=true").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let services: Vec<ServiceWithStatus> = serde_json::from_value(r.json.clone()).unwrap();
    let counts: Vec<(&str, u64, u64)> = services
        .iter()
        .map(|s| {
            let st = s.service_status.unwrap();
            (s.service.spec.name.as_str(), st.running_tasks, st.desired_tasks)
        })
        .collect();
    assert_eq!(counts, [("agent", 1, 1), ("web", 2, 3)]);
    assert!(f.get("/v1/services").await.json[0].get("service_status").is_none(), "only when asked");

    // The observed-state filter.
    let r = f.get("/v1/tasks?state=running").await;
    let running: BTreeSet<String> = r.ids().into_iter().collect();
    assert_eq!(running, [&web[0].id, &web[1].id, &agent.id].into_iter().cloned().collect());
    assert_eq!(f.get("/v1/tasks?state=running&service=agent").await.ids(), std::slice::from_ref(&agent.id));
    assert!(f.get("/v1/tasks?state=failed,complete").await.ids().is_empty());
    let others = f.get(&format!("/v1/tasks?state={}", web[2].status.state.as_str())).await.ids();
    assert!(others.contains(&web[2].id) && !others.contains(&web[0].id), "{others:?}");

    // Fields: only those asked, with status too.
    let r = f.get("/v1/tasks?fields=id,status").await;
    for t in r.json.as_array().unwrap() {
        let keys: Vec<&String> = t.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["id", "status"], "{t}");
    }
    let r = f.get("/v1/services?fields=id&status=true").await;
    assert_eq!(r.json[1]["service_status"]["desired_tasks"], 3, "{}", r.json);
    assert_eq!(r.json[1].as_object().unwrap().len(), 2, "{}", r.json);

    // The ETag is the index: seen before, a 304 without a body.
    let r = f.get("/v1/tasks").await;
    let etag = r.headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("W/\"{}\"", r.index()));
    let again = f.call(Method::GET, "/v1/tasks", None, &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert_eq!(again.index(), r.index());
    f.report(&web[2].id, TaskState::Running).await;
    let changed = f.call(Method::GET, "/v1/tasks", None, &[("if-none-match", &etag)]).await;
    assert_eq!(changed.status, StatusCode::OK, "a change makes a new ETag");

    // Every list pages; the last page has no cursor.
    for list in ["services", "tasks", "nodes", "networks", "secrets", "configs", "stacks"] {
        let r = f.get(&format!("/v1/{list}?limit=1")).await;
        assert_eq!(r.status, StatusCode::OK, "{list}: {}", r.json);
        assert!(r.json.as_array().unwrap().len() <= 1, "{list}");
        r.index();
    }
    let first = f.get("/v1/services?limit=1").await;
    let second = f.get(&format!("/v1/services?limit=1&cursor={}", first.next().unwrap())).await;
    assert_eq!((first.ids().len(), second.ids().len(), second.next()), (1, 1, None));

    // Bad input names its parameter.
    let task_cursor = f.get("/v1/tasks?limit=1").await.next().unwrap();
    for (path, field) in [
        ("/v1/tasks?cursor=nonsense", "cursor"),
        ("/v1/services?cursor=v1.bm9wZQ", "cursor"),
        (&format!("/v1/services?cursor={task_cursor}"), "cursor"),
        ("/v1/nodes?cursor=v1.", "cursor"),
        ("/v1/tasks?limit=0", "limit"),
        ("/v1/tasks?state=sleepy", "state"),
        ("/v1/tasks?fields=id,Spec", "fields"),
        ("/v1/services?wait_index=1&wait=soon", "wait"),
    ] {
        let r = f.get(path).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.json);
        assert_eq!(r.json["error"]["field"], field, "{path}: {}", r.json);
    }
}
