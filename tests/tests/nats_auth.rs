//! Connecting to secured NATS deployments: a server list, user and password,
//! token, nkey, TLS with a custom CA and with client certificates; refused
//! credentials and untrusted certificates are a one-line error at start
//! that names the cause and holds no secret.

use std::path::Path;

use async_nats::{Client, ConnectOptions};
use evhost_tests::certs::CertFiles;
use evhost_tests::{
    Host, HostOptions, NatsServer, PluginDir, WAIT, echo_roundtrip, evhost, free_port,
};

/// A host serving echo against `url`, with `args` and `env`.
fn start_host(dir: &Path, url: &str, args: &[&str], env: &[(&str, &str)]) -> Host {
    Host::start_with(
        dir,
        url,
        HostOptions {
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..HostOptions::default()
        },
    )
}

/// A folder with the echo plugin.
fn echo_dir() -> PluginDir {
    let dir = PluginDir::new();
    dir.add("echo");
    dir
}

/// A test client connected with `options`.
async fn client(url: &str, options: ConnectOptions) -> Client {
    options
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("the test client cannot connect to {url}: {e}"))
}

/// Starts a host that must serve: waits for `host ready` and proves echo
/// answers through `client`.
async fn assert_serves(host: &Host, client: &Client) {
    host.wait_for_log("host ready", None, WAIT).await;
    assert_eq!(echo_roundtrip(client, host, "ping").await, "1");
}

/// Waits for a host that must fail at start; returns its one `error:` line,
/// having checked that nothing in its output holds `secret`.
async fn assert_fails_at_start(host: &Host, secret: Option<&str>) -> String {
    let status = host.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(1), "exit status\n{}", host.log_report());
    let logs = host.logs();
    assert!(
        !logs.contains("panicked") && !logs.contains("stack backtrace"),
        "{logs}"
    );
    if let Some(secret) = secret {
        assert!(!logs.contains(secret), "a secret in the output:\n{logs}");
    }
    let errors: Vec<&str> = logs.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line:\n{logs}");
    errors[0].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn user_and_password_from_flags_or_the_url_work_and_a_wrong_password_is_one_line() {
    let nats = NatsServer::start_with_config(
        r#"authorization { users = [ { user: evhost, password: "pa55-right" } ] }"#,
    );
    let dir = echo_dir();
    let test = client(
        &nats.url(),
        ConnectOptions::with_user_and_password("evhost".into(), "pa55-right".into()),
    )
    .await;

    let wrong = start_host(
        &dir.path(),
        &nats.url(),
        &["--user", "evhost", "--password", "wrong-pa55"],
        &[],
    );
    let error = assert_fails_at_start(&wrong, Some("wrong-pa55")).await;
    assert!(
        error.contains(&format!("cannot connect to NATS at {}", nats.url()))
            && error.to_lowercase().contains("authorization violation")
            && error.contains("the server refused user \"evhost\" and its password"),
        "{error}"
    );

    let right = start_host(
        &dir.path(),
        &nats.url(),
        &[],
        &[("NATS_USER", "evhost"), ("NATS_PASSWORD", "pa55-right")],
    );
    assert_serves(&right, &test).await;
    drop(right);

    // In the URL, as other NATS tools take it; never printed.
    let in_url = format!("nats://evhost:pa55-right@127.0.0.1:{}", nats.port());
    let host = start_host(&dir.path(), &in_url, &[], &[]);
    assert_serves(&host, &test).await;
    let ready = host.wait_for_log("host ready", None, WAIT).await;
    assert_eq!(
        ready.field_str("nats").as_deref(),
        Some(nats.url().as_str()),
        "the logged URL has no credentials"
    );
    assert!(!host.logs().contains("pa55-right"), "{}", host.log_report());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_works_and_a_wrong_one_is_refused() {
    let nats = NatsServer::start_with_config(r#"authorization { token: "t0ken-right" }"#);
    let dir = echo_dir();
    let test = client(
        &nats.url(),
        ConnectOptions::with_token("t0ken-right".into()),
    )
    .await;

    let wrong = start_host(&dir.path(), &nats.url(), &["--token", "t0ken-wrong"], &[]);
    let error = assert_fails_at_start(&wrong, Some("t0ken-wrong")).await;
    assert!(error.contains("the server refused the token"), "{error}");

    let host = start_host(
        &dir.path(),
        &nats.url(),
        &[],
        &[("NATS_TOKEN", "t0ken-right")],
    );
    assert_serves(&host, &test).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_nkey_seed_file_works_and_another_key_is_refused() {
    let user = nkeys::KeyPair::new_user();
    let nats = NatsServer::start_with_config(&format!(
        "authorization {{ users = [ {{ nkey: {} }} ] }}",
        user.public_key()
    ));
    let dir = echo_dir();
    let seeds = tempfile::tempdir().unwrap();
    let seed_file = seeds.path().join("evhost.nk");
    std::fs::write(&seed_file, format!("{}\n", user.seed().unwrap())).unwrap();
    let other_file = seeds.path().join("other.nk");
    let other = nkeys::KeyPair::new_user().seed().unwrap();
    std::fs::write(&other_file, &other).unwrap();
    let test = client(&nats.url(), ConnectOptions::with_nkey(user.seed().unwrap())).await;

    let refused = start_host(
        &dir.path(),
        &nats.url(),
        &["--nkey", other_file.to_str().unwrap()],
        &[],
    );
    let error = assert_fails_at_start(&refused, Some(&other)).await;
    assert!(
        error.contains(&format!(
            "the server refused the nkey seed in {}",
            other_file.display()
        )),
        "{error}"
    );

    let host = start_host(
        &dir.path(),
        &nats.url(),
        &[],
        &[("NATS_NKEY", seed_file.to_str().unwrap())],
    );
    assert_serves(&host, &test).await;
    assert!(
        !host.logs().contains(&user.seed().unwrap()),
        "{}",
        host.log_report()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_a_trusted_ca_works_and_an_untrusted_one_is_one_line() {
    let certs = CertFiles::new();
    let nats = NatsServer::start_with_config(&certs.server_block(false));
    let url = format!("tls://127.0.0.1:{}", nats.port());
    let dir = echo_dir();
    let test = client(
        &url,
        ConnectOptions::new()
            .add_root_certificates(certs.ca())
            .require_tls(true),
    )
    .await;

    let stranger = CertFiles::new();
    let untrusted = start_host(
        &dir.path(),
        &url,
        &["--tlsca", stranger.ca().to_str().unwrap()],
        &[],
    );
    let error = assert_fails_at_start(&untrusted, None).await;
    assert!(
        error.contains(&format!("cannot connect to NATS at {url}"))
            && error.contains(&format!(
                "the server's certificate is not trusted by the CA in {}",
                stranger.ca().display()
            )),
        "{error}"
    );

    let host = start_host(
        &dir.path(),
        &url,
        &["--tlsca", certs.ca().to_str().unwrap()],
        &[],
    );
    assert_serves(&host, &test).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_needs_the_client_certificate() {
    let certs = CertFiles::new();
    let nats = NatsServer::start_with_config(&certs.server_block(true));
    let (cert, key) = certs.client();
    // A nats:// URL: the CA file alone makes TLS required.
    let url = nats.url();
    let dir = echo_dir();
    let test = client(
        &url,
        ConnectOptions::new()
            .add_root_certificates(certs.ca())
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true),
    )
    .await;

    let anonymous = start_host(
        &dir.path(),
        &url,
        &["--tlsca", certs.ca().to_str().unwrap()],
        &[],
    );
    let error = assert_fails_at_start(&anonymous, None).await;
    assert!(error.contains("cannot connect to NATS at"), "{error}");

    let host = start_host(
        &dir.path(),
        &url,
        &[],
        &[
            ("NATS_CA", certs.ca().to_str().unwrap()),
            ("NATS_CERT", cert.to_str().unwrap()),
            ("NATS_KEY", key.to_str().unwrap()),
        ],
    );
    assert_serves(&host, &test).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_list_whose_first_server_is_down_still_connects() {
    let nats = NatsServer::start();
    let dir = echo_dir();
    let down = format!("nats://127.0.0.1:{}", free_port());
    let list = format!("{down}, {}", nats.url());
    let host = start_host(&dir.path(), &list, &[], &[]);
    let test = client(&nats.url(), ConnectOptions::new()).await;
    assert_serves(&host, &test).await;
    let ready = host.wait_for_log("host ready", None, WAIT).await;
    assert_eq!(
        ready.field_str("nats"),
        Some(format!("{down},{}", nats.url()))
    );
}

#[test]
fn bad_connection_settings_are_one_line_errors_before_connecting() {
    let dir = echo_dir();
    let files = tempfile::tempdir().unwrap();
    let not_creds = files.path().join("evhost.creds");
    std::fs::write(&not_creds, "not a credentials file\n").unwrap();
    let path = dir.path();
    let plugins = path.to_str().unwrap();
    // No server listens at port 1: each must fail before trying.
    let cases: [(&[&str], &str); 4] = [
        (
            &["--creds", not_creds.to_str().unwrap()],
            "is not a NATS .creds file",
        ),
        (
            &["--nkey", not_creds.to_str().unwrap()],
            "holds no user seed",
        ),
        (
            &["--tlsca", "/nonexistent/ca.pem"],
            "cannot read the CA file (--tlsca, NATS_CA) /nonexistent/ca.pem",
        ),
        (&["--tlscert", "/nonexistent/cert.pem"], "--tlskey"),
    ];
    for (args, expected) in cases {
        let mut all = vec!["run", "--plugins", plugins, "--nats", "nats://127.0.0.1:1"];
        all.extend_from_slice(args);
        let out = evhost(&all, None);
        out.assert_no_panic();
        assert!(
            out.code.is_some_and(|c| c != 0),
            "{args:?} must fail:\n{out}"
        );
        let lines = out.stderr_lines();
        assert_eq!(lines.len(), 1, "{args:?}: one line:\n{out}");
        assert!(
            lines[0].contains(expected),
            "{args:?}: {expected:?}:\n{out}"
        );
        assert!(
            !lines[0].contains("refused"),
            "{args:?}: failed before connecting:\n{out}"
        );
    }
    let bad = evhost(
        &[
            "run",
            "--plugins",
            plugins,
            "--nats",
            "nats://evhost:s3cr3t@h:99999",
        ],
        None,
    );
    assert!(
        bad.stderr
            .contains("nats://***@h:99999 is not a NATS server URL"),
        "{bad}"
    );
    assert!(!bad.stderr.contains("s3cr3t"), "{bad}");
}
