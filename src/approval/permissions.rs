//! What each delegated permission lets an app do, in plain words (English and German), and
//! whether it needs admin consent in every tenant. Permissions that do not need admin consent are
//! the ones an admin may classify as "low impact" so users can consent to them themselves.

/// One permission's description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    /// Scope name as Entra shows it (without the Graph resource prefix).
    pub name: &'static str,
    /// Needs admin consent in every tenant.
    pub admin_only: bool,
    /// What it allows, in English.
    pub en: &'static str,
    /// What it allows, in German.
    pub de: &'static str,
}

const fn p(name: &'static str, admin_only: bool, en: &'static str, de: &'static str) -> Permission {
    Permission {
        name,
        admin_only,
        en,
        de,
    }
}

/// Known Microsoft Graph delegated permissions and OIDC scopes.
#[rustfmt::skip]
pub const CATALOGUE: &[Permission] = &[
    p("openid", false, "Sign you in.", "Sie anmelden."),
    p("profile", false, "See your basic profile (name, user name).", "Ihr Basisprofil sehen (Name, Benutzername)."),
    p("email", false, "See your email address.", "Ihre E-Mail-Adresse sehen."),
    p("offline_access", false, "Keep access to the data you allowed, even when you are not using the app.", "Den Zugriff auf die freigegebenen Daten behalten, auch wenn Sie die App gerade nicht verwenden."),
    p("User.Read", false, "Sign you in and read your profile.", "Sie anmelden und Ihr Profil lesen."),
    p("User.ReadBasic.All", false, "Read the basic profiles of everyone in your organization.", "Die Basisprofile aller Personen in Ihrer Organisation lesen."),
    p("User.Read.All", true, "Read the full profiles of everyone in your organization.", "Die vollständigen Profile aller Personen in Ihrer Organisation lesen."),
    p("Files.Read", false, "Read your files.", "Ihre Dateien lesen."),
    p("Files.Read.All", false, "Read all files you can access, including files shared with you.", "Alle Dateien lesen, auf die Sie zugreifen können, auch mit Ihnen geteilte."),
    p("Files.ReadWrite", false, "Read, change and delete your files.", "Ihre Dateien lesen, ändern und löschen."),
    p("Files.ReadWrite.All", false, "Read, change and delete all files you can access.", "Alle Dateien lesen, ändern und löschen, auf die Sie zugreifen können."),
    p("Sites.Read.All", false, "Read items in all SharePoint sites you can access.", "Elemente in allen SharePoint-Websites lesen, auf die Sie zugreifen können."),
    p("Sites.ReadWrite.All", false, "Read and change items in all SharePoint sites you can access.", "Elemente in allen SharePoint-Websites lesen und ändern, auf die Sie zugreifen können."),
    p("Sites.Manage.All", false, "Create, change and delete lists and libraries in SharePoint sites you can access.", "Listen und Bibliotheken in SharePoint-Websites erstellen, ändern und löschen, auf die Sie zugreifen können."),
    p("Sites.FullControl.All", true, "Have full control of all SharePoint sites you can access.", "Vollzugriff auf alle SharePoint-Websites, auf die Sie zugreifen können."),
    p("Mail.Read", false, "Read your email.", "Ihre E-Mails lesen."),
    p("Mail.ReadWrite", false, "Read, change and delete your email.", "Ihre E-Mails lesen, ändern und löschen."),
    p("Mail.Send", false, "Send email as you.", "E-Mails in Ihrem Namen senden."),
    p("Mail.Read.Shared", false, "Read email in mailboxes shared with you.", "E-Mails in freigegebenen Postfächern lesen."),
    p("Calendars.Read", false, "Read your calendars.", "Ihre Kalender lesen."),
    p("Calendars.ReadWrite", false, "Read and change your calendars.", "Ihre Kalender lesen und ändern."),
    p("Contacts.Read", false, "Read your contacts.", "Ihre Kontakte lesen."),
    p("Tasks.ReadWrite", false, "Read and change your tasks.", "Ihre Aufgaben lesen und ändern."),
    p("Notes.Read", false, "Read your OneNote notebooks.", "Ihre OneNote-Notizbücher lesen."),
    p("ChannelMessage.Send", false, "Send messages in Teams channels as you.", "Nachrichten in Teams-Kanälen in Ihrem Namen senden."),
    p("ChannelMessage.Read.All", true, "Read all messages in Teams channels you can access.", "Alle Nachrichten in Teams-Kanälen lesen, auf die Sie zugreifen können."),
    p("Chat.Read", false, "Read your Teams chats.", "Ihre Teams-Chats lesen."),
    p("Chat.ReadWrite", false, "Read and send your Teams chat messages.", "Ihre Teams-Chatnachrichten lesen und senden."),
    p("Team.ReadBasic.All", false, "Read the names and descriptions of teams you belong to.", "Namen und Beschreibungen Ihrer Teams lesen."),
    p("Channel.ReadBasic.All", false, "Read the names and descriptions of channels.", "Namen und Beschreibungen von Kanälen lesen."),
    p("Group.Read.All", true, "Read all groups in your organization.", "Alle Gruppen Ihrer Organisation lesen."),
    p("Group.ReadWrite.All", true, "Read and change all groups in your organization.", "Alle Gruppen Ihrer Organisation lesen und ändern."),
    p("Directory.Read.All", true, "Read your organization's directory data.", "Die Verzeichnisdaten Ihrer Organisation lesen."),
    p("Directory.ReadWrite.All", true, "Read and change your organization's directory data.", "Die Verzeichnisdaten Ihrer Organisation lesen und ändern."),
    p("Reports.Read.All", true, "Read your organization's usage reports.", "Die Nutzungsberichte Ihrer Organisation lesen."),
    p("AuditLog.Read.All", true, "Read your organization's audit log.", "Das Überwachungsprotokoll Ihrer Organisation lesen."),
];

/// The Graph resource prefix Entra adds to unqualified scopes.
pub const GRAPH: &str = "https://graph.microsoft.com/";

/// A scope without the Graph prefix (`https://graph.microsoft.com/Files.Read.All` → `Files.Read.All`).
pub fn short_name(scope: &str) -> &str {
    scope.strip_prefix(GRAPH).unwrap_or(scope)
}

/// True for the OIDC scopes every sign-in carries.
pub fn is_oidc(scope: &str) -> bool {
    matches!(
        short_name(scope).to_ascii_lowercase().as_str(),
        "openid" | "profile" | "email" | "offline_access"
    )
}

/// The catalogue entry for a scope (case-insensitive, Graph prefix ignored).
pub fn describe(scope: &str) -> Option<&'static Permission> {
    let name = short_name(scope);
    CATALOGUE.iter().find(|p| p.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case_and_graph_prefix() {
        assert_eq!(
            describe("https://graph.microsoft.com/files.read.all").map(|p| p.name),
            Some("Files.Read.All")
        );
        assert!(describe("Sites.FullControl.All").unwrap().admin_only);
        assert!(describe("Custom.Scope").is_none());
        assert!(is_oidc("offline_access") && !is_oidc("Mail.Send"));
    }

    #[test]
    fn catalogue_is_unique_and_translated() {
        let mut seen = std::collections::HashSet::new();
        for p in CATALOGUE {
            assert!(seen.insert(p.name.to_ascii_lowercase()), "{}", p.name);
            assert!(!p.en.is_empty() && !p.de.is_empty() && p.en != p.de, "{}", p.name);
        }
    }
}
