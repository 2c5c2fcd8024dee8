//! Turns the typed Compose shape into Shoal specs, collecting warnings for every key it
//! does not use and errors for every value it cannot use.
//!
//! Networks and ports, as they now work:
//! - each network of the file becomes an overlay network `<stack>_<name>` (VXLAN between
//!   the nodes, a subnet from the cluster's pool unless `ipam` gives one); a service
//!   that names none joins `<stack>_default`, as with `docker stack deploy`;
//! - a service answers on each of its networks to its full name (`<stack>_<name>`), to
//!   its Compose name (added as an alias, so `web` resolves inside the stack) and to its
//!   `aliases`; `tasks.<name>` answers the addresses of its running, healthy tasks; with
//!   `endpoint_mode: dnsrr` the name answers those too, otherwise a VIP balanced over them;
//! - `internal: true` networks have no egress and their containers' DNS forwards nothing;
//!   `driver_opts` takes `com.docker.network.driver.mtu` and `encrypted` (traffic between
//!   nodes sealed with the cluster's data-path keys);
//! - published ports in the default `ingress` mode answer on every node (the routing
//!   mesh; the task sees the node's address, not the client's), `mode: host` ones only
//!   on the node running the task, with the client's address kept; a host IP is not
//!   supported.

use std::collections::BTreeMap;
use std::time::Duration;

use super::file::{self, External, MapOrList, Other, Scalar, StringOrList};
use super::{ComposeError, STACK_LABEL, Source, Stack, Warning, resolve};
use crate::network::NetworkSpec;
use crate::secret::PayloadSpec;
use crate::service::{EndpointMode, FailureAction, ServiceMode, ServiceSpec, UpdateConfig, UpdateOrder};
use crate::task_spec::{
    FileReference, HealthCheck, Mount, NetworkAttachmentConfig, PlacementPreference, RestartCondition,
};
use crate::validate::{FieldError, Validate};
use crate::{duration, ports, units};

/// Why some Compose keys are not used, for the keys people most often write.
fn hint(key: &str) -> &'static str {
    match key {
        "build" => {
            "Shoal runs images and does not build them: build and push the image, then name it in `image`"
        }
        "depends_on" => {
            "Shoal starts services without ordering them (as Swarm does): make services retry until what they need answers"
        }
        "restart" => "ignored in a stack: use deploy.restart_policy",
        "container_name" => "ignored: tasks are named <service>.<slot>",
        "links" | "external_links" => "ignored: services reach each other by service name on shared networks",
        "network_mode" => "ignored: tasks join the stack's overlay networks",
        "privileged" | "cap_add" | "cap_drop" | "security_opt" | "devices" => {
            "not supported: tasks run with Docker's default capabilities and seccomp profile"
        }
        "version" => "obsolete in the compose-spec; ignored",
        "name" => "ignored: the stack name given to `shoal stack deploy` names the stack",
        _ => "not supported by Shoal; ignored",
    }
}

/// State shared by the conversion of one file.
struct Ctx<'s, 'a> {
    src: &'s Source<'a>,
    warnings: Vec<Warning>,
    errors: Vec<FieldError>,
}

impl Ctx<'_, '_> {
    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Warning { path: path.into(), message: message.into() });
    }

    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError { field: path.into(), message: message.into() });
    }

    /// Warns about every key of `other` (extension keys `x-*` are the file's own).
    fn unused(&mut self, path: &str, other: &Other) {
        for key in other.keys().filter(|k| !k.starts_with("x-")) {
            let at = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
            self.warn(at, hint(key));
        }
    }

    /// For `external:`: `Some(real name)` when the object exists outside the stack.
    fn external(
        &mut self,
        path: &str,
        short: &str,
        name: Option<&String>,
        e: Option<&External>,
    ) -> Option<String> {
        match e? {
            External::Flag(false) => None,
            External::Flag(true) => Some(name.cloned().unwrap_or_else(|| short.to_owned())),
            External::Named { name } => {
                self.warn(format!("{path}.external.name"), "deprecated: write `external: true` and `name:`");
                Some(name.clone())
            }
        }
    }

    fn duration(&mut self, path: String, text: Option<&String>) -> Option<Duration> {
        let text = text?;
        match duration::parse(text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(path, e.to_string());
                None
            }
        }
    }

    fn name(&self, short: &str) -> String {
        format!("{}_{short}", self.src.stack)
    }
}

pub(super) fn convert(
    src: &Source<'_>,
    f: file::ComposeFile,
    warnings: Vec<Warning>,
) -> Result<Stack, ComposeError> {
    let mut cx = Ctx { src, warnings, errors: Vec::new() };
    cx.unused("", &f.other);
    for (key, present) in [("version", f.version.is_some()), ("name", f.name.is_some())] {
        if present {
            cx.warn(key, hint(key));
        }
    }
    if f.services.is_empty() {
        cx.error("services", "the file defines no services");
    }

    let (networks, external_networks, network_names) = convert_networks(&mut cx, &f);
    let volume_names = convert_volumes(&mut cx, &f);
    let (secrets, secret_names) = convert_payloads(&mut cx, "secrets", &f.secrets);
    let (configs, config_names) = convert_payloads(&mut cx, "configs", &f.configs);
    let names = Names {
        networks: network_names,
        volumes: volume_names,
        secrets: secret_names,
        configs: config_names,
    };

    let mut services = Vec::new();
    let mut uses_default = false;
    for (name, svc) in &f.services {
        let (spec, default_net) = convert_service(&mut cx, &names, name, svc);
        uses_default |= default_net;
        if let Some(spec) = spec {
            if let Err(errs) = spec.validate() {
                for e in errs.0 {
                    cx.error(format!("services.{name}.{}", compose_key(&e.field)), e.message);
                }
            }
            services.push(spec);
        }
    }
    let mut networks = networks;
    if uses_default && !f.networks.contains_key("default") {
        networks.push(stack_network(&cx, "default"));
    }

    if cx.errors.is_empty() {
        Ok(Stack {
            name: src.stack.to_owned(),
            services,
            networks,
            external_networks,
            secrets,
            configs,
            warnings: cx.warnings,
        })
    } else {
        Err(ComposeError::Invalid(cx.errors))
    }
}

/// What a service may refer to: compose name → the name of the object in the cluster.
struct Names {
    networks: BTreeMap<String, String>,
    volumes: BTreeMap<String, String>,
    secrets: BTreeMap<String, String>,
    configs: BTreeMap<String, String>,
}

fn stack_network(cx: &Ctx<'_, '_>, short: &str) -> NetworkSpec {
    let mut n = NetworkSpec::new(cx.name(short));
    n.labels = with_stack_label(BTreeMap::new(), cx.src.stack);
    n
}

/// The user's labels plus the stack label, which the user cannot override: an object
/// must not leave its stack by a label.
fn with_stack_label(mut labels: BTreeMap<String, String>, stack: &str) -> BTreeMap<String, String> {
    labels.insert(STACK_LABEL.to_owned(), stack.to_owned());
    labels
}

fn convert_networks(
    cx: &mut Ctx<'_, '_>,
    f: &file::ComposeFile,
) -> (Vec<NetworkSpec>, Vec<String>, BTreeMap<String, String>) {
    let mut created = Vec::new();
    let mut external = Vec::new();
    let mut names = BTreeMap::new();
    let no_options = file::Network::default();
    for (short, net) in &f.networks {
        let path = format!("networks.{short}");
        let net = net.as_ref().unwrap_or(&no_options);
        let ipam = net.ipam.as_ref();
        cx.unused(&path, &net.other);
        if let Some(real) = cx.external(&path, short, net.name.as_ref(), net.external.as_ref()) {
            names.insert(short.clone(), real.clone());
            external.push(real);
            continue;
        }
        let mut spec = stack_network(cx, short);
        if let Some(n) = &net.name {
            spec.name = n.clone();
        }
        match net.driver.as_deref() {
            None | Some("overlay") => {}
            Some(other) => {
                cx.warn(format!("{path}.driver"), format!("driver {other:?} is not supported; using overlay"))
            }
        }
        spec.attachable = net.attachable.unwrap_or(false);
        spec.internal = net.internal.unwrap_or(false);
        let opts_path = format!("{path}.driver_opts");
        for (k, v) in labels(cx, &opts_path, net.driver_opts.as_ref()) {
            match k.as_str() {
                "com.docker.network.driver.mtu" => match v.parse() {
                    Ok(mtu) => spec.mtu = Some(mtu),
                    Err(_) => cx.error(format!("{opts_path}.{k}"), format!("{v:?} is not an MTU (a number of bytes)")),
                },
                "encrypted" => {
                    spec.options.insert(k, v);
                }
                _ => cx.warn(
                    opts_path.clone(),
                    format!("option {k:?} is not an overlay option Shoal knows (it knows the MTU and encrypted); ignored"),
                ),
            }
        }
        let user_labels = labels(cx, &format!("{path}.labels"), net.labels.as_ref());
        spec.labels = with_stack_label(user_labels, cx.src.stack);
        if let Some(ipam) = ipam {
            cx.unused(&format!("{path}.ipam"), &ipam.other);
            for (i, c) in ipam.config.iter().enumerate() {
                let cpath = format!("{path}.ipam.config[{i}]");
                cx.unused(&cpath, &c.other);
                if i > 0 {
                    cx.warn(cpath, "only the first IPAM config is used");
                    continue;
                }
                if let Some(s) = &c.subnet {
                    match s.parse() {
                        Ok(net) => spec.subnet = Some(net),
                        Err(_) => cx.error(
                            format!("{cpath}.subnet"),
                            format!("{s:?} is not an IPv4 CIDR such as 10.20.0.0/24"),
                        ),
                    }
                }
                if let Some(g) = &c.gateway {
                    match g.parse() {
                        Ok(ip) => spec.gateway = Some(ip),
                        Err(_) => {
                            cx.error(format!("{cpath}.gateway"), format!("{g:?} is not an IPv4 address"))
                        }
                    }
                }
            }
        }
        if let Err(errs) = spec.validate() {
            for e in errs.0 {
                cx.error(path.clone(), e.to_string());
            }
        }
        names.insert(short.clone(), spec.name.clone());
        created.push(spec);
    }
    (created, external, names)
}

fn convert_volumes(cx: &mut Ctx<'_, '_>, f: &file::ComposeFile) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for (short, vol) in &f.volumes {
        let real = match vol {
            Some(v) => {
                let path = format!("volumes.{short}");
                cx.unused(&path, &v.other);
                match cx.external(&path, short, v.name.as_ref(), v.external.as_ref()) {
                    Some(real) => real,
                    None => v.name.clone().unwrap_or_else(|| cx.name(short)),
                }
            }
            None => cx.name(short),
        };
        names.insert(short.clone(), real);
    }
    names
}

fn convert_payloads(
    cx: &mut Ctx<'_, '_>,
    kind: &str,
    payloads: &BTreeMap<String, file::Payload>,
) -> (Vec<PayloadSpec>, BTreeMap<String, String>) {
    let mut created = Vec::new();
    let mut names = BTreeMap::new();
    for (short, p) in payloads {
        let path = format!("{kind}.{short}");
        cx.unused(&path, &p.other);
        if let Some(real) = cx.external(&path, short, p.name.as_ref(), p.external.as_ref()) {
            names.insert(short.clone(), real);
            continue;
        }
        let name = p.name.clone().unwrap_or_else(|| cx.name(short));
        let data = match (&p.file, &p.content, &p.environment) {
            (Some(file), None, None) => {
                let full = resolve(cx.src.dir, file);
                match (cx.src.read_file)(&full) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        cx.error(format!("{path}.file"), format!("cannot read {}: {e}", full.display()));
                        None
                    }
                }
            }
            (None, Some(content), None) => Some(content.clone().into_bytes()),
            (None, None, Some(var)) => match (cx.src.env)(var) {
                Some(v) => Some(v.into_bytes()),
                None => {
                    cx.error(format!("{path}.environment"), format!("variable {var} is not set"));
                    None
                }
            },
            _ => {
                cx.error(path.clone(), "give exactly one of file, content, environment, or external: true");
                None
            }
        };
        names.insert(short.clone(), name.clone());
        if let Some(data) = data {
            let spec = PayloadSpec { name, labels: with_stack_label(BTreeMap::new(), cx.src.stack), data };
            if let Err(errs) = spec.validate() {
                for e in errs.0 {
                    cx.error(path.clone(), e.to_string());
                }
            }
            created.push(spec);
        }
    }
    (created, names)
}

/// Converts one service; the bool says whether it joins the stack's default network.
fn convert_service(
    cx: &mut Ctx<'_, '_>,
    names: &Names,
    short: &str,
    svc: &file::Service,
) -> (Option<ServiceSpec>, bool) {
    let path = format!("services.{short}");
    cx.unused(&path, &svc.other);
    let Some(image) = &svc.image else {
        cx.error(format!("{path}.image"), "is required: Shoal runs images and does not build them");
        return (None, false);
    };
    let mut spec = ServiceSpec::new(cx.name(short), image.clone());
    let t = &mut spec.task_template;
    let c = &mut t.container;
    let container_labels = labels(cx, &format!("{path}.labels"), svc.labels.as_ref());
    c.labels = with_stack_label(container_labels, cx.src.stack);
    if let Some(e) = &svc.entrypoint {
        c.command = words(cx, &format!("{path}.entrypoint"), e);
    }
    if let Some(cmd) = &svc.command {
        c.args = words(cx, &format!("{path}.command"), cmd);
    }
    c.env = environment(cx, &format!("{path}.environment"), svc.environment.as_ref());
    c.workdir = svc.working_dir.clone();
    c.user = svc.user.as_ref().map(Scalar::text);
    c.hostname = svc.hostname.clone();
    c.stop_signal = svc.stop_signal.clone();
    if let Some(d) = cx.duration(format!("{path}.stop_grace_period"), svc.stop_grace_period.as_ref()) {
        c.stop_grace_period = d;
    }
    c.read_only = svc.read_only.unwrap_or(false);
    if let Some(h) = &svc.healthcheck {
        c.healthcheck = healthcheck(cx, &format!("{path}.healthcheck"), h);
    }
    c.mounts = mounts(cx, names, &path, svc);
    c.secrets = file_refs(cx, &format!("{path}.secrets"), &svc.secrets, &names.secrets);
    c.configs = file_refs(cx, &format!("{path}.configs"), &svc.configs, &names.configs);

    let default_net = match &svc.networks {
        None => {
            let aliases = with_service_alias(Vec::new(), short);
            t.networks.push(NetworkAttachmentConfig { target: cx.name("default"), aliases });
            true
        }
        Some(nets) => {
            let list: Vec<(String, Vec<String>)> = match nets {
                file::ServiceNetworks::List(l) => l.iter().map(|n| (n.clone(), vec![])).collect(),
                file::ServiceNetworks::Map(m) => m
                    .iter()
                    .map(|(n, opts)| {
                        let aliases = opts.as_ref().map(|o| {
                            cx.unused(&format!("{path}.networks.{n}"), &o.other);
                            o.aliases.clone()
                        });
                        (n.clone(), aliases.unwrap_or_default())
                    })
                    .collect(),
            };
            let mut uses_default = false;
            for (n, aliases) in list {
                let target = match names.networks.get(&n) {
                    Some(real) => real.clone(),
                    None if n == "default" => {
                        uses_default = true;
                        cx.name("default")
                    }
                    None => {
                        cx.error(
                            format!("{path}.networks"),
                            format!("network {n:?} is not defined under the top-level networks"),
                        );
                        continue;
                    }
                };
                t.networks
                    .push(NetworkAttachmentConfig { target, aliases: with_service_alias(aliases, short) });
            }
            uses_default
        }
    };

    if let Some(d) = &svc.deploy {
        deploy(cx, &format!("{path}.deploy"), d, &mut spec);
    }
    spec.labels = with_stack_label(std::mem::take(&mut spec.labels), cx.src.stack);
    for (i, p) in svc.ports.iter().enumerate() {
        let ppath = format!("{path}.ports[{i}]");
        match p {
            file::PortEntry::Short(s) => match ports::parse_short(&s.text()) {
                Ok(short) => {
                    if short.host_ip {
                        cx.warn(ppath, "a host IP is not supported: the port is published on every address");
                    }
                    spec.endpoint_spec.ports.extend(short.ports);
                }
                Err(e) => cx.error(ppath, e.to_string()),
            },
            file::PortEntry::Long(l) => {
                cx.unused(&ppath, &l.other);
                let published = l.published.as_ref().map(Scalar::text);
                let port = ports::parse_long(
                    l.target,
                    published.as_deref(),
                    l.protocol.as_deref(),
                    l.mode.as_deref(),
                    l.name.clone(),
                );
                match port {
                    Ok(port) => spec.endpoint_spec.ports.push(port),
                    Err(e) => cx.error(ppath, e.to_string()),
                }
            }
        }
    }
    (Some(spec), default_net)
}

/// Services in a stack answer to their Compose name on their networks (`db`, not only
/// `shop_db`), as `docker stack deploy` makes them.
fn with_service_alias(mut aliases: Vec<String>, short: &str) -> Vec<String> {
    if !aliases.iter().any(|a| a == short) {
        aliases.insert(0, short.to_owned());
    }
    aliases
}

/// A command in string form is split like a shell would (no expansion).
fn words(cx: &mut Ctx<'_, '_>, path: &str, v: &StringOrList) -> Vec<String> {
    match v {
        StringOrList::List(l) => l.clone(),
        StringOrList::String(s) => shlex::split(s).unwrap_or_else(|| {
            cx.error(path, format!("{s:?} has an unclosed quote"));
            Vec::new()
        }),
    }
}

fn labels(cx: &mut Ctx<'_, '_>, path: &str, v: Option<&MapOrList>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    match v {
        None => {}
        Some(MapOrList::Map(m)) => {
            for (k, val) in m {
                out.insert(k.clone(), val.as_ref().map(Scalar::text).unwrap_or_default());
            }
        }
        Some(MapOrList::List(l)) => {
            for (i, item) in l.iter().enumerate() {
                match item.split_once('=') {
                    Some((k, val)) => out.insert(k.to_owned(), val.to_owned()),
                    None => out.insert(item.clone(), String::new()),
                };
                if item.is_empty() {
                    cx.error(format!("{path}[{i}]"), "an empty label");
                }
            }
        }
    }
    out
}

/// `environment` as NAME=VALUE; a name with no value takes the deploying shell's value,
/// as in Compose, and is left out (with a warning) when that is unset too.
fn environment(cx: &mut Ctx<'_, '_>, path: &str, v: Option<&MapOrList>) -> Vec<String> {
    let pairs: Vec<(String, Option<String>)> = match v {
        None => return Vec::new(),
        Some(MapOrList::Map(m)) => m.iter().map(|(k, v)| (k.clone(), v.as_ref().map(Scalar::text))).collect(),
        Some(MapOrList::List(l)) => l
            .iter()
            .map(|item| match item.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (item.clone(), None),
            })
            .collect(),
    };
    let mut out = Vec::new();
    for (name, value) in pairs {
        match value.or_else(|| (cx.src.env)(&name)) {
            Some(v) => out.push(format!("{name}={v}")),
            None => cx.warn(
                format!("{path}.{name}"),
                "has no value and is not set where the stack is deployed; left out",
            ),
        }
    }
    out
}

fn healthcheck(cx: &mut Ctx<'_, '_>, path: &str, h: &file::Healthcheck) -> Option<HealthCheck> {
    cx.unused(path, &h.other);
    if h.disable == Some(true) {
        if h.test.is_some() {
            cx.error(format!("{path}.disable"), "cannot be combined with test: drop one of them");
        }
        return Some(HealthCheck::new(vec!["NONE".into()]));
    }
    let test = match &h.test {
        // Timings only: the image's test runs with them, as in Compose.
        None => Vec::new(),
        Some(StringOrList::String(s)) => vec!["CMD-SHELL".to_owned(), s.clone()],
        Some(StringOrList::List(l)) => l.clone(),
    };
    let mut out = HealthCheck::new(test);
    let mut set = |field: &str, text: &Option<String>, slot: &mut Duration| {
        if let Some(d) = cx.duration(format!("{path}.{field}"), text.as_ref()) {
            *slot = d;
        }
    };
    set("interval", &h.interval, &mut out.interval);
    set("timeout", &h.timeout, &mut out.timeout);
    set("start_period", &h.start_period, &mut out.start_period);
    set("start_interval", &h.start_interval, &mut out.start_interval);
    if let Some(r) = h.retries {
        out.retries = r;
    }
    Some(out)
}

fn mounts(cx: &mut Ctx<'_, '_>, names: &Names, path: &str, svc: &file::Service) -> Vec<Mount> {
    let mut out = Vec::new();
    for (i, v) in svc.volumes.iter().enumerate() {
        let vpath = format!("{path}.volumes[{i}]");
        match v {
            file::VolumeEntry::Short(s) => {
                let parts: Vec<&str> = s.split(':').collect();
                let (source, target, opts) = match parts.as_slice() {
                    [t] => {
                        cx.error(
                            vpath,
                            format!("{t:?} is an anonymous volume: name it so it survives the task"),
                        );
                        continue;
                    }
                    [s, t] => (*s, *t, ""),
                    [s, t, o] => (*s, *t, *o),
                    _ => {
                        cx.error(vpath, format!("{s:?} is not source:target[:ro|rw]"));
                        continue;
                    }
                };
                let (mut read_only, mut no_copy) = (false, false);
                for opt in opts.split(',').filter(|o| !o.is_empty()) {
                    match opt {
                        "ro" => read_only = true,
                        "rw" => read_only = false,
                        "nocopy" => no_copy = true,
                        other => cx
                            .warn(vpath.clone(), format!("mount option {other:?} is not supported; ignored")),
                    }
                }
                let kind = if source.starts_with(['.', '/', '~']) { "bind" } else { "volume" };
                if let Some(m) = volume_or_bind(cx, names, &vpath, kind, source, target, (read_only, no_copy))
                {
                    out.push(m);
                }
            }
            file::VolumeEntry::Long(l) => {
                cx.unused(&vpath, &l.other);
                let source = l.source.as_deref().unwrap_or("");
                let read_only = l.read_only.unwrap_or(false);
                let mut no_copy = false;
                if let Some(v) = &l.volume {
                    cx.unused(&format!("{vpath}.volume"), &v.other);
                    no_copy = v.nocopy.unwrap_or(false);
                }
                match l.kind.as_str() {
                    "bind" | "volume" => {
                        if let Some(m) = volume_or_bind(
                            cx,
                            names,
                            &vpath,
                            &l.kind,
                            source,
                            &l.target,
                            (read_only, no_copy),
                        ) {
                            out.push(m);
                        }
                    }
                    "tmpfs" => {
                        let (mut size_bytes, mut mode) = (0, None);
                        if let Some(t) = &l.tmpfs {
                            cx.unused(&format!("{vpath}.tmpfs"), &t.other);
                            if let Some(s) = &t.size {
                                match units::parse_bytes(&s.text()) {
                                    Ok(b) => size_bytes = b,
                                    Err(e) => cx.error(format!("{vpath}.tmpfs.size"), e.to_string()),
                                }
                            }
                            if let Some(m) = &t.mode {
                                match m.file_mode() {
                                    Ok(m) => mode = Some(m),
                                    Err(e) => cx.error(format!("{vpath}.tmpfs.mode"), e.to_string()),
                                }
                            }
                        }
                        out.push(Mount::Tmpfs { target: l.target.clone(), size_bytes, mode });
                    }
                    other => {
                        cx.error(format!("{vpath}.type"), format!("{other:?} is not bind, volume or tmpfs"))
                    }
                }
            }
        }
    }
    let tmpfs = match &svc.tmpfs {
        None => vec![],
        Some(StringOrList::String(s)) => vec![s.clone()],
        Some(StringOrList::List(l)) => l.clone(),
    };
    for t in tmpfs {
        let target = t.split(':').next().unwrap_or(&t).to_owned();
        if target != t {
            cx.warn(
                format!("{path}.tmpfs"),
                format!("options in {t:?} are not supported; mounted with defaults"),
            );
        }
        out.push(Mount::Tmpfs { target, size_bytes: 0, mode: None });
    }
    out
}

/// A `bind` (source is a host path) or `volume` (source is a declared volume) mount.
fn volume_or_bind(
    cx: &mut Ctx<'_, '_>,
    names: &Names,
    path: &str,
    kind: &str,
    source: &str,
    target: &str,
    (read_only, no_copy): (bool, bool),
) -> Option<Mount> {
    let target = target.to_owned();
    if kind == "bind" {
        if no_copy {
            cx.warn(path, "nocopy is for volumes: a bind mount shows the host's files; ignored");
        }
        if source.starts_with('~') {
            cx.error(path, "'~' is not expanded: write the bind source as an absolute path");
            return None;
        }
        if !source.starts_with(['.', '/']) {
            cx.error(format!("{path}.source"), format!("{source:?} is not a path: a bind mount needs one"));
            return None;
        }
        let source = resolve(cx.src.dir, source).to_string_lossy().into_owned();
        return Some(Mount::Bind { source, target, read_only });
    }
    if source.is_empty() {
        cx.error(path, format!("{target:?} is an anonymous volume: name it so it survives the task"));
        return None;
    }
    match names.volumes.get(source) {
        Some(real) => Some(Mount::Volume { source: real.clone(), target, read_only, no_copy }),
        None => {
            cx.error(path, format!("volume {source:?} is not defined under the top-level volumes"));
            None
        }
    }
}

fn file_refs(
    cx: &mut Ctx<'_, '_>,
    path: &str,
    refs: &[file::FileRefEntry],
    known: &BTreeMap<String, String>,
) -> Vec<FileReference> {
    let mut out = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        let rpath = format!("{path}[{i}]");
        let (short, mut fr) = match r {
            file::FileRefEntry::Short(s) => (s.clone(), FileReference::new(s.clone())),
            file::FileRefEntry::Long(l) => {
                cx.unused(&rpath, &l.other);
                let mut fr = FileReference::new(l.source.clone());
                fr.target = l.target.clone();
                let mut id = |field: &str, v: &Option<Scalar>| -> u32 {
                    match v.as_ref().map(|s| s.text().parse::<u32>()) {
                        None => 0,
                        Some(Ok(n)) => n,
                        Some(Err(_)) => {
                            cx.error(format!("{rpath}.{field}"), "must be a numeric id");
                            0
                        }
                    }
                };
                fr.uid = id("uid", &l.uid);
                fr.gid = id("gid", &l.gid);
                if let Some(m) = &l.mode {
                    match m.file_mode() {
                        Ok(m) => fr.mode = m,
                        Err(e) => cx.error(format!("{rpath}.mode"), e.to_string()),
                    }
                }
                (l.source.clone(), fr)
            }
        };
        match known.get(&short) {
            Some(real) => {
                if fr.target.is_none() {
                    fr.target = Some(short.clone());
                }
                fr.source = real.clone();
                out.push(fr);
            }
            None => cx.error(rpath, format!("{short:?} is not defined at the top level of the file")),
        }
    }
    out
}

fn deploy(cx: &mut Ctx<'_, '_>, path: &str, d: &file::Deploy, spec: &mut ServiceSpec) {
    cx.unused(path, &d.other);
    let replicas = d.replicas.unwrap_or(1);
    spec.mode = match d.mode.as_deref() {
        None | Some("replicated") => ServiceMode::Replicated { replicas },
        Some("global") => ServiceMode::Global,
        Some("replicated-job") => {
            ServiceMode::ReplicatedJob { max_concurrent: replicas, total_completions: Some(replicas) }
        }
        Some("global-job") => ServiceMode::GlobalJob,
        Some(other) => {
            cx.error(
                format!("{path}.mode"),
                format!("{other:?} is not replicated, global, replicated-job or global-job"),
            );
            ServiceMode::default()
        }
    };
    if d.replicas.is_some() && spec.mode.is_global() {
        cx.warn(format!("{path}.replicas"), "ignored: a global service runs one task per node");
    }
    if spec.mode.is_job() {
        for (key, set) in
            [("update_config", d.update_config.is_some()), ("rollback_config", d.rollback_config.is_some())]
        {
            if set {
                cx.warn(format!("{path}.{key}"), "ignored: jobs run to completion and are not rolled out");
            }
        }
    }
    match d.endpoint_mode.as_deref() {
        None | Some("vip") => {}
        Some("dnsrr") => spec.endpoint_spec.mode = EndpointMode::Dnsrr,
        Some(other) => cx.error(format!("{path}.endpoint_mode"), format!("{other:?} is not vip or dnsrr")),
    }
    spec.labels = labels(cx, &format!("{path}.labels"), d.labels.as_ref());
    let t = &mut spec.task_template;
    if let Some(p) = &d.placement {
        let ppath = format!("{path}.placement");
        cx.unused(&ppath, &p.other);
        t.placement.constraints = p.constraints.clone();
        for (i, pref) in p.preferences.iter().enumerate() {
            cx.unused(&format!("{ppath}.preferences[{i}]"), &pref.other);
            t.placement.preferences.push(PlacementPreference { spread: pref.spread.clone() });
        }
        t.placement.max_replicas = p.max_replicas_per_node.unwrap_or(0);
    }
    if let Some(r) = &d.resources {
        let rpath = format!("{path}.resources");
        cx.unused(&rpath, &r.other);
        if let Some(l) = &r.limits {
            let (cpus, mem) = amounts(cx, &format!("{rpath}.limits"), l);
            t.resources.limits.nano_cpus = cpus;
            t.resources.limits.memory_bytes = mem;
            t.resources.limits.pids = l.pids.unwrap_or(0);
        }
        if let Some(res) = &r.reservations {
            if res.pids.is_some() {
                cx.warn(format!("{rpath}.reservations.pids"), "pids cannot be reserved; ignored");
            }
            let (cpus, mem) = amounts(cx, &format!("{rpath}.reservations"), res);
            t.resources.reservations.nano_cpus = cpus;
            t.resources.reservations.memory_bytes = mem;
        }
    }
    if let Some(r) = &d.restart_policy {
        let rpath = format!("{path}.restart_policy");
        cx.unused(&rpath, &r.other);
        let p = &mut t.restart_policy;
        match r.condition.as_deref() {
            None => {}
            Some("none") => p.condition = RestartCondition::None,
            Some("on-failure") => p.condition = RestartCondition::OnFailure,
            Some("any") => p.condition = RestartCondition::Any,
            Some(other) => {
                cx.error(format!("{rpath}.condition"), format!("{other:?} is not none, on-failure or any"))
            }
        }
        if let Some(v) = cx.duration(format!("{rpath}.delay"), r.delay.as_ref()) {
            p.delay = v;
        }
        if let Some(v) = cx.duration(format!("{rpath}.window"), r.window.as_ref()) {
            p.window = v;
        }
        if let Some(v) = r.max_attempts {
            p.max_attempts = v;
        }
    }
    for (key, src, dst) in [
        ("update_config", &d.update_config, &mut spec.update_config),
        ("rollback_config", &d.rollback_config, &mut spec.rollback_config),
    ] {
        if let Some(u) = src {
            update_config(cx, &format!("{path}.{key}"), u, dst);
        }
    }
}

/// CPUs and memory of a limits or reservations block.
fn amounts(cx: &mut Ctx<'_, '_>, path: &str, a: &file::ResourceAmounts) -> (u64, u64) {
    cx.unused(path, &a.other);
    let cpus = a.cpus.as_ref().map_or(0, |c| {
        units::parse_cpus(&c.text()).unwrap_or_else(|e| {
            cx.error(format!("{path}.cpus"), e.to_string());
            0
        })
    });
    let memory = a.memory.as_ref().map_or(0, |m| {
        units::parse_bytes(&m.text()).unwrap_or_else(|e| {
            cx.error(format!("{path}.memory"), e.to_string());
            0
        })
    });
    (cpus, memory)
}

fn update_config(cx: &mut Ctx<'_, '_>, path: &str, u: &file::UpdateConfig, out: &mut UpdateConfig) {
    cx.unused(path, &u.other);
    if let Some(p) = u.parallelism {
        out.parallelism = p;
    }
    if let Some(d) = cx.duration(format!("{path}.delay"), u.delay.as_ref()) {
        out.delay = d;
    }
    if let Some(d) = cx.duration(format!("{path}.monitor"), u.monitor.as_ref()) {
        out.monitor = d;
    }
    if let Some(r) = u.max_failure_ratio {
        out.max_failure_ratio = r;
    }
    match u.failure_action.as_deref() {
        None => {}
        Some("pause") => out.failure_action = FailureAction::Pause,
        Some("continue") => out.failure_action = FailureAction::Continue,
        Some("rollback") => out.failure_action = FailureAction::Rollback,
        Some(other) => cx
            .error(format!("{path}.failure_action"), format!("{other:?} is not pause, continue or rollback")),
    }
    match u.order.as_deref() {
        None => {}
        Some("stop-first") => out.order = UpdateOrder::StopFirst,
        Some("start-first") => out.order = UpdateOrder::StartFirst,
        Some(other) => {
            cx.error(format!("{path}.order"), format!("{other:?} is not stop-first or start-first"))
        }
    }
}

/// Where a spec field came from in the Compose file, for errors found by validating the
/// converted spec (`task_template.resources.limits.memory_bytes` was written as
/// `deploy.resources.limits.memory`). Fields without a Compose twin keep their path.
fn compose_key(spec_field: &str) -> String {
    const MAP: [(&str, &str); 16] = [
        ("task_template.resources.limits.memory_bytes", "deploy.resources.limits.memory"),
        ("task_template.resources.limits.nano_cpus", "deploy.resources.limits.cpus"),
        ("task_template.resources.limits.pids", "deploy.resources.limits.pids"),
        ("task_template.resources.reservations.memory_bytes", "deploy.resources.reservations.memory"),
        ("task_template.resources.reservations.nano_cpus", "deploy.resources.reservations.cpus"),
        ("task_template.restart_policy", "deploy.restart_policy"),
        ("task_template.placement.max_replicas", "deploy.placement.max_replicas_per_node"),
        ("task_template.placement", "deploy.placement"),
        ("task_template.container.healthcheck", "healthcheck"),
        ("task_template.container.workdir", "working_dir"),
        ("task_template.container.mounts", "volumes"),
        ("task_template.container", ""),
        ("task_template.networks", "networks"),
        ("endpoint_spec.ports", "ports"),
        ("endpoint_spec.mode", "deploy.endpoint_mode"),
        ("mode", "deploy"),
    ];
    for (spec, compose) in MAP {
        if let Some(rest) = spec_field.strip_prefix(spec) {
            return format!("{compose}{rest}").trim_start_matches('.').to_owned();
        }
    }
    spec_field
        .replace("update_config", "deploy.update_config")
        .replace("rollback_config", "deploy.rollback_config")
}
