//! Specs shared by the integration tests.

use std::time::Duration;

use shoal_api::service::*;
use shoal_api::task_spec::*;

/// A spec with every field set away from its default.
pub(crate) fn full_spec() -> ServiceSpec {
    let mut s = ServiceSpec::new("web", "127.0.0.1:5000/shoal/web:2");
    s.labels.insert("team".into(), "edge".into());
    s.mode = ServiceMode::Replicated { replicas: 3 };
    let c = &mut s.task_template.container;
    c.command = vec!["/bin/httpd".into()];
    c.args = vec!["-f".into(), "-p".into(), "80".into()];
    c.env = vec!["MODE=prod".into()];
    c.workdir = Some("/srv".into());
    c.user = Some("1000:1000".into());
    c.hostname = Some("web-host".into());
    c.labels.insert("role".into(), "frontend".into());
    c.mounts = vec![
        Mount::Bind { source: "/etc/ssl".into(), target: "/ssl".into(), read_only: true },
        Mount::Volume { source: "web-data".into(), target: "/data".into(), read_only: false, no_copy: false },
        Mount::Tmpfs { target: "/tmp".into(), size_bytes: 64 << 20, mode: Some(0o1777) },
    ];
    c.healthcheck = Some(HealthCheck {
        test: vec!["CMD".into(), "wget".into(), "-q".into(), "localhost".into()],
        interval: Duration::from_secs(2),
        timeout: Duration::from_millis(500),
        retries: 5,
        start_period: Duration::from_secs(10),
        start_interval: Duration::from_secs(1),
    });
    c.stop_signal = Some("SIGQUIT".into());
    c.stop_grace_period = Duration::from_secs(30);
    c.read_only = true;
    c.secrets = vec![FileReference::new("db-password")];
    c.configs = vec![FileReference {
        source: "nginx-conf".into(),
        target: Some("/etc/nginx.conf".into()),
        uid: 101,
        gid: 101,
        mode: 0o440,
    }];
    let t = &mut s.task_template;
    t.resources.limits = Limits { nano_cpus: 1_500_000_000, memory_bytes: 256 << 20, pids: 100 };
    t.resources.reservations = Reservations { nano_cpus: 250_000_000, memory_bytes: 64 << 20 };
    t.restart_policy = RestartPolicy {
        condition: RestartCondition::OnFailure,
        delay: Duration::from_secs(2),
        max_attempts: 3,
        window: Duration::from_secs(120),
    };
    t.placement = Placement {
        constraints: vec!["node.labels.zone==a".into(), "node.role!=manager".into()],
        preferences: vec![PlacementPreference { spread: "node.labels.rack".into() }],
        max_replicas: 2,
    };
    t.networks = vec![NetworkAttachmentConfig { target: "front".into(), aliases: vec!["www".into()] }];
    t.force_update = 1;
    s.update_config = UpdateConfig {
        parallelism: 2,
        delay: Duration::from_secs(10),
        failure_action: FailureAction::Rollback,
        monitor: Duration::from_secs(30),
        max_failure_ratio: 0.25,
        order: UpdateOrder::StartFirst,
        progress_deadline: Duration::from_secs(120),
    };
    s.rollback_config = UpdateConfig { failure_action: FailureAction::Continue, ..UpdateConfig::default() };
    s.endpoint_spec = EndpointSpec {
        mode: EndpointMode::Vip,
        ports: vec![
            PortConfig {
                name: Some("http".into()),
                protocol: Protocol::Tcp,
                target_port: 80,
                published_port: Some(8080),
                publish_mode: PublishMode::Ingress,
            },
            PortConfig {
                name: None,
                protocol: Protocol::Udp,
                target_port: 53,
                published_port: Some(5353),
                publish_mode: PublishMode::Host,
            },
        ],
    };
    s
}
