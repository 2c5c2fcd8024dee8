//! The dispatcher's figure read at scrape time: the workers' sessions open on this
//! manager (only the leader holds any). Heartbeat counters are bumped where the
//! dispatcher takes them ([`crate::instruments`]).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::gauge::ConstGauge;

use crate::dispatcher::Dispatcher;

/// The collector of a dispatcher's sessions.
#[derive(Debug)]
pub struct DispatcherCollector(pub Dispatcher);

impl Collector for DispatcherCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let g = ConstGauge::new(self.0.sessions() as i64);
        g.encode(e.encode_descriptor(
            "shoal_dispatcher_sessions",
            "Workers' sessions open on this manager's dispatcher (the leader's)",
            None,
            g.metric_type(),
        )?)
    }
}
