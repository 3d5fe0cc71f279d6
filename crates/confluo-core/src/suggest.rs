//! "Did you mean" suggestions for misspelt names.

/// Returns up to three candidates close to `name`, best first.
///
/// Closeness is the Jaro–Winkler similarity of the lowercase forms; a candidate that
/// contains the name (or is contained by it) also counts, so `orders` finds
/// `bronze.orders_raw`.
pub fn nearest<'a, I>(name: &str, candidates: I) -> Vec<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let needle = name.to_lowercase();
    let mut scored: Vec<(f64, String)> = candidates
        .into_iter()
        .filter_map(|c| {
            let lc = c.to_lowercase();
            if lc == needle {
                return None;
            }
            let last = lc.rsplit('.').next().unwrap_or(&lc);
            let needle_last = needle.rsplit('.').next().unwrap_or(&needle);
            let mut score =
                strsim::jaro_winkler(&needle, &lc).max(strsim::jaro_winkler(needle_last, last));
            if last.contains(needle_last) || needle_last.contains(last) {
                score = score.max(0.85);
            }
            (score >= 0.75).then(|| (score, c.to_string()))
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(3).map(|(_, c)| c).collect()
}

/// Formats suggestions as a hint line, or an empty string when there are none.
pub fn hint(suggestions: &[String]) -> String {
    match suggestions {
        [] => String::new(),
        [one] => format!("\n  hint: did you mean `{one}`?"),
        many => format!(
            "\n  hint: did you mean one of {}?",
            many.iter()
                .map(|s| format!("`{s}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_close_names() {
        let names = [
            "main.bronze.orders",
            "main.bronze.customers",
            "main.silver.order_items",
        ];
        let got = nearest("main.bronze.ordres", names);
        assert_eq!(got.first().map(String::as_str), Some("main.bronze.orders"));
        assert!(nearest("zzzz", names).is_empty());
    }
}
