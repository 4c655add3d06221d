//! Reading the broker's `/metrics`.

/// `GET {base}/metrics`, asserting a complete OpenMetrics exposition.
pub async fn scrape(http: &reqwest::Client, base: &str) -> String {
    let r = http.get(format!("{base}/metrics")).send().await.expect("scrape");
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap_or_default()
            .starts_with("application/openmetrics-text"),
        "OpenMetrics text format"
    );
    let text = r.text().await.expect("scrape body");
    assert!(text.ends_with("# EOF\n"), "a complete exposition: {text}");
    text
}

/// The value of the sample `name{labels}` (labels exactly as rendered, e.g.
/// `connector="files",category="user_declined"`; empty for none), or 0 when absent.
pub fn sample(text: &str, name: &str, labels: &str) -> f64 {
    let key = if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{labels}}}")
    };
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == key).then(|| v.parse::<f64>().expect("numeric sample"))
        })
        .unwrap_or(0.0)
}
