//! "did you mean" hints, after darling's `core/src/error/kind.rs::did_you_mean`.

/// The candidate closest to `typed` when it is close enough (Jaro-Winkler above 0.8).
pub fn did_you_mean<'a, I>(typed: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(typed, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `` `a`, `b`, `c` `` for "expected one of" messages.
pub fn one_of<'a, I>(candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    candidates
        .into_iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `"; did you mean `x`?"` when something is close, else `"; expected one of: .."`.
pub fn hint<'a, I>(typed: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str> + Clone,
{
    match did_you_mean(typed, candidates.clone()) {
        Some(close) => format!("; did you mean `{close}`?"),
        None => format!("; expected one of: {}", one_of(candidates)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names() {
        let fields = ["order_id", "customer_id", "amount"];
        assert_eq!(did_you_mean("custmer_id", fields), Some("customer_id"));
        assert_eq!(did_you_mean("orderid", fields), Some("order_id"));
        assert_eq!(did_you_mean("zzz", fields), None);
    }

    #[test]
    fn hint_lists_choices_when_nothing_is_close() {
        assert_eq!(hint("xyz", ["a", "b"]), "; expected one of: `a`, `b`");
        assert_eq!(hint("nmae", ["name", "key"]), "; did you mean `name`?");
    }
}
