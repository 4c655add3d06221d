//! docs/openapi.yaml: the committed file is exactly what the code generates, every `$ref` in it
//! resolves, it names exactly the routes the broker serves with exactly the methods each serves,
//! and the JSON answers of a running broker carry exactly the fields it documents.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use reqwest::{Method, StatusCode};
use saphyr::{LoadableYamlNode, Yaml};
use serde_json::{Value, json};

use consent_broker::http::openapi::document;
use consent_broker::http::{METRICS_PATH, ROUTES};

use crate::common::broker::{KEY_A, KEY_B, RETURN_A};
use crate::common::flows::World;

/// What a developer runs after changing a handler's attributes or an answer's type.
const REGENERATE: &str = "UPDATE_OPENAPI=1 cargo test --features test-support --test integration openapi::";

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.yaml")
}

fn generated_yaml() -> String {
    document().to_yaml().expect("the document serializes to YAML")
}

fn generated_json() -> Value {
    serde_json::to_value(document()).expect("the document serializes to JSON")
}

#[test]
fn the_committed_document_is_the_generated_one() {
    let generated = generated_yaml();
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(committed_path(), &generated).expect("write docs/openapi.yaml");
        return;
    }
    let committed = std::fs::read_to_string(committed_path())
        .unwrap_or_else(|e| panic!("docs/openapi.yaml cannot be read ({e}); generate it with `{REGENERATE}`"));
    if committed != generated {
        let line = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "docs/openapi.yaml is not what the code generates (first difference at line {}: committed {:?}, generated {:?}).\n\
             Regenerate it with `{REGENERATE}` and commit it.",
            line + 1,
            committed.lines().nth(line).unwrap_or("<end of file>"),
            generated.lines().nth(line).unwrap_or("<end of file>"),
        );
    }
}

/// Every `"$ref"` string anywhere under `node`.
fn refs(node: &Value, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// The node a local `$ref` (`#/components/schemas/X`) points at.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

#[test]
fn the_committed_document_is_openapi_3_1_and_every_reference_resolves() {
    let text = std::fs::read_to_string(committed_path()).expect("docs/openapi.yaml");
    let docs = Yaml::load_from_str(&text).expect("docs/openapi.yaml is YAML");
    assert_eq!(docs.len(), 1, "one YAML document");
    let root = &docs[0];
    let version = root["openapi"].as_str().expect("an `openapi` version");
    assert!(version.starts_with("3.1."), "OpenAPI 3.1, not {version}");
    assert!(root["paths"].is_mapping() && root["info"].is_mapping());

    let doc = generated_json();
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty(), "the answers are described by named schemas");
    let dangling: BTreeSet<&String> = all.iter().filter(|r| resolve(&doc, r).is_none()).collect();
    assert!(dangling.is_empty(), "references to nothing: {dangling:?}");
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let responses = op["responses"].as_object().map(|r| r.len()).unwrap_or(0);
            assert!(responses > 0, "{method} {path} documents its answers");
        }
    }
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Path template → the methods the document gives it.
fn documented_operations(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(path, item)| {
            let methods = item
                .as_object()
                .expect("path item")
                .keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .cloned()
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

/// A concrete path for a template: every `{param}` becomes a value no record has.
fn concrete(template: &str) -> String {
    let segments: Vec<String> = template
        .split('/')
        .map(|s| match s.starts_with('{') && s.ends_with('}') {
            true => "probe-unknown".to_string(),
            false => s.to_string(),
        })
        .collect();
    segments.join("/")
}

#[tokio::test]
async fn every_served_route_is_documented_with_exactly_the_methods_it_serves() {
    let doc = generated_json();
    let documented = documented_operations(&doc);
    // The router is built from ROUTES alone (and /metrics, on the main listener by default).
    let served: BTreeSet<String> = ROUTES
        .iter()
        .map(|r| r.path.to_string())
        .chain([METRICS_PATH.to_string()])
        .collect();
    let in_doc: BTreeSet<String> = documented.keys().cloned().collect();
    assert_eq!(
        served.difference(&in_doc).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "served but not in docs/openapi.yaml"
    );
    assert_eq!(
        in_doc.difference(&served).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "in docs/openapi.yaml but not served"
    );

    let w = World::new().await;
    assert!(
        w.broker.metrics_url.is_none(),
        "this broker serves /metrics on its main listener"
    );
    let unknown = w
        .http
        .get(format!("{}/v1/not-a-route", w.broker.url))
        .send()
        .await
        .expect("broker answers");
    assert_eq!(
        unknown.status(),
        StatusCode::NOT_FOUND,
        "the probe can tell a missing route"
    );
    for (template, methods) in &documented {
        let url = format!("{}{}", w.broker.url, concrete(template));
        let mut answered = BTreeSet::new();
        for method in METHODS {
            let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("method");
            let status = w.http.request(m, &url).send().await.expect("broker answers").status();
            // axum answers 405 for a method a served path lacks; any other answer is a handler's.
            if status != StatusCode::METHOD_NOT_ALLOWED {
                answered.insert(method.to_string());
            }
        }
        assert_eq!(&answered, methods, "{template}: methods served vs documented");
    }
}

/// Checks `value` against `schema` as far as the document describes answers: object properties
/// (exactly those, the required ones present), nullability, enums, arrays and scalar types.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, problems: &mut Vec<String>) {
    if let Some(r) = schema["$ref"].as_str() {
        let target = resolve(doc, r).unwrap_or_else(|| panic!("{at}: {r} resolves"));
        return check(doc, target, value, at, problems);
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(variants) = schema[key].as_array() {
            let fits = variants.iter().any(|v| {
                let mut p = Vec::new();
                check(doc, v, value, at, &mut p);
                p.is_empty()
            });
            if !fits {
                problems.push(format!(
                    "{at}: {value} fits none of {key} {}",
                    Value::Array(variants.clone())
                ));
            }
            return;
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let type_of = match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let fits = types.is_empty() || types.contains(&type_of) || (type_of == "integer" && types.contains(&"number"));
    if !fits {
        problems.push(format!("{at}: {value} is {type_of}, documented {types:?}"));
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        problems.push(format!("{at}: {value} is not one of {allowed:?}"));
    }
    match value {
        Value::Object(fields) => {
            let properties = schema["properties"].as_object().cloned().unwrap_or_default();
            let documented: BTreeSet<&String> = properties.keys().collect();
            let sent: BTreeSet<&String> = fields.keys().collect();
            if documented != sent {
                problems.push(format!("{at}: fields {sent:?}, documented {documented:?}"));
            }
            for required in schema["required"].as_array().into_iter().flatten() {
                if !fields.contains_key(required.as_str().unwrap_or_default()) {
                    problems.push(format!("{at}: required {required} missing"));
                }
            }
            for (name, v) in fields {
                if let Some(s) = properties.get(name) {
                    check(doc, s, v, &format!("{at}.{name}"), problems);
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                check(doc, &schema["items"], v, &format!("{at}[{i}]"), problems);
            }
        }
        _ => {}
    }
}

/// Asserts that an answer is documented for its path, method and status, with exactly its fields.
fn assert_documented(doc: &Value, method: &str, template: &str, status: StatusCode, body: &Value) {
    let response = &doc["paths"][template][method]["responses"][status.as_str()];
    assert!(
        response.is_object(),
        "{method} {template} answered {status}, which docs/openapi.yaml does not list"
    );
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {template} {status} answered JSON, documented without a JSON body: {response}"
    );
    let mut problems = Vec::new();
    check(
        doc,
        schema,
        body,
        &format!("{method} {template} {status}"),
        &mut problems,
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn json_answers_carry_exactly_the_documented_fields() {
    let doc = generated_json();
    let w = World::new().await;
    let sessions = "/v1/connect-sessions";

    let (status, created) = w
        .api(
            Method::POST,
            sessions,
            Some(KEY_A),
            Some(json!({"connector": "files", "end_user": "u-1", "return_url": RETURN_A, "state": "s"})),
        )
        .await;
    assert_documented(&doc, "post", sessions, status, &created);
    let (status, polled) = w.poll_session(&created).await;
    assert_documented(&doc, "get", "/v1/connect-sessions/{session_id}", status, &polled);
    for (key, body) in [
        (None, json!({"connector": "files", "end_user": "u"})),
        (
            Some(KEY_A),
            json!({"connector": "files", "end_user": "u", "return_url": "https://evil.example/"}),
        ),
        (
            Some(KEY_A),
            json!({"connector": "files", "end_user": "u", "surprise": 1}),
        ),
        (Some(KEY_B), json!({"connector": "files", "end_user": "u"})),
    ] {
        let (status, error) = w.api(Method::POST, sessions, key, Some(body)).await;
        assert!(status.is_client_error(), "{status}");
        assert_documented(&doc, "post", sessions, status, &error);
    }

    // A completed out-of-band sign-in: the session, the redemption, the token and the metadata.
    let code = w.sign_in_oob(&w.upn("alice")).await;
    let (status, redeemed) = w.redeem(&code).await;
    assert_documented(&doc, "post", "/v1/handoff/redeem", status, &redeemed);
    let (status, reused) = w.redeem(&code).await;
    assert_eq!(reused["error"], "invalid_handoff_code");
    assert_documented(&doc, "post", "/v1/handoff/redeem", status, &reused);
    let id = redeemed["connection_id"].as_str().expect("connection_id");
    let token = "/v1/connections/{connection_id}/token";
    for min_ttl in [None, Some(86_400), Some(86_401)] {
        let (status, answer) = w.token(id, min_ttl).await;
        assert_documented(&doc, "get", token, status, &answer);
    }
    let (status, info) = w
        .api(Method::GET, &format!("/v1/connections/{id}"), Some(KEY_A), None)
        .await;
    assert_documented(&doc, "get", "/v1/connections/{connection_id}", status, &info);
    let (status, other) = w
        .api(Method::GET, &format!("/v1/connections/{id}"), Some(KEY_B), None)
        .await;
    assert_documented(&doc, "get", "/v1/connections/{connection_id}", status, &other);
    let (status, _) = w
        .api(Method::DELETE, &format!("/v1/connections/{id}"), Some(KEY_A), None)
        .await;
    assert!(
        doc["paths"]["/v1/connections/{connection_id}"]["delete"]["responses"][status.as_str()].is_object(),
        "DELETE answered {status}"
    );
    let (status, gone) = w.token(id, None).await;
    assert_documented(&doc, "get", token, status, &gone);

    for text in [
        "AADSTS50105: not assigned. Trace ID: 7c839d05-4806-48f2-ba40-bf4128382500",
        "nothing",
    ] {
        let (status, explained) = w
            .api(Method::POST, "/v1/explain", Some(KEY_A), Some(json!({"text": text})))
            .await;
        assert_documented(&doc, "post", "/v1/explain", status, &explained);
    }

    // A sign-in that needs the tenant's approval: the session's outcome and the page's poll.
    let waiting = w
        .session(json!({"connector": "files", "end_user": "u", "login_hint": w.upn("frank")}))
        .await;
    let authorize = w
        .redirect_of(waiting["connect_url"].as_str().expect("connect_url"))
        .await;
    let callback = w.redirect_of(authorize.as_str()).await;
    let page = w.redirect_of(callback.as_str()).await;
    let (status, polled) = w.poll_session(&waiting).await;
    assert_eq!(polled["status"], "approval_required");
    assert_documented(&doc, "get", "/v1/connect-sessions/{session_id}", status, &polled);
    let approval_status = "/v1/approval/{flow_id}/status";
    let r = w.http.get(format!("{page}/status")).send().await.expect("status");
    let status = r.status();
    assert_documented(&doc, "get", approval_status, status, &r.json().await.expect("JSON"));
    let r = w
        .http
        .get(format!("{}/v1/approval/fl_unknown/status", w.broker.url))
        .send()
        .await
        .expect("status");
    let status = r.status();
    assert_documented(&doc, "get", approval_status, status, &r.json().await.expect("JSON"));
}
