//! An error as one line of text: its message, then each source's, joined with `: `.
//! Worker errors name what failed and keep the cause as their source, so text that
//! leaves the process (a task's status, a container's start failure) is made here.

/// An error and its sources, joined with `: `.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn sources_follow_the_message_once_each() {
        let io = std::io::Error::from_raw_os_error(libc::ENOENT);
        let e = crate::cgroups::CgroupError::Io { op: "write", path: "/sys/fs/cgroup/x".into(), source: io };
        assert_eq!(super::chain(&e), "write /sys/fs/cgroup/x: No such file or directory (os error 2)");
    }
}
