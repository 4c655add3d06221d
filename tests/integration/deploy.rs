//! deploy/: every manifest parses, the Kubernetes Deployment probes the broker's health endpoints
//! and outlasts its shutdown grace, every broker config there loads with the real loader (through
//! `consent-broker check-config`, with the environment the manifests give it), the compose demo's
//! simulator world starts and matches the brokers, and every metric the dashboard and the alert
//! rules name is one a running broker exports (its /metrics and its metric registry).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use regex::Regex;
use saphyr::{LoadableYamlNode, Scalar, Yaml};
use serde_json::{Map, Value};

use consent_broker::metrics::FamilyInfo;

use crate::common::flows::World;
use crate::common::sim::Sim;

const BIN: &str = env!("CARGO_BIN_EXE_consent-broker");
/// Where the image's default command (deploy/Dockerfile) reads the config.
const IMAGE_CONFIG_PATH: &str = "/etc/consent-broker/broker.toml";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

/// Every file under deploy/ whose name ends in one of `exts`, sorted.
fn files_with(exts: &[&str]) -> Vec<PathBuf> {
    fn walk(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                walk(&path, exts, out);
            } else if path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| exts.contains(&e))
            {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(&deploy_dir(), exts, &mut out);
    out.sort();
    out
}

fn rel(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display()
        .to_string()
}

/// A YAML node as JSON, so that YAML and JSON files are walked alike. Mapping keys must be
/// scalars (the manifests here have no others).
fn yaml_to_json(node: &Yaml) -> Result<Value, String> {
    Ok(match node {
        Yaml::Value(Scalar::Null) => Value::Null,
        Yaml::Value(Scalar::Boolean(b)) => Value::Bool(*b),
        Yaml::Value(Scalar::Integer(i)) => Value::from(*i),
        Yaml::Value(Scalar::FloatingPoint(f)) => serde_json::Number::from_f64(f.into_inner())
            .map(Value::Number)
            .ok_or_else(|| format!("{f} has no JSON form"))?,
        Yaml::Value(Scalar::String(s)) => Value::String(s.to_string()),
        Yaml::Representation(s, _, _) => Value::String(s.to_string()),
        Yaml::Sequence(items) => Value::Array(items.iter().map(yaml_to_json).collect::<Result<_, _>>()?),
        Yaml::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match yaml_to_json(k)? {
                    Value::String(s) => s,
                    Value::Bool(_) | Value::Number(_) => yaml_to_json(k)?.to_string(),
                    other => return Err(format!("mapping key {other} is not a scalar")),
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Yaml::Tagged(_, inner) => yaml_to_json(inner)?,
        Yaml::Alias(_) | Yaml::BadValue => return Err("unresolved alias or bad value".into()),
    })
}

/// The documents of a YAML stream, or why it does not parse.
fn parse_yaml(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let docs = Yaml::load_from_str(&text).map_err(|e| e.to_string())?;
    docs.iter()
        .map(yaml_to_json)
        // An empty document (a trailing `---`) holds nothing to check.
        .filter(|d| !matches!(d, Ok(Value::Null)))
        .collect()
}

/// Every document of every YAML and JSON file under deploy/, by file; panics naming each file
/// that does not parse.
fn manifests() -> BTreeMap<PathBuf, Vec<Value>> {
    let mut parsed = BTreeMap::new();
    let mut failures = Vec::new();
    for path in files_with(&["yaml", "yml", "json"]) {
        let result = if path.extension().is_some_and(|e| e == "json") {
            std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| e.to_string()))
                .map(|v| vec![v])
        } else {
            parse_yaml(&path)
        };
        match result {
            Ok(docs) => {
                parsed.insert(path, docs);
            }
            Err(e) => failures.push(format!("{}: {e}", rel(&path))),
        }
    }
    assert!(
        failures.is_empty(),
        "files under deploy/ that do not parse:\n{}",
        failures.join("\n")
    );
    parsed
}

fn docs_of_kind(manifests: &BTreeMap<PathBuf, Vec<Value>>, kind: &str) -> Vec<(PathBuf, Value)> {
    manifests
        .iter()
        .flat_map(|(p, docs)| docs.iter().map(move |d| (p.clone(), d.clone())))
        .filter(|(_, d)| d["kind"] == kind && d["apiVersion"].is_string())
        .collect()
}

fn manifest(manifests: &BTreeMap<PathBuf, Vec<Value>>, rel_path: &str) -> Value {
    let path = deploy_dir().join(rel_path);
    let docs = manifests
        .get(&path)
        .unwrap_or_else(|| panic!("deploy/{rel_path} is missing"));
    assert_eq!(docs.len(), 1, "deploy/{rel_path} should hold one document");
    docs[0].clone()
}

/// Every string anywhere in `v`, with the key it sits under (`None` in arrays).
fn strings<'a>(v: &'a Value, key: Option<&'a str>, out: &mut Vec<(Option<&'a str>, &'a str)>) {
    match v {
        Value::String(s) => out.push((key, s)),
        Value::Array(items) => items.iter().for_each(|i| strings(i, key, out)),
        Value::Object(map) => map.iter().for_each(|(k, v)| strings(v, Some(k), out)),
        _ => {}
    }
}

#[test]
fn every_manifest_under_deploy_parses() {
    let parsed = manifests();
    // Proves the walk found the artifacts (a broken walk would make every other check vacuous).
    for expected in [
        "compose.yaml",
        "k8s/deployment.yaml",
        "grafana/consent-broker.json",
        "prometheus/alerts.yaml",
    ] {
        assert!(
            parsed.contains_key(&deploy_dir().join(expected)),
            "deploy/{expected} not found among {:?}",
            parsed.keys().map(|p| rel(p)).collect::<Vec<_>>()
        );
    }
    // A key written twice (the second silently winning) is a classic manifest bug; the loader
    // refuses it, so the parse above catches it too.
    assert!(
        Yaml::load_from_str("a: 1\na: 2\n").is_err(),
        "duplicate keys are refused"
    );
}

/// The seconds a container's preStop hook waits (`sleep N` or the native sleep action).
fn pre_stop_secs(container: &Value) -> u64 {
    let pre_stop = &container["lifecycle"]["preStop"];
    if let Some(s) = pre_stop["sleep"]["seconds"].as_u64() {
        return s;
    }
    match pre_stop["exec"]["command"].as_array().map(Vec::as_slice) {
        Some([cmd, secs]) if cmd.as_str().is_some_and(|c| c.ends_with("sleep")) => {
            secs.as_str().and_then(|s| s.parse().ok()).expect("sleep seconds")
        }
        None => 0,
        other => panic!("unexpected preStop hook {other:?}"),
    }
}

/// The config file a broker container reads: the path after `--config`.
fn config_arg(args: &[Value]) -> Option<String> {
    args.iter()
        .position(|a| a == "--config" || a == "-c")
        .and_then(|i| args.get(i + 1))
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The broker TOML a Deployment mounts, from its ConfigMap, and the environment it gets (literal
/// `env` values and the keys of Secrets named by `envFrom`, with their example values).
fn deployment_config(
    manifests: &BTreeMap<PathBuf, Vec<Value>>,
    deployment: &Value,
) -> (String, BTreeMap<String, String>) {
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args = container["args"].as_array().cloned().unwrap_or_default();
    let path = config_arg(&args).expect("the broker container passes --config");
    let mount = container["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["mountPath"].as_str().is_some_and(|p| path.starts_with(p)))
        .unwrap_or_else(|| panic!("no volume mounted where --config {path} points"));
    let volume = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume is declared");
    let config_map_name = volume["configMap"]["name"]
        .as_str()
        .expect("the config comes from a ConfigMap");
    let file_name: &str = path[mount["mountPath"].as_str().unwrap().len()..].trim_start_matches('/');
    let key = volume["configMap"]["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i["path"] == file_name)
        .and_then(|i| i["key"].as_str())
        .unwrap_or(file_name);
    let config_map = docs_of_kind(manifests, "ConfigMap")
        .into_iter()
        .find(|(_, d)| d["metadata"]["name"] == config_map_name)
        .unwrap_or_else(|| panic!("ConfigMap {config_map_name} is not under deploy/"))
        .1;
    let toml = config_map["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("ConfigMap {config_map_name} has no key {key}"))
        .to_string();

    let mut env = BTreeMap::new();
    for e in container["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().expect("env name").to_string();
        env.insert(name, e["value"].as_str().unwrap_or("from-a-secret-key-ref").to_string());
    }
    for source in container["envFrom"].as_array().into_iter().flatten() {
        let secret_name = source["secretRef"]["name"].as_str().expect("envFrom names a Secret");
        let secret = docs_of_kind(manifests, "Secret")
            .into_iter()
            .find(|(_, d)| d["metadata"]["name"] == secret_name)
            .unwrap_or_else(|| panic!("Secret {secret_name} has no example under deploy/"))
            .1;
        for (name, value) in secret["stringData"].as_object().into_iter().flatten() {
            env.insert(name.clone(), value.as_str().expect("string value").to_string());
        }
    }
    (toml, env)
}

#[test]
fn kubernetes_deployment_probes_health_and_outlasts_the_shutdown_grace() {
    let manifests = manifests();
    let deployments = docs_of_kind(&manifests, "Deployment");
    assert!(!deployments.is_empty(), "no Deployment under deploy/");
    for (file, d) in deployments {
        let pod = &d["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let at = rel(&file);
        assert_eq!(
            container["livenessProbe"]["httpGet"]["path"], "/healthz",
            "{at}: liveness"
        );
        assert_eq!(
            container["readinessProbe"]["httpGet"]["path"], "/readyz",
            "{at}: readiness"
        );
        let ports: Vec<&Value> = container["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|p| [&p["name"], &p["containerPort"]])
            .collect();
        for probe in ["livenessProbe", "readinessProbe"] {
            let port = &container[probe]["httpGet"]["port"];
            assert!(
                ports.contains(&port),
                "{at}: {probe} port {port} is not a container port"
            );
        }
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{at}: runAsNonRoot");
        assert_eq!(
            container["securityContext"]["readOnlyRootFilesystem"], true,
            "{at}: readOnlyRootFilesystem"
        );

        // SIGTERM comes after preStop; the broker then needs up to shutdown_grace_secs.
        let (toml_text, _) = deployment_config(&manifests, &d);
        let config: toml::Value = toml::from_str(&toml_text).expect("ConfigMap TOML");
        let grace = config["server"]
            .get("shutdown_grace_secs")
            .and_then(toml::Value::as_integer)
            .unwrap_or(20) as u64;
        // Prometheus is pointed at the port /metrics is really on.
        let metrics_port = match config["server"].get("metrics_listen").and_then(toml::Value::as_str) {
            Some(addr) => addr
                .rsplit(':')
                .next()
                .unwrap()
                .parse::<u64>()
                .expect("metrics_listen port"),
            None => container["ports"][0]["containerPort"].as_u64().expect("container port"),
        };
        assert!(
            ports.contains(&&Value::from(metrics_port)),
            "{at}: the metrics port {metrics_port} is not a container port"
        );
        let annotation = &d["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"];
        if !annotation.is_null() {
            assert_eq!(annotation, &metrics_port.to_string(), "{at}: prometheus.io/port");
        }
        let termination = pod["terminationGracePeriodSeconds"].as_u64().unwrap_or(30);
        let pre_stop = pre_stop_secs(container);
        assert!(
            termination > pre_stop + grace,
            "{at}: terminationGracePeriodSeconds {termination} must exceed preStop {pre_stop} s + shutdown_grace_secs {grace} s"
        );
    }
}

/// Runs `consent-broker check-config` on `file` with exactly `env`; the outcome names `what`.
fn check_config(what: &str, file: &Path, env: &BTreeMap<String, String>) -> Result<(), String> {
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(file)
        .env_clear()
        .envs(env)
        .output()
        .expect("run consent-broker check-config");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The environment with real-looking values where the manifests can only hold placeholders:
/// encryption keys (the config names their variables) become a valid test key, and compose
/// `${VAR…}` interpolations become a fixed word.
fn resolve_env(toml_text: &str, env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let config: toml::Value = toml::from_str(toml_text).expect("broker TOML");
    let key_vars: BTreeSet<&str> = config
        .get("encryption")
        .and_then(|e| e.get("keys"))
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|k| k.get("env").and_then(toml::Value::as_str))
        .collect();
    let interpolation = Regex::new(r"\$\{[^}]*\}").unwrap();
    env.iter()
        .map(|(k, v)| {
            let value = if key_vars.contains(k.as_str()) {
                "5a".repeat(32)
            } else {
                interpolation.replace_all(v, "placeholder").into_owned()
            };
            (k.clone(), value)
        })
        .collect()
}

/// A compose service's `environment` (map or list form).
fn compose_env(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string()),
                )
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|i| {
                i.split_once('=')
                    .map_or((i.to_string(), String::new()), |(k, v)| (k.into(), v.into()))
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The host file a compose service mounts at `target` (short volume syntax, relative to deploy/).
fn compose_mount(service: &Value, target: &str) -> Option<PathBuf> {
    service["volumes"].as_array()?.iter().find_map(|v| {
        let mut parts = v.as_str()?.split(':');
        let (source, t) = (parts.next()?, parts.next()?);
        (t == target).then(|| deploy_dir().join(source.trim_start_matches("./")))
    })
}

/// The compose services built from deploy/Dockerfile's `target` stage, by name.
fn compose_services(compose: &Value, target: &str) -> Vec<(String, Value)> {
    compose["services"]
        .as_object()
        .expect("compose services")
        .iter()
        .filter(|(_, s)| s["build"]["target"] == target)
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect()
}

#[test]
fn every_broker_config_under_deploy_loads_with_the_environment_its_manifest_gives() {
    let manifests = manifests();
    let dockerfile = std::fs::read_to_string(deploy_dir().join("Dockerfile")).expect("deploy/Dockerfile");
    assert!(
        dockerfile.contains(&format!("\"serve\", \"--config\", \"{IMAGE_CONFIG_PATH}\"")),
        "the image's command reads {IMAGE_CONFIG_PATH}"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut checked_files = BTreeSet::new();
    let mut checked = 0;

    for (file, d) in docs_of_kind(&manifests, "Deployment") {
        let (toml_text, env) = deployment_config(&manifests, &d);
        let path = dir
            .path()
            .join(format!("{}.toml", d["metadata"]["name"].as_str().unwrap()));
        std::fs::write(&path, &toml_text).unwrap();
        let what = format!("{} (ConfigMap content)", rel(&file));
        if let Err(e) = check_config(&what, &path, &resolve_env(&toml_text, &env)) {
            failures.push(e);
        }
        checked += 1;
    }

    let compose = manifest(&manifests, "compose.yaml");
    let brokers = compose_services(&compose, "consent-broker");
    assert!(brokers.len() >= 2, "the compose demo runs two brokers");
    for (name, service) in brokers {
        let target = service["command"]
            .as_array()
            .and_then(|a| config_arg(a))
            .unwrap_or_else(|| IMAGE_CONFIG_PATH.to_string());
        let file = compose_mount(&service, &target)
            .unwrap_or_else(|| panic!("compose service {name} mounts no config at {target}"));
        let toml_text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", rel(&file)));
        assert_eq!(
            toml::from_str::<toml::Value>(&toml_text).expect("compose broker TOML")["store"]["backend"].as_str(),
            Some("redis"),
            "{name}: the compose brokers share the redis store"
        );
        let what = format!("{} for compose service {name}", rel(&file));
        if let Err(e) = check_config(&what, &file, &resolve_env(&toml_text, &compose_env(&service))) {
            failures.push(e);
        }
        checked_files.insert(file);
        checked += 1;
    }

    assert!(checked >= 3, "found only {checked} broker configs to check");
    let unchecked: Vec<String> = files_with(&["toml"])
        .into_iter()
        .filter(|f| !checked_files.contains(f))
        .map(|f| rel(&f))
        .collect();
    assert!(
        unchecked.is_empty(),
        "broker configs no manifest uses (so unchecked): {unchecked:?}"
    );
    assert!(
        failures.is_empty(),
        "configs the broker refuses:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn compose_simulator_world_starts_and_matches_the_brokers() {
    let manifests = manifests();
    let compose = manifest(&manifests, "compose.yaml");
    let sims = compose_services(&compose, "entra-sim");
    let [(sim_name, sim)] = sims.as_slice() else {
        panic!("the compose demo runs one entra-sim, found {}", sims.len());
    };
    let args = sim["command"].as_array().expect("entra-sim command");
    let world_path = config_arg(args).expect("entra-sim --config");
    let world_file =
        compose_mount(sim, &world_path).unwrap_or_else(|| panic!("{sim_name} mounts no world at {world_path}"));
    let world = manifests[&world_file][0].clone();
    let listen = args
        .iter()
        .position(|a| a == "--listen")
        .and_then(|i| args[i + 1].as_str())
        .expect("entra-sim --listen");

    for (name, service) in compose_services(&compose, "consent-broker") {
        let env = compose_env(&service);
        let file = compose_mount(&service, IMAGE_CONFIG_PATH).expect("broker config mount");
        let config: toml::Value = toml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(
            config["entra"]["authority"].as_str(),
            Some(format!("http://{listen}").as_str()),
            "{name}: the authority is where entra-sim listens (its issuer is that address)"
        );
        let public_url = env
            .get("BROKER_SERVER__PUBLIC_URL")
            .cloned()
            .unwrap_or_else(|| config["server"]["public_url"].as_str().unwrap().to_string());
        for connector in config["connectors"].as_array().expect("connectors") {
            let client_id = connector["client_id"].as_str().unwrap();
            let app = world["apps"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["client_id"] == client_id)
                .unwrap_or_else(|| panic!("{name}: no simulator app with client id {client_id}"));
            for path in ["/v1/callback", "/v1/admin-consent/callback"] {
                let uri = format!("{public_url}{path}");
                assert!(
                    app["redirect_uris"].as_array().unwrap().iter().any(|u| u == &uri),
                    "{name}: simulator app lacks redirect URI {uri}"
                );
            }
            let secret_var = connector["client_secret_env"].as_str().expect("client_secret_env");
            let secret = env
                .get(secret_var)
                .unwrap_or_else(|| panic!("{name}: {secret_var} not set"));
            assert!(
                app["secrets"].as_array().unwrap().iter().any(|s| &s["value"] == secret),
                "{name}: {secret_var} is not a secret of the simulator app"
            );
        }
    }

    // The simulator itself accepts the world (Sim::start panics with its stderr otherwise).
    let sim = Sim::start(world).await;
    assert!(sim.base_url().starts_with("http://127.0.0.1:"));
}

/// Metric names a broker's `/metrics` declares, with the sample names each type produces:
/// prometheus-client writes counter TYPE lines without `_total` while the samples carry it, and
/// histograms expose `_bucket`, `_sum` and `_count`.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
            continue;
        };
        names.insert(name.to_string());
        // A hand-written exposition may put the `_total` in the TYPE line itself.
        let counter_base = name.strip_suffix("_total").unwrap_or(name);
        if kind == "counter" {
            names.insert(format!("{counter_base}_total"));
            names.insert(format!("{counter_base}_created"));
        }
        let suffixes: &[&str] = match kind {
            "histogram" | "gaugehistogram" => &["_bucket", "_sum", "_count", "_created"],
            "summary" => &["_sum", "_count", "_created"],
            "info" => &["_info"],
            _ => &[],
        };
        for s in suffixes {
            names.insert(format!("{name}{s}"));
        }
    }
    names
}

#[tokio::test]
async fn dashboard_and_alerts_name_only_metrics_the_broker_exports() {
    let w = World::new().await;
    let response = w.http.get(format!("{}/metrics", w.broker.url)).send().await.unwrap();
    assert!(response.status().is_success());
    let exposition = response.text().await.unwrap();
    // prometheus-client leaves a family out of the exposition until it has a series (a fresh
    // broker has no Entra error, no HTTP request yet, maybe never a known credential expiry), so
    // the running broker's registry completes the scrape. The scrape keeps the registry honest:
    // every sample it shows must be a registered name.
    let registered: BTreeSet<String> = w
        .broker
        .state
        .metrics
        .families()
        .iter()
        .flat_map(FamilyInfo::sample_names)
        .collect();
    let unregistered: BTreeSet<&str> = exposition
        .lines()
        .filter(|l| l.starts_with("consent_broker_"))
        .filter_map(|l| l.split(['{', ' ']).next())
        .filter(|name| !registered.contains(*name))
        .collect();
    assert!(
        unregistered.is_empty(),
        "/metrics shows samples Metrics::families() does not list: {unregistered:?}"
    );
    let mut exported = exported_names(&exposition);
    assert!(
        exported.iter().any(|n| n.starts_with("consent_broker_")),
        "a running broker's /metrics declares no consent_broker_ metric:\n{exposition}"
    );
    exported.extend(registered);

    let metric = Regex::new(r"\bconsent_broker_[A-Za-z0-9_]*").unwrap();
    let manifests = manifests();
    let mut unknown = BTreeMap::<String, BTreeSet<String>>::new();
    let mut check = |file: &Path, text: &str| -> usize {
        let names: Vec<&str> = metric.find_iter(text).map(|m| m.as_str()).collect();
        for n in &names {
            if !exported.contains(*n) {
                unknown.entry(rel(file)).or_default().insert(n.to_string());
            }
        }
        names.len()
    };

    // The dashboard: every expression must name a broker metric, and so must the whole.
    let dashboard_file = deploy_dir().join("grafana/consent-broker.json");
    let dashboard = manifest(&manifests, "grafana/consent-broker.json");
    let mut found = Vec::new();
    strings(&dashboard, None, &mut found);
    let exprs: Vec<&str> = found
        .iter()
        .filter(|(k, _)| *k == Some("expr"))
        .map(|(_, s)| *s)
        .collect();
    assert!(!exprs.is_empty(), "the dashboard has no expr");
    let mut dashboard_refs = 0;
    for expr in &exprs {
        let n = check(&dashboard_file, expr);
        assert!(n > 0, "dashboard expr names no consent_broker_ metric: {expr}");
        dashboard_refs += n;
    }
    assert!(dashboard_refs > 0, "the dashboard references no broker metric");
    // Template variable queries, descriptions and the like must not name missing metrics either.
    for (key, s) in &found {
        if *key != Some("expr") {
            check(&dashboard_file, s);
        }
    }

    // The alert rules: each rule's expression names a broker metric.
    let alerts_file = deploy_dir().join("prometheus/alerts.yaml");
    let alerts = manifest(&manifests, "prometheus/alerts.yaml");
    let rules: Vec<&Value> = alerts["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|g| g["rules"].as_array().into_iter().flatten())
        .collect();
    assert!(!rules.is_empty(), "no alert rules");
    for rule in rules {
        let expr = rule["expr"].as_str().expect("rule expr");
        assert!(
            check(&alerts_file, expr) > 0,
            "alert {} names no broker metric",
            rule["alert"]
        );
    }

    // Everything else under deploy/prometheus (annotations, the promtool tests' series).
    for (file, docs) in manifests
        .iter()
        .filter(|(f, _)| f.starts_with(deploy_dir().join("prometheus")))
    {
        for doc in docs {
            let mut all = Vec::new();
            strings(doc, None, &mut all);
            for (_, s) in all {
                check(file, s);
            }
        }
    }

    assert!(
        unknown.is_empty(),
        "metrics named under deploy/ that the broker does not export: {unknown:#?}\nexported: {exported:#?}"
    );
}

#[test]
fn alert_rules_pass_their_promtool_unit_tests() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/prometheus");
    let run = |args: &[&str]| {
        std::process::Command::new("promtool")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("promtool is missing ({e}): install Debian's prometheus package, as scripts/test does")
            })
    };
    let check = run(&["check", "rules", "alerts.yaml"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    let test = run(&["test", "rules", "alerts.test.yaml"]);
    assert!(
        test.status.success(),
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
}
