//! The metrics' names, labels and bounds.

use super::*;

#[test]
fn codes_fold_into_a_bounded_label_set() {
    assert_eq!(code_label(Some(90094)), "90094");
    assert_eq!(code_label(Some(65004)), "65004");
    assert_eq!(code_label(Some(4_000_000_001)), "other");
    assert_eq!(code_label(None), "none");
}

#[test]
fn known_series_exist_at_zero_before_anything_is_counted() {
    let text = Metrics::for_connectors(&["files"], Some("https://login.example")).render();
    for line in [
        "consent_broker_flows_started_total{connector=\"files\"} 0",
        "consent_broker_token_requests_total{connector=\"files\",outcome=\"refreshed\"} 0",
        "consent_broker_admin_consent_verifications_total{connector=\"files\",outcome=\"not_confirmed\"} 0",
        "consent_broker_rate_limited_total{scope=\"tenant\"} 0",
        "consent_broker_entra_requests_total{endpoint=\"token\",result=\"short_circuited\"} 0",
        "consent_broker_entra_circuit_open{authority=\"https://login.example\"} 0",
        "consent_broker_store_up 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line}: {text}");
    }
    assert!(text.ends_with("# EOF\n"));
    assert!(text.contains(&format!(
        "consent_broker_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(!text.contains(".."), "one period after HELP texts: {text}");
}

#[test]
fn families_name_every_registered_family_as_its_samples_do() {
    let m = Metrics::new();
    m.flow_started("c");
    m.flow_completed("c");
    m.flow_failed("c", "user_declined");
    m.token_request("c", TokenOutcome::CacheHit);
    m.refresh_duration(Duration::from_millis(1));
    m.circuit_open("a", true);
    m.entra_error(Some(90094));
    m.store_duration("get", Duration::from_millis(1));
    m.pending_approvals_by("c", "t", 1);
    m.http_request("GET", "/healthz", 200, Duration::from_millis(1));
    m.credential_expires_at("c", "secret", 1);
    m.credential_error("c", Some(7000222));
    m.admin_consent_verified("c", ConsentVerification::NotConfirmed);
    m.min_ttl_unmet("c");
    m.refresh_budget_exhausted("c");
    m.keepalive_due("c");
    m.keepalive_refreshed("c");
    m.keepalive_failed("c", "transient");
    m.webhook_attempt("c", true);
    m.webhook_dead_letter("c");
    m.cache_lookup(true);
    m.cache_invalidations_published(1);
    m.cache_subscribed(true);
    let text = m.render();
    let sampled: HashSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let declared: HashSet<String> = m.families().iter().flat_map(FamilyInfo::sample_names).collect();
    for name in &sampled {
        assert!(declared.contains(*name), "{name} is exported but not in families()");
    }
    for name in &declared {
        assert!(
            sampled.contains(name.as_str()),
            "{name} is in families() but has no sample"
        );
    }
}

#[test]
fn label_values_are_escaped() {
    let m = Metrics::new();
    m.flow_started("a\"b\\c\nd");
    assert!(
        m.render()
            .contains("consent_broker_flows_started_total{connector=\"a\\\"b\\\\c\\nd\"} 1"),
        "{}",
        m.render()
    );
}

#[test]
fn token_requests_of_configured_and_unknown_connectors_are_counted_in_their_series() {
    let m = Metrics::for_connectors(&["files"], None);
    m.token_request("files", TokenOutcome::Refreshed);
    m.token_request("files", TokenOutcome::Refreshed);
    m.token_request("files", TokenOutcome::NotFound);
    m.token_request("late", TokenOutcome::CacheHit);
    m.cache_lookup(true);
    m.cache_lookup(false);
    m.cache_lookup(false);
    let text = m.render();
    for line in [
        "consent_broker_token_requests_total{connector=\"files\",outcome=\"refreshed\"} 2",
        "consent_broker_token_requests_total{connector=\"files\",outcome=\"not_found\"} 1",
        "consent_broker_token_requests_total{connector=\"files\",outcome=\"cache_hit\"} 0",
        "consent_broker_token_requests_total{connector=\"late\",outcome=\"cache_hit\"} 1",
        "consent_broker_token_cache_lookups_total{result=\"hit\"} 1",
        "consent_broker_token_cache_lookups_total{result=\"miss\"} 2",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in {text}");
    }
}

#[test]
fn http_requests_are_counted_per_route_method_and_status_however_often_they_repeat() {
    let m = Metrics::new();
    for _ in 0..3 {
        m.http_request(
            "GET",
            "/v1/connections/{connection_id}/token",
            200,
            Duration::from_millis(1),
        );
    }
    m.http_request(
        "GET",
        "/v1/connections/{connection_id}/token",
        404,
        Duration::from_millis(1),
    );
    m.http_request(
        "DELETE",
        "/v1/connections/{connection_id}/token",
        200,
        Duration::from_millis(1),
    );
    let text = m.render();
    for line in [
        "consent_broker_http_requests_total{method=\"GET\",route=\"/v1/connections/{connection_id}/token\",status=\"200\"} 3",
        "consent_broker_http_requests_total{method=\"GET\",route=\"/v1/connections/{connection_id}/token\",status=\"404\"} 1",
        "consent_broker_http_requests_total{method=\"DELETE\",route=\"/v1/connections/{connection_id}/token\",status=\"200\"} 1",
        "consent_broker_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/connections/{connection_id}/token\"} 4",
        "consent_broker_http_request_duration_seconds_count{method=\"DELETE\",route=\"/v1/connections/{connection_id}/token\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in {text}");
    }
}
