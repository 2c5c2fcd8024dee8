//! `docker stack deploy`, `ls`, `services`, `ps` and `rm` from Debian's docker CLI
//! against a Shoal daemon's Engine API: the CLI does the Compose work on its side
//! and makes networks, secrets, configs and services with the stack's label, which
//! Shoal's own stacks use too.

mod support;

use std::time::Duration;

use shoal_api::client::PayloadKind;
use shoal_api::wire::ServiceFilter;
use support::daemons::{Daemon, block_on};
use support::wait_for;

const COMPOSE: &str = r#"
version: "3.8"
services:
  web:
    image: shoal/busybox
    command: ["sleep", "3600"]
    networks: [front]
    secrets: [token]
    configs:
      - source: conf
        target: /etc/app.conf
    healthcheck:
      test: ["CMD", "true"]
      interval: 1s
    deploy:
      replicas: REPLICAS
      labels:
        tier: web
  worker:
    image: shoal/busybox
    command: ["sleep", "3600"]
    networks: [front, back]
networks:
  front: {}
  back:
    driver: overlay
secrets:
  token:
    file: ./token.txt
configs:
  conf:
    file: ./app.conf
"#;

fn write_stack(d: &Daemon, replicas: u32) -> std::path::PathBuf {
    let dir = d.dir.join("stack");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token.txt"), "s3cret\n").unwrap();
    std::fs::write(dir.join("app.conf"), "answer = 42\n").unwrap();
    let file = dir.join("stack.yml");
    std::fs::write(&file, COMPOSE.replace("REPLICAS", &replicas.to_string())).unwrap();
    file
}

/// The running tasks of `service`, as Shoal counts them.
fn running(d: &Daemon, service: &str) -> usize {
    let c = d.client();
    block_on(async {
        let tasks = c
            .tasks(&shoal_api::wire::TaskFilter { service: Some(service.into()), ..Default::default() })
            .await
            .unwrap_or_default();
        tasks
            .iter()
            .filter(|t| {
                t.status.state == shoal_api::TaskState::Running
                    && t.desired_state == shoal_api::TaskState::Running
            })
            .count()
    })
}

#[test]
fn a_stack_deploys_redeploys_lists_and_goes_through_the_docker_cli() {
    let d = Daemon::init("m1");
    d.import_busybox();
    let file = write_stack(&d, 2);
    let file = file.to_str().unwrap();

    let out = d.docker_ok(&["stack", "deploy", "-c", file, "app"]);
    for made in ["Creating network app_front", "Creating network app_back", "Creating secret app_token"] {
        assert!(out.contains(made), "{made:?} in {out}");
    }
    assert!(out.contains("Creating config app_conf") && out.contains("Creating service app_web"), "{out}");

    // Shoal's own view: the stack, its services with the label, networks, secret, config.
    let c = d.client();
    let (stacks, services, secrets, configs, networks) = block_on(async {
        let filter = ServiceFilter { stack: Some("app".into()), ..Default::default() };
        (
            c.stacks().await.unwrap(),
            c.services(&filter).await.unwrap(),
            c.payloads(PayloadKind::Secret).await.unwrap(),
            c.payloads(PayloadKind::Config).await.unwrap(),
            c.networks().await.unwrap(),
        )
    });
    let app = stacks.iter().find(|s| s.name == "app").expect("stack app in shoal stack ls");
    assert_eq!((app.services, app.networks, app.secrets, app.configs), (2, 2, 1, 1));
    let mut names: Vec<&str> = services.iter().map(|s| s.spec.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["app_web", "app_worker"]);
    let web = services.iter().find(|s| s.spec.name == "app_web").unwrap();
    assert_eq!(web.spec.labels.get("tier").map(String::as_str), Some("web"));
    assert_eq!(web.spec.task_template.container.secrets.len(), 1);
    let health = web.spec.task_template.container.healthcheck.as_ref().expect("the health check");
    assert_eq!(
        (health.test.as_slice(), health.interval),
        (&["CMD".to_owned(), "true".to_owned()][..], Duration::from_secs(1))
    );
    assert_eq!(web.spec.task_template.container.configs.len(), 1);
    assert_eq!(web.spec.task_template.networks.len(), 1);
    assert!(secrets.iter().any(|s| s.name == "app_token") && configs.iter().any(|s| s.name == "app_conf"));
    assert!(
        networks.iter().any(|n| n.spec.name == "app_front")
            && networks.iter().any(|n| n.spec.name == "app_back")
    );

    // The CLI's own listings of it.
    wait_for("app_web's two tasks running", Duration::from_secs(60), || running(&d, "app_web") == 2);
    let ls = d.docker_ok(&["stack", "ls"]);
    assert!(ls.lines().any(|l| l.split_whitespace().take(2).eq(["app", "2"])), "{ls}");
    let services = d.docker_ok(&["stack", "services", "--format", "{{.Name}} {{.Replicas}}", "app"]);
    assert!(services.lines().any(|l| l == "app_web 2/2"), "{services}");
    let ps = d.docker_ok(&["stack", "ps", "--format", "{{.Name}} {{.CurrentState}}", "app"]);
    assert!(ps.lines().any(|l| l.starts_with("app_web.1 Running")), "{ps}");
    assert!(ps.lines().any(|l| l.starts_with("app_worker.1 ")), "{ps}");

    // A redeploy with three replicas updates the service in place (same id), its
    // health check and network going through the round trip unchanged.
    let file = write_stack(&d, 3);
    let out = d.docker_ok(&["stack", "deploy", "-c", file.to_str().unwrap(), "app"]);
    assert!(out.contains("Updating service app_web"), "{out}");
    let after = block_on(c.service("app_web")).unwrap();
    assert_eq!(after.id, web.id);
    assert_eq!(after.spec.mode, shoal_api::service::ServiceMode::Replicated { replicas: 3 });
    assert_eq!(after.spec.task_template, web.spec.task_template, "nothing else changed");

    // Removal takes everything of the stack, networks included.
    let out = d.docker_ok(&["stack", "rm", "app"]);
    assert!(out.contains("Removing service app_web") && out.contains("Removing network app_front"), "{out}");
    let left = block_on(async {
        let filter = ServiceFilter { stack: Some("app".into()), ..Default::default() };
        (c.services(&filter).await.unwrap().len(), c.stacks().await.unwrap().iter().any(|s| s.name == "app"))
    });
    assert_eq!(left, (0, false), "nothing of the stack is left");
    assert_eq!(d.docker_ok(&["stack", "ls", "--format", "{{.Name}}"]).trim(), "");
}
