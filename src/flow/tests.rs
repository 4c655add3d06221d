//! The flow service's paths against the memory store, a scripted Entra and a manual clock: no
//! process, no HTTP. State and handoff codes expire by the store's own TTL (wall time), so their
//! expiry tests use lifetimes of milliseconds; everything the service dates itself follows the
//! manual clock.
#![allow(
    clippy::result_large_err,
    reason = "the scripted answers are the endpoint's own result type"
)]

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;

use super::binding::Binding;
use super::*;
use crate::clock::ManualClock;
use crate::config::LimitsConfig;
use crate::crypto::Sensitive;
use crate::entra::ClientCredential;
use crate::entra::client::{AuthorizeRequest, ClientAuth, TokenError, TokenResponse};
use crate::entra::id_token::{Expected, IdClaims};
use crate::http::api_types::SessionState;
use crate::store::MemoryStore;
use crate::store::records::{ConnectionStatus, SessionStatus};

const NOW: i64 = 1_900_000_000;
const TENANT: &str = "7d3e5a9f-0000-4000-8000-000000000001";
const CLIENT_ID: &str = "11111111-2222-3333-4444-555555555555";
const RETURN_URL: &str = "https://app.test/done";
const ID_TOKEN: &str = "scripted-id-token";

type Answer = Result<TokenResponse, TokenError>;

/// Entra from a script: authorize URLs that carry the state and nonce, code exchanges answered
/// in order and counted, and id_tokens accepted when they are the scripted one.
#[derive(Default)]
struct ScriptedEntra {
    answers: Mutex<VecDeque<Answer>>,
    exchanges: AtomicUsize,
    nonces_checked: Mutex<Vec<String>>,
}

impl ScriptedEntra {
    fn answering(answers: Vec<Answer>) -> Arc<Self> {
        Arc::new(Self {
            answers: Mutex::new(answers.into()),
            ..Self::default()
        })
    }

    fn exchanges(&self) -> usize {
        self.exchanges.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl SignInEndpoint for ScriptedEntra {
    fn authorize_url(&self, req: AuthorizeRequest<'_>) -> Result<Url, String> {
        let mut url = Url::parse(&format!("https://login.test/{}/oauth2/v2.0/authorize", req.tenant))
            .map_err(|e| e.to_string())?;
        url.query_pairs_mut()
            .append_pair("client_id", req.client_id)
            .append_pair("state", req.state)
            .append_pair("nonce", req.nonce)
            .append_pair("prompt", req.prompt.unwrap_or(""));
        Ok(url)
    }

    async fn exchange_code(
        &self,
        _tenant: &str,
        _client: &ClientAuth<'_>,
        _code: &str,
        _redirect_uri: &str,
        _pkce_verifier: &str,
        _scopes: &[String],
    ) -> Result<TokenResponse, TokenError> {
        self.exchanges.fetch_add(1, Ordering::SeqCst);
        self.answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| Err(TokenError::Protocol("no scripted answer left".into())))
    }

    async fn validate_id_token(&self, token: &str, expected: &Expected<'_>) -> Result<IdClaims, IdTokenError> {
        self.nonces_checked.lock().unwrap().push(expected.nonce.to_string());
        if token != ID_TOKEN {
            return Err(IdTokenError::BadSignature);
        }
        Ok(IdClaims {
            tid: TENANT.into(),
            oid: "oid-ada".into(),
            name: Some("Ada".into()),
            preferred_username: Some("ada@contoso.test".into()),
        })
    }

    async fn resolve_tenant(&self, _tenant: &str) -> Option<crate::ids::TenantId> {
        Some(TENANT.into())
    }
}

fn issued() -> Answer {
    Ok(TokenResponse {
        access_token: Sensitive::new("at-1"),
        expires_in: 3_600,
        scope: None,
        refresh_token: Some(Sensitive::new("rt-1")),
        id_token: Some(Sensitive::new(ID_TOKEN)),
        token_type: Some("Bearer".into()),
    })
}

fn outage() -> Answer {
    Err(TokenError::Unavailable {
        retry_after: None,
        detail: "HTTP 503".into(),
        error: None,
    })
}

fn connector(id: &str) -> ConnectorConfig {
    ConnectorConfig {
        id: id.into(),
        display_name: id.to_uppercase(),
        client_id: CLIENT_ID.into(),
        credential: ClientCredential::Secret {
            secret: "s3cret".to_string().into(),
            expires_at: None,
        },
        scopes: vec!["Files.Read.All".into()],
        return_urls: vec![Url::parse(RETURN_URL).unwrap()],
        api_key_hashes: Vec::new(),
        tenant: "organizations".into(),
        publisher_verified: false,
        publisher: Default::default(),
        webhooks: Vec::new(),
    }
}

struct Rig {
    service: Arc<FlowService>,
    records: Records,
    clock: Arc<ManualClock>,
    entra: Arc<ScriptedEntra>,
    tokens: Arc<crate::tokens::TokenCache>,
}

fn settings() -> FlowSettings {
    FlowSettings {
        public_url: Url::parse("https://broker.test").unwrap(),
        session_ttl: Duration::from_secs(3_600),
        state_ttl: Duration::from_secs(600),
        handoff_ttl: Duration::from_secs(300),
        default_retry_after: Duration::from_secs(7),
        clock_skew: Duration::from_secs(60),
    }
}

fn rig(entra: Arc<ScriptedEntra>) -> Rig {
    rig_with(entra, settings())
}

fn rig_with(entra: Arc<ScriptedEntra>, settings: FlowSettings) -> Rig {
    rig_on(Arc::new(MemoryStore::new()), entra, settings)
}

fn rig_on(store: Arc<dyn crate::store::Store>, entra: Arc<ScriptedEntra>, settings: FlowSettings) -> Rig {
    let records = Records::new(store);
    let clock = Arc::new(ManualClock::at(NOW));
    let connectors: crate::config::Connectors = Arc::new(std::collections::HashMap::from([
        ("files".into(), connector("files")),
        ("crm".into(), connector("crm")),
    ]));
    let metrics = Arc::new(Metrics::for_connectors(&["files", "crm"], None));
    let tokens = Arc::new(crate::tokens::TokenCache::new(100, Arc::new(crate::tokens::LocalOnly)));
    let service = Arc::new(FlowService::new(FlowServiceParts {
        records: records.clone(),
        entra: entra.clone(),
        outbox: Arc::new(crate::webhooks::Outbox::new(connectors.clone(), clock.clone())),
        connectors,
        settings,
        limits: Arc::new(Limiters::new(&LimitsConfig::default(), None)),
        clock: clock.clone(),
        metrics: metrics.clone(),
        pending_approvals: Arc::new(crate::approval::PendingApprovals::new(metrics)),
        background: tokio_util::task::TaskTracker::new(),
        tokens: tokens.clone(),
    }));
    Rig {
        service,
        records,
        clock,
        entra,
        tokens,
    }
}

fn browser(name: &str) -> Binding {
    Binding::of(name)
}

fn query_param(url: &Url, name: &str) -> String {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("{name} missing in {url}"))
}

fn session_request(return_url: Option<&str>) -> SessionRequest {
    SessionRequest {
        connector: "files".into(),
        end_user: "user-1".into(),
        return_url: return_url.map(str::to_string),
        state: Some("backend-state".into()),
        ..SessionRequest::default()
    }
}

fn authorize_query(return_url: &str) -> AuthorizeQuery {
    AuthorizeQuery {
        connector: Some("files".into()),
        return_url: Some(return_url.into()),
        state: Some("backend-state".into()),
        ..AuthorizeQuery::default()
    }
}

fn callback_params(query: &[(&str, &str)]) -> CallbackParams {
    CallbackParams::parse(&serde_urlencoded::to_string(query).unwrap()).unwrap()
}

fn with_code(state: &str) -> CallbackParams {
    callback_params(&[("state", state), ("code", "auth-code")])
}

/// Starts a sign-in from `/v1/authorize` in `b`; returns its state.
async fn started(r: &Rig, b: &Binding) -> String {
    let url = r
        .service
        .start_from_authorize(&authorize_query(RETURN_URL), b, None)
        .await
        .expect("start");
    query_param(&url, "state")
}

/// The connect token at the end of a connect URL.
fn connect_token(connect_url: &str) -> &str {
    connect_url.rsplit('/').next().unwrap()
}

#[tokio::test]
async fn state_is_single_use_and_its_nonce_reaches_the_id_token_check() {
    let r = rig(ScriptedEntra::answering(vec![issued(), issued()]));
    let b = browser("a");
    let url = r
        .service
        .start_from_authorize(&authorize_query(RETURN_URL), &b, None)
        .await
        .unwrap();
    let state = query_param(&url, "state");

    let outcome = r.service.callback(with_code(&state), Some(&b)).await.unwrap();
    let CallbackOutcome::Completed { redirect, .. } = outcome else {
        panic!("expected a connection");
    };
    let redirect = redirect.expect("a return URL");
    assert!(redirect.as_str().starts_with(RETURN_URL), "{redirect}");
    assert_eq!(query_param(&redirect, "state"), "backend-state");
    assert_eq!(
        *r.entra.nonces_checked.lock().unwrap(),
        vec![query_param(&url, "nonce")]
    );

    let again = r.service.callback(with_code(&state), Some(&b)).await;
    assert!(matches!(again, Err(FlowError::InvalidState)), "{:?}", again.err());
    assert_eq!(r.entra.exchanges(), 1, "a replayed state never reaches Entra");
}

#[tokio::test]
async fn expired_state_is_refused_before_the_code_is_used() {
    let r = rig_with(
        ScriptedEntra::answering(vec![issued()]),
        FlowSettings {
            state_ttl: Duration::from_millis(30),
            ..settings()
        },
    );
    let b = browser("a");
    let state = started(&r, &b).await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    let result = r.service.callback(with_code(&state), Some(&b)).await;
    assert!(matches!(result, Err(FlowError::InvalidState)), "{:?}", result.err());
    assert_eq!(r.entra.exchanges(), 0);
}

#[tokio::test]
async fn another_browser_is_refused_and_consumes_nothing() {
    let r = rig(ScriptedEntra::answering(vec![issued()]));
    let owner = browser("owner");
    let state = started(&r, &owner).await;

    for other in [Some(browser("attacker")), None] {
        let result = r.service.callback(with_code(&state), other.as_ref()).await;
        assert!(matches!(result, Err(FlowError::OtherBrowser)), "{:?}", result.err());
    }
    assert_eq!(r.entra.exchanges(), 0, "the code is not used");
    assert!(
        r.records.flow(&state).await.unwrap().is_some(),
        "the state is not used up"
    );

    let outcome = r.service.callback(with_code(&state), Some(&owner)).await.unwrap();
    assert!(matches!(outcome, CallbackOutcome::Completed { .. }));
}

#[tokio::test]
async fn handoff_code_redeems_once_and_only_for_its_connector() {
    let r = rig(ScriptedEntra::answering(vec![issued()]));
    let b = browser("a");
    let state = started(&r, &b).await;
    let CallbackOutcome::Completed {
        handoff_code,
        connection_id,
        ..
    } = r.service.callback(with_code(&state), Some(&b)).await.unwrap()
    else {
        panic!("expected a connection");
    };
    let code = handoff_code.expose();

    assert!(r.service.redeem_handoff(&"crm".into(), code).await.unwrap().is_none());
    let redeemed = r
        .service
        .redeem_handoff(&"files".into(), code)
        .await
        .unwrap()
        .expect("redeemed");
    assert_eq!(redeemed.connection.id, connection_id);
    assert_eq!(redeemed.connection.status, ConnectionStatus::Active);
    assert_eq!(redeemed.state.as_deref(), Some("backend-state"));
    assert!(
        r.service.redeem_handoff(&"files".into(), code).await.unwrap().is_none(),
        "single use"
    );
}

#[tokio::test]
async fn expired_handoff_code_is_refused() {
    let r = rig_with(
        ScriptedEntra::answering(vec![issued()]),
        FlowSettings {
            handoff_ttl: Duration::from_millis(30),
            ..settings()
        },
    );
    let b = browser("a");
    let state = started(&r, &b).await;
    let CallbackOutcome::Completed { handoff_code, .. } =
        r.service.callback(with_code(&state), Some(&b)).await.unwrap()
    else {
        panic!("expected a connection");
    };
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert!(
        r.service
            .redeem_handoff(&"files".into(), handoff_code.expose())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn return_urls_off_the_list_or_with_reserved_parameters_are_refused() {
    let r = rig(ScriptedEntra::answering(vec![]));
    let b = browser("a");
    for (url, reserved) in [
        ("https://evil.test/done", false),
        ("https://app.test/done-elsewhere", false),
        ("https://app.test/done?handoff=x", true),
        ("https://app.test/done?state=x", true),
    ] {
        let session = r
            .service
            .create_session(&"files".into(), &session_request(Some(url)))
            .await;
        let start = r.service.start_from_authorize(&authorize_query(url), &b, None).await;
        for result in [session.err(), start.err()] {
            match (result, reserved) {
                (Some(FlowError::ReturnUrlNotAllowed), false) => {}
                (
                    Some(FlowError::InvalidParameter {
                        field: "return_url", ..
                    }),
                    true,
                ) => {}
                (other, _) => panic!("{url}: {other:?}"),
            }
        }
    }
    assert!(
        r.service
            .create_session(&"files".into(), &session_request(Some(RETURN_URL)))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn connect_link_stops_at_its_session_expiry() {
    let r = rig(ScriptedEntra::answering(vec![]));
    let created = r
        .service
        .create_session(&"files".into(), &session_request(None))
        .await
        .unwrap();
    assert!(created.connect_url.starts_with("https://broker.test/v1/connect/"));
    let token = connect_token(&created.connect_url);
    let url = r.service.start_from_connect_token(token, &browser("a")).await.unwrap();
    assert_eq!(query_param(&url, "prompt"), "select_account");
    assert_eq!(r.service.session_status(&created.session), SessionState::Pending);

    r.clock.advance(settings().session_ttl);
    let result = r.service.start_from_connect_token(token, &browser("a")).await;
    assert!(matches!(result, Err(FlowError::UnknownSession)), "{:?}", result.err());
    let session = r
        .records
        .session(&"files".into(), &created.session.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.service.session_status(&session), SessionState::Expired);
}

#[tokio::test]
async fn completed_connect_link_cannot_start_again() {
    let r = rig(ScriptedEntra::answering(vec![issued()]));
    let b = browser("a");
    let created = r
        .service
        .create_session(&"files".into(), &session_request(None))
        .await
        .unwrap();
    let token = connect_token(&created.connect_url);
    let url = r.service.start_from_connect_token(token, &b).await.unwrap();
    let outcome = r
        .service
        .callback(with_code(&query_param(&url, "state")), Some(&b))
        .await
        .unwrap();
    let CallbackOutcome::Completed {
        redirect,
        connection_id,
        ..
    } = outcome
    else {
        panic!("expected a connection");
    };
    assert!(redirect.is_none(), "no return URL: out-of-band");

    let session = r
        .records
        .session(&"files".into(), &created.session.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.status, SessionStatus::Completed);
    assert_eq!(session.connection_id.as_ref(), Some(&connection_id));
    assert_eq!(session.end_user, "user-1");
    let again = r.service.start_from_connect_token(token, &b).await;
    assert!(matches!(again, Err(FlowError::SessionCompleted)), "{:?}", again.err());
}

#[tokio::test]
async fn reconnect_link_is_reused_until_it_is_about_to_expire() {
    let r = rig(ScriptedEntra::answering(vec![issued()]));
    let b = browser("a");
    let state = started(&r, &b).await;
    let CallbackOutcome::Completed { connection_id, .. } =
        r.service.callback(with_code(&state), Some(&b)).await.unwrap()
    else {
        panic!("expected a connection");
    };
    let (conn, _) = r.records.connection(&connection_id).await.unwrap().unwrap();

    let first = r.service.reconnect_url(&"files".into(), &conn).await.unwrap();
    let second = r.service.reconnect_url(&"files".into(), &conn).await.unwrap();
    assert_eq!(first, second, "a polling backend gets the same link");

    // Less than RECONNECT_MIN_LEFT left on the link: a new one.
    r.clock.advance(settings().session_ttl - Duration::from_secs(200));
    let third = r.service.reconnect_url(&"files".into(), &conn).await.unwrap();
    assert_ne!(third, first);
    let url = r
        .service
        .start_from_connect_token(connect_token(&third), &b)
        .await
        .unwrap();
    assert!(!query_param(&url, "state").is_empty());
}

#[tokio::test]
async fn approval_page_continues_only_in_its_browser_while_alive() {
    let r = rig(ScriptedEntra::answering(vec![]));
    let owner = browser("owner");
    let created = r
        .service
        .create_session(&"files".into(), &session_request(None))
        .await
        .unwrap();
    let url = r
        .service
        .start_from_connect_token(connect_token(&created.connect_url), &owner)
        .await
        .unwrap();
    let refused = callback_params(&[
        ("state", &query_param(&url, "state")),
        ("error", "invalid_client"),
        ("error_description", "AADSTS90094: Admin approval required."),
    ]);
    let CallbackOutcome::Failed(failed) = r.service.callback(refused, Some(&owner)).await.unwrap() else {
        panic!("expected a refusal");
    };
    let path = failed.approval_path.expect("an approval page");
    let flow_id = path.rsplit('/').next().unwrap();
    let approval = r
        .records
        .approval(&flow_id.into())
        .await
        .unwrap()
        .expect("approval recorded");
    let session = r
        .records
        .session(&"files".into(), &created.session.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.status, SessionStatus::ApprovalRequired);
    assert_eq!(session.approval_flow.as_ref().map(|f| f.as_str()), Some(flow_id));

    for other in [Some(browser("it-admin")), None] {
        let result = r.service.start_for_approval(&approval, other.as_ref(), None).await;
        assert!(matches!(result, Err(FlowError::OtherBrowser)), "{:?}", result.err());
    }
    let again = r
        .service
        .start_for_approval(&approval, Some(&owner), None)
        .await
        .unwrap();
    assert_ne!(
        query_param(&again, "state"),
        query_param(&url, "state"),
        "a new sign-in"
    );

    // The page outlives its connect session; continuing needs both.
    r.clock.advance(settings().session_ttl);
    let late = r.service.start_for_approval(&approval, Some(&owner), None).await;
    assert!(matches!(late, Err(FlowError::UnknownSession)), "{:?}", late.err());
}

#[tokio::test]
async fn entra_outage_at_the_exchange_is_recorded_as_transient() {
    let r = rig(ScriptedEntra::answering(vec![outage()]));
    let b = browser("a");
    let created = r
        .service
        .create_session(&"files".into(), &session_request(None))
        .await
        .unwrap();
    let url = r
        .service
        .start_from_connect_token(connect_token(&created.connect_url), &b)
        .await
        .unwrap();
    let result = r
        .service
        .callback(with_code(&query_param(&url, "state")), Some(&b))
        .await;
    match result {
        Err(FlowError::EntraUnavailable { retry_after }) => assert_eq!(retry_after, Duration::from_secs(7)),
        other => panic!("{:?}", other.err()),
    }
    let session = r
        .records
        .session(&"files".into(), &created.session.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.status, SessionStatus::Failed);
    assert_eq!(session.category, Some(Category::Transient));
}

#[tokio::test]
async fn id_token_that_fails_its_check_stores_no_connection() {
    let bad = Ok(TokenResponse {
        id_token: Some(Sensitive::new("forged")),
        ..issued().unwrap()
    });
    let r = rig(ScriptedEntra::answering(vec![bad]));
    let b = browser("a");
    let state = started(&r, &b).await;
    let result = r.service.callback(with_code(&state), Some(&b)).await;
    assert!(
        matches!(result, Err(FlowError::IdToken(IdTokenError::BadSignature))),
        "{:?}",
        result.err()
    );
    assert!(
        r.records
            .connection_for_user(&"files".into(), &TENANT.into(), "oid-ada")
            .await
            .unwrap()
            .is_none()
    );
}

#[test]
fn failures_of_the_broker_or_entra_are_transient_and_the_callers_are_invalid_requests() {
    use crate::store::StoreError;
    for e in [
        FlowError::EntraProtocol("truncated JSON".into()),
        FlowError::Store(StoreError::backend("redis: no answer")),
        FlowError::RateLimited {
            retry_after: std::time::Duration::from_secs(1),
        },
    ] {
        assert_eq!(e.category(), Category::Transient, "{e:?}");
    }
    for e in [
        FlowError::UnknownSession,
        FlowError::InvalidState,
        FlowError::OtherBrowser,
    ] {
        assert_eq!(e.category(), Category::InvalidRequest, "{e:?}");
    }
}

#[tokio::test]
async fn a_returning_users_sign_in_drops_the_cached_token_of_their_connection() {
    let r = rig(ScriptedEntra::answering(vec![issued(), issued()]));
    let b = browser("a");
    let sign_in = || async {
        let state = started(&r, &b).await;
        match r.service.callback(with_code(&state), Some(&b)).await.unwrap() {
            CallbackOutcome::Completed { connection_id, .. } => connection_id,
            _ => panic!("expected a connection"),
        }
    };
    let first = sign_in().await;
    let files: crate::ids::ConnectorId = "files".into();
    let cached = crate::tokens::AccessToken {
        access_token: Arc::new(Sensitive::new("at-cached")),
        expires_at: NOW + 3_000,
        scope: "Files.Read".into(),
        served: crate::tokens::Served::Refreshed,
        min_ttl_unmet: false,
        issued_for: Some(Arc::new(crate::store::records::TokenIdentity::new(
            &TENANT.into(),
            "client",
            &[],
        ))),
        answer: Arc::default(),
    };
    r.tokens.remember(r.tokens.ticket(&first), &files, &first, &cached, NOW);
    assert!(
        r.tokens.recall(&files, &first, NOW).is_some(),
        "kept after the first sign-in"
    );

    let second = sign_in().await;
    assert_eq!(second, first, "the returning user keeps the connection");
    assert!(
        r.tokens.recall(&files, &first, NOW).is_none(),
        "the token of the replaced sign-in is forgotten"
    );
}

#[tokio::test]
async fn a_declined_sign_in_gets_a_fresh_link_of_its_session_unless_the_store_refuses_it() {
    let store = Arc::new(crate::tokens::tests::Switchable::new());
    let r = rig_on(store.clone(), ScriptedEntra::answering(vec![]), settings());
    let b = browser("a");
    let created = r
        .service
        .create_session(&"files".into(), &session_request(None))
        .await
        .unwrap();
    let declined = async |r: &Rig| {
        let url = r
            .service
            .start_from_connect_token(connect_token(&created.connect_url), &b)
            .await
            .unwrap();
        let refused = callback_params(&[
            ("state", &query_param(&url, "state")),
            ("error", "access_denied"),
            ("error_description", "AADSTS65004: User declined to consent."),
        ]);
        let CallbackOutcome::Failed(failed) = r.service.callback(refused, Some(&b)).await.unwrap() else {
            panic!("expected a refusal");
        };
        failed
    };
    let failed = declined(&r).await;
    let retry = failed.retry_url.expect("declining again may end differently");
    assert!(retry.contains("/v1/connect/"), "{retry}");
    assert!(!retry.ends_with(connect_token(&created.connect_url)), "a fresh token");
    let again = r
        .service
        .start_from_connect_token(connect_token(&retry), &b)
        .await
        .expect("the retry link starts the same session's sign-in");
    assert_eq!(query_param(&again, "prompt"), "select_account");

    // The store refuses the new link: the page still says what happened, without the link.
    *store.refused_prefix.lock().unwrap() = Some("connect:");
    let failed = declined(&r).await;
    assert!(failed.retry_url.is_none());
    assert_eq!(failed.classification.primary_code(), Some(65004));

    // Categories a retry cannot fix get no link.
    for category in [
        crate::entra::Category::AppMisconfigured,
        crate::entra::Category::ClientCredentialInvalid,
    ] {
        assert!(!super::callback::retry_can_help(category));
    }
}
