//! The files a container on the overlay gets as its own: `/etc/resolv.conf`, written
//! as Docker writes it (the host's `search` and `options`, 127.0.0.11 as the only
//! server), and `/etc/hosts` with its address and name. Tasks and standalone
//! containers both use them.

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use super::NetworkError;
use super::dns::container_resolv_conf;

/// Writes both files into `dir`; returns each as (host path, path in the container).
pub fn write(
    dir: &Path,
    hostname: &str,
    addr: Option<Ipv4Addr>,
) -> Result<Vec<(PathBuf, String)>, NetworkError> {
    let host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut hosts = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if let Some(addr) = addr {
        hosts.push_str(&format!("{addr}\t{hostname}\n"));
    }
    let mut out = Vec::new();
    for (file, text) in [("resolv.conf", container_resolv_conf(&host)), ("hosts", hosts)] {
        let io = |source| NetworkError::ContainerFile { file, source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(io)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).map_err(io)?;
        out.push((path, format!("/etc/{file}")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_names_the_container_and_resolv_conf_points_at_the_resolver() {
        let dir = tempfile::tempdir().unwrap();
        let files = write(dir.path(), "box1", Some(Ipv4Addr::new(10, 0, 1, 20))).unwrap();
        let targets: Vec<&str> = files.iter().map(|(_, t)| t.as_str()).collect();
        assert_eq!(targets, ["/etc/resolv.conf", "/etc/hosts"]);
        assert!(std::fs::read_to_string(&files[0].0).unwrap().contains("nameserver 127.0.0.11"));
        assert!(std::fs::read_to_string(&files[1].0).unwrap().ends_with("10.0.1.20\tbox1\n"));
    }
}
