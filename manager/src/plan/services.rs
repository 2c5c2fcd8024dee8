//! Services: create, update, scale, roll back, remove; and the ingress ports a
//! service is given when it publishes a port without choosing one.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use shoal_api::service::{PortConfig, PublishMode, ServiceEndpoint};
use shoal_api::validate::check_service_update;
use shoal_api::{Meta, Service, ServiceMode, ServiceSpec, Validate};

use super::PlanError;
use crate::store::{Change, Kind, Object, Store};

/// Where ingress ports are taken from when a service leaves `published_port` out
/// (Swarm's dynamic range).
pub const DYNAMIC_PORTS: std::ops::RangeInclusive<u16> = 30000..=32767;

/// A new service from `spec`, with a fresh id and its published ports assigned.
pub fn create(store: &Store, spec: ServiceSpec, now: DateTime<Utc>) -> Result<Service, PlanError> {
    create_with(store, spec, now, &BTreeSet::new())
}

/// As [`create`], also avoiding ports taken by other services of the same change.
pub fn create_with(
    store: &Store,
    spec: ServiceSpec,
    now: DateTime<Utc>,
    taken: &BTreeSet<(u16, &'static str)>,
) -> Result<Service, PlanError> {
    spec.validate()?;
    if let Some(other) = store.by_name(Kind::Service, &spec.name) {
        return Err(PlanError::NameTaken { kind: Kind::Service, name: spec.name, id: other.id().to_owned() });
    }
    let id = shoal_api::object::new_id();
    check_dns_names(store, &id, &spec)?;
    let ports = assign_ports(store, &id, &spec.endpoint_spec.ports, &[], taken)?;
    Ok(Service {
        id,
        meta: Meta::new(now),
        spec,
        previous_spec: None,
        update_status: None,
        endpoint: ServiceEndpoint { virtual_ips: Vec::new(), ports },
    })
}

/// `service` with `spec` as its new spec, the old one kept for a rollback.
pub fn update(
    store: &Store,
    service: &Service,
    spec: ServiceSpec,
    now: DateTime<Utc>,
) -> Result<Service, PlanError> {
    check_service_update(&service.spec, &spec)?;
    check_dns_names(store, &service.id, &spec)?;
    let ports = assign_ports(
        store,
        &service.id,
        &spec.endpoint_spec.ports,
        &service.endpoint.ports,
        &BTreeSet::new(),
    )?;
    let mut new = service.clone();
    new.previous_spec = Some(service.spec.clone());
    if spec.task_template != service.spec.task_template {
        // A new rollout: the update supervisor starts it.
        new.update_status = None;
    }
    new.spec = spec;
    new.endpoint.ports = ports;
    new.meta.updated_at = now;
    Ok(new)
}

/// `service` with a new replica count (replicated services; for replicated jobs,
/// the completions wanted).
pub fn scale(
    store: &Store,
    service: &Service,
    replicas: u64,
    now: DateTime<Utc>,
) -> Result<Service, PlanError> {
    let mut spec = service.spec.clone();
    match &mut spec.mode {
        ServiceMode::Replicated { replicas: r } => *r = replicas,
        ServiceMode::ReplicatedJob { total_completions, .. } => *total_completions = Some(replicas),
        ServiceMode::Global | ServiceMode::GlobalJob => {
            return Err(PlanError::NotScalable {
                service: service.spec.name.clone(),
                mode: service.spec.mode.name(),
            });
        }
    }
    update(store, service, spec, now)
}

/// `service` back on its previous spec (which becomes the one to roll back to).
pub fn rollback(store: &Store, service: &Service, now: DateTime<Utc>) -> Result<Service, PlanError> {
    let Some(previous) = service.previous_spec.clone() else {
        return Err(PlanError::NoPreviousSpec { service: service.spec.name.clone() });
    };
    let mut back = update(store, service, previous, now)?;
    back.update_status = Some(shoal_api::service::UpdateStatus {
        state: shoal_api::service::UpdateState::RollbackStarted,
        started_at: Some(now),
        completed_at: None,
        message: "manually requested rollback".into(),
    });
    Ok(back)
}

/// The names a service answers to on each network it joins (its name and the
/// aliases asked for there), by network id.
fn dns_names(store: &Store, spec: &ServiceSpec) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for n in &spec.task_template.networks {
        let Some(net) = crate::store::queries::network(store, &n.target) else { continue };
        for name in std::iter::once(&spec.name).chain(&n.aliases) {
            out.push((net.id.clone(), net.spec.name.clone(), name.to_lowercase()));
        }
    }
    out
}

/// Refuses a service whose name or alias another service answers to on a network
/// both join.
fn check_dns_names(store: &Store, id: &str, spec: &ServiceSpec) -> Result<(), PlanError> {
    let mine = dns_names(store, spec);
    if mine.is_empty() {
        return Ok(());
    }
    for o in store.list(Kind::Service) {
        let Object::Service(other) = o else { continue };
        if other.id == id {
            continue;
        }
        for (net, _, name) in dns_names(store, &other.spec) {
            if let Some((_, net_name, clash)) = mine.iter().find(|(n, _, m)| *n == net && *m == name) {
                return Err(PlanError::NameClash {
                    name: clash.clone(),
                    network: net_name.clone(),
                    other: other.spec.name.clone(),
                });
            }
        }
    }
    Ok(())
}

/// The change that stores an updated service, if nobody wrote it since it was read.
pub fn put(service: Service, read_version: u64) -> Change {
    Change::Update { object: Object::Service(service), expected_version: read_version }
}

/// The ports a service publishes, with a port from [`DYNAMIC_PORTS`] given to each
/// ingress port that names none (keeping the one it had, on an update). A published
/// port another service holds is a conflict.
pub fn assign_ports(
    store: &Store,
    service_id: &str,
    wanted: &[PortConfig],
    had: &[PortConfig],
    taken_in_change: &BTreeSet<(u16, &'static str)>,
) -> Result<Vec<PortConfig>, PlanError> {
    let mut taken: BTreeSet<(u16, &'static str)> = taken_in_change.clone();
    for o in store.list(Kind::Service) {
        if let Object::Service(s) = o
            && s.id != service_id
        {
            for p in s.endpoint.ports.iter().filter(|p| p.publish_mode == PublishMode::Ingress) {
                if let Some(published) = p.published_port {
                    if wanted.iter().any(|w| {
                        w.publish_mode == PublishMode::Ingress
                            && w.published_port == Some(published)
                            && w.protocol == p.protocol
                    }) {
                        return Err(PlanError::PortTaken {
                            port: published,
                            protocol: p.protocol.as_str(),
                            service: s.spec.name.clone(),
                        });
                    }
                    taken.insert((published, p.protocol.as_str()));
                }
            }
        }
    }
    let mut out = Vec::with_capacity(wanted.len());
    for w in wanted {
        let mut p = w.clone();
        if p.publish_mode == PublishMode::Ingress && p.published_port.is_none() {
            let kept = had
                .iter()
                .find(|h| {
                    h.target_port == p.target_port && h.protocol == p.protocol && h.published_port.is_some()
                })
                .and_then(|h| h.published_port)
                .filter(|port| !taken.contains(&(*port, p.protocol.as_str())));
            let port = kept.or_else(|| {
                DYNAMIC_PORTS.clone().find(|port| !taken.contains(&(*port, p.protocol.as_str())))
            });
            let Some(port) = port else {
                return Err(PlanError::PortsExhausted {
                    first: *DYNAMIC_PORTS.start(),
                    last: *DYNAMIC_PORTS.end(),
                });
            };
            p.published_port = Some(port);
        }
        if let Some(port) = p.published_port {
            taken.insert((port, p.protocol.as_str()));
        }
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Transaction;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("valid time")
    }

    fn stored(store: &mut Store, s: &Service) {
        let tx = Transaction { changes: vec![Change::Create { object: Object::Service(s.clone()) }] };
        let index = store.last_index() + 1;
        store.apply(index, tx).expect("stored");
    }

    fn with_port(name: &str, published: Option<u16>) -> ServiceSpec {
        let mut spec = ServiceSpec::new(name, "busybox");
        spec.endpoint_spec.ports.push(PortConfig {
            name: None,
            protocol: Default::default(),
            target_port: 80,
            published_port: published,
            publish_mode: PublishMode::Ingress,
        });
        spec
    }

    #[test]
    fn ports_are_assigned_from_the_dynamic_range_and_kept() {
        let mut store = Store::new();
        let a = create(&store, with_port("a", None), now()).expect("created");
        assert_eq!(a.endpoint.ports[0].published_port, Some(30000));
        stored(&mut store, &a);
        let b = create(&store, with_port("b", None), now()).expect("created");
        assert_eq!(b.endpoint.ports[0].published_port, Some(30001));
        let a2 = update(&store, &a, with_port("a", None), now()).expect("updated");
        assert_eq!(a2.endpoint.ports[0].published_port, Some(30000), "an update keeps the port");
        let err = create(&store, with_port("c", Some(30000)), now()).expect_err("taken");
        assert!(err.to_string().contains("published by service a"), "{err}");
    }

    #[test]
    fn names_are_unique_and_invalid_specs_name_the_field() {
        let mut store = Store::new();
        let a = create(&store, ServiceSpec::new("web", "busybox"), now()).expect("created");
        stored(&mut store, &a);
        assert!(matches!(
            create(&store, ServiceSpec::new("web", "x"), now()),
            Err(PlanError::NameTaken { .. })
        ));
        let Err(PlanError::Invalid(e)) = create(&store, ServiceSpec::new("web two", "x"), now()) else {
            panic!("a bad name is invalid")
        };
        assert_eq!(e.first().field, "name");
    }

    #[test]
    fn scale_and_rollback() {
        let store = Store::new();
        let a = create(&store, ServiceSpec::new("web", "busybox"), now()).expect("created");
        assert!(matches!(rollback(&store, &a, now()), Err(PlanError::NoPreviousSpec { .. })));
        let b = scale(&store, &a, 5, now()).expect("scaled");
        assert_eq!(b.spec.mode, ServiceMode::Replicated { replicas: 5 });
        assert_eq!(b.previous_spec.as_ref().map(|s| s.mode), Some(ServiceMode::Replicated { replicas: 1 }));
        let c = rollback(&store, &b, now()).expect("rolled back");
        assert_eq!(c.spec.mode, ServiceMode::Replicated { replicas: 1 });
        assert_eq!(c.previous_spec.map(|s| s.mode), Some(ServiceMode::Replicated { replicas: 5 }));
        let mut g = a.clone();
        g.spec.mode = ServiceMode::Global;
        assert!(matches!(scale(&store, &g, 2, now()), Err(PlanError::NotScalable { .. })));
    }

    #[test]
    fn a_name_or_alias_another_service_has_on_a_shared_network_is_refused() {
        use shoal_api::task_spec::NetworkAttachmentConfig;
        let mut store = Store::new();
        for name in ["front", "back"] {
            let n = crate::plan::networks::create(
                &store,
                shoal_api::NetworkSpec::new(name),
                &shoal_api::cluster::AddressPool::default(),
                &[],
                now(),
            )
            .expect("net");
            let index = store.last_index() + 1;
            store
                .apply(index, Transaction { changes: vec![Change::Create { object: Object::Network(n) }] })
                .expect("stored");
        }
        let on = |name: &str, net: &str, aliases: &[&str]| {
            let mut spec = ServiceSpec::new(name, "busybox");
            spec.task_template.networks = vec![NetworkAttachmentConfig {
                target: net.into(),
                aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
            }];
            spec
        };
        let web = create(&store, on("web", "front", &["www"]), now()).expect("web");
        stored(&mut store, &web);
        let err = create(&store, on("www", "front", &[]), now()).expect_err("www is web's alias");
        assert_eq!(
            err.to_string(),
            "\"www\" is already a name of service web on network front: choose another name or alias"
        );
        assert!(matches!(
            create(&store, on("api", "front", &["WEB"]), now()),
            Err(PlanError::NameClash { .. })
        ));
        create(&store, on("www", "back", &[]), now()).expect("another network: no clash");
    }
}
