//! HTTP load client for `bench/api/run`: the same client measures Shoal's and Docker's
//! APIs. N tasks each send GETs to one path over a unix socket in a closed loop (the next
//! request leaves when the previous answer is read in full), first for a warm-up that is
//! not counted, then for the measured time. Every answer must be `200 OK`; one that is
//! not stops the run with an error. Prints one JSON line:
//! `{"path", "concurrency", "requests", "rps", "p50_ms", "p99_ms", "mean_ms", "body_bytes"}`.
//!
//! With `--index shoal|docker` it also measures how stale each answer was. The index an
//! answer reflects is Shoal's `X-Shoal-Index` header, or for Docker the largest
//! `Version.Index` of the objects in the answer. A tracker task follows the newest index
//! of the same list during the run (`--track PATH`: Shoal's blocking query
//! `PATH&wait_index=N`, which answers as soon as the index passes N; for Docker, which
//! has none, a poll of PATH every `--track-every-ms`), and every answer a reader gets
//! also counts as seen. When an answer at index `i` arrives, the newest index seen so
//! far is `L`: its staleness is `L - i` in index units, and in time, how long before
//! its arrival an index above `i` was first seen (0 when `i` is the newest). The JSON
//! line then adds `stale_index_p50/p99`, `stale_ms_p50/p99`, `stale_share` (answers
//! behind the newest) and `index_first/last` (the newest index at the start and end).
//!
//! ```text
//! api_bench --socket PATH --path /v1/services [--concurrency N] [--duration SECS]
//!           [--warmup SECS] [--header 'K: V']... [--index shoal|docker --track PATH
//!           [--track-every-ms MS]]
//! ```

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

/// Where the index an answer reflects is found.
#[derive(Debug, Clone, Copy, PartialEq)]
enum IndexSource {
    /// The `X-Shoal-Index` header.
    Shoal,
    /// The largest `Version.Index` of the objects in the JSON array.
    Docker,
}

#[derive(Debug)]
struct Args {
    socket: String,
    path: String,
    concurrency: usize,
    duration: f64,
    warmup: f64,
    headers: HeaderMap,
    index: Option<IndexSource>,
    track: String,
    track_every: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        socket: String::new(),
        path: String::new(),
        concurrency: 1,
        duration: 10.0,
        warmup: 2.0,
        headers: HeaderMap::new(),
        index: None,
        track: String::new(),
        track_every: Duration::from_millis(10),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = |v: &str| v.parse::<f64>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--socket" => a.socket = value,
            "--path" => a.path = value,
            "--concurrency" => a.concurrency = number(&value)? as usize,
            "--duration" => a.duration = number(&value)?,
            "--warmup" => a.warmup = number(&value)?,
            "--header" => {
                let (k, v) = value.split_once(':').ok_or("--header takes 'Name: value'")?;
                let k = HeaderName::try_from(k.trim()).map_err(|e| format!("header {k}: {e}"))?;
                let v = HeaderValue::try_from(v.trim()).map_err(|e| format!("header {v}: {e}"))?;
                a.headers.insert(k, v);
            }
            "--index" => {
                a.index = Some(match value.as_str() {
                    "shoal" => IndexSource::Shoal,
                    "docker" => IndexSource::Docker,
                    _ => return Err(format!("--index {value}: shoal or docker")),
                })
            }
            "--track" => a.track = value,
            "--track-every-ms" => a.track_every = Duration::from_secs_f64(number(&value)? / 1000.0),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.socket.is_empty()
        || !a.path.starts_with('/')
        || a.concurrency == 0
        || a.duration <= 0.0
        || a.index.is_some() != a.track.starts_with('/')
    {
        return Err("usage: api_bench --socket PATH --path /PATH [--concurrency N] [--duration SECS] \
                    [--warmup SECS] [--header 'K: V']... [--index shoal|docker --track /PATH \
                    [--track-every-ms MS]]"
            .into());
    }
    Ok(a)
}

/// The newest indexes seen during the run: each step up and when it was first seen.
#[derive(Default)]
struct Newest {
    steps: Vec<(u64, Instant)>,
}

impl Newest {
    /// Records an index seen at `at`; an index not above the newest changes nothing.
    fn saw(&mut self, index: u64, at: Instant) {
        if self.steps.last().is_none_or(|&(newest, _)| index > newest) {
            self.steps.push((index, at));
        }
    }

    /// How far an answer at `index` arriving at `at` is behind: in index units, and
    /// in ms since an index above it was first seen.
    fn behind(&self, index: u64, at: Instant) -> (u64, f64) {
        let newest = self.steps.last().map_or(0, |&(i, _)| i);
        let first_above = self.steps.partition_point(|&(i, _)| i <= index);
        let ms = self
            .steps
            .get(first_above)
            .map_or(0.0, |&(_, seen)| at.saturating_duration_since(seen).as_secs_f64() * 1000.0);
        (newest.saturating_sub(index), ms)
    }
}

/// Docker's objects as far as the index goes.
#[derive(serde::Deserialize)]
struct DockerObject {
    #[serde(rename = "Version")]
    version: Option<DockerVersion>,
}

#[derive(serde::Deserialize)]
struct DockerVersion {
    #[serde(rename = "Index")]
    index: u64,
}

/// The index an answer reflects.
fn answer_index(source: IndexSource, headers: &HeaderMap, body: &[u8]) -> Result<u64, String> {
    match source {
        IndexSource::Shoal => headers
            .get("x-shoal-index")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| "the answer has no X-Shoal-Index header".to_string()),
        IndexSource::Docker => {
            let objects: Vec<DockerObject> = serde_json::from_slice(body)
                .map_err(|e| format!("the answer is not a list of objects: {e}"))?;
            Ok(objects.iter().filter_map(|o| o.version.as_ref()).map(|v| v.index).max().unwrap_or(0))
        }
    }
}

/// One GET read in full: its headers and body, or an error for anything but `200 OK`.
async fn get(http: &reqwest::Client, url: &str) -> Result<(HeaderMap, bytes::Bytes), String> {
    let resp = http.get(url).send().await.map_err(|e| format!("GET {url}: {e:?}"))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.bytes().await.map_err(|e| format!("GET {url}: reading the body: {e:?}"))?;
    if status != reqwest::StatusCode::OK {
        return Err(format!("GET {url}: {status}: {}", String::from_utf8_lossy(&body)));
    }
    Ok((headers, body))
}

/// Follows the newest index of the tracked list until `end`.
async fn tracker(
    http: reqwest::Client,
    url: String,
    source: IndexSource,
    every: Duration,
    newest: Arc<Mutex<Newest>>,
    end: Instant,
) -> Result<(), String> {
    let mut last = 0;
    while Instant::now() < end {
        let url = match source {
            // A blocking query: it answers once the index passes `last` (or after 2 s).
            IndexSource::Shoal => {
                format!("{url}{}wait_index={last}&wait=2s", if url.contains('?') { '&' } else { '?' })
            }
            IndexSource::Docker => url.clone(),
        };
        let (headers, body) = get(&http, &url).await?;
        let at = Instant::now();
        last = answer_index(source, &headers, &body)?;
        newest.lock().expect("not poisoned").saw(last, at);
        if source == IndexSource::Docker {
            tokio::time::sleep(every).await;
        }
    }
    Ok(())
}

/// What one task measured after the warm-up: latencies (ms), staleness (index units,
/// ms) when asked, and the size of the last body read.
#[derive(Default)]
struct Measured {
    lat: Vec<f64>,
    stale_index: Vec<f64>,
    stale_ms: Vec<f64>,
    body_bytes: usize,
}

async fn worker(
    http: reqwest::Client,
    url: String,
    index: Option<(IndexSource, Arc<Mutex<Newest>>)>,
    measure_from: Instant,
    end: Instant,
) -> Result<Measured, String> {
    let mut m = Measured::default();
    loop {
        let t = Instant::now();
        if t >= end {
            return Ok(m);
        }
        let (headers, body) = get(&http, &url).await?;
        let arrived = Instant::now();
        m.body_bytes = body.len();
        let stale = match &index {
            Some((source, newest)) => {
                let i = answer_index(*source, &headers, &body)?;
                let mut newest = newest.lock().expect("not poisoned");
                newest.saw(i, arrived);
                Some(newest.behind(i, arrived))
            }
            None => None,
        };
        if t >= measure_from {
            m.lat.push(arrived.duration_since(t).as_secs_f64() * 1000.0);
            if let Some((units, ms)) = stale {
                m.stale_index.push(units as f64);
                m.stale_ms.push(ms);
            }
        }
    }
}

/// The `p` quantile (nearest rank) of sorted values; 0 for none.
fn quantile(sorted: &[f64], p: f64) -> f64 {
    sorted.get(((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0)
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = parse_args()?;
    // reqwest needs a TLS provider even for plain HTTP over a unix socket.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .no_proxy()
        .unix_socket(args.socket.as_str())
        .default_headers(args.headers.clone())
        .pool_max_idle_per_host(args.concurrency + 1)
        .build()
        .map_err(|e| e.to_string())?;
    // The host part only fills the Host header: the connection goes to the socket.
    let url = format!("http://localhost{}", args.path);
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    let newest = Arc::new(Mutex::new(Newest::default()));
    let track = args.index.map(|source| {
        let url = format!("http://localhost{}", args.track);
        tokio::spawn(tracker(http.clone(), url, source, args.track_every, newest.clone(), end))
    });
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let index = args.index.map(|source| (source, newest.clone()));
            tokio::spawn(worker(http.clone(), url.clone(), index, measure_from, end))
        })
        .collect();
    let mut all = Measured::default();
    for w in workers {
        let m = w.await.map_err(|e| e.to_string())??;
        all.lat.extend(m.lat);
        all.stale_index.extend(m.stale_index);
        all.stale_ms.extend(m.stale_ms);
        all.body_bytes = all.body_bytes.max(m.body_bytes);
    }
    // Requests started in the window; the last ones finish slightly after `end`.
    let measured = Instant::now().duration_since(measure_from).as_secs_f64();
    if let Some(track) = track {
        track.await.map_err(|e| e.to_string())??;
    }
    for v in [&mut all.lat, &mut all.stale_index, &mut all.stale_ms] {
        v.sort_by(f64::total_cmp);
    }
    let n = all.lat.len();
    let mut out = serde_json::json!({
        "path": args.path,
        "concurrency": args.concurrency,
        "requests": n,
        "seconds": measured,
        "rps": n as f64 / measured,
        "p50_ms": quantile(&all.lat, 0.50),
        "p99_ms": quantile(&all.lat, 0.99),
        "mean_ms": all.lat.iter().sum::<f64>() / n.max(1) as f64,
        "body_bytes": all.body_bytes,
    });
    if args.index.is_some() {
        let steps = &newest.lock().expect("not poisoned").steps;
        let at = |t: Instant| steps.iter().take_while(|&&(_, seen)| seen <= t).last().map_or(0, |&(i, _)| i);
        let stale = all.stale_index.iter().filter(|&&u| u > 0.0).count();
        out["track"] = args.track.clone().into();
        out["stale_index_p50"] = quantile(&all.stale_index, 0.50).into();
        out["stale_index_p99"] = quantile(&all.stale_index, 0.99).into();
        out["stale_ms_p50"] = quantile(&all.stale_ms, 0.50).into();
        out["stale_ms_p99"] = quantile(&all.stale_ms, 0.99).into();
        out["stale_share"] = (stale as f64 / n.max(1) as f64).into();
        out["index_first"] = at(measure_from).into();
        out["index_last"] = steps.last().map_or(0, |&(i, _)| i).into();
        out["index_steps"] = steps.iter().filter(|&&(_, seen)| seen >= measure_from).count().into();
    }
    println!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staleness_counts_from_the_first_newer_index() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut n = Newest::default();
        n.saw(5, at(0));
        n.saw(7, at(10));
        n.saw(6, at(15)); // older than the newest: no step
        n.saw(9, at(20));
        assert_eq!(n.steps.len(), 3);
        // The newest answer is not stale.
        assert_eq!(n.behind(9, at(30)), (0, 0.0));
        // Index 5 is 4 behind, and stale since index 7 was seen at 10 ms.
        let (units, ms) = n.behind(5, at(30));
        assert_eq!(units, 4);
        assert!((ms - 20.0).abs() < 1e-6, "{ms}");
        // Index 7 is stale since 9 was seen at 20 ms.
        let (units, ms) = n.behind(7, at(30));
        assert_eq!(units, 2);
        assert!((ms - 10.0).abs() < 1e-6, "{ms}");
    }

    #[test]
    fn docker_index_is_the_largest_version_in_the_answer() {
        let body = br#"[{"ID":"a","Version":{"Index":12}},{"ID":"b","Version":{"Index":40}},{"ID":"c"}]"#;
        assert_eq!(answer_index(IndexSource::Docker, &HeaderMap::new(), body), Ok(40));
        let mut h = HeaderMap::new();
        h.insert("x-shoal-index", HeaderValue::from_static("17"));
        assert_eq!(answer_index(IndexSource::Shoal, &h, b"[]"), Ok(17));
        assert!(answer_index(IndexSource::Shoal, &HeaderMap::new(), b"[]").is_err());
    }
}
