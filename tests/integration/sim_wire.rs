//! Pins `entra-sim`'s wire formats to entra.md by talking to the real simulator over HTTP: token and
//! error bodies, headers and statuses, authorize/adminconsent redirects and error pages, every
//! policy-derived AADSTS outcome, refresh-token rotation, ID-token signatures, discovery, faults and
//! the request counters.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use regex::Regex;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::common::sim::*;

const REDIRECT: &str = "http://127.0.0.1:4000/v1/callback";
const APP_A_SCOPES: &str = "openid profile offline_access Files.Read.All Sites.Read.All";

static GUID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$").unwrap());
static TIMESTAMP: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$").unwrap());
static DESCRIPTION: LazyLock<Regex> = LazyLock::new(|| {
    let guid = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
    Regex::new(&format!(
        r"^AADSTS\d+: .*\r\nTrace ID: {guid}\r\nCorrelation ID: {guid}\r\nTimestamp: \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\dZ$"
    ))
    .unwrap()
});

async fn start() -> Sim {
    Sim::start(standard_config(&[REDIRECT])).await
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// A PKCE verifier and its S256 challenge.
fn pkce() -> (String, String) {
    let verifier = format!("v{}", uuid::Uuid::new_v4().simple()).repeat(2);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

/// What `/authorize` answered.
struct Authorize {
    status: StatusCode,
    location: Option<String>,
    params: HashMap<String, String>,
    body: String,
}

/// Calls `/authorize` for APP_A with PKCE, overriding/adding `extra` (an empty value removes a param).
async fn authorize(sim: &Sim, tenant: &str, challenge: &str, extra: &[(&str, &str)]) -> Authorize {
    let mut params: Vec<(String, String)> = [
        ("client_id", APP_A_CLIENT_ID),
        ("response_type", "code"),
        ("redirect_uri", REDIRECT),
        ("scope", APP_A_SCOPES),
        ("state", "st-123"),
        ("nonce", "n-456"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (key, value) in extra {
        params.retain(|(k, _)| k != key);
        if !value.is_empty() {
            params.push((key.to_string(), value.to_string()));
        }
    }
    let url = format!("{}/{tenant}/oauth2/v2.0/authorize", sim.base_url());
    let response = http().get(&url).query(&params).send().await.unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.text().await.unwrap();
    let params = location
        .as_deref()
        .map(|l| {
            let url = url::Url::parse(l).unwrap();
            url.query_pairs().into_owned().collect()
        })
        .unwrap_or_default();
    Authorize {
        status,
        location,
        params,
        body,
    }
}

/// Signs `login_hint` in to `tenant` and returns (code, verifier).
async fn code_for(sim: &Sim, tenant: &str, login_hint: &str) -> (String, String) {
    let (verifier, challenge) = pkce();
    let result = authorize(sim, tenant, &challenge, &[("login_hint", login_hint)]).await;
    assert_eq!(result.status, StatusCode::FOUND, "{}", result.body);
    let code = result
        .params
        .get("code")
        .unwrap_or_else(|| panic!("no code in {:?}", result.location))
        .clone();
    (code, verifier)
}

/// What `/token` answered.
struct TokenReply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
    json: Value,
}

async fn token(sim: &Sim, tenant: &str, form: &[(&str, &str)]) -> TokenReply {
    let url = format!("{}/{tenant}/oauth2/v2.0/token", sim.base_url());
    let response = http().post(&url).form(form).send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    TokenReply {
        status,
        headers,
        text,
        json,
    }
}

async fn redeem(sim: &Sim, code: &str, verifier: &str) -> TokenReply {
    token(
        sim,
        "organizations",
        &[
            ("client_id", APP_A_CLIENT_ID),
            ("client_secret", APP_A_SECRET),
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
            ("scope", APP_A_SCOPES),
            // MSAL's extra fields must be tolerated.
            ("client_info", "1"),
            ("x-client-SKU", "MSAL.Rust"),
        ],
    )
    .await
}

async fn refresh(sim: &Sim, refresh_token: &str) -> TokenReply {
    token(
        sim,
        "organizations",
        &[
            ("client_id", APP_A_CLIENT_ID),
            ("client_secret", APP_A_SECRET),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// A signed-in Contoso user's first refresh token.
async fn refresh_token_for(sim: &Sim, tenant: &str, upn: &str) -> String {
    let (code, verifier) = code_for(sim, tenant, upn).await;
    let reply = redeem(sim, &code, &verifier).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.json["refresh_token"].as_str().unwrap().to_string()
}

/// Checks the full Entra token-error shape and returns the body.
fn assert_token_error(reply: &TokenReply, status: StatusCode, error: &str, codes: &[u64]) {
    assert_eq!(reply.status, status, "{}", reply.text);
    let body = &reply.json;
    assert_eq!(body["error"], error, "{}", reply.text);
    let got: Vec<u64> = body["error_codes"]
        .as_array()
        .unwrap_or_else(|| panic!("error_codes not an array: {}", reply.text))
        .iter()
        .map(|c| c.as_u64().expect("error_codes are integers"))
        .collect();
    assert_eq!(got, codes, "{}", reply.text);
    let description = body["error_description"].as_str().unwrap();
    assert!(DESCRIPTION.is_match(description), "{description:?}");
    assert!(description.starts_with(&format!("AADSTS{}: ", codes[0])));
    assert!(TIMESTAMP.is_match(body["timestamp"].as_str().unwrap()));
    assert!(GUID.is_match(body["trace_id"].as_str().unwrap()));
    assert!(GUID.is_match(body["correlation_id"].as_str().unwrap()));
    assert_eq!(
        body["error_uri"],
        format!("https://login.microsoftonline.com/error?code={}", codes[0])
    );
    assert_token_headers(&reply.headers);
}

fn assert_token_headers(headers: &HeaderMap) {
    assert_eq!(headers["cache-control"], "no-store, no-cache");
    assert_eq!(headers["pragma"], "no-cache");
    assert!(GUID.is_match(headers["x-ms-request-id"].to_str().unwrap()));
    assert!(headers.contains_key("x-ms-ests-server"));
}

/// Checks an authorize error redirect and returns its parameters.
fn assert_redirect_error(result: &Authorize, error: &str, code: u32) {
    assert_eq!(result.status, StatusCode::FOUND, "{}", result.body);
    let location = result.location.as_deref().unwrap();
    assert!(location.starts_with(REDIRECT), "{location}");
    assert_eq!(result.params["error"], error, "{location}");
    let description = &result.params["error_description"];
    assert!(DESCRIPTION.is_match(description), "{description:?}");
    assert!(description.starts_with(&format!("AADSTS{code}: ")), "{description}");
    assert_eq!(
        result.params["error_uri"],
        format!("https://login.microsoftonline.com/error?code={code}")
    );
    assert_eq!(result.params["state"], "st-123");
    assert!(!result.params.contains_key("code"));
}

fn jwt_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

async fn jwks(sim: &Sim, tenant: &str) -> Value {
    let url = format!("{}/{tenant}/discovery/v2.0/keys", sim.base_url());
    http().get(url).send().await.unwrap().json().await.unwrap()
}

// --------------------------------------------------------------------------------------------
// Success shapes
// --------------------------------------------------------------------------------------------

#[tokio::test]
async fn code_flow_success_matches_entra_wire_format() {
    let sim = start().await;
    let (verifier, challenge) = pkce();
    let result = authorize(&sim, CONTOSO_TID, &challenge, &[]).await;
    assert_eq!(result.status, StatusCode::FOUND);
    let location = result.location.unwrap();
    assert!(location.starts_with(&format!("{REDIRECT}?code=1.A")), "{location}");
    assert_eq!(result.params["state"], "st-123");
    assert!(GUID.is_match(&result.params["session_state"]));
    let code = &result.params["code"];
    assert!(code.len() > 200);

    let reply = redeem(&sim, code, &verifier).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_token_headers(&reply.headers);
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body = &reply.json;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(
        body["scope"],
        "Files.Read.All Sites.Read.All openid profile offline_access"
    );
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    assert!(body["access_token"].as_str().unwrap().len() > 100);
    assert!(body["refresh_token"].as_str().unwrap().starts_with("0.A"));
    assert_eq!(body["id_token"].as_str().unwrap().split('.').count(), 3);
    let client_info = URL_SAFE_NO_PAD.decode(body["client_info"].as_str().unwrap()).unwrap();
    let client_info: Value = serde_json::from_slice(&client_info).unwrap();
    assert_eq!(client_info["utid"], CONTOSO_TID);

    // Field order as Entra emits it.
    let order = [
        "token_type",
        "scope",
        "expires_in",
        "ext_expires_in",
        "access_token",
        "refresh_token",
        "id_token",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|f| reply.text.find(&format!("\"{f}\"")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{}", reply.text);

    // Without offline_access / openid: no refresh token, no ID token.
    let (verifier, challenge) = pkce();
    let result = authorize(&sim, CONTOSO_TID, &challenge, &[("scope", "Files.Read.All")]).await;
    let reply = redeem(&sim, &result.params["code"], &verifier).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert!(reply.json.get("refresh_token").is_none());
    assert!(reply.json.get("id_token").is_none());
}

#[tokio::test]
async fn id_tokens_verify_against_the_published_jwks() {
    let sim = start().await;
    let refresh_token;
    let first_sub;
    {
        let (code, verifier) = code_for(&sim, "contoso.onmicrosoft.com", ALICE).await;
        let reply = redeem(&sim, &code, &verifier).await;
        refresh_token = reply.json["refresh_token"].as_str().unwrap().to_string();
        let id_token = reply.json["id_token"].as_str().unwrap();
        let claims = verify_id_token(&sim, id_token).await;
        assert_eq!(claims["nonce"], "n-456");
        assert_eq!(claims["tid"], CONTOSO_TID);
        assert_eq!(claims["oid"], "0a1b2c3d-1111-4a1b-8c1d-000000000001");
        assert_eq!(claims["preferred_username"], ALICE);
        assert_eq!(claims["name"], "Alice Example");
        assert_eq!(claims["ver"], "2.0");
        for claim in ["rh", "uti", "aio", "sub"] {
            assert!(claims[claim].as_str().is_some_and(|v| !v.is_empty()), "{claim}");
        }
        let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
        assert_eq!(lifetime, 3600);
        assert_eq!(claims["nbf"], claims["iat"]);
        first_sub = claims["sub"].clone();
    }
    // Refresh: a new ID token without nonce, same pairwise subject.
    let reply = refresh(&sim, &refresh_token).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let claims = verify_id_token(&sim, reply.json["id_token"].as_str().unwrap()).await;
    assert!(claims.get("nonce").is_none());
    assert_eq!(claims["sub"], first_sub);
}

/// Verifies signature, `aud`, `iss` (= the key's templated issuer with `tid`) and returns the claims.
async fn verify_id_token(sim: &Sim, id_token: &str) -> Value {
    let header = jwt_part(id_token, 0);
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["alg"], "RS256");
    let keys = jwks(sim, "common").await;
    let key = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .unwrap_or_else(|| panic!("kid {} not in JWKS", header["kid"]));
    let tid = jwt_part(id_token, 1)["tid"].as_str().unwrap().to_string();
    let expected_issuer = key["issuer"].as_str().unwrap().replace("{tenantid}", &tid);
    assert_eq!(expected_issuer, format!("{}/{tid}/v2.0", sim.base_url()));
    let decoding = DecodingKey::from_rsa_components(key["n"].as_str().unwrap(), key["e"].as_str().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[APP_A_CLIENT_ID]);
    validation.set_issuer(&[expected_issuer.as_str()]);
    jsonwebtoken::decode::<Value>(id_token, &decoding, &validation)
        .unwrap_or_else(|e| panic!("ID token does not verify: {e}"))
        .claims
}

#[tokio::test]
async fn discovery_and_jwks_documents() {
    let sim = start().await;
    let base = sim.base_url();
    let url = format!("{base}/contoso.com/v2.0/.well-known/openid-configuration");
    let response = http().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "max-age=86400, private");
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["issuer"], format!("{base}/{CONTOSO_TID}/v2.0"));
    assert_eq!(
        doc["authorization_endpoint"],
        format!("{base}/{CONTOSO_TID}/oauth2/v2.0/authorize")
    );
    assert_eq!(doc["token_endpoint"], format!("{base}/{CONTOSO_TID}/oauth2/v2.0/token"));
    assert_eq!(doc["jwks_uri"], format!("{base}/{CONTOSO_TID}/discovery/v2.0/keys"));
    assert_eq!(doc["id_token_signing_alg_values_supported"], json!(["RS256"]));
    assert_eq!(doc["subject_types_supported"], json!(["pairwise"]));
    assert_eq!(
        doc["response_modes_supported"],
        json!(["query", "fragment", "form_post"])
    );

    let url = format!("{base}/organizations/v2.0/.well-known/openid-configuration");
    let doc: Value = http().get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(doc["issuer"], format!("{base}/{{tenantid}}/v2.0"));
    assert_eq!(doc["token_endpoint"], format!("{base}/organizations/oauth2/v2.0/token"));

    let url = format!("{base}/nowhere.example/v2.0/.well-known/openid-configuration");
    let response = http().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_tenant");
    assert_eq!(body["error_codes"], json!([90002]));

    let response = http()
        .get(format!("{base}/common/discovery/v2.0/keys"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["cache-control"], "max-age=86400, private");
    let keys: Value = response.json().await.unwrap();
    let keys = keys["keys"].as_array().unwrap();
    assert!(keys.len() >= 2);
    for key in keys {
        assert_eq!(key["kty"], "RSA");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["e"], "AQAB");
        assert!(key["n"].as_str().unwrap().len() > 300);
        assert_eq!(key["kid"].as_str().unwrap().len(), 27);
        assert_eq!(key["issuer"], format!("{base}/{{tenantid}}/v2.0"));
    }
    assert_eq!(jwks(&sim, CONTOSO_TID).await["keys"], json!(keys));
}

// --------------------------------------------------------------------------------------------
// Token endpoint errors
// --------------------------------------------------------------------------------------------

#[tokio::test]
async fn client_authentication_errors() {
    let sim = start().await;
    let (code, verifier) = code_for(&sim, CONTOSO_TID, ALICE).await;
    let form = |client_id: &'static str, secret: Option<&'static str>| {
        let mut form = vec![
            ("client_id", client_id),
            ("grant_type", "authorization_code"),
            ("redirect_uri", REDIRECT),
        ];
        if let Some(secret) = secret {
            form.push(("client_secret", secret));
        }
        form
    };

    // Bad secret: 401 invalid_client, correlation id echoes client-request-id.
    let correlation = "5a0ad9b4-6a93-4d0b-9c4e-1f2e3d4c5b6a";
    let url = format!("{}/{CONTOSO_TID}/oauth2/v2.0/token", sim.base_url());
    let mut bad_secret = form(APP_A_CLIENT_ID, Some("wrong"));
    bad_secret.push(("code", "1.AXoAunused"));
    let response = http()
        .post(&url)
        .header("client-request-id", correlation)
        .form(&bad_secret)
        .send()
        .await
        .unwrap();
    let reply = TokenReply {
        status: response.status(),
        headers: response.headers().clone(),
        text: String::new(),
        json: response.json().await.unwrap(),
    };
    assert_token_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client", &[7000215]);
    assert_eq!(reply.json["correlation_id"], correlation);
    assert_eq!(reply.headers["client-request-id"], correlation);

    let mut expired = form(APP_A_CLIENT_ID, Some(APP_A_EXPIRED_SECRET));
    expired.push(("code", "1.AXoAunused"));
    let reply = token(&sim, CONTOSO_TID, &expired).await;
    assert_token_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client", &[7000222]);

    let mut missing = form(APP_A_CLIENT_ID, None);
    missing.push(("code", "1.AXoAunused"));
    let reply = token(&sim, CONTOSO_TID, &missing).await;
    assert_token_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client", &[7000218]);

    let mut unknown = form("99999999-9999-4999-8999-999999999999", Some("x"));
    unknown.push(("code", "1.AXoAunused"));
    let reply = token(&sim, CONTOSO_TID, &unknown).await;
    assert_token_error(&reply, StatusCode::BAD_REQUEST, "unauthorized_client", &[700016]);

    let reply = token(&sim, "nowhere.example", &unknown).await;
    assert_token_error(&reply, StatusCode::BAD_REQUEST, "invalid_tenant", &[90002]);

    // client_secret_basic works too.
    let response = http()
        .post(&url)
        .basic_auth(APP_A_CLIENT_ID, Some(APP_A_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

// --------------------------------------------------------------------------------------------
// Certificate credentials (client assertions)
// --------------------------------------------------------------------------------------------

#[tokio::test]
async fn client_assertions_are_checked_like_entra() {
    use crate::common::certs::{TestCert, claims, header, now};
    use jsonwebtoken::Algorithm::{HS256, PS256, RS256};

    let registered = TestCert::valid();
    let stranger = TestCert::valid();
    let mut config = standard_config(&[REDIRECT]);
    config["apps"][0]["certificates"] = json!([registered.registration()]);
    let sim = Sim::start(config).await;
    let base = sim.base_url().to_string();
    let aud = |tenant: &str| format!("{base}/{tenant}/oauth2/v2.0/token");
    let s256 = || header(RS256, Some(registered.x5t_s256()), None);
    let t = now();
    let good = || claims(APP_A_CLIENT_ID, &aud(CONTOSO_TID), t, t + 300);
    let with = |claims: &Value, changes: Value| {
        let mut claims = claims.clone();
        for (k, v) in changes.as_object().unwrap() {
            claims[k] = v.clone();
        }
        claims
    };
    // Authentication comes before the grant, so a made-up code shows the credential's verdict.
    let post = |segment: &'static str, assertion: String, extra: Vec<(&'static str, String)>| {
        let sim = &sim;
        async move {
            let mut form = vec![
                ("client_id", APP_A_CLIENT_ID.to_string()),
                ("grant_type", "authorization_code".to_string()),
                ("code", "1.AXoAunused".to_string()),
                ("redirect_uri", REDIRECT.to_string()),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
                ),
                ("client_assertion", assertion),
            ];
            for (k, v) in extra {
                form.retain(|(name, _)| *name != k);
                if !v.is_empty() {
                    form.push((k, v));
                }
            }
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            token(sim, segment, &form).await
        }
    };
    let description = |reply: &TokenReply| reply.json["error_description"].as_str().unwrap().to_string();

    // RS256 + x5t#S256 redeems a real code, with no secret.
    let (code, verifier) = code_for(&sim, CONTOSO_TID, ALICE).await;
    let reply = post(
        CONTOSO_TID,
        registered.sign(&s256(), &good()),
        vec![("code", code), ("code_verifier", verifier)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let refresh_token = reply.json["refresh_token"].as_str().unwrap().to_string();

    // Legacy PS256 + x5t (SHA-1), at the domain path, with aud naming the domain or the GUID.
    for audience in [aud("contoso.com"), aud(CONTOSO_TID)] {
        let assertion = registered.sign(
            &header(PS256, None, Some(registered.x5t())),
            &claims(APP_A_CLIENT_ID, &audience, t, t + 300),
        );
        let form = [
            ("client_id", APP_A_CLIENT_ID),
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token.as_str()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ];
        let reply = token(&sim, "contoso.com", &form).await;
        assert_eq!(reply.status, StatusCode::OK, "aud {audience}: {}", reply.text);
    }

    // A certificate the app does not have: 700027, naming the thumbprint it was sent.
    let reply = post(
        CONTOSO_TID,
        stranger.sign(&header(RS256, Some(stranger.x5t_s256()), None), &good()),
        vec![],
    )
    .await;
    assert_token_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client", &[700027]);
    let text = description(&reply);
    assert!(
        text.contains(
            "is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '"
        ) && text.contains(&stranger.sha256_hex())
            && text.contains(&format!("configured keys for app Id '{APP_A_CLIENT_ID}'")),
        "{text}"
    );
    // The registered thumbprint, but another key signed: 700027, signature mismatch.
    let reply = post(CONTOSO_TID, stranger.sign(&s256(), &good()), vec![]).await;
    assert_token_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client", &[700027]);
    let text = description(&reply);
    assert!(
        text.contains("Client assertion contains an invalid signature. [Reason - The provided signature value did not match the expected signature value., Thumbprint of key used by client: '")
            && text.contains(&registered.sha256_hex())
            && text.contains("Found key 'Start="),
        "{text}"
    );

    // Outside its time window (expired, or not yet valid): 700024 with Entra's wording.
    let iso = |secs: i64| {
        time::OffsetDateTime::from_unix_timestamp(secs)
            .unwrap()
            .format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].0000000Z"
            ))
            .unwrap()
    };
    for (nbf, exp) in [(t - 3_600, t - 1_800), (t + 3_600, t + 3_900)] {
        let reply = post(
            CONTOSO_TID,
            registered.sign(&s256(), &with(&good(), json!({"nbf": nbf, "exp": exp}))),
            vec![],
        )
        .await;
        assert_token_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client", &[700024]);
        let text = description(&reply);
        assert!(
            text.starts_with("AADSTS700024: Client assertion is not within its valid time range. Current time: ")
                && text.contains(&format!(", assertion valid from {}, expiry time of assertion {}. Review the documentation at https://learn.microsoft.com/entra/identity-platform/certificate-credentials .", iso(nbf), iso(exp))),
            "{text}"
        );
    }
    // A few seconds of skew are tolerated.
    let (code, verifier) = code_for(&sim, CONTOSO_TID, ALICE).await;
    let skewed = with(&good(), json!({"nbf": t + 60}));
    let reply = post(
        CONTOSO_TID,
        registered.sign(&s256(), &skewed),
        vec![("code", code), ("code_verifier", verifier)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);

    // aud must be this token endpoint; iss and sub the client id.
    for (changes, codes) in [
        (json!({"aud": aud(FABRIKAM_TID)}), [700023]),
        (json!({"aud": aud("organizations")}), [700023]),
        (json!({"aud": [aud(CONTOSO_TID)]}), [700023]),
        (json!({"iss": APP_B_CLIENT_ID}), [50012]),
        (json!({"sub": APP_B_CLIENT_ID}), [50012]),
        (json!({"exp": null}), [50027]),
    ] {
        let reply = post(CONTOSO_TID, registered.sign(&s256(), &with(&good(), changes)), vec![]).await;
        assert_token_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client", &codes);
    }
    let reply = post(
        CONTOSO_TID,
        registered.sign(&header(RS256, None, None), &good()),
        vec![],
    )
    .await;
    assert_token_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client", &[50027]);
    assert!(description(&reply).contains("No certificate thumbprint specified in token header."));
    let hs = header(HS256, Some(registered.x5t_s256()), None);
    let hs256 = jsonwebtoken::encode(&hs, &good(), &jsonwebtoken::EncodingKey::from_secret(b"k")).unwrap();
    for assertion in [hs256, "not-a-jwt".to_string(), "a.b.c".to_string()] {
        let reply = post(CONTOSO_TID, assertion, vec![]).await;
        assert_token_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client", &[50027]);
    }

    // The request's shape: the assertion type, and exactly one credential.
    let assertion = registered.sign(&s256(), &good());
    let reply = post(
        CONTOSO_TID,
        assertion.clone(),
        vec![(
            "client_assertion_type",
            "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
        )],
    )
    .await;
    assert_token_error(&reply, StatusCode::BAD_REQUEST, "invalid_request", &[90011]);
    let reply = post(
        CONTOSO_TID,
        assertion.clone(),
        vec![("client_assertion_type", String::new())],
    )
    .await;
    assert_token_error(&reply, StatusCode::BAD_REQUEST, "invalid_request", &[900144]);
    let reply = post(
        CONTOSO_TID,
        assertion.clone(),
        vec![("client_secret", APP_A_SECRET.into())],
    )
    .await;
    assert_token_error(&reply, StatusCode::BAD_REQUEST, "invalid_request", &[9002313]);

    // Entra stops accepting a certificate when it expires (here: the simulator clock passes it).
    sim.advance_clock(2 * 365 * 86_400).await;
    let reply = post(CONTOSO_TID, assertion, vec![]).await;
    assert_token_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client", &[700027]);
    assert!(
        description(&reply).contains("[Reason - The key used is expired."),
        "{}",
        reply.text
    );

    // A registration that is not an RSA certificate is refused when the world is loaded.
    let mut config = standard_config(&[REDIRECT]);
    config["apps"][0]["certificates"] = json!([{ "pem": registered.key_pem }]);
    let response = http()
        .put(format!("{base}/_sim/config"))
        .json(&config)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("certificates[0]"));
}

#[tokio::test]
async fn authorization_code_errors() {
    let sim = start().await;
    let (code, verifier) = code_for(&sim, CONTOSO_TID, ALICE).await;
    let attempt =
        |code: String, redirect: &'static str, verifier: Option<String>, app: (&'static str, &'static str)| {
            let sim = &sim;
            async move {
                let mut form = vec![
                    ("client_id", app.0.to_string()),
                    ("client_secret", app.1.to_string()),
                    ("grant_type", "authorization_code".to_string()),
                    ("code", code),
                    ("redirect_uri", redirect.to_string()),
                ];
                if let Some(verifier) = verifier {
                    form.push(("code_verifier", verifier));
                }
                let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
                token(sim, CONTOSO_TID, &form).await
            }
        };
    let app_a = (APP_A_CLIENT_ID, APP_A_SECRET);

    let reply = attempt(format!("{code}x"), REDIRECT, Some(verifier.clone()), app_a).await;
    assert_token_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant", &[70000]);
    let reply = attempt(code.clone(), REDIRECT, Some("wrong-verifier".repeat(4)), app_a).await;
    assert_token_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant", &[50148]);
    let reply = attempt(code.clone(), REDIRECT, None, app_a).await;
    assert_token_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant", &[50148]);
    let reply = attempt(
        code.clone(),
        "http://127.0.0.1:4000/other",
        Some(verifier.clone()),
        app_a,
    )
    .await;
    assert_token_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant", &[70002, 50011]);
    assert!(
        reply.json["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS70002: Error validating credentials. AADSTS50011: ")
    );
    let reply = attempt(
        code.clone(),
        REDIRECT,
        Some(verifier.clone()),
        (APP_B_CLIENT_ID, APP_B_SECRET),
    )
    .await;
    assert_token_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant", &[70000]);

    // Failed attempts do not consume the code; the first success does.
    let reply = attempt(code.clone(), REDIRECT, Some(verifier.clone()), app_a).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let reply = attempt(code, REDIRECT, Some(verifier), app_a).await;
    assert_token_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant", &[54005]);

    let (code, verifier) = code_for(&sim, CONTOSO_TID, ALICE).await;
    sim.advance_clock(601).await;
    let reply = attempt(code, REDIRECT, Some(verifier), app_a).await;
    assert_token_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant", &[70008]);

    let reply = token(
        &sim,
        CONTOSO_TID,
        &[
            ("client_id", APP_A_CLIENT_ID),
            ("client_secret", APP_A_SECRET),
            ("grant_type", "password"),
        ],
    )
    .await;
    assert_token_error(&reply, StatusCode::BAD_REQUEST, "unsupported_grant_type", &[70003]);
}

#[tokio::test]
async fn refresh_tokens_rotate_with_a_grace_period() {
    let sim = start().await;
    let first = refresh_token_for(&sim, CONTOSO_TID, ALICE).await;
    let reply = refresh(&sim, &first).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let second = reply.json["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    // The replaced token still works within the grace period, minting yet another one.
    let reply = refresh(&sim, &first).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let third = reply.json["refresh_token"].as_str().unwrap().to_string();
    assert!(third != first && third != second);
    assert_eq!(sim.token_grants("refresh_token").await, 2);

    sim.advance_clock(86_401).await;
    let reply = refresh(&sim, &first).await;
    assert_token_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant", &[70000]);
    assert_eq!(reply.json["suberror"], "bad_token");
    // Never-used tokens are unaffected.
    let reply = refresh(&sim, &third).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);

    let reply = refresh(&sim, "garbage").await;
    assert_token_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant", &[9002313]);
    let reply = refresh(&sim, &format!("0.AXoA{}", "A".repeat(100))).await;
    assert_token_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant", &[70000]);
}

#[tokio::test]
async fn refresh_token_inactivity_and_revocation() {
    let sim = start().await;
    let idle = refresh_token_for(&sim, CONTOSO_TID, ALICE).await;
    sim.advance_clock(7_776_001).await;
    let reply = refresh(&sim, &idle).await;
    assert_token_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant", &[700082]);
    assert_eq!(reply.json["suberror"], "bad_token");
    assert!(
        reply.json["error_description"]
            .as_str()
            .unwrap()
            .contains("was inactive for 90.00:00:00.")
    );

    let revoked = refresh_token_for(&sim, CONTOSO_TID, ALICE).await;
    sim.revoke_user(ALICE).await;
    let reply = refresh(&sim, &revoked).await;
    assert_token_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant", &[50173]);
    // A fresh sign-in after the revocation works.
    let fresh = refresh_token_for(&sim, CONTOSO_TID, ALICE).await;
    assert_eq!(refresh(&sim, &fresh).await.status, StatusCode::OK);
}

#[tokio::test]
async fn policy_changes_break_existing_refresh_tokens() {
    let sim = start().await;
    let rt = refresh_token_for(&sim, CONTOSO_TID, ALICE).await;

    // MFA newly required; the RT came from a sign-in without MFA.
    sim.patch_tenant(CONTOSO_TID, json!({ "mfa_required": true })).await;
    let reply = refresh(&sim, &rt).await;
    assert_token_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant", &[50076]);
    assert_eq!(reply.json["suberror"], "basic_action");
    let claims: Value = serde_json::from_str(reply.json["claims"].as_str().unwrap()).unwrap();
    assert_eq!(claims["access_token"]["capolids"]["essential"], true);
    // An interactive sign-in now includes MFA, and its RT keeps working.
    let mfa_rt = refresh_token_for(&sim, CONTOSO_TID, ALICE).await;
    assert_eq!(refresh(&sim, &mfa_rt).await.status, StatusCode::OK);
    sim.patch_tenant(CONTOSO_TID, json!({ "mfa_required": false })).await;

    sim.patch_tenant(CONTOSO_TID, json!({ "conditional_access_block": true }))
        .await;
    let reply = refresh(&sim, &rt).await;
    assert_token_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant", &[53003]);
    assert_eq!(reply.json["suberror"], "message_only");
    sim.patch_tenant(CONTOSO_TID, json!({ "conditional_access_block": false }))
        .await;

    // Withdrawing consent (admin and user grants) → 65001 consent_required.
    sim.delete_grant(CONTOSO_TID, APP_A_CLIENT_ID).await;
    let reply = refresh(&sim, &rt).await;
    assert_token_error(&reply, StatusCode::BAD_REQUEST, "invalid_grant", &[65001]);
    assert_eq!(reply.json["suberror"], "consent_required");
    // An admin grant restores it without a new sign-in.
    sim.put_grant(CONTOSO_TID, APP_A_CLIENT_ID, &["Files.Read.All", "Sites.Read.All"])
        .await;
    assert_eq!(refresh(&sim, &rt).await.status, StatusCode::OK);
}

// --------------------------------------------------------------------------------------------
// Authorize outcomes
// --------------------------------------------------------------------------------------------

#[tokio::test]
async fn authorize_refuses_untrusted_requests_on_its_own_page() {
    let sim = start().await;
    let (_, challenge) = pkce();
    // (tenant segment, parameter overrides, expected AADSTS code)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u32);
    let cases: [Case; 4] = [
        ("nowhere.example", &[], 90002),
        (
            CONTOSO_TID,
            &[("client_id", "99999999-9999-4999-8999-999999999999")],
            700016,
        ),
        (CONTOSO_TID, &[("redirect_uri", "https://evil.example/cb")], 50011),
        (CONTOSO_TID, &[("client_id", "")], 900144),
    ];
    for (tenant, extra, code) in cases {
        let result = authorize(&sim, tenant, &challenge, extra).await;
        assert_eq!(result.status, StatusCode::BAD_REQUEST);
        assert!(result.location.is_none());
        assert!(result.body.contains("Sorry, but we"), "{}", result.body);
        assert!(result.body.contains(&format!("AADSTS{code}: ")), "{}", result.body);
        assert!(result.body.contains("Correlation Id:"));
        assert!(result.body.contains("Trace ID: "));
    }
}

#[tokio::test]
async fn authorize_error_redirects_are_encoded_like_entra() {
    let sim = start().await;
    let (_, challenge) = pkce();
    let result = authorize(&sim, CONTOSO_TID, &challenge, &[("login_hint", BOB)]).await;
    assert_redirect_error(&result, "consent_required", 65004);
    assert_eq!(result.params["error_subcode"], "cancel");
    let location = result.location.unwrap();
    assert!(
        location.contains("error_description=AADSTS65004%3a+User+declined"),
        "{location}"
    );
    assert!(location.contains("%0d%0aTrace+ID%3a+"), "{location}");
    assert!(location.contains("error_uri=https%3a%2f%2flogin.microsoftonline.com%2ferror%3fcode%3d65004"));

    let result = authorize(&sim, CONTOSO_TID, &challenge, &[("response_type", "token")]).await;
    assert_redirect_error(&result, "unsupported_response_type", 70005);
    let result = authorize(&sim, CONTOSO_TID, &challenge, &[("response_type", "code id_token")]).await;
    assert_redirect_error(&result, "unsupported_response_type", 700054);
    let result = authorize(&sim, CONTOSO_TID, "too-short", &[]).await;
    assert_redirect_error(&result, "invalid_request", 501491);
    let bad_alphabet = "*".repeat(43);
    let result = authorize(&sim, CONTOSO_TID, &bad_alphabet, &[]).await;
    assert_redirect_error(&result, "invalid_request", 501491);
    let result = authorize(&sim, CONTOSO_TID, &challenge, &[("scope", "")]).await;
    assert_redirect_error(&result, "invalid_request", 900144);
    let result = authorize(
        &sim,
        CONTOSO_TID,
        &challenge,
        &[("login_hint", "nobody@contoso.onmicrosoft.com"), ("prompt", "none")],
    )
    .await;
    assert_redirect_error(&result, "login_required", 50058);

    // form_post delivers the same parameters as an auto-submitting form.
    let result = authorize(&sim, CONTOSO_TID, &challenge, &[("response_mode", "form_post")]).await;
    assert_eq!(result.status, StatusCode::OK);
    assert!(result.body.contains(&format!("action=\"{REDIRECT}\"")));
    assert!(result.body.contains("name=\"code\" value=\"1.A"));
    assert!(result.body.contains("name=\"state\" value=\"st-123\""));
}

#[tokio::test]
async fn authorize_outcomes_follow_tenant_policy() {
    let sim = start().await;
    let (_, challenge) = pkce();
    let app_b = [("client_id", APP_B_CLIENT_ID), ("scope", "openid Mail.Read")];

    let result = authorize(&sim, CONTOSO_TID, &challenge, &[("login_hint", DAVE)]).await;
    assert_redirect_error(&result, "access_denied", 50057);
    let result = authorize(
        &sim,
        CONTOSO_TID,
        &challenge,
        &[app_b[0], app_b[1], ("login_hint", ERIN)],
    )
    .await;
    assert_redirect_error(&result, "access_denied", 50105);
    // Alice is assigned, but apps requiring assignment always need admin consent.
    let result = authorize(
        &sim,
        CONTOSO_TID,
        &challenge,
        &[app_b[0], app_b[1], ("login_hint", ALICE)],
    )
    .await;
    assert_redirect_error(&result, "access_denied", 90094);
    sim.put_grant(CONTOSO_TID, APP_B_CLIENT_ID, &["Mail.Read"]).await;
    let result = authorize(
        &sim,
        CONTOSO_TID,
        &challenge,
        &[app_b[0], app_b[1], ("login_hint", ALICE)],
    )
    .await;
    assert!(result.params.contains_key("code"), "{:?}", result.location);

    // Admin-only permission: users can't consent, admins can (for themselves).
    let admin_only = ("scope", "openid User.Read.All");
    let result = authorize(&sim, CONTOSO_TID, &challenge, &[admin_only, ("login_hint", ALICE)]).await;
    assert_redirect_error(&result, "access_denied", 90094);
    let result = authorize(&sim, CONTOSO_TID, &challenge, &[admin_only, ("login_hint", CAROL)]).await;
    assert!(result.params.contains_key("code"), "{:?}", result.location);

    // Consent disabled: 90094 without the workflow, 90095 with it.
    let result = authorize(&sim, FABRIKAM_TID, &challenge, &[]).await;
    assert_redirect_error(&result, "access_denied", 90094);
    let result = authorize(&sim, "northwind.onmicrosoft.com", &challenge, &[]).await;
    assert_redirect_error(&result, "access_denied", 90095);
    // Fiona (admin) consents for herself only.
    let result = authorize(&sim, FABRIKAM_TID, &challenge, &[("login_hint", FIONA)]).await;
    assert!(result.params.contains_key("code"), "{:?}", result.location);
    let result = authorize(&sim, FABRIKAM_TID, &challenge, &[("login_hint", FRANK)]).await;
    assert_redirect_error(&result, "access_denied", 90094);

    // prompt=none: consent missing → consent_required 65001; MFA needed → interaction_required 50076.
    let silent = [("login_hint", NINA), ("prompt", "none")];
    let result = authorize(&sim, "organizations", &challenge, &silent).await;
    assert_redirect_error(&result, "consent_required", 65001);
    sim.patch_tenant(NORTHWIND_TID, json!({ "mfa_required": true })).await;
    let result = authorize(&sim, "organizations", &challenge, &silent).await;
    assert_redirect_error(&result, "interaction_required", 50076);
    sim.patch_tenant(CONTOSO_TID, json!({ "conditional_access_block": true }))
        .await;
    let result = authorize(&sim, CONTOSO_TID, &challenge, &[]).await;
    assert_redirect_error(&result, "access_denied", 53003);

    // Low-impact policy: verified APP_A may be consented to for low-impact permissions only.
    sim.patch_tenant(
        FABRIKAM_TID,
        json!({
            "user_consent": "low_impact_verified",
            "low_impact_permissions": ["Files.Read.All", "Sites.Read.All"]
        }),
    )
    .await;
    let result = authorize(&sim, FABRIKAM_TID, &challenge, &[("login_hint", FRANK)]).await;
    assert!(result.params.contains_key("code"), "{:?}", result.location);
    let result = authorize(
        &sim,
        FABRIKAM_TID,
        &challenge,
        &[("login_hint", FRANK), ("scope", "openid Mail.Read")],
    )
    .await;
    assert_redirect_error(&result, "access_denied", 90094);
}

#[tokio::test]
async fn admin_consent_endpoint_shapes() {
    let mut config = standard_config(&[REDIRECT]);
    config["tenants"][2]["users"][1]["declines_consent"] = json!(true); // noah
    let sim = Sim::start(config).await;
    let consent = |tenant: &'static str, hint: Option<&'static str>| {
        let sim = &sim;
        async move {
            let mut params = vec![
                ("client_id", APP_A_CLIENT_ID),
                ("redirect_uri", REDIRECT),
                ("state", "ac-1"),
                ("scope", "https://graph.microsoft.com/Files.Read.All Sites.Read.All"),
            ];
            if let Some(hint) = hint {
                params.push(("login_hint", hint));
            }
            let url = format!("{}/{tenant}/v2.0/adminconsent", sim.base_url());
            let response = http().get(url).query(&params).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::FOUND);
            let location = response.headers()["location"].to_str().unwrap().to_string();
            let pairs: Vec<(String, String)> = url::Url::parse(&location).unwrap().query_pairs().into_owned().collect();
            (location, pairs)
        }
    };
    let keys = |pairs: &[(String, String)]| pairs.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();

    // Non-admin: error without tenant.
    let (location, pairs) = consent(FABRIKAM_TID, Some(FRANK)).await;
    assert_eq!(
        keys(&pairs),
        ["error", "error_description", "error_uri", "admin_consent", "state"]
    );
    assert_eq!(pairs[0].1, "access_denied");
    assert!(pairs[1].1.starts_with("AADSTS90094: "));
    assert!(DESCRIPTION.is_match(&pairs[1].1));
    assert!(location.ends_with('#'));

    // Admin (first admin by default): tenant-wide grant.
    let (_, pairs) = consent(FABRIKAM_TID, None).await;
    assert_eq!(keys(&pairs), ["admin_consent", "tenant", "scope", "state"]);
    assert_eq!(pairs[0].1, "True");
    assert_eq!(pairs[1].1, FABRIKAM_TID);
    assert_eq!(
        pairs[2].1,
        "https://graph.microsoft.com/Files.Read.All https://graph.microsoft.com/Sites.Read.All"
    );
    assert_eq!(pairs[3].1, "ac-1");
    // Now Frank signs in without any consent prompt.
    let (_, challenge) = pkce();
    let result = authorize(&sim, FABRIKAM_TID, &challenge, &[("login_hint", FRANK)]).await;
    assert!(result.params.contains_key("code"), "{:?}", result.location);

    // Admin pressing Cancel: no description.
    let (_, pairs) = consent(NORTHWIND_TID, Some(NOAH)).await;
    assert_eq!(
        pairs,
        [
            ("error".to_string(), "access_denied".to_string()),
            ("error_subcode".into(), "cancel".into()),
            ("admin_consent".into(), "True".into()),
            ("state".into(), "ac-1".into()),
        ]
    );

    // Untrusted redirect: Entra's page.
    let url = format!("{}/{CONTOSO_TID}/v2.0/adminconsent", sim.base_url());
    let response = http()
        .get(url)
        .query(&[
            ("client_id", APP_A_CLIENT_ID),
            ("redirect_uri", "https://evil.example"),
            ("scope", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("AADSTS50011"));
}

// --------------------------------------------------------------------------------------------
// Throttling, faults, stats
// --------------------------------------------------------------------------------------------

#[tokio::test]
async fn per_client_throttling() {
    let mut config = standard_config(&[REDIRECT]);
    config["throttle_token_requests_per_minute"] = json!(2);
    let sim = Sim::start(config).await;
    let rt = refresh_token_for(&sim, CONTOSO_TID, ALICE).await; // 1st request
    assert_eq!(refresh(&sim, &rt).await.status, StatusCode::OK); // 2nd
    let reply = refresh(&sim, &rt).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.text, "Too Many Requests");
    let retry_after: u64 = reply.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_token_headers(&reply.headers);
    sim.advance_clock(61).await;
    assert_eq!(refresh(&sim, &rt).await.status, StatusCode::OK);
    assert_eq!(sim.stats().await["token_errors"]["429"], 1);
}

#[tokio::test]
async fn injected_faults() {
    let sim = start().await;
    let rt = refresh_token_for(&sim, CONTOSO_TID, ALICE).await;
    sim.reset_stats().await;

    sim.fault(json!({"endpoint": "token", "kind": "unavailable", "count": 1}))
        .await;
    let reply = refresh(&sim, &rt).await;
    assert_token_error(
        &reply,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        &[90033],
    );
    assert_eq!(refresh(&sim, &rt).await.status, StatusCode::OK, "count=1 is used up");

    sim.fault(json!({"endpoint": "any", "kind": "server_error", "count": 1}))
        .await;
    let reply = refresh(&sim, &rt).await;
    assert_token_error(&reply, StatusCode::INTERNAL_SERVER_ERROR, "server_error", &[90041]);

    sim.fault(json!({"endpoint": "token", "kind": "throttle", "retry_after_secs": 7, "count": 1}))
        .await;
    let reply = refresh(&sim, &rt).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.headers["retry-after"], "7");
    assert_eq!(reply.text, "Too Many Requests");

    sim.fault(json!({"endpoint": "token", "kind": "drop", "count": 1}))
        .await;
    let url = format!("{}/organizations/oauth2/v2.0/token", sim.base_url());
    let dropped = http()
        .post(url)
        .form(&[("grant_type", "refresh_token"), ("client_id", APP_A_CLIENT_ID)])
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    let error = dropped.expect_err("the connection should close without a response");
    assert!(!error.is_timeout(), "dropped, not hung: {error}");

    sim.fault(json!({"endpoint": "token", "kind": "latency", "latency_ms": 300, "count": 1}))
        .await;
    let started = Instant::now();
    assert_eq!(refresh(&sim, &rt).await.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));

    // grant_type filter: code redemptions pass, refreshes fail; until cleared.
    sim.fault(json!({"endpoint": "token", "grant_type": "refresh_token", "kind": "unavailable"}))
        .await;
    let rt2 = refresh_token_for(&sim, CONTOSO_TID, ALICE).await;
    assert_eq!(refresh(&sim, &rt2).await.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refresh(&sim, &rt2).await.status, StatusCode::SERVICE_UNAVAILABLE);
    sim.clear_faults().await;
    assert_eq!(refresh(&sim, &rt2).await.status, StatusCode::OK);

    sim.fault(json!({"endpoint": "keys", "kind": "unavailable", "count": 1}))
        .await;
    let response = http()
        .get(format!("{}/common/discovery/v2.0/keys", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);

    let stats = sim.stats().await;
    assert_eq!(stats["requests"]["token"], 10, "{stats}");
    assert_eq!(stats["requests"]["authorize"], 1);
    assert_eq!(stats["requests"]["keys"], 1);
    assert_eq!(stats["token_grants"]["refresh_token"], 9);
    assert_eq!(stats["token_grants"]["authorization_code"], 1);
    assert_eq!(stats["token_errors"]["90033"], 3);
    assert_eq!(stats["token_errors"]["90041"], 1);
    assert_eq!(stats["token_errors"]["429"], 1);
    sim.reset_stats().await;
    assert_eq!(sim.stats().await["requests"]["token"], 0);
}

#[tokio::test]
async fn injected_id_token_faults() {
    let sim = start().await;
    let rt = refresh_token_for(&sim, CONTOSO_TID, ALICE).await;
    let published: Vec<Value> = jwks(&sim, "common").await["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].clone())
        .collect();

    sim.fault(json!({"endpoint": "token", "kind": "id_token_unknown_key", "count": 1}))
        .await;
    let id_token = refresh(&sim, &rt).await.json["id_token"].as_str().unwrap().to_string();
    let kid = jwt_part(&id_token, 0)["kid"].clone();
    assert_eq!(kid.as_str().unwrap().len(), 27);
    assert!(!published.contains(&kid));

    sim.fault(json!({"endpoint": "token", "kind": "id_token_wrong_tenant", "count": 1}))
        .await;
    let id_token = refresh(&sim, &rt).await.json["id_token"].as_str().unwrap().to_string();
    let claims = jwt_part(&id_token, 1);
    assert_eq!(claims["tid"], CONTOSO_TID);
    assert_ne!(claims["iss"], format!("{}/{CONTOSO_TID}/v2.0", sim.base_url()));

    sim.fault(json!({"endpoint": "token", "kind": "id_token_expired", "count": 1}))
        .await;
    let id_token = refresh(&sim, &rt).await.json["id_token"].as_str().unwrap().to_string();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(jwt_part(&id_token, 1)["exp"].as_i64().unwrap() < now);

    // Faults used up: the next ID token verifies.
    let id_token = refresh(&sim, &rt).await.json["id_token"].as_str().unwrap().to_string();
    verify_id_token(&sim, &id_token).await;
}

// --------------------------------------------------------------------------------------------
// Client credentials (app-only tokens)
// --------------------------------------------------------------------------------------------

const GRAPH_DEFAULT: &str = "https://graph.microsoft.com/.default";

/// A client-credentials request for `client_id` in `tenant`, with `extra` overriding or adding
/// fields (an empty value removes one).
async fn app_token(sim: &Sim, tenant: &str, client_id: &str, extra: &[(&str, &str)]) -> TokenReply {
    let secret = if client_id == APP_B_CLIENT_ID {
        APP_B_SECRET
    } else {
        APP_A_SECRET
    };
    let mut form = vec![
        ("client_id", client_id),
        ("client_secret", secret),
        ("grant_type", "client_credentials"),
        ("scope", GRAPH_DEFAULT),
    ];
    for (key, value) in extra {
        form.retain(|(k, _)| k != key);
        if !value.is_empty() {
            form.push((key, value));
        }
    }
    token(sim, tenant, &form).await
}

/// The JSON object keys of `text` in the order they appear (top level only).
fn key_order(text: &str, keys: &[&str]) -> Vec<usize> {
    keys.iter()
        .map(|k| {
            text.find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k} missing in {text}"))
        })
        .collect()
}

/// Asserts Entra's app-only success body: exactly these four fields, in this order.
fn assert_app_token(reply: &TokenReply) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let body = reply.json.as_object().unwrap();
    let mut names: Vec<&str> = body.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["access_token", "expires_in", "ext_expires_in", "token_type"]);
    let at = key_order(
        &reply.text,
        &["token_type", "expires_in", "ext_expires_in", "access_token"],
    );
    assert!(at.windows(2).all(|w| w[0] < w[1]), "field order: {}", reply.text);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    assert!(body["access_token"].as_str().unwrap().len() > 100);
    assert_token_headers(&reply.headers);
}

/// Asserts AADSTS700016 in Entra's error format for an app without a service principal.
fn assert_no_service_principal(reply: &TokenReply, client_id: &str, directory: &str) {
    assert_token_error(reply, StatusCode::BAD_REQUEST, "unauthorized_client", &[700016]);
    let description = reply.json["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!(
            "AADSTS700016: Application with identifier '{client_id}' was not found in the directory '{directory}'."
        )),
        "{description}"
    );
    assert!(
        description.contains("consented to by any user in the tenant"),
        "{description}"
    );
    let at = key_order(
        &reply.text,
        &[
            "error",
            "error_description",
            "error_codes",
            "timestamp",
            "trace_id",
            "correlation_id",
            "error_uri",
        ],
    );
    assert!(at.windows(2).all(|w| w[0] < w[1]), "field order: {}", reply.text);
}

#[tokio::test]
async fn client_credentials_answer_only_where_the_app_has_a_service_principal() {
    let sim = start().await;

    // Nobody consented in Fabrikam: the app is not in its directory.
    let reply = app_token(&sim, FABRIKAM_TID, APP_A_CLIENT_ID, &[]).await;
    assert_no_service_principal(&reply, APP_A_CLIENT_ID, "Fabrikam");
    // By domain as well as by GUID.
    let reply = app_token(&sim, "fabrikam.onmicrosoft.com", APP_A_CLIENT_ID, &[]).await;
    assert_no_service_principal(&reply, APP_A_CLIENT_ID, "Fabrikam");

    // An admin consents through /adminconsent: now Entra issues app-only tokens there.
    let url = format!("{}/{FABRIKAM_TID}/v2.0/adminconsent", sim.base_url());
    let response = http()
        .get(url)
        .query(&[
            ("client_id", APP_A_CLIENT_ID),
            ("redirect_uri", REDIRECT),
            ("state", "ac-1"),
            ("scope", "https://graph.microsoft.com/Files.Read.All"),
        ])
        .send()
        .await
        .unwrap();
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(location.contains("admin_consent=True&tenant="), "{location}");
    assert_app_token(&app_token(&sim, FABRIKAM_TID, APP_A_CLIENT_ID, &[]).await);
    assert_app_token(&app_token(&sim, "fabrikam.onmicrosoft.com", APP_A_CLIENT_ID, &[]).await);
    // Per app: the other app is still unknown there.
    let reply = app_token(&sim, FABRIKAM_TID, APP_B_CLIENT_ID, &[]).await;
    assert_no_service_principal(&reply, APP_B_CLIENT_ID, "Fabrikam");

    // A user signing in (and consenting) in Contoso creates the service principal too.
    let reply = app_token(&sim, CONTOSO_TID, APP_A_CLIENT_ID, &[]).await;
    assert_no_service_principal(&reply, APP_A_CLIENT_ID, "Contoso");
    code_for(&sim, CONTOSO_TID, ALICE).await;
    assert_app_token(&app_token(&sim, CONTOSO_TID, APP_A_CLIENT_ID, &[]).await);

    // An admin grant set through the control API does as well, and the service principal
    // outlives a withdrawn grant, as Entra's enterprise application does.
    let reply = app_token(&sim, NORTHWIND_TID, APP_A_CLIENT_ID, &[]).await;
    assert_no_service_principal(&reply, APP_A_CLIENT_ID, "Northwind Traders");
    sim.put_grant(NORTHWIND_TID, APP_A_CLIENT_ID, &["Files.Read.All"]).await;
    assert_app_token(&app_token(&sim, NORTHWIND_TID, APP_A_CLIENT_ID, &[]).await);
    sim.delete_grant(NORTHWIND_TID, APP_A_CLIENT_ID).await;
    assert_app_token(&app_token(&sim, NORTHWIND_TID, APP_A_CLIENT_ID, &[]).await);

    // Any one resource's .default works (only the service principal is checked).
    let reply = app_token(
        &sim,
        FABRIKAM_TID,
        APP_A_CLIENT_ID,
        &[("scope", "https://contoso.sharepoint.com/.default")],
    )
    .await;
    assert_app_token(&reply);
    assert_eq!(sim.token_grants("client_credentials").await, 11);
}

#[tokio::test]
async fn client_credentials_authenticate_the_client_like_the_code_grant() {
    use crate::common::certs::{TestCert, claims, header, now};

    let registered = TestCert::valid();
    let mut config = standard_config(&[REDIRECT]);
    config["apps"][0]["certificates"] = json!([registered.registration()]);
    let sim = Sim::start(config).await;
    sim.put_grant(FABRIKAM_TID, APP_A_CLIENT_ID, &["Files.Read.All"]).await;

    let reply = app_token(&sim, FABRIKAM_TID, APP_A_CLIENT_ID, &[("client_secret", "wrong")]).await;
    assert_token_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client", &[7000215]);
    // Client authentication comes first, as for the other grants: a bad secret is told so even
    // where the app has no service principal.
    let reply = app_token(&sim, CONTOSO_TID, APP_A_CLIENT_ID, &[("client_secret", "wrong")]).await;
    assert_token_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client", &[7000215]);
    let reply = app_token(
        &sim,
        FABRIKAM_TID,
        APP_A_CLIENT_ID,
        &[("client_secret", APP_A_EXPIRED_SECRET)],
    )
    .await;
    assert_token_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client", &[7000222]);
    let reply = app_token(&sim, FABRIKAM_TID, APP_A_CLIENT_ID, &[("client_secret", "")]).await;
    assert_token_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client", &[7000218]);
    let unknown = "99999999-9999-4999-8999-999999999999";
    let reply = app_token(&sim, FABRIKAM_TID, unknown, &[]).await;
    assert_token_error(&reply, StatusCode::BAD_REQUEST, "unauthorized_client", &[700016]);

    // client_secret_basic.
    let url = format!("{}/{FABRIKAM_TID}/oauth2/v2.0/token", sim.base_url());
    let response = http()
        .post(&url)
        .basic_auth(APP_A_CLIENT_ID, Some(APP_A_SECRET))
        .form(&[("grant_type", "client_credentials"), ("scope", GRAPH_DEFAULT)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // A certificate's client assertion, bound to the endpoint called.
    let t = now();
    let s256 = header(jsonwebtoken::Algorithm::RS256, Some(registered.x5t_s256()), None);
    let assertion = |aud: String| registered.sign(&s256, &claims(APP_A_CLIENT_ID, &aud, t, t + 300));
    let with_assertion = |jwt: String| {
        vec![
            ("client_id", APP_A_CLIENT_ID.to_string()),
            ("grant_type", "client_credentials".to_string()),
            ("scope", GRAPH_DEFAULT.to_string()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
            ),
            ("client_assertion", jwt),
        ]
    };
    let form = with_assertion(assertion(url.clone()));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_app_token(&token(&sim, FABRIKAM_TID, &form).await);
    let other = format!("{}/{CONTOSO_TID}/oauth2/v2.0/token", sim.base_url());
    let form = with_assertion(assertion(other));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let reply = token(&sim, FABRIKAM_TID, &form).await;
    assert_token_error(&reply, StatusCode::UNAUTHORIZED, "invalid_client", &[700023]);

    // The grant's own rules: a specific tenant, and one resource's /.default.
    let reply = app_token(&sim, "organizations", APP_A_CLIENT_ID, &[]).await;
    assert_token_error(&reply, StatusCode::BAD_REQUEST, "invalid_request", &[50059]);
    for scope in [
        "https://graph.microsoft.com/Files.Read.All",
        "Files.Read.All",
        "/.default",
        "https://graph.microsoft.com/.default https://contoso.sharepoint.com/.default",
    ] {
        let reply = app_token(&sim, FABRIKAM_TID, APP_A_CLIENT_ID, &[("scope", scope)]).await;
        assert_token_error(&reply, StatusCode::BAD_REQUEST, "invalid_scope", &[1002012]);
    }
    let reply = app_token(&sim, FABRIKAM_TID, APP_A_CLIENT_ID, &[("scope", "")]).await;
    assert_token_error(&reply, StatusCode::BAD_REQUEST, "invalid_request", &[900144]);
}

#[tokio::test]
async fn client_credentials_faults_target_their_grant_type() {
    let sim = start().await;
    sim.put_grant(FABRIKAM_TID, APP_A_CLIENT_ID, &["Files.Read.All"]).await;

    // A fault for another grant type leaves app-only requests alone.
    sim.fault(json!({"endpoint": "token", "grant_type": "refresh_token", "kind": "unavailable"}))
        .await;
    assert_app_token(&app_token(&sim, FABRIKAM_TID, APP_A_CLIENT_ID, &[]).await);
    sim.clear_faults().await;

    sim.fault(json!({"endpoint": "token", "grant_type": "client_credentials", "kind": "unavailable", "count": 1}))
        .await;
    let reply = app_token(&sim, FABRIKAM_TID, APP_A_CLIENT_ID, &[]).await;
    assert_token_error(
        &reply,
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        &[90033],
    );
    assert_app_token(&app_token(&sim, FABRIKAM_TID, APP_A_CLIENT_ID, &[]).await);

    sim.fault(json!({"endpoint": "token", "grant_type": "client_credentials", "kind": "throttle", "retry_after_secs": 3, "count": 1}))
        .await;
    let reply = app_token(&sim, FABRIKAM_TID, APP_A_CLIENT_ID, &[]).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.headers["retry-after"], "3");
    assert_eq!(sim.token_grants("client_credentials").await, 4);
}
