//! Encoding a registry for a scrape: OpenMetrics 1.0 when the scraper's `Accept`
//! asks for `application/openmetrics-text`, else the Prometheus text format 0.0.4;
//! always with the matching `Content-Type` (Prometheus 3 fails a scrape without one).

use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::registry::Registry;

/// The `Content-Type` of an OpenMetrics 1.0 exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `Content-Type` of a text 0.0.4 exposition.
pub const TEXT_CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The two text formats served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 (counters as families, `# UNIT`, a final `# EOF`).
    OpenMetrics,
    /// The classic Prometheus text format, version 0.0.4.
    Text,
}

impl Format {
    /// The format for a request's `Accept` header: OpenMetrics only if it is asked
    /// for by name (with a non-zero quality), the text format otherwise.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let asks = accept.unwrap_or_default().split(',').any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default();
            let zero = parts
                .any(|p| p.strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()).is_some_and(|q| q <= 0.0));
            media.eq_ignore_ascii_case("application/openmetrics-text") && !zero
        });
        if asks { Format::OpenMetrics } else { Format::Text }
    }

    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
            Format::Text => TEXT_CONTENT_TYPE,
        }
    }
}

/// `registry`'s metrics in `format`.
pub fn encode(registry: &Registry, format: Format) -> String {
    let mut out = String::with_capacity(16 * 1024);
    let written = match format {
        Format::OpenMetrics => text::encode(&mut out, registry),
        Format::Text => prometheus_text::encode(&mut out, registry),
    };
    // Writing to a String fails only if a collector reports an error, which ours never do.
    if let Err(e) = written {
        tracing::error!(error = %e, "a metric could not be encoded; the scrape is partial");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;

    #[test]
    fn openmetrics_only_when_asked_for() {
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(Format::negotiate(Some("text/plain;version=0.0.4")), Format::Text);
        let prometheus = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,\
                          application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("application/openmetrics-text;q=0, text/plain")), Format::Text);
    }

    #[test]
    fn both_formats_encode_a_counter() {
        let mut registry = Registry::default();
        let c: Counter = Counter::default();
        c.inc();
        registry.register("shoal_things", "Things done", c);
        let om = encode(&registry, Format::OpenMetrics);
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(
            om.contains("# TYPE shoal_things counter\n") && om.contains("shoal_things_total 1\n"),
            "{om}"
        );
        let text = encode(&registry, Format::Text);
        assert!(!text.contains("# EOF"), "{text}");
        assert!(text.contains("# TYPE shoal_things_total counter\nshoal_things_total 1\n"), "{text}");
    }
}
