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
    pub code: Option<String>,
    /// A primary link: (label, URL).
    pub action: Option<(String, String)>,
    /// Reference details (category, AADSTS, trace ids) for support.
    pub details: Vec<(String, String)>,
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
}

/// Renders a page with a status.
pub fn render(status: StatusCode, content: &PageContent) -> Response {
    let template = PageTemplate {
        page: content,
        lang: content.lang.code(),
        t: content.lang.texts(),
    };
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "page template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}
