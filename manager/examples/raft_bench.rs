//! Load generator for `bench/raft`: runs a manager, or drives committed writes at a
//! Shoal leader (gRPC `Propose`) or at an etcd leader (gRPC `KV/Put`), with N
//! concurrent clients sharing one HTTP/2 connection for a fixed time, and prints
//! throughput and latency as JSON.
//!
//! ```text
//! raft_bench serve DATA_DIR ADDR init               prints the manager join token
//! raft_bench serve DATA_DIR ADDR join LEADER TOKEN
//! raft_bench shoal LEADER_ADDR CLIENTS SECONDS CERTS_DIR   (a manager's certs: mutual TLS)
//! raft_bench etcd ENDPOINT CLIENTS SECONDS [CERTS_DIR]   (with CERTS_DIR: mutual TLS)
//! ```
//!
//! With a certs dir (`ca.pem`, `node.pem`, `node.key`), the etcd client dials with
//! the very TLS client the Shoal side uses (rustls, `shoal_pki`'s connector), so the
//! two sides differ only in their servers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_api::service::{Service, ServiceSpec};
use shoal_manager::manager::ManagerConfig;
use shoal_manager::raft::proposal::Proposal;
use shoal_manager::server;
use shoal_manager::store::{Change, Object, Transaction};
use shoal_proto::raft as pb;

fn transaction(client: usize, i: u64) -> Vec<u8> {
    // Names are unique across runs against the same cluster.
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let run = RUN.get_or_init(|| shoal_api::object::new_id()[..6].to_owned());
    let svc = Service {
        id: shoal_api::object::new_id(),
        meta: shoal_api::Meta::new(chrono::Utc::now()),
        spec: ServiceSpec::new(format!("r{run}-c{client}-{i}"), "busybox"),
        previous_spec: None,
        update_status: None,
        endpoint: Default::default(),
    };
    let tx = Transaction { changes: vec![Change::Create { object: Object::Service(svc) }] };
    // Encoded as a manager encodes a proposal it forwards to the leader (`Propose` is
    // for managers only); etcd gets the same bytes as its value.
    Proposal::new(tx).unwrap().bytes().to_vec()
}

/// etcd's `KV/Put` messages (etcd's `rpc.proto`), with only the fields the bench sets;
/// prost skips the reply's fields it does not know.
mod etcd {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct PutRequest {
        #[prost(bytes = "vec", tag = "1")]
        pub(crate) key: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub(crate) value: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(crate) struct PutResponse {}
}

async fn drive<F, Fut>(clients: usize, seconds: u64, op: F)
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let op = Arc::new(op);
    let end = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let mut first_error = None;
                let mut i = 0;
                while Instant::now() < end {
                    let t = Instant::now();
                    match op(c, i).await {
                        Ok(()) => lat.push(t.elapsed().as_secs_f64() * 1000.0),
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(e);
                        }
                    }
                    i += 1;
                }
                (lat, errors, first_error)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    let mut first_error: Option<String> = None;
    for t in tasks {
        let (l, e, f) = t.await.unwrap();
        all.extend(l);
        errors += e;
        first_error = first_error.or(f);
    }
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| all.get(((all.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
    println!(
        "{}",
        serde_json::json!({
            "clients": clients, "seconds": seconds, "writes": all.len(), "errors": errors,
            "writes_per_s": all.len() as f64 / seconds as f64, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "first_error": first_error,
        })
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["serve", dir, addr, rest @ ..] => {
            // The manager's own log (snapshots, elections) on stderr; RUST_LOG to change.
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "shoal_manager=info".into()),
                )
                .with_writer(std::io::stderr)
                .init();
            let mut cfg = ManagerConfig::new(*dir, addr.parse().expect("ADDR"));
            cfg.advertise = Some((*addr).to_owned());
            let m = server::start(cfg).await.expect("start").manager;
            match rest {
                ["init"] => println!("{}", m.init().await.expect("init").join_tokens.manager),
                ["join", leader, token] => {
                    m.join(leader, token).await.expect("join");
                    println!("joined");
                }
                _ => panic!("serve needs init or join LEADER TOKEN"),
            }
            std::future::pending::<()>().await;
        }
        ["shoal", leader, clients, seconds, certs] => {
            // Propose is for managers only: the bench dials with a manager's certificate.
            let creds =
                shoal_pki::Credentials::load(std::path::Path::new(certs)).expect("certs").expect("no certs");
            let channel = shoal_manager::raft::network::channel(leader, &creds).unwrap();
            drive(clients.parse().unwrap(), seconds.parse().unwrap(), move |c, i| {
                let mut client = pb::raft_client::RaftClient::new(channel.clone());
                async move {
                    let reply = client.propose(pb::ProposeRequest { transaction: transaction(c, i) }).await;
                    match reply.map(|r| r.into_inner().result) {
                        Ok(Some(pb::propose_reply::Result::Index(_))) => Ok(()),
                        Ok(other) => Err(format!("{other:?}")),
                        Err(status) => Err(status.to_string()),
                    }
                }
            })
            .await;
        }
        ["etcd", endpoint, clients, seconds, tls @ ..] => {
            let channel = match tls {
                [] => tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
                    .unwrap()
                    .tcp_nodelay(true)
                    .connect_lazy(),
                [certs] => {
                    let creds = shoal_pki::Credentials::load(std::path::Path::new(certs))
                        .expect("certs")
                        .expect("no certs");
                    shoal_pki::enroll::channel(endpoint, &creds).unwrap()
                }
                _ => panic!("etcd takes one certs dir at most"),
            };
            drive(clients.parse().unwrap(), seconds.parse().unwrap(), move |c, i| {
                let mut grpc = tonic::client::Grpc::new(channel.clone());
                // The same payload as Shoal's: a service object of the same size.
                let req =
                    etcd::PutRequest { key: format!("c{c}-{i}").into_bytes(), value: transaction(c, i) };
                async move {
                    grpc.ready().await.map_err(|e| e.to_string())?;
                    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Put");
                    let codec = tonic_prost::ProstCodec::<etcd::PutRequest, etcd::PutResponse>::default();
                    grpc.unary(tonic::Request::new(req), path, codec)
                        .await
                        .map(|_| ())
                        .map_err(|s| s.to_string())
                }
            })
            .await;
        }
        _ => {
            eprintln!("usage: see the comment at the top of manager/examples/raft_bench.rs");
            std::process::exit(2);
        }
    }
}
