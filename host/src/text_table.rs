//! Plain-text tables for the operator commands (`evhost status`,
//! `evhost consumers list`): rows of cells in columns as wide as their
//! widest cell, two spaces apart, with no trailing spaces.

use std::fmt::Write as _;

/// `rows` (the header first) as aligned lines, each ending in a newline.
pub fn aligned(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_as_wide_as_their_widest_cell_and_lines_end_clean() {
        let rows = vec![
            vec!["NAME".to_string(), "N".to_string(), "NOTE".to_string()],
            vec!["payment".to_string(), "12".to_string(), String::new()],
            vec!["ü".to_string(), "3".to_string(), "x".to_string()],
        ];
        assert_eq!(
            aligned(&rows),
            "NAME     N   NOTE\npayment  12\nü        3   x\n"
        );
        assert_eq!(aligned(&[]), "");
    }
}
