//! `explain` on 64 KiB of pasted text (the contract's largest), in the shapes that cost the most:
//! plain noise, a sign-in page repeated, a JSON-escaped log, a URL-encoded body, and text dense
//! with codes and phrases. Every text is decoded in several forms and scanned for codes and
//! Entra's wording, so this is the endpoint's worst case.
//!
//! `cargo bench --bench explain` prints the median time per call of each text and the slowest
//! against a 1 ms budget; nothing is asserted (machines are noisy, compare between commits).
//! Under `cargo test --all-targets` it runs a couple of iterations as a smoke test.

use std::hint::black_box;
use std::time::{Duration, Instant};

use consent_broker::entra::explain::{MAX_TEXT, explain};

/// The time a 64 KiB explanation should stay within on a development machine.
const BUDGET: Duration = Duration::from_millis(1);

/// `unit` repeated up to exactly [`MAX_TEXT`] bytes (cut at a char boundary).
fn fill(unit: &str) -> String {
    let mut text = unit.repeat(MAX_TEXT / unit.len() + 1);
    let mut cut = MAX_TEXT;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text
}

fn texts() -> Vec<(&'static str, String)> {
    let page = "Sorry, but we're having trouble signing you in.\nYou don't have access to this\nTroubleshooting details\nError Code: 53003\nRequest Id: 7c839d05-4806-48f2-ba40-bf4128382500\nCorrelation Id: b94f5bce-b15e-48c6-a713-fc07c5c41a77\n";
    let body = r#"{"error":"invalid_grant","error_description":"AADSTS700082: The refresh token has expired due to inactivity.\r\nTrace ID: 7c839d05-4806-48f2-ba40-bf4128382500","error_codes":[700082]}"#;
    let escaped = serde_json::to_string(body).unwrap_or_default();
    let encoded: String = url::form_urlencoded::byte_serialize(body.as_bytes()).collect();
    vec![
        (
            "noise (lorem ipsum)",
            fill("lorem ipsum dolor sit amet, consectetur adipiscing elit "),
        ),
        ("sign-in page repeated", fill(page)),
        (
            "JSON-escaped log lines",
            fill(&format!("level=error msg=\"refresh failed\" body={escaped}\n")),
        ),
        ("URL-encoded bodies", fill(&format!("body={encoded}&"))),
        (
            "codes and phrases",
            fill("AADSTS50076 Need admin approval error=access_denied Error Code: 530099 \\u0027 %3a "),
        ),
        (
            "German page repeated",
            fill("Leider können wir Sie nicht anmelden.\nFehlercode: 53003\nIhre Anmeldung wurde blockiert\n"),
        ),
    ]
}

/// Median time of one `explain` call over `rounds` rounds.
fn median(text: &str, rounds: usize) -> Duration {
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            black_box(explain(black_box(text)));
            start.elapsed()
        })
        .collect();
    times.sort();
    times[rounds / 2]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds = if full { 101 } else { 3 };
    // Warm up: the code table, the phrase set and the regexes are built on first use.
    black_box(explain("AADSTS50076"));
    println!(
        "explain on {} KiB of text ({rounds} rounds, medians per call)",
        MAX_TEXT / 1024
    );
    let mut slowest = Duration::ZERO;
    for (name, text) in texts() {
        let t = median(&text, rounds);
        slowest = slowest.max(t);
        println!("  {name:<26} {:>6} bytes  {t:>10.2?}", text.len());
    }
    let verdict = if slowest <= BUDGET { "within" } else { "OVER" };
    println!("  slowest {slowest:.2?}: {verdict} the {BUDGET:?} budget");
}
