//! `procgate export kubernetes`: the release as Kubernetes objects (README, "Exporting").
//!
//! - each long-running type: a Deployment, `replicas` = its formation count, rolled as procgate
//!   rolls (`maxUnavailable: 0`, `maxSurge: 1`), the Procfile command through `/bin/sh -c`,
//!   `PORT` (the base port: each pod has its own network), `PS`/`DYNO` (the pod's name) and the
//!   other platform variables procgate gives; routed types get procgate's checks as probes
//!   (`tcpSocket`, or `httpGet` on `health_path` for `web`): readiness always, a startup probe
//!   for `--boot-timeout` (R10), liveness only with `restart_unhealthy_after` (R16), and a
//!   `preStop` pause so the endpoints drop the pod before SIGTERM, as procgate takes an instance
//!   out of routing first; `terminationGracePeriodSeconds` is that pause plus `--grace`;
//! - the env files' values: a ConfigMap, and a Secret for those whose file is secret;
//! - `web`: a ClusterIP Service and an Ingress; other routed types: a `LoadBalancer` Service
//!   with `externalTrafficPolicy: Local` (the client's address reaches the pod), the type's
//!   `proxy_protocol` as an annotation; route settings Kubernetes has no place for are comments;
//! - `release`: a Job, named by a hash of what it runs so a new release is a new Job;
//! - daily cycling (`--cycle`, unless a type says `cycle = false`): a CronJob that runs
//!   `kubectl rollout restart` after a random delay up to `--cycle-jitter`, with its
//!   ServiceAccount, Role and RoleBinding.

use super::files::{File, GENERATED};
use super::yaml::{self, Map, Node};
use super::{seconds, type_label, ExportError, Source};
use crate::cli::KubernetesArgs;
use crate::env::{instance_env, EnvMap, PlatformVars};
use crate::platform::health::ProbeSettings;
use crate::platform::spec::TypeTemplate;
use crate::procfile::{RELEASE, WEB_TYPE};
use crate::proxy_version::ProxyVersion;
use crate::settings::TypeSettings;
use std::path::Path;
use std::time::Duration;

/// How long a stopping pod waits before its SIGTERM, so that Services and Ingresses, which
/// learn of its end asynchronously, stop sending it clients first.
const ENDPOINT_DRAIN_SECONDS: u64 = 5;

/// The port of `web`'s ClusterIP Service, behind its Ingress.
const WEB_SERVICE_PORT: u64 = 80;

/// The statuses a Kubernetes `httpGet` probe accepts.
const HTTP_PROBE_STATUSES: std::ops::RangeInclusive<u16> = 200..=399;

/// The cycling CronJob's own time beyond its random delay.
const CYCLE_JOB_SECONDS: u64 = 600;

/// One object: its kind, name and YAML, and comments above it.
struct Object {
    kind: &'static str,
    name: String,
    comments: Vec<String>,
    body: Map,
    private: bool,
}

pub fn manifests(source: &Source, args: &KubernetesArgs) -> Result<Vec<File>, ExportError> {
    let env = EnvSplit::of(source);
    let pod = Pod { source, args, env: &env };
    let mut objects = Vec::new();
    objects.extend(env.objects(source, args.include_secrets));
    if let Some(step) = &source.templates.release_step {
        objects.push(pod.release_job(step));
    }
    for (template, replicas) in source.types() {
        objects.push(pod.deployment(template, replicas));
        objects.extend(service(source, template)?);
    }
    objects.extend(cycling(source, args)?);
    if !env.secret.is_empty() && !args.include_secrets {
        let keys: Vec<&str> = env.secret.keys().map(String::as_str).collect();
        eprintln!(
            "note: the Deployments read {} from the Secret `{}`, which is not in this export (its values are \
             secret): create it, or export again with --include-secrets",
            keys.join(", "),
            env.secret_name(source)
        );
    }
    Ok(objects.into_iter().map(|object| file(source, object)).collect())
}

fn file(source: &Source, object: Object) -> File {
    let header = format!("{GENERATED} kubernetes from the app in {}", source.root.display());
    let comments: Vec<String> = std::iter::once(header).chain(object.comments).collect();
    File {
        name: format!("{}-{}.yaml", object.kind.to_ascii_lowercase(), object.name),
        text: yaml::document(&comments, &object.body),
        private: object.private,
    }
}

/// `apiVersion`, `kind` and `metadata` (name and labels) of an object.
fn head(api: &str, kind: &str, name: &str, labels: Map) -> Map {
    head_with(api, kind, Map::new().with("name", name).with("labels", labels))
}

fn head_with(api: &str, kind: &str, metadata: Map) -> Map {
    Map::new().with("apiVersion", api).with("kind", kind).with("metadata", metadata)
}

/// The labels every object carries; `component` for a type's (or the release's, the cycle's).
fn labels(source: &Source, component: Option<&str>) -> Map {
    Map::new()
        .with("app.kubernetes.io/name", source.app.as_str())
        .with_some("app.kubernetes.io/component", component)
        .with("app.kubernetes.io/managed-by", "procgate")
}

/// The labels that select a type's pods.
fn selector(source: &Source, type_name: &str) -> Map {
    let component = type_label(type_name);
    Map::new().with("app.kubernetes.io/name", source.app.as_str()).with("app.kubernetes.io/component", component)
}

/// The env files' values, split by where the value in force comes from: a secret file
/// ([`is_secret_file`]) or another.
struct EnvSplit {
    plain: EnvMap,
    secret: EnvMap,
}

/// Whether an env file holds secrets: its name has a `secret` or `secrets` part between dots
/// (`.env.secret`, `prod.secret.env`, `secrets.env`).
pub fn is_secret_file(path: &Path) -> bool {
    let name = path.file_name().map(|name| name.to_string_lossy().to_string()).unwrap_or_default();
    name.split('.').any(|part| part == "secret" || part == "secrets")
}

impl EnvSplit {
    fn of(source: &Source) -> EnvSplit {
        let (mut plain, mut secret) = (EnvMap::new(), EnvMap::new());
        let files = &source.release.files;
        for (key, value) in &files.env {
            let origin = files.env_files.iter().rev().find(|file| file.values.contains_key(key));
            match origin.is_some_and(|file| is_secret_file(&file.path)) {
                true => secret.insert(key.clone(), value.clone()),
                false => plain.insert(key.clone(), value.clone()),
            };
        }
        EnvSplit { plain, secret }
    }

    fn config_map_name(&self, source: &Source) -> String {
        format!("{}-env", source.app)
    }

    fn secret_name(&self, source: &Source) -> String {
        format!("{}-secret-env", source.app)
    }

    /// The ConfigMap, and the Secret when asked for its values.
    fn objects(&self, source: &Source, include_secrets: bool) -> Vec<Object> {
        let mut objects = Vec::new();
        let data = |values: &EnvMap| values.iter().fold(Map::new(), |map, (k, v)| map.with(k, v.as_str()));
        if !self.plain.is_empty() {
            let name = self.config_map_name(source);
            let body = head("v1", "ConfigMap", &name, labels(source, None)).with("data", data(&self.plain));
            let comments = vec!["The env files' values (those of secret files are in the Secret).".to_string()];
            objects.push(Object { kind: "ConfigMap", name, comments, body, private: false });
        }
        if !self.secret.is_empty() && include_secrets {
            let name = self.secret_name(source);
            let body = head("v1", "Secret", &name, labels(source, None))
                .with("type", "Opaque")
                .with("stringData", data(&self.secret));
            let comments = vec!["The values of the secret env files: keep this file out of version control.".into()];
            objects.push(Object { kind: "Secret", name, comments, body, private: true });
        }
        objects
    }

    /// The container's `envFrom`: the ConfigMap and the Secret that hold values.
    fn env_from(&self, source: &Source) -> Vec<Node> {
        let mut from = Vec::new();
        if !self.plain.is_empty() {
            let reference = Map::new().with("name", self.config_map_name(source));
            from.push(Map::new().with("configMapRef", reference).into());
        }
        if !self.secret.is_empty() {
            let reference = Map::new().with("name", self.secret_name(source));
            from.push(Map::new().with("secretRef", reference).into());
        }
        from
    }
}

/// What every pod of the export is made of.
struct Pod<'a> {
    source: &'a Source<'a>,
    args: &'a KubernetesArgs,
    env: &'a EnvSplit,
}

impl Pod<'_> {
    /// The container port, `PORT`: the base port (every pod has its own network namespace).
    fn port(&self) -> u16 {
        self.source.release.base_port
    }

    /// Where commands run in the image: `--workdir`, else the app root as procgate runs them.
    fn workdir(&self) -> String {
        self.args.workdir.clone().unwrap_or_else(|| self.source.root.display().to_string())
    }

    fn container(&self, template: &TypeTemplate, dyno: Option<&str>) -> Map {
        let port = template.block_start.map(|_| self.port());
        Map::new()
            .with("name", type_label(&template.type_name))
            .with("image", self.args.image.as_str())
            .with("command", vec!["/bin/sh", "-c", template.command.as_str()])
            .with("workingDir", self.workdir())
            .with_some("envFrom", Some(self.env.env_from(self.source)).filter(|from| !from.is_empty()))
            .with("env", platform_env(self.source, template, dyno, port))
    }

    fn deployment(&self, template: &TypeTemplate, replicas: usize) -> Object {
        let source = self.source;
        let name = source.name_of(&template.type_name);
        let component = type_label(&template.type_name);
        let grace = seconds(source.start.grace);
        let mut container = self.container(template, None);
        let mut pod_spec = Map::new();
        match &template.probe {
            Some(probe) => {
                let port_name = if probe.http.is_some() { "http" } else { "tcp" };
                let port = Map::new().with("name", port_name).with("containerPort", u64::from(self.port()));
                container.push("ports", vec![port.with("protocol", "TCP")]);
                self.probes(&mut container, probe);
                let pause = vec!["/bin/sh".to_string(), "-c".into(), format!("sleep {ENDPOINT_DRAIN_SECONDS}")];
                let pre_stop = Map::new().with("exec", Map::new().with("command", pause));
                container.push("lifecycle", Map::new().with("preStop", pre_stop));
                pod_spec = pod_spec
                    .comment(&format!(
                        "{ENDPOINT_DRAIN_SECONDS} s for the endpoints to drop the pod (preStop), then --grace"
                    ))
                    .with("terminationGracePeriodSeconds", ENDPOINT_DRAIN_SECONDS + grace);
            }
            None => pod_spec = pod_spec.comment("--grace").with("terminationGracePeriodSeconds", grace),
        }
        let pod_spec = pod_spec.with("containers", vec![container]);
        let rolling = Map::new().with("maxUnavailable", 0u64).with("maxSurge", 1u64);
        let mut spec = Map::new()
            .with("replicas", replicas as u64)
            .with("selector", Map::new().with("matchLabels", selector(source, &template.type_name)))
            .comment("procgate's rollouts: a replacement serves before an old instance stops")
            .with("strategy", Map::new().with("type", "RollingUpdate").with("rollingUpdate", rolling));
        if template.probe.is_none() {
            // procgate counts an unrouted replacement as ready once it has stayed up 1 s.
            spec = spec.with("minReadySeconds", 1u64);
        }
        let pod = Map::new().with("metadata", Map::new().with("labels", labels(source, Some(&component))));
        let spec = spec.with("template", pod.with("spec", pod_spec));
        let body = head("apps/v1", "Deployment", &name, labels(source, Some(&component))).with("spec", spec);
        let comments = vec![format!("Procfile type `{}`: {}", template.type_name, template.command)];
        Object { kind: "Deployment", name, comments, body, private: false }
    }

    /// procgate's checks of a routed type: readiness (in and out of routing), a startup probe
    /// (R10 after --boot-timeout) and, with `restart_unhealthy_after`, liveness (R16).
    fn probes(&self, container: &mut Map, probe: &ProbeSettings) {
        let check = |map: Map| match &probe.http {
            Some(http) => {
                map.with("httpGet", Map::new().with("path", http.path.as_str()).with("port", u64::from(self.port())))
            }
            None => map.with("tcpSocket", Map::new().with("port", u64::from(self.port()))),
        };
        let timing = |map: Map, period: u64, success: u32, failure: u64| {
            map.with("periodSeconds", period)
                .with("timeoutSeconds", seconds(probe.timeout))
                .with("successThreshold", u64::from(success))
                .with("failureThreshold", failure.max(1))
        };
        let mut readiness = Map::new();
        if let Some(http) = probe.http.as_ref().filter(|http| http.statuses != HTTP_PROBE_STATUSES) {
            let (low, high) = (http.statuses.start(), http.statuses.end());
            readiness = readiness.comment(&format!(
                "procgate accepts statuses {low}-{high} (health_status); Kubernetes' httpGet accepts 200-399"
            ));
        }
        let period = seconds(probe.interval);
        let readiness = timing(check(readiness), period, probe.rise, u64::from(probe.fall));
        container.push("readinessProbe", readiness);
        let boot = seconds(self.source.start.boot_timeout);
        container.push("startupProbe", timing(check(Map::new().comment("--boot-timeout (R10)")), 1, 1, boot));
        if let Some(after) = probe.restart_unhealthy_after {
            let liveness = check(Map::new().comment("restart_unhealthy_after (R16)"));
            container.push("livenessProbe", timing(liveness, period, 1, seconds(after).div_ceil(period)));
        }
    }

    /// The release step as a Job, named by what it runs: a new release is a new Job (a Job's
    /// pod template cannot change), an unchanged one is the same.
    fn release_job(&self, step: &TypeTemplate) -> Object {
        let source = self.source;
        let container = self.container(step, Some(&format!("{RELEASE}.1")));
        let what = [&self.args.image, &self.workdir(), &step.command, &format!("{:?}", self.env.plain)];
        let what = what.map(String::as_str).join("\n");
        let name = format!("{}-{RELEASE}-{:010x}", source.app, fnv1a(what.as_bytes()) >> 24);
        let pod_spec = Map::new().with("restartPolicy", "Never").with("containers", vec![container]);
        let pod = Map::new().with("metadata", Map::new().with("labels", labels(source, Some(RELEASE))));
        let spec = Map::new()
            .comment("procgate runs it once and stops on a failure: no retry")
            .with("backoffLimit", 0u64)
            .comment("--release-timeout (R20)")
            .with("activeDeadlineSeconds", seconds(source.start.release_timeout))
            .with("template", pod.with("spec", pod_spec));
        let body = head("batch/v1", "Job", &name, labels(source, Some(RELEASE))).with("spec", spec);
        let comments = vec![
            format!("Procfile `release`: {}", step.command),
            "It runs once per release, before the Deployments should roll: apply it first and wait,".into(),
            format!(
                "  kubectl wait --for=condition=complete --timeout={} job/{name}",
                crate::duration::format(source.start.release_timeout)
            ),
            "Kubernetes does not gate the Deployments on it as procgate does.".into(),
        ];
        Object { kind: "Job", name, comments, body, private: false }
    }
}

/// The `env` list: the variables procgate gives an instance on top of the env files
/// ([`instance_env`]): `PS` and `DYNO` are `dyno`, or the pod's name; `TCP_URL` names the
/// Service of the route.
fn platform_env(source: &Source, template: &TypeTemplate, dyno: Option<&str>, port: Option<u16>) -> Vec<Node> {
    let vars = PlatformVars {
        dyno: dyno.unwrap_or_default().to_string(),
        port,
        tcp_url: tcp_url(source, template),
        proxy_protocol: template.proxy_protocol.map(ProxyVersion::as_str),
    };
    let pod_name = || Map::new().with("fieldRef", Map::new().with("fieldPath", "metadata.name"));
    let variables = instance_env(&EnvMap::new(), &vars).into_iter().map(|(name, value)| {
        let entry = Map::new().with("name", name.as_str());
        match (name.as_str(), dyno) {
            ("PS" | "DYNO", None) => entry.with("valueFrom", pod_name()),
            _ => entry.with("value", value),
        }
    });
    variables.map(Node::from).collect()
}

/// `TCP_URL` in the cluster: the Service of the route procgate would name, at its port.
fn tcp_url(source: &Source, template: &TypeTemplate) -> String {
    let routes = source.release.routes.iter().filter(|route| !route.http);
    match routes.into_iter().find(|route| format!("tcp://{}", route.addr) == template.tcp_url) {
        Some(route) => format!("tcp://{}:{}", source.name_of(&route.type_name), route.addr.port()),
        None => template.tcp_url.clone(),
    }
}

/// A routed type's Service (and `web`'s Ingress), with the route settings Kubernetes lacks as comments.
fn service(source: &Source, template: &TypeTemplate) -> Result<Vec<Object>, ExportError> {
    let Some(route) = source.release.routes.iter().find(|route| route.type_name == template.type_name) else {
        return Ok(Vec::new());
    };
    let name = source.name_of(&template.type_name);
    let component = type_label(&template.type_name);
    let target = u64::from(source.release.base_port);
    let settings = source.release.settings_of(&template.type_name);
    let mut comments = not_carried_over(&template.type_name, &settings);
    let mut metadata = Map::new().with("name", name.as_str()).with("labels", labels(source, Some(&component)));
    let spec = Map::new().with("selector", selector(source, &template.type_name));
    let spec = if route.http {
        let port = Map::new().with("name", "http").with("port", WEB_SERVICE_PORT).with("targetPort", target);
        spec.with("type", "ClusterIP").with("ports", vec![port.with("protocol", "TCP")])
    } else {
        if route.addr.port() == 0 {
            return Err(ExportError::Unsupported(format!(
                "the `{}` route listens on port 0 (any free port), and its LoadBalancer Service needs a port: \
                 pass --tcp-listen or set [types.{}] listen in procgate.toml with a port",
                template.type_name, template.type_name
            )));
        }
        if let Some(version) = template.proxy_protocol {
            comments.extend(proxy_protocol_notes(version));
            metadata.push("annotations", Map::new().with("procgate/proxy-protocol", version.as_str()));
        }
        let port = Map::new().with("name", "tcp").with("port", u64::from(route.addr.port())).with("targetPort", target);
        spec.with("type", "LoadBalancer")
            .comment("the client's address reaches the pod (no second hop, no source NAT)")
            .with("externalTrafficPolicy", "Local")
            .with("ports", vec![port.with("protocol", "TCP")])
    };
    let body = head_with("v1", "Service", metadata).with("spec", spec);
    let service = Object { kind: "Service", name: name.clone(), comments, body, private: false };
    let mut objects = vec![service];
    if template.type_name == WEB_TYPE {
        objects.push(ingress(source, &name, &component));
    }
    Ok(objects)
}

/// `web`'s Ingress: every path to its Service.
fn ingress(source: &Source, name: &str, component: &str) -> Object {
    let port = Map::new().with("number", WEB_SERVICE_PORT);
    let backend = Map::new().with("service", Map::new().with("name", name).with("port", port));
    let path = Map::new().with("path", "/").with("pathType", "Prefix").with("backend", backend);
    let rule = Map::new().with("http", Map::new().with("paths", vec![path]));
    let spec = Map::new()
        .comment("add `ingressClassName` for your Ingress controller, and `host:` to the rule for your domain")
        .with("rules", vec![rule]);
    let body = head("networking.k8s.io/v1", "Ingress", name, labels(source, Some(component))).with("spec", spec);
    let comments = vec!["procgate's HTTP router for `web`: the Ingress controller takes its place.".into()];
    Object { kind: "Ingress", name: name.to_string(), comments, body, private: false }
}

/// The route settings set for a type that Kubernetes has no field for, as comment lines; and
/// `sleep_after` (scale to zero needs an add-on there, such as Knative or KEDA).
fn not_carried_over(type_name: &str, settings: &TypeSettings) -> Vec<String> {
    let keys = |settings: &TypeSettings| {
        let sleep = settings.instance_keys().into_iter().filter(|(key, _)| *key == "sleep_after");
        settings.listener_keys().into_iter().chain(sleep).collect::<Vec<_>>()
    };
    let defaults = keys(&TypeSettings::default());
    let set: Vec<String> = keys(settings)
        .into_iter()
        .zip(defaults)
        .filter(|((_, value), (_, default))| value != default)
        .map(|((key, value), _)| format!("  {key} = {value}"))
        .collect();
    if set.is_empty() {
        return Vec::new();
    }
    let title = format!(
        "[types.{type_name}] settings with no Kubernetes equivalent (procgate's gateway and router enforce them; \
         a load balancer or Ingress controller may have its own):"
    );
    std::iter::once(title).chain(set).collect()
}

/// What `proxy_protocol` needs of the load balancer, which then sends the header procgate sent.
fn proxy_protocol_notes(version: ProxyVersion) -> Vec<String> {
    vec![
        format!(
            "proxy_protocol = \"{}\": the app expects a PROXY header first; have the load balancer",
            version.as_str()
        ),
        "send it (and switch both together), with your provider's annotation, e.g.:".into(),
        "  service.beta.kubernetes.io/aws-load-balancer-proxy-protocol: \"*\"".into(),
        "  service.beta.kubernetes.io/do-loadbalancer-enable-proxy-protocol: \"true\"".into(),
        "  load-balancer.hetzner.cloud/uses-proxyprotocol: \"true\"".into(),
        "The readiness probe's handshake sends none (procgate's sends a LOCAL header).".into(),
    ]
}

/// Daily cycling as a CronJob that restarts the cycled types' Deployments (a rolling restart:
/// one pod at a time, its replacement ready first), after a random delay up to the jitter, with
/// the ServiceAccount and Role it needs; nothing when no type is cycled.
fn cycling(source: &Source, args: &KubernetesArgs) -> Result<Vec<Object>, ExportError> {
    let Some(cycling) = crate::commands::start::cycling(source.start) else { return Ok(Vec::new()) };
    let cycled: Vec<String> =
        source.templates.types.iter().filter(|t| t.cycles).map(|t| source.name_of(&t.type_name)).collect();
    if cycled.is_empty() {
        return Ok(Vec::new());
    }
    let name = format!("{}-cycle", source.app);
    let labels = || labels(source, Some("cycle"));
    let deployments: Vec<String> = cycled.iter().map(|name| format!("deployment/{name}")).collect();
    let jitter = seconds(cycling.jitter);
    let delay = match jitter {
        0 => String::new(),
        jitter => format!("sleep $(( (RANDOM * 32768 + RANDOM) % {jitter} )) && "),
    };
    let script = format!("{delay}kubectl rollout restart {}", deployments.join(" "));
    let container = Map::new()
        .with("name", "cycle")
        .with("image", args.kubectl_image.as_str())
        .with("command", vec!["/bin/bash", "-c", script.as_str()]);
    let pod_spec = Map::new()
        .with("serviceAccountName", name.as_str())
        .with("restartPolicy", "Never")
        .with("containers", vec![container]);
    let pod = Map::new().with("metadata", Map::new().with("labels", labels())).with("spec", pod_spec);
    let job = Map::new()
        .with("backoffLimit", 2u64)
        .with("activeDeadlineSeconds", jitter + CYCLE_JOB_SECONDS)
        .with("template", pod);
    let spec = Map::new()
        .comment(&format!("--cycle {}", crate::duration::format(cycling.period)))
        .with("schedule", schedule(cycling.period)?)
        .with("concurrencyPolicy", "Forbid")
        .with("successfulJobsHistoryLimit", 1u64)
        .with("failedJobsHistoryLimit", 3u64)
        .with("jobTemplate", Map::new().with("spec", job));
    let cron = head("batch/v1", "CronJob", &name, labels()).with("spec", spec);
    let rule = Map::new()
        .with("apiGroups", vec!["apps"])
        .with("resources", vec!["deployments"])
        .with("resourceNames", cycled.clone())
        .with("verbs", vec!["get", "patch"]);
    let role = head("rbac.authorization.k8s.io/v1", "Role", &name, labels()).with("rules", vec![rule]);
    let role_ref =
        Map::new().with("apiGroup", "rbac.authorization.k8s.io").with("kind", "Role").with("name", name.as_str());
    let subject = Map::new().with("kind", "ServiceAccount").with("name", name.as_str());
    let binding = head("rbac.authorization.k8s.io/v1", "RoleBinding", &name, labels())
        .with("roleRef", role_ref)
        .with("subjects", vec![subject]);
    let account = head("v1", "ServiceAccount", &name, labels());
    let why = format!(
        "Daily cycling (--cycle, --cycle-jitter {}): a rolling restart of {}.",
        crate::duration::format(cycling.jitter),
        cycled.join(", ")
    );
    let object = |kind, body, comments| Object { kind, name: name.clone(), comments, body, private: false };
    Ok(vec![
        object("CronJob", cron, vec![why]),
        object("ServiceAccount", account, vec!["The cycling CronJob's account.".into()]),
        object("Role", role, vec!["What the cycling CronJob may do: restart the cycled Deployments.".into()]),
        object("RoleBinding", binding, Vec::new()),
    ])
}

/// `--cycle` as a cron schedule, from midnight: whole days, or a period that divides a day
/// into whole hours or an hour into whole minutes.
fn schedule(period: Duration) -> Result<String, ExportError> {
    let minutes = period.as_secs() / 60;
    let whole = period.subsec_nanos() == 0 && period.as_secs().is_multiple_of(60) && minutes > 0;
    match minutes {
        1440 if whole => Ok("0 0 * * *".into()),
        m if whole && m % 1440 == 0 => Ok(format!("0 0 */{} * *", m / 1440)),
        m if whole && m % 60 == 0 && 1440 % m == 0 => Ok(format!("0 */{} * * *", m / 60)),
        m if whole && 60 % m == 0 => Ok(format!("*/{m} * * * *")),
        _ => Err(ExportError::Unsupported(format!(
            "--cycle {} cannot be a CronJob's schedule: cron runs on the clock, so the period must be whole days, \
             divide a day into whole hours or an hour into whole minutes (e.g. 24h, 12h, 30m), or be `off`",
            crate::duration::format(period)
        ))),
    }
}

/// FNV-1a, 64 bits: a hash that stays the same across builds and versions.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_are_told_by_name() {
        for secret in [".env.secret", "prod.secret.env", "config/secrets.env", "/etc/app/secret"] {
            assert!(is_secret_file(Path::new(secret)), "{secret}");
        }
        for plain in [".env", "prod.env", "secretary.env", "config/not-secret.env"] {
            assert!(!is_secret_file(Path::new(plain)), "{plain}");
        }
    }

    #[test]
    fn cycle_periods_become_cron_schedules_or_an_error() {
        let at = |text: &str| schedule(crate::duration::parse(text).unwrap());
        assert_eq!(at("24h").unwrap(), "0 0 * * *");
        assert_eq!(at("48h").unwrap(), "0 0 */2 * *");
        assert_eq!(at("6h").unwrap(), "0 */6 * * *");
        assert_eq!(at("1h").unwrap(), "0 */1 * * *");
        assert_eq!(at("15m").unwrap(), "*/15 * * * *");
        for bad in ["7h", "36h", "45m", "90s", "30s"] {
            assert!(at(bad).unwrap_err().to_string().contains("cannot be a CronJob's schedule"), "{bad}");
        }
    }

    #[test]
    fn the_hash_is_fnv1a() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
