//! Page languages: English and German, chosen from `Accept-Language`. Every page text lives in
//! one `Texts` value per language, so a missing translation is a compile error, not a blank.
//! Placeholders are `{name}` and are filled with [`fill`].

use axum::http::HeaderMap;

use crate::flow::FlowError;

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
    /// Group: permissions an administrator may classify as low impact, `{permissions}`.
    pub group_low: &'static str,
    /// Group: permissions that need no administrator, for an unverified publisher, `{permissions}`.
    pub group_low_unverified: &'static str,
    /// Group: permissions we cannot describe, `{permissions}`.
    pub group_unknown: &'static str,
    /// Fix 3 when the publisher is not verified, `{connector}`.
    pub classify_unverified: &'static str,
    /// Fix 3 when some permissions need an administrator anyway, `{connector}`, `{permissions}`.
    pub classify_not_enough: &'static str,
    /// "For your IT administrator"
    pub admin_heading: &'static str,
    /// "App: {connector}, application ID {client_id}"
    pub admin_app: &'static str,
    /// One-click approval button.
    pub admin_button: &'static str,
    /// Who can use the button.
    pub admin_button_hint: &'static str,
    /// "Three ways to fix this for everyone"
    pub fixes_heading: &'static str,
    /// Fix 1.
    pub fix_grant: &'static str,
    /// Fix 2.
    pub fix_workflow: &'static str,
    /// Fix 3.
    pub fix_classify: &'static str,
    /// "Message for IT"
    pub message_heading: &'static str,
    /// Copy button.
    pub copy_button: &'static str,
    /// After copying.
    pub copied: &'static str,
    /// The pre-written message.
    pub it_message: &'static str,
    /// "Try again"
    pub try_again: &'static str,
    /// "Continue"
    pub continue_label: &'static str,
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
    /// Copy instructions with `{connector}` and `{minutes}`.
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

/// English.
pub const EN: Texts = Texts {
    details: "Details for support",
    your_code: "Your code",
    code_help: "Select the code and copy it into the app.",
    approval_title: "{connector} needs your organization's approval",
    organization: "Organization: {tenant}",
    your_organization: "your organization",
    status_pending: "Waiting for an administrator to approve {connector}.",
    status_requested: "Your request was sent to your administrators. This page continues by itself when it is approved.",
    status_approved: "Approved. You can continue now.",
    status_expired: "This page has expired. Start again from {connector}.",
    what_now: "What you can do now",
    branch_admin_only: "Your organization lets only administrators approve apps that ask for these permissions. Send the message below to your IT team, or share this page with them. Once they approve, this page continues by itself.",
    branch_requested: "You asked your administrators for approval when you signed in. They will review the request; you will get an email from Microsoft when they decide, and this page continues by itself once they approve.",
    branch_consent: "{connector} needs your permission to access your data. Try again and accept the permissions. If your organization does not let you, send the message below to your IT team.",
    unverified_publisher: "{connector}'s publisher is not verified by Microsoft. Organizations that let users approve only apps from verified publishers need an administrator to approve it.",
    permissions_heading: "What {connector} asks for",
    badge_admin: "needs an administrator's approval in every organization",
    badge_low: "an administrator can mark this as low impact so users can approve it themselves",
    unknown_permission: "A permission without a description here; ask the app's publisher what it allows.",
    on_resource: "{scope} on {resource}",
    unknown_resource: "A permission of an API this page does not know; your administrator can see what it allows in the Microsoft Entra admin center (Enterprise applications > the app > Permissions).",
    group_admin: "Always need an administrator's approval: {permissions}.",
    group_low: "Need no administrator; an administrator may classify them as low impact so users can approve them themselves: {permissions}.",
    group_low_unverified: "Need no administrator in organizations that let users approve any app: {permissions}.",
    group_unknown: "Not described here (check them in the Microsoft Entra admin center): {permissions}.",
    classify_unverified: "Classifying permissions as low impact does not help here: users may approve low-impact permissions only for apps from verified publishers, and {connector}'s publisher is not verified.",
    classify_not_enough: "Classifying permissions as low impact is not enough for {connector}: {permissions} always need an administrator's approval, so an administrator has to grant consent.",
    admin_heading: "For your IT administrator",
    admin_app: "App: {connector}, application (client) ID {client_id}",
    admin_button: "Approve {connector} for the organization",
    admin_button_hint: "Sign in with an administrator account (Global, Cloud Application or Application Administrator). This grants the permissions below for everyone in the organization.",
    fixes_heading: "Three ways to fix this for everyone",
    fix_grant: "Grant tenant-wide admin consent: the button above, or Microsoft Entra admin center > Enterprise applications > {connector} > Permissions > Grant admin consent.",
    fix_workflow: "Enable the admin consent workflow (Enterprise applications > Consent and permissions > Admin consent settings) so users can request approval from inside the sign-in.",
    fix_classify: "Classify these permissions as low impact (Enterprise applications > Consent and permissions > Permission classifications) and allow user consent for low-impact permissions: {permissions}.",
    message_heading: "Message for IT",
    copy_button: "Copy message for IT",
    copied: "Copied.",
    it_message: "Hello IT team,\n\nI would like to use {connector} (application ID {client_id}) with our Microsoft 365 account, but our organization ({tenant}) needs an administrator to approve it first.\n\nIt asks for these permissions:\n{permission_lines}\n\n{advice_lines}\n\nTo approve it for everyone, an administrator can open this link and sign in:\n{admin_link}\n\nOther ways: grant admin consent in the Microsoft Entra admin center (Enterprise applications > {connector} > Permissions) or enable the admin consent workflow. {classify_advice}\n\nReference: {reference}\n\nThank you!",
    try_again: "Try again",
    continue_label: "Continue",
    diagnosis_heading: "Approved, but still not working?",
    diag_new_scopes: "Your organization approved {connector} on {date}, but it now also asks for: {permissions}. An administrator needs to approve it again.",
    diag_other_tenant: "{connector} was approved for another organization, not for {tenant}. Check that you signed in with your work account for the right organization.",
    diag_assignment: "Your organization approved {connector} on {date} for everything it asks for. If sign-in still fails, the app may be limited to assigned users: ask your administrator to assign you to the enterprise application {connector}.",
    thanks_title: "Thank you: {connector} is approved",
    thanks_body: "{connector} can now be used by everyone in your organization ({tenant}). People waiting on an approval page continue by themselves.",
    consent_cancelled_title: "Approval cancelled",
    consent_cancelled_body: "The approval was cancelled. Nothing was changed.",
    consent_not_admin_title: "This account cannot approve apps",
    consent_not_admin_body: "Approving {connector} for the organization needs an administrator account (Global, Cloud Application or Application Administrator). Sign in with such an account, or send the approval link to someone who has one.",
    consent_failed_title: "The approval did not go through",
    consent_wrong_tenant: "A different organization was approved than the one that asked. Nothing was recorded; open the approval link again and sign in with an administrator of the right organization.",
    consent_unconfirmed_title: "We could not confirm the approval yet",
    consent_unconfirmed_body: "Microsoft Entra ID does not show {connector} as approved in your organization ({tenant}) yet, so nothing was recorded. If you just approved it, Microsoft may need a minute to finish: try again shortly. Otherwise approve it with an administrator account of this organization.",
    consent_unavailable_body: "Microsoft Entra ID is not answering right now, so we could not confirm that {connector} was approved in your organization ({tenant}). Nothing was recorded yet. Please try again in a few minutes.",
    consent_state_invalid: "This approval link is unknown, expired or was already used. Open the approval page again to get a fresh link.",
    approval_not_found: "This approval page is unknown or has expired. Start again from the app.",
    connected_title: "You're connected",
    connected_lead: "{connector} is now connected to your Microsoft account.",
    connected_code: "Copy this code and paste it into {connector} to finish. It works once and expires in {minutes} minutes.",
    failed_title: "We couldn't connect your account",
    failed_for_it: "For your IT team or {connector}: {message}",
    assign_hint: "Ask your administrator to assign you to the enterprise application \u{201c}{connector}\u{201d} (application ID {client_id}) under Enterprise applications > Users and groups.",
    back_to: "Back to {connector}",
    flow_errors: FlowErrorTexts {
        unknown_connector: (
            "Unknown app",
            "This sign-in link names an app this service does not know.",
        ),
        return_url_not_allowed: (
            "Sign-in link not allowed",
            "This sign-in link would send you to an address the app has not registered, so it was stopped.",
        ),
        invalid_parameter: ("Invalid sign-in link", "The sign-in link is not valid ({detail})."),
        unknown_session: (
            "Sign-in link expired",
            "This sign-in link is unknown or has expired. Start again from the app.",
        ),
        session_completed: (
            "Already connected",
            "This sign-in link was already used to connect. Return to the app.",
        ),
        invalid_state: (
            "Sign-in expired",
            "This sign-in attempt is unknown, has expired or was already completed. Start again from the app.",
        ),
        id_token: (
            "Sign-in could not be verified",
            "Microsoft's answer to this sign-in could not be verified, so nothing was saved. Start again from the app.",
        ),
        entra_unavailable: (
            "Sign-in service unavailable",
            "Microsoft's sign-in service is busy or unavailable. Please try again in a few minutes.",
        ),
        entra_protocol: (
            "Sign-in failed",
            "Microsoft's sign-in service answered unexpectedly. Please try again later.",
        ),
        store_unavailable: (
            "Temporarily unavailable",
            "This service is temporarily unavailable. Please try again in a minute.",
        ),
        rate_limited: (
            "Too many attempts",
            "Too many sign-ins were started in a short time. Please wait a minute and try again.",
        ),
        other_browser: (
            "Started in another browser",
            "This sign-in was started in another browser, or this browser did not keep its cookie. For your security a sign-in can only finish in the browser where it began. Go back to the app and start again here.",
        ),
    },
    continue_elsewhere: "Only the person who asked for approval can continue, in the browser where they signed in. If that is you, go back to the app and start the sign-in again.",
};

/// German.
pub const DE: Texts = Texts {
    details: "Details für den Support",
    your_code: "Ihr Code",
    code_help: "Markieren Sie den Code und kopieren Sie ihn in die App.",
    approval_title: "{connector} braucht die Freigabe Ihrer Organisation",
    organization: "Organisation: {tenant}",
    your_organization: "Ihre Organisation",
    status_pending: "Wartet auf die Freigabe von {connector} durch eine Administratorin oder einen Administrator.",
    status_requested: "Ihre Anfrage wurde an Ihre Administratoren gesendet. Diese Seite geht von selbst weiter, sobald sie freigegeben ist.",
    status_approved: "Freigegeben. Sie können jetzt fortfahren.",
    status_expired: "Diese Seite ist abgelaufen. Beginnen Sie erneut in {connector}.",
    what_now: "Was Sie jetzt tun können",
    branch_admin_only: "In Ihrer Organisation dürfen nur Administratoren Apps freigeben, die diese Berechtigungen anfordern. Senden Sie die Nachricht unten an Ihre IT oder teilen Sie diese Seite. Sobald sie freigegeben ist, geht diese Seite von selbst weiter.",
    branch_requested: "Sie haben bei der Anmeldung eine Freigabe bei Ihren Administratoren angefragt. Sie prüfen die Anfrage; Microsoft benachrichtigt Sie per E-Mail, und diese Seite geht nach der Freigabe von selbst weiter.",
    branch_consent: "{connector} braucht Ihre Zustimmung für den Zugriff auf Ihre Daten. Versuchen Sie es erneut und stimmen Sie den Berechtigungen zu. Wenn Ihre Organisation das nicht erlaubt, senden Sie die Nachricht unten an Ihre IT.",
    unverified_publisher: "Der Herausgeber von {connector} ist nicht von Microsoft verifiziert. Organisationen, in denen Benutzer nur Apps verifizierter Herausgeber freigeben dürfen, brauchen dafür eine Administratorin oder einen Administrator.",
    permissions_heading: "Was {connector} anfordert",
    badge_admin: "braucht in jeder Organisation die Freigabe durch Administratoren",
    badge_low: "Administratoren können dies als geringes Risiko einstufen, damit Benutzer selbst zustimmen können",
    unknown_permission: "Eine Berechtigung ohne Beschreibung; fragen Sie den Herausgeber der App, was sie erlaubt.",
    on_resource: "{scope} für {resource}",
    unknown_resource: "Eine Berechtigung einer API, die diese Seite nicht kennt; Ihre Administration sieht im Microsoft Entra Admin Center, was sie erlaubt (Unternehmensanwendungen > die App > Berechtigungen).",
    group_admin: "Brauchen immer die Freigabe einer Administratorin oder eines Administrators: {permissions}.",
    group_low: "Brauchen keine Administration; Administratoren können sie als geringes Risiko einstufen, damit Benutzer selbst zustimmen können: {permissions}.",
    group_low_unverified: "Brauchen keine Administration in Organisationen, in denen Benutzer jeder App zustimmen dürfen: {permissions}.",
    group_unknown: "Hier nicht beschrieben (im Microsoft Entra Admin Center prüfen): {permissions}.",
    classify_unverified: "Berechtigungen als geringes Risiko einzustufen hilft hier nicht: Benutzer dürfen Berechtigungen mit geringem Risiko nur Apps verifizierter Herausgeber erteilen, und der Herausgeber von {connector} ist nicht verifiziert.",
    classify_not_enough: "Berechtigungen als geringes Risiko einzustufen reicht für {connector} nicht: {permissions} brauchen immer die Freigabe einer Administratorin oder eines Administrators, daher muss die Administration zustimmen.",
    admin_heading: "Für Ihre IT-Administration",
    admin_app: "App: {connector}, Anwendungs-ID (Client-ID) {client_id}",
    admin_button: "{connector} für die Organisation freigeben",
    admin_button_hint: "Melden Sie sich mit einem Administratorkonto an (Globaler Administrator, Cloudanwendungs- oder Anwendungsadministrator). Damit werden die Berechtigungen unten für alle in der Organisation erteilt.",
    fixes_heading: "Drei Wege, das für alle zu lösen",
    fix_grant: "Mandantenweite Administratorzustimmung erteilen: die Schaltfläche oben oder Microsoft Entra Admin Center > Unternehmensanwendungen > {connector} > Berechtigungen > Administratorzustimmung erteilen.",
    fix_workflow: "Den Workflow für Administratorzustimmung aktivieren (Unternehmensanwendungen > Zustimmung und Berechtigungen > Einstellungen für die Administratorzustimmung), damit Benutzer die Freigabe direkt bei der Anmeldung anfragen können.",
    fix_classify: "Diese Berechtigungen als geringes Risiko einstufen (Unternehmensanwendungen > Zustimmung und Berechtigungen > Berechtigungsklassifizierungen) und Benutzerzustimmung für Berechtigungen mit geringem Risiko erlauben: {permissions}.",
    message_heading: "Nachricht an die IT",
    copy_button: "Nachricht für die IT kopieren",
    copied: "Kopiert.",
    it_message: "Hallo IT-Team,\n\nich möchte {connector} (Anwendungs-ID {client_id}) mit unserem Microsoft-365-Konto verwenden, aber unsere Organisation ({tenant}) braucht dafür zuerst die Freigabe einer Administratorin oder eines Administrators.\n\nDie App fordert diese Berechtigungen an:\n{permission_lines}\n\n{advice_lines}\n\nUm sie für alle freizugeben, kann ein Administrator diesen Link öffnen und sich anmelden:\n{admin_link}\n\nAndere Wege: Administratorzustimmung im Microsoft Entra Admin Center erteilen (Unternehmensanwendungen > {connector} > Berechtigungen) oder den Workflow für Administratorzustimmung aktivieren. {classify_advice}\n\nReferenz: {reference}\n\nVielen Dank!",
    try_again: "Erneut versuchen",
    continue_label: "Weiter",
    diagnosis_heading: "Freigegeben, aber es funktioniert trotzdem nicht?",
    diag_new_scopes: "Ihre Organisation hat {connector} am {date} freigegeben, aber die App fordert jetzt zusätzlich an: {permissions}. Ein Administrator muss sie erneut freigeben.",
    diag_other_tenant: "{connector} wurde für eine andere Organisation freigegeben, nicht für {tenant}. Prüfen Sie, ob Sie mit dem Arbeitskonto der richtigen Organisation angemeldet sind.",
    diag_assignment: "Ihre Organisation hat {connector} am {date} für alles freigegeben, was die App anfordert. Wenn die Anmeldung trotzdem scheitert, ist die App vielleicht auf zugewiesene Benutzer beschränkt: Bitten Sie Ihre Administration, Sie der Unternehmensanwendung {connector} zuzuweisen.",
    thanks_title: "Vielen Dank: {connector} ist freigegeben",
    thanks_body: "{connector} kann jetzt von allen in Ihrer Organisation ({tenant}) verwendet werden. Wer auf einer Freigabeseite wartet, kann von selbst weitermachen.",
    consent_cancelled_title: "Freigabe abgebrochen",
    consent_cancelled_body: "Die Freigabe wurde abgebrochen. Es wurde nichts geändert.",
    consent_not_admin_title: "Dieses Konto kann keine Apps freigeben",
    consent_not_admin_body: "Um {connector} für die Organisation freizugeben, braucht es ein Administratorkonto (Globaler Administrator, Cloudanwendungs- oder Anwendungsadministrator). Melden Sie sich mit einem solchen Konto an oder senden Sie den Freigabelink an jemanden, der eines hat.",
    consent_failed_title: "Die Freigabe hat nicht geklappt",
    consent_wrong_tenant: "Freigegeben wurde eine andere Organisation als die anfragende. Es wurde nichts gespeichert; öffnen Sie den Freigabelink erneut und melden Sie sich als Administrator der richtigen Organisation an.",
    consent_unconfirmed_title: "Wir konnten die Freigabe noch nicht bestätigen",
    consent_unconfirmed_body: "Microsoft Entra ID zeigt {connector} in Ihrer Organisation ({tenant}) noch nicht als freigegeben an, daher wurde nichts gespeichert. Wenn Sie die App gerade freigegeben haben, braucht Microsoft eventuell noch einen Moment: Versuchen Sie es gleich noch einmal. Andernfalls geben Sie die App mit einem Administratorkonto dieser Organisation frei.",
    consent_unavailable_body: "Microsoft Entra ID antwortet gerade nicht, daher konnten wir nicht bestätigen, dass {connector} in Ihrer Organisation ({tenant}) freigegeben wurde. Es wurde noch nichts gespeichert. Bitte versuchen Sie es in ein paar Minuten erneut.",
    consent_state_invalid: "Dieser Freigabelink ist unbekannt, abgelaufen oder wurde bereits verwendet. Öffnen Sie die Freigabeseite erneut, um einen neuen Link zu erhalten.",
    approval_not_found: "Diese Freigabeseite ist unbekannt oder abgelaufen. Beginnen Sie erneut in der App.",
    connected_title: "Sie sind verbunden",
    connected_lead: "{connector} ist jetzt mit Ihrem Microsoft-Konto verbunden.",
    connected_code: "Kopieren Sie diesen Code und fügen Sie ihn in {connector} ein, um abzuschließen. Er funktioniert einmal und läuft in {minutes} Minuten ab.",
    failed_title: "Wir konnten Ihr Konto nicht verbinden",
    failed_for_it: "Für Ihre IT oder {connector}: {message}",
    assign_hint: "Bitten Sie Ihre Administration, Sie der Unternehmensanwendung \u{201e}{connector}\u{201c} (Anwendungs-ID {client_id}) unter Unternehmensanwendungen > Benutzer und Gruppen zuzuweisen.",
    back_to: "Zurück zu {connector}",
    flow_errors: FlowErrorTexts {
        unknown_connector: (
            "Unbekannte App",
            "Dieser Anmeldelink nennt eine App, die dieser Dienst nicht kennt.",
        ),
        return_url_not_allowed: (
            "Anmeldelink nicht erlaubt",
            "Dieser Anmeldelink würde Sie zu einer Adresse schicken, die die App nicht registriert hat; er wurde deshalb gestoppt.",
        ),
        invalid_parameter: ("Ungültiger Anmeldelink", "Der Anmeldelink ist ungültig ({detail})."),
        unknown_session: (
            "Anmeldelink abgelaufen",
            "Dieser Anmeldelink ist unbekannt oder abgelaufen. Beginnen Sie erneut in der App.",
        ),
        session_completed: (
            "Bereits verbunden",
            "Dieser Anmeldelink wurde bereits verwendet. Kehren Sie zur App zurück.",
        ),
        invalid_state: (
            "Anmeldung abgelaufen",
            "Dieser Anmeldeversuch ist unbekannt, abgelaufen oder bereits abgeschlossen. Beginnen Sie erneut in der App.",
        ),
        id_token: (
            "Anmeldung konnte nicht geprüft werden",
            "Die Antwort von Microsoft auf diese Anmeldung konnte nicht geprüft werden; es wurde nichts gespeichert. Beginnen Sie erneut in der App.",
        ),
        entra_unavailable: (
            "Anmeldedienst nicht verfügbar",
            "Der Anmeldedienst von Microsoft ist ausgelastet oder nicht erreichbar. Bitte versuchen Sie es in einigen Minuten erneut.",
        ),
        entra_protocol: (
            "Anmeldung fehlgeschlagen",
            "Der Anmeldedienst von Microsoft hat unerwartet geantwortet. Bitte versuchen Sie es später erneut.",
        ),
        store_unavailable: (
            "Vorübergehend nicht verfügbar",
            "Dieser Dienst ist vorübergehend nicht verfügbar. Bitte versuchen Sie es in einer Minute erneut.",
        ),
        rate_limited: (
            "Zu viele Versuche",
            "In kurzer Zeit wurden zu viele Anmeldungen gestartet. Bitte warten Sie eine Minute und versuchen Sie es erneut.",
        ),
        other_browser: (
            "In einem anderen Browser begonnen",
            "Diese Anmeldung wurde in einem anderen Browser begonnen, oder dieser Browser hat ihr Cookie nicht behalten. Zu Ihrer Sicherheit kann eine Anmeldung nur in dem Browser abgeschlossen werden, in dem sie begonnen hat. Kehren Sie zur App zurück und beginnen Sie hier erneut.",
        ),
    },
    continue_elsewhere: "Nur die Person, die die Freigabe angefragt hat, kann fortfahren, in dem Browser, in dem sie sich angemeldet hat. Wenn Sie das sind, kehren Sie zur App zurück und beginnen Sie die Anmeldung erneut.",
};

/// German plain-words messages per category: (for the user, for the admin). The per-code table is
/// English; German pages use these category-level texts.
pub fn category_messages_de(category: crate::entra::Category) -> (&'static str, &'static str) {
    use crate::entra::Category::*;
    match category {
        AdminApprovalRequired => (
            "Ihre Organisation muss diese App freigeben, bevor Sie sie verwenden können.",
            "Eine Administratorin oder ein Administrator muss der App für die angeforderten Berechtigungen mandantenweit zustimmen.",
        ),
        ConsentRequired => (
            "Diese App braucht Ihre Zustimmung für den Zugriff auf Ihre Daten. Melden Sie sich erneut an und stimmen Sie zu, oder fragen Sie Ihre Administration.",
            "Die Zustimmung fehlt; Benutzer können zustimmen, wenn der Mandant es erlaubt, sonst ist eine Administratorzustimmung nötig.",
        ),
        UserDeclined => (
            "Die Anmeldung wurde abgebrochen oder die Berechtigungen wurden abgelehnt. Sie können es erneut versuchen.",
            "Der Benutzer hat abgelehnt; es ist nichts zu beheben, außer er konnte nicht zustimmen.",
        ),
        NotAssigned => (
            "Ihr Konto darf diese App nicht verwenden. Prüfen Sie, ob Sie das richtige Konto verwenden, oder bitten Sie Ihre Administration um Zugriff.",
            "Weisen Sie den Benutzer (oder eine Gruppe) der Unternehmensanwendung zu oder prüfen Sie, ob das Konto aktiv ist und zu diesem Mandanten gehört.",
        ),
        ConditionalAccess => (
            "Eine Richtlinie Ihrer Organisation hat diese Anmeldung blockiert (Gerät, Standort oder App-Regeln).",
            "Eine Richtlinie für bedingten Zugriff oder eine Mandantenrichtlinie blockiert diese App; prüfen Sie den Anmeldeprotokolleintrag.",
        ),
        InteractionRequired => (
            "Sie müssen einen zusätzlichen Anmeldeschritt abschließen (etwa die mehrstufige Authentifizierung). Melden Sie sich erneut an.",
            "Der Benutzer muss einen interaktiven Schritt abschließen (MFA, Kennwortänderung); am Mandanten ist nichts zu ändern.",
        ),
        ReauthRequired => (
            "Ihre Anmeldung ist abgelaufen oder wurde widerrufen. Bitte melden Sie sich erneut an.",
            "Die Berechtigung zur Aktualisierung ist abgelaufen oder wurde widerrufen; der Benutzer muss sich neu verbinden.",
        ),
        AppMisconfigured => (
            "Die Anmeldung dieser App ist falsch eingerichtet. Wenden Sie sich an den Support der App.",
            "Die App-Registrierung oder Anfrage des Connectors ist fehlerhaft (Umleitungs-URI, Berechtigungen oder Anwendungs-ID).",
        ),
        TenantMisconfigured => (
            "Im Verzeichnis Ihrer Organisation fehlt etwas, das diese App braucht. Wenden Sie sich an Ihre Administration.",
            "Der Mandant wurde nicht gefunden, hat kein Abonnement oder Dienst, oder gehört zu einer anderen Cloud.",
        ),
        ClientCredentialInvalid => (
            "Der Dienst hat gerade Probleme bei der Anmeldung. Bitte versuchen Sie es später erneut.",
            "Der geheime Clientschlüssel oder das Zertifikat des Connectors ist ungültig oder abgelaufen; der Betreiber muss es erneuern.",
        ),
        Transient => (
            "Der Anmeldedienst von Microsoft ist ausgelastet oder nicht erreichbar. Bitte versuchen Sie es in einigen Minuten erneut.",
            "Entra hat einen vorübergehenden Fehler oder eine Drosselung gemeldet; später erneut versuchen.",
        ),
        InvalidRequest => (
            "Dieser Anmeldelink ist ungültig oder wurde bereits verwendet. Beginnen Sie erneut in der App.",
            "Die Anfrage an den Broker war fehlerhaft, wiederholt oder manipuliert.",
        ),
        Unknown => (
            "Bei der Anmeldung ist etwas schiefgegangen. Bitte versuchen Sie es erneut oder wenden Sie sich an den Support der App.",
            "Der Fehler konnte nicht eingeordnet werden; suchen Sie die Trace- und Korrelations-ID im Entra-Anmeldeprotokoll.",
        ),
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
