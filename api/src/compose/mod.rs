//! Compose files to stacks: `shoal stack deploy -c compose.yml NAME` reads a file in the
//! compose-spec format (with its `deploy:` section, as `docker stack deploy` does) into
//! service, network, secret and config specs.
//!
//! Steps: parse YAML (anchors and `<<` merges applied) → interpolate `${VAR}` in every
//! string value → read into the typed shape in [`file`] → convert, naming the stack's
//! objects `<stack>_<name>`. Keys Shoal does not use become [`Warning`]s that name them;
//! nothing is dropped silently. Reading files (`secrets.*.file`, `configs.*.file`)
//! goes through the caller's function, so this module does no IO.

mod convert;
mod file;
mod interpolate;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_yaml_ng::Value;

pub use interpolate::InterpolateError;

use crate::network::NetworkSpec;
use crate::secret::PayloadSpec;
use crate::service::ServiceSpec;
use crate::validate::FieldError;

/// The label that marks an object as part of a stack (Docker's key, so tools that
/// filter on it keep working).
pub const STACK_LABEL: &str = "com.docker.stack.namespace";

/// What a stack deploy needs besides the file's text.
pub struct Source<'a> {
    /// The stack's name; objects are named `<stack>_<name>`.
    pub stack: &'a str,
    /// The Compose file's text.
    pub text: &'a str,
    /// Folder of the Compose file; relative paths in it are relative to this.
    pub dir: &'a Path,
    /// Looks up variables for `${VAR}` (usually the process environment).
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// Reads a file named in the Compose file (given as an absolute path).
    pub read_file: &'a dyn Fn(&Path) -> std::io::Result<Vec<u8>>,
}

impl std::fmt::Debug for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").field("stack", &self.stack).field("dir", &self.dir).finish_non_exhaustive()
    }
}

/// A stack read from a Compose file: everything to create or update, as one change.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Stack {
    /// The stack's name.
    pub name: String,
    /// Services, named `<stack>_<service>`.
    pub services: Vec<ServiceSpec>,
    /// Networks the stack creates, named `<stack>_<network>`.
    pub networks: Vec<NetworkSpec>,
    /// Networks that must exist already (`external: true`).
    pub external_networks: Vec<String>,
    /// Secrets the stack creates.
    pub secrets: Vec<PayloadSpec>,
    /// Configs the stack creates.
    pub configs: Vec<PayloadSpec>,
    /// Keys Shoal did not use, and other things worth knowing.
    pub warnings: Vec<Warning>,
}

/// Something in the file that Shoal did not use as written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// Where in the file, e.g. `services.web.build`.
    pub path: String,
    /// What happened to it.
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a Compose file could not become a stack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComposeError {
    /// The text is not YAML.
    #[error("the file is not valid YAML: {0}")]
    Yaml(YamlError),
    /// A `${…}` could not be expanded.
    #[error("{path}: {problem}")]
    Interpolate {
        /// Where the string is.
        path: String,
        /// What was wrong with it.
        problem: InterpolateError,
    },
    /// Values of the wrong shape, unreadable durations, unknown references….
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
}

/// The YAML parser's error (with its line and column), shared so that
/// [`ComposeError`] stays cheap to clone. Two are equal when they say the same.
#[derive(Debug, Clone, thiserror::Error)]
#[error(transparent)]
pub struct YamlError(Arc<serde_yaml_ng::Error>);

impl YamlError {
    /// Where in the text the parser stopped, when it knows.
    pub fn location(&self) -> Option<serde_yaml_ng::Location> {
        self.0.location()
    }
}

impl From<serde_yaml_ng::Error> for YamlError {
    fn from(e: serde_yaml_ng::Error) -> Self {
        YamlError(Arc::new(e))
    }
}

impl PartialEq for YamlError {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_string() == other.0.to_string()
    }
}

impl Eq for YamlError {}

/// Reads a Compose file into a stack.
pub fn load(src: &Source<'_>) -> Result<Stack, ComposeError> {
    let mut names = crate::validate::Checker::default();
    crate::validate::check_name(&mut names, "stack name", src.stack);
    names.finish().map_err(|e| ComposeError::Invalid(e.0))?;
    let mut value: Value = serde_yaml_ng::from_str(src.text).map_err(|e| ComposeError::Yaml(e.into()))?;
    value.apply_merge().map_err(|e| ComposeError::Yaml(e.into()))?;
    check_top_level(&value)?;
    let mut warnings = Vec::new();
    interpolate_tree(&mut value, &mut String::new(), src.env, &mut warnings)?;
    let parsed: file::ComposeFile = crate::decode::from_yaml_value(value)
        .map_err(|e| ComposeError::Invalid(vec![FieldError { field: e.field, message: e.message }]))?;
    convert::convert(src, parsed, warnings)
}

/// The field named when the file as a whole is wrong.
pub const TOP_LEVEL: &str = "(top level)";

/// The file must be a mapping with names for keys; the typed reading below would
/// otherwise refuse it with no field to point at.
fn check_top_level(value: &Value) -> Result<(), ComposeError> {
    let problem = match value {
        Value::Mapping(map) => match map.keys().find(|k| !k.is_string()) {
            Some(key) => format!("a top-level key is {}: keys are names such as services:", shape(key)),
            None => return Ok(()),
        },
        other => format!(
            "the file holds {}, not a mapping of top-level keys (services:, networks:, …)",
            shape(other)
        ),
    };
    Err(ComposeError::Invalid(vec![FieldError { field: TOP_LEVEL.to_owned(), message: problem }]))
}

/// What a YAML value is, for a message.
fn shape(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Interpolates every string value below `value`; `path` is its place in the file.
fn interpolate_tree(
    value: &mut Value,
    path: &mut String,
    env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<Warning>,
) -> Result<(), ComposeError> {
    match value {
        Value::String(s) if s.contains('$') => {
            let out = interpolate::interpolate(s, env)
                .map_err(|problem| ComposeError::Interpolate { path: path.clone(), problem })?;
            for name in out.unset {
                warnings.push(Warning {
                    path: path.clone(),
                    message: format!("variable {name} is not set; using an empty string"),
                });
            }
            // Stays a string: fields that want a number read it from text themselves.
            *value = Value::String(out.text);
        }
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                interpolate_tree(item, path, env, warnings)?;
                path.truncate(len);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&key_text(key));
                interpolate_tree(item, path, env, warnings)?;
                path.truncate(len);
            }
        }
        Value::Tagged(tagged) => interpolate_tree(&mut tagged.value, path, env, warnings)?,
        _ => {}
    }
    Ok(())
}

fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other).unwrap_or_default().trim().to_owned(),
    }
}

/// Joins `relative` to the Compose file's folder unless it is absolute, and folds `.`
/// and `..` away so the path reads as the node will see it.
fn resolve(dir: &Path, relative: &str) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in dir.join(relative).components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
