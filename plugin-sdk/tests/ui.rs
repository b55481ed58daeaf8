//! The `#[handler]` macro's diagnostics, checked as compile-fail tests: each
//! file under `tests/ui/` is a mistake a plugin author makes, and its
//! `.stderr` is the one clear error the macro must give for it (pointing at
//! the offending tokens). Regenerate with `TRYBUILD=overwrite` after a
//! deliberate change, and read the diff.

#[test]
fn handler_macro_mistakes_are_one_clear_error() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
