//! The command line's own promises, checked on the built binary: help lists
//! every command, and a usage mistake is one clear line and exit code 2.
//! (This integration test also makes `cargo test --workspace` build the
//! `evhost` binary that the end-to-end tests in `tests/` run.)

use std::process::Command;

fn evhost(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_evhost"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("run evhost")
}

#[test]
fn help_lists_every_command() {
    let out = evhost(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    // The names in clap's "Commands:" section: the first word of each
    // indented line until the next blank line.
    let listed: Vec<&str> = text
        .lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    for command in [
        "run", "dev", "pub", "invoke", "check", "dlq", "build", "new",
    ] {
        assert!(
            listed.contains(&command),
            "help does not list the command {command} (listed: {listed:?}): {text}"
        );
    }
}

#[test]
fn an_unknown_flag_is_one_line_and_exit_2() {
    let out = evhost(&["run", "--plugins", ".", "--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("--bogus"), "{err}");
}

#[test]
fn a_missing_required_flag_is_one_line_and_exit_2() {
    let out = evhost(&["run"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("--plugins"), "{err}");
}
