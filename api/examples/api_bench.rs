//! HTTP load client for `bench/api/run`: the same client measures Shoal's and Docker's
//! APIs. N tasks each send GETs to one path over a unix socket in a closed loop (the next
//! request leaves when the previous answer is read in full), first for a warm-up that is
//! not counted, then for the measured time. Every answer must be `200 OK`; one that is
//! not stops the run with an error. Prints one JSON line:
//! `{"path", "concurrency", "requests", "rps", "p50_ms", "p99_ms", "mean_ms", "body_bytes"}`.
//!
//! ```text
//! api_bench --socket PATH --path /v1/services [--concurrency N] [--duration SECS]
//!           [--warmup SECS] [--header 'K: V']...
//! ```

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

#[derive(Debug)]
struct Args {
    socket: String,
    path: String,
    concurrency: usize,
    duration: f64,
    warmup: f64,
    headers: HeaderMap,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        socket: String::new(),
        path: String::new(),
        concurrency: 1,
        duration: 10.0,
        warmup: 2.0,
        headers: HeaderMap::new(),
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
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.socket.is_empty() || !a.path.starts_with('/') || a.concurrency == 0 || a.duration <= 0.0 {
        return Err("usage: api_bench --socket PATH --path /PATH [--concurrency N] [--duration SECS] \
                    [--warmup SECS] [--header 'K: V']..."
            .into());
    }
    Ok(a)
}

/// What one task measured: latencies (ms) of requests sent after the warm-up, and the
/// size of the last body read.
async fn worker(
    http: reqwest::Client,
    url: String,
    measure_from: Instant,
    end: Instant,
) -> Result<(Vec<f64>, usize), String> {
    let mut lat = Vec::new();
    let mut body_bytes = 0;
    loop {
        let t = Instant::now();
        if t >= end {
            return Ok((lat, body_bytes));
        }
        let resp = http.get(&url).send().await.map_err(|e| format!("GET {url}: {e:?}"))?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| format!("GET {url}: reading the body: {e:?}"))?;
        if status != reqwest::StatusCode::OK {
            return Err(format!("GET {url}: {status}: {}", String::from_utf8_lossy(&body)));
        }
        body_bytes = body.len();
        if t >= measure_from {
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = parse_args()?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .unix_socket(args.socket.as_str())
        .default_headers(args.headers.clone())
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .map_err(|e| e.to_string())?;
    // The host part only fills the Host header: the connection goes to the socket.
    let url = format!("http://localhost{}", args.path);
    let start = Instant::now();
    let measure_from = start + Duration::from_secs_f64(args.warmup);
    let end = measure_from + Duration::from_secs_f64(args.duration);
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| tokio::spawn(worker(http.clone(), url.clone(), measure_from, end)))
        .collect();
    let (mut lat, mut body_bytes) = (Vec::new(), 0);
    for w in workers {
        let (l, b) = w.await.map_err(|e| e.to_string())??;
        lat.extend(l);
        body_bytes = body_bytes.max(b);
    }
    // Requests started in the window; the last ones finish slightly after `end`.
    let measured = Instant::now().duration_since(measure_from).as_secs_f64();
    lat.sort_by(f64::total_cmp);
    let pct =
        |p: f64| lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0);
    let n = lat.len();
    let out = serde_json::json!({
        "path": args.path,
        "concurrency": args.concurrency,
        "requests": n,
        "seconds": measured,
        "rps": n as f64 / measured,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": lat.iter().sum::<f64>() / n.max(1) as f64,
        "body_bytes": body_bytes,
    });
    println!("{out}");
    Ok(())
}
