//! The command line: `evhost invoke` and `evhost check` (no broker), and how
//! `evhost run` fails on bad usage.

use std::path::Path;

use base64::Engine;
use evhost_tests::{
    CliOutput, Host, NatsServer, PluginDir, WAIT, evhost, evhost_with_timeout, free_port,
    mentions_line_column, wasm,
};
use serde_json::Value;

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

fn assert_code(out: &CliOutput, code: i32) {
    assert_eq!(out.code, Some(code), "unexpected exit code:\n{out}");
    out.assert_no_panic();
}

/// The first output of an `ok` invoke.
fn first_output(json: &Value) -> &Value {
    let outputs = json["outputs"]
        .as_array()
        .unwrap_or_else(|| panic!("no `outputs` array: {json:#}"));
    outputs
        .first()
        .unwrap_or_else(|| panic!("no output: {json:#}"))
}

/// The values of header `name` in an output's `headers` (`[["k","v"], ...]`).
fn output_header<'a>(output: &'a Value, name: &str) -> Vec<&'a str> {
    output["headers"]
        .as_array()
        .unwrap_or_else(|| panic!("`headers` is not an array: {output:#}"))
        .iter()
        .filter_map(|pair| {
            let pair = pair.as_array()?;
            (pair.len() == 2 && pair[0].as_str()? == name).then(|| pair[1].as_str())?
        })
        .collect()
}

/// Checks a one-line `error: ...` on stderr that names `file`.
fn assert_one_line_error_naming(out: &CliOutput, file: &str) {
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "expected one line on stderr:\n{out}");
    assert!(
        lines[0].contains(file),
        "the error names the file {file}:\n{out}"
    );
}

#[test]
fn invoke_ok_prints_the_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("payload.txt");
    std::fs::write(&payload, "hello, evhost").unwrap();
    let echo = wasm("echo");
    let out = evhost(
        &[
            "invoke",
            path_str(&echo),
            "--subject",
            "test.echo",
            "--payload",
            &format!("@{}", path_str(&payload)),
            "--header",
            "x-echo-tag=tagged",
        ],
        None,
    );
    assert_code(&out, 0);
    let json = out.json();
    assert_eq!(json["outcome"], "ok", "{json:#}");
    let outputs = json["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 1, "{json:#}");
    let output = first_output(&json);
    assert_eq!(output["subject"], "test.echo.out", "{json:#}");
    assert_eq!(output["payload"], "hello, evhost", "{json:#}");
    assert_eq!(output_header(output, "echo-version"), ["1"], "{json:#}");
    assert_eq!(
        output_header(output, "x-echo-tag"),
        ["tagged"],
        "--header reaches the handler: {json:#}"
    );
}

#[test]
fn invoke_takes_inline_payload_text_and_warns_of_an_unsubscribed_subject() {
    let echo = wasm("echo");
    let out = evhost(
        &[
            "invoke",
            path_str(&echo),
            "--subject",
            "test.echo",
            "--payload",
            "{\"a\":1}",
        ],
        None,
    );
    assert_code(&out, 0);
    let json = out.json();
    assert_eq!(first_output(&json)["payload"], "{\"a\":1}", "{json:#}");
    assert!(
        out.stderr.trim().is_empty(),
        "no warning for a subscribed subject:\n{out}"
    );

    let out = evhost(
        &[
            "invoke",
            path_str(&echo),
            "--subject",
            "other.subject",
            "--payload",
            "x",
        ],
        None,
    );
    assert_code(&out, 0);
    assert!(
        out.stderr.contains("does not subscribe to this subject"),
        "warns:\n{out}"
    );
}

/// `invoke` keeps compiled code in the same cache as `run`, so invoking a
/// file again does not compile it again (tens of seconds for a Python or
/// JavaScript component): the first invoke fills the cache folder.
#[test]
fn invoke_keeps_compiled_code_in_the_cache() {
    let home = tempfile::tempdir().unwrap();
    let cache = home.path().join(".cache");
    let env = [
        ("HOME", home.path().to_str().unwrap()),
        ("XDG_CACHE_HOME", cache.to_str().unwrap()),
    ];
    let wasm_path = wasm("echo");
    let args = [
        "invoke",
        path_str(&wasm_path),
        "--subject",
        "test.echo",
        "--payload",
        "cached",
    ];
    let files = |dir: &Path| -> usize { walk(dir).into_iter().filter(|p| p.is_file()).count() };
    assert_eq!(files(&cache), 0);
    let out = evhost_tests::evhost_in(home.path(), &env, &args);
    assert_code(&out, 0);
    assert!(
        files(&cache) > 0,
        "nothing was cached under {}:\n{out}",
        cache.display()
    );
}

/// Every path under `dir` (none when it does not exist).
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        }
        found.push(path);
    }
    found
}

#[test]
fn invoke_reads_the_payload_from_stdin() {
    let echo = wasm("echo-v2");
    let out = evhost(
        &[
            "invoke",
            path_str(&echo),
            "--subject",
            "test.echo",
            "--payload",
            "-",
        ],
        Some(b"from stdin"),
    );
    assert_code(&out, 0);
    let json = out.json();
    let output = first_output(&json);
    assert_eq!(output["payload"], "from stdin", "{json:#}");
    assert_eq!(output_header(output, "echo-version"), ["2"], "{json:#}");
}

#[test]
fn invoke_prints_binary_payloads_as_base64() {
    let dir = tempfile::tempdir().unwrap();
    let bytes: &[u8] = b"\x00\xff\xfe binary \x80";
    let payload = dir.path().join("payload.bin");
    std::fs::write(&payload, bytes).unwrap();
    let echo = wasm("echo");
    let out = evhost(
        &[
            "invoke",
            path_str(&echo),
            "--subject",
            "test.echo",
            "--payload",
            &format!("@{}", path_str(&payload)),
        ],
        None,
    );
    assert_code(&out, 0);
    let json = out.json();
    let output = first_output(&json);
    assert!(
        output.get("payload").is_none(),
        "non-UTF-8 payloads have no `payload`: {json:#}"
    );
    let encoded = output["payload_base64"]
        .as_str()
        .unwrap_or_else(|| panic!("no payload_base64: {json:#}"));
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap_or_else(|e| panic!("payload_base64 is not base64 ({e}): {json:#}"));
    assert_eq!(decoded, bytes);
}

#[test]
fn invoke_passes_config_and_attempt() {
    let flaky = wasm("flaky");
    let args = |attempt: &'static str| {
        vec![
            "invoke".to_string(),
            path_str(&flaky).to_string(),
            "--subject".to_string(),
            "test.flaky".to_string(),
            "--config".to_string(),
            "fail_attempts=2".to_string(),
            "--attempt".to_string(),
            attempt.to_string(),
        ]
    };
    let run = |attempt| {
        let args = args(attempt);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        evhost(&args, None)
    };

    let failing = run("2");
    assert_code(&failing, 3);
    let json = failing.json();
    assert_eq!(json["outcome"], "transient", "{json:#}");
    assert!(
        json["error"]
            .as_str()
            .unwrap_or_default()
            .contains("failing attempt 2 of 2"),
        "the handler's reason is printed: {json:#}"
    );

    let passing = run("3");
    assert_code(&passing, 0);
    let json = passing.json();
    assert_eq!(json["outcome"], "ok", "{json:#}");
    assert_eq!(
        output_header(first_output(&json), "attempt"),
        ["3"],
        "{json:#}"
    );
}

#[test]
fn invoke_permanent_exits_4() {
    let echo = wasm("echo");
    let out = evhost(
        &[
            "invoke",
            path_str(&echo),
            "--subject",
            "test.echo",
            "--config",
            "sleep_ms=soon",
        ],
        None,
    );
    assert_code(&out, 4);
    let json = out.json();
    assert_eq!(json["outcome"], "permanent", "{json:#}");
    assert!(
        json["error"]
            .as_str()
            .unwrap_or_default()
            .contains("sleep_ms"),
        "{json:#}"
    );
}

#[test]
fn invoke_trap_exits_1() {
    let panicker = wasm("panicker");
    let out = evhost(
        &["invoke", path_str(&panicker), "--subject", "test.panic"],
        None,
    );
    assert_code(&out, 1);
    let json = out.json();
    assert_eq!(json["outcome"], "trap", "{json:#}");
    assert!(
        !json["error"].as_str().unwrap_or_default().is_empty(),
        "{json:#}"
    );
}

#[test]
fn invoke_invalid_output_exits_1() {
    let bigout = wasm("bigout");
    let out = evhost(
        &["invoke", path_str(&bigout), "--subject", "test.bigout"],
        None,
    );
    assert_code(&out, 1);
    let json = out.json();
    assert_eq!(json["outcome"], "invalid-output", "{json:#}");
}

#[test]
fn invoke_timeout_exits_3() {
    let spinner = wasm("spinner");
    // The default time limit (5 s) applies.
    let out = evhost_with_timeout(
        &["invoke", path_str(&spinner), "--subject", "test.spin"],
        None,
        WAIT * 2,
    );
    assert_code(&out, 3);
    let json = out.json();
    assert_eq!(json["outcome"], "timeout", "{json:#}");
}

#[test]
fn invoke_broken_wasm_exits_1_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.wasm");
    std::fs::write(&garbage, b"not a component at all").unwrap();
    let out = evhost(
        &["invoke", path_str(&garbage), "--subject", "test.echo"],
        None,
    );
    assert_code(&out, 1);
    assert_one_line_error_naming(&out, "garbage.wasm");
    assert!(
        out.stderr_lines()[0].starts_with("error:"),
        "the line starts with `error:`:\n{out}"
    );

    let missing = dir.path().join("missing.wasm");
    let out = evhost(
        &["invoke", path_str(&missing), "--subject", "test.echo"],
        None,
    );
    assert_code(&out, 1);
    assert_one_line_error_naming(&out, "missing.wasm");
}

#[test]
fn check_prints_the_name_and_subjects() {
    let echo = wasm("echo");
    let out = evhost(&["check", path_str(&echo)], None);
    assert_code(&out, 0);
    assert!(out.stdout.contains("echo"), "names the plugin:\n{out}");
    assert!(
        out.stdout.lines().any(|l| l.trim() == "subject: test.echo"),
        "lists `subject: test.echo`:\n{out}"
    );
}

#[test]
fn check_applies_the_manifest_subjects() {
    let dir = PluginDir::new();
    dir.add_with_manifest("echo", "subjects = [\"custom.one\", \"custom.two.>\"]\n");
    let wasm_path = dir.wasm_path("echo");
    let manifest = dir.manifest_path("echo");
    let out = evhost(
        &[
            "check",
            path_str(&wasm_path),
            "--manifest",
            path_str(&manifest),
        ],
        None,
    );
    assert_code(&out, 0);
    let subjects: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("subject: "))
        .collect();
    assert_eq!(subjects, ["custom.one", "custom.two.>"], "\n{out}");
}

#[test]
fn check_rejects_broken_wasm() {
    let dir = tempfile::tempdir().unwrap();
    let echo = std::fs::read(wasm("echo")).unwrap();
    let truncated = dir.path().join("truncated.wasm");
    std::fs::write(&truncated, &echo[..echo.len() / 3]).unwrap();
    let out = evhost(&["check", path_str(&truncated)], None);
    assert_code(&out, 1);
    assert_one_line_error_naming(&out, "truncated.wasm");
}

#[test]
fn check_rejects_a_manifest_with_an_unknown_key() {
    let dir = PluginDir::new();
    dir.add_with_manifest("echo", "[limits]\nconcurency = 4\n");
    let wasm_path = dir.wasm_path("echo");
    let manifest = dir.manifest_path("echo");
    let out = evhost(
        &[
            "check",
            path_str(&wasm_path),
            "--manifest",
            path_str(&manifest),
        ],
        None,
    );
    assert_code(&out, 1);
    assert_one_line_error_naming(&out, "echo.toml");
    assert!(out.stderr.contains("concurency"), "names the key:\n{out}");
    assert!(
        mentions_line_column(&out.stderr, 2),
        "points at line 2 with a column:\n{out}"
    );
}

#[test]
fn check_reports_a_manifest_type_error_with_line_and_column() {
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "echo",
        "subjects = [\"a.b\"]\n\n[limits]\nconcurrency = \"lots\"\n",
    );
    let wasm_path = dir.wasm_path("echo");
    let manifest = dir.manifest_path("echo");
    let out = evhost(
        &[
            "check",
            path_str(&wasm_path),
            "--manifest",
            path_str(&manifest),
        ],
        None,
    );
    assert_code(&out, 1);
    assert_one_line_error_naming(&out, "echo.toml");
    assert!(
        mentions_line_column(&out.stderr, 4),
        "points at line 4 with a column:\n{out}"
    );
}

/// A value of the right type but out of range is located like a syntax
/// error: `FILE:LINE:COLUMN: message`, by `check` and in the host's log.
#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_value_out_of_range_is_reported_with_line_and_column() {
    let text = "subjects = [\"a.b\"]\n\n[limits]\nconcurrency = 4\ntimeout_ms = 0\n";
    let dir = PluginDir::new();
    dir.add_with_manifest("echo", text);
    let wasm_path = dir.wasm_path("echo");
    let manifest = dir.manifest_path("echo");
    let out = evhost(
        &[
            "check",
            path_str(&wasm_path),
            "--manifest",
            path_str(&manifest),
        ],
        None,
    );
    assert_code(&out, 1);
    assert_one_line_error_naming(&out, "echo.toml:5:14: limits.timeout_ms must be at least 1");

    let nats = NatsServer::start();
    let host = Host::start(&dir.path(), &nats.url(), &[]);
    let line = host
        .wait_for_log("plugin rejected", Some("echo"), WAIT)
        .await;
    assert_eq!(
        line.field_str("error").as_deref(),
        Some("5:14: limits.timeout_ms must be at least 1"),
        "{}",
        host.log_report()
    );
}

/// Bad usage of `run`: a non-zero exit and a clear message, never a panic.
fn assert_usage_error(out: &CliOutput, mentions: &str) {
    assert!(
        out.code.is_some_and(|c| c != 0),
        "bad usage must exit non-zero:\n{out}"
    );
    out.assert_no_panic();
    assert!(
        out.stderr.contains(mentions),
        "the error mentions {mentions:?}:\n{out}"
    );
}

#[test]
fn run_rejects_an_unknown_flag() {
    let out = evhost(&["run", "--no-such-flag"], None);
    assert_usage_error(&out, "--no-such-flag");
}

#[test]
fn run_fails_when_nats_is_unreachable() {
    let dir = PluginDir::new();
    dir.add("echo");
    let port = free_port().to_string();
    let url = format!("nats://127.0.0.1:{port}");
    let out = evhost(
        &["run", "--plugins", path_str(&dir.path()), "--nats", &url],
        None,
    );
    assert_usage_error(&out, &format!("127.0.0.1:{port}"));
    let line = out.stderr_lines()[0];
    assert!(
        line.contains("start one, or use `evhost dev`"),
        "says what to do: {line}"
    );
    assert_eq!(
        line.to_lowercase().matches("connection refused").count(),
        1,
        "the cause is said once: {line}"
    );
}

/// `tls://` against a server that does not speak TLS: one line that says to
/// use `nats://`, not the TLS library's "corrupt message".
#[test]
fn run_with_tls_against_a_plain_server_says_to_use_nats() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("echo");
    let url = format!("tls://127.0.0.1:{}", nats.port());
    let out = evhost(
        &["run", "--plugins", path_str(&dir.path()), "--nats", &url],
        None,
    );
    assert_usage_error(&out, &url);
    let line = out.stderr_lines()[0];
    assert!(
        line.contains("use nats:// instead of tls://"),
        "says what to do: {line}"
    );
}

#[test]
fn run_with_an_empty_nats_url_says_so() {
    let dir = PluginDir::new();
    let out = evhost(
        &["run", "--plugins", path_str(&dir.path()), "--nats", ""],
        None,
    );
    assert_usage_error(&out, "the NATS URL is empty");
}

#[test]
fn run_fails_when_the_plugins_folder_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-folder");
    // A live server, so that the folder is the only thing wrong.
    let nats = NatsServer::start();
    let out = evhost(
        &[
            "run",
            "--plugins",
            path_str(&missing),
            "--nats",
            &nats.url(),
        ],
        None,
    );
    assert_usage_error(&out, "no-such-folder");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_folder_and_a_manifest_without_its_wasm_are_warned_about() {
    let nats = NatsServer::start();
    let empty = PluginDir::new();
    let host = evhost_tests::Host::start_ready(&empty.path(), &nats.url()).await;
    host.wait_for("the empty-folder warning", WAIT, |l| {
        l.message()
            .is_some_and(|m| m.starts_with("no plugins in the folder yet"))
    })
    .await;
    drop(host);

    let dir = PluginDir::new();
    dir.add("echo");
    dir.write_manifest("pyment", "[config]\nx = 1\n");
    let host = evhost_tests::Host::start_ready(&dir.path(), &nats.url()).await;
    let line = host
        .wait_for("the orphan-manifest warning", WAIT, |l| {
            l.message()
                .is_some_and(|m| m.starts_with("a manifest with no .wasm beside it"))
        })
        .await;
    assert!(line.raw.contains("pyment.toml"), "{}", line.raw);
}
