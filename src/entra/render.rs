//! The explanation as text for people (`consent-broker explain` without `--json`): a block a
//! support person can paste into a ticket, in English or German, that names the category and
//! the codes by their wire names so that it can be searched for.

use super::aadsts::{self, WhoFixes};
use super::explain::Explanation;
use crate::http::i18n::Lang;

struct Labels {
    title: &'static str,
    no_error: &'static str,
    category: &'static str,
    codes: &'static str,
    via_family: &'static str,
    unlisted: &'static str,
    happened: &'static str,
    fix: &'static str,
    who: &'static str,
    oauth_error: &'static str,
    suberror: &'static str,
    trace_id: &'static str,
    correlation_id: &'static str,
    look_up: &'static str,
}

const EN: Labels = Labels {
    title: "Microsoft Entra sign-in error",
    no_error: "No Microsoft Entra error found in the text",
    category: "Category:",
    codes: "Codes:",
    via_family: "not in the table; read as the {family} family",
    unlisted: "not in the table",
    happened: "What happened:",
    fix: "How to fix it:",
    who: "Who fixes it:",
    oauth_error: "OAuth error:",
    suberror: "Suberror:",
    trace_id: "Trace ID:",
    correlation_id: "Correlation ID:",
    look_up: "Look up:",
};

const DE: Labels = Labels {
    title: "Anmeldefehler von Microsoft Entra",
    no_error: "Im Text wurde kein Fehler von Microsoft Entra gefunden",
    category: "Kategorie:",
    codes: "Codes:",
    via_family: "nicht in der Tabelle; gelesen als Familie {family}",
    unlisted: "nicht in der Tabelle",
    happened: "Was passiert ist:",
    fix: "Behebung:",
    who: "Wer es behebt:",
    oauth_error: "OAuth-Fehler:",
    suberror: "Suberror:",
    trace_id: "Trace-ID:",
    correlation_id: "Korrelations-ID:",
    look_up: "Nachschlagen:",
};

/// Who fixes it, in words (the wire name follows in parentheses).
fn who_words(who: WhoFixes, lang: Lang) -> &'static str {
    match (lang, who) {
        (Lang::En, WhoFixes::User) => "the signed-in user",
        (Lang::En, WhoFixes::TenantAdmin) => "an administrator of the user's organization",
        (Lang::En, WhoFixes::ConnectorDeveloper) => "the connector's developer (app registration or request)",
        (Lang::En, WhoFixes::Operator) => "the broker's operator (credentials, configuration)",
        (Lang::En, WhoFixes::Retry) => "nobody: try again later",
        (Lang::En, WhoFixes::Unknown) => "not known",
        (Lang::De, WhoFixes::User) => "der angemeldete Benutzer",
        (Lang::De, WhoFixes::TenantAdmin) => "eine Administration der Organisation des Benutzers",
        (Lang::De, WhoFixes::ConnectorDeveloper) => "die Entwicklung des Connectors (App-Registrierung oder Anfrage)",
        (Lang::De, WhoFixes::Operator) => "der Betrieb des Brokers (Anmeldeinformationen, Konfiguration)",
        (Lang::De, WhoFixes::Retry) => "niemand: später erneut versuchen",
        (Lang::De, WhoFixes::Unknown) => "unbekannt",
    }
}

/// The explanation as text for people, in the explanation's language.
pub fn render_text(explained: &Explanation) -> String {
    let l = match explained.lang {
        Lang::En => &EN,
        Lang::De => &DE,
    };
    let e = &explained.classification;
    let mut out = String::new();
    let found = !e.aadsts.is_empty() || e.category != super::errors::Category::Unknown;
    out.push_str(if found { l.title } else { l.no_error });
    out.push('\n');
    let mut line = |k: &str, v: &str| out.push_str(&format!("{k:<18}{v}\n"));
    match e.reason {
        Some(r) => line(l.category, &format!("{} ({r})", e.category)),
        None => line(l.category, e.category.as_str()),
    }
    if !e.aadsts.is_empty() {
        let codes: Vec<String> = e
            .aadsts
            .iter()
            .map(|c| match (aadsts::lookup(*c), aadsts::family(*c)) {
                (Some(_), _) => format!("AADSTS{c}"),
                (None, Some(f)) => format!("AADSTS{c} ({})", l.via_family.replace("{family}", &f.pattern())),
                (None, None) => format!("AADSTS{c} ({})", l.unlisted),
            })
            .collect();
        line(l.codes, &codes.join(", "));
    }
    line(l.happened, explained.user_message);
    line(l.fix, explained.admin_message);
    line(
        l.who,
        &format!(
            "{} ({})",
            who_words(explained.who_fixes, explained.lang),
            explained.who_fixes.as_str()
        ),
    );
    for (k, v) in [
        (l.oauth_error, &e.oauth_error),
        (l.suberror, &e.suberror),
        (l.trace_id, &e.trace_id),
        (l.correlation_id, &e.correlation_id),
    ] {
        if let Some(v) = v {
            line(k, v);
        }
    }
    if let Some(code) = e.primary_code() {
        line(
            l.look_up,
            &format!("https://login.microsoftonline.com/error?code={code}"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entra::explain::explain_in;

    #[test]
    fn a_ticket_block_in_both_languages() {
        let text = "AADSTS53003: Access has been blocked by Conditional Access policies. Trace ID: 11111111-2222-3333-4444-555555555555";
        let en = render_text(&explain_in(text, Lang::En));
        for part in [
            "Microsoft Entra sign-in error\n",
            "conditional_access (blocked_by_policy)",
            "AADSTS53003",
            "tenant_admin",
            "Trace ID:",
            "error?code=53003",
        ] {
            assert!(en.contains(part), "{part}: {en}");
        }
        let de = render_text(&explain_in(text, Lang::De));
        assert!(
            de.contains("Kategorie:") && de.contains("Sicherheitsrichtlinie") && de.contains("(tenant_admin)"),
            "{de}"
        );
        let family = render_text(&explain_in("AADSTS530099: new", Lang::En));
        assert!(family.contains("530xxx family"), "{family}");
        let none = render_text(&explain_in("hello", Lang::En));
        assert!(
            none.starts_with("No Microsoft Entra error") && none.contains("unknown"),
            "{none}"
        );
    }
}
