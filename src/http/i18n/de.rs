//! The German page texts.

use super::{FlowErrorTexts, Texts};

/// German.
pub const DE: Texts = Texts {
    details: "Details für den Support",
    your_code: "Ihr Code",
    code_help: "Der Code ist zum Lesen in Vierergruppen gezeigt; er wird in einem Stück ohne Leerzeichen kopiert.",
    approval_title: "{connector} braucht die Freigabe Ihrer Organisation",
    organization: "Organisation: {tenant}",
    your_organization: "Ihre Organisation",
    status_pending: "Wartet auf die Freigabe von {connector} durch eine Administratorin oder einen Administrator.",
    status_requested: "Ihre Anfrage liegt bei Ihren Administratoren.",
    status_approved: "Freigegeben. Sie können jetzt fortfahren.",
    status_expired: "Diese Seite ist abgelaufen.",
    what_now: "Was Sie jetzt tun können",
    branch_admin_only: "In Ihrer Organisation dürfen nur Administratoren Apps freigeben, die diese Berechtigungen anfordern. Senden Sie die Nachricht unten an Ihre IT oder geben Sie ihr die Adresse dieser Seite.",
    branch_requested: "Sie haben bei der Anmeldung eine Freigabe bei Ihren Administratoren angefragt. Sie prüfen sie im Microsoft Entra Admin Center, und Microsoft benachrichtigt Sie per E-Mail über die Entscheidung. Um es zu beschleunigen, senden Sie ihnen die Nachricht unten oder die Adresse dieser Seite.",
    branch_consent: "{connector} braucht Ihre Zustimmung für den Zugriff auf Ihre Daten. Versuchen Sie es erneut und stimmen Sie den Berechtigungen zu. Wenn Ihre Organisation das nicht erlaubt, senden Sie die Nachricht unten an Ihre IT.",
    unverified_publisher: "Der Herausgeber von {connector} ist nicht von Microsoft verifiziert. Organisationen, in denen Benutzer nur Apps verifizierter Herausgeber freigeben dürfen, brauchen dafür eine Administratorin oder einen Administrator.",
    permissions_heading: "Was {connector} anfordert",
    badge_admin: "braucht in jeder Organisation die Freigabe durch Administratoren",
    badge_low: "Administratoren können dies als geringes Risiko einstufen, damit Benutzer selbst zustimmen können",
    unknown_permission: "Eine Berechtigung ohne Beschreibung; fragen Sie den Herausgeber der App, was sie erlaubt.",
    on_resource: "{scope} für {resource}",
    unknown_resource: "Eine Berechtigung einer API, die diese Seite nicht kennt; fragen Sie den Herausgeber der App, was sie erlaubt.",
    group_admin: "Brauchen immer die Freigabe einer Administratorin oder eines Administrators: {permissions}.",
    group_low: "Brauchen keine Administration; Administratoren können sie als geringes Risiko einstufen, damit Benutzer selbst zustimmen können: {permissions}.",
    group_low_unverified: "Brauchen keine Administration in Organisationen, in denen Benutzer jeder App zustimmen dürfen: {permissions}.",
    group_unknown: "Hier nicht beschrieben (im Microsoft Entra Admin Center prüfen): {permissions}.",
    admin_app: "App: {connector}, Anwendungs-ID (Client-ID) {client_id}",
    admin_button: "{connector} für die Organisation freigeben",
    admin_button_hint: "Melden Sie sich mit einem Administratorkonto an (Globaler Administrator, Cloudanwendungs- oder Anwendungsadministrator). Damit werden die Berechtigungen unten für alle in der Organisation erteilt.",
    fixes_heading: "Wege, das für alle zu lösen",
    fix_grant: "Mandantenweite Administratorzustimmung mit der Schaltfläche oben erteilen. {connector} erscheint unter Unternehmensanwendungen erst, wenn jemand zugestimmt hat; bis dahin ist dieser Link der Weg zur Freigabe.",
    fix_workflow: "Den Workflow für Administratorzustimmung aktivieren (Microsoft Entra Admin Center > Identität > Anwendungen > Unternehmensanwendungen > Zustimmung und Berechtigungen > Einstellungen für die Administratorzustimmung), damit Benutzer die Freigabe direkt bei der Anmeldung anfragen können.",
    fix_classify: "Diese Berechtigungen als geringes Risiko einstufen (Microsoft Entra Admin Center > Identität > Anwendungen > Unternehmensanwendungen > Zustimmung und Berechtigungen > Berechtigungsklassifizierungen) und Benutzerzustimmung für Apps verifizierter Herausgeber erlauben: {permissions}.",
    message_heading: "Nachricht an die IT",
    copy_button: "Nachricht für die IT kopieren",
    copied: "Kopiert.",
    it_message: "Hallo IT-Team,\n\n{intro}\n\nApp: {connector}, Anwendungs-ID (Client-ID) {client_id}\n{publisher_line}\n\nSie fordert diese delegierten Berechtigungen an (sie erreicht nur, was die jeweils angemeldete Person erreicht):\n{permission_lines}\n\n{advice_lines}\n\nUm sie für alle freizugeben, kann eine Administratorin oder ein Administrator diesen Link öffnen; er führt zur Seite für die Administratorzustimmung von Microsoft ({entra_host}):\n{admin_link}\n\n{other_ways}\n\nDie Freigabeseite: {page_url}\nReferenz: {reference}\n\nVielen Dank!",
    try_again: "Erneut versuchen",
    diagnosis_heading: "Freigegeben, aber es funktioniert trotzdem nicht?",
    diag_new_scopes: "Ihre Organisation hat {connector} am {date} freigegeben, aber die App fordert jetzt zusätzlich an: {permissions}. Ein Administrator muss sie erneut freigeben.",
    diag_other_tenant: "{connector} wurde für eine andere Organisation freigegeben, nicht für {tenant}. Prüfen Sie, ob Sie mit dem Arbeitskonto der richtigen Organisation angemeldet sind.",
    diag_assignment: "Ihre Organisation hat {connector} am {date} für alles freigegeben, was die App anfordert. Wenn die Anmeldung trotzdem scheitert, ist die App vielleicht auf zugewiesene Benutzer beschränkt: Bitten Sie Ihre Administration, Sie ihr zuzuweisen (Microsoft Entra Admin Center > Identität > Anwendungen > Unternehmensanwendungen > {connector} > Benutzer und Gruppen).",
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
    connected_code: "Kopieren Sie diesen Code und fügen Sie ihn in {connector} ein, um abzuschließen.",
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
        invalid_parameter: (
            "Ungültiger Anmeldelink",
            "Der Anmeldelink ist ungültig: Sein Teil \u{201e}{detail}\u{201c} fehlt oder ist falsch. Beginnen Sie erneut in der App.",
        ),
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
    back_to_approval: "Zurück zur Freigabeseite",
    consent_link_used_title: "Dieser Freigabelink wurde bereits verwendet",
    consent_already_done_title: "Diese Freigabe ist bereits gespeichert",
    consent_already_done_body: "{connector} ist für Ihre Organisation freigegeben; hier ist nichts mehr zu tun. Wer auf einer Freigabeseite wartet, kann fortfahren.",
    approval_not_found_title: "Freigabeseite nicht gefunden",
    start_incomplete: (
        "Dieser Freigabelink ist unvollständig",
        "Dem Link fehlt ein Teil seiner Adresse. Öffnen Sie die Freigabeseite erneut und verwenden Sie deren Schaltfläche, oder bitten Sie die Person, die den Link geschickt hat, um den vollständigen.",
    ),
    page_not_found: (
        "Seite nicht gefunden",
        "Unter dieser Adresse gibt es nichts. Prüfen Sie den Link oder kehren Sie zur App zurück, von der Sie kamen.",
    ),
    api_address: (
        "Diese Adresse ist für Apps",
        "Diese Adresse verwenden Apps, die mit diesem Dienst verbunden sind, kein Browser. Kehren Sie zur App zurück, von der Sie kamen.",
    ),
    service_busy: (
        "Vorübergehend nicht verfügbar",
        "Dieser Dienst ist ausgelastet oder vorübergehend nicht verfügbar. Bitte versuchen Sie es in einer Minute erneut.",
    ),
    connected_account: "Verbundenes Konto:",
    copy_code: "Code kopieren",
    code_copied: "Code kopiert.",
    code_expires_in: "Der Code läuft in {time} ab.",
    code_expires_at: "Der Code funktioniert einmal und läuft {minutes} Minuten nach dem Öffnen dieser Seite ab.",
    code_expired: "Der Code ist abgelaufen. Beginnen Sie erneut in der App.",
    close_window: "Sobald Sie den Code in {connector} eingefügt haben, können Sie dieses Fenster schließen.",
    go_back: "Zurück",
    label_detail: "Detail",
    category_name: category_name_de,
    approved_title: "{connector} ist freigegeben",
    expired_title: "Diese Freigabeseite ist abgelaufen",
    expired_body: "Sie hat 24 Stunden auf eine Freigabe gewartet. Beginnen Sie erneut in {connector}: Wenn Ihre Organisation die App bis dahin freigegeben hat, geht es direkt weiter.",
    start_again: "Neu beginnen",
    live_note: "Diese Seite aktualisiert sich von selbst, sobald die Freigabe erteilt ist.",
    reload_note: "Laden Sie diese Seite neu, um zu prüfen, ob die Freigabe erteilt wurde.",
    share_label: "Die Adresse dieser Seite, zum Weitergeben an Ihre IT",
    copy_link: "Link kopieren",
    approved_continue: "Freigegeben — weiter",
    approved_list: "Was Ihre Organisation für {connector} freigegeben hat",
    try_other_account: "Mit einem anderen Konto anmelden",
    admin_toggle: "Ich bin Administrator/in",
    admin_goes_to: "Öffnet die Seite für die Administratorzustimmung von Microsoft unter {host}: Dort melden Sie sich an, prüfen die Berechtigungen und stimmen zu.",
    delegated_note: "Das sind delegierte Berechtigungen: {connector} handelt für die jeweils angemeldete Person und erreicht nur, was diese Person erreichen kann.",
    published_by: "Herausgeber: {publisher}",
    it_publisher: "Herausgeber: {publisher}",
    verified_yes: "Herausgeber von Microsoft verifiziert",
    verified_no: "Herausgeber nicht von Microsoft verifiziert",
    publisher_site: "Website des Herausgebers",
    privacy_link: "Datenschutzerklärung",
    terms_link: "Nutzungsbedingungen",
    it_intro_named: "Ich ({user}) habe am {when} versucht, mich bei {connector} anzumelden, aber unsere Organisation ({tenant}) braucht dafür zuerst die Freigabe einer Administratorin oder eines Administrators.",
    it_intro_anonymous: "Ich habe am {when} versucht, mich bei {connector} anzumelden, aber unsere Organisation ({tenant}) braucht dafür zuerst die Freigabe einer Administratorin oder eines Administrators.",
    it_other_ways: "Andere Wege:",
    label_category: "Kategorie",
    label_error_code: "Fehlercode",
    label_tenant_id: "Mandanten-ID",
    label_reference: "Referenz",
    label_request_id: "Anfrage-ID",
    label_time: "Zeit (UTC)",
    label_trace_id: "Trace-ID",
    label_correlation_id: "Korrelations-ID",
    copy_details: "Details kopieren",
    fix_review: "Oder die Anfrage genehmigen: Microsoft Entra Admin Center > Identität > Anwendungen > Unternehmensanwendungen > Administratorzustimmungsanfragen.",
};

/// A category as a reader of this language calls it.
fn category_name_de(category: crate::entra::Category) -> &'static str {
    use crate::entra::Category::*;
    match category {
        AdminApprovalRequired => "Freigabe durch die Administration nötig",
        ConsentRequired => "Zustimmung nötig",
        UserDeclined => "Bei der Anmeldung abgelehnt",
        NotAssigned => "Konto der App nicht zugewiesen",
        ConditionalAccess => "Durch eine Richtlinie der Organisation blockiert",
        InteractionRequired => "Zusätzlicher Anmeldeschritt nötig",
        ReauthRequired => "Anmeldung abgelaufen",
        AppMisconfigured => "App falsch eingerichtet",
        TenantMisconfigured => "Organisation falsch eingerichtet",
        ClientCredentialInvalid => "Anmeldedaten der App ungültig",
        Transient => "Vorübergehendes Problem",
        InvalidRequest => "Ungültige Anfrage",
        Unknown => "Unbekannter Fehler",
    }
}

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
