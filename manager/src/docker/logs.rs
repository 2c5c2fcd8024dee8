//! `GET /services/{id}/logs` and `GET /tasks/{id}/logs` in Docker's format: the
//! cluster API's log streams (the dispatcher relays the workers' log files), framed
//! as Docker's multiplexed stream, one line per frame (8-byte header: 1 stdout, 2
//! stderr), each frame sent on its own. Shoal has no TTY, so the stream is never
//! raw. A task whose node cannot be reached is logged as a warning here, never sent
//! as a stream-3 frame (that aborts the whole `docker service logs`). A followed
//! task's stream ends once the task is terminal and its last lines are drained; a
//! followed service's takes in its tasks as they start running.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::StreamExt as _;
use serde::Deserialize;
use shoal_api::TaskState;
use shoal_proto::dispatcher as pb;

use super::{DockerError, DockerQuery, flag};
use crate::dispatcher::logs::LogOptions;
use crate::http::Api;
use crate::http::logs::placed_tasks;
use crate::plan::{PlanError, find};
use crate::store::{Kind, Object, Store};

pub(super) fn routes() -> Router<Api> {
    Router::new().route("/services/{id}/logs", get(service_logs)).route("/tasks/{id}/logs", get(task_logs))
}

/// The multiplexed stream's media type (moby HEAD sends it; 20.10 clients ignore it).
const MULTIPLEXED: &str = "application/vnd.docker.multiplexed-stream";

/// How often a followed task's state is checked.
const CHECK_EVERY: Duration = Duration::from_millis(250);

/// How long a terminal task's stream stays open without new lines before it ends:
/// several of the workers' 200 ms follow polls, and the relay through the leader.
const DRAIN: Duration = Duration::from_millis(1500);

/// The query of both endpoints (`moby:api/server/router/swarm/helpers.go`).
#[derive(Debug, Default, Deserialize)]
struct LogsQuery {
    stdout: Option<String>,
    stderr: Option<String>,
    follow: Option<String>,
    since: Option<String>,
    until: Option<String>,
    tail: Option<String>,
    timestamps: Option<String>,
    details: Option<String>,
}

/// A checked request: which streams, how each line is prefixed, what to read.
#[derive(Debug, Clone, Copy)]
struct Wanted {
    stdout: bool,
    stderr: bool,
    timestamps: bool,
    details: bool,
    opts: LogOptions,
}

impl Wanted {
    /// Checks `q`; `now` (Unix nanoseconds) stands for `tail=0`, "no old lines".
    fn from_query(q: &LogsQuery, now: i64) -> Result<Wanted, DockerError> {
        let (stdout, stderr) = (flag(q.stdout.as_deref()), flag(q.stderr.as_deref()));
        if !stdout && !stderr {
            return Err(DockerError::bad_request("Bad parameters: you must choose at least one stream"));
        }
        if q.until.as_deref().is_some_and(|u| !u.is_empty() && u != "0") {
            return Err(DockerError::unsupported("until", "Shoal's service and task logs take no end time"));
        }
        let mut since = match q.since.as_deref() {
            None | Some("") => 0,
            Some(text) => since_nanos(text)?,
        };
        let tail = match q.tail.as_deref().map(str::trim) {
            None | Some("" | "all") => 0,
            Some(text) => match text.parse::<i64>() {
                // Docker's `tail=0`: no old lines (then only new ones with `follow`).
                Ok(0) => {
                    since = since.max(now);
                    0
                }
                Ok(n) if n > 0 => n as u64,
                Ok(_) => 0,
                Err(_) => {
                    return Err(DockerError::bad_request(format!(
                        "tail value ({text}) must be either \"all\" or an integer"
                    )));
                }
            },
        };
        Ok(Wanted {
            stdout,
            stderr,
            timestamps: flag(q.timestamps.as_deref()),
            details: flag(q.details.as_deref()),
            opts: LogOptions { follow: flag(q.follow.as_deref()), tail, since_unix_nanos: since },
        })
    }
}

/// `since` as Docker's clients send it: Unix seconds with an optional `.nanoseconds`.
fn since_nanos(text: &str) -> Result<i64, DockerError> {
    let t = super::unix_time(text, "since")?;
    t.timestamp_nanos_opt().filter(|n| *n >= 0).ok_or_else(|| {
        DockerError::bad_request(format!("invalid since time {text:?}: before 1970 or past 2262"))
    })
}

/// Go's `url.QueryEscape`: letters, digits and `-_.~` kept, a space as `+`, the rest
/// as `%XX`.
fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A line's details as moby writes them: sorted `k=v` pairs, both sides escaped,
/// joined by `,` (the CLI reads the node, service and task ids from them).
fn details(pairs: &[(&str, &str)]) -> String {
    let mut pairs: Vec<String> =
        pairs.iter().map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v))).collect();
    pairs.sort();
    pairs.join(",")
}

/// The details of a task's lines.
fn task_details(node_id: &str, service_id: &str, task_id: &str) -> String {
    details(&[
        ("com.docker.swarm.node.id", node_id),
        ("com.docker.swarm.service.id", service_id),
        ("com.docker.swarm.task.id", task_id),
    ])
}

/// One frame of Docker's multiplexed stream: `[stream, 0, 0, 0, len (u32 BE)]` and
/// the payload.
fn frame(stream: u8, payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&[stream, 0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// A line's frame: `[timestamp ][details ]message\n`, or nothing when its stream
/// was not asked for.
fn line_frame(w: &Wanted, line: &pb::LogLine, details: Option<&str>) -> Option<Bytes> {
    let stream = if line.stream == pb::log_line::Stream::Stderr as i32 { 2 } else { 1 };
    if (stream == 1 && !w.stdout) || (stream == 2 && !w.stderr) {
        return None;
    }
    let mut payload = Vec::with_capacity(line.line.len() + 128);
    if w.timestamps {
        let at = chrono::DateTime::from_timestamp_nanos(line.timestamp_unix_nanos);
        payload.extend_from_slice(at.format("%Y-%m-%dT%H:%M:%S%.9fZ ").to_string().as_bytes());
    }
    if w.details {
        payload.extend_from_slice(details.unwrap_or_default().as_bytes());
        payload.push(b' ');
    }
    payload.extend_from_slice(&line.line);
    if payload.last() != Some(&b'\n') {
        payload.push(b'\n');
    }
    Some(frame(stream, &payload))
}

/// The details of each task in `ids`, from the store.
fn details_of(s: &Store, ids: &[String]) -> HashMap<String, String> {
    ids.iter()
        .filter_map(|id| match s.get(Kind::Task, id) {
            Some(Object::Task(t)) => {
                Some((id.clone(), task_details(t.node_id.as_deref().unwrap_or_default(), &t.service_id, id)))
            }
            _ => None,
        })
        .collect()
}

/// Whether the task is done running (or gone): its followed logs can end.
fn finished(s: &Store, task_id: &str) -> bool {
    match s.get(Kind::Task, task_id) {
        Some(Object::Task(t)) => t.status.state.is_terminal(),
        _ => true,
    }
}

/// What a followed stream keeps an eye on.
#[derive(Debug, Clone)]
enum Watch {
    /// Nothing: the stream ends when the lines do.
    Nothing,
    /// A task: the stream ends once it is terminal and drained.
    Task(String),
    /// A service: its tasks that start running later are added; the stream ends once
    /// the service is gone and drained.
    Service(String),
}

/// The service's tasks that have run on a node (so have a log) and are not `known`.
fn new_tasks(s: &Store, service_id: &str, known: &HashSet<String>) -> Vec<String> {
    placed_tasks(s, service_id)
        .into_iter()
        .filter(|id| !known.contains(id))
        .filter(|id| matches!(s.get(Kind::Task, id), Some(Object::Task(t)) if t.status.state >= TaskState::Running))
        .collect()
}

/// Streams the lines of `ids` as multiplexed frames, following what `watch` says.
async fn stream(
    api: Api,
    ids: Vec<String>,
    mut details: HashMap<String, String>,
    w: Wanted,
    watch: Watch,
) -> Result<Response, DockerError> {
    let mut lines = futures::stream::SelectAll::new();
    if !ids.is_empty() {
        lines.push(api.dispatcher.logs(ids.clone(), w.opts).await?);
    }
    let mut known: HashSet<String> = ids.into_iter().collect();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    tokio::spawn(async move {
        let mut check = tokio::time::interval(CHECK_EVERY);
        // Since when the watched object is done and no line came.
        let mut quiet_since: Option<tokio::time::Instant> = None;
        let following = !matches!(watch, Watch::Nothing);
        if !following && lines.is_empty() {
            return;
        }
        loop {
            tokio::select! {
                item = lines.next(), if !lines.is_empty() => match item {
                    None if following => {}
                    None => return,
                    Some(Ok(reply)) => {
                        if !reply.error.is_empty() {
                            tracing::warn!(task = %reply.task_id, "Docker API logs: {}", reply.error);
                        }
                        let d = details.get(&reply.task_id).map(String::as_str);
                        for line in &reply.lines {
                            if let Some(f) = line_frame(&w, line, d)
                                && tx.send(f).await.is_err()
                            {
                                return;
                            }
                        }
                        if quiet_since.is_some() && !reply.lines.is_empty() {
                            quiet_since = Some(tokio::time::Instant::now());
                        }
                    }
                    Some(Err(status)) => {
                        tracing::warn!("Docker API logs: the log stream broke: {}", status.message());
                        return;
                    }
                },
                _ = check.tick(), if following => {
                    if let Some(at) = quiet_since {
                        if at.elapsed() >= DRAIN {
                            return;
                        }
                        continue;
                    }
                    let (done, added) = match &watch {
                        Watch::Task(task) => (api.manager.read(|s| finished(s, task)), Vec::new()),
                        Watch::Service(svc) => api.manager.read(|s| {
                            let gone = s.get(Kind::Service, svc).is_none();
                            let added = new_tasks(s, svc, &known);
                            details.extend(details_of(s, &added));
                            (gone, added)
                        }),
                        Watch::Nothing => (false, Vec::new()),
                    };
                    if done {
                        quiet_since = Some(tokio::time::Instant::now());
                    }
                    if !added.is_empty() {
                        known.extend(added.iter().cloned());
                        // All of a new task's lines (it started after the request), from
                        // `since` on.
                        let opts = LogOptions { tail: 0, ..w.opts };
                        match api.dispatcher.logs(added, opts).await {
                            Ok(more) => lines.push(more),
                            Err(e) => tracing::warn!("Docker API logs: cannot follow a new task: {e}"),
                        }
                    }
                },
                _ = tx.closed() => return,
            }
        }
    });
    let body = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, std::convert::Infallible>);
    Ok(([(header::CONTENT_TYPE, MULTIPLEXED)], Body::from_stream(body)).into_response())
}

fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// The output of every task of a service that ran on a node, task by task, then
/// (with `follow`) as it comes.
async fn service_logs(
    State(api): State<Api>,
    Path(key): Path<String>,
    DockerQuery(q): DockerQuery<LogsQuery>,
) -> Result<Response, DockerError> {
    let w = Wanted::from_query(&q, now_nanos())?;
    let (service_id, ids, details) = api
        .read(false, |s| -> Result<_, PlanError> {
            let service_id = find(s, Kind::Service, &key)?.id().to_owned();
            let mut ids = placed_tasks(s, &service_id);
            if w.opts.follow {
                // Followed, a task joins once it runs (before, its node may have no
                // log to follow yet).
                ids = new_tasks(s, &service_id, &HashSet::new());
            }
            let details = details_of(s, &ids);
            Ok((service_id, ids, details))
        })
        .await??;
    let watch = if w.opts.follow { Watch::Service(service_id) } else { Watch::Nothing };
    stream(api, ids, details, w, watch).await
}

/// The output of one task; followed, it ends once the task has ended.
async fn task_logs(
    State(api): State<Api>,
    Path(key): Path<String>,
    DockerQuery(q): DockerQuery<LogsQuery>,
) -> Result<Response, DockerError> {
    let w = Wanted::from_query(&q, now_nanos())?;
    let (ids, details) = api
        .read(false, |s| -> Result<_, PlanError> {
            let Object::Task(t) = find(s, Kind::Task, &key)? else {
                return Err(PlanError::NotFound { kind: Kind::Task, id: key.clone() });
            };
            // A task that never had a node has no output.
            let ids = if t.node_id.is_some() { vec![t.id.clone()] } else { Vec::new() };
            let details = details_of(s, &ids);
            Ok((ids, details))
        })
        .await??;
    let watch = match ids.first() {
        Some(id) if w.opts.follow => Watch::Task(id.clone()),
        _ => Watch::Nothing,
    };
    stream(api, ids, details, w, watch).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &str) -> LogsQuery {
        serde_urlencoded::from_str(pairs).unwrap()
    }

    fn line(stream: pb::log_line::Stream, text: &str) -> pb::LogLine {
        pb::LogLine {
            timestamp_unix_nanos: 1_700_000_000_000_000_123,
            stream: stream as i32,
            line: text.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_frame_is_a_header_and_one_line() {
        let w = Wanted::from_query(&query("stdout=1&stderr=1"), 0).unwrap();
        let f = line_frame(&w, &line(pb::log_line::Stream::Stdout, "hello"), None).unwrap();
        assert_eq!(&f[..], b"\x01\x00\x00\x00\x00\x00\x00\x06hello\n");
        let f = line_frame(&w, &line(pb::log_line::Stream::Stderr, "oops"), None).unwrap();
        assert_eq!(&f[..8], &[2, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(&f[8..], b"oops\n");
        // A payload over 255 bytes uses the length's higher bytes.
        let long = "x".repeat(300);
        let f = line_frame(&w, &line(pb::log_line::Stream::Stdout, &long), None).unwrap();
        assert_eq!(&f[4..8], &301u32.to_be_bytes());
    }

    #[test]
    fn streams_not_asked_for_are_left_out() {
        let w = Wanted::from_query(&query("stderr=true"), 0).unwrap();
        assert!(line_frame(&w, &line(pb::log_line::Stream::Stdout, "a"), None).is_none());
        assert!(line_frame(&w, &line(pb::log_line::Stream::Stderr, "a"), None).is_some());
        let e = Wanted::from_query(&query("stdout=0&follow=1"), 0).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
        assert!(e.message.contains("at least one stream"), "{}", e.message);
    }

    #[test]
    fn timestamps_and_details_prefix_the_line() {
        let w = Wanted::from_query(&query("stdout=1&stderr=1&timestamps=1&details=1"), 0).unwrap();
        let d = task_details("node1", "svc1", "task1");
        let f = line_frame(&w, &line(pb::log_line::Stream::Stdout, "hi there"), Some(&d)).unwrap();
        assert_eq!(
            std::str::from_utf8(&f[8..]).unwrap(),
            "2023-11-14T22:13:20.000000123Z com.docker.swarm.node.id=node1,com.docker.swarm.service.id=svc1,\
             com.docker.swarm.task.id=task1 hi there\n"
        );
        assert_eq!(&f[4..8], &((f.len() - 8) as u32).to_be_bytes());
    }

    #[test]
    fn details_are_sorted_and_escaped_as_go_does() {
        assert_eq!(
            details(&[("z", "1"), ("a b", "x/y=z,w~"), ("m", "é")]),
            "a+b=x%2Fy%3Dz%2Cw~,m=%C3%A9,z=1"
        );
        assert_eq!(query_escape("A-z_0.9~"), "A-z_0.9~");
    }

    #[test]
    fn since_is_unix_seconds_with_optional_nanoseconds() {
        assert_eq!(since_nanos("1700000000").unwrap(), 1_700_000_000_000_000_000);
        assert_eq!(since_nanos("1700000000.5").unwrap(), 1_700_000_000_500_000_000);
        assert_eq!(since_nanos("1700000000.000000001").unwrap(), 1_700_000_000_000_000_001);
        assert!(since_nanos("10m").is_err());
        assert!(since_nanos("1.0000000001").is_err());
        assert!(since_nanos("-5").is_err());
        let w = Wanted::from_query(&query("stdout=1&since=12.25"), 0).unwrap();
        assert_eq!(w.opts.since_unix_nanos, 12_250_000_000);
    }

    #[test]
    fn tail_is_all_or_a_count_and_zero_means_only_new_lines() {
        let w = |q: &str| Wanted::from_query(&query(q), 99).map(|w| (w.opts.tail, w.opts.since_unix_nanos));
        assert_eq!(w("stdout=1&tail=all").unwrap(), (0, 0));
        assert_eq!(w("stdout=1").unwrap(), (0, 0));
        assert_eq!(w("stdout=1&tail=3").unwrap(), (3, 0));
        assert_eq!(w("stdout=1&tail=0").unwrap(), (0, 99));
        assert_eq!(w("stdout=1&tail=0&since=200").unwrap(), (0, 200_000_000_000));
        assert!(w("stdout=1&tail=some").unwrap_err().message.contains("tail value"));
        assert!(w("stdout=1&until=5").unwrap_err().message.starts_with("until:"));
        let f = Wanted::from_query(&query("stdout=1&follow=true&timestamps=1"), 0).unwrap();
        assert!(f.opts.follow && f.timestamps && !f.details);
    }
}
