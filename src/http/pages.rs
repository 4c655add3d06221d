//! Server-rendered pages (askama templates compiled into the binary).

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::i18n::{Lang, Texts};

/// What a page shows. One template serves every broker page: message, error, copy-this-code.
#[derive(Debug, Clone, Default)]
pub struct PageContent {
    /// The page's language (labels and `lang`).
    pub lang: Lang,
    /// `<title>` and heading.
    pub title: String,
    /// The main sentence.
    pub lead: String,
    /// Further paragraphs.
    pub paragraphs: Vec<String>,
    /// A code to copy (out-of-band handoff).
    pub code: Option<HandoffView>,
    /// A primary link: (label, URL).
    pub action: Option<(String, String)>,
    /// A second link after the primary one: (label, URL).
    pub secondary: Option<(String, String)>,
    /// Without a link to offer: a "go back" button (the script's history.back).
    pub back_button: bool,
    /// Reference details (category, AADSTS, trace ids) for support; the request id and time are
    /// added to every page when it is rendered.
    pub details: Vec<(String, String)>,
}

/// The out-of-band page's code and what goes with it.
#[derive(Debug, Clone, Default)]
pub struct HandoffView {
    /// The code, exactly as it is redeemed.
    pub code: String,
    /// The account that was connected (its sign-in name), when known.
    pub account: Option<String>,
    /// Seconds until the code expires.
    pub expires_in: u64,
    /// When it expires, in words (what the page says without its script).
    pub expiry_text: String,
    /// "You can close this window" once the code is pasted.
    pub close_text: String,
}

impl PageContent {
    /// A page with a title and one sentence.
    pub fn message(title: &str, lead: impl Into<String>) -> Self {
        Self {
            title: title.to_string(),
            lead: lead.into(),
            ..Self::default()
        }
    }
}

#[derive(Template)]
#[template(path = "page.html", config = "src/http/askama.toml")]
struct PageTemplate<'a> {
    page: &'a PageContent,
    lang: &'static str,
    t: &'static Texts,
    details: Vec<(String, String)>,
    /// The details as one text, for the copy button.
    details_text: String,
    /// The code in groups of four, for reading (the field itself holds it whole).
    code_groups: Vec<String>,
    expiry_template: String,
}

/// The support reference every page carries: its own details, then the request id and the time.
pub fn support_details(t: &Texts, own: &[(String, String)]) -> Vec<(String, String)> {
    let mut details = own.to_vec();
    if let Some(id) = super::observe::current_request_id() {
        details.push((t.label_request_id.to_string(), id));
    }
    let now = crate::clock::rfc3339(crate::clock::now_unix());
    details.push((t.label_time.to_string(), format!("{} {}", &now[..10], &now[11..19])));
    details
}

/// The details as lines of "label: value", what the copy button copies.
pub fn details_text(details: &[(String, String)]) -> String {
    details
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Renders a page with a status.
pub fn render(status: StatusCode, content: &PageContent) -> Response {
    let t = content.lang.texts();
    let details = support_details(t, &content.details);
    let code_groups = content.code.as_ref().map_or_else(Vec::new, |c| {
        c.code
            .as_bytes()
            .chunks(4)
            .map(|g| String::from_utf8_lossy(g).into_owned())
            .collect()
    });
    let template = PageTemplate {
        page: content,
        lang: content.lang.code(),
        t,
        details_text: details_text(&details),
        details,
        code_groups,
        expiry_template: t.code_expires_in.to_string(),
    };
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "page template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}
