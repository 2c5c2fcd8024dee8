//! Cluster security across hosts (issue 17): node certificates renew on their own
//! with no session lost, and a CA rotation under a running service loses no task;
//! nodes that join afterwards use the new CA.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use cluster_tests::{Cluster, Role, block_on};
use common::*;
use shoal_api::wire::ReadOptions;

/// Each node's certificate serial, by hostname.
fn serials(c: &Cluster) -> BTreeMap<String, String> {
    let nodes = block_on(c.client().nodes(ReadOptions::default())).expect("nodes");
    nodes
        .into_iter()
        .map(|n| (n.description.hostname.clone(), n.certificate.map(|c| c.serial).unwrap_or_default()))
        .collect()
}

/// Sessions the leader opened so far, by its log.
fn sessions_opened(c: &Cluster) -> usize {
    let leader = c.leader().expect("a leader");
    c.host(leader).log_tail(usize::MAX).matches("worker session opened").count()
}

#[test]
fn certificates_renew_and_the_ca_rotates_under_a_running_service_without_losing_a_task() {
    let mut c = Cluster::builder().managers(3).workers(1).heartbeat(Duration::from_secs(1)).build();
    let client = c.client();
    block_on(client.create_service(&replicated("web", 8))).unwrap();
    placement_until(&c, "web", "8 web tasks on the 4 nodes", |p| {
        p.values().sum::<usize>() == 8 && p.len() == 4
    });
    let tasks = running_ids(&c, "web");
    let m1 = c.by_name("m1");
    let opened = sessions_opened(&c);

    // Certificates for a minute from now on, then a new CA: every node renews from
    // it, and once all have, the old root is no longer trusted.
    c.host(m1).ok(&["cluster", "update", "--cert-expiry", "1m"]);
    let old_roots = c.host(m1).ok(&["cluster", "ca"]);
    let before = serials(&c);
    c.host(m1).ok(&["cluster", "ca", "--rotate"]);
    let mut ca = None;
    c.wait("every node to renew from the new CA, and the old root to go", Duration::from_secs(90), |c| {
        ca = block_on(c.client().ca()).ok().filter(|ca| !ca.rotating);
        ca.is_some()
    });
    let ca = ca.expect("the CA");
    assert_eq!(ca.roots_pem.matches("BEGIN CERTIFICATE").count(), 1, "only the new root");
    assert!(!old_roots.contains(ca.roots_pem.trim()), "the root changed");
    let nodes = block_on(client.nodes(ReadOptions::default())).unwrap();
    assert_eq!(nodes.len(), 4);
    for n in &nodes {
        let cert = n.certificate.as_ref().expect("a certificate on record");
        assert_eq!(cert.issuer, ca.signer_subject, "{} renewed from the new CA", n.description.hostname);
        let left = cert.not_after - chrono::Utc::now();
        assert!(left <= chrono::TimeDelta::seconds(61), "{}: valid {left} more", n.description.hostname);
        assert_ne!(before.get(&n.description.hostname), Some(&cert.serial));
    }
    // What a worker keeps on disk trusts only the new root, and its certificate
    // chains to it (it hears of the dropped root through its session, within a second
    // or so of the leader dropping it).
    let w1 = c.host(c.by_name("w1")).data_dir().join("certs");
    let load = || shoal_pki::Credentials::load(&w1).ok().flatten();
    c.wait("w1 to keep only the new root", Duration::from_secs(30), |_| {
        load().is_some_and(|k| k.roots_pem().trim() == ca.roots_pem.trim())
    });
    let kept = load().expect("w1's certificate");
    let only_new = shoal_pki::Credentials::trusting(&ca.roots_pem).unwrap();
    let chain = shoal_pki::ca::certs(&kept.chain_pem().unwrap(), "w1's chain").unwrap();
    only_new.verify(&chain).expect("w1's certificate chains to the new root");

    // Then every node renews again on its own, between 50 % and 80 % of a minute.
    let rotated = serials(&c);
    c.wait("every node to renew on its own", Duration::from_secs(90), |c| {
        let now = serials(c);
        now.len() == 4 && now.iter().all(|(host, serial)| rotated.get(host) != Some(serial))
    });

    // Nothing was lost: the same tasks run, no session was opened again.
    assert_eq!(running_ids(&c, "web"), tasks, "no task was restarted or moved");
    assert_eq!(sessions_opened(&c), opened, "a worker session was lost");
    // A node joining now gets the new token's CA, and works.
    let w2 = c.join(Role::Worker, None);
    c.wait_ready(w2);
}
