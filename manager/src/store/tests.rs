//! The store's transactions without Raft: CAS, uniqueness, references, atomicity,
//! determinism, events and snapshots.

use chrono::{TimeZone, Utc};
use shoal_api::Meta;
use shoal_api::network::{Network, NetworkSpec};
use shoal_api::node::*;
use shoal_api::service::{Service, ServiceSpec};
use shoal_api::task::{Task, TaskState, TaskStatus};
use shoal_api::task_spec::NetworkAttachmentConfig;

use super::*;

fn meta() -> Meta {
    Meta::new(Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap())
}

fn service(id: &str, name: &str) -> Object {
    Object::Service(Service {
        id: id.into(),
        meta: meta(),
        spec: ServiceSpec::new(name, "busybox"),
        previous_spec: None,
        update_status: None,
        endpoint: Default::default(),
    })
}

fn task(id: &str, service_id: &str, node: Option<&str>) -> Object {
    Object::Task(Task {
        id: id.into(),
        meta: meta(),
        service_id: service_id.into(),
        slot: Some(1),
        node_id: node.map(Into::into),
        spec: ServiceSpec::new("x", "busybox").task_template,
        spec_version: 1,
        desired_state: TaskState::Running,
        status: TaskStatus::new(TaskState::New, meta().created_at, "created"),
        networks: vec![],
        job_iteration: None,
    })
}

fn network(id: &str, name: &str) -> Object {
    Object::Network(Network {
        id: id.into(),
        meta: meta(),
        spec: NetworkSpec::new(name),
        subnet: "10.0.1.0/24".parse().unwrap(),
        gateway: "10.0.1.1".parse().unwrap(),
        vni: 4096,
    })
}

fn node(id: &str) -> Object {
    Object::Node(Node {
        id: id.into(),
        meta: meta(),
        spec: NodeSpec::default(),
        description: NodeDescription {
            hostname: id.into(),
            platform: Platform { os: "linux".into(), arch: "x86_64".into() },
            resources: NodeResources::default(),
            engine_labels: Default::default(),
            version: String::new(),
        },
        status: NodeStatus {
            state: NodeState::Ready,
            message: String::new(),
            addr: "127.0.0.1".parse().unwrap(),
        },
        manager_status: None,
        ingress: None,
        attachments: Vec::new(),
        certificate: None,
    })
}

fn create(o: Object) -> Change {
    Change::Create { object: o }
}

fn tx(changes: Vec<Change>) -> Transaction {
    Transaction { changes }
}

#[test]
fn versions_are_log_indexes_and_cas_refuses_stale_writes() {
    let mut s = Store::new();
    s.apply(5, tx(vec![create(service("s1", "web"))])).unwrap();
    assert_eq!(s.get(Kind::Service, "s1").unwrap().meta().version, 5);
    let mut updated = s.get(Kind::Service, "s1").unwrap().clone();
    s.apply(7, tx(vec![Change::Update { object: updated.clone(), expected_version: 5 }])).unwrap();
    assert_eq!(s.get(Kind::Service, "s1").unwrap().meta().version, 7);
    updated.meta_mut().version = 5;
    let err = s.apply(8, tx(vec![Change::Update { object: updated, expected_version: 5 }])).unwrap_err();
    assert_eq!(err, StoreError::Conflict { kind: Kind::Service, id: "s1".into(), expected: 5, actual: 7 });
    assert!(err.to_string().contains("read it again and retry"));
    let err = s.apply(
        9,
        tx(vec![Change::Delete { kind: Kind::Service, id: "s1".into(), expected_version: Some(6) }]),
    );
    assert!(matches!(err, Err(StoreError::Conflict { .. })));
    assert_eq!(s.last_index(), 9, "a refused entry still advances the applied index");
}

#[test]
fn names_are_unique_per_kind() {
    let mut s = Store::new();
    s.apply(1, tx(vec![create(service("s1", "web")), create(network("n1", "web"))])).unwrap();
    let err = s.apply(2, tx(vec![create(service("s2", "web"))])).unwrap_err();
    assert_eq!(err, StoreError::NameTaken { kind: Kind::Service, name: "web".into(), id: "s1".into() });
    assert_eq!(s.by_name(Kind::Service, "web").unwrap().id(), "s1");
    // Renaming frees the old name.
    let mut renamed = s.get(Kind::Service, "s1").unwrap().clone();
    if let Object::Service(svc) = &mut renamed {
        svc.spec.name = "api".into();
    }
    s.apply(3, tx(vec![Change::Update { object: renamed, expected_version: 1 }])).unwrap();
    assert!(s.by_name(Kind::Service, "web").is_none());
    s.apply(4, tx(vec![create(service("s2", "web"))])).unwrap();
    assert!(matches!(s.apply(5, tx(vec![create(service("s1", "other"))])), Err(StoreError::Exists { .. })));
}

#[test]
fn references_are_enforced() {
    let mut s = Store::new();
    let err = s.apply(1, tx(vec![create(task("t1", "nope", None))])).unwrap_err();
    assert!(err.to_string().contains("names service nope, which does not exist"), "{err}");
    let mut svc = service("s1", "web");
    if let Object::Service(x) = &mut svc {
        x.spec
            .task_template
            .networks
            .push(NetworkAttachmentConfig { target: "front".into(), aliases: vec![] });
    }
    let err = s.apply(2, tx(vec![create(svc.clone())])).unwrap_err();
    assert!(err.to_string().contains("uses network \"front\", which does not exist"), "{err}");
    // Created in the same transaction, after: fine (checked on the result).
    s.apply(3, tx(vec![create(svc), create(network("n1", "front"))])).unwrap();
    let err =
        s.apply(4, tx(vec![Change::Delete { kind: Kind::Network, id: "n1".into(), expected_version: None }]));
    assert!(err.unwrap_err().to_string().contains("is used by service web"));
    let err = s.apply(5, tx(vec![create(task("t1", "s1", Some("ghost")))])).unwrap_err();
    assert!(err.to_string().contains("node ghost"), "{err}");
    s.apply(6, tx(vec![create(node("n-1")), create(task("t1", "s1", Some("n-1")))])).unwrap();
    assert_eq!(s.tasks_of_service("s1").count(), 1);
    assert_eq!(s.tasks_on_node("n-1").count(), 1);
}

#[test]
fn transactions_are_all_or_nothing() {
    let mut s = Store::new();
    s.apply(1, tx(vec![create(service("s1", "web"))])).unwrap();
    let before = s.clone();
    let err = s.apply(
        2,
        tx(vec![
            create(service("s2", "api")),
            create(task("t1", "s2", None)),
            Change::Delete { kind: Kind::Service, id: "s1".into(), expected_version: None },
            create(service("s3", "api")), // name taken by s2 above: the whole entry fails
        ]),
    );
    assert!(matches!(err, Err(StoreError::NameTaken { .. })));
    assert_eq!(s.objects, before.objects, "nothing of a refused transaction is applied");
    assert_eq!(s.by_name(Kind::Service, "web").unwrap().id(), "s1");
    assert!(s.by_name(Kind::Service, "api").is_none());
    assert_eq!(s.tasks_of_service("s2").count(), 0);
    // check() stages without changing anything.
    s.check(&tx(vec![create(service("s4", "db"))])).unwrap();
    assert!(s.get(Kind::Service, "s4").is_none());
}

#[test]
fn apply_is_deterministic_and_snapshots_round_trip() {
    let entries = [
        tx(vec![create(node("n1")), create(service("s1", "web"))]),
        tx(vec![create(task("t1", "s1", Some("n1"))), create(task("t2", "s1", None))]),
        tx(vec![create(service("s1", "dup"))]), // refused
        tx(vec![Change::Delete { kind: Kind::Task, id: "t2".into(), expected_version: Some(2) }]),
    ];
    let (mut a, mut b) = (Store::new(), Store::new());
    for (i, e) in entries.iter().enumerate() {
        let ra = a.apply(i as u64 + 1, e.clone());
        let rb = b.apply(i as u64 + 1, e.clone());
        assert_eq!(ra, rb);
    }
    assert_eq!(a, b);
    let bytes = serde_json::to_vec(&a).unwrap();
    let mut restored: Store = serde_json::from_slice(&bytes).unwrap();
    restored.reindex();
    assert_eq!(restored, a);
    assert_eq!(restored.tasks_on_node("n1").count(), 1);
    assert_eq!(restored.by_name(Kind::Service, "web").unwrap().id(), "s1");
}

#[test]
fn events_resume_or_ask_to_relist() {
    let log = EventLog::new(3);
    let mut s = Store::new();
    for i in 1..=5u64 {
        let events = s.apply(i, tx(vec![create(service(&format!("s{i}"), &format!("n{i}")))])).unwrap();
        assert_eq!(events[0].index, i);
        assert_eq!(events[0].action, Action::Create);
        log.publish(events);
    }
    let (backlog, mut rx) = log.watch(3).unwrap();
    assert_eq!(backlog.iter().map(|e| e.index).collect::<Vec<_>>(), [4, 5]);
    assert!(matches!(log.watch(1), Err(WatchError::Compacted { from: 1, oldest: 3 })));
    let events =
        s.apply(6, tx(vec![Change::Delete { kind: Kind::Service, id: "s1".into(), expected_version: None }]));
    log.publish(events.unwrap());
    let live = rx.try_recv().unwrap();
    assert_eq!((live.index, live.action, live.object.id()), (6, Action::Delete, "s1"));
}

#[test]
fn changes_read_back_in_any_field_order_and_name_what_is_missing() {
    let changes = vec![
        create(service("s1", "web")),
        Change::Update { object: service("s1", "web"), expected_version: 4 },
        Change::Delete { kind: Kind::Service, id: "s1".into(), expected_version: None },
    ];
    for c in &changes {
        let json = serde_json::to_value(c).unwrap();
        assert_eq!(&serde_json::from_value::<Change>(json.clone()).unwrap(), c);
        // Tag last, fields reversed.
        let mut fields: Vec<(String, serde_json::Value)> =
            json.as_object().unwrap().clone().into_iter().collect();
        fields.reverse();
        let text =
            format!("{{{}}}", fields.iter().map(|(k, v)| format!("{k:?}:{v}")).collect::<Vec<_>>().join(","));
        assert_eq!(&serde_json::from_str::<Change>(&text).unwrap(), c, "{text}");
    }
    let err = serde_json::from_str::<Change>(r#"{"op":"update","object":null}"#).unwrap_err();
    assert!(err.to_string().contains("an update change needs `expected_version`"), "{err}");
    let err = serde_json::from_str::<Change>(r#"{"op":"delete","kind":"service"}"#).unwrap_err();
    assert!(err.to_string().contains("needs `id`"), "{err}");
    assert!(serde_json::from_str::<Change>(r#"{"op":"rename"}"#).is_err());
}

#[test]
fn checking_one_change_refuses_what_applying_it_refuses() {
    let mut s = Store::new();
    s.apply(1, tx(vec![create(network("n1", "front")), create(node("nd1"))])).unwrap();
    let mut web = service("s1", "web");
    if let Object::Service(x) = &mut web {
        x.spec.task_template.networks =
            vec![NetworkAttachmentConfig { target: "front".into(), aliases: vec![] }];
    }
    s.apply(2, tx(vec![create(web.clone())])).unwrap();
    s.apply(3, tx(vec![create(task("t1", "s1", Some("nd1")))])).unwrap();
    let delete = |kind, id: &str, v| Change::Delete { kind, id: id.into(), expected_version: v };
    let cases = vec![
        create(service("s1", "other")),                                     // id exists
        create(service("s2", "web")),                                       // name taken
        create(service("", "x")),                                           // no id
        create(task("t2", "nope", None)),                                   // no such service
        create(task("t3", "s1", Some("gone"))),                             // no such node
        Change::Update { object: web.clone(), expected_version: 1 },        // stale version
        Change::Update { object: service("s9", "x"), expected_version: 1 }, // not found
        Change::Update { object: task("t1", "s1", Some("gone")), expected_version: 3 }, // moved to no node
        delete(Kind::Network, "n1", None),                                  // used by s1
        delete(Kind::Service, "s1", Some(1)),                               // stale version
        delete(Kind::Service, "s9", None),                                  // not found
        create(service("s5", "fine")),                                      // accepted
    ];
    for c in cases {
        let t = tx(vec![c]);
        let checked = s.check(&t);
        let before = s.clone();
        let applied = s.apply(4, t.clone()).map(|_| ());
        assert_eq!(checked, applied, "{t:?}");
        if applied.is_ok() {
            s = before;
        }
    }
}

#[test]
fn a_secret_in_use_cannot_go_and_the_error_names_every_user() {
    let mut s = Store::new();
    let secret = Object::Secret(shoal_api::Secret {
        id: "sec1".into(),
        meta: meta(),
        spec: shoal_api::PayloadSpec {
            name: "pw".into(),
            labels: Default::default(),
            data: b"hunter2".to_vec(),
        },
    });
    let user = |id: &str, name: &str, source: &str| {
        let mut svc = service(id, name);
        if let Object::Service(x) = &mut svc {
            x.spec.task_template.container.secrets.push(shoal_api::task_spec::FileReference::new(source));
        }
        svc
    };
    // One refers to it by name, the other by id.
    s.apply(1, tx(vec![create(secret), create(user("s1", "web", "pw")), create(user("s2", "api", "sec1"))]))
        .unwrap();
    let delete =
        || tx(vec![Change::Delete { kind: Kind::Secret, id: "sec1".into(), expected_version: None }]);
    let err = s.apply(2, delete()).unwrap_err().to_string();
    assert!(err.contains("secret pw is used by services api, web: update or remove them first"), "{err}");
    assert!(!err.contains("hunter2"));
    s.apply(3, tx(vec![Change::Delete { kind: Kind::Service, id: "s2".into(), expected_version: None }]))
        .unwrap();
    let err = s.apply(4, delete()).unwrap_err().to_string();
    assert!(err.contains("secret pw is used by service web: update or remove it first"), "{err}");
    s.apply(5, tx(vec![Change::Delete { kind: Kind::Service, id: "s1".into(), expected_version: None }]))
        .unwrap();
    s.apply(6, delete()).unwrap();
}

#[test]
fn a_secret_changes_only_its_labels() {
    let mut s = Store::new();
    let spec =
        shoal_api::PayloadSpec { name: "pw".into(), labels: Default::default(), data: b"hunter2".to_vec() };
    let secret = shoal_api::Secret { id: "sec1".into(), meta: meta(), spec };
    s.apply(1, tx(vec![create(Object::Secret(secret.clone()))])).unwrap();
    let update = |s: &Store, f: &dyn Fn(&mut shoal_api::Secret)| {
        let Some(Object::Secret(mut x)) = s.get(Kind::Secret, "sec1").cloned() else { panic!("no secret") };
        f(&mut x);
        let expected_version = x.meta.version;
        tx(vec![Change::Update { object: Object::Secret(x), expected_version }])
    };
    let err = s.apply(2, update(&s, &|x| x.spec.data = b"hunter3".to_vec())).unwrap_err().to_string();
    assert!(err.contains("secret pw cannot change, only its labels can: create a new secret"), "{err}");
    assert!(err.contains("update the service") && !err.contains("hunter"), "{err}");
    assert!(s.apply(2, update(&s, &|x| x.spec.name = "pw2".into())).is_err());
    s.apply(
        2,
        update(&s, &|x| {
            x.spec.labels.insert("team".into(), "a".into());
        }),
    )
    .unwrap();
}

#[test]
fn each_kind_keeps_the_last_index_that_changed_it() {
    let mut s = Store::new();
    let tx = |c| Transaction { changes: vec![c] };
    s.apply(1, tx(Change::Create { object: service("s1", "web") })).unwrap();
    s.apply(2, tx(Change::Create { object: task("t1", "s1", None) })).unwrap();
    let mut t = task("t1", "s1", None);
    if let Object::Task(t) = &mut t {
        t.status = TaskStatus::new(TaskState::Running, meta().created_at, "up");
    }
    s.apply(3, tx(Change::Update { object: t, expected_version: 2 })).unwrap();
    let ix = s.indexes();
    assert_eq!((ix.of(&[Kind::Service]), ix.of(&[Kind::Task])), (1, 3), "a task's update is not a service's");
    assert_eq!(ix.of(&[Kind::Service, Kind::Task]), 3);
    // A refused transaction changes no kind's index (the store's index moves on).
    assert!(s.apply(4, tx(Change::Create { object: service("s2", "web") })).is_err());
    assert_eq!(s.indexes().of(&[Kind::Service]), 1);
    assert_eq!(s.last_index(), 4);
    // A deletion counts.
    s.apply(5, tx(Change::Delete { kind: Kind::Task, id: "t1".into(), expected_version: None })).unwrap();
    assert_eq!(s.indexes().of(&[Kind::Task]), 5);
    // From a snapshot every kind starts at its index: it never goes backwards.
    let mut restored: Store = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
    restored.reindex();
    assert_eq!(restored.indexes().of(&[Kind::Service]), 5);
}
