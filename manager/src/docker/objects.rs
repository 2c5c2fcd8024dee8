//! `/networks`, `/secrets` and `/configs` in Docker's shapes, written through the
//! cluster API's handlers. Networks are overlays with swarm scope (key `Id`); what of
//! Docker's network create Shoal cannot honour is refused by field. Secrets and
//! configs keep their data; only their labels change (`only updates to Labels are
//! allowed` otherwise); a secret's data is never shown, a config's is (base64).

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use shoal_api::{Network, NetworkSpec, PayloadSpec, PayloadUpdate};

use super::filters::Filters;
use super::{DockerError, DockerJson, DockerQuery, ListQuery, VersionQuery};
use crate::http::{Api, Body, PayloadBody};
use crate::plan::find;
use crate::store::{Kind, Object};

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/networks", get(list_networks))
        .route("/networks/create", post(create_network))
        .route("/networks/{id}", get(inspect_network).delete(remove_network))
        .route("/secrets", get(list_secrets))
        .route("/secrets/create", post(create_secret))
        .route("/secrets/{id}", get(inspect_secret).delete(remove_secret))
        .route("/secrets/{id}/update", post(update_secret))
        .route("/configs", get(list_configs))
        .route("/configs/create", post(create_config))
        .route("/configs/{id}", get(inspect_config).delete(remove_config))
        .route("/configs/{id}/update", post(update_config))
}

/// Docker's option for an overlay's MTU.
const MTU_OPTION: &str = "com.docker.network.driver.mtu";
/// Docker's option showing an overlay's VXLAN id.
const VXLAN_OPTION: &str = "com.docker.network.driver.overlay.vxlanid_list";

/// The object `key` names, with Docker's 404 (`network x not found`).
fn found<'a>(s: &'a crate::store::Store, kind: Kind, key: &str) -> Result<&'a Object, DockerError> {
    find(s, kind, key).map_err(|e| DockerError::lookup(e, kind.as_str(), key))
}

// ---- networks ----

/// A network in Docker's shape.
pub(super) fn network_json(n: &Network) -> Value {
    let mut options: BTreeMap<String, String> = n.spec.options.clone();
    options.insert(VXLAN_OPTION.to_owned(), n.vni.to_string());
    if let Some(mtu) = n.spec.mtu {
        options.insert(MTU_OPTION.to_owned(), mtu.to_string());
    }
    json!({
        "Name": n.spec.name,
        "Id": n.id,
        "Created": n.meta.created_at,
        "Scope": "swarm",
        "Driver": "overlay",
        "EnableIPv6": false,
        "IPAM": {
            "Driver": "default",
            "Options": null,
            "Config": [{ "Subnet": n.subnet.to_string(), "Gateway": n.gateway.to_string() }],
        },
        "Internal": n.spec.internal,
        "Attachable": n.spec.attachable,
        "Ingress": n.spec.ingress,
        "ConfigFrom": { "Network": "" },
        "ConfigOnly": false,
        "Containers": {},
        "Options": options,
        "Labels": n.spec.labels,
    })
}

const NETWORK_FILTERS: &[&str] = &["dangling", "driver", "id", "label", "name", "scope", "type"];

/// Whether `n` passes `f`. `name` matches a part of the name, `id` a prefix, as in
/// dockerd; `type=builtin` is the ingress network; `dangling` is not known here
/// (tasks come and go) and matches every network.
pub(super) fn network_matches(f: &Filters, n: &Network) -> bool {
    f.any("driver", |d| d == "overlay")
        && f.prefix_of("id", &n.id)
        && f.any("name", |v| n.spec.name.contains(v))
        && f.any("scope", |s| s == "swarm")
        && f.any("type", |t| if n.spec.ingress { t == "builtin" } else { t == "custom" })
        && f.labels_match(&n.spec.labels)
}

async fn list_networks(
    State(api): State<Api>,
    DockerQuery(q): DockerQuery<ListQuery>,
) -> Result<Json<Vec<Value>>, DockerError> {
    let f = Filters::parse(q.filters.as_deref(), NETWORK_FILTERS)?;
    let list = api
        .read(false, |s| {
            s.list(Kind::Network)
                .filter_map(|o| match o {
                    Object::Network(n) if network_matches(&f, n) => Some(network_json(n)),
                    _ => None,
                })
                .collect()
        })
        .await?;
    Ok(Json(list))
}

async fn inspect_network(
    State(api): State<Api>,
    Path(key): Path<String>,
) -> Result<Json<Value>, DockerError> {
    let n = api
        .read(false, |s| match found(s, Kind::Network, &key)? {
            Object::Network(n) => Ok::<_, DockerError>(network_json(n)),
            _ => unreachable!("the network index holds networks"),
        })
        .await??;
    Ok(Json(n))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct NetworkCreate {
    name: String,
    check_duplicate: bool,
    driver: String,
    scope: String,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    ipam: Option<Ipam>,
    internal: bool,
    attachable: bool,
    ingress: bool,
    config_only: bool,
    config_from: Option<ConfigFrom>,
    options: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase", deny_unknown_fields)]
struct Ipam {
    driver: String,
    options: Option<BTreeMap<String, String>>,
    config: Option<Vec<IpamConfig>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase", deny_unknown_fields)]
struct IpamConfig {
    subnet: String,
    #[serde(rename = "IPRange")]
    ip_range: String,
    gateway: String,
    auxiliary_addresses: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase", deny_unknown_fields)]
struct ConfigFrom {
    network: String,
}

/// Shoal's spec for Docker's network create body, refusing by field what Shoal
/// cannot honour.
pub(super) fn network_spec(d: NetworkCreate) -> Result<NetworkSpec, DockerError> {
    let _ = d.check_duplicate; // Shoal's network names are always unique.
    match d.driver.as_str() {
        "" | "overlay" => {}
        other => {
            return Err(DockerError::unsupported(
                "Driver",
                &format!(
                    "Shoal's networks are overlays: the driver {other:?} is not supported (use -d overlay)"
                ),
            ));
        }
    }
    if !matches!(d.scope.as_str(), "" | "swarm") {
        return Err(DockerError::unsupported("Scope", "Shoal's networks span the cluster: only scope swarm"));
    }
    if d.enable_ipv6 {
        return Err(DockerError::unsupported("EnableIPv6", "Shoal's overlays are IPv4 only"));
    }
    if d.config_only {
        return Err(DockerError::unsupported("ConfigOnly", "Shoal has no config-only networks"));
    }
    if d.config_from.is_some_and(|c| !c.network.is_empty()) {
        return Err(DockerError::unsupported(
            "ConfigFrom",
            "Shoal has no config-only networks to take a config from",
        ));
    }
    let mut spec = NetworkSpec::new(d.name);
    spec.labels = d.labels.unwrap_or_default();
    spec.internal = d.internal;
    spec.attachable = d.attachable;
    spec.ingress = d.ingress;
    for (k, v) in d.options.unwrap_or_default() {
        match k.as_str() {
            "encrypted" => {
                spec.options.insert(k, v);
            }
            MTU_OPTION => {
                let mtu = v.trim().parse().map_err(|_| {
                    DockerError::bad_request(format!("Options.{MTU_OPTION}: {v:?} is not a number"))
                })?;
                spec.mtu = Some(mtu);
            }
            other => {
                return Err(DockerError::unsupported(
                    &format!("Options.{other}"),
                    &format!("not an overlay option Shoal knows (it knows: encrypted, {MTU_OPTION})"),
                ));
            }
        }
    }
    if let Some(ipam) = d.ipam {
        if !matches!(ipam.driver.as_str(), "" | "default") {
            return Err(DockerError::unsupported(
                "IPAM.Driver",
                &format!(
                    "Shoal allocates overlay addresses itself: the IPAM driver {:?} is not supported",
                    ipam.driver
                ),
            ));
        }
        if ipam.options.is_some_and(|o| !o.is_empty()) {
            return Err(DockerError::unsupported(
                "IPAM.Options",
                "Shoal's address allocation takes no options",
            ));
        }
        let configs = ipam.config.unwrap_or_default();
        if configs.len() > 1 {
            return Err(DockerError::unsupported("IPAM.Config", "a Shoal overlay has one subnet"));
        }
        if let Some(c) = configs.into_iter().next() {
            if !c.ip_range.is_empty() {
                return Err(DockerError::unsupported(
                    "IPAM.Config[0].IPRange",
                    "Shoal gives addresses from the whole subnet; a narrower range is not supported",
                ));
            }
            if c.auxiliary_addresses.is_some_and(|a| !a.is_empty()) {
                return Err(DockerError::unsupported(
                    "IPAM.Config[0].AuxiliaryAddresses",
                    "Shoal reserves no auxiliary addresses",
                ));
            }
            if !c.subnet.is_empty() {
                spec.subnet = Some(c.subnet.parse().map_err(|_| {
                    DockerError::bad_request(format!(
                        "IPAM.Config[0].Subnet: {:?} is not an IPv4 subnet (Shoal's overlays are IPv4)",
                        c.subnet
                    ))
                })?);
            }
            if !c.gateway.is_empty() {
                spec.gateway = Some(c.gateway.parse().map_err(|_| {
                    DockerError::bad_request(format!(
                        "IPAM.Config[0].Gateway: {:?} is not an IPv4 address",
                        c.gateway
                    ))
                })?);
            }
        }
    }
    Ok(spec)
}

async fn create_network(
    State(api): State<Api>,
    DockerJson(body): DockerJson<NetworkCreate>,
) -> Result<(StatusCode, Json<Value>), DockerError> {
    let spec = network_spec(body)?;
    let (_, Json(created)) = crate::http::objects::create_network(State(api), Body(spec)).await?;
    Ok((StatusCode::CREATED, Json(json!({ "Id": created.id, "Warning": "" }))))
}

/// Removes a network no service uses. Docker lets the tasks still stopping on it go
/// later; Shoal keeps their addresses until they stop, so the removal waits for them
/// (as `docker stack rm` needs, right after removing the services).
async fn remove_network(State(api): State<Api>, Path(key): Path<String>) -> Result<StatusCode, DockerError> {
    let (id, user) = api
        .read(false, |s| {
            let net = found(s, Kind::Network, &key)?;
            let names = [net.id().to_owned(), network_name(net)];
            let user = crate::store::queries::services(s)
                .find(|svc| svc.spec.task_template.networks.iter().any(|a| names.contains(&a.target)))
                .map(|svc| svc.spec.name.clone());
            Ok::<_, DockerError>((net.id().to_owned(), user))
        })
        .await??;
    if let Some(service) = user {
        return Err(DockerError::bad_request(format!("network {key} is in use by service {service}")));
    }
    let remove = || crate::http::objects::remove_network(State(api.clone()), Path(id.clone()));
    crate::http::objects::once_tasks_let_go(&api, remove).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn network_name(o: &Object) -> String {
    match o {
        Object::Network(n) => n.spec.name.clone(),
        _ => String::new(),
    }
}

// ---- secrets and configs ----

/// A secret or config in Docker's shape; `with_data` for configs.
pub(super) fn payload_json(id: &str, meta: &shoal_api::Meta, spec: &PayloadSpec, with_data: bool) -> Value {
    use base64::Engine as _;
    let mut s = json!({ "Name": spec.name, "Labels": spec.labels });
    if with_data {
        s["Data"] = json!(base64::engine::general_purpose::STANDARD.encode(&spec.data));
    }
    json!({
        "ID": id,
        "Version": { "Index": meta.version },
        "CreatedAt": meta.created_at,
        "UpdatedAt": meta.updated_at,
        "Spec": s,
    })
}

fn payload_of(o: &Object) -> Option<(&str, &shoal_api::Meta, &PayloadSpec)> {
    match o {
        Object::Secret(s) => Some((&s.id, &s.meta, &s.spec)),
        Object::Config(c) => Some((&c.id, &c.meta, &c.spec)),
        _ => None,
    }
}

const PAYLOAD_FILTERS: &[&str] = &["id", "label", "name", "names"];

/// Whether a secret or config passes `f`: `name` and `id` by prefix, `names` exactly.
pub(super) fn payload_matches(f: &Filters, id: &str, spec: &PayloadSpec) -> bool {
    f.prefix_of("id", id)
        && f.prefix_of("name", &spec.name)
        && f.any("names", |n| n == spec.name)
        && f.labels_match(&spec.labels)
}

async fn list_payloads(
    api: &Api,
    kind: Kind,
    filters: Option<&str>,
) -> Result<Json<Vec<Value>>, DockerError> {
    let f = Filters::parse(filters, PAYLOAD_FILTERS)?;
    let list = api
        .read(false, |s| {
            s.list(kind)
                .filter_map(payload_of)
                .filter(|(id, _, spec)| payload_matches(&f, id, spec))
                .map(|(id, meta, spec)| payload_json(id, meta, spec, kind == Kind::Config))
                .collect()
        })
        .await?;
    Ok(Json(list))
}

async fn inspect_payload(api: &Api, kind: Kind, key: &str) -> Result<Json<Value>, DockerError> {
    let v = api
        .read(false, |s| {
            let o = found(s, kind, key)?;
            let (id, meta, spec) = payload_of(o).expect("a secret or config");
            Ok::<_, DockerError>(payload_json(id, meta, spec, kind == Kind::Config))
        })
        .await??;
    Ok(Json(v))
}

/// Docker's `SecretSpec` / `ConfigSpec`. Data is base64 (Go's `[]byte`).
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "PascalCase", deny_unknown_fields)]
pub(super) struct DockerPayloadSpec {
    name: String,
    labels: Option<BTreeMap<String, String>>,
    data: Option<String>,
    driver: Option<Value>,
    templating: Option<Value>,
}

impl std::fmt::Debug for DockerPayloadSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerPayloadSpec").field("name", &self.name).field("labels", &self.labels).finish()
    }
}

/// The spec's data, labels and name, refusing drivers and templating by field.
fn payload_spec(kind: Kind, d: DockerPayloadSpec) -> Result<(PayloadSpec, bool), DockerError> {
    use base64::Engine as _;
    if d.driver.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(DockerError::unsupported(
            "Driver",
            &format!("Shoal keeps {kind}s in its own store; {kind} drivers are not supported"),
        ));
    }
    if d.templating.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(DockerError::unsupported(
            "Templating",
            &format!("Shoal gives a {kind}'s data to tasks as it is; templating is not supported"),
        ));
    }
    let has_data = d.data.is_some();
    let data = match d.data {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| DockerError::bad_request("Data: not valid base64"))?,
        None => Vec::new(),
    };
    Ok((PayloadSpec { name: d.name, labels: d.labels.unwrap_or_default(), data }, has_data))
}

async fn create_payload(
    api: Api,
    kind: Kind,
    body: DockerPayloadSpec,
) -> Result<(StatusCode, Json<Value>), DockerError> {
    let (spec, _) = payload_spec(kind, body)?;
    let (_, Json(created)) = if kind == Kind::Secret {
        crate::http::objects::create_secret(State(api), PayloadBody(spec)).await?
    } else {
        crate::http::objects::create_config(State(api), PayloadBody(spec)).await?
    };
    Ok((StatusCode::CREATED, Json(json!({ "ID": created.id }))))
}

/// Only labels change: a new name or other data is refused as swarmkit refuses it.
async fn update_payload(
    api: Api,
    kind: Kind,
    key: &str,
    version: Option<&str>,
    body: DockerPayloadSpec,
) -> Result<StatusCode, DockerError> {
    let version = DockerError::version_param(version, kind.as_str())?;
    let (spec, has_data) = payload_spec(kind, body)?;
    let (id, current_version, same) = api
        .read(false, |s| {
            let o = found(s, kind, key)?;
            let (id, meta, current) = payload_of(o).expect("a secret or config");
            let same = (spec.name.is_empty() || spec.name == current.name)
                && (!has_data || spec.data == current.data);
            Ok::<_, DockerError>((id.to_owned(), meta.version, same))
        })
        .await??;
    if current_version != version {
        return Err(DockerError::out_of_sequence(&format!("{kind} {id}"), current_version, version));
    }
    if !same {
        return Err(DockerError::bad_request("only updates to Labels are allowed"));
    }
    let req = PayloadUpdate { version, labels: spec.labels, data: None };
    let Json(_written) = if kind == Kind::Secret {
        crate::http::objects::update_secret(State(api), Path(id), PayloadBody(req)).await?
    } else {
        crate::http::objects::update_config(State(api), Path(id), PayloadBody(req)).await?
    };
    Ok(StatusCode::OK)
}

async fn remove_payload(api: Api, kind: Kind, key: &str) -> Result<StatusCode, DockerError> {
    let id = api.read(false, |s| found(s, kind, key).map(|o| o.id().to_owned())).await??;
    if kind == Kind::Secret {
        crate::http::objects::remove_secret(State(api), Path(id)).await?;
    } else {
        crate::http::objects::remove_config(State(api), Path(id)).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn list_secrets(
    State(api): State<Api>,
    DockerQuery(q): DockerQuery<ListQuery>,
) -> Result<Json<Vec<Value>>, DockerError> {
    list_payloads(&api, Kind::Secret, q.filters.as_deref()).await
}

async fn inspect_secret(State(api): State<Api>, Path(key): Path<String>) -> Result<Json<Value>, DockerError> {
    inspect_payload(&api, Kind::Secret, &key).await
}

async fn create_secret(
    State(api): State<Api>,
    DockerJson(body): DockerJson<DockerPayloadSpec>,
) -> Result<(StatusCode, Json<Value>), DockerError> {
    create_payload(api, Kind::Secret, body).await
}

async fn update_secret(
    State(api): State<Api>,
    Path(key): Path<String>,
    DockerQuery(q): DockerQuery<VersionQuery>,
    DockerJson(body): DockerJson<DockerPayloadSpec>,
) -> Result<StatusCode, DockerError> {
    update_payload(api, Kind::Secret, &key, q.version.as_deref(), body).await
}

async fn remove_secret(State(api): State<Api>, Path(key): Path<String>) -> Result<StatusCode, DockerError> {
    remove_payload(api, Kind::Secret, &key).await
}

async fn list_configs(
    State(api): State<Api>,
    DockerQuery(q): DockerQuery<ListQuery>,
) -> Result<Json<Vec<Value>>, DockerError> {
    list_payloads(&api, Kind::Config, q.filters.as_deref()).await
}

async fn inspect_config(State(api): State<Api>, Path(key): Path<String>) -> Result<Json<Value>, DockerError> {
    inspect_payload(&api, Kind::Config, &key).await
}

async fn create_config(
    State(api): State<Api>,
    DockerJson(body): DockerJson<DockerPayloadSpec>,
) -> Result<(StatusCode, Json<Value>), DockerError> {
    create_payload(api, Kind::Config, body).await
}

async fn update_config(
    State(api): State<Api>,
    Path(key): Path<String>,
    DockerQuery(q): DockerQuery<VersionQuery>,
    DockerJson(body): DockerJson<DockerPayloadSpec>,
) -> Result<StatusCode, DockerError> {
    update_payload(api, Kind::Config, &key, q.version.as_deref(), body).await
}

async fn remove_config(State(api): State<Api>, Path(key): Path<String>) -> Result<StatusCode, DockerError> {
    remove_payload(api, Kind::Config, &key).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(v: Value) -> Result<NetworkSpec, DockerError> {
        network_spec(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn the_clis_network_create_body_maps() {
        let spec = create(json!({
            "Name": "front", "CheckDuplicate": true, "Driver": "overlay", "Scope": "", "EnableIPv6": false,
            "IPAM": { "Driver": "default", "Options": {}, "Config": [{ "Subnet": "10.9.0.0/24" }] },
            "Internal": false, "Attachable": true, "Ingress": false, "ConfigOnly": false, "ConfigFrom": null,
            "Options": { "encrypted": "", "com.docker.network.driver.mtu": "1400" }, "Labels": { "a": "b" }
        }))
        .unwrap();
        assert_eq!(spec.name, "front");
        assert_eq!(spec.subnet, Some("10.9.0.0/24".parse().unwrap()));
        assert!(spec.attachable && spec.encrypted());
        assert_eq!(spec.mtu, Some(1400));
        assert_eq!(spec.labels["a"], "b");
    }

    #[test]
    fn what_shoal_cannot_honour_is_refused_by_field() {
        for (body, field) in [
            (json!({"Name": "x", "Driver": "someplugin/driver"}), "Driver:"),
            (json!({"Name": "x", "Driver": "bridge"}), "Driver:"),
            (json!({"Name": "x", "EnableIPv6": true}), "EnableIPv6:"),
            (json!({"Name": "x", "IPAM": {"Config": [{"Subnet": "fd00::/64"}]}}), "IPAM.Config[0].Subnet:"),
            (
                json!({"Name": "x", "IPAM": {"Config": [{"Subnet": "10.1.0.0/24", "IPRange": "10.1.0.0/25"}]}}),
                "IPAM.Config[0].IPRange:",
            ),
            (json!({"Name": "x", "IPAM": {"Driver": "dhcp"}}), "IPAM.Driver:"),
            (
                json!({"Name": "x", "Options": {"com.docker.network.driver.overlay.vxlanid_list": "5000"}}),
                "Options.com.docker",
            ),
            (json!({"Name": "x", "ConfigOnly": true}), "ConfigOnly:"),
        ] {
            let e = create(body).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.starts_with(field), "{}", e.message);
        }
        let e = create(json!({"Name": "x", "Driver": "someplugin/driver"})).unwrap_err();
        assert!(e.message.contains("someplugin/driver"), "{}", e.message);
    }

    #[test]
    fn secrets_hide_their_data_and_configs_show_it() {
        let spec = PayloadSpec { name: "pw".into(), labels: BTreeMap::new(), data: b"hi".to_vec() };
        let meta = shoal_api::Meta::new(chrono::Utc::now());
        assert!(payload_json("s1", &meta, &spec, false)["Spec"].get("Data").is_none());
        assert_eq!(payload_json("c1", &meta, &spec, true)["Spec"]["Data"], "aGk=");
        let f = Filters::parse(Some(r#"{"names":{"pw":true}}"#), PAYLOAD_FILTERS).unwrap();
        assert!(payload_matches(&f, "s1", &spec));
        let f = Filters::parse(Some(r#"{"names":{"p":true}}"#), PAYLOAD_FILTERS).unwrap();
        assert!(!payload_matches(&f, "s1", &spec));
        let (_, has) =
            payload_spec(Kind::Secret, serde_json::from_value(json!({"Name": "pw"})).unwrap()).unwrap();
        assert!(!has);
        let bad = serde_json::from_value(json!({"Name": "pw", "Driver": {"Name": "vault"}})).unwrap();
        assert!(payload_spec(Kind::Secret, bad).unwrap_err().message.starts_with("Driver:"));
    }
}
