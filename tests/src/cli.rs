//! Running `evhost` commands to their end ([`evhost`], [`evhost_in`]) and
//! reading what they printed ([`CliOutput`]).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use evhost_nats_process::poll;
use serde_json::Value;

use crate::poll::EVERY;
use crate::{WAIT, evhost_bin};

/// Whether `text` points at `line` (and a column) of a file: `L:C` after a
/// colon, or `line L, column C`.
pub fn mentions_line_column(text: &str, line: usize) -> bool {
    let colon = format!(":{line}:");
    let words = format!("line {line}");
    text.match_indices(&colon).any(|(i, _)| {
        text[i + colon.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    }) || (text.contains(&words) && text.contains("column"))
}

/// The output of an `evhost` command that ran to its end.
#[derive(Debug)]
pub struct CliOutput {
    /// The exit code (`None` when a signal ended it).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CliOutput {
    /// Standard output as JSON, failing with the output when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!("evhost printed no JSON on stdout ({e}):\n{self}");
        })
    }

    /// The non-empty lines of stderr.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// Fails when the output shows a panic or a backtrace of evhost itself.
    /// A plugin's own panic message is expected in some outputs: lines the
    /// host tags with a plugin, and the `error` of invoke's JSON, are not
    /// evhost's.
    pub fn assert_no_panic(&self) {
        let own_stdout = if serde_json::from_str::<Value>(self.stdout.trim()).is_ok() {
            ""
        } else {
            self.stdout.as_str()
        };
        let own_lines = self
            .stderr
            .lines()
            .chain(own_stdout.lines())
            .filter(|l| !l.contains("plugin"));
        for line in own_lines {
            for bad in [
                "panicked",
                "stack backtrace",
                "RUST_BACKTRACE",
                "internal error",
            ] {
                assert!(
                    !line.contains(bad),
                    "evhost's output shows a panic ({bad:?} in {line:?}):\n{self}"
                );
            }
        }
    }
}

impl std::fmt::Display for CliOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n---",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `evhost ARGS...` to its end (at most [`WAIT`] plus the command's own
/// time limits), with `stdin` as its standard input.
pub fn evhost(args: &[&str], stdin: Option<&[u8]>) -> CliOutput {
    evhost_with_timeout(args, stdin, WAIT + Duration::from_secs(10))
}

/// Like [`evhost`], with an explicit upper bound.
pub fn evhost_with_timeout(args: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> CliOutput {
    evhost_command(Command::new(evhost_bin()), args, stdin, timeout)
}

/// Runs `evhost ARGS...` in folder `dir` with the environment variables
/// `env` set, as a user in a shell there would (at most [`WAIT`] plus ten
/// seconds).
pub fn evhost_in(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> CliOutput {
    let mut command = Command::new(evhost_bin());
    command.current_dir(dir).envs(env.iter().copied());
    evhost_command(command, args, None, WAIT + Duration::from_secs(10))
}

fn evhost_command(
    mut command: Command,
    args: &[&str],
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> CliOutput {
    use std::io::Write;
    let mut child = command
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LOG")
        .env("EVHOST_LOG", "info")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not run {}: {e}", evhost_bin().display()));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let status = poll::blocking(timeout, EVERY, || {
        child.try_wait().expect("wait for evhost")
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        let stderr = String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned();
        panic!(
            "`evhost {}` did not finish within {timeout:?}; stderr:\n{stderr}",
            args.join(" ")
        );
    };
    CliOutput {
        code: status.code(),
        stdout: String::from_utf8_lossy(&out_reader.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&err_reader.join().unwrap_or_default()).into_owned(),
    }
}
