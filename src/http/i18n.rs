//! Page languages: English and German, chosen from `Accept-Language`. Every page text lives in
//! one `Texts` value per language, so a missing translation is a compile error, not a blank.
//! Placeholders are `{name}` and are filled with [`fill`].

use axum::http::HeaderMap;

use crate::flow::FlowError;

mod de;
mod en;

pub use de::{DE, category_messages_de};
pub use en::EN;

/// A supported language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// English (default).
    #[default]
    En,
    /// German.
    De,
}

impl Lang {
    /// The best supported language for an `Accept-Language` header (q-values honoured).
    pub fn from_headers(headers: &HeaderMap) -> Lang {
        let Some(value) = headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
        else {
            return Lang::En;
        };
        let mut best = (Lang::En, -1.0f32);
        for part in value.split(',').take(20) {
            let mut pieces = part.trim().split(';');
            let tag = pieces.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = pieces
                .find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()))
                .unwrap_or(1.0);
            let lang = match tag.split('-').next() {
                Some("de") => Lang::De,
                Some("en") => Lang::En,
                _ => continue,
            };
            if q > best.1 {
                best = (lang, q);
            }
        }
        best.0
    }

    /// The `lang` attribute.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
        }
    }

    /// This language's texts.
    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::En => &EN,
            Lang::De => &DE,
        }
    }
}

/// Replaces `{name}` placeholders.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in values {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// Every text the pages show.
pub struct Texts {
    /// "Details for support"
    pub details: &'static str,
    /// "Your code"
    pub your_code: &'static str,
    /// Hint under the code box.
    pub code_help: &'static str,
    /// Approval page title.
    pub approval_title: &'static str,
    /// "Organization: {tenant}"
    pub organization: &'static str,
    /// Unnamed organization.
    pub your_organization: &'static str,
    /// Status: waiting, workflow off.
    pub status_pending: &'static str,
    /// Status: request sent, workflow on.
    pub status_requested: &'static str,
    /// Status: approved.
    pub status_approved: &'static str,
    /// Status: expired.
    pub status_expired: &'static str,
    /// "What you can do now"
    pub what_now: &'static str,
    /// Branch: admin consent workflow off (90094 and relatives).
    pub branch_admin_only: &'static str,
    /// Branch: request sent (90095).
    pub branch_requested: &'static str,
    /// Branch: consent missing (65001).
    pub branch_consent: &'static str,
    /// Note for unverified publishers.
    pub unverified_publisher: &'static str,
    /// "What {connector} asks for"
    pub permissions_heading: &'static str,
    /// Badge: admin consent needed everywhere.
    pub badge_admin: &'static str,
    /// Badge: may be classified low impact.
    pub badge_low: &'static str,
    /// Unknown permission.
    pub unknown_permission: &'static str,
    /// A permission of an API we do not know: "{scope} on {resource}".
    pub on_resource: &'static str,
    /// What we say of a permission of an API we do not know.
    pub unknown_resource: &'static str,
    /// Group: permissions that need an administrator everywhere, `{permissions}`.
    pub group_admin: &'static str,
    /// Group: permissions an administrator may classify as low impact (verified publisher, nothing admin-only), `{permissions}`.
    pub group_low: &'static str,
    /// Group: permissions that need no administrator where classifying them would not help, `{permissions}`.
    pub group_low_unverified: &'static str,
    /// Group: permissions we cannot describe, `{permissions}`.
    pub group_unknown: &'static str,
    /// "App: {connector}, application ID {client_id}"
    pub admin_app: &'static str,
    /// One-click approval button.
    pub admin_button: &'static str,
    /// Who can use the button.
    pub admin_button_hint: &'static str,
    /// Heading of the ways to fix it for everyone.
    pub fixes_heading: &'static str,
    /// Fix: grant admin consent (the app may not exist in the tenant yet).
    pub fix_grant: &'static str,
    /// Fix: enable the admin consent workflow.
    pub fix_workflow: &'static str,
    /// Fix: classify as low impact (only offered when it can work), `{permissions}`.
    pub fix_classify: &'static str,
    /// "Message for IT"
    pub message_heading: &'static str,
    /// Copy button.
    pub copy_button: &'static str,
    /// After copying.
    pub copied: &'static str,
    /// The pre-written message for IT.
    pub it_message: &'static str,
    /// "Try again"
    pub try_again: &'static str,
    /// Diagnosis heading.
    pub diagnosis_heading: &'static str,
    /// Diagnosis: scopes added since approval.
    pub diag_new_scopes: &'static str,
    /// Diagnosis: another tenant approved.
    pub diag_other_tenant: &'static str,
    /// Diagnosis: approved, same scopes.
    pub diag_assignment: &'static str,
    /// Thank-you title.
    pub thanks_title: &'static str,
    /// Thank-you text.
    pub thanks_body: &'static str,
    /// Admin cancelled.
    pub consent_cancelled_title: &'static str,
    /// Admin cancelled, text.
    pub consent_cancelled_body: &'static str,
    /// Not an admin.
    pub consent_not_admin_title: &'static str,
    /// Not an admin, text.
    pub consent_not_admin_body: &'static str,
    /// Other admin-consent failure.
    pub consent_failed_title: &'static str,
    /// Another tenant than requested was approved.
    pub consent_wrong_tenant: &'static str,
    /// Entra did not confirm the approval (yet).
    pub consent_unconfirmed_title: &'static str,
    /// Entra shows no consent in the tenant, text with `{connector}` and `{tenant}`.
    pub consent_unconfirmed_body: &'static str,
    /// Entra could not be asked, text with `{connector}` and `{tenant}`.
    pub consent_unavailable_body: &'static str,
    /// Approval link expired or reused.
    pub consent_state_invalid: &'static str,
    /// Approval page not found.
    pub approval_not_found: &'static str,
    /// Out-of-band page title.
    pub connected_title: &'static str,
    /// "{connector} is now connected to your Microsoft account."
    pub connected_lead: &'static str,
    /// Copy instructions with `{connector}`.
    pub connected_code: &'static str,
    /// Error page title.
    pub failed_title: &'static str,
    /// "For your IT team or {connector}: {message}"
    pub failed_for_it: &'static str,
    /// Assignment instructions with `{connector}` and `{client_id}`.
    pub assign_hint: &'static str,
    /// "Back to {connector}"
    pub back_to: &'static str,
    /// The page of each flow error.
    pub flow_errors: FlowErrorTexts,
    /// Shown instead of "continue" on an approval page opened in another browser than the user's.
    pub continue_elsewhere: &'static str,
    /// Link back to the approval page.
    pub back_to_approval: &'static str,
    /// Title when an admin-consent answer's state is unknown or spent.
    pub consent_link_used_title: &'static str,
    /// Title when a spent admin-consent answer's tenant has approved.
    pub consent_already_done_title: &'static str,
    /// Its text, `{connector}`.
    pub consent_already_done_body: &'static str,
    /// Title of an unknown approval page.
    pub approval_not_found_title: &'static str,
    /// `/v1/admin-consent/start` opened without its parameters.
    pub start_incomplete: Message,
    /// A browser at an address the broker does not serve.
    pub page_not_found: Message,
    /// A browser at an address meant for apps (an API error).
    pub api_address: Message,
    /// A browser at an API address that is busy or unavailable (429, 503).
    pub service_busy: Message,
    /// Before the connected account's name.
    pub connected_account: &'static str,
    /// Copies the handoff code.
    pub copy_code: &'static str,
    /// After copying the code.
    pub code_copied: &'static str,
    /// The live countdown, `{time}` as m:ss.
    pub code_expires_in: &'static str,
    /// Without the script: `{minutes}`.
    pub code_expires_at: &'static str,
    /// Once the countdown ran out.
    pub code_expired: &'static str,
    /// After the code, `{connector}`.
    pub close_window: &'static str,
    /// The button of pages without a link to offer.
    pub go_back: &'static str,
    /// Support label: what a developer reads about an invalid parameter.
    pub label_detail: &'static str,
    /// A category as people read it (support details, error pages).
    pub category_name: fn(crate::entra::Category) -> &'static str,
    /// Approved page title.
    pub approved_title: &'static str,
    /// Expired page title.
    pub expired_title: &'static str,
    /// What an expired page says, `{connector}`.
    pub expired_body: &'static str,
    /// "Start again" (back to the connector).
    pub start_again: &'static str,
    /// Shown once the script runs: the page follows its status.
    pub live_note: &'static str,
    /// Shown without JavaScript.
    pub reload_note: &'static str,
    /// Label of the page's own address.
    pub share_label: &'static str,
    /// Copy the page's address.
    pub copy_link: &'static str,
    /// The approved page's one action.
    pub approved_continue: &'static str,
    /// Heading of what was approved, `{connector}`.
    pub approved_list: &'static str,
    /// Retry with another account.
    pub try_other_account: &'static str,
    /// The admin part's disclosure.
    pub admin_toggle: &'static str,
    /// Where the admin button leads, `{host}`.
    pub admin_goes_to: &'static str,
    /// That the permissions are delegated, `{connector}`.
    pub delegated_note: &'static str,
    /// "Published by {publisher}".
    pub published_by: &'static str,
    /// The IT message's publisher line, `{publisher}`.
    pub it_publisher: &'static str,
    /// Verified publisher.
    pub verified_yes: &'static str,
    /// Unverified publisher.
    pub verified_no: &'static str,
    /// Link to the publisher's website.
    pub publisher_site: &'static str,
    /// Link to the privacy statement.
    pub privacy_link: &'static str,
    /// Link to the terms of use.
    pub terms_link: &'static str,
    /// The IT message's first line when the user's sign-in name is known.
    pub it_intro_named: &'static str,
    /// The IT message's first line otherwise.
    pub it_intro_anonymous: &'static str,
    /// Heads the other fixes in the IT message.
    pub it_other_ways: &'static str,
    /// Support label.
    pub label_category: &'static str,
    /// Support label.
    pub label_error_code: &'static str,
    /// Support label.
    pub label_tenant_id: &'static str,
    /// Support label.
    pub label_reference: &'static str,
    /// Support label.
    pub label_request_id: &'static str,
    /// Support label.
    pub label_time: &'static str,
    /// Support label.
    pub label_trace_id: &'static str,
    /// Support label.
    pub label_correlation_id: &'static str,
    /// Copies the support details.
    pub copy_details: &'static str,
    /// Fix when the user sent a request (workflow on).
    pub fix_review: &'static str,
}

/// A page's (title, text); the text may hold `{detail}`.
pub type Message = (&'static str, &'static str);

/// The page texts of the flow errors, one per [`FlowError`] variant.
pub struct FlowErrorTexts {
    /// The connector does not exist.
    pub unknown_connector: Message,
    /// The return URL is not registered.
    pub return_url_not_allowed: Message,
    /// A parameter is invalid (`{detail}` says which).
    pub invalid_parameter: Message,
    /// The connect link is unknown or expired.
    pub unknown_session: Message,
    /// The connect link was already used.
    pub session_completed: Message,
    /// The callback's state is unknown, expired or used.
    pub invalid_state: Message,
    /// Entra's answer could not be verified.
    pub id_token: Message,
    /// Entra is unavailable.
    pub entra_unavailable: Message,
    /// Entra answered outside its protocol.
    pub entra_protocol: Message,
    /// The store failed.
    pub store_unavailable: Message,
    /// Too many sign-ins were started.
    pub rate_limited: Message,
    /// The sign-in was started in another browser.
    pub other_browser: Message,
}

impl FlowErrorTexts {
    /// The (title, text) for a flow error.
    pub fn for_error(&self, e: &FlowError) -> Message {
        match e {
            FlowError::UnknownConnector => self.unknown_connector,
            FlowError::ReturnUrlNotAllowed => self.return_url_not_allowed,
            FlowError::InvalidParameter { .. } => self.invalid_parameter,
            FlowError::UnknownSession => self.unknown_session,
            FlowError::SessionCompleted => self.session_completed,
            FlowError::InvalidState => self.invalid_state,
            FlowError::IdToken(_) => self.id_token,
            FlowError::EntraUnavailable { .. } => self.entra_unavailable,
            FlowError::EntraProtocol(_) => self.entra_protocol,
            FlowError::Store(_) => self.store_unavailable,
            FlowError::RateLimited { .. } => self.rate_limited,
            FlowError::OtherBrowser => self.other_browser,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lang(v: &str) -> Lang {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::ACCEPT_LANGUAGE, v.parse().unwrap());
        Lang::from_headers(&h)
    }

    #[test]
    fn accept_language_picks_the_best_supported() {
        assert_eq!(lang("de-DE,de;q=0.9,en;q=0.8"), Lang::De);
        assert_eq!(lang("fr-FR,de;q=0.5,en;q=0.7"), Lang::En);
        assert_eq!(lang("fr-FR, de;q=0.3"), Lang::De);
        assert_eq!(lang("fr"), Lang::En);
        assert_eq!(lang("garbage;;;q=x,,"), Lang::En);
        assert_eq!(Lang::from_headers(&HeaderMap::new()), Lang::En);
    }

    #[test]
    fn every_flow_error_has_its_own_page_text_in_both_languages() {
        let errors = [
            FlowError::UnknownConnector,
            FlowError::ReturnUrlNotAllowed,
            FlowError::InvalidParameter {
                field: "f",
                message: "m",
            },
            FlowError::UnknownSession,
            FlowError::SessionCompleted,
            FlowError::InvalidState,
            FlowError::IdToken(crate::entra::id_token::IdTokenError::BadSignature),
            FlowError::EntraUnavailable {
                retry_after: std::time::Duration::from_secs(1),
            },
            FlowError::EntraProtocol("p".into()),
            FlowError::Store(crate::store::StoreError::Corrupt {
                key: "k".into(),
                message: "m".into(),
            }),
            FlowError::RateLimited {
                retry_after: std::time::Duration::from_secs(1),
            },
            FlowError::OtherBrowser,
        ];
        for lang in [Lang::En, Lang::De] {
            let pages: Vec<Message> = errors.iter().map(|e| lang.texts().flow_errors.for_error(e)).collect();
            let titles: std::collections::HashSet<&str> = pages.iter().map(|p| p.0).collect();
            let texts: std::collections::HashSet<&str> = pages.iter().map(|p| p.1).collect();
            assert_eq!((titles.len(), texts.len()), (errors.len(), errors.len()), "{lang:?}");
        }
        assert_eq!(
            EN.flow_errors.for_error(&FlowError::OtherBrowser).0,
            "Started in another browser"
        );
        assert_eq!(
            DE.flow_errors.for_error(&FlowError::OtherBrowser).0,
            "In einem anderen Browser begonnen"
        );
    }

    #[test]
    fn fill_replaces_placeholders() {
        assert_eq!(fill("{a} and {b} and {a}", &[("a", "x"), ("b", "y")]), "x and y and x");
    }
}
