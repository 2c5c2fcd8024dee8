//! Published ports as people write them: the short form of Compose `ports:` and
//! `--publish` (`[HOST_IP:][PUBLISHED[-END]:]TARGET[-END][/PROTOCOL]`), Docker's long
//! form of `--publish` (`published=8080,target=80,protocol=udp,mode=host`), Compose's
//! long form (its fields already split by YAML), and the `PORT[/PROTOCOL]` that
//! `--publish-rm` names.

use crate::service::{PortConfig, Protocol, PublishMode};

/// What is wrong in a port's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortProblem {
    /// A port number that is not a number from 1 to 65535.
    #[error("{0:?} is not a port between 1 and 65535")]
    BadPort(String),
    /// A range whose end comes before its start.
    #[error("the range {start}-{end} runs backwards: write the lower port first")]
    Backwards {
        /// The first port written.
        start: u16,
        /// The last port written.
        end: u16,
    },
    /// A protocol other than tcp, udp and sctp.
    #[error("protocol {0:?} is not tcp, udp or sctp")]
    Protocol(String),
    /// A publish mode other than ingress and host.
    #[error("mode {0:?} is not ingress or host")]
    Mode(String),
    /// Published and target ranges of different sizes.
    #[error(
        "the published range has {published} ports and the target range {target}: give ranges of the same size"
    )]
    RangeSizes {
        /// Ports in the published range.
        published: usize,
        /// Ports in the target range.
        target: usize,
    },
    /// A range where only one port fits (the long forms).
    #[error("{0:?} is a range: write ranges in the short form, such as 8080-8081:80-81")]
    RangeInLongForm(String),
    /// A field of the long form without `=`.
    #[error("{0:?} is not key=value")]
    NotKeyValue(String),
    /// A key the long form does not have.
    #[error("{0:?} is not one of target, published, protocol, mode")]
    UnknownKey(String),
    /// A long form without `target=`.
    #[error("no target port: add target=PORT")]
    NoTarget,
    /// A host IP in a `--publish` flag: a service publishes on every address.
    #[error("a service cannot publish on one host IP: leave the IP out")]
    HostIp,
}

/// A port's text that cannot be read: the text as written and what is wrong in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a port to publish: {problem}")]
pub struct PortError {
    /// The text as written.
    pub input: String,
    /// What is wrong in it.
    pub problem: PortProblem,
}

/// Ports read from the short form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortPorts {
    /// One port per target port of the range, in ingress mode.
    pub ports: Vec<PortConfig>,
    /// Whether a host IP was written in front (Shoal publishes on every address).
    pub host_ip: bool,
}

/// Reads the short form `[HOST_IP:][PUBLISHED[-END]:]TARGET[-END][/PROTOCOL]`: one port
/// per target in the range, published in ingress mode. An empty published part
/// (`:80`) leaves the published port to the cluster.
pub fn parse_short(text: &str) -> Result<ShortPorts, PortError> {
    short(text).map_err(|problem| PortError { input: text.to_owned(), problem })
}

fn short(text: &str) -> Result<ShortPorts, PortProblem> {
    let (spec, protocol) = match text.rsplit_once('/') {
        Some((s, p)) => (s, parse_protocol(p)?),
        None => (text, Protocol::Tcp),
    };
    let mut parts = spec.rsplitn(3, ':');
    let target = parts.next().unwrap_or_default();
    let published = parts.next();
    let host_ip = parts.next().is_some();
    let targets = range(target)?;
    let published = match published {
        None | Some("") => None,
        Some(p) => Some(range(p)?),
    };
    if let Some(p) = &published
        && p.len() != targets.len()
    {
        return Err(PortProblem::RangeSizes { published: p.len(), target: targets.len() });
    }
    let ports = targets
        .iter()
        .enumerate()
        .map(|(i, &target)| PortConfig::ingress(target, published.as_ref().map(|p| p[i]), protocol))
        .collect();
    Ok(ShortPorts { ports, host_ip })
}

/// Reads Compose's long form, whose fields YAML has already split: `published` is
/// one port (as text, since YAML may give a number or a string), `protocol` and `mode`
/// are names.
pub fn parse_long(
    target: u16,
    published: Option<&str>,
    protocol: Option<&str>,
    mode: Option<&str>,
    name: Option<String>,
) -> Result<PortConfig, PortProblem> {
    Ok(PortConfig {
        name,
        protocol: protocol.map(parse_protocol).transpose()?.unwrap_or_default(),
        target_port: target,
        published_port: published.map(one).transpose()?,
        publish_mode: mode.map(parse_mode).transpose()?.unwrap_or_default(),
    })
}

/// Reads a `--publish` flag: the short form (`8080:80/udp`, without a host IP) or
/// Docker's long form (`published=8080,target=80,protocol=udp,mode=host`).
pub fn parse_publish(text: &str) -> Result<Vec<PortConfig>, PortError> {
    publish(text).map_err(|problem| PortError { input: text.to_owned(), problem })
}

fn publish(text: &str) -> Result<Vec<PortConfig>, PortProblem> {
    if !text.contains('=') {
        let ShortPorts { ports, host_ip } = short(text)?;
        if host_ip {
            return Err(PortProblem::HostIp);
        }
        return Ok(ports);
    }
    let mut port = PortConfig::ingress(0, None, Protocol::Tcp);
    for field in text.split(',') {
        let (k, v) = field.split_once('=').ok_or_else(|| PortProblem::NotKeyValue(field.to_owned()))?;
        match k {
            "target" => port.target_port = one(v)?,
            "published" => port.published_port = Some(one(v)?),
            "protocol" => port.protocol = parse_protocol(v)?,
            "mode" => port.publish_mode = parse_mode(v)?,
            other => return Err(PortProblem::UnknownKey(other.to_owned())),
        }
    }
    if port.target_port == 0 {
        return Err(PortProblem::NoTarget);
    }
    Ok(vec![port])
}

/// Reads what `--publish-rm` names: `PORT[/PROTOCOL]`, a target port (tcp by default).
pub fn parse_target(text: &str) -> Result<(u16, Protocol), PortError> {
    let read = || {
        let (port, protocol) = match text.split_once('/') {
            Some((p, proto)) => (p, parse_protocol(proto)?),
            None => (text, Protocol::Tcp),
        };
        Ok((port_number(port)?, protocol))
    };
    read().map_err(|problem| PortError { input: text.to_owned(), problem })
}

fn port_number(text: &str) -> Result<u16, PortProblem> {
    match text.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(PortProblem::BadPort(text.to_owned())),
    }
}

/// `PORT` or `START-END`, both ends included.
fn range(text: &str) -> Result<Vec<u16>, PortProblem> {
    match text.split_once('-') {
        None => Ok(vec![port_number(text)?]),
        Some((a, b)) => {
            let (start, end) = (port_number(a)?, port_number(b)?);
            if start > end {
                return Err(PortProblem::Backwards { start, end });
            }
            Ok((start..=end).collect())
        }
    }
}

/// One port, where the long forms allow no range.
fn one(text: &str) -> Result<u16, PortProblem> {
    match range(text)?.as_slice() {
        [p] => Ok(*p),
        _ => Err(PortProblem::RangeInLongForm(text.to_owned())),
    }
}

fn parse_protocol(text: &str) -> Result<Protocol, PortProblem> {
    match text {
        "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        "sctp" => Ok(Protocol::Sctp),
        other => Err(PortProblem::Protocol(other.to_owned())),
    }
}

fn parse_mode(text: &str) -> Result<PublishMode, PortProblem> {
    match text {
        "ingress" => Ok(PublishMode::Ingress),
        "host" => Ok(PublishMode::Host),
        other => Err(PortProblem::Mode(other.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port in ingress mode, as the short form makes them.
    fn port(target: u16, published: Option<u16>, protocol: Protocol) -> PortConfig {
        PortConfig::ingress(target, published, protocol)
    }

    #[test]
    fn short_form() {
        use Protocol::{Sctp, Tcp, Udp};
        let cases: [(&str, Vec<PortConfig>, bool); 10] = [
            ("80", vec![port(80, None, Tcp)], false),
            ("8080:80", vec![port(80, Some(8080), Tcp)], false),
            (":80", vec![port(80, None, Tcp)], false),
            ("8080:80/udp", vec![port(80, Some(8080), Udp)], false),
            ("53/sctp", vec![port(53, None, Sctp)], false),
            ("65535:1", vec![port(1, Some(65535), Tcp)], false),
            ("127.0.0.1:8080:80", vec![port(80, Some(8080), Tcp)], true),
            ("[::1]:8080:80/tcp", vec![port(80, Some(8080), Tcp)], true),
            ("8080-8081:80-81", vec![port(80, Some(8080), Tcp), port(81, Some(8081), Tcp)], false),
            (
                "7000-7002/udp",
                vec![port(7000, None, Udp), port(7001, None, Udp), port(7002, None, Udp)],
                false,
            ),
        ];
        for (text, ports, host_ip) in cases {
            assert_eq!(parse_short(text), Ok(ShortPorts { ports, host_ip }), "{text}");
        }
    }

    #[test]
    fn short_form_errors() {
        let bad = |s: &str| PortProblem::BadPort(s.into());
        let cases = [
            ("", bad("")),
            ("http", bad("http")),
            ("0", bad("0")),
            ("65536", bad("65536")),
            ("-1", bad("")),
            ("8080:", bad("")),
            ("x:80", bad("x")),
            ("80/icmp", PortProblem::Protocol("icmp".into())),
            ("80/", PortProblem::Protocol("".into())),
            ("81-80", PortProblem::Backwards { start: 81, end: 80 }),
            ("80-81-82", bad("81-82")),
            ("8080-8082:80-81", PortProblem::RangeSizes { published: 3, target: 2 }),
            ("8080:80-81", PortProblem::RangeSizes { published: 1, target: 2 }),
        ];
        for (text, problem) in cases {
            assert_eq!(parse_short(text), Err(PortError { input: text.into(), problem }), "{text:?}");
        }
    }

    #[test]
    fn long_form_of_compose() {
        assert_eq!(parse_long(80, None, None, None, None), Ok(port(80, None, Protocol::Tcp)));
        let full = parse_long(80, Some("8080"), Some("udp"), Some("host"), Some("web".into()));
        assert_eq!(
            full,
            Ok(PortConfig {
                name: Some("web".into()),
                protocol: Protocol::Udp,
                target_port: 80,
                published_port: Some(8080),
                publish_mode: PublishMode::Host,
            })
        );
        assert_eq!(
            parse_long(80, None, None, Some("ingress"), None).map(|p| p.publish_mode),
            Ok(PublishMode::Ingress)
        );
        for (published, protocol, mode, problem) in [
            (Some("8080-8081"), None, None, PortProblem::RangeInLongForm("8080-8081".into())),
            (Some("0"), None, None, PortProblem::BadPort("0".into())),
            (None, Some("TCP"), None, PortProblem::Protocol("TCP".into())),
            (None, None, Some("global"), PortProblem::Mode("global".into())),
        ] {
            assert_eq!(parse_long(80, published, protocol, mode, None), Err(problem));
        }
    }

    #[test]
    fn publish_flag() {
        let host = |p: PortConfig| PortConfig { publish_mode: PublishMode::Host, ..p };
        let cases = [
            ("8080:80", vec![port(80, Some(8080), Protocol::Tcp)]),
            (
                "9000-9001:90-91/udp",
                vec![port(90, Some(9000), Protocol::Udp), port(91, Some(9001), Protocol::Udp)],
            ),
            ("target=80", vec![port(80, None, Protocol::Tcp)]),
            ("published=8080,target=80,protocol=udp", vec![port(80, Some(8080), Protocol::Udp)]),
            ("target=80,mode=host", vec![host(port(80, None, Protocol::Tcp))]),
            ("mode=ingress,target=80,published=1", vec![port(80, Some(1), Protocol::Tcp)]),
        ];
        for (text, want) in cases {
            assert_eq!(parse_publish(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn publish_flag_errors() {
        let cases = [
            ("127.0.0.1:8080:80", PortProblem::HostIp),
            ("8080:80/quic", PortProblem::Protocol("quic".into())),
            ("published=8080", PortProblem::NoTarget),
            ("target=80,published", PortProblem::NotKeyValue("published".into())),
            ("target=80,proto=udp", PortProblem::UnknownKey("proto".into())),
            ("target=80-81", PortProblem::RangeInLongForm("80-81".into())),
            ("target=0", PortProblem::BadPort("0".into())),
            ("target=80,published=x", PortProblem::BadPort("x".into())),
            ("target=80,protocol=icmp", PortProblem::Protocol("icmp".into())),
            ("target=80,mode=global", PortProblem::Mode("global".into())),
            ("target=90-80", PortProblem::Backwards { start: 90, end: 80 }),
        ];
        for (text, problem) in cases {
            assert_eq!(parse_publish(text), Err(PortError { input: text.into(), problem }), "{text:?}");
        }
    }

    #[test]
    fn publish_rm_target() {
        assert_eq!(parse_target("80"), Ok((80, Protocol::Tcp)));
        assert_eq!(parse_target("53/udp"), Ok((53, Protocol::Udp)));
        assert_eq!(parse_target("9/sctp"), Ok((9, Protocol::Sctp)));
        for (text, problem) in [
            ("http", PortProblem::BadPort("http".into())),
            ("80/xyz", PortProblem::Protocol("xyz".into())),
            ("8080:80", PortProblem::BadPort("8080:80".into())),
        ] {
            assert_eq!(parse_target(text), Err(PortError { input: text.into(), problem }), "{text:?}");
        }
    }

    #[test]
    fn messages_say_what_to_write() {
        let e = parse_publish("target=80,mode=global").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"target=80,mode=global\" is not a port to publish: mode \"global\" is not ingress or host"
        );
        let e = parse_short("81-80").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"81-80\" is not a port to publish: the range 81-80 runs backwards: write the lower port first"
        );
        assert!(std::error::Error::source(&e).is_none(), "the problem is told once, in the message");
    }
}
