//! Image references (`[registry/]repository[:tag][@digest]`), checked with the grammar
//! of the OCI distribution spec as `oci-spec` implements it.

use std::str::FromStr;

use oci_spec::distribution::Reference;

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

/// Parses an image reference, filling in Docker Hub and `latest` as Docker does.
pub fn parse(input: &str) -> Result<Reference, ImageRefError> {
    let err = |reason: String| ImageRefError { input: input.to_owned(), reason };
    if input.is_empty() {
        return Err(err("it is empty".into()));
    }
    if input.trim() != input {
        return Err(err("it has leading or trailing white space".into()));
    }
    if input.chars().any(|c| c.is_ascii_uppercase()) && !input.contains('@') {
        // The repository part must be lower case; a registry host may not be, so look
        // only past the last '/'-separated host part.
        let repo = input.split_once('/').map_or(input, |(host, rest)| {
            if host.contains(['.', ':']) || host == "localhost" { rest } else { input }
        });
        let repo_name = repo.split(':').next().unwrap_or(repo);
        if repo_name.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(err("the repository name must be lower case".into()));
        }
    }
    Reference::from_str(input).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_references() {
        for r in [
            "busybox",
            "busybox:1.36",
            "library/busybox:latest",
            "127.0.0.1:5000/shoal/web:v2",
            "localhost/web",
            "registry.example:443/a/b/c:tag-1.0_x",
            "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(parse(r).is_ok(), "{r}: {:?}", parse(r));
        }
        let r = parse("127.0.0.1:5000/shoal/web:v2").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "shoal/web");
        assert_eq!(r.tag(), Some("v2"));
    }

    #[test]
    fn bad_references() {
        for r in ["", " busybox", "Busybox", "web:", "web:bad tag", "web@sha256:short", "a//b", "-web"] {
            assert!(parse(r).is_err(), "{r} should be refused");
        }
    }
}
