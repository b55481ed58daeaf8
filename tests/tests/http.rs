//! Outbound HTTP from plugins, through the one-call `evhost:plugin/http` (the
//! SDK's default) and through wasi:http, against a real HTTP server started
//! by the test: what the manifest grants works, with its limits; everything
//! else is refused before a connection is made.

use evhost_tests::provider::{Provider, one_idempotency_key};
use evhost_tests::*;

/// The `caller` plugin allowed to reach `allow`, with quick retries.
fn caller_manifest(allow: &[String], extra_limits: &str) -> String {
    let list: Vec<String> = allow.iter().map(|u| format!("{u:?}")).collect();
    format!(
        "[config]\nfollow_redirects = true\n[limits]\ntimeout_ms = 1500\n{extra_limits}\n\
         [delivery]\nmax_attempts = 2\nbackoff = \"10ms\"\n[capabilities]\nhttp = [{}]\n",
        list.join(", ")
    )
}

/// How the `caller` plugin sends: the SDK's default, the one-call
/// `evhost:plugin/http`, or the standard `wasi:http`.
#[derive(Clone, Copy, Debug)]
enum Transport {
    OneCall,
    WasiHttp,
}

impl Transport {
    /// `manifest` with this transport in its `[config]`.
    fn configure(self, manifest: &str) -> String {
        match self {
            Transport::OneCall => manifest.to_string(),
            Transport::WasiHttp => {
                manifest.replacen("[config]\n", "[config]\ntransport = \"wasi-http\"\n", 1)
            }
        }
    }
}

fn call(url: &str) -> Vec<u8> {
    serde_json::json!({ "url": url, "body": "{}" })
        .to_string()
        .into_bytes()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_answer_ends_as_the_outcome_table_says_and_others_keep_serving() {
    outcome_table(Transport::OneCall).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_answer_over_wasi_http_ends_as_the_outcome_table_says() {
    outcome_table(Transport::WasiHttp).await;
}

async fn outcome_table(transport: Transport) {
    let nats = NatsServer::start();
    let provider = Provider::start().await;
    let elsewhere = Provider::start().await;
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "caller",
        &transport.configure(&caller_manifest(
            &[provider.url()],
            "http_max_response_bytes = 100000\nhttp_first_byte_timeout_ms = 60000",
        )),
    );
    dir.add("echo");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let client = connect(&nats.url()).await;
    let mut out = subscribe(&client, "test.caller.out").await;
    let mut dead = subscribe(&client, "dlq.test.caller").await;
    let p = provider.url();

    publish(
        &client,
        "test.caller",
        &[],
        &call(&format!("{p}/status/200")),
    )
    .await;
    let ok = next_message(&mut out, WAIT, "the 200's output", &host).await;
    assert_eq!(header(&ok, "status").as_deref(), Some("200"));
    assert_eq!(ok.payload.as_ref(), b"{\"status\":200}");

    // (path, expected dead-letter kind, attempts, text in Evhost-Error)
    let cases = [
        ("/status/402".to_string(), "permanent", 1, "402"),
        ("/status/503".to_string(), "exhausted", 2, "503"),
        ("/hang".to_string(), "timeout", 2, "time limit"),
        (
            format!("/redirect?to={}/status/200", elsewhere.url()),
            "permanent",
            1,
            "denied",
        ),
        ("/big/1000000".to_string(), "permanent", 1, "large"),
    ];
    for (path, kind, attempts, text) in &cases {
        let payload = call(&format!("{p}{path}"));
        publish(&client, "test.caller", &[], &payload).await;
        let letter =
            next_dead_letter(&mut dead, &format!("the dead letter of {path}"), &host).await;
        letter.assert_about("test.caller", "caller", kind, *attempts, &host);
        assert_eq!(letter.message.payload.as_ref(), payload.as_slice());
        assert!(
            letter.error.to_lowercase().contains(text),
            "{transport:?} {path}: Evhost-Error {:?} should mention {text:?}",
            letter.error
        );
        // Another plugin is served meanwhile.
        echo_roundtrip(&client, &host, &format!("after {path}")).await;
    }
    assert_eq!(
        elsewhere.connections(),
        0,
        "the redirect's off-list target was never contacted"
    );
    assert!(
        pending_message(&mut out).is_none(),
        "failures publish nothing"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_destination_off_the_list_is_refused_and_logged_without_a_connection() {
    off_the_list(Transport::OneCall).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_destination_off_the_list_over_wasi_http_is_refused_without_a_connection() {
    off_the_list(Transport::WasiHttp).await;
}

async fn off_the_list(transport: Transport) {
    let nats = NatsServer::start();
    let allowed = Provider::start().await;
    let other = Provider::start().await;
    let dir = PluginDir::new();
    // One plugin allowed a different server, one with no grant at all.
    dir.add_with_manifest(
        "caller",
        &transport.configure(&caller_manifest(&[allowed.url()], "")),
    );
    dir.add_as("nogrant", &wasm("caller"));
    dir.write_manifest(
        "nogrant",
        &transport
            .configure("subjects = [\"test.nogrant\"]\n[config]\n[delivery]\nmax_attempts = 1\n"),
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.>").await;
    let target = format!("{}/status/200", other.url());

    publish(&client, "test.caller", &[], &call(&target)).await;
    let letter = next_dead_letter(&mut dead, "caller's refusal", &host).await;
    letter.assert_about("test.caller", "caller", "permanent", 1, &host);
    assert!(
        letter.error.to_lowercase().contains("denied"),
        "{}",
        letter.error
    );

    publish(&client, "test.nogrant", &[], &call(&target)).await;
    let letter = next_dead_letter(&mut dead, "nogrant's refusal", &host).await;
    letter.assert_about("test.nogrant", "nogrant", "permanent", 1, &host);

    let refused = host
        .wait_for("a refusal naming nogrant", WAIT, |l| {
            l.message()
                .is_some_and(|m| m.starts_with("HTTP request refused"))
                && l.field_str("plugin").as_deref() == Some("nogrant")
        })
        .await;
    assert!(
        refused.raw.contains("no [capabilities] http grant")
            && refused.field_str("url").as_deref() == Some(target.as_str()),
        "{}",
        refused.raw
    );
    let caller_line = host.find_logs(|l| {
        l.message()
            .is_some_and(|m| m.starts_with("HTTP request refused"))
            && l.field_str("plugin").as_deref() == Some("caller")
    });
    assert_eq!(caller_line.len(), 1, "{}", host.log_report());

    // A guest refused in a loop does not flood the log.
    for _ in 0..20 {
        publish(&client, "test.nogrant", &[], &call(&target)).await;
    }
    for i in 0..20 {
        next_dead_letter(&mut dead, &format!("refusal {i}"), &host).await;
    }
    let lines = host
        .find_logs(|l| {
            l.message()
                .is_some_and(|m| m.starts_with("HTTP request refused"))
                && l.field_str("plugin").as_deref() == Some("nogrant")
        })
        .len();
    assert!(lines <= 6, "{lines} refusal lines for 21 refusals");
    assert_eq!(other.connections(), 0, "no connection to a refused server");
    assert_eq!(allowed.connections(), 0);
}

/// What a guest hands `evhost:plugin/http.send` is checked by the host, not
/// only by the SDK: a hostile record (a header smuggling a line break, a
/// header the host sets, a length that is not the body's or two lengths, a
/// relative URL, a method that is not a token, a destination off the list) is
/// refused as
/// invalid or denied, and nothing reaches the server; a proper record in the
/// same raw form goes through.
#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_one_call_request_is_refused_before_anything_is_sent() {
    let nats = NatsServer::start();
    let provider = Provider::start().await;
    let other = Provider::start().await;
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "caller",
        &caller_manifest(&[provider.url()], "").replace("max_attempts = 2", "max_attempts = 1"),
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let client = connect(&nats.url()).await;
    let mut out = subscribe(&client, "test.caller.out").await;
    let mut dead = subscribe(&client, "dlq.test.caller").await;
    let ok = format!("{}/status/200", provider.url());
    let raw = |method: &str, url: &str, headers: serde_json::Value, body: &str| {
        serde_json::json!({
            "raw": true, "method": method, "url": url, "headers": headers, "body": body,
        })
        .to_string()
        .into_bytes()
    };
    let cases = [
        (
            raw(
                "POST",
                &ok,
                serde_json::json!([["x", "a\r\nInjected: 1"]]),
                "",
            ),
            "invalid",
        ),
        (
            raw("POST", &ok, serde_json::json!([["x\r\ny", "v"]]), ""),
            "invalid",
        ),
        (
            raw(
                "POST",
                &ok,
                serde_json::json!([["host", "evil.example"]]),
                "",
            ),
            "invalid",
        ),
        (
            raw(
                "POST",
                &ok,
                serde_json::json!([["transfer-encoding", "chunked"]]),
                "x",
            ),
            "invalid",
        ),
        (
            raw(
                "POST",
                &ok,
                serde_json::json!([["content-length", "1"]]),
                "GET / HTTP/1.1",
            ),
            "invalid",
        ),
        (
            raw(
                "POST",
                &ok,
                // The first is the body's length; a reader of the second
                // would wait for 38 more bytes, the next request's.
                serde_json::json!([["content-length", "2"], ["content-length", "40"]]),
                "{}",
            ),
            "invalid",
        ),
        (
            raw("POST", "/status/200", serde_json::json!([]), ""),
            "invalid",
        ),
        (raw("GE T", &ok, serde_json::json!([]), ""), "invalid"),
        (
            raw(
                "POST",
                &format!("{}/status/200", other.url()),
                serde_json::json!([]),
                "",
            ),
            "denied",
        ),
    ];
    for (payload, says) in &cases {
        publish(&client, "test.caller", &[], payload).await;
        let letter = next_dead_letter(&mut dead, "a hostile request's dead letter", &host).await;
        letter.assert_about("test.caller", "caller", "permanent", 1, &host);
        assert!(
            letter.error.to_lowercase().contains(says),
            "{}: Evhost-Error {:?} should say {says:?}",
            String::from_utf8_lossy(payload),
            letter.error
        );
    }
    assert_eq!(
        provider.connections(),
        0,
        "nothing hostile reached the server"
    );
    assert_eq!(other.connections(), 0);
    assert!(pending_message(&mut out).is_none());

    publish(
        &client,
        "test.caller",
        &[],
        &raw("POST", &ok, serde_json::json!([["x", "y"]]), "{}"),
    )
    .await;
    let answer = next_message(&mut out, WAIT, "the proper raw request's answer", &host).await;
    assert_eq!(header(&answer, "status").as_deref(), Some("200"));
    assert_eq!(provider.connections(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_charge_carries_the_same_idempotency_key_every_time() {
    let nats = NatsServer::start();
    let provider = Provider::start().await;
    provider.fail_first(2);
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "payment",
        &format!(
            "[config]\nprovider_url = \"{}\"\n[delivery]\nbackoff = \"10ms\"\n\
             [capabilities]\nhttp = [\"{}\"]\n",
            provider.url(),
            provider.url()
        ),
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let client = connect(&nats.url()).await;
    let mut done = subscribe(&client, "payments.payment.completed").await;
    let order = OrderCreated::new("o-1", "c-1");
    publish(&client, "orders.order.created", &[], &order.to_bytes()).await;
    let completed = next_message(&mut done, WAIT, "payment completed", &host).await;
    let event: serde_json::Value = serde_json::from_slice(&completed.payload).unwrap();
    assert_eq!(event["order_id"], "o-1");

    let charges = provider.requests_to("/charges");
    assert_eq!(charges.len(), 3, "two 503s, then the charge: {charges:?}");
    one_idempotency_key(&charges, "payment:");
    let body: serde_json::Value = serde_json::from_slice(&charges[2].body).unwrap();
    assert_eq!(body["order_id"], "o-1");
    assert_eq!(body["amount_cents"], order.total_cents);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declined_charge_is_a_permanent_dead_letter() {
    let nats = NatsServer::start();
    let provider = Provider::start().await;
    provider.decline("c-bad");
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "payment",
        &format!(
            "[config]\nprovider_url = \"{}\"\n[capabilities]\nhttp = [\"{}\"]\n",
            provider.url(),
            provider.url()
        ),
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.orders.order.created").await;
    publish(
        &client,
        "orders.order.created",
        &[],
        &OrderCreated::new("o-2", "c-bad").to_bytes(),
    )
    .await;
    let letter = next_dead_letter(&mut dead, "the declined order", &host).await;
    letter.assert_about("orders.order.created", "payment", "permanent", 1, &host);
    assert!(letter.error.contains("declined"), "{}", letter.error);
}

/// https to a private provider: trusted with the manifest's `http_ca`, and
/// refused as an unknown issuer without it.
#[tokio::test(flavor = "multi_thread")]
async fn https_to_a_private_provider_needs_its_ca() {
    use evhost_tests::provider::TestCa;
    let nats = NatsServer::start();
    let ca = TestCa::new();
    let provider = Provider::start_tls(&ca).await;
    let dir = PluginDir::new();
    std::fs::write(dir.path().join("provider-ca.pem"), &ca.ca_pem).expect("write the CA");
    let grant = caller_manifest(&[provider.url()], "");
    dir.add_with_manifest("caller", &format!("{grant}http_ca = \"provider-ca.pem\"\n"));
    dir.add_as("untrusting", &wasm("caller"));
    dir.write_manifest(
        "untrusting",
        &format!("subjects = [\"test.untrusting\"]\n{grant}"),
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let client = connect(&nats.url()).await;
    let mut out = subscribe(&client, "test.caller.out").await;
    let mut dead = subscribe(&client, "dlq.test.untrusting").await;
    let url = format!("{}/status/200", provider.url());
    assert!(url.starts_with("https://localhost:"), "{url}");

    publish(&client, "test.caller", &[], &call(&url)).await;
    let ok = next_message(&mut out, WAIT, "the https answer", &host).await;
    assert_eq!(header(&ok, "status").as_deref(), Some("200"));

    publish(&client, "test.untrusting", &[], &call(&url)).await;
    let letter = next_dead_letter(&mut dead, "the untrusted certificate", &host).await;
    letter.assert_about("test.untrusting", "untrusting", "exhausted", 2, &host);
    assert!(
        letter.error.to_lowercase().contains("tls")
            || letter.error.to_lowercase().contains("certificate"),
        "{}",
        letter.error
    );
    assert_eq!(
        provider.requests().len(),
        1,
        "only the trusting plugin's request got through"
    );
}

/// Calls `path` on a provider with `limit` in the caller's `[limits]` and
/// checks that it ends as a transient timeout on both attempts (`exhausted`;
/// the host's own `timeout_ms`, 1500 ms, would have said `timeout`).
async fn assert_times_out(limit: &str, path: &str) {
    let nats = NatsServer::start();
    let provider = Provider::start().await;
    let dir = PluginDir::new();
    dir.add_with_manifest("caller", &caller_manifest(&[provider.url()], limit));
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let client = connect(&nats.url()).await;
    let mut dead = subscribe(&client, "dlq.test.caller").await;
    let payload = call(&format!("{}{path}", provider.url()));
    publish(&client, "test.caller", &[], &payload).await;
    let letter = next_dead_letter(&mut dead, &format!("{path} under {limit}"), &host).await;
    letter.assert_about("test.caller", "caller", "exhausted", 2, &host);
    assert!(
        letter.error.to_lowercase().contains("timeout"),
        "{}",
        letter.error
    );
}

/// The manifest's first-byte timeout ends a call to a server that never
/// answers before `timeout_ms` does.
#[tokio::test(flavor = "multi_thread")]
async fn the_first_byte_timeout_bounds_a_silent_server() {
    assert_times_out("http_first_byte_timeout_ms = 200", "/hang").await;
}

/// A body that stops arriving ends at the between-bytes timeout.
#[tokio::test(flavor = "multi_thread")]
async fn the_between_bytes_timeout_bounds_a_stalled_body() {
    assert_times_out("http_between_bytes_timeout_ms = 200", "/stall").await;
}

/// `http_max_in_flight` caps the requests one plugin has open at once, even
/// when it handles more messages than that at once.
#[tokio::test(flavor = "multi_thread")]
async fn requests_in_flight_are_capped_per_plugin() {
    let nats = NatsServer::start();
    let provider = Provider::start().await;
    let dir = PluginDir::new();
    let manifest = caller_manifest(&[provider.url()], "concurrency = 8\nhttp_max_in_flight = 2");
    assert!(manifest.contains("timeout_ms = 1500"), "{manifest}");
    // Time enough for eight 300 ms answers two at a time.
    dir.add_with_manifest(
        "caller",
        &evhost_tests::edited(&manifest, "timeout_ms = 1500", "timeout_ms = 10000"),
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let client = connect(&nats.url()).await;
    let mut out = subscribe(&client, "test.caller.out").await;
    for _ in 0..8 {
        publish(
            &client,
            "test.caller",
            &[],
            &call(&format!("{}/slow", provider.url())),
        )
        .await;
    }
    for i in 0..8 {
        next_message(&mut out, WAIT, &format!("slow answer {i}"), &host).await;
    }
    assert_eq!(
        provider.max_concurrent(),
        2,
        "at most 2 requests open at once, and the cap was reached"
    );
    // Connections are pooled per shard (lane): at most two open at once on
    // each of the plugin's two lanes, each reused for the requests after it.
    let connections = provider.connections();
    assert!(
        (2..=4).contains(&connections),
        "{connections} connections for 8 requests at most 2 at a time"
    );
}

/// A plugin calling one provider message after message reuses its
/// connection instead of opening one per request (one lane here: a pooled
/// connection serves the shard that opened it).
#[tokio::test(flavor = "multi_thread")]
async fn connections_are_reused_across_messages() {
    let nats = NatsServer::start();
    let provider = Provider::start().await;
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "caller",
        &caller_manifest(&[provider.url()], "concurrency = 1"),
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let client = connect(&nats.url()).await;
    let mut out = subscribe(&client, "test.caller.out").await;
    for i in 0..5 {
        let payload = call(&format!("{}/status/200", provider.url()));
        publish(&client, "test.caller", &[], &payload).await;
        next_message(&mut out, WAIT, &format!("answer {i}"), &host).await;
    }
    assert_eq!(provider.requests().len(), 5);
    assert_eq!(
        provider.connections(),
        1,
        "one connection for five requests"
    );
}

/// On JetStream the key is `<plugin>:<stream>:<sequence>`, the same on each
/// redelivery by the server.
#[tokio::test(flavor = "multi_thread")]
async fn jetstream_redeliveries_carry_the_same_idempotency_key() {
    let nats = NatsServer::start();
    let provider = Provider::start().await;
    provider.fail_first(2);
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "caller",
        &format!(
            "[jetstream]\nstream = \"IN\"\ncreate_stream = true\n\
             stream_subjects = [\"test.caller\"]\n[delivery]\nbackoff = \"10ms\"\n\
             [capabilities]\nhttp = [\"{}\"]\n",
            provider.url()
        ),
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let client = connect(&nats.url()).await;
    let mut out = subscribe(&client, "test.caller.out").await;
    let js = async_nats::jetstream::new(client.clone());
    js.publish(
        "test.caller",
        call(&format!("{}/charges", provider.url())).into(),
    )
    .await
    .expect("publish")
    .await
    .expect("stored");
    let answer = next_message(&mut out, WAIT, "the charge after two 503s", &host).await;
    assert_eq!(
        header(&answer, "idempotency-key").as_deref(),
        Some("caller:IN:1")
    );
    let keys: Vec<String> = provider
        .requests()
        .iter()
        .map(|r| r.header("idempotency-key").unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        keys,
        vec!["caller:IN:1"; 3],
        "one key on all three deliveries"
    );
}
