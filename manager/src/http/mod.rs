//! The cluster API: HTTP/JSON under `/v1` (axum), served by every manager on a unix
//! socket (its permissions are the access control) and optionally on TCP, as HTTPS
//! with the manager's certificate from the cluster's CA (a token or a client
//! certificate required, see [`access`]). Reads come from the local store unless `?consistent=true`;
//! writes become store transactions, forwarded to the leader from a follower. The
//! OpenAPI document is generated from the handlers' annotations. Logs stream from the
//! workers through the leader. The live dashboard is served at `/ui` (see [`ui`]).

pub mod access;
pub(crate) mod cluster;
mod error;
mod events;
mod exec;
#[cfg(test)]
mod fuzz;
pub mod locked;
pub(crate) mod logs;
mod metrics;
pub(crate) mod nodes;
pub(crate) mod objects;
mod polling;
#[cfg(test)]
mod polling_tests;
pub(crate) mod services;
mod stacks;
mod ui;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;

use crate::dispatcher::Dispatcher;
use crate::manager::{Manager, ManagerError};
use crate::plan::PlanError;
use crate::server::Served;
use crate::store::{Store, StoreError, Transaction};

/// The largest request body (a stack's Compose file with its secret files fits;
/// a transaction is capped at 1.5 MiB anyway).
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// Where the API listens.
#[derive(Debug, Clone, Default)]
pub struct ApiOptions {
    /// A unix socket, made mode 0660 (any old socket file there is replaced).
    pub socket: Option<PathBuf>,
    /// A TCP address, served as HTTPS; callers need an API token or a client
    /// certificate from the cluster's CA.
    pub tcp: Option<SocketAddr>,
    /// The node's metrics, served at `GET /metrics`.
    pub metrics: Option<Arc<shoal_telemetry::prom::registry::Registry>>,
}

/// The running API listeners.
#[derive(Debug)]
pub struct ApiServer {
    /// The unix socket served.
    pub socket: Option<PathBuf>,
    /// The TCP address bound (with the port picked, if 0 was asked).
    pub tcp: Option<SocketAddr>,
    listeners: Listeners,
}

/// Listeners serving routers until they are shut down (the cluster API's, and the
/// Docker Engine API's).
#[derive(Debug, Default)]
pub(crate) struct Listeners {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: Arc<tokio::sync::Notify>,
    sockets: Vec<PathBuf>,
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listener could not be set up.
    #[error("cannot listen on {what}")]
    Listen {
        /// The socket or address.
        what: String,
        /// The system's reason.
        source: std::io::Error,
    },
    /// The manager's certificate could not be used for HTTPS.
    #[error("cannot serve HTTPS: {0}")]
    Tls(#[from] shoal_pki::PkiError),
}

/// What every handler gets: the manager, and the JSON of objects already rendered.
#[derive(Debug, Clone)]
pub(crate) struct Api {
    pub(crate) manager: Arc<Manager>,
    pub(crate) dispatcher: Dispatcher,
    rendered: Arc<Rendered>,
    failures: Arc<access::Failures>,
    metrics: Option<Arc<shoal_telemetry::prom::registry::Registry>>,
}

/// Objects as JSON, by id, with the version they were rendered at. Stored objects
/// never change in place (a write makes a new version), so a list is the rendered
/// objects joined: most of a `GET /v1/tasks` is a copy, not serialization.
#[derive(Debug, Default)]
pub(crate) struct Rendered {
    /// By id (and the fields asked for, if some were).
    json: std::sync::Mutex<std::collections::HashMap<String, (u64, Bytes)>>,
    /// Whole list replies by path and query (paging and fields included, the wait
    /// left out), with the per-kind index they show and their next page's cursor:
    /// polling the same list between two changes of its kinds costs a reference count.
    lists: std::sync::Mutex<std::collections::HashMap<String, polling::Listed>>,
}

impl Rendered {
    /// The page for `key` at `index`, rendered by `render` (body, next cursor) unless
    /// it is known.
    fn cached_list(
        &self,
        key: String,
        index: u64,
        render: impl FnOnce() -> (Vec<u8>, Option<String>),
    ) -> polling::Listed {
        if let Some(listed) = self.lists.lock().expect("list cache lock").get(&key)
            && listed.index == index
        {
            return listed.clone();
        }
        let (body, next) = render();
        let listed = polling::Listed { body: Bytes::from(body), index, next };
        let mut lists = self.lists.lock().expect("list cache lock");
        if lists.len() >= 256 {
            lists.clear();
        }
        lists.insert(key, listed.clone());
        listed
    }

    /// A JSON array of `items` (id, version, object), rendering only what changed;
    /// with `fields`, only those fields of each; `extra` may add a `"name":value`
    /// member to an item (by id).
    fn list<'a, T: serde::Serialize + 'a>(
        &self,
        items: impl Iterator<Item = (&'a str, u64, &'a T)>,
        fields: Option<&[String]>,
        mut extra: impl FnMut(&str) -> Option<String>,
    ) -> Vec<u8> {
        let mut json = self.json.lock().expect("render cache lock");
        let mut out = Vec::with_capacity(64 * 1024);
        out.push(b'[');
        let mut seen = 0usize;
        for (id, version, item) in items {
            if seen > 0 {
                out.push(b',');
            }
            seen += 1;
            let key = match fields {
                None => std::borrow::Cow::Borrowed(id),
                Some(f) => std::borrow::Cow::Owned(format!("{id}?{}", f.join(","))),
            };
            let bytes = match json.get(key.as_ref()) {
                Some((v, bytes)) if *v == version => bytes.clone(),
                _ => {
                    let bytes = Bytes::from(polling::render_fields(item, fields));
                    json.insert(key.into_owned(), (version, bytes.clone()));
                    bytes
                }
            };
            match extra(id) {
                // An object's JSON ends with its closing brace: the member goes before it.
                Some(member) => {
                    out.extend_from_slice(&bytes[..bytes.len() - 1]);
                    if bytes.len() > 2 {
                        out.push(b',');
                    }
                    out.extend_from_slice(member.as_bytes());
                    out.push(b'}');
                }
                None => out.extend_from_slice(&bytes),
            }
        }
        out.push(b']');
        // Objects deleted since leave entries behind: start afresh when they pile up.
        if json.len() > 4 * seen.max(1024) {
            json.clear();
        }
        out
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Shoal cluster API",
        version = "1",
        description = "Services, tasks, nodes, networks, secrets, configs, stacks and events of a Shoal \
                       cluster. Errors are `{\"error\": {\"code\", \"message\", \"field\"}}`. On TCP, send \
                       `Authorization: Bearer <token>` (`shoal cluster api-token`)."
    ),
    modifiers(&BearerAuth)
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![SecurityRequirement::new("token", Vec::<String>::new())]);
    }
}

/// The routes and the OpenAPI document describing them, built from the same list.
fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(cluster::info, cluster::update))
        .routes(routes!(cluster::snapshot))
        .routes(routes!(cluster::join_tokens))
        .routes(routes!(cluster::rotate_join_token))
        .routes(routes!(cluster::api_token))
        .routes(routes!(cluster::rotate_api_token))
        .routes(routes!(cluster::ca))
        .routes(routes!(cluster::rotate_ca))
        .routes(routes!(cluster::unlock_key))
        .routes(routes!(cluster::rotate_unlock_key))
        .routes(routes!(cluster::unlock))
        .routes(routes!(services::list, services::create))
        .routes(routes!(services::inspect, services::update, services::remove))
        .routes(routes!(services::scale))
        .routes(routes!(services::rollback))
        .routes(routes!(logs::service_logs))
        .routes(routes!(logs::task_logs))
        .routes(routes!(exec::task_exec))
        .routes(routes!(services::list_tasks))
        .routes(routes!(services::inspect_task))
        .routes(routes!(nodes::list))
        .routes(routes!(nodes::inspect, nodes::update, nodes::remove))
        .routes(routes!(nodes::attach))
        .routes(routes!(nodes::detach))
        .routes(routes!(objects::list_networks, objects::create_network))
        .routes(routes!(objects::inspect_network, objects::remove_network))
        .routes(routes!(objects::list_secrets, objects::create_secret))
        .routes(routes!(objects::inspect_secret, objects::update_secret, objects::remove_secret))
        .routes(routes!(objects::list_configs, objects::create_config))
        .routes(routes!(objects::inspect_config, objects::update_config, objects::remove_config))
        .routes(routes!(stacks::list))
        .routes(routes!(stacks::deploy, stacks::remove))
        .routes(routes!(events::events))
}

/// The OpenAPI document of this API, as committed under `docs/api/openapi.json`.
pub fn openapi_json() -> String {
    let (_, doc) = routes().split_for_parts();
    let mut text = doc.to_pretty_json().expect("the OpenAPI document serializes");
    text.push('\n');
    text
}

/// The whole router; `auth` adds the bearer-token check (for TCP).
fn router(api: Api, auth: bool) -> Router {
    let (router, doc) = routes().split_for_parts();
    let doc = Arc::new(doc);
    let router = router
        .route(
            "/v1/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .route("/metrics", axum::routing::get(metrics::scrape))
        .route_layer(axum::middleware::from_fn_with_state(api.clone(), metrics::track))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API path: see /v1/openapi.json")
        })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES));
    let router = if auth {
        router.layer(axum::middleware::from_fn_with_state(api.clone(), access::require_access))
    } else {
        router
    };
    // The dashboard's files hold no data: served without the access check.
    router.merge(ui::routes()).with_state(api)
}

/// Binds the unix socket at `path`, mode 0660, replacing any old socket file there.
fn bind_socket(path: &std::path::Path) -> Result<tokio::net::UnixListener, ServeError> {
    let listen = |source| ServeError::Listen { what: path.display().to_string(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(listen)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(listen(e)),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(listen)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(listen)?;
    // Members of a `shoal` group may use it, as `docker` works for Docker.
    if let Ok(Some(group)) = nix::unistd::Group::from_name("shoal") {
        nix::unistd::chown(path, None, Some(group.gid)).map_err(|e| listen(e.into()))?;
    }
    Ok(listener)
}

impl ApiServer {
    /// Starts the listeners of `opts` for `manager`.
    pub async fn start(served: &Served, opts: &ApiOptions) -> Result<ApiServer, ServeError> {
        let api = Api::new(served.manager.clone(), served.dispatcher.clone(), opts.metrics.clone());
        let mut listeners = Listeners::default();
        if let Some(path) = &opts.socket {
            listeners.unix(path, router(api.clone(), false))?;
        }
        let mut tcp = None;
        if let Some(addr) = opts.tcp {
            tcp = Some(listeners.https(served, addr, router(api.clone(), true)).await?);
        }
        Ok(ApiServer { socket: opts.socket.clone(), tcp, listeners })
    }

    /// Stops the listeners: requests in flight get a moment to finish, event streams
    /// are cut. The socket file is removed.
    pub async fn shutdown(self) {
        self.listeners.shutdown().await;
    }
}

impl Listeners {
    /// Serves `app` on a unix socket at `path`, mode 0660 (an old socket file there
    /// is replaced; members of a `shoal` group may use it).
    pub(crate) fn unix(&mut self, path: &std::path::Path, app: Router) -> Result<(), ServeError> {
        let listener = bind_socket(path)?;
        let stop = self.stop.clone();
        self.tasks.push(tokio::spawn(async move {
            let _ =
                axum::serve(listener, app).with_graceful_shutdown(async move { stop.notified().await }).await;
        }));
        self.sockets.push(path.to_path_buf());
        Ok(())
    }

    /// Serves `app` as HTTPS on `addr` with the manager's certificate (read at each
    /// handshake, so a renewal needs no restart; a client may offer its own);
    /// returns the address bound.
    pub(crate) async fn https(
        &mut self,
        served: &Served,
        addr: SocketAddr,
        app: Router,
    ) -> Result<SocketAddr, ServeError> {
        let listen = |source| ServeError::Listen { what: addr.to_string(), source };
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(listen)?;
        let bound = listener.local_addr().map_err(listen)?;
        let tls = served.manager.credentials().server_config(&[b"http/1.1"])?;
        let incoming = shoal_pki::transport::incoming(listener, tls);
        self.tasks.push(tokio::spawn(serve_https(incoming, app, self.stop.clone())));
        Ok(bound)
    }

    /// Stops serving: requests in flight get a moment to finish, streams are cut,
    /// the socket files are removed.
    pub(crate) async fn shutdown(self) {
        self.stop.notify_waiters();
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), task).await.is_err() {
                abort.abort();
            }
        }
        for path in &self.sockets {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Serves the API on accepted TLS connections until `stop`; each request carries
/// the connection's [`shoal_pki::Peer`] for the access check.
async fn serve_https(
    mut incoming: shoal_pki::transport::Incoming,
    app: Router,
    stop: Arc<tokio::sync::Notify>,
) {
    use futures::StreamExt as _;
    use tower::ServiceExt as _;
    loop {
        let conn = tokio::select! {
            _ = stop.notified() => return,
            c = incoming.next() => match c {
                Some(Ok(c)) => c,
                _ => return,
            },
        };
        let peer = conn.peer().clone();
        let app = app.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer.clone());
                    app.clone().oneshot(req.map(axum::body::Body::new))
                });
            let io = hyper_util::rt::TokioIo::new(conn);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .with_upgrades()
                .await;
        });
    }
}

/// How long after a start local reads wait for the state to catch up; past it (no
/// quorum, or not in a cluster yet), the local state is served as it is.
const RECOVERY_WAIT: Duration = Duration::from_secs(2);

impl Api {
    /// The handlers' state for `manager`, with empty caches.
    pub(crate) fn new(
        manager: Arc<Manager>,
        dispatcher: Dispatcher,
        metrics: Option<Arc<shoal_telemetry::prom::registry::Registry>>,
    ) -> Api {
        Api { manager, dispatcher, rendered: Arc::default(), failures: Arc::default(), metrics }
    }

    /// Reads the local store, or (with `consistent`) a state that includes every
    /// write acknowledged before the call. In the first [`RECOVERY_WAIT`] after a
    /// start, a local read waits for the state to catch up with the cluster.
    pub(crate) async fn read<T>(&self, consistent: bool, f: impl FnOnce(&Store) -> T) -> Result<T, ApiError> {
        if consistent {
            return Ok(self.manager.read_linearizable(f).await?);
        }
        let grace = RECOVERY_WAIT.saturating_sub(self.manager.uptime());
        if !grace.is_zero() {
            self.manager.wait_recovered(grace).await;
        }
        Ok(self.manager.read(f))
    }

    /// Plans a transaction on the current state and proposes it; when another write
    /// got in between (a version conflict), plans again on fresher state.
    pub(crate) async fn modify<T>(
        &self,
        plan: impl Fn(&Store) -> Result<(Transaction, T), PlanError>,
    ) -> Result<(u64, T), ApiError> {
        let mut consistent = false;
        for _ in 0..5 {
            let (tx, out) = self.read(consistent, &plan).await??;
            if tx.changes.is_empty() {
                return Ok((0, out));
            }
            match self.manager.propose(tx).await {
                Ok(index) => return Ok((index, out)),
                Err(ManagerError::Store(StoreError::Conflict { .. } | StoreError::AddressTaken { .. })) => {
                    consistent = true
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "other writes kept changing the same objects: retry",
        ))
    }
}

/// A JSON body read with errors that name the field, and a size limit.
pub(crate) struct Body<T>(pub T);

/// The bytes of a request's body, refused past the size limit.
async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body is larger than the {} MiB the API takes", MAX_BODY_BYTES >> 20),
        )
    };
    // Refused from the header, before reading a byte of it.
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::bad_request(format!("the body could not be read: {}", e.body_text()))
        }
    })
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        Ok(Body(shoal_api::decode::from_json(&bytes)?))
    }
}

/// A body that holds a secret (a secret's or config's spec, or an update of one),
/// read with errors that repeat nothing of it
/// ([`from_json_redacted`](shoal_api::decode::from_json_redacted)).
pub(crate) struct PayloadBody<T>(pub T);

/// Bodies read as [`PayloadBody`].
pub(crate) trait RedactedJson: Sized {
    fn read(body: &[u8]) -> Result<Self, shoal_api::decode::DecodeError>;
}

impl RedactedJson for shoal_api::PayloadSpec {
    fn read(body: &[u8]) -> Result<Self, shoal_api::decode::DecodeError> {
        shoal_api::PayloadSpec::from_json(body)
    }
}

impl RedactedJson for shoal_api::PayloadUpdate {
    fn read(body: &[u8]) -> Result<Self, shoal_api::decode::DecodeError> {
        shoal_api::PayloadUpdate::from_json(body)
    }
}

impl<S: Send + Sync, T: RedactedJson> FromRequest<S> for PayloadBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = body_bytes(req, state).await?;
        Ok(PayloadBody(T::read(&bytes)?))
    }
}

/// Query parameters, refused with a JSON error when malformed or unknown.
pub(crate) struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        serde_urlencoded::from_str(query)
            .map(Query)
            .map_err(|e| ApiError::bad_request(format!("the query string is not valid: {e}")))
    }
}

/// Now, for the timestamps of objects a request writes.
fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}
