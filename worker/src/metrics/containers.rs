//! Per-container resource series, opt-in (`shoal daemon --metrics-per-container`, as
//! Nomad's `publish_allocation_metrics`): one series per running task container and
//! metric, under cAdvisor's names so existing dashboards work. Read from each
//! container's cgroup at scrape time; labelled `name` (the container), `service`
//! (its service's id) and `task_slot`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Unit;

use crate::runtime::{Runtime, Status};

/// A container's service and slot, by container id.
pub type Owners = Arc<Mutex<HashMap<String, (String, Option<u64>)>>>;

/// The collector of the task containers' resource use.
#[derive(Debug, Clone)]
pub struct ContainerCollector {
    runtime: Arc<Runtime>,
    owners: Owners,
    prefix: &'static str,
}

impl ContainerCollector {
    /// A collector of the running containers of `runtime` whose id starts with
    /// `prefix`; `owners` names their services and slots.
    pub fn new(runtime: Arc<Runtime>, owners: Owners, prefix: &'static str) -> ContainerCollector {
        ContainerCollector { runtime, owners, prefix }
    }
}

type Labels = Vec<(&'static str, String)>;

impl Collector for ContainerCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let cpu: Family<Labels, Counter<f64>> = Family::default();
        let oom: Family<Labels, Counter> = Family::default();
        let memory: Family<Labels, Gauge> = Family::default();
        let limit: Family<Labels, Gauge> = Family::default();
        let processes: Family<Labels, Gauge> = Family::default();
        let owners = self.owners.lock().expect("owners lock").clone();
        for id in self.runtime.list().unwrap_or_default() {
            if !id.starts_with(self.prefix) || !matches!(self.runtime.status(&id), Ok(Status::Running(_))) {
                continue;
            }
            let (Ok(config), Ok(stats)) = (self.runtime.config(&id), self.runtime.stats(&id)) else {
                continue;
            };
            let (service, slot) = owners.get(&id).cloned().unwrap_or_default();
            let labels: Labels = vec![
                ("name", id.clone()),
                ("service", service),
                ("task_slot", slot.map(|s| s.to_string()).unwrap_or_default()),
            ];
            cpu.get_or_create(&labels).inc_by(stats.cpu_nanos as f64 / 1e9);
            oom.get_or_create(&labels).inc_by(stats.oom_kills);
            memory.get_or_create(&labels).set(stats.memory_bytes as i64);
            processes.get_or_create(&labels).set(stats.pids as i64);
            if config.limits.memory_bytes > 0 {
                limit.get_or_create(&labels).set(config.limits.memory_bytes as i64);
            }
        }
        cpu.encode(e.encode_descriptor(
            "container_cpu_usage_seconds",
            "CPU time the container used",
            None,
            cpu.metric_type(),
        )?)?;
        memory.encode(e.encode_descriptor(
            "container_memory_usage_bytes",
            "Memory the container's cgroup uses, page cache included",
            None,
            memory.metric_type(),
        )?)?;
        limit.encode(e.encode_descriptor(
            "container_spec_memory_limit",
            "The container's memory limit (absent when unlimited)",
            Some(&Unit::Bytes),
            limit.metric_type(),
        )?)?;
        oom.encode(e.encode_descriptor(
            "container_oom_events",
            "Processes the kernel OOM-killed in the container",
            None,
            oom.metric_type(),
        )?)?;
        processes.encode(e.encode_descriptor(
            "container_processes",
            "Processes and threads in the container",
            None,
            processes.metric_type(),
        )?)
    }
}
