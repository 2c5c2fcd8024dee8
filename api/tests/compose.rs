//! Compose files written for these tests, read into stacks.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use shoal_api::compose::{self, ComposeError, STACK_LABEL, Source, Stack};
use shoal_api::service::*;
use shoal_api::task_spec::*;

const DIR: &str = "/srv/shop";

fn load_with(text: &str, env: &[(&str, &str)]) -> Result<Stack, ComposeError> {
    let env: BTreeMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let files: BTreeMap<PathBuf, Vec<u8>> =
        BTreeMap::from([(PathBuf::from("/srv/shop/secrets/db_password.txt"), b"s3cret\n".to_vec())]);
    compose::load(&Source {
        stack: "shop",
        text,
        dir: Path::new(DIR),
        env: &|k| env.get(k).cloned(),
        read_file: &|p| {
            files
                .get(p)
                .cloned()
                .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "No such file or directory"))
        },
    })
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compose").join(name)).unwrap()
}

fn service<'a>(stack: &'a Stack, name: &str) -> &'a ServiceSpec {
    stack.services.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no service {name}"))
}

fn messages(stack: &Stack) -> Vec<String> {
    stack.warnings.iter().map(ToString::to_string).collect()
}

#[test]
fn web_db_worker() {
    let stack = load_with(&fixture("web-db-worker.yml"), &[]).unwrap();
    assert!(stack.warnings.is_empty(), "{:?}", messages(&stack));
    let names: Vec<_> = stack.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["shop_db", "shop_migrate", "shop_web", "shop_worker"]);

    let web = service(&stack, "shop_web");
    assert_eq!(web.mode, ServiceMode::Replicated { replicas: 3 });
    assert_eq!(web.labels.get(STACK_LABEL).map(String::as_str), Some("shop"));
    assert_eq!(web.labels.get("com.example.owner").map(String::as_str), Some("shop-team"));
    let c = &web.task_template.container;
    assert_eq!(c.image, "127.0.0.1:5000/shop/web:1.4");
    assert!(c.command.is_empty(), "compose command replaces CMD, not ENTRYPOINT");
    assert_eq!(c.args, ["httpd", "-f", "-p", "8080"]);
    assert_eq!(c.env, ["DB_HOST=db", "LOG_LEVEL=info", "WORKERS=4"]);
    assert_eq!(c.labels.get("com.example.tier").map(String::as_str), Some("frontend"));
    assert_eq!(c.stop_grace_period, Duration::from_secs(90));
    let h = c.healthcheck.as_ref().unwrap();
    assert_eq!(h.test[0], "CMD");
    assert_eq!((h.interval, h.timeout, h.retries), (Duration::from_secs(5), Duration::from_secs(2), 3));
    assert_eq!(h.start_period, Duration::from_secs(10));

    let ports = &web.endpoint_spec.ports;
    assert_eq!(ports.len(), 2);
    assert_eq!(
        (ports[0].published_port, ports[0].target_port, ports[0].publish_mode),
        (Some(80), 8080, PublishMode::Ingress)
    );
    assert_eq!(
        (ports[1].published_port, ports[1].target_port, ports[1].publish_mode),
        (Some(9090), 9090, PublishMode::Host)
    );

    let nets: Vec<_> =
        web.task_template.networks.iter().map(|n| (n.target.as_str(), n.aliases.clone())).collect();
    assert_eq!(
        nets,
        [("shop_back", vec!["web".to_owned()]), ("shop_front", vec!["web".to_owned(), "shop".to_owned()])],
        "every service answers to its Compose name"
    );

    let u = &web.update_config;
    assert_eq!(
        (u.parallelism, u.delay, u.failure_action, u.monitor, u.max_failure_ratio, u.order),
        (
            2,
            Duration::from_secs(10),
            FailureAction::Rollback,
            Duration::from_secs(30),
            0.2,
            UpdateOrder::StartFirst
        )
    );
    assert_eq!(u.progress_deadline, Duration::from_secs(600), "Shoal's default is kept");
    assert_eq!((web.rollback_config.parallelism, web.rollback_config.order), (0, UpdateOrder::StopFirst));
    let r = &web.task_template.restart_policy;
    assert_eq!(
        (r.condition, r.delay, r.max_attempts, r.window),
        (RestartCondition::OnFailure, Duration::from_secs(3), 5, Duration::from_secs(120))
    );
    let res = &web.task_template.resources;
    assert_eq!(
        (res.limits.nano_cpus, res.limits.memory_bytes, res.limits.pids),
        (500_000_000, 256 << 20, 200)
    );
    assert_eq!((res.reservations.nano_cpus, res.reservations.memory_bytes), (250_000_000, 64 << 20));
    let p = &web.task_template.placement;
    assert_eq!(p.constraints, ["node.role != manager", "node.labels.zone==eu-1"]);
    assert_eq!(p.preferences[0].spread, "node.labels.rack");
    assert_eq!(p.max_replicas, 2);

    let db = service(&stack, "shop_db");
    let m = &db.task_template.container.mounts;
    assert_eq!(
        m[0],
        Mount::Volume {
            source: "shop_db-data".into(),
            target: "/var/lib/postgresql/data".into(),
            read_only: false,
            no_copy: false
        }
    );
    assert_eq!(
        m[1],
        Mount::Bind {
            source: "/srv/shop/init".into(),
            target: "/docker-entrypoint-initdb.d".into(),
            read_only: true
        }
    );
    assert_eq!(m[2], Mount::Tmpfs { target: "/run/postgresql".into(), size_bytes: 16 << 20, mode: None });
    assert_eq!(db.task_template.container.secrets[0].source, "shop_db_password");
    assert_eq!(db.task_template.container.secrets[0].target.as_deref(), Some("db_password"));
    assert_eq!(db.task_template.container.stop_signal.as_deref(), Some("SIGINT"));
    assert_eq!(db.mode, ServiceMode::Replicated { replicas: 1 });

    let worker = service(&stack, "shop_worker");
    let c = &worker.task_template.container;
    assert_eq!(c.command, ["/bin/sh", "-c"]);
    assert_eq!(c.args, ["exec", "worker", "--queue", "orders high"]);
    assert_eq!(
        (c.user.as_deref(), c.workdir.as_deref(), c.read_only),
        (Some("1000:1000"), Some("/app"), true)
    );
    assert_eq!(c.mounts, [Mount::Tmpfs { target: "/tmp".into(), size_bytes: 0, mode: None }]);
    assert_eq!(c.configs[0].source, "shop_worker_conf");
    assert_eq!((c.configs[0].target.as_deref(), c.configs[0].mode), (Some("/etc/worker.toml"), 0o440));
    assert_eq!(worker.mode, ServiceMode::Global);
    assert_eq!(worker.endpoint_spec.mode, EndpointMode::Dnsrr);

    let migrate = service(&stack, "shop_migrate");
    assert_eq!(migrate.mode, ServiceMode::ReplicatedJob { max_concurrent: 1, total_completions: Some(1) });

    let nets: Vec<_> = stack.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(nets, ["shop_back", "shop_front"], "no default network: every service names its own");
    let back = &stack.networks[0];
    assert_eq!(back.subnet, Some("10.30.0.0/24".parse().unwrap()));
    assert_eq!(back.gateway, Some("10.30.0.1".parse().unwrap()));
    assert!(back.internal && stack.networks[1].attachable);
    assert_eq!(stack.secrets[0].name, "shop_db_password");
    assert_eq!(stack.secrets[0].data, b"s3cret\n");
    assert_eq!(stack.configs[0].data, b"queue = \"orders\"\n");
}

#[test]
fn interpolation_with_defaults() {
    let text = fixture("interpolation.yml");
    let stack = load_with(&text, &[]).unwrap();
    let api = service(&stack, "shop_api");
    assert_eq!(api.task_template.container.image, "127.0.0.1:5000/api:latest");
    assert_eq!(api.mode, ServiceMode::Replicated { replicas: 2 });
    assert_eq!(api.endpoint_spec.ports[0].published_port, Some(8080));
    assert_eq!(api.task_template.resources.limits.memory_bytes, 128 << 20);
    assert_eq!(api.task_template.restart_policy.condition, RestartCondition::Any);
    assert_eq!(api.task_template.container.env, ["GREETING=hello ", "PRICE=$5"]);
    let w = messages(&stack);
    assert!(
        w.contains(
            &"services.api.environment.GREETING: variable USER_NAME is not set; using an empty string"
                .to_owned()
        ),
        "{w:?}"
    );
    assert!(w.iter().any(|m| m.starts_with("services.api.environment.FROM_SHELL: has no value")), "{w:?}");
    assert!(w.iter().any(|m| m.starts_with("services.api.environment.NOT_IN_SHELL: has no value")), "{w:?}");
    assert!(w.iter().all(|m| !m.contains("x-defaults")), "extension keys are the file's own: {w:?}");

    let env = [
        ("TAG", "2.0"),
        ("REPLICAS", "5"),
        ("PORT", "9000"),
        ("MEM", "1g"),
        ("RESTART", "on-failure"),
        ("USER_NAME", "ada"),
        ("FROM_SHELL", "yes"),
    ];
    let stack = load_with(&text, &env).unwrap();
    let api = service(&stack, "shop_api");
    assert_eq!(api.task_template.container.image, "127.0.0.1:5000/api:2.0");
    assert_eq!(api.mode, ServiceMode::Replicated { replicas: 5 });
    assert_eq!(api.endpoint_spec.ports[0].published_port, Some(9000));
    assert_eq!(api.task_template.resources.limits.memory_bytes, 1 << 30);
    assert_eq!(api.task_template.restart_policy.condition, RestartCondition::OnFailure);
    assert_eq!(api.task_template.container.env, ["FROM_SHELL=yes", "GREETING=hello ada", "PRICE=$5"]);
    assert_eq!(messages(&stack).len(), 1, "only NOT_IN_SHELL is left: {:?}", messages(&stack));
}

#[test]
fn unsupported_keys_are_warnings_that_name_them() {
    let stack = load_with(&fixture("unsupported.yml"), &[]).unwrap();
    let w = messages(&stack);
    for path in [
        "version:",
        "services.app.build: Shoal runs images",
        "services.app.container_name:",
        "services.app.restart: ignored in a stack: use deploy.restart_policy",
        "services.app.depends_on: Shoal starts services without ordering",
        "services.app.privileged: not supported",
        "services.app.ports[0]: a host IP is not supported",
        "services.app.deploy.frobnicate: not supported by Shoal; ignored",
        "services.app.deploy.resources.reservations.generic_resources:",
        "services.cache.networks.legacy.ipv4_address:",
        "networks.legacy.driver_opts:",
        "networks.legacy.driver: driver \"bridge\" is not supported; using overlay",
    ] {
        assert!(w.iter().any(|m| m.starts_with(path)), "no warning starting {path:?} in {w:#?}");
    }
    assert!(w.iter().all(|m| !m.contains("x-note")), "{w:#?}");
    assert_eq!(w.len(), 12, "{w:#?}");

    let app = service(&stack, "shop_app");
    let ports: Vec<_> =
        app.endpoint_spec.ports.iter().map(|p| (p.published_port, p.target_port, p.protocol)).collect();
    assert_eq!(
        ports,
        [
            (Some(3000), 3000, Protocol::Tcp),
            (Some(6000), 7000, Protocol::Udp),
            (Some(6001), 7001, Protocol::Udp),
            (Some(6002), 7002, Protocol::Udp),
            (None, 5000, Protocol::Tcp),
        ]
    );
    let nets: Vec<_> = stack.networks.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(nets, ["shop_legacy", "shop_default"]);
    assert_eq!(app.task_template.networks[0].target, "shop_default");
}

fn error_fields(text: &str) -> Vec<String> {
    match load_with(text, &[]) {
        Err(ComposeError::Invalid(errors)) => {
            errors.into_iter().map(|e| format!("{}: {}", e.field, e.message)).collect()
        }
        other => panic!("expected field errors, got {other:?}"),
    }
}

#[test]
fn bad_files_name_the_problem() {
    for (text, want) in [
        ("services:\n  a:\n    command: x\n", "services.a.image: is required"),
        (
            "services:\n  a:\n    image: x\n    networks: [nope]\n",
            "services.a.networks: network \"nope\" is not defined",
        ),
        (
            "services:\n  a:\n    image: x\n    stop_grace_period: soon\n",
            "services.a.stop_grace_period: invalid duration",
        ),
        (
            "services:\n  a:\n    image: x\n    deploy:\n      mode: daemonset\n",
            "services.a.deploy.mode: \"daemonset\" is not",
        ),
        (
            "services:\n  a:\n    image: x\n    deploy:\n      replicas: many\n",
            "services.a.deploy.replicas: \"many\" is not a valid u64",
        ),
        (
            "services:\n  a:\n    image: x\n    ports: [\"99999:80\"]\n",
            "services.a.ports[0]: \"99999:80\" is not",
        ),
        (
            "services:\n  a:\n    image: x\n    ports:\n      - target: 80\n        mode: global\n",
            "services.a.ports[0]: mode \"global\" is not ingress or host",
        ),
        (
            "services:\n  a:\n    image: x\n    ports:\n      - target: 80\n        published: 8080-8081\n",
            "services.a.ports[0]: \"8080-8081\" is a range",
        ),
        (
            "services:\n  a:\n    image: x\n    volumes: [data:/d]\n",
            "services.a.volumes[0]: volume \"data\" is not defined",
        ),
        (
            "services:\n  a:\n    image: x\n    volumes: [/d]\n",
            "services.a.volumes[0]: \"/d\" is an anonymous volume",
        ),
        (
            "services:\n  a:\n    image: x\n    secrets: [pw]\n",
            "services.a.secrets[0]: \"pw\" is not defined",
        ),
        (
            "services:\n  a:\n    image: x\n    deploy:\n      resources:\n        limits:\n          memory: lots\n",
            "services.a.deploy.resources.limits.memory: invalid size",
        ),
        (
            "services:\n  a:\n    image: x\n    deploy:\n      resources:\n        limits:\n          memory: 1m\n",
            "services.a.deploy.resources.limits.memory: must be at least 6MiB",
        ),
        (
            "services:\n  a:\n    image: x\n    deploy:\n      update_config:\n        order: random\n",
            "services.a.deploy.update_config.order: \"random\" is not",
        ),
        (
            "services:\n  a:\n    image: x\n    deploy:\n      placement:\n        constraints: [zone=a]\n",
            "services.a.deploy.placement.constraints[0]: \"zone=a\" has no operator",
        ),
        (
            "services:\n  a:\n    image: x\n    healthcheck:\n      disable: true\n      test: [CMD, x]\n",
            "services.a.healthcheck.disable: cannot be combined with test",
        ),
        (
            "services:\n  a:\n    image: x\n    volumes: [{type: volume, source: /data, target: /d}]\n",
            "services.a.volumes[0]: volume \"/data\" is not defined",
        ),
        (
            "services:\n  a:\n    image: x\n    volumes: [{type: bind, source: data, target: /d}]\n",
            "services.a.volumes[0].source: \"data\" is not a path",
        ),
        (
            "services:\n  a:\n    image: x\n    volumes: [{type: volume, target: /d}]\n",
            "services.a.volumes[0]: \"/d\" is an anonymous volume",
        ),
        (
            "secrets:\n  pw:\n    file: missing.txt\nservices:\n  a:\n    image: x\n",
            "secrets.pw.file: cannot read /srv/shop/missing.txt",
        ),
        (
            "networks:\n  n:\n    ipam:\n      config: [{subnet: 10.0.0.0/33}]\nservices:\n  a:\n    image: x\n",
            "networks.n.ipam.config[0].subnet:",
        ),
        ("services: {}\n", "services: the file defines no services"),
    ] {
        let errors = error_fields(text);
        assert!(errors.iter().any(|e| e.starts_with(want)), "{text}\nwanted {want:?}, got {errors:#?}");
    }
}

/// Found by the fuzzer (tests/fuzz.rs): a file whose top level is not a mapping was
/// refused with an error that named no field.
#[test]
fn a_file_that_is_not_a_mapping_names_the_top_level() {
    for (text, holds) in [("a", "a string"), ("false", "a boolean"), ("", "nothing"), ("- x", "a list")] {
        let errors = error_fields(text);
        assert_eq!(
            errors,
            [format!(
                "(top level): the file holds {holds}, not a mapping of top-level keys (services:, networks:, …)"
            )],
            "{text:?}"
        );
    }
    // Found by the fuzzer too: "?" is a mapping whose one key is null.
    for (text, key) in [("?", "nothing"), ("1: x\nservices: {}", "a number"), ("[a]: x", "a list")] {
        assert_eq!(
            error_fields(text),
            [format!("(top level): a top-level key is {key}: keys are names such as services:")],
            "{text:?}"
        );
    }
}

#[test]
fn yaml_and_interpolation_errors() {
    match load_with("services: [", &[]) {
        Err(ComposeError::Yaml(e)) => assert!(e.location().is_some(), "the YAML error says where: {e}"),
        other => panic!("{other:?}"),
    }
    match load_with("services:\n  a:\n    image: ${IMAGE:?set IMAGE to the image to run}\n", &[]) {
        Err(e @ ComposeError::Interpolate { .. }) => {
            assert_eq!(
                e.to_string(),
                "services.a.image: required variable IMAGE is not set: set IMAGE to the image to run"
            )
        }
        other => panic!("{other:?}"),
    }
    match load_with("services:\n  a:\n    image: ${IMAGE\n", &[]) {
        Err(ComposeError::Interpolate { path, .. }) => assert_eq!(path, "services.a.image"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn compose_habits() {
    let text = "
services:
  api:
    image: busybox
    hostname: ${HOST:-api-1}
    environment:
      VERSION: ${VERSION}
      FLAG: \"${FLAG}\"
    labels:
      com.docker.stack.namespace: elsewhere
    healthcheck:
      interval: 5s
    volumes:
      - data:/data:ro,z
    deploy:
      replicas: \"${N:-2}\"
      labels:
        com.docker.stack.namespace: elsewhere
  job:
    image: busybox
    deploy:
      mode: replicated-job
      update_config:
        parallelism: 2
volumes:
  data:
    external:
      name: shared-data
networks:
  outside:
    external: true
";
    let stack = load_with(text, &[("VERSION", "1.10"), ("FLAG", "True")]).unwrap();
    let api = service(&stack, "shop_api");
    let c = &api.task_template.container;
    assert_eq!(c.env, ["FLAG=True", "VERSION=1.10"], "interpolated values stay text");
    assert_eq!(c.hostname.as_deref(), Some("api-1"));
    assert_eq!(api.mode, ServiceMode::Replicated { replicas: 2 });
    assert_eq!(api.labels.get(STACK_LABEL).map(String::as_str), Some("shop"), "the stack label wins");
    assert_eq!(c.labels.get(STACK_LABEL).map(String::as_str), Some("shop"));
    let h = c.healthcheck.as_ref().unwrap();
    assert!(h.test.is_empty(), "timings only: the image's test is kept");
    assert_eq!(h.interval, Duration::from_secs(5));
    assert_eq!(
        c.mounts,
        [Mount::Volume {
            source: "shared-data".into(),
            target: "/data".into(),
            read_only: true,
            no_copy: false
        }]
    );
    assert_eq!(stack.external_networks, ["outside"]);
    let w = messages(&stack);
    for want in [
        "services.api.volumes[0]: mount option \"z\" is not supported",
        "services.job.deploy.update_config: ignored: jobs run to completion",
        "volumes.data.external.name: deprecated",
    ] {
        assert!(w.iter().any(|m| m.starts_with(want)), "no {want:?} in {w:#?}");
    }
    assert_eq!(w.len(), 3, "{w:#?}");
}

#[test]
fn stack_names_are_checked() {
    let err = compose::load(&Source {
        stack: "bad name",
        text: "services:\n  a:\n    image: x\n",
        dir: Path::new(DIR),
        env: &|_| None,
        read_file: &|_| Err(io::Error::other("no files")),
    })
    .unwrap_err();
    assert!(err.to_string().starts_with("stack name: \"bad name\" may contain only"), "{err}");
}

#[test]
fn nocopy_volumes_stay_empty_in_both_syntaxes() {
    let text = "
services:
  web:
    image: nginx
    volumes:
      - html:/usr/share/nginx/html:nocopy
      - type: volume
        source: logs
        target: /var/log/nginx
        volume:
          nocopy: true
      - cache:/cache
volumes:
  html: {}
  logs: {}
  cache: {}
";
    let stack = load_with(text, &[]).unwrap();
    let no_copy: Vec<bool> = service(&stack, "shop_web")
        .task_template
        .container
        .mounts
        .iter()
        .map(|m| matches!(m, Mount::Volume { no_copy: true, .. }))
        .collect();
    assert_eq!(no_copy, [true, true, false]);
    assert!(messages(&stack).is_empty(), "{:?}", messages(&stack));
}
