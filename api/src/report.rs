//! An error as one line of text, for messages that leave the process (a task's
//! status, an API body, a log line): the error and each of its sources, joined by
//! `: `. Errors keep their cause as a source and out of their own message, so each
//! cause appears once.

use std::error::Error;

/// `error: source: source's source…`, as anyhow's `{:#}` prints a chain.
pub fn chain(e: &(dyn Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("read {path}")]
    struct Read {
        path: &'static str,
        #[source]
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("start the task")]
    struct Start(#[source] Read);

    #[test]
    fn every_cause_once_outermost_first() {
        let inner = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = Start(Read { path: "/etc/x", source: inner });
        assert_eq!(chain(&e), "start the task: read /etc/x: no such file");
        assert_eq!(chain(&std::io::Error::other("alone")), "alone");
    }
}
