//! The shape of a Compose file, as far as Shoal reads it. Every struct keeps the keys
//! it does not know in `other`, so the converter can warn about each one by name.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_yaml_ng::Value;

/// Keys a struct did not name, kept for warnings.
pub(crate) type Other = BTreeMap<String, Value>;

/// Numbers and booleans that may also be written as strings, as interpolation leaves
/// them (`replicas: ${N:-3}` is the string "3" until typed here, per field).
pub(crate) mod flex {
    use std::str::FromStr;

    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flex<T> {
        Value(T),
        Text(String),
    }

    fn read<'de, D: Deserializer<'de>, T: Deserialize<'de> + FromStr>(d: D) -> Result<T, D::Error> {
        match Flex::<T>::deserialize(d).map_err(|_| {
            serde::de::Error::custom(format!(
                "expected {}",
                std::any::type_name::<T>().rsplit("::").next().unwrap_or("a value")
            ))
        })? {
            Flex::Value(v) => Ok(v),
            Flex::Text(t) => t.trim().parse().map_err(|_| {
                serde::de::Error::custom(format!("{t:?} is not a valid {}", std::any::type_name::<T>()))
            }),
        }
    }

    /// An optional number or boolean, maybe written as a string.
    pub(crate) fn opt<'de, D: Deserializer<'de>, T: Deserialize<'de> + FromStr>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        read(d).map(Some)
    }

    /// A required number, maybe written as a string.
    pub(crate) fn req<'de, D: Deserializer<'de>, T: Deserialize<'de> + FromStr>(d: D) -> Result<T, D::Error> {
        read(d)
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ComposeFile {
    #[serde(default)]
    pub(crate) services: BTreeMap<String, Service>,
    #[serde(default)]
    pub(crate) networks: BTreeMap<String, Option<Network>>,
    #[serde(default)]
    pub(crate) volumes: BTreeMap<String, Option<Volume>>,
    #[serde(default)]
    pub(crate) secrets: BTreeMap<String, Payload>,
    #[serde(default)]
    pub(crate) configs: BTreeMap<String, Payload>,
    /// `version` is obsolete in the compose-spec and `name` is set by the stack name.
    #[serde(default)]
    pub(crate) version: Option<Value>,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(flatten)]
    pub(crate) other: Other,
}

/// A string or a list of strings (`command: echo hi` or `command: [echo, hi]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum StringOrList {
    String(String),
    List(Vec<String>),
}

/// A scalar that may be written as a string or a number (`cpus: 0.5` or `"0.5"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum Scalar {
    Int(i64),
    Float(f64),
    Bool(bool),
    String(String),
}

/// A `mode:` that is not a permission mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a permission mode such as 0644")]
pub(crate) struct BadFileMode(String);

impl Scalar {
    /// A permission mode: YAML reads `0440` as text, and Compose means it as octal,
    /// as it does `0o440`; a plain integer is taken as it is.
    pub(crate) fn file_mode(&self) -> Result<u32, BadFileMode> {
        let bad = || BadFileMode(self.text());
        let mode = match self {
            Scalar::Int(i) => u32::try_from(*i).map_err(|_| bad())?,
            Scalar::String(s) => {
                let digits = s.strip_prefix("0o").or_else(|| s.strip_prefix('0')).ok_or_else(bad)?;
                u32::from_str_radix(digits, 8).map_err(|_| bad())?
            }
            _ => return Err(bad()),
        };
        if mode > 0o7777 { Err(bad()) } else { Ok(mode) }
    }

    pub(crate) fn text(&self) -> String {
        match self {
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::String(s) => s.clone(),
        }
    }
}

/// `KEY: value` map or `["KEY=value"]` list; map values may be null.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum MapOrList {
    Map(BTreeMap<String, Option<Scalar>>),
    List(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub(crate) struct Service {
    pub(crate) image: Option<String>,
    pub(crate) command: Option<StringOrList>,
    pub(crate) entrypoint: Option<StringOrList>,
    pub(crate) environment: Option<MapOrList>,
    pub(crate) working_dir: Option<String>,
    pub(crate) user: Option<Scalar>,
    pub(crate) hostname: Option<String>,
    pub(crate) labels: Option<MapOrList>,
    pub(crate) deploy: Option<Deploy>,
    #[serde(default)]
    pub(crate) ports: Vec<PortEntry>,
    pub(crate) networks: Option<ServiceNetworks>,
    pub(crate) healthcheck: Option<Healthcheck>,
    pub(crate) stop_grace_period: Option<String>,
    pub(crate) stop_signal: Option<String>,
    #[serde(default)]
    pub(crate) volumes: Vec<VolumeEntry>,
    pub(crate) tmpfs: Option<StringOrList>,
    #[serde(default, deserialize_with = "flex::opt")]
    pub(crate) read_only: Option<bool>,
    #[serde(default)]
    pub(crate) secrets: Vec<FileRefEntry>,
    #[serde(default)]
    pub(crate) configs: Vec<FileRefEntry>,
    #[serde(flatten)]
    pub(crate) other: Other,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Deploy {
    pub(crate) mode: Option<String>,
    #[serde(default, deserialize_with = "flex::opt")]
    pub(crate) replicas: Option<u64>,
    pub(crate) endpoint_mode: Option<String>,
    pub(crate) labels: Option<MapOrList>,
    pub(crate) placement: Option<Placement>,
    pub(crate) resources: Option<Resources>,
    pub(crate) restart_policy: Option<RestartPolicy>,
    pub(crate) update_config: Option<UpdateConfig>,
    pub(crate) rollback_config: Option<UpdateConfig>,
    #[serde(flatten)]
    pub(crate) other: Other,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Placement {
    #[serde(default)]
    pub(crate) constraints: Vec<String>,
    #[serde(default)]
    pub(crate) preferences: Vec<Preference>,
    #[serde(default, deserialize_with = "flex::opt")]
    pub(crate) max_replicas_per_node: Option<u64>,
    #[serde(flatten)]
    pub(crate) other: Other,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Preference {
    pub(crate) spread: String,
    #[serde(flatten)]
    pub(crate) other: Other,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Resources {
    pub(crate) limits: Option<ResourceAmounts>,
    pub(crate) reservations: Option<ResourceAmounts>,
    #[serde(flatten)]
    pub(crate) other: Other,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ResourceAmounts {
    pub(crate) cpus: Option<Scalar>,
    pub(crate) memory: Option<Scalar>,
    #[serde(default, deserialize_with = "flex::opt")]
    pub(crate) pids: Option<u64>,
    #[serde(flatten)]
    pub(crate) other: Other,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct RestartPolicy {
    pub(crate) condition: Option<String>,
    pub(crate) delay: Option<String>,
    #[serde(default, deserialize_with = "flex::opt")]
    pub(crate) max_attempts: Option<u64>,
    pub(crate) window: Option<String>,
    #[serde(flatten)]
    pub(crate) other: Other,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct UpdateConfig {
    #[serde(default, deserialize_with = "flex::opt")]
    pub(crate) parallelism: Option<u64>,
    pub(crate) delay: Option<String>,
    pub(crate) failure_action: Option<String>,
    pub(crate) monitor: Option<String>,
    #[serde(default, deserialize_with = "flex::opt")]
    pub(crate) max_failure_ratio: Option<f64>,
    pub(crate) order: Option<String>,
    #[serde(flatten)]
    pub(crate) other: Other,
}

/// `"8080:80/udp"` or the long form.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum PortEntry {
    Short(Scalar),
    Long(LongPort),
}

#[derive(Debug, Deserialize)]
pub(crate) struct LongPort {
    #[serde(deserialize_with = "flex::req")]
    pub(crate) target: u16,
    pub(crate) published: Option<Scalar>,
    pub(crate) protocol: Option<String>,
    pub(crate) mode: Option<String>,
    pub(crate) name: Option<String>,
    #[serde(flatten)]
    pub(crate) other: Other,
}

/// `networks: [a, b]` or `networks: {a: {aliases: [x]}, b: null}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum ServiceNetworks {
    List(Vec<String>),
    Map(BTreeMap<String, Option<ServiceNetwork>>),
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ServiceNetwork {
    #[serde(default)]
    pub(crate) aliases: Vec<String>,
    #[serde(flatten)]
    pub(crate) other: Other,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Healthcheck {
    pub(crate) test: Option<StringOrList>,
    pub(crate) interval: Option<String>,
    pub(crate) timeout: Option<String>,
    #[serde(default, deserialize_with = "flex::opt")]
    pub(crate) retries: Option<u32>,
    pub(crate) start_period: Option<String>,
    pub(crate) start_interval: Option<String>,
    #[serde(default, deserialize_with = "flex::opt")]
    pub(crate) disable: Option<bool>,
    #[serde(flatten)]
    pub(crate) other: Other,
}

/// `"data:/var/lib/db:ro"` or the long form.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum VolumeEntry {
    Short(String),
    Long(LongVolume),
}

#[derive(Debug, Deserialize)]
pub(crate) struct LongVolume {
    #[serde(rename = "type")]
    pub(crate) kind: String,
    pub(crate) source: Option<String>,
    pub(crate) target: String,
    #[serde(default, deserialize_with = "flex::opt")]
    pub(crate) read_only: Option<bool>,
    pub(crate) tmpfs: Option<TmpfsOptions>,
    pub(crate) volume: Option<VolumeOptions>,
    #[serde(flatten)]
    pub(crate) other: Other,
}

/// A long-syntax volume mount's `volume:` options.
#[derive(Debug, Deserialize)]
pub(crate) struct VolumeOptions {
    #[serde(default, deserialize_with = "flex::opt")]
    pub(crate) nocopy: Option<bool>,
    #[serde(flatten)]
    pub(crate) other: Other,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TmpfsOptions {
    pub(crate) size: Option<Scalar>,
    pub(crate) mode: Option<Scalar>,
    #[serde(flatten)]
    pub(crate) other: Other,
}

/// `- db_password` or `- {source: db_password, target: pw, mode: 0400}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum FileRefEntry {
    Short(String),
    Long(LongFileRef),
}

#[derive(Debug, Deserialize)]
pub(crate) struct LongFileRef {
    pub(crate) source: String,
    pub(crate) target: Option<String>,
    pub(crate) uid: Option<Scalar>,
    pub(crate) gid: Option<Scalar>,
    pub(crate) mode: Option<Scalar>,
    #[serde(flatten)]
    pub(crate) other: Other,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Network {
    pub(crate) driver: Option<String>,
    pub(crate) driver_opts: Option<MapOrList>,
    pub(crate) ipam: Option<Ipam>,
    #[serde(default, deserialize_with = "flex::opt")]
    pub(crate) attachable: Option<bool>,
    #[serde(default, deserialize_with = "flex::opt")]
    pub(crate) internal: Option<bool>,
    pub(crate) labels: Option<MapOrList>,
    pub(crate) external: Option<External>,
    pub(crate) name: Option<String>,
    #[serde(flatten)]
    pub(crate) other: Other,
}

/// `external: true`, or the old `external: {name: real-name}` form.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum External {
    Flag(#[serde(deserialize_with = "flex::req")] bool),
    Named { name: String },
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Ipam {
    #[serde(default)]
    pub(crate) config: Vec<IpamConfig>,
    #[serde(flatten)]
    pub(crate) other: Other,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct IpamConfig {
    pub(crate) subnet: Option<String>,
    pub(crate) gateway: Option<String>,
    #[serde(flatten)]
    pub(crate) other: Other,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct Volume {
    pub(crate) external: Option<External>,
    pub(crate) name: Option<String>,
    #[serde(flatten)]
    pub(crate) other: Other,
}

/// A top-level secret or config: from a file, inline content, or existing already.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Payload {
    pub(crate) file: Option<String>,
    pub(crate) content: Option<String>,
    pub(crate) environment: Option<String>,
    pub(crate) external: Option<External>,
    pub(crate) name: Option<String>,
    #[serde(flatten)]
    pub(crate) other: Other,
}
