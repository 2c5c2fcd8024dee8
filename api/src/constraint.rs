//! Placement constraints (`node.labels.zone==a`) and spread preferences
//! (`spread=node.labels.zone`): their syntax and how they match a node.
//!
//! As in Swarm, a constraint is `key==value` or `key!=value`; values compare without
//! regard to case, label keys with it; a missing label reads as "".

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use crate::node::Node;

/// Why a constraint or preference could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    /// No `==` or `!=` in the expression.
    #[error("{0:?} has no operator: write key==value or key!=value")]
    NoOperator(String),
    /// The key is not one Shoal knows.
    #[error(
        "unknown key {0:?}: use node.id, node.hostname, node.ip, node.role, node.platform.os, \
         node.platform.arch, node.labels.<key> or engine.labels.<key>"
    )]
    UnknownKey(String),
    /// A label key with nothing after `labels.`.
    #[error("{0:?} names no label: write node.labels.<key>")]
    EmptyLabel(String),
    /// The value is empty or has spaces or operators in it.
    #[error("{0:?} has an empty or malformed value")]
    BadValue(String),
    /// `node.role` compared with something other than manager or worker.
    #[error("node.role can only be manager or worker, not {0:?}")]
    BadRole(String),
    /// `node.ip` compared with something that is not an address or a CIDR.
    #[error("node.ip needs an IP address or a CIDR such as 10.0.0.0/8, not {0:?}")]
    BadIp(String),
    /// A preference that is not `spread=<label key>`.
    #[error("spread key {0:?} is not node.labels.<key> or engine.labels.<key>")]
    BadPreference(String),
}

/// The comparison in a constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

/// What a constraint looks at on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// `node.id`
    NodeId,
    /// `node.hostname`
    Hostname,
    /// `node.ip`: the node's address, compared with an address or a CIDR.
    Ip,
    /// `node.role`
    Role,
    /// `node.platform.os`
    Os,
    /// `node.platform.arch`
    Arch,
    /// `node.labels.<key>`: labels set by the operator.
    NodeLabel(String),
    /// `engine.labels.<key>`: labels given to the daemon.
    EngineLabel(String),
}

impl FromStr for Key {
    type Err = ConstraintError;

    fn from_str(key: &str) -> Result<Self, Self::Err> {
        let label = |rest: &str| {
            if rest.is_empty() {
                Err(ConstraintError::EmptyLabel(key.to_owned()))
            } else {
                Ok(rest.to_owned())
            }
        };
        // Swarm reads keys without regard to case, except the label names themselves.
        let lower = key.to_ascii_lowercase();
        Ok(match lower.as_str() {
            "node.id" => Key::NodeId,
            "node.hostname" => Key::Hostname,
            "node.ip" => Key::Ip,
            "node.role" => Key::Role,
            "node.platform.os" => Key::Os,
            "node.platform.arch" => Key::Arch,
            _ if lower.starts_with("node.labels.") => Key::NodeLabel(label(&key["node.labels.".len()..])?),
            _ if lower.starts_with("engine.labels.") => {
                Key::EngineLabel(label(&key["engine.labels.".len()..])?)
            }
            _ => return Err(ConstraintError::UnknownKey(key.to_owned())),
        })
    }
}

/// A parsed placement constraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    /// What it looks at.
    pub key: Key,
    /// `==` or `!=`.
    pub op: Op,
    /// What it compares with.
    pub value: String,
}

impl FromStr for Constraint {
    type Err = ConstraintError;

    fn from_str(expr: &str) -> Result<Self, Self::Err> {
        let (key, op, value) = if let Some((k, v)) = expr.split_once("==") {
            (k, Op::Eq, v)
        } else if let Some((k, v)) = expr.split_once("!=") {
            (k, Op::Ne, v)
        } else {
            return Err(ConstraintError::NoOperator(expr.to_owned()));
        };
        let key: Key = key.trim().parse()?;
        let value = value.trim();
        if value.is_empty() || value.contains(['=', '!', ' ', '\t']) {
            return Err(ConstraintError::BadValue(expr.to_owned()));
        }
        match &key {
            Key::Role if !["manager", "worker"].contains(&value.to_ascii_lowercase().as_str()) => {
                return Err(ConstraintError::BadRole(value.to_owned()));
            }
            Key::Ip if value.parse::<IpAddr>().is_err() && value.parse::<IpNet>().is_err() => {
                return Err(ConstraintError::BadIp(value.to_owned()));
            }
            _ => {}
        }
        Ok(Constraint { key, op, value: value.to_owned() })
    }
}

impl Constraint {
    /// True when `node` satisfies the constraint.
    pub fn matches(&self, node: &Node) -> bool {
        let equal = match &self.key {
            Key::Ip => ip_matches(&self.value, node.status.addr),
            key => {
                let actual = match key {
                    Key::NodeId => Some(node.id.as_str()),
                    Key::Hostname => Some(node.description.hostname.as_str()),
                    Key::Role => Some(node.spec.role.as_str()),
                    Key::Os => Some(node.description.platform.os.as_str()),
                    Key::Arch => Some(node.description.platform.arch.as_str()),
                    Key::NodeLabel(k) => node.spec.labels.get(k).map(String::as_str),
                    Key::EngineLabel(k) => node.description.engine_labels.get(k).map(String::as_str),
                    Key::Ip => None,
                };
                actual.unwrap_or("").eq_ignore_ascii_case(&self.value)
            }
        };
        equal == (self.op == Op::Eq)
    }
}

fn ip_matches(value: &str, addr: IpAddr) -> bool {
    match value.parse::<IpAddr>() {
        Ok(ip) => ip == addr,
        Err(_) => value.parse::<IpNet>().is_ok_and(|net| net.contains(&addr)),
    }
}

/// Parses the label key of a spread preference: `node.labels.zone` or `engine.labels.k`.
pub fn parse_spread(spread: &str) -> Result<Key, ConstraintError> {
    let bad = || ConstraintError::BadPreference(spread.to_owned());
    match spread.parse::<Key>().map_err(|_| bad())? {
        key @ (Key::NodeLabel(_) | Key::EngineLabel(_)) => Ok(key),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::node::*;
    use crate::object::Meta;

    fn node() -> Node {
        Node {
            id: "n1".into(),
            meta: Meta::new(chrono::Utc::now()),
            spec: NodeSpec {
                labels: BTreeMap::from([("zone".into(), "A".into())]),
                role: NodeRole::Worker,
                availability: Availability::Active,
            },
            description: NodeDescription {
                hostname: "host-1".into(),
                platform: Platform { os: "linux".into(), arch: "x86_64".into() },
                resources: NodeResources::default(),
                engine_labels: BTreeMap::from([("disk".into(), "ssd".into())]),
                version: String::new(),
            },
            status: NodeStatus {
                state: NodeState::Ready,
                message: String::new(),
                addr: "10.1.2.3".parse().unwrap(),
            },
            manager_status: None,
            ingress: None,
            attachments: Vec::new(),
            certificate: None,
        }
    }

    #[test]
    fn matching() {
        let n = node();
        for (expr, want) in [
            ("node.labels.zone==a", true),
            ("node.labels.zone!=a", false),
            ("node.labels.rack==", false),
            ("node.labels.rack!=x", true),
            ("node.role!=manager", true),
            ("node.role==MANAGER", false),
            ("node.hostname==host-1", true),
            ("node.id==n1", true),
            ("node.ip==10.1.2.3", true),
            ("node.ip==10.0.0.0/8", true),
            ("node.ip!=192.168.0.0/16", true),
            ("node.platform.os==linux", true),
            ("node.platform.arch==aarch64", false),
            ("engine.labels.disk==ssd", true),
            ("Node.Hostname == host-1", true),
        ] {
            match expr.parse::<Constraint>() {
                Ok(c) => assert_eq!(c.matches(&n), want, "{expr}"),
                Err(e) if expr.ends_with("==") => assert!(matches!(e, ConstraintError::BadValue(_))),
                Err(e) => panic!("{expr}: {e}"),
            }
        }
    }

    #[test]
    fn syntax_errors() {
        for (expr, want) in [
            ("node.labels.zone=a", "no operator"),
            ("node.color==red", "unknown key"),
            ("node.labels.==a", "names no label"),
            ("node.role==boss", "manager or worker"),
            ("node.ip==not-an-ip", "CIDR"),
            ("node.hostname==a b", "malformed value"),
        ] {
            let e = expr.parse::<Constraint>().unwrap_err().to_string();
            assert!(e.contains(want), "{expr}: {e}");
        }
    }

    #[test]
    fn spread_preferences() {
        assert_eq!(parse_spread("node.labels.zone"), Ok(Key::NodeLabel("zone".into())));
        assert!(parse_spread("node.hostname").is_err());
        assert!(parse_spread("zone").is_err());
    }
}
