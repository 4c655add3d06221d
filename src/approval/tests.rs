//! The approval service's unit tier: the admin-consent round trip against a scripted Entra, the
//! memory store and a manual clock, in milliseconds.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use url::Url;

use super::*;
use crate::clock::ManualClock;
use crate::entra::EntraError;
use crate::entra::client::{ClientAuth, TokenError};
use crate::entra::credential::ClientCredential;
use crate::flow::FlowError;
use crate::ids::TenantId;
use crate::store::MemoryStore;

const NOW: i64 = 1_700_000_000;
const FABRIKAM: &str = "7d3e5a9f-0000-4000-8000-00000000f00d";

/// What the scripted Entra answers to the app-only token request that verifies a consent.
#[derive(Clone, Copy)]
enum Verdict {
    Issued,
    NoServicePrincipal,
    Unavailable,
}

struct ScriptedConsent {
    verdict: Mutex<Verdict>,
    checks: Mutex<Vec<String>>,
}

impl ScriptedConsent {
    fn new(verdict: Verdict) -> Arc<Self> {
        Arc::new(Self {
            verdict: Mutex::new(verdict),
            checks: Mutex::new(Vec::new()),
        })
    }

    fn checks(&self) -> Vec<String> {
        self.checks.lock().unwrap().clone()
    }
}

#[async_trait]
impl ConsentEndpoint for ScriptedConsent {
    async fn resolve_tenant(&self, tenant: &str) -> Option<TenantId> {
        match tenant {
            "fabrikam.example" | FABRIKAM => Some(FABRIKAM.into()),
            _ => None,
        }
    }

    fn admin_consent_url(
        &self,
        tenant: &str,
        client_id: &str,
        _scopes: &[String],
        redirect_uri: &str,
        state: &str,
    ) -> Result<Url, String> {
        let mut url =
            Url::parse(&format!("https://login.test/{tenant}/v2.0/adminconsent")).map_err(|e| e.to_string())?;
        url.query_pairs_mut()
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("state", state);
        Ok(url)
    }

    async fn app_only_token_issued(&self, tenant: &TenantId, _client: &ClientAuth<'_>) -> Result<(), TokenError> {
        self.checks.lock().unwrap().push(tenant.to_string());
        match *self.verdict.lock().unwrap() {
            Verdict::Issued => Ok(()),
            Verdict::NoServicePrincipal => Err(TokenError::Rejected(EntraError {
                error: Some("unauthorized_client".into()),
                error_description: Some("AADSTS700016: scripted.".into()),
                error_codes: vec![700016],
                http_status: Some(400),
                ..Default::default()
            })),
            Verdict::Unavailable => Err(TokenError::Unavailable {
                retry_after: None,
                detail: "HTTP 503".into(),
                error: None,
            }),
        }
    }
}

struct Rig {
    service: ApprovalService,
    records: Records,
    clock: Arc<ManualClock>,
    entra: Arc<ScriptedConsent>,
}

fn rig(verdict: Verdict) -> Rig {
    let records = Records::new(Arc::new(MemoryStore::new()));
    let clock = Arc::new(ManualClock::at(NOW));
    let entra = ScriptedConsent::new(verdict);
    let metrics = Arc::new(Metrics::for_connectors(&["files"], None));
    let connector = ConnectorConfig {
        id: "files".into(),
        display_name: "Files".into(),
        client_id: "11111111-2222-4333-8444-555555555555".into(),
        credential: ClientCredential::Secret {
            secret: "s3cret".to_string().into(),
            expires_at: None,
        },
        scopes: vec!["Files.Read.All".into()],
        return_urls: Vec::new(),
        api_key_hashes: Vec::new(),
        tenant: "organizations".into(),
        publisher_verified: false,
        publisher: Default::default(),
        webhooks: Vec::new(),
    };
    let connectors: crate::config::Connectors =
        Arc::new(std::collections::HashMap::from([("files".into(), connector)]));
    let service = ApprovalService::new(ApprovalServiceParts {
        records: records.clone(),
        entra: entra.clone(),
        outbox: Arc::new(crate::webhooks::Outbox::new(connectors.clone(), clock.clone())),
        connectors,
        pending: Arc::new(PendingApprovals::new(metrics.clone())),
        clock: clock.clone(),
        metrics,
        settings: ApprovalSettings {
            public_url: Url::parse("https://broker.test").unwrap(),
            state_ttl: Duration::from_secs(600),
            default_retry_after: Duration::from_secs(9),
        },
    });
    Rig {
        service,
        records,
        clock,
        entra,
    }
}

impl Rig {
    /// Starts a round trip for `tenant` and returns the state Entra would bring back.
    async fn start(&self, tenant: &str) -> String {
        let url = self
            .service
            .admin_consent_start("files", tenant, None)
            .await
            .expect("started");
        url.query_pairs()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
            .expect("a state")
    }

    async fn approved(&self) -> Option<crate::store::records::TenantApproval> {
        self.records
            .tenant_approval(&"files".into(), &FABRIKAM.into())
            .await
            .unwrap()
    }
}

fn approved_query(state: &str, tenant: &str) -> String {
    format!("admin_consent=True&tenant={tenant}&state={state}&scope=https%3A%2F%2Fgraph.microsoft.com%2FFiles.Read.All")
}

#[tokio::test]
async fn a_verified_consent_is_recorded_once_and_its_state_works_once() {
    let r = rig(Verdict::Issued);
    let state = r.start("fabrikam.example").await;
    let outcome = r
        .service
        .admin_consent_callback(&approved_query(&state, FABRIKAM))
        .await
        .unwrap();
    assert!(
        matches!(&outcome, ConsentOutcome::Approved { connector, tenant_id, .. } if *connector == "files" && *tenant_id == FABRIKAM),
        "{outcome:?}"
    );
    assert_eq!(r.entra.checks(), [FABRIKAM], "asked Entra about that tenant");
    let recorded = r.approved().await.expect("recorded");
    assert_eq!(recorded.approved_at_ms, NOW * 1000, "at the service's clock");
    assert_eq!(recorded.scopes, ["https://graph.microsoft.com/Files.Read.All"]);
    assert!(matches!(
        r.service
            .admin_consent_callback(&approved_query(&state, FABRIKAM))
            .await,
        Err(FlowError::InvalidState)
    ));
}

#[tokio::test]
async fn an_unconfirmed_consent_records_nothing() {
    let r = rig(Verdict::NoServicePrincipal);
    let state = r.start(FABRIKAM).await;
    let outcome = r
        .service
        .admin_consent_callback(&approved_query(&state, FABRIKAM))
        .await
        .unwrap();
    assert!(
        matches!(
            outcome,
            ConsentOutcome::Unconfirmed {
                reason: Unconfirmed::NoServicePrincipal,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(r.approved().await.is_none());

    *r.entra.verdict.lock().unwrap() = Verdict::Unavailable;
    let state = r.start(FABRIKAM).await;
    let outcome = r
        .service
        .admin_consent_callback(&approved_query(&state, FABRIKAM))
        .await
        .unwrap();
    assert!(
        matches!(
            outcome,
            ConsentOutcome::Unconfirmed {
                reason: Unconfirmed::EntraUnavailable { retry_after },
                ..
            } if retry_after == Duration::from_secs(9)
        ),
        "the configured default wait when Entra names none: {outcome:?}"
    );
    assert!(r.approved().await.is_none());
}

#[tokio::test]
async fn a_consent_for_another_tenant_than_asked_is_refused_without_asking_entra() {
    let r = rig(Verdict::Issued);
    let state = r.start("fabrikam.example").await;
    let other = "00000000-0000-4000-8000-0000000000aa";
    let outcome = r
        .service
        .admin_consent_callback(&approved_query(&state, other))
        .await
        .unwrap();
    assert!(matches!(outcome, ConsentOutcome::WrongTenant { .. }), "{outcome:?}");
    assert!(r.entra.checks().is_empty());
    assert!(
        r.records
            .tenant_approval(&"files".into(), &other.into())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn hostile_callbacks_and_starts_are_refused() {
    let r = rig(Verdict::Issued);
    let state = r.start(FABRIKAM).await;
    for query in [
        String::new(),
        "state=unknown&admin_consent=True&tenant=x".to_string(),
        format!("state={state}&state={state}&admin_consent=True&tenant={FABRIKAM}"),
        "%ZZ".to_string(),
        format!("state={}", "a".repeat(10_000)),
    ] {
        assert!(r.service.admin_consent_callback(&query).await.is_err(), "{query:.60}");
    }
    assert!(r.approved().await.is_none());
    for (connector, tenant, flow) in [
        ("nope", FABRIKAM, None),
        ("files", "common", None),
        ("files", "not a tenant", None),
        ("files", FABRIKAM, Some("../../etc")),
    ] {
        assert!(
            r.service.admin_consent_start(connector, tenant, flow).await.is_err(),
            "{connector} {tenant} {flow:?}"
        );
    }
}

#[tokio::test]
async fn a_cancelled_consent_says_so() {
    let r = rig(Verdict::Issued);
    let state = r.start(FABRIKAM).await;
    let outcome = r
        .service
        .admin_consent_callback(&format!(
            "error=access_denied&error_subcode=cancel&error_description=AADSTS65004&state={state}"
        ))
        .await
        .unwrap();
    assert!(matches!(outcome, ConsentOutcome::Cancelled { .. }), "{outcome:?}");
    assert!(r.entra.checks().is_empty());
}

fn approval_page(created_at_ms: i64) -> Approval {
    Approval {
        flow_id: "fl_1".into(),
        connector: "files".into(),
        session_id: None,
        return_url: None,
        connector_state: None,
        login_hint: None,
        tenant: FABRIKAM.into(),
        tenant_id: Some(FABRIKAM.into()),
        tenant_label: Some("fabrikam.example".into()),
        category: Category::AdminApprovalRequired,
        aadsts: Some(90094),
        created_at_ms,
        expires_at: created_at_ms / 1000 + APPROVAL_TTL.as_secs() as i64,
        browser: String::new(),
    }
}

#[tokio::test]
async fn a_page_follows_its_tenants_approval_and_expires_on_the_services_clock() {
    let r = rig(Verdict::Issued);
    let page = approval_page(NOW * 1000 - 5_000);
    assert_eq!(r.service.status(&page).await.unwrap(), Status::Pending);
    let state = r.start(FABRIKAM).await;
    r.service
        .admin_consent_callback(&approved_query(&state, FABRIKAM))
        .await
        .unwrap();
    assert_eq!(r.service.status(&page).await.unwrap(), Status::Approved);
    // A page opened after the approval still needs one (the approval did not cover it), and
    // the diagnosis says everything asked for was approved.
    let later = approval_page(NOW * 1000 + 1_000);
    assert_eq!(r.service.status(&later).await.unwrap(), Status::Pending);
    assert!(matches!(
        r.service.diagnose(&later).await.unwrap(),
        Some(Diagnosis::AssignmentLikely { approved_at: NOW })
    ));
    r.clock.advance(APPROVAL_TTL + Duration::from_secs(1));
    assert_eq!(r.service.status(&later).await.unwrap(), Status::Expired);
}

#[test]
fn links_carry_the_connector_tenant_and_page() {
    let r = rig(Verdict::Issued);
    let link = r.service.admin_link(&approval_page(NOW * 1000));
    let url = Url::parse(&link).unwrap();
    assert_eq!(url.path(), "/v1/admin-consent/start");
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(
        pairs,
        [
            ("connector".to_string(), "files".to_string()),
            ("tenant".to_string(), FABRIKAM.to_string()),
            ("flow".to_string(), "fl_1".to_string()),
        ]
    );
}

#[test]
fn the_organization_is_named_by_domain_not_by_guid() {
    use super::organization_label;
    let guid = "7d3e5a9f-0000-4000-8000-000000000001";
    assert_eq!(
        organization_label(Some(guid), Some("frank@Fabrikam.com")).as_deref(),
        Some("fabrikam.com"),
        "a retry names the tenant by GUID; the sign-in name has the domain"
    );
    assert_eq!(
        organization_label(Some("contoso.com"), Some("frank@fabrikam.com")).as_deref(),
        Some("contoso.com"),
        "the domain the flow named"
    );
    assert_eq!(
        organization_label(Some("organizations"), Some("a@b.example")).as_deref(),
        Some("b.example")
    );
    assert_eq!(
        organization_label(Some(guid), None).as_deref(),
        Some(guid),
        "nothing better known"
    );
    assert_eq!(organization_label(Some("common"), Some("no-at-sign")), None);
}
