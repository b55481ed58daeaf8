//! How errors meet people: always one line. Some causes (wasmparser's, for
//! one) span several lines; [`one_line`] folds them.

/// `text` with every run of whitespace, line breaks included, folded into
/// one space.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_lines_and_runs_of_space() {
        assert_eq!(
            one_line("expected=[\n    0x0,\n    0x61,\n] (at 0)"),
            "expected=[ 0x0, 0x61, ] (at 0)"
        );
        assert_eq!(one_line("plain"), "plain");
    }
}
