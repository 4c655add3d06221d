//! The table's own checks: the data file loads, lists every published code once, classified and
//! in both languages, and the loader refuses broken data.

use super::*;

/// Every code in Microsoft's published reference (the revision named in aadsts.toml's header).
const PUBLISHED: &[u32] = &[
    16000, 16001, 16002, 16003, 17003, 20001, 20012, 20033, 28002, 28003, 40008, 40009, 40010, 40015, 50000, 50001,
    50002, 50003, 50005, 50006, 50007, 50008, 50010, 50011, 50012, 50013, 50014, 50015, 50017, 50020, 50027, 50029,
    50032, 50033, 50034, 50042, 50043, 50048, 50049, 50050, 50053, 50055, 50056, 50057, 50058, 50059, 50061, 50064,
    50068, 50070, 50071, 50072, 50074, 50076, 50078, 50079, 50085, 50086, 50087, 50088, 50089, 50097, 50098, 50099,
    50100, 50101, 50102, 50103, 50105, 50107, 50108, 50109, 50111, 50117, 50120, 50123, 50124, 50125, 50126, 50127,
    50128, 50129, 50130, 50131, 50132, 50133, 50134, 50135, 50136, 50137, 50138, 50139, 50140, 50141, 50142, 50143,
    50144, 50146, 50147, 50148, 50149, 50150, 50155, 50156, 50157, 50158, 50159, 50160, 50161, 50162, 50163, 50164,
    50165, 50166, 50167, 50168, 50169, 50170, 50171, 50172, 50173, 50176, 50177, 50178, 50180, 50187, 50192, 50194,
    50196, 50197, 50199, 51000, 51001, 51004, 51005, 51006, 52004, 53000, 53001, 53002, 53003, 53004, 53010, 53011,
    54000, 54005, 65001, 65002, 65004, 65005, 67003, 70000, 70001, 70002, 70003, 70004, 70005, 70007, 70008, 70011,
    70012, 70016, 70018, 70019, 70043, 75001, 75003, 75005, 75008, 75011, 75016, 76021, 76026, 80001, 80002, 80005,
    80007, 80010, 80012, 80013, 80014, 81004, 81005, 81006, 81007, 81009, 81010, 81011, 81012, 90002, 90004, 90005,
    90006, 90007, 90008, 90009, 90010, 90012, 90013, 90014, 90015, 90016, 90019, 90020, 90022, 90023, 90024, 90027,
    90033, 90036, 90038, 90043, 90051, 90055, 90056, 90072, 90081, 90082, 90084, 90085, 90086, 90087, 90090, 90091,
    90092, 90093, 90094, 90095, 90099, 90100, 90101, 90102, 90107, 90112, 90114, 90117, 90119, 90120, 90121, 90123,
    90124, 90125, 90126, 90130, 100007, 120000, 120002, 120003, 120004, 120005, 120008, 120011, 120012, 120013, 120014,
    120015, 120016, 120018, 120020, 120021, 130004, 130005, 130006, 130007, 130008, 135010, 135011, 140000, 140001,
    160021, 165004, 165900, 220450, 220501, 221000, 230109, 240001, 240002, 399284, 500011, 500014, 500021, 500022,
    500133, 500141, 500207, 500208, 500212, 500213, 501241, 501461, 501481, 501491, 501621, 530032, 530034, 530035,
    650052, 650054, 650056, 650057, 650059, 700005, 700011, 700016, 700020, 700022, 700023, 700025, 700027, 700030,
    700054, 700082, 700084, 700229, 750054, 900144, 900236, 900382, 900384, 900432, 900561, 900971, 901002, 901011,
    901012, 901014, 1000000, 1000002, 1000031, 1000104, 5000224, 5000819, 5001256, 7000112, 7000114, 7000215, 7000218,
    7000222, 7500514, 7500529, 9001023, 9002313, 9002332, 9002341,
];

#[test]
fn the_table_loads_and_lists_every_published_code() {
    let table = parse(SOURCE).unwrap();
    for code in PUBLISHED {
        assert!(
            table.lookup(*code).is_some(),
            "AADSTS{code} is published but not in the table"
        );
    }
    assert!(table.codes.len() >= PUBLISHED.len());
    assert_eq!(all().len(), table.codes.len());
}

#[test]
fn no_duplicates_no_unclassified_codes_both_languages() {
    let mut seen = HashSet::new();
    for info in all() {
        assert!(seen.insert(info.code), "duplicate {}", info.code);
        let e = &info.entry;
        assert_ne!(e.category, Category::Unknown, "{}", info.code);
        assert_ne!(e.who, WhoFixes::Unknown, "{}", info.code);
        for lang in [Lang::En, Lang::De] {
            let w = e.words(lang);
            assert!(
                !w.meaning.trim().is_empty() && !w.fix.trim().is_empty(),
                "{} {lang:?}",
                info.code
            );
        }
        assert_ne!(e.words(Lang::En), e.words(Lang::De), "{}", info.code);
    }
    let mut raw_count = 0;
    for line in SOURCE.lines() {
        if line.trim_start().starts_with("{ code = ") {
            raw_count += 1;
        }
    }
    assert_eq!(raw_count, all().len(), "every entry line is one code");
}

#[test]
fn the_previous_classification_is_kept() {
    for (code, category, reason, who) in PREVIOUS {
        let e = &lookup(*code).unwrap().entry;
        assert_eq!(
            (e.category, e.reason.as_str(), e.who),
            (*category, *reason, *who),
            "{code}"
        );
    }
    assert!(lookup(50105).unwrap().entry.words(Lang::En).fix.contains("Assign"));
}

#[test]
fn the_loader_refuses_broken_tables() {
    let one = r#"{ code = 1, category = "transient", reason = "x", who = "retry", en = ["a", "b"], de = ["c", "d"] }"#;
    let ok = format!("wrappers = []\ncode = [\n{one},\n]\nfamily = []\n");
    assert!(parse(&ok).is_ok(), "{:?}", parse(&ok).err());
    let cases = [
        (format!("wrappers = []\ncode = [\n{one},\n{one},\n]\nfamily = []\n"), "listed twice"),
        (ok.replace("transient", "something_new"), "no known category"),
        (ok.replace(r#", de = ["c", "d"]"#, ""), "needs both"),
        (ok.replace(r#"["c", "d"]"#, r#"["a", "b"]"#), "German"),
        (ok.replace(r#""c""#, r#""  ""#), "empty"),
        (ok.replace(r#"reason = "x""#, r#"reason = "Bad Reason""#), "snake_case"),
        (ok.replace("wrappers = []", "wrappers = [2]"), "wrapper 2"),
        (ok.replace(r#"en = ["a", "b"], de = ["c", "d"]"#, r#"text = "nope""#), "texts.nope"),
        (
            ok.replace("family = []", "[[family]]\nprefix = \"53\"\ndigits = 2\ncategory = \"transient\"\nreason = \"x\"\nwho = \"retry\"\nen = [\"a\", \"b\"]\nde = [\"c\", \"d\"]"),
            "shorter",
        ),
    ];
    for (source, message) in cases {
        let err = parse(&source).err().unwrap_or_else(|| panic!("accepted: {source}"));
        assert!(err.contains(message), "{err} (wanted {message})");
    }
}

#[test]
fn families_fall_back_by_prefix_and_length() {
    let cases: &[(u32, Category, &str)] = &[
        (530099, Category::ConditionalAccess, "530xxx"),
        (53099, Category::ConditionalAccess, "53xxx"),
        (5000999, Category::TenantMisconfigured, "5000xxx"),
        (500099, Category::TenantMisconfigured, "5000xx"),
        (650099, Category::AppMisconfigured, "650xxx"),
        (65099, Category::ConsentRequired, "65xxx"),
        (7000299, Category::ClientCredentialInvalid, "70002xx"),
        (700089, Category::ReauthRequired, "70008x"),
        (16099, Category::NotAssigned, "16xxx"),
        (50077, Category::InteractionRequired, "5007x"),
        (120099, Category::InteractionRequired, "120xxx"),
        (90039, Category::Transient, "9003x"),
        (9002999, Category::AppMisconfigured, "9002xxx"),
        (80099, Category::TenantMisconfigured, "80xxx"),
    ];
    for (code, category, pattern) in cases {
        assert!(lookup(*code).is_none(), "{code} is listed; pick an unlisted member");
        let f = family(*code).unwrap_or_else(|| panic!("{code} has no family"));
        assert_eq!(
            (f.entry.category, f.pattern().as_str()),
            (*category, *pattern),
            "{code}"
        );
        assert_eq!(resolve(*code), Some(&f.entry));
    }
    // The longest prefix wins, and the length must match.
    assert_eq!(family(530099).unwrap().prefix, "530");
    assert!(family(5300).is_none() && family(53009999).is_none());
    // A listed code keeps its own entry.
    assert_eq!(resolve(53003).unwrap().reason, "blocked_by_policy");
    for f in families() {
        assert!(
            all().iter().any(|c| f.contains(c.code)),
            "family {} has no listed member to take its meaning from",
            f.pattern()
        );
    }
}

#[test]
fn wrappers_are_listed() {
    for code in [70002, 50012] {
        assert!(is_wrapper(code) && lookup(code).is_some(), "{code}");
    }
    assert!(!is_wrapper(54005));
}
