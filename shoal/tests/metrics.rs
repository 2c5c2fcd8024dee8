//! Prometheus metrics of real daemons: `/metrics` on a manager's unix socket, on its
//! TCP listener (the read-only token may scrape) and on `--metrics-addr`, parsed by a
//! text-format parser, in both formats; the figures follow the cluster (a scale moves
//! `shoal_service_replicas_desired`), and a worker-only node, scraped on its
//! `--metrics-addr`, counts a container killed behind its back as a failure.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use openmetrics_parser::{OpenMetricsType, PrometheusType, PrometheusValue};
use shoal_api::ServiceSpec;
use shoal_api::service::ServiceMode;
use shoal_api::wire::TaskFilter;
use support::daemons::{Daemon, block_on, free_addr, serve_forever};
use support::wait_for;

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const OPENMETRICS_ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0;q=0.6,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";

/// `GET /metrics` with `accept` through `http` at `base`: (content type, body).
fn get(http: &reqwest::Client, base: &str, accept: &str, token: Option<&str>) -> (u16, String, String) {
    block_on(async {
        let mut req = http.get(format!("{base}/metrics")).header("accept", accept);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let ct =
            resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
        (status, ct, resp.text().await.unwrap())
    })
}

/// A client of the daemon's unix socket.
fn socket_http(d: &Daemon) -> reqwest::Client {
    reqwest::Client::builder().unix_socket(d.socket.clone()).build().unwrap()
}

/// A parsed text 0.0.4 exposition.
type Exposition = openmetrics_parser::MetricsExposition<PrometheusType, PrometheusValue>;

/// Checks a text exposition's shape (one HELP and one TYPE per name) and parses it
/// with a text-format parser (a grammar, so a line it cannot read fails the parse).
fn parse(body: &str) -> Exposition {
    assert!(body.ends_with('\n'), "the exposition ends with a newline");
    unique_metadata(body);
    openmetrics_parser::prometheus::parse_prometheus(body)
        .unwrap_or_else(|e| panic!("the exposition does not parse: {e:?}\n{body}"))
}

/// Asserts that no metric has two HELP or two TYPE lines.
fn unique_metadata(body: &str) {
    for prefix in ["# HELP ", "# TYPE "] {
        let mut seen = HashSet::new();
        for line in body.lines().filter_map(|l| l.strip_prefix(prefix)) {
            let name = line.split(' ').next().unwrap();
            assert!(seen.insert(name.to_owned()), "two {prefix:?} lines for {name}");
        }
    }
}

/// Whether a sample's labels include `labels`.
fn has_labels<V: openmetrics_parser::RenderableMetricValue + Clone>(
    sample: &openmetrics_parser::Sample<V>,
    labels: &[(&str, &str)],
) -> bool {
    let set = sample.get_labelset().unwrap();
    labels.iter().all(|(k, v)| set.get_label_value(k) == Some(*v))
}

/// The value of the sample of family `name` whose labels include `labels` (a
/// histogram's count), if there is one.
fn value(s: &Exposition, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let sample = s.families.get(name)?.iter_samples().find(|x| has_labels(x, labels))?;
    Some(match &sample.value {
        PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n) => n.as_f64(),
        PrometheusValue::Counter(c) => c.value.as_f64(),
        PrometheusValue::Histogram(h) => h.count.expect("a histogram has a count") as f64,
        PrometheusValue::Summary(_) => panic!("{name} is a summary: Shoal exports none"),
    })
}

/// Every value of label `label` in `s`.
fn label_values(s: &Exposition, label: &str) -> HashSet<String> {
    s.families
        .values()
        .flat_map(|f| f.iter_samples())
        .filter_map(|x| x.get_labelset().unwrap().get_label_value(label).map(str::to_owned))
        .collect()
}

fn scrape_socket(d: &Daemon) -> Exposition {
    let (status, ct, body) = get(&socket_http(d), "http://shoal", "*/*", None);
    assert_eq!((status, ct.as_str()), (200, TEXT), "{body}");
    parse(&body)
}

#[test]
fn a_manager_serves_metrics_that_parse_and_follow_a_scale() {
    let metrics_addr = free_addr();
    let d = Daemon::init_with("m1", &["--metrics-addr", &metrics_addr]);
    d.import_busybox();
    let c = d.client();

    // Text 0.0.4 by default, on the socket.
    let s = scrape_socket(&d);
    assert_eq!(value(&s, "shoal_raft_is_leader", &[]), Some(1.0));
    assert_eq!(value(&s, "shoal_raft_has_leader", &[]), Some(1.0));
    assert!(value(&s, "shoal_raft_term", &[]).unwrap() >= 1.0);
    assert!(value(&s, "shoal_raft_applied_index", &[]).unwrap() >= 1.0);
    assert!(value(&s, "shoal_raft_log_size_bytes", &[]).unwrap() > 0.0, "the log's segments take space");
    assert!(value(&s, "process_cpu_seconds_total", &[]).unwrap() > 0.0);
    assert!(value(&s, "process_resident_memory_bytes", &[]).unwrap() > 0.0);
    assert_eq!(value(&s, "shoal_build_info", &[("version", env!("CARGO_PKG_VERSION"))]), Some(1.0));
    let ready = [("state", "ready"), ("availability", "active"), ("role", "manager")];
    assert_eq!(value(&s, "shoal_nodes", &ready), Some(1.0));
    assert_eq!(value(&s, "shoal_nodes", &[("state", "down")]), Some(0.0), "known values are pre-set to 0");
    assert_eq!(value(&s, "shoal_tasks", &[("state", "running")]), Some(0.0));
    assert_eq!(value(&s, "shoal_objects", &[("kind", "node")]), Some(1.0));
    assert_eq!(value(&s, "shoal_container_failures_total", &[("reason", "signal")]), Some(0.0));
    assert!(!s.families.contains_key("container_memory_usage_bytes"), "per-container series are opt-in");
    for name in ["shoal_raft_proposal_duration_seconds", "shoal_http_request_duration_seconds"] {
        let family = s.families.get(name).unwrap_or_else(|| panic!("{name} is exported"));
        assert_eq!(family.family_type, PrometheusType::Histogram);
        assert!(!family.help.is_empty(), "{name} has a HELP");
    }

    // OpenMetrics when asked for, with its content type and `# EOF`.
    let (status, ct, om) = get(&socket_http(&d), "http://shoal", OPENMETRICS_ACCEPT, None);
    assert_eq!((status, ct.as_str()), (200, OPENMETRICS));
    assert!(om.ends_with("# EOF\n"), "{}", &om[om.len().saturating_sub(200)..]);
    unique_metadata(&om);
    // openmetrics-parser refuses a UNIT on histograms (OpenMetrics 1.0 allows one on
    // any family): the families it reads are parsed on their own, the rest checked.
    assert!(om.contains("# TYPE shoal_raft_proposal_duration_seconds histogram\n"));
    assert!(om.contains("# UNIT shoal_raft_proposal_duration_seconds seconds\n"));
    let counters: String =
        om.split("# HELP ").filter(|f| f.starts_with("shoal_container_failures ")).collect();
    let parsed = openmetrics_parser::openmetrics::parse_openmetrics(&format!("# HELP {counters}# EOF\n"))
        .unwrap_or_else(|e| panic!("the OpenMetrics counter does not parse: {e:?}\n{counters}"));
    assert_eq!(parsed.families["shoal_container_failures"].family_type, OpenMetricsType::Counter);

    // A service, then a scale: desired follows, and running catches up.
    let mut spec = ServiceSpec::new("web", "shoal/busybox");
    spec.mode = ServiceMode::Replicated { replicas: 2 };
    spec.task_template.container.args = serve_forever();
    block_on(c.create_service(&spec)).unwrap();
    let web = [("service", "web")];
    wait_for("2 replicas running in the metrics", Duration::from_secs(60), || {
        let s = scrape_socket(&d);
        value(&s, "shoal_service_replicas_desired", &web) == Some(2.0)
            && value(&s, "shoal_service_replicas_running", &web) == Some(2.0)
            && value(&s, "shoal_service_replicas_updated", &web) == Some(2.0)
    });
    block_on(c.scale_service("web", 3)).unwrap();
    let s = scrape_socket(&d);
    assert_eq!(value(&s, "shoal_service_replicas_desired", &web), Some(3.0), "read after the write");
    wait_for("3 replicas running in the metrics", Duration::from_secs(60), || {
        value(&scrape_socket(&d), "shoal_service_replicas_running", &web) == Some(3.0)
    });
    let s = scrape_socket(&d);
    assert_eq!(value(&s, "shoal_tasks", &[("state", "running")]), Some(3.0));
    assert!(value(&s, "shoal_container_starts_total", &[]).unwrap() >= 3.0);
    assert!(value(&s, "shoal_scheduler_decisions_total", &[("result", "placed")]).unwrap() >= 3.0);

    // Requests are counted by route template, never by URI.
    let scale = [("method", "POST"), ("route", "/v1/services/{id}/scale"), ("code", "200")];
    let routes = label_values(&s, "route");
    assert_eq!(value(&s, "shoal_http_requests_total", &scale), Some(1.0), "{routes:?}");
    assert_eq!(
        value(&s, "shoal_http_request_duration_seconds", &scale),
        Some(1.0),
        "timed by route and status"
    );
    assert!(routes.iter().all(|r| !r.contains("web")), "{routes:?}");

    // The same registry on --metrics-addr, plain HTTP.
    let plain = reqwest::Client::new();
    let (status, ct, body) = get(&plain, &format!("http://{metrics_addr}"), "*/*", None);
    assert_eq!((status, ct.as_str()), (200, TEXT));
    assert_eq!(value(&parse(&body), "shoal_service_replicas_desired", &web), Some(3.0));

    // On TCP: the read-only token may scrape, no token may not.
    let roots = std::fs::read_to_string(d.ca_file()).unwrap();
    let tls = shoal_pki::Credentials::trusting(&roots).unwrap().client_config(&[b"http/1.1"]).unwrap();
    let https = reqwest::Client::builder().tls_backend_preconfigured(tls.as_ref().clone()).build().unwrap();
    let base = format!("https://{}", d.api_addr);
    let read_only = block_on(c.read_only_api_token()).unwrap().token;
    let (status, ct, body) = get(&https, &base, "*/*", Some(&read_only));
    assert_eq!((status, ct.as_str()), (200, TEXT), "{body}");
    assert!(value(&parse(&body), "shoal_raft_term", &[]).is_some());
    assert_eq!(get(&https, &base, "*/*", None).0, 401);

    // A removed service's series go.
    block_on(c.remove_service("web")).unwrap();
    let s = scrape_socket(&d);
    assert_eq!(value(&s, "shoal_service_replicas_desired", &web), None);
    assert_eq!(value(&s, "shoal_service_update_state", &web), None);
}

#[test]
fn a_worker_counts_a_killed_container_as_a_failure() {
    let m = Daemon::init("m1");
    let metrics_addr = free_addr();
    let w = Daemon::worker_with("w1", &m, &["--metrics-addr", &metrics_addr, "--metrics-per-container"]);
    w.import_busybox();
    let c = m.client();
    let http = reqwest::Client::new();
    let base = format!("http://{metrics_addr}");
    let scrape = || {
        let (status, ct, body) = get(&http, &base, "*/*", None);
        assert_eq!((status, ct.as_str()), (200, TEXT), "{body}");
        parse(&body)
    };
    let failures = |s: &Exposition| value(s, "shoal_container_failures_total", &[("reason", "signal")]);
    let s = scrape();
    assert_eq!(failures(&s), Some(0.0));
    assert_eq!(value(&s, "shoal_node_info", &[("role", "worker")]), Some(1.0));
    assert_eq!(value(&s, "shoal_raft_term", &[]), None, "a worker has no Raft");

    // `sleep` as the container's init ignores SIGTERM: a stop with no grace kills it.
    let mut spec = ServiceSpec::new("sleeper", "shoal/busybox");
    spec.task_template.container.args = vec!["sleep".into(), "3600".into()];
    spec.task_template.placement.constraints = vec!["node.role==worker".into()];
    block_on(c.create_service(&spec)).unwrap();
    let filter = TaskFilter { service: Some("sleeper".into()), ..Default::default() };
    let mut victim = None;
    wait_for("the task to run on w1", Duration::from_secs(60), || {
        let tasks = block_on(c.tasks(&filter)).unwrap();
        victim = tasks.into_iter().find(|t| t.status.state == shoal_api::TaskState::Running);
        victim.is_some()
    });
    let victim = victim.unwrap();
    wait_for("the start counted", Duration::from_secs(10), || {
        value(&scrape(), "shoal_container_starts_total", &[]) == Some(1.0)
    });
    // Asked for, the container's own series, under cAdvisor's names.
    let name = format!("task.{}", victim.id);
    let mine = [("name", name.as_str()), ("service", victim.service_id.as_str()), ("task_slot", "1")];
    let s = scrape();
    assert!(value(&s, "container_memory_usage_bytes", &mine).unwrap() > 0.0);
    assert!(value(&s, "container_cpu_usage_seconds_total", &mine).is_some());
    assert_eq!(value(&s, "container_oom_events_total", &mine), Some(0.0));
    let s = scrape();
    for reason in ["start", "exit_code", "signal", "oom", "lost"] {
        let n = value(&s, "shoal_container_failures_total", &[("reason", reason)]);
        assert_eq!(n, Some(0.0), "a start is no failure ({reason})");
    }

    w.node.ok(&["container", "stop", "--time", "0", &format!("task.{}", victim.id)]);
    wait_for("the killed container counted as a failure", Duration::from_secs(30), || {
        failures(&scrape()) == Some(1.0)
    });
    // The replacement starts, and the failure is counted once, not at every pass.
    wait_for("the replacement to start", Duration::from_secs(60), || {
        value(&scrape(), "shoal_container_starts_total", &[]) == Some(2.0)
    });
    let s = scrape();
    assert_eq!(failures(&s), Some(1.0));
    for reason in ["start", "exit_code", "oom", "lost"] {
        let n = value(&s, "shoal_container_failures_total", &[("reason", reason)]);
        assert_eq!(n, Some(0.0), "the kill counts as a signal only ({reason})");
    }
    let start_latency = value(&s, "shoal_container_operation_duration_seconds", &[("op", "start")]);
    assert!(start_latency.unwrap() >= 2.0, "the start latency histogram counts both starts");
}
