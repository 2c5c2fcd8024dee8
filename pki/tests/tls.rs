//! Real TLS handshakes on loopback between credentials made by the cluster CA: who
//! is accepted, what the server learns of its peer, and what is refused.

use std::sync::Arc;
use std::time::Duration;

use shoal_pki::creds::unverified_client_config;
use shoal_pki::keys::{csr, generate_key};
use shoal_pki::transport::{Connector, incoming};
use shoal_pki::{CaKeys, Credentials, Peer, Role, Subject};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_stream::StreamExt as _;

fn subject(id: &str, role: Role) -> Subject {
    Subject { node_id: id.into(), role, cluster_id: "c1".into() }
}

/// Credentials for `id` with `role`, issued by `ca`, trusting `roots`.
fn node(ca: &CaKeys, roots: &str, id: &str, role: Role) -> Credentials {
    let key = generate_key().unwrap();
    let cert = ca.issue(&csr(&key).unwrap(), &subject(id, role), Duration::from_secs(3600), &[]).unwrap();
    Credentials::new(roots, &cert, &key).unwrap()
}

/// A server on loopback that answers each connection with the node id of its peer
/// (or "-"); returns its address.
async fn serve(creds: &Credentials) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut conns = Box::pin(incoming(listener, creds.server_config(&[]).unwrap()));
    tokio::spawn(async move {
        while let Some(Ok(mut conn)) = conns.next().await {
            let peer: Peer = conn.peer().clone();
            tokio::spawn(async move {
                let who = peer
                    .cert
                    .map(|c| format!("{} {}", c.subject.node_id, c.subject.role))
                    .unwrap_or("-".into());
                let _ = conn.write_all(who.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    addr
}

/// Connects as `config` and reads what the server says.
async fn ask(
    config: Arc<rustls::ClientConfig>,
    addr: std::net::SocketAddr,
) -> Result<String, std::io::Error> {
    use tower_service::Service as _;
    let uri: http::Uri = format!("http://{addr}").parse().unwrap();
    let io = Connector::new(config).call(uri).await?;
    let mut stream = io.into_inner();
    let mut out = String::new();
    stream.read_to_string(&mut out).await?;
    Ok(out)
}

#[tokio::test]
async fn a_manager_learns_which_node_called_and_with_what_role() {
    let ca = CaKeys::generate("c1").unwrap();
    let manager = node(&ca, &ca.cert_pem, "m1", Role::Manager);
    let worker = node(&ca, &ca.cert_pem, "w1", Role::Worker);
    let addr = serve(&manager).await;
    assert_eq!(ask(worker.client_config(&[]).unwrap(), addr).await.unwrap(), "w1 worker");
    // A client with no certificate yet (a joining node) gets in, as nobody.
    let joining = Credentials::trusting(&ca.cert_pem).unwrap();
    assert_eq!(ask(joining.client_config(&[]).unwrap(), addr).await.unwrap(), "-");
}

#[tokio::test]
async fn a_worker_certificate_cannot_serve_as_a_manager() {
    let ca = CaKeys::generate("c1").unwrap();
    let fake_manager = node(&ca, &ca.cert_pem, "w1", Role::Worker);
    let addr = serve(&fake_manager).await;
    let client = node(&ca, &ca.cert_pem, "w2", Role::Worker);
    let e = ask(client.client_config(&[]).unwrap(), addr).await.unwrap_err();
    assert!(e.to_string().contains("shoal-manager") || e.to_string().contains("NotValidForName"), "{e}");
}

#[tokio::test]
async fn certificates_of_another_cluster_ca_and_expired_ones_are_refused() {
    let ca = CaKeys::generate("c1").unwrap();
    let manager = node(&ca, &ca.cert_pem, "m1", Role::Manager);
    let addr = serve(&manager).await;
    // Another CA's node: the manager refuses its certificate.
    let other = CaKeys::generate("c2").unwrap();
    let stranger = node(&other, &ca.cert_pem, "x1", Role::Manager);
    assert!(
        ask(stranger.client_config(&[]).unwrap(), addr).await.is_err(),
        "a stranger's certificate got in"
    );
    // An expired certificate from the right CA.
    let key = generate_key().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let old = ca
        .issue_between(
            &csr(&key).unwrap(),
            &subject("w9", Role::Worker),
            now - time::Duration::days(2),
            now - time::Duration::days(1),
            &[],
        )
        .unwrap();
    let expired = Credentials::new(&ca.cert_pem, &old, &key).unwrap();
    let e = ask(expired.client_config(&[]).unwrap(), addr).await;
    assert!(e.is_err(), "an expired certificate got in: {e:?}");
    // The same node, renewed, gets in.
    expired
        .set_identity(
            &ca.issue(&csr(&key).unwrap(), &subject("w9", Role::Worker), Duration::from_secs(60), &[])
                .unwrap(),
            &key,
        )
        .unwrap();
    assert_eq!(ask(expired.client_config(&[]).unwrap(), addr).await.unwrap(), "w9 worker");
}

#[tokio::test]
async fn during_a_rotation_the_cross_signed_chain_bridges_old_and_new_roots() {
    let old = CaKeys::generate("c1").unwrap();
    let new = CaKeys::generate("c1").unwrap();
    let cross = old.cross_sign(&new).unwrap();
    // A manager renewed under the new CA presents leaf + cross-signed certificate.
    let key = generate_key().unwrap();
    let leaf = new
        .issue(&csr(&key).unwrap(), &subject("m1", Role::Manager), Duration::from_secs(3600), &[])
        .unwrap();
    let both = format!("{}{}", old.cert_pem, new.cert_pem);
    let manager = Credentials::new(&both, &format!("{leaf}{cross}"), &key).unwrap();
    let addr = serve(&manager).await;
    // A worker that still trusts only the old root accepts it...
    let behind = node(&old, &old.cert_pem, "w1", Role::Worker);
    assert_eq!(ask(behind.client_config(&[]).unwrap(), addr).await.unwrap(), "w1 worker");
    // ...and one that trusts only the new root too.
    let ahead = node(&new, &new.cert_pem, "w2", Role::Worker);
    assert_eq!(ask(ahead.client_config(&[]).unwrap(), addr).await.unwrap(), "w2 worker");
    // Without the cross-signed certificate the old-only worker refuses the manager.
    let bare = Credentials::new(&both, &leaf, &key).unwrap();
    let addr = serve(&bare).await;
    assert!(ask(behind.client_config(&[]).unwrap(), addr).await.is_err());
    // Once the old root is dropped, its certificates stop working.
    manager.set_roots(&new.cert_pem).unwrap();
    let addr = serve(&manager).await;
    assert!(ask(behind.client_config(&[]).unwrap(), addr).await.is_err());
}

#[tokio::test]
async fn the_unverified_config_only_fetches_it_takes_any_server() {
    let ca = CaKeys::generate("c1").unwrap();
    let manager = node(&ca, &ca.cert_pem, "m1", Role::Manager);
    let addr = serve(&manager).await;
    assert_eq!(ask(unverified_client_config().unwrap(), addr).await.unwrap(), "-");
}

#[test]
fn an_external_ca_is_checked_to_be_a_ca_with_its_own_key() {
    let ca = CaKeys::generate("c1").unwrap();
    CaKeys::from_pem(&ca.cert_pem, &ca.key_pem).unwrap();
    let other = CaKeys::generate("c1").unwrap();
    let e = CaKeys::from_pem(&ca.cert_pem, &other.key_pem).unwrap_err();
    assert!(e.to_string().contains("does not belong"), "{e}");
    let key = generate_key().unwrap();
    let leaf =
        ca.issue(&csr(&key).unwrap(), &subject("n", Role::Worker), Duration::from_secs(60), &[]).unwrap();
    let e = CaKeys::from_pem(&leaf, &key).unwrap_err();
    assert!(e.to_string().contains("not a CA"), "{e}");
}

#[test]
fn credentials_survive_a_save_and_load() {
    let ca = CaKeys::generate("c1").unwrap();
    let creds = node(&ca, &ca.cert_pem, "w1", Role::Worker);
    let dir = tempfile::tempdir().unwrap();
    creds.save(dir.path()).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(dir.path().join("node.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let back = Credentials::load(dir.path()).unwrap().unwrap();
    assert_eq!(back.info(), creds.info());
    assert!(Credentials::load(&dir.path().join("none")).unwrap().is_none());
}
