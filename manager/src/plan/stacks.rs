//! Stacks: a Compose file's services, networks, secrets and configs deployed as one
//! transaction (created, updated, or removed when the file no longer has them), so a
//! deploy applies entirely or not at all.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use shoal_api::cluster::AddressPool;
use shoal_api::compose::Stack;
use shoal_api::wire::{StackDeployed, StackInfo};
use shoal_api::{Config, Meta, Network, PayloadSpec, Secret};

use super::{PlanError, networks, services, stack_of};
use crate::store::{Change, Kind, Object, Store, Transaction};

/// The transaction that makes the stored stack `stack.name` what `stack` declares.
pub fn deploy(
    store: &Store,
    stack: &Stack,
    pool: &AddressPool,
    now: DateTime<Utc>,
) -> Result<(Transaction, StackDeployed), PlanError> {
    let mut out = StackDeployed {
        name: stack.name.clone(),
        warnings: stack.warnings.iter().map(ToString::to_string).collect(),
        ..StackDeployed::default()
    };
    let mut creates = Vec::new();
    let mut updates = Vec::new();
    let mut removes = Vec::new();

    for name in &stack.external_networks {
        if store.by_name(Kind::Network, name).is_none() {
            return Err(PlanError::NoExternalNetwork { name: name.clone() });
        }
    }
    let mut new_networks: Vec<Network> = Vec::new();
    for spec in &stack.networks {
        match store.by_name(Kind::Network, &spec.name) {
            Some(Object::Network(n)) => {
                if n.spec != *spec {
                    out.warnings.push(format!(
                        "network {} exists with other settings, which a deploy does not change: remove the stack to recreate it",
                        spec.name
                    ));
                }
            }
            _ => {
                let n = networks::create(store, spec.clone(), pool, &new_networks, now)?;
                out.created.push(format!("network {}", spec.name));
                new_networks.push(n);
            }
        }
    }
    creates.extend(new_networks.into_iter().map(|n| Change::Create { object: Object::Network(n) }));

    for (kind, specs) in [(Kind::Secret, &stack.secrets), (Kind::Config, &stack.configs)] {
        for spec in specs {
            match store.by_name(kind, &spec.name) {
                Some(o) => {
                    if payload_spec(o).is_some_and(|old| old.data != spec.data) {
                        return Err(PlanError::Immutable { kind, name: spec.name.clone() });
                    }
                }
                None => {
                    let id = shoal_api::object::new_id();
                    let object = match kind {
                        Kind::Secret => {
                            Object::Secret(Secret { id, meta: Meta::new(now), spec: spec.clone() })
                        }
                        _ => Object::Config(Config { id, meta: Meta::new(now), spec: spec.clone() }),
                    };
                    out.created.push(format!("{kind} {}", spec.name));
                    creates.push(Change::Create { object });
                }
            }
        }
    }

    let mut taken = BTreeSet::new();
    for spec in &stack.services {
        match store.by_name(Kind::Service, &spec.name) {
            Some(Object::Service(old)) => {
                if old.spec != *spec {
                    let new = services::update(store, old, spec.clone(), now)?;
                    out.updated.push(format!("service {}", spec.name));
                    updates.push(services::put(new, old.meta.version));
                }
            }
            _ => {
                let new = services::create_with(store, spec.clone(), now, &taken)?;
                for p in &new.endpoint.ports {
                    if let Some(port) = p.published_port {
                        taken.insert((port, p.protocol.as_str()));
                    }
                }
                out.created.push(format!("service {}", spec.name));
                creates.push(Change::Create { object: Object::Service(new) });
            }
        }
    }

    // What the stack had and the file no longer declares goes: services first, so
    // the networks, secrets and configs they used are free when their turn comes.
    let declared: BTreeMap<Kind, BTreeSet<&str>> = BTreeMap::from([
        (Kind::Service, stack.services.iter().map(|s| s.name.as_str()).collect()),
        (Kind::Network, stack.networks.iter().map(|s| s.name.as_str()).collect()),
        (Kind::Secret, stack.secrets.iter().map(|s| s.name.as_str()).collect()),
        (Kind::Config, stack.configs.iter().map(|s| s.name.as_str()).collect()),
    ]);
    for (kind, names) in &declared {
        for o in members(store, &stack.name, *kind) {
            let name = o.name().unwrap_or_default();
            if !names.contains(name) {
                out.removed.push(format!("{kind} {name}"));
                removes.push(Change::Delete {
                    kind: *kind,
                    id: o.id().to_owned(),
                    expected_version: Some(o.meta().version),
                });
            }
        }
    }
    removes.sort_by_key(|c| if let Change::Delete { kind: Kind::Service, .. } = c { 0 } else { 1 });

    let changes: Vec<Change> = creates.into_iter().chain(updates).chain(removes).collect();
    Ok((Transaction { changes }, out))
}

/// What of a stack a removal takes: networks can only go once the tasks of the
/// stack's services let go of their addresses, so they go in a second step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The services, secrets and configs. A stack with none of anything is not found.
    AllButNetworks,
    /// The networks left.
    Networks,
}

/// The transaction that removes `part` of stack `name`.
pub fn remove(store: &Store, name: &str, part: Removal) -> Result<(Transaction, StackDeployed), PlanError> {
    const ALL: [Kind; 4] = [Kind::Service, Kind::Network, Kind::Secret, Kind::Config];
    if part == Removal::AllButNetworks && ALL.iter().all(|k| members(store, name, *k).next().is_none()) {
        return Err(PlanError::NotFound { kind: Kind::Service, id: format!("stack {name}") });
    }
    let kinds: &[Kind] = match part {
        Removal::AllButNetworks => &[Kind::Service, Kind::Secret, Kind::Config],
        Removal::Networks => &[Kind::Network],
    };
    let mut out = StackDeployed { name: name.to_owned(), ..StackDeployed::default() };
    let mut changes = Vec::new();
    for &kind in kinds {
        for o in members(store, name, kind) {
            out.removed.push(format!("{kind} {}", o.name().unwrap_or_default()));
            changes.push(Change::Delete {
                kind,
                id: o.id().to_owned(),
                expected_version: Some(o.meta().version),
            });
        }
    }
    Ok((Transaction { changes }, out))
}

/// Every stack, with how many objects of each kind it has.
pub fn list(store: &Store) -> Vec<StackInfo> {
    let mut stacks: BTreeMap<String, StackInfo> = BTreeMap::new();
    for kind in [Kind::Service, Kind::Network, Kind::Secret, Kind::Config] {
        for o in store.list(kind) {
            let Some(name) = labels(o).and_then(stack_of) else { continue };
            let info = stacks.entry(name.to_owned()).or_insert_with(|| StackInfo {
                name: name.to_owned(),
                services: 0,
                networks: 0,
                secrets: 0,
                configs: 0,
            });
            match kind {
                Kind::Service => info.services += 1,
                Kind::Network => info.networks += 1,
                Kind::Secret => info.secrets += 1,
                _ => info.configs += 1,
            }
        }
    }
    stacks.into_values().collect()
}

/// Objects of `kind` labelled as members of stack `name`.
pub fn members<'a>(store: &'a Store, name: &'a str, kind: Kind) -> impl Iterator<Item = &'a Object> + 'a {
    store.list(kind).filter(move |o| labels(o).and_then(stack_of) == Some(name))
}

fn labels(o: &Object) -> Option<&BTreeMap<String, String>> {
    match o {
        Object::Service(s) => Some(&s.spec.labels),
        Object::Network(n) => Some(&n.spec.labels),
        Object::Secret(s) => Some(&s.spec.labels),
        Object::Config(c) => Some(&c.spec.labels),
        _ => None,
    }
}

fn payload_spec(o: &Object) -> Option<&PayloadSpec> {
    match o {
        Object::Secret(s) => Some(&s.spec),
        Object::Config(c) => Some(&c.spec),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).expect("valid time")
    }

    fn load(text: &str) -> Stack {
        let env = |_: &str| None;
        let read = |_: &Path| Ok(b"s3cret".to_vec());
        let src = shoal_api::compose::Source {
            stack: "demo",
            text,
            dir: Path::new("/"),
            env: &env,
            read_file: &read,
        };
        shoal_api::compose::load(&src).expect("a valid file")
    }

    fn apply(store: &mut Store, tx: &Transaction) {
        let index = store.last_index() + 1;
        store.apply(index, tx.clone()).expect("applies");
    }

    const V1: &str = "
services:
  web: {image: busybox, networks: [front], secrets: [pw], ports: ['8080:80']}
  db: {image: busybox}
networks: {front: {}}
secrets: {pw: {file: ./pw}}
";
    const V2: &str = "
services:
  web: {image: busybox:2, networks: [front], secrets: [pw], ports: ['8080:80']}
networks: {front: {}}
secrets: {pw: {file: ./pw}}
";

    #[test]
    fn deploy_creates_updates_and_removes_in_one_change() {
        let mut store = Store::new();
        let pool = AddressPool::default();
        let (tx, out) = deploy(&store, &load(V1), &pool, now()).expect("planned");
        assert_eq!(
            out.created,
            [
                "network demo_front",
                "network demo_default",
                "secret demo_pw",
                "service demo_db",
                "service demo_web"
            ]
        );
        apply(&mut store, &tx);
        let (tx, out) = deploy(&store, &load(V1), &pool, now()).expect("planned");
        assert!(tx.changes.is_empty() && out.created.is_empty() && out.updated.is_empty(), "{out:?}");
        let (tx, out) = deploy(&store, &load(V2), &pool, now()).expect("planned");
        assert_eq!(out.updated, ["service demo_web"]);
        assert_eq!(out.removed, ["service demo_db", "network demo_default"]);
        apply(&mut store, &tx);
        assert_eq!(
            list(&store)[0],
            StackInfo { name: "demo".into(), services: 1, networks: 1, secrets: 1, configs: 0 }
        );
        let (tx, out) = remove(&store, "demo", Removal::AllButNetworks).expect("planned");
        assert_eq!(out.removed, ["service demo_web", "secret demo_pw"]);
        apply(&mut store, &tx);
        let (tx, out) = remove(&store, "demo", Removal::Networks).expect("planned");
        assert_eq!(out.removed, ["network demo_front"]);
        apply(&mut store, &tx);
        assert!(list(&store).is_empty());
        assert!(matches!(remove(&store, "demo", Removal::AllButNetworks), Err(PlanError::NotFound { .. })));
        let (tx, _) = remove(&store, "demo", Removal::Networks).expect("nothing left is no error");
        assert!(tx.changes.is_empty());
    }

    #[test]
    fn a_secret_with_new_data_is_refused() {
        let mut store = Store::new();
        let mut stack = load(V1);
        let (tx, _) = deploy(&store, &stack, &AddressPool::default(), now()).expect("planned");
        apply(&mut store, &tx);
        stack.secrets[0].data = b"other".to_vec();
        let err = deploy(&store, &stack, &AddressPool::default(), now()).expect_err("refused");
        assert!(err.to_string().contains("secret demo_pw exists with other data"), "{err}");
    }
}
