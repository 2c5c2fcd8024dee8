//! A typed client of the cluster API, over the manager's unix socket or TCP with a
//! bearer token. The CLI and the tests use it; every call returns the API's own error
//! (code, message, field) or says which address could not be reached and what to do.

use std::path::PathBuf;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cluster::JoinTokens;
use crate::network::{Network, NetworkSpec};
use crate::node::Node;
use crate::secret::PayloadSpec;
use crate::service::{Service, ServiceSpec};
use crate::stored::Event;
use crate::task::Task;
use crate::validate::FieldError;
use crate::wire::{
    ApiToken, ClusterInfo, Created, ErrorBody, EventQuery, ListOptions, LogQuery, LogRecord, NodeUpdate,
    PayloadInfo, ReadOptions, RemoveOptions, Scale, ServiceFilter, ServiceUpdate, ServiceWithStatus,
    StackDeploy, StackDeployed, StackInfo, TaskFilter, Written,
};

/// One answer of a list: its items, the store index it reflects (`X-Shoal-Index`:
/// pass it as `wait_index` to wait for the next change), and the cursor of the next
/// page (`None` on the last).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// The index the answer reflects.
    pub index: u64,
    /// The next page's `cursor`.
    pub next_cursor: Option<String>,
}

/// Where the default daemon listens.
pub const DEFAULT_SOCKET: &str = "/run/shoal/shoal.sock";

/// Where a manager's API is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket on this machine (its file permissions are the access control).
    Unix(PathBuf),
    /// `host:port` over TCP (HTTPS), with an API token or a client certificate.
    Tcp {
        /// `host:port`.
        addr: String,
        /// The bearer token (`shoal cluster api-token` on a manager).
        token: Option<String>,
    },
}

impl Endpoint {
    /// Reads `unix:///path`, `/path`, `https://host:port`, `tcp://host:port` or
    /// `host:port` (the last three are HTTPS).
    pub fn parse(host: &str, token: Option<String>) -> Endpoint {
        if let Some(path) = host.strip_prefix("unix://") {
            Endpoint::Unix(path.into())
        } else if host.starts_with('/') || host.starts_with('.') {
            Endpoint::Unix(host.into())
        } else {
            let addr =
                ["tcp://", "https://", "http://"].iter().find_map(|p| host.strip_prefix(p)).unwrap_or(host);
            Endpoint::Tcp { addr: addr.trim_end_matches('/').to_owned(), token }
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix://{}", p.display()),
            Endpoint::Tcp { addr, .. } => write!(f, "tcp://{addr}"),
        }
    }
}

/// What a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Nothing answered at the address.
    #[error("cannot reach the Shoal API at {endpoint}: {reason}; {hint}")]
    Connect {
        /// The address tried.
        endpoint: String,
        /// What the system said.
        reason: String,
        /// What to check.
        hint: &'static str,
    },
    /// The API refused the call.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The API's error code (`not_found`, `conflict`, …).
        code: String,
        /// What went wrong and what to do.
        message: String,
        /// The field at fault.
        field: Option<String>,
        /// Every problem, when there were several.
        details: Vec<FieldError>,
    },
    /// The reply was not what the API sends.
    #[error(
        "the API at {endpoint} sent a reply Shoal cannot read ({reason}): is it a Shoal manager of this version?"
    )]
    Protocol {
        /// The address.
        endpoint: String,
        /// What was wrong.
        reason: String,
    },
}

impl ClientError {
    /// The API's error code, for errors the API returned.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, for errors the API returned.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Which payload kind a call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadKind {
    /// Secrets.
    Secret,
    /// Configs.
    Config,
}

impl PayloadKind {
    fn path(self) -> &'static str {
        match self {
            PayloadKind::Secret => "secrets",
            PayloadKind::Config => "configs",
        }
    }
}

/// Whose logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogsOf {
    /// Every task of a service.
    Service,
    /// One task.
    Task,
}

/// A stream of log records.
pub type LogStream = Pin<Box<dyn Stream<Item = Result<LogRecord, ClientError>> + Send>>;

/// A stream of events, in index order.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<Event, ClientError>> + Send>>;

/// A client of one manager's API.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    endpoint: Endpoint,
    base: String,
}

impl Client {
    /// A client of the API at a unix socket. Nothing is sent until the first call.
    /// TCP endpoints are HTTPS: they need [`Client::with_tls`].
    pub fn new(endpoint: Endpoint) -> Result<Client, ClientError> {
        Client::with_tls(endpoint, None)
    }

    /// A client of the API at `endpoint`; `tls` (trusting the cluster's CA, maybe
    /// with a client certificate) is what HTTPS endpoints need.
    pub fn with_tls(endpoint: Endpoint, tls: Option<rustls::ClientConfig>) -> Result<Client, ClientError> {
        // reqwest needs a process-wide crypto provider even for a unix socket; the
        // same one the TLS setup uses (ring), unless the process chose one already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = reqwest::Client::builder().no_proxy().tcp_nodelay(true);
        let (builder, base) = match (&endpoint, tls) {
            // The host part is not used to connect; it only fills the Host header.
            (Endpoint::Unix(path), _) => (builder.unix_socket(path.clone()), "http://shoal".to_owned()),
            (Endpoint::Tcp { addr, .. }, Some(tls)) => {
                (builder.tls_backend_preconfigured(tls), format!("https://{addr}"))
            }
            (Endpoint::Tcp { .. }, None) => {
                return Err(ClientError::Connect {
                    endpoint: endpoint.to_string(),
                    reason: "the API over TCP is HTTPS, and no CA to check the manager against was given"
                        .into(),
                    hint: "set SHOAL_CA (or --tlscacert) to a file holding `shoal cluster ca` of the cluster",
                });
            }
        };
        let http = builder.build().map_err(|e| ClientError::Connect {
            endpoint: endpoint.to_string(),
            reason: e.to_string(),
            hint: "the HTTP client could not be set up",
        })?;
        Ok(Client { http, endpoint, base })
    }

    /// Where this client sends its calls.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}/v1{path}", self.base));
        match &self.endpoint {
            Endpoint::Tcp { token: Some(t), .. } => req.bearer_auth(t),
            _ => req,
        }
    }

    fn connect_error(&self, e: reqwest::Error) -> ClientError {
        let hint = match &self.endpoint {
            Endpoint::Unix(_) => {
                "is `shoal daemon` running on this machine, and may you open its socket? \
                 (--host or SHOAL_HOST point elsewhere, e.g. tcp://MANAGER:2376)"
            }
            Endpoint::Tcp { .. } => {
                "is a manager running there with --api-addr, and is the port open? \
                 (--host or SHOAL_HOST choose another manager)"
            }
        };
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            reason = s.to_string();
            source = s.source();
        }
        ClientError::Connect { endpoint: self.endpoint.to_string(), reason, hint }
    }

    fn protocol_error(&self, reason: impl std::fmt::Display) -> ClientError {
        ClientError::Protocol { endpoint: self.endpoint.to_string(), reason: reason.to_string() }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let resp = req.send().await.map_err(|e| self.connect_error(e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(self.failure(resp).await)
    }

    /// The error a reply other than success carries.
    async fn failure(&self, resp: reqwest::Response) -> ClientError {
        let status = resp.status();
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return self.connect_error(e),
        };
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => ClientError::Api {
                status: status.as_u16(),
                code: body.error.code,
                message: body.error.message,
                field: body.error.field,
                details: body.error.details,
            },
            Err(_) if status == StatusCode::UNAUTHORIZED => ClientError::Api {
                status: status.as_u16(),
                code: "unauthorized".into(),
                message:
                    "the API refused the token: give the cluster's API token with --token or SHOAL_TOKEN"
                        .into(),
                field: None,
                details: Vec::new(),
            },
            Err(_) => self.protocol_error(format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes))),
        }
    }

    async fn json<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, ClientError> {
        let resp = self.send(req).await?;
        let bytes = resp.bytes().await.map_err(|e| self.connect_error(e))?;
        serde_json::from_slice(&bytes).map_err(|e| self.protocol_error(e))
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &(impl Serialize + ?Sized),
    ) -> Result<T, ClientError> {
        self.json(self.request(Method::GET, path).query(query)).await
    }

    /// A list answer with its index and next cursor.
    async fn get_page<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &(impl Serialize + ?Sized),
    ) -> Result<Page<T>, ClientError> {
        let resp = self.send(self.request(Method::GET, path).query(query)).await?;
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let index = header("x-shoal-index")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| self.protocol_error(format!("the answer of {path} has no X-Shoal-Index")))?;
        let next_cursor = header("x-shoal-next-cursor");
        let bytes = resp.bytes().await.map_err(|e| self.connect_error(e))?;
        let items = serde_json::from_slice(&bytes).map_err(|e| self.protocol_error(e))?;
        Ok(Page { items, index, next_cursor })
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &(impl Serialize + ?Sized),
    ) -> Result<T, ClientError> {
        self.json(self.request(Method::POST, path).json(body)).await
    }

    async fn delete(&self, path: &str, query: &(impl Serialize + ?Sized)) -> Result<(), ClientError> {
        self.send(self.request(Method::DELETE, path).query(query)).await.map(drop)
    }

    // --- cluster -------------------------------------------------------------------

    /// Managers, leader, counts.
    pub async fn cluster(&self, opts: ReadOptions) -> Result<ClusterInfo, ClientError> {
        self.get("/cluster", &opts).await
    }

    /// Replaces the cluster's settings, if still at `version`.
    pub async fn update_cluster(&self, update: &crate::wire::ClusterUpdate) -> Result<Written, ClientError> {
        self.json(self.request(Method::PUT, "/cluster").json(update)).await
    }

    /// The join tokens.
    pub async fn join_tokens(&self) -> Result<JoinTokens, ClientError> {
        self.get("/cluster/join-tokens", &()).await
    }

    /// Replaces the join token of `role` (`worker` or `manager`).
    pub async fn rotate_join_token(&self, role: &str) -> Result<JoinTokens, ClientError> {
        self.post(&format!("/cluster/join-tokens/{role}/rotate"), &()).await
    }

    /// The API token the TCP listeners require.
    pub async fn api_token(&self) -> Result<ApiToken, ClientError> {
        self.get("/cluster/api-token", &()).await
    }

    /// Replaces the API token; clients with the old one are refused from now on.
    pub async fn rotate_api_token(&self) -> Result<ApiToken, ClientError> {
        self.post("/cluster/api-token/rotate", &()).await
    }

    /// The read-only API token (dashboards).
    pub async fn read_only_api_token(&self) -> Result<ApiToken, ClientError> {
        self.get("/cluster/api-token?scope=read_only", &()).await
    }

    /// Replaces the read-only API token.
    pub async fn rotate_read_only_api_token(&self) -> Result<ApiToken, ClientError> {
        self.post("/cluster/api-token/rotate?scope=read_only", &()).await
    }

    /// The cluster's CA: the roots HTTPS clients need.
    pub async fn ca(&self) -> Result<crate::wire::CaInfo, ClientError> {
        self.get("/cluster/ca", &()).await
    }

    /// Starts a CA rotation (to `rotation`'s CA, or a new one).
    pub async fn rotate_ca(
        &self,
        rotation: &crate::wire::CaRotation,
    ) -> Result<crate::wire::CaInfo, ClientError> {
        self.post("/cluster/ca/rotate", rotation).await
    }

    /// Has the manager answering build a snapshot of its state now.
    pub async fn snapshot(&self) -> Result<crate::wire::SnapshotBuilt, ClientError> {
        self.post("/cluster/snapshot", &()).await
    }

    /// The cluster's unlock key (autolock on only).
    pub async fn unlock_key(&self) -> Result<crate::wire::UnlockKey, ClientError> {
        self.get("/cluster/unlock-key", &()).await
    }

    /// Replaces the unlock key; every manager re-wraps its data key with the new one.
    pub async fn rotate_unlock_key(&self) -> Result<crate::wire::UnlockKey, ClientError> {
        self.post("/cluster/unlock-key/rotate", &()).await
    }

    /// Gives a locked manager the unlock key, so it starts.
    pub async fn unlock(&self, key: &crate::wire::UnlockKey) -> Result<(), ClientError> {
        self.json::<serde_json::Value>(self.request(Method::POST, "/cluster/unlock").json(key))
            .await
            .map(|_| ())
    }

    /// The OpenAPI document the manager serves.
    pub async fn openapi(&self) -> Result<serde_json::Value, ClientError> {
        self.get("/openapi.json", &()).await
    }

    // --- services and tasks --------------------------------------------------------

    /// Services matching `filter`.
    pub async fn services(&self, filter: &ServiceFilter) -> Result<Vec<Service>, ClientError> {
        self.get("/services", filter).await
    }

    /// A page of services (`filter.limit`, `filter.cursor`), with their task counts
    /// when `filter.status`; with `filter.wait_index`, answered once services changed
    /// past it (or `filter.wait` ran out).
    pub async fn services_page(
        &self,
        filter: &ServiceFilter,
    ) -> Result<Page<ServiceWithStatus>, ClientError> {
        self.get_page("/services", filter).await
    }

    /// One service, by id or name.
    pub async fn service(&self, id_or_name: &str) -> Result<Service, ClientError> {
        self.get(&format!("/services/{}", seg(id_or_name)), &()).await
    }

    /// Creates a service.
    pub async fn create_service(&self, spec: &ServiceSpec) -> Result<Created, ClientError> {
        self.post("/services", spec).await
    }

    /// Replaces a service's spec, if it is still at `version`.
    pub async fn update_service(
        &self,
        id_or_name: &str,
        version: u64,
        spec: &ServiceSpec,
    ) -> Result<Written, ClientError> {
        let body = ServiceUpdate { version, spec: spec.clone() };
        self.json(self.request(Method::PUT, &format!("/services/{}", seg(id_or_name))).json(&body)).await
    }

    /// Sets a service's replica count.
    pub async fn scale_service(&self, id_or_name: &str, replicas: u64) -> Result<Written, ClientError> {
        self.post(&format!("/services/{}/scale", seg(id_or_name)), &Scale { replicas }).await
    }

    /// Goes back to the service's previous spec.
    pub async fn rollback_service(&self, id_or_name: &str) -> Result<Written, ClientError> {
        self.post(&format!("/services/{}/rollback", seg(id_or_name)), &()).await
    }

    /// Removes a service (its tasks are shut down).
    pub async fn remove_service(&self, id_or_name: &str) -> Result<(), ClientError> {
        self.delete(&format!("/services/{}", seg(id_or_name)), &()).await
    }

    /// Tasks matching `filter`.
    pub async fn tasks(&self, filter: &TaskFilter) -> Result<Vec<Task>, ClientError> {
        self.get("/tasks", filter).await
    }

    /// A page of tasks (`filter.limit`, `filter.cursor`); with `filter.wait_index`,
    /// answered once tasks changed past it (or `filter.wait` ran out).
    pub async fn tasks_page(&self, filter: &TaskFilter) -> Result<Page<Task>, ClientError> {
        self.get_page("/tasks", filter).await
    }

    /// Every task matching `filter`, read a page of `limit` at a time (`filter.limit`
    /// and `filter.cursor` are replaced).
    pub async fn tasks_paged(&self, filter: &TaskFilter, limit: usize) -> Result<Vec<Task>, ClientError> {
        let mut filter = TaskFilter { limit: Some(limit), cursor: None, ..filter.clone() };
        let mut all = Vec::new();
        loop {
            let page = self.tasks_page(&filter).await?;
            all.extend(page.items);
            match page.next_cursor {
                Some(c) => filter.cursor = Some(c),
                None => return Ok(all),
            }
        }
    }

    /// One task.
    pub async fn task(&self, id: &str) -> Result<Task, ClientError> {
        self.get(&format!("/tasks/{}", seg(id)), &()).await
    }

    /// Opens an exec in a running task's container (`task exec`): the connection
    /// switches to [`crate::exec::Frame`]s, the first of which the caller sends.
    pub async fn exec_task(&self, id: &str) -> Result<reqwest::Upgraded, ClientError> {
        let req = self
            .request(Method::POST, &format!("/tasks/{}/exec", seg(id)))
            .header(reqwest::header::CONNECTION, "Upgrade")
            .header(reqwest::header::UPGRADE, crate::exec::PROTOCOL);
        let resp = req.send().await.map_err(|e| self.connect_error(e))?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(self.failure(resp).await);
        }
        resp.upgrade().await.map_err(|e| self.connect_error(e))
    }

    // --- nodes ---------------------------------------------------------------------

    /// Every node.
    pub async fn nodes(&self, opts: ReadOptions) -> Result<Vec<Node>, ClientError> {
        self.get("/nodes", &opts).await
    }

    /// A page of nodes; with `opts.wait_index`, once nodes changed past it.
    pub async fn nodes_page(&self, opts: &ListOptions) -> Result<Page<Node>, ClientError> {
        self.get_page("/nodes", opts).await
    }

    /// One node, by id or hostname.
    pub async fn node(&self, id_or_hostname: &str) -> Result<Node, ClientError> {
        self.get(&format!("/nodes/{}", seg(id_or_hostname)), &()).await
    }

    /// Replaces a node's spec (availability, labels, role), if still at `version`.
    pub async fn update_node(
        &self,
        id_or_hostname: &str,
        update: &NodeUpdate,
    ) -> Result<Written, ClientError> {
        self.json(self.request(Method::PUT, &format!("/nodes/{}", seg(id_or_hostname))).json(update)).await
    }

    /// Removes a node from the cluster.
    pub async fn remove_node(&self, id_or_hostname: &str, force: bool) -> Result<(), ClientError> {
        self.delete(&format!("/nodes/{}", seg(id_or_hostname)), &RemoveOptions { force }).await
    }

    // --- networks, secrets, configs ------------------------------------------------

    /// Every network.
    pub async fn networks(&self) -> Result<Vec<Network>, ClientError> {
        self.get("/networks", &()).await
    }

    /// A page of networks; with `opts.wait_index`, once networks changed past it.
    pub async fn networks_page(&self, opts: &ListOptions) -> Result<Page<Network>, ClientError> {
        self.get_page("/networks", opts).await
    }

    /// One network, by id or name.
    pub async fn network(&self, id_or_name: &str) -> Result<Network, ClientError> {
        self.get(&format!("/networks/{}", seg(id_or_name)), &()).await
    }

    /// Puts a standalone container of `node` on an attachable network; returns its
    /// address there.
    pub async fn attach_container(
        &self,
        node: &str,
        network: &str,
        container_id: &str,
    ) -> Result<crate::node::ContainerAttachment, ClientError> {
        let body = crate::wire::AttachRequest { network: network.into(), container_id: container_id.into() };
        self.post(&format!("/nodes/{}/attachments", seg(node)), &body).await
    }

    /// Takes a standalone container of `node` off its networks.
    pub async fn detach_container(&self, node: &str, container_id: &str) -> Result<(), ClientError> {
        self.delete(&format!("/nodes/{}/attachments/{}", seg(node), seg(container_id)), &()).await
    }

    /// A network with the tasks attached to it, by node.
    pub async fn network_inspect(
        &self,
        id_or_name: &str,
    ) -> Result<crate::wire::NetworkInspect, ClientError> {
        self.get(&format!("/networks/{}", seg(id_or_name)), &()).await
    }

    /// Creates an overlay network; its subnet and VNI are allocated if not given.
    pub async fn create_network(&self, spec: &NetworkSpec) -> Result<Created, ClientError> {
        self.post("/networks", spec).await
    }

    /// Removes a network no service uses.
    pub async fn remove_network(&self, id_or_name: &str) -> Result<(), ClientError> {
        self.delete(&format!("/networks/{}", seg(id_or_name)), &()).await
    }

    /// Every secret or config (never their data).
    pub async fn payloads(&self, kind: PayloadKind) -> Result<Vec<PayloadInfo>, ClientError> {
        self.get(&format!("/{}", kind.path()), &()).await
    }

    /// A page of secrets or configs; with `opts.wait_index`, once they changed past it.
    pub async fn payloads_page(
        &self,
        kind: PayloadKind,
        opts: &ListOptions,
    ) -> Result<Page<PayloadInfo>, ClientError> {
        self.get_page(&format!("/{}", kind.path()), opts).await
    }

    /// One secret or config, by id or name.
    pub async fn payload(&self, kind: PayloadKind, id_or_name: &str) -> Result<PayloadInfo, ClientError> {
        self.get(&format!("/{}/{}", kind.path(), seg(id_or_name)), &()).await
    }

    /// Creates a secret or config.
    pub async fn create_payload(
        &self,
        kind: PayloadKind,
        spec: &PayloadSpec,
    ) -> Result<Created, ClientError> {
        self.post(&format!("/{}", kind.path()), spec).await
    }

    /// Replaces a secret's or config's labels (`update.version` must be current).
    pub async fn update_payload(
        &self,
        kind: PayloadKind,
        id_or_name: &str,
        update: &crate::PayloadUpdate,
    ) -> Result<Written, ClientError> {
        let path = format!("/{}/{}", kind.path(), seg(id_or_name));
        self.json(self.request(Method::PUT, &path).json(update)).await
    }

    /// Removes a secret or config no service uses.
    pub async fn remove_payload(&self, kind: PayloadKind, id_or_name: &str) -> Result<(), ClientError> {
        self.delete(&format!("/{}/{}", kind.path(), seg(id_or_name)), &()).await
    }

    // --- stacks --------------------------------------------------------------------

    /// Every stack.
    pub async fn stacks(&self) -> Result<Vec<StackInfo>, ClientError> {
        self.get("/stacks", &()).await
    }

    /// A page of stacks; with `opts.wait_index`, once their objects changed past it.
    pub async fn stacks_page(&self, opts: &ListOptions) -> Result<Page<StackInfo>, ClientError> {
        self.get_page("/stacks", opts).await
    }

    /// Creates or updates a stack from a Compose file, all in one change.
    pub async fn deploy_stack(&self, name: &str, deploy: &StackDeploy) -> Result<StackDeployed, ClientError> {
        self.json(self.request(Method::PUT, &format!("/stacks/{}", seg(name))).json(deploy)).await
    }

    /// Removes a stack's services, networks, secrets and configs, in one change.
    pub async fn remove_stack(&self, name: &str) -> Result<StackDeployed, ClientError> {
        self.json(self.request(Method::DELETE, &format!("/stacks/{}", seg(name)))).await
    }

    /// Streams the logs of a service (all its tasks) or of one task, as records.
    pub async fn logs(&self, of: LogsOf, id: &str, query: &LogQuery) -> Result<LogStream, ClientError> {
        let path = match of {
            LogsOf::Service => format!("/services/{}/logs", seg(id)),
            LogsOf::Task => format!("/tasks/{}/logs", seg(id)),
        };
        let resp = self.send(self.request(Method::GET, &path).query(query)).await?;
        let endpoint = self.endpoint.to_string();
        let mut buf: Vec<u8> = Vec::new();
        Ok(items(resp, endpoint.clone(), "the log stream broke", move |chunk| {
            buf.extend_from_slice(chunk);
            let mut out = Vec::new();
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                out.push(serde_json::from_slice::<LogRecord>(&line).map_err(|e| ClientError::Protocol {
                    endpoint: endpoint.clone(),
                    reason: e.to_string(),
                }));
            }
            out
        }))
    }

    // --- events --------------------------------------------------------------------

    /// Events after `query.since` (or from now), then live ones, until the stream is
    /// dropped or the manager goes away.
    pub async fn events(&self, query: &EventQuery) -> Result<EventStream, ClientError> {
        let resp = self.send(self.request(Method::GET, "/events").query(query)).await?;
        let endpoint = self.endpoint.to_string();
        let mut parser = SseParser::default();
        let hint = "the event stream broke; resume with --since the last index seen";
        Ok(items(resp, endpoint.clone(), hint, move |chunk| {
            parser
                .push(chunk)
                .into_iter()
                .map(|message| match message.event.as_str() {
                    "error" => match serde_json::from_str::<ErrorBody>(&message.data) {
                        Ok(b) => Err(ClientError::Api {
                            status: 410,
                            code: b.error.code,
                            message: b.error.message,
                            field: b.error.field,
                            details: b.error.details,
                        }),
                        Err(e) => {
                            Err(ClientError::Protocol { endpoint: endpoint.clone(), reason: e.to_string() })
                        }
                    },
                    _ => serde_json::from_str::<Event>(&message.data).map_err(|e| ClientError::Protocol {
                        endpoint: endpoint.clone(),
                        reason: e.to_string(),
                    }),
                })
                .collect()
        }))
    }
}

/// A path segment, percent-encoded where needed (names are DNS labels, ids base 36,
/// so this only guards against surprises).
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A streamed reply read chunk by chunk on a task of its own: `parse` turns each
/// chunk into the items it completes. A broken stream ends with a connection error.
fn items<T: Send + 'static>(
    resp: reqwest::Response,
    endpoint: String,
    hint: &'static str,
    mut parse: impl FnMut(&[u8]) -> Vec<Result<T, ClientError>> + Send + 'static,
) -> Pin<Box<dyn Stream<Item = Result<T, ClientError>> + Send>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut bytes = resp.bytes_stream();
    tokio::spawn(async move {
        while let Some(chunk) = bytes.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    let _ = tx.send(Err(ClientError::Connect { endpoint, reason: e.to_string(), hint }));
                    return;
                }
            };
            for item in parse(&chunk) {
                if tx.send(item).is_err() {
                    return;
                }
            }
        }
    });
    Box::pin(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}

/// One Server-Sent Events message.
#[derive(Debug, Default, PartialEq, Eq)]
struct SseMessage {
    event: String,
    data: String,
}

/// Splits a byte stream into SSE messages (`event:` and `data:` lines up to a blank
/// line; comments and `id:` lines are skipped, the index is inside the data).
#[derive(Debug, Default)]
struct SseParser {
    buf: Vec<u8>,
    current: SseMessage,
}

impl SseParser {
    fn push(&mut self, chunk: &[u8]) -> Vec<SseMessage> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !self.current.data.is_empty() {
                    out.push(std::mem::take(&mut self.current));
                }
                self.current = SseMessage::default();
            } else if let Some(v) = line.strip_prefix("event:") {
                self.current.event = v.trim_start().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                if !self.current.data.is_empty() {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(v.strip_prefix(' ').unwrap_or(v));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        assert_eq!(Endpoint::parse("unix:///run/x.sock", None), Endpoint::Unix("/run/x.sock".into()));
        assert_eq!(Endpoint::parse("/run/x.sock", None), Endpoint::Unix("/run/x.sock".into()));
        assert_eq!(
            Endpoint::parse("tcp://10.0.0.1:2376", Some("t".into())),
            Endpoint::Tcp { addr: "10.0.0.1:2376".into(), token: Some("t".into()) }
        );
        assert_eq!(Endpoint::parse("127.0.0.1:2376", None).to_string(), "tcp://127.0.0.1:2376");
    }

    #[test]
    fn sse_messages_split_across_chunks() {
        let mut p = SseParser::default();
        assert!(p.push(b": keep-alive\n\nid: 5\nevent: service.create\nda").is_empty());
        let got = p.push(b"ta: {\"a\":1}\n\nevent: error\ndata: x\r\n\r\n");
        assert_eq!(
            got,
            vec![
                SseMessage { event: "service.create".into(), data: "{\"a\":1}".into() },
                SseMessage { event: "error".into(), data: "x".into() },
            ]
        );
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(seg("web_1"), "web_1");
        assert_eq!(seg("a/b c"), "a%2Fb%20c");
    }
}
