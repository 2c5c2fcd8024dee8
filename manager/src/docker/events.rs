//! `GET /events`: the store's events (the same ring and broadcast as the cluster
//! API's `/v1/events`) as Docker's swarm events, one JSON object per line, flushed
//! per event. `since` replays what the ring still holds from that time; an `until`
//! in the past replays and closes. Services, nodes, networks, secrets and configs
//! have events (with dockerd's `.old`/`.new` attributes on updates where this stream
//! saw the object before); tasks and the cluster object do not, as in dockerd.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;
use shoal_api::service::ServiceMode;
use shoal_api::stored::{Action, Event};
use tokio::sync::broadcast::error::RecvError;

use super::filters::Filters;
use super::{DockerError, DockerQuery};
use crate::http::Api;
use crate::store::{Object, WatchError};

pub(super) fn routes() -> Router<Api> {
    Router::new().route("/events", get(events))
}

/// dockerd's event filter keys (20.10 does not check them; the ones for kinds of
/// events Shoal has none of match nothing).
const EVENT_FILTERS: &[&str] = &[
    "config",
    "container",
    "daemon",
    "event",
    "image",
    "label",
    "network",
    "node",
    "plugin",
    "scope",
    "secret",
    "service",
    "type",
    "volume",
];

/// The Docker type, name and attributes of a store event's object, or `None` for
/// the kinds Docker has no events for.
fn actor(o: &Object) -> Option<(&'static str, String)> {
    match o {
        Object::Service(s) => Some(("service", s.spec.name.clone())),
        Object::Node(n) => Some(("node", n.description.hostname.clone())),
        Object::Network(n) => Some(("network", n.spec.name.clone())),
        Object::Secret(s) => Some(("secret", s.spec.name.clone())),
        Object::Config(c) => Some(("config", c.spec.name.clone())),
        Object::Cluster(_) | Object::Task(_) => None,
    }
}

fn replicas(mode: &ServiceMode) -> Option<String> {
    match mode {
        ServiceMode::Replicated { replicas } => Some(replicas.to_string()),
        _ => None,
    }
}

fn lower<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// dockerd's `.old`/`.new` attributes for what changed between `old` and `new`.
fn changes(old: &Object, new: &Object, attrs: &mut BTreeMap<String, String>) {
    let mut pair = |key: &str, a: Option<String>, b: Option<String>| {
        if a != b {
            attrs.insert(format!("{key}.old"), a.unwrap_or_default());
            attrs.insert(format!("{key}.new"), b.unwrap_or_default());
        }
    };
    match (old, new) {
        (Object::Service(a), Object::Service(b)) => {
            pair(
                "image",
                Some(a.spec.task_template.container.image.clone()),
                Some(b.spec.task_template.container.image.clone()),
            );
            pair("replicas", replicas(&a.spec.mode), replicas(&b.spec.mode));
            pair(
                "updatestate",
                a.update_status.as_ref().map(|u| lower(&u.state)),
                b.update_status.as_ref().map(|u| lower(&u.state)),
            );
        }
        (Object::Node(a), Object::Node(b)) => {
            pair("availability", Some(lower(&a.spec.availability)), Some(lower(&b.spec.availability)));
            pair("role", Some(a.spec.role.as_str().into()), Some(b.spec.role.as_str().into()));
            pair("state", Some(lower(&a.status.state)), Some(lower(&b.status.state)));
            let ms = |n: &shoal_api::Node| n.manager_status.clone();
            pair("leader", ms(a).map(|m| m.leader.to_string()), ms(b).map(|m| m.leader.to_string()));
            pair(
                "reachability",
                ms(a).map(|m| lower(&m.reachability)),
                ms(b).map(|m| lower(&m.reachability)),
            );
        }
        _ => {}
    }
}

/// One Docker event.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct DockerEvent {
    kind: &'static str,
    action: &'static str,
    id: String,
    attributes: BTreeMap<String, String>,
    time: DateTime<Utc>,
}

impl DockerEvent {
    fn line(&self) -> bytes::Bytes {
        let nanos = self.time.timestamp_nanos_opt().unwrap_or_default();
        let mut line = json!({
            "Type": self.kind,
            "Action": self.action,
            "Actor": { "ID": self.id, "Attributes": self.attributes },
            "scope": "swarm",
            "time": self.time.timestamp(),
            "timeNano": nanos,
        })
        .to_string();
        line.push('\n');
        bytes::Bytes::from(line)
    }

    fn matches(&self, f: &Filters) -> bool {
        let named = |key: &str| {
            f.get(key).is_none_or(|values| {
                self.kind == key
                    && values.iter().any(|v| {
                        self.id.starts_with(v.as_str())
                            || self.attributes.get("name").is_some_and(|n| n.starts_with(v.as_str()))
                    })
            })
        };
        f.any("type", |t| t == self.kind)
            && f.any("scope", |s| s == "swarm")
            && f.any("event", |e| e == self.action)
            && f.labels_match(&self.attributes)
            && ["service", "node", "network", "secret", "config"].into_iter().all(named)
            && ["container", "image", "volume", "daemon", "plugin"].into_iter().all(|k| f.get(k).is_none())
    }
}

/// Turns store events into Docker's, remembering each object as last seen for the
/// `.old` attributes of its next update.
#[derive(Debug, Default)]
pub(super) struct Translator {
    seen: HashMap<String, Arc<Object>>,
    /// The latest time given out: a removal replayed from the ring has no time of its
    /// own, it gets this (never earlier than the object's last write).
    latest: Option<DateTime<Utc>>,
}

impl Translator {
    /// The Docker event for `e`; `now` is the time of a removal seen live (`None`
    /// when replaying).
    pub(super) fn translate(&mut self, e: &Event, now: Option<DateTime<Utc>>) -> Option<DockerEvent> {
        let (kind, name) = actor(&e.object)?;
        let id = e.object.id().to_owned();
        let meta = e.object.meta();
        let mut attributes = BTreeMap::from([("name".to_owned(), name)]);
        let (action, time) = match e.action {
            Action::Create => ("create", meta.created_at),
            Action::Update => {
                if let Some(old) = self.seen.get(&id) {
                    changes(old, &e.object, &mut attributes);
                }
                ("update", meta.updated_at)
            }
            Action::Delete => {
                let replayed = self.latest.map_or(meta.updated_at, |l| l.max(meta.updated_at));
                ("remove", now.unwrap_or(replayed))
            }
        };
        if e.action == Action::Delete {
            self.seen.remove(&id);
        } else {
            self.seen.insert(id.clone(), e.object.clone());
        }
        self.latest = Some(self.latest.map_or(time, |l| l.max(time)));
        Some(DockerEvent { kind, action, id, attributes, time })
    }
}

#[derive(Debug, Default, Deserialize)]
struct EventsQuery {
    since: Option<String>,
    until: Option<String>,
    filters: Option<String>,
}

/// The ring's events (all it still holds) and the live receiver after them.
fn subscribe(api: &Api) -> (Vec<Event>, tokio::sync::broadcast::Receiver<Event>) {
    match api.manager.watch(0) {
        Ok(w) => w,
        Err(WatchError::Compacted { oldest, .. }) => match api.manager.watch(oldest.saturating_sub(1)) {
            Ok(w) => w,
            // Compacted again in between: watch from now on.
            Err(_) => {
                let last = api.manager.read(|s| s.last_index());
                api.manager.watch(last).unwrap_or_else(|_| (Vec::new(), tokio::sync::broadcast::channel(1).1))
            }
        },
    }
}

async fn events(
    State(api): State<Api>,
    DockerQuery(q): DockerQuery<EventsQuery>,
) -> Result<Response, DockerError> {
    let since =
        q.since.as_deref().filter(|s| !s.is_empty()).map(|s| super::unix_time(s, "since")).transpose()?;
    let until =
        q.until.as_deref().filter(|s| !s.is_empty()).map(|s| super::unix_time(s, "until")).transpose()?;
    if let (Some(s), Some(u)) = (since, until)
        && u < s
    {
        return Err(DockerError::bad_request(format!(
            "`since` time ({}) cannot be after `until` time ({})",
            q.since.unwrap_or_default(),
            q.until.unwrap_or_default()
        )));
    }
    let f = Filters::parse(q.filters.as_deref(), EVENT_FILTERS)?;
    let (backlog, mut live) = subscribe(&api);
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
    tokio::spawn(async move {
        let mut t = Translator::default();
        for e in &backlog {
            let Some(ev) = t.translate(e, None) else { continue };
            let in_window = since.is_some_and(|s| ev.time >= s) && until.is_none_or(|u| ev.time <= u);
            if in_window && ev.matches(&f) && tx.send(ev.line()).await.is_err() {
                return;
            }
        }
        let deadline = until.map(|u| {
            let left = (u - Utc::now()).to_std().unwrap_or_default();
            tokio::time::Instant::now() + left
        });
        if until.is_some_and(|u| u <= Utc::now()) {
            return;
        }
        loop {
            let next = async {
                match deadline {
                    Some(d) => tokio::time::timeout_at(d, live.recv()).await.ok(),
                    None => Some(live.recv().await),
                }
            };
            tokio::select! {
                got = next => match got {
                    None | Some(Err(RecvError::Closed)) => return,
                    // Fell behind the broadcast: the events in between are lost, as
                    // dockerd's slow subscribers lose them.
                    Some(Err(RecvError::Lagged(_))) => continue,
                    Some(Ok(e)) => {
                        let Some(ev) = t.translate(&e, Some(Utc::now())) else { continue };
                        if ev.matches(&f) && tx.send(ev.line()).await.is_err() {
                            return;
                        }
                    }
                },
                () = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|line| (Ok::<_, Infallible>(line), rx))
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], Body::from_stream(stream)).into_response())
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn network(name: &str, at: &str) -> Arc<Object> {
        let mut spec = shoal_api::NetworkSpec::new(name);
        spec.labels.insert("a".into(), "b".into());
        let at: DateTime<Utc> = at.parse().unwrap();
        Arc::new(Object::Network(shoal_api::Network {
            id: format!("{name}id"),
            meta: shoal_api::Meta::new(at),
            spec,
            subnet: "10.0.1.0/24".parse().unwrap(),
            gateway: "10.0.1.1".parse().unwrap(),
            vni: 4097,
        }))
    }

    #[test]
    fn times_parse_as_the_cli_sends_them() {
        assert_eq!(crate::docker::unix_time("1700000000", "since").unwrap().timestamp(), 1_700_000_000);
        let t = crate::docker::unix_time("1700000000.5", "since").unwrap();
        assert_eq!(t.timestamp_subsec_nanos(), 500_000_000);
        assert!(crate::docker::unix_time("soon", "since").is_err());
        assert!(crate::docker::unix_time("1.1234567891", "since").is_err());
    }

    #[test]
    fn store_events_become_dockers_and_filter() {
        let mut t = Translator::default();
        let created =
            Event { index: 3, action: Action::Create, object: network("front", "2026-01-01T00:00:01Z") };
        let ev = t.translate(&created, None).unwrap();
        assert_eq!((ev.kind, ev.action, ev.id.as_str()), ("network", "create", "frontid"));
        assert_eq!(ev.attributes["name"], "front");
        let line: Value = serde_json::from_slice(&ev.line()).unwrap();
        assert_eq!(line["scope"], "swarm");
        assert_eq!(line["time"], 1_767_225_601i64);
        assert_eq!(line["timeNano"], 1_767_225_601_000_000_000i64);
        let f = |raw: &str| Filters::parse(Some(raw), EVENT_FILTERS).unwrap();
        assert!(
            ev.matches(&f(r#"{"type":{"network":true},"scope":{"swarm":true},"event":{"create":true}}"#))
        );
        assert!(ev.matches(&f(r#"{"network":{"front":true}}"#)));
        assert!(!ev.matches(&f(r#"{"service":{"front":true}}"#)));
        assert!(!ev.matches(&f(r#"{"scope":{"local":true}}"#)));
        assert!(!ev.matches(&f(r#"{"container":{"x":true}}"#)));
        let removed =
            Event { index: 4, action: Action::Delete, object: network("front", "2026-01-01T00:00:01Z") };
        let ev = t.translate(&removed, None).unwrap();
        assert_eq!(ev.action, "remove");
        let task_less = Event {
            index: 5,
            action: Action::Create,
            object: Arc::new(Object::Cluster(
                serde_json::from_value(json!({
                    "id": "c", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
                    "spec": {}, "join_tokens": { "worker": "w", "manager": "m" }
                }))
                .unwrap(),
            )),
        };
        assert!(t.translate(&task_less, None).is_none());
    }
}
