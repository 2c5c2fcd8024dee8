//! Image references (`[registry[:port]/]repository[:tag][@digest]`), read with the
//! grammar of the OCI distribution spec and normalized as Docker does (`busybox` is
//! `docker.io/library/busybox:latest`).
//!
//! Hand-written on purpose: the regex-based parsers compile a large regex on first use,
//! which costs tens of milliseconds in every short-lived `shoal` command.

use std::fmt;

/// Why an image reference could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid image reference {input:?}: {reason} (write it like \"busybox\", \"web:1.2\" or \
     \"127.0.0.1:5000/team/web@sha256:<64 hex>\")"
)]
pub struct ImageRefError {
    input: String,
    reason: String,
}

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// The registry of references that name none.
pub const DEFAULT_REGISTRY: &str = "docker.io";

impl ImageRef {
    /// The registry host (and port): `docker.io`, `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }
    /// The repository path: `library/busybox`, `team/web`.
    pub fn repository(&self) -> &str {
        &self.repository
    }
    /// The tag, if any (`latest` when neither tag nor digest was given).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    /// The digest, if any (`sha256:…`).
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }
    /// The full form: `docker.io/library/busybox:latest`.
    pub fn whole(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn is_alnum_lower(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum_lower(b[0]) || !is_alnum_lower(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum_lower(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum_lower(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// A host name (labels of letters, digits and `-`), an IPv4 address, or `[IPv6]`,
/// with an optional `:port`.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, tail)) => {
                if v6.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                (None, tail.strip_prefix(':'))
            }
            None => return false,
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    host.is_none_or(|h| {
        !h.is_empty()
            && h.split('.').all(|l| {
                !l.is_empty()
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            })
    })
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|&x| x.is_ascii_alphanumeric() || b"_.-".contains(&x))
}

fn valid_digest(d: &str) -> bool {
    let Some((alg, hex)) = d.split_once(':') else { return false };
    let alg_ok = !alg.is_empty()
        && alg.split(['+', '.', '_', '-']).all(|p| !p.is_empty() && p.bytes().all(is_alnum_lower));
    let hex_ok = hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    alg_ok && hex_ok && (alg != "sha256" || hex.len() == 64) && (alg != "sha512" || hex.len() == 128)
}

/// Parses an image reference, filling in Docker Hub and `latest` as Docker does.
pub fn parse(input: &str) -> Result<ImageRef, ImageRefError> {
    let err = |reason: &str| ImageRefError { input: input.to_owned(), reason: reason.to_owned() };
    if input.is_empty() {
        return Err(err("it is empty"));
    }
    if input.trim() != input || input.contains(char::is_whitespace) {
        return Err(err("it contains white space"));
    }
    let (rest, digest) = match input.split_once('@') {
        Some((r, d)) => {
            if !valid_digest(d) {
                return Err(err("the digest is not <algorithm>:<hex>, e.g. sha256 and 64 hex digits"));
            }
            (r, Some(d.to_owned()))
        }
        None => (input, None),
    };
    // A tag is after the last ':' that comes after the last '/'.
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => {
            let t = &rest[last_slash + i + 1..];
            if !valid_tag(t) {
                return Err(err(
                    "the tag must be 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
                ));
            }
            (&rest[..last_slash + i], Some(t.to_owned()))
        }
        None => (rest, None),
    };
    if name.len() > 255 {
        return Err(err("the name is longer than 255 characters"));
    }
    let (registry, path) = match name.split_once('/') {
        Some((first, tail))
            if first.contains(['.', ':']) || first == "localhost" || first.starts_with('[') =>
        {
            if !valid_domain(first) {
                return Err(err("the registry is not host[:port]"));
            }
            (first.to_owned(), tail)
        }
        _ => (DEFAULT_REGISTRY.to_owned(), name),
    };
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(err("the repository name must be lower case"));
    }
    if !path.split('/').all(valid_path_component) {
        return Err(err(
            "each part of the repository must be lower-case letters and digits, separated by '.', '_', '__' or '-'",
        ));
    }
    let repository = if registry == DEFAULT_REGISTRY && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_owned()
    };
    let tag = if tag.is_none() && digest.is_none() { Some("latest".to_owned()) } else { tag };
    Ok(ImageRef { registry, repository, tag, digest })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_references() {
        for (r, whole) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox:latest", "docker.io/library/busybox:latest"),
            ("127.0.0.1:5000/shoal/web:v2", "127.0.0.1:5000/shoal/web:v2"),
            ("localhost/web", "localhost/web:latest"),
            ("localhost:5000/web", "localhost:5000/web:latest"),
            ("registry.example:443/a/b/c:tag-1.0_x", "registry.example:443/a/b/c:tag-1.0_x"),
            ("[::1]:5000/web", "[::1]:5000/web:latest"),
            ("my_org/web-app__x.y", "docker.io/my_org/web-app__x.y:latest"),
            (
                "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "docker.io/library/busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
        ] {
            assert_eq!(parse(r).map(|p| p.whole()), Ok(whole.to_owned()), "{r}");
        }
        let r = parse("127.0.0.1:5000/shoal/web:v2").unwrap();
        assert_eq!((r.registry(), r.repository(), r.tag()), ("127.0.0.1:5000", "shoal/web", Some("v2")));
    }

    #[test]
    fn bad_references() {
        for r in [
            "",
            " busybox",
            "Busybox",
            "web:",
            "web:bad tag",
            "web:.x",
            "web@sha256:short",
            "a//b",
            "-web",
            "web-",
            "a/../b",
            "reg.example:port/x",
            "reg.example:99999999/x",
            "web@md5",
        ] {
            assert!(parse(r).is_err(), "{r} should be refused");
        }
    }
}
