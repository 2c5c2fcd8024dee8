//! What the commands that talk to a manager share: where the API is (`--host`,
//! `--token`), a single-threaded runtime to call it, and output as tables for
//! people, JSON for scripts, or bare ids.

use std::future::Future;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::Args;
use serde::Serialize;
use shoal_api::client::{Client, DEFAULT_SOCKET, Endpoint};

use super::format::{self, Column, Format};

/// Where the cluster API is.
#[derive(Debug, Clone, Args)]
pub(crate) struct Connection {
    /// The manager's API: unix:///path/to.sock, /path/to.sock or tcp://HOST:PORT.
    #[arg(short = 'H', long, env = "SHOAL_HOST", global = true, default_value_t = format!("unix://{DEFAULT_SOCKET}"))]
    host: String,
    /// An API token, for tcp:// hosts (the admin one, or the read-only one).
    #[arg(long, env = "SHOAL_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// The cluster's CA certificates (`shoal cluster ca` prints them), to check a
    /// tcp:// manager against: the API over TCP is HTTPS.
    #[arg(long, env = "SHOAL_CA", global = true, value_name = "FILE")]
    tlscacert: Option<std::path::PathBuf>,
    /// A client certificate from the cluster's CA (a node's `certs/node.pem`), in
    /// place of a token: a manager's may do everything, a worker's only read.
    #[arg(long, env = "SHOAL_CERT", global = true, value_name = "FILE", requires = "tlskey")]
    tlscert: Option<std::path::PathBuf>,
    /// The client certificate's key.
    #[arg(long, env = "SHOAL_KEY", global = true, value_name = "FILE", requires = "tlscert")]
    tlskey: Option<std::path::PathBuf>,
}

impl Connection {
    /// A client of the API this connection names.
    pub(crate) fn client(&self) -> anyhow::Result<Client> {
        let endpoint = Endpoint::parse(&self.host, self.token.clone());
        let tls = match (&endpoint, &self.tlscacert) {
            (Endpoint::Tcp { .. }, Some(ca)) => Some(self.tls(ca)?),
            _ => None,
        };
        Ok(Client::with_tls(endpoint, tls)?)
    }

    /// The TLS setup of an HTTPS client: the CA in `ca`, and the client certificate
    /// if one was given.
    fn tls(&self, ca: &std::path::Path) -> anyhow::Result<rustls::ClientConfig> {
        let read =
            |p: &std::path::Path| std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()));
        let roots = read(ca)?;
        let creds = match (&self.tlscert, &self.tlskey) {
            (Some(cert), Some(key)) => shoal_pki::Credentials::new(&roots, &read(cert)?, &read(key)?),
            _ => shoal_pki::Credentials::trusting(&roots),
        }
        .context("set up TLS for the API")?;
        Ok(creds.client_config(&[b"http/1.1"]).context("set up TLS for the API")?.as_ref().clone())
    }
}

/// Runs one command's calls to the API on a single-threaded runtime (the CLI stays
/// single-threaded, so `container run` may still fork).
pub(crate) fn block_on<F: Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("start a runtime")?;
    Ok(rt.block_on(f))
}

/// Output options of listing commands.
#[derive(Debug, Clone, Args)]
pub(crate) struct Output {
    /// Output format: table, json, or a Go template ('{{.Name}} {{.Replicas}}'; one
    /// starting with `table` prints headers and aligned columns).
    #[arg(long, default_value = "table")]
    pub(crate) format: Format,
    /// Print only ids.
    #[arg(short, long)]
    pub(crate) quiet: bool,
}

impl Output {
    /// Whether rows are printed (so the data behind the columns is needed).
    pub(crate) fn shows_rows(&self) -> bool {
        !self.quiet && self.format != Format::Json
    }

    /// Prints `items` as ids, JSON, or rows of `columns` built by `row` (a table or
    /// the template); a column's template field is its header in docker's style.
    pub(crate) fn print<T: Serialize>(
        &self,
        items: &[T],
        id: impl Fn(&T) -> String,
        columns: &[&str],
        row: impl Fn(&T) -> Vec<String>,
    ) -> anyhow::Result<()> {
        let columns: Vec<Column> = columns.iter().map(|h| Column::from_header(h)).collect();
        self.print_columns(items, id, &columns, row)
    }

    /// [`Output::print`] with columns whose field names are given.
    pub(crate) fn print_columns<T: Serialize>(
        &self,
        items: &[T],
        id: impl Fn(&T) -> String,
        columns: &[Column],
        row: impl Fn(&T) -> Vec<String>,
    ) -> anyhow::Result<()> {
        if self.quiet {
            for i in items {
                println!("{}", id(i));
            }
            return Ok(());
        }
        match &self.format {
            Format::Json => println!("{}", serde_json::to_string_pretty(items)?),
            Format::Table => {
                let headers: Vec<&str> = columns.iter().map(|c| c.header.as_str()).collect();
                table(&headers, items.iter().map(row).collect());
            }
            Format::Template(source) => {
                let rows: Vec<Vec<String>> = items.iter().map(row).collect();
                print!("{}", format::render(source, columns, &rows).map_err(anyhow::Error::msg)?);
            }
        }
        Ok(())
    }
}

/// Prints a table: headers, then rows, columns padded to their widest cell.
pub(crate) fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}   ", w = *w));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
}

/// Prints one object as JSON (`inspect`).
pub(crate) fn print_json<T: Serialize>(item: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(item)?);
    Ok(())
}

/// The first 12 characters of an id, as Docker shows them.
pub(crate) fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

/// "5 seconds ago", "3 minutes ago"…
pub(crate) fn ago(t: DateTime<Utc>) -> String {
    let s = (Utc::now() - t).num_seconds().max(0);
    let (n, unit) = match s {
        0..60 => (s, "second"),
        60..3600 => (s / 60, "minute"),
        3600..86400 => (s / 3600, "hour"),
        _ => (s / 86400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// Reads `KEY=VALUE` flags (a bare `KEY` has an empty value) into labels.
pub(crate) fn labels_from(list: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    list.iter()
        .map(|s| {
            let (k, v) = s.split_once('=').unwrap_or((s, ""));
            if k.is_empty() {
                anyhow::bail!("{s:?} is not KEY=VALUE");
            }
            Ok((k.to_owned(), v.to_owned()))
        })
        .collect()
}
