//! `/swarm`: the cluster as Docker's swarm — its info and join tokens, its spec
//! mapped to and from Shoal's [`ClusterSpec`] (what Shoal cannot honour is refused by
//! its Docker field), token, unlock-key and CA rotation through the same manager
//! calls as the cluster API; `init`, `join` and `leave` answered as dockerd answers
//! on a node that is part of a swarm already.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use shoal_api::cluster::{Cluster, ClusterSpec};
use shoal_api::wire::ClusterUpdate;

use super::{DockerError, DockerJson, DockerQuery, flag};
use crate::http::Api;

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/swarm", get(inspect))
        .route("/swarm/update", post(update))
        .route("/swarm/init", post(init))
        .route("/swarm/join", post(join))
        .route("/swarm/leave", post(leave))
        .route("/swarm/unlockkey", get(unlock_key))
        .route("/swarm/unlock", post(unlock))
}

/// Swarm's Raft ticks: Shoal's Raft times elections by the clock, not by ticks, so
/// these are shown as swarm's defaults and only those values are taken back.
const ELECTION_TICK: u64 = 10;
const HEARTBEAT_TICK: u64 = 1;

/// What dockerd answers `init` and `join` with on a node in a swarm (503).
const ALREADY_IN_SWARM: &str = "This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm \
     and join another one.";

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Shoal's cluster spec as Docker's swarm `Spec`.
pub(super) fn spec_json(spec: &ClusterSpec) -> Value {
    json!({
        "Name": spec.name,
        "Labels": spec.labels,
        "Orchestration": { "TaskHistoryRetentionLimit": spec.task_history_limit },
        "Raft": {
            "SnapshotInterval": spec.raft.snapshot_interval,
            "KeepOldSnapshots": 0,
            "LogEntriesForSlowFollowers": spec.raft.log_entries_for_slow_followers,
            "ElectionTick": ELECTION_TICK,
            "HeartbeatTick": HEARTBEAT_TICK,
        },
        "Dispatcher": { "HeartbeatPeriod": nanos(spec.dispatcher.heartbeat_period) },
        "CAConfig": { "NodeCertExpiry": nanos(spec.ca_config.node_cert_expiry) },
        "TaskDefaults": {},
        "EncryptionConfig": { "AutoLockManagers": spec.autolock },
    })
}

/// Docker's `ClusterInfo` for the cluster (no join tokens).
pub(super) fn cluster_info_json(c: &Cluster) -> Value {
    json!({
        "ID": c.id,
        "Version": { "Index": c.meta.version },
        "CreatedAt": c.meta.created_at,
        "UpdatedAt": c.meta.updated_at,
        "Spec": spec_json(&c.spec),
        "TLSInfo": tls_info(c),
        "RootRotationInProgress": !c.ca.cross_signed.is_empty(),
        "DefaultAddrPool": c.spec.default_address_pool.pools.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "SubnetSize": c.spec.default_address_pool.mask_length,
        "DataPathPort": c.spec.data_path_port,
    })
}

/// Docker's `TLSInfo`: the trust root, and the subject and public key (base64 DER)
/// of the CA that signs node certificates now.
pub(super) fn tls_info(c: &Cluster) -> Value {
    use base64::Engine as _;
    let b64 = |der: &[u8]| base64::engine::general_purpose::STANDARD.encode(der);
    let issuer = shoal_pki::ca::first_cert(&c.ca.signer_cert, "the signing CA").ok().and_then(|der| {
        let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
        Some((b64(cert.tbs_certificate.subject.as_raw()), b64(cert.tbs_certificate.subject_pki.raw)))
    });
    let (subject, key) = issuer.unwrap_or_default();
    json!({ "TrustRoot": c.ca.roots_pem, "CertIssuerSubject": subject, "CertIssuerPublicKey": key })
}

fn cluster(api: &Api) -> Result<Cluster, DockerError> {
    api.manager.cluster().ok_or_else(|| DockerError::from(crate::manager::ManagerError::NotInitialized))
}

async fn inspect(State(api): State<Api>) -> Result<axum::Json<Value>, DockerError> {
    let c = cluster(&api)?;
    let mut info = cluster_info_json(&c);
    info["JoinTokens"] = json!({ "Worker": c.join_tokens.worker, "Manager": c.join_tokens.manager });
    Ok(axum::Json(info))
}

/// Docker's swarm `Spec`, as `swarm update` and `join-token --rotate` send it back.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct SwarmSpec {
    name: String,
    labels: Option<BTreeMap<String, String>>,
    orchestration: Orchestration,
    raft: RaftSpec,
    dispatcher: DispatcherSpec,
    #[serde(rename = "CAConfig")]
    ca_config: CaSpec,
    task_defaults: TaskDefaults,
    encryption_config: EncryptionConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase", deny_unknown_fields)]
struct Orchestration {
    task_history_retention_limit: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase", deny_unknown_fields)]
struct RaftSpec {
    snapshot_interval: u64,
    keep_old_snapshots: Option<u64>,
    log_entries_for_slow_followers: u64,
    election_tick: u64,
    heartbeat_tick: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase", deny_unknown_fields)]
struct DispatcherSpec {
    heartbeat_period: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase", deny_unknown_fields)]
struct CaSpec {
    node_cert_expiry: u64,
    #[serde(rename = "ExternalCAs")]
    external_cas: Option<Vec<Value>>,
    #[serde(rename = "SigningCACert")]
    signing_ca_cert: String,
    #[serde(rename = "SigningCAKey")]
    signing_ca_key: String,
    force_rotate: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase", deny_unknown_fields)]
struct TaskDefaults {
    log_driver: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase", deny_unknown_fields)]
struct EncryptionConfig {
    auto_lock_managers: bool,
}

/// What a swarm spec asks of Shoal: the cluster spec, and whether to rotate the CA
/// (`ForceRotate` past the shown 0, or a signing CA given: its PEMs).
#[derive(Debug, PartialEq)]
pub(super) struct Applied {
    pub(super) spec: ClusterSpec,
    pub(super) rotate_ca: Option<Option<(String, String)>>,
}

/// Shoal's cluster spec from `current` with Docker's `d` applied; zero values mean
/// "unchanged", as swarmkit reads them.
pub(super) fn apply_spec(current: &ClusterSpec, d: &SwarmSpec) -> Result<Applied, DockerError> {
    let mut spec = current.clone();
    if !d.name.is_empty() {
        spec.name = d.name.clone();
    }
    if let Some(labels) = &d.labels {
        spec.labels = labels.clone();
    }
    if let Some(limit) = d.orchestration.task_history_retention_limit {
        spec.task_history_limit = limit;
    }
    if d.raft.keep_old_snapshots.is_some_and(|n| n != 0) {
        return Err(DockerError::unsupported(
            "Raft.KeepOldSnapshots",
            "Shoal keeps only its latest Raft snapshot",
        ));
    }
    for (field, value, shown) in [
        ("Raft.ElectionTick", d.raft.election_tick, ELECTION_TICK),
        ("Raft.HeartbeatTick", d.raft.heartbeat_tick, HEARTBEAT_TICK),
    ] {
        if value != 0 && value != shown {
            return Err(DockerError::unsupported(
                field,
                &format!(
                    "Shoal's Raft times elections and heartbeats by the clock, not by ticks ({shown} is shown)"
                ),
            ));
        }
    }
    if d.raft.snapshot_interval != 0 {
        spec.raft.snapshot_interval = d.raft.snapshot_interval;
    }
    if d.raft.log_entries_for_slow_followers != 0 {
        spec.raft.log_entries_for_slow_followers = d.raft.log_entries_for_slow_followers;
    }
    if d.dispatcher.heartbeat_period != 0 {
        spec.dispatcher.heartbeat_period = Duration::from_nanos(d.dispatcher.heartbeat_period);
    }
    if d.ca_config.node_cert_expiry != 0 {
        spec.ca_config.node_cert_expiry = Duration::from_nanos(d.ca_config.node_cert_expiry);
    }
    if d.ca_config.external_cas.as_ref().is_some_and(|cas| !cas.is_empty()) {
        return Err(DockerError::unsupported(
            "CAConfig.ExternalCAs",
            "Shoal's managers are the cluster's CA; external CAs are not supported",
        ));
    }
    let given = match (d.ca_config.signing_ca_cert.is_empty(), d.ca_config.signing_ca_key.is_empty()) {
        (true, true) => None,
        (false, false) => Some((d.ca_config.signing_ca_cert.clone(), d.ca_config.signing_ca_key.clone())),
        _ => {
            return Err(DockerError::unsupported(
                "CAConfig.SigningCACert",
                "give the signing CA's certificate and its key (SigningCAKey) together",
            ));
        }
    };
    let rotate_ca = (d.ca_config.force_rotate != 0 || given.is_some()).then_some(given);
    if d.task_defaults.log_driver.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(DockerError::unsupported(
            "TaskDefaults.LogDriver",
            "Shoal's tasks log to their nodes' log store; a default log driver cannot be set",
        ));
    }
    spec.autolock = d.encryption_config.auto_lock_managers;
    Ok(Applied { spec, rotate_ca })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateQuery {
    version: Option<String>,
    rotate_worker_token: Option<String>,
    rotate_manager_token: Option<String>,
    rotate_manager_unlock_key: Option<String>,
}

/// `POST /swarm/update?version=N`: the spec (what maps), then the rotations asked
/// for. 200 with no body.
async fn update(
    State(api): State<Api>,
    DockerQuery(q): DockerQuery<UpdateQuery>,
    DockerJson(body): DockerJson<SwarmSpec>,
) -> Result<StatusCode, DockerError> {
    let version = DockerError::version_param(q.version.as_deref(), "swarm")?;
    let current = cluster(&api)?;
    if current.meta.version != version {
        return Err(DockerError::out_of_sequence("the swarm", current.meta.version, version));
    }
    let applied = apply_spec(&current.spec, &body)?;
    if applied.spec != current.spec {
        let axum::Json(_written) = crate::http::cluster::update(
            State(api.clone()),
            crate::http::Body(ClusterUpdate { version, spec: applied.spec }),
        )
        .await?;
    }
    if let Some(given) = applied.rotate_ca {
        let keys = match given {
            Some((cert, key)) => Some(
                shoal_pki::CaKeys::from_pem(&cert, &key)
                    .map_err(|e| DockerError::unsupported("CAConfig.SigningCACert", &e.to_string()))?,
            ),
            None => None,
        };
        api.manager.rotate_ca(keys).await?;
    }
    if flag(q.rotate_worker_token.as_deref()) {
        api.manager.rotate_join_token("worker").await?;
    }
    if flag(q.rotate_manager_token.as_deref()) {
        api.manager.rotate_join_token("manager").await?;
    }
    if flag(q.rotate_manager_unlock_key.as_deref()) {
        api.manager.rotate_unlock_key().await?;
    }
    Ok(StatusCode::OK)
}

async fn init() -> DockerError {
    DockerError::new(StatusCode::SERVICE_UNAVAILABLE, ALREADY_IN_SWARM)
}

async fn join() -> DockerError {
    DockerError::new(StatusCode::SERVICE_UNAVAILABLE, ALREADY_IN_SWARM)
}

/// A manager's daemon serves this API: it leaves by being demoted and stopped, not
/// through its own API.
async fn leave() -> DockerError {
    DockerError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "This node is a manager of a Shoal cluster and serves this API: demote it from another manager \
         (`docker node demote`), then stop its daemon (`shoal daemon` leaves with it)",
    )
}

async fn unlock_key(State(api): State<Api>) -> Result<axum::Json<Value>, DockerError> {
    let c = cluster(&api)?;
    if !c.spec.autolock {
        return Err(DockerError::bad_request(
            "Autolock is not enabled on this swarm (`docker swarm update --autolock=true` turns it on)",
        ));
    }
    Ok(axum::Json(json!({ "UnlockKey": c.unlock_key })))
}

/// A manager that answers is unlocked already (a locked one serves only the cluster
/// API's unlock).
async fn unlock() -> DockerError {
    DockerError::bad_request(
        "This node is not locked: it is running (a locked Shoal manager serves only `shoal cluster unlock`)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker(v: Value) -> SwarmSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_shown_spec_maps_back_to_itself() {
        let spec = ClusterSpec::default();
        let shown = spec_json(&spec);
        let back = apply_spec(&spec, &docker(shown)).unwrap();
        assert_eq!(back, Applied { spec, rotate_ca: None });
    }

    #[test]
    fn what_maps_changes_and_what_does_not_is_refused_by_name() {
        let spec = ClusterSpec::default();
        let mut d = spec_json(&spec);
        d["Orchestration"]["TaskHistoryRetentionLimit"] = json!(2);
        d["Dispatcher"]["HeartbeatPeriod"] = json!(7_000_000_000u64);
        d["EncryptionConfig"]["AutoLockManagers"] = json!(true);
        let out = apply_spec(&spec, &docker(d.clone())).unwrap().spec;
        assert_eq!(out.task_history_limit, 2);
        assert_eq!(out.dispatcher.heartbeat_period, Duration::from_secs(7));
        assert!(out.autolock);
        for (path, value, field) in [
            (("Raft", "ElectionTick"), json!(20), "Raft.ElectionTick"),
            (("Raft", "KeepOldSnapshots"), json!(3), "Raft.KeepOldSnapshots"),
            (
                ("CAConfig", "ExternalCAs"),
                json!([{"Protocol": "cfssl", "URL": "https://x"}]),
                "CAConfig.ExternalCAs",
            ),
            (("TaskDefaults", "LogDriver"), json!({"Name": "syslog"}), "TaskDefaults.LogDriver"),
        ] {
            let mut bad = d.clone();
            bad[path.0][path.1] = value;
            let e = apply_spec(&spec, &docker(bad)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.starts_with(field), "{}", e.message);
        }
        let mut rotate = d;
        rotate["CAConfig"]["ForceRotate"] = json!(1);
        assert_eq!(apply_spec(&spec, &docker(rotate)).unwrap().rotate_ca, Some(None));
    }
}
