//! Publishers and plugins are untrusted: neither may make the host's NATS
//! user act for them beyond what the plugin's manifest grants.

use async_nats::HeaderMap;
use evhost_tests::{
    Host, NatsServer, PluginDir, WAIT, connect, next_dead_letter, pending_message, subscribe,
};

/// The host's connection held: echo still answers, and nothing was
/// reconnected.
async fn assert_connection_held(client: &async_nats::Client, host: &Host) {
    evhost_tests::echo_roundtrip(client, host, "still here").await;
    assert_eq!(
        host.count_logs("disconnected from NATS; reconnecting", None),
        0,
        "{}",
        host.log_report()
    );
}

/// A request to `noop` (which answers every request) whose reply subject is a
/// JetStream API call or a key-value key. Before the fix the host answered,
/// and so deleted the stream or wrote the key with its own rights.
#[tokio::test(flavor = "multi_thread")]
async fn a_reply_to_a_system_subject_is_refused_and_request_reply_still_works() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let js = async_nats::jetstream::new(client.clone());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "PRECIOUS".into(),
        subjects: vec!["precious.>".into()],
        ..Default::default()
    })
    .await
    .expect("create the PRECIOUS stream");
    js.publish("precious.one", "keep me".into())
        .await
        .expect("publish")
        .await
        .expect("stored");
    // The stream a key-value bucket `secrets` lives in, made by hand as the
    // host does (nats-server 2.9 cannot take async-nats's create_key_value).
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "KV_secrets".into(),
        subjects: vec!["$KV.secrets.>".into()],
        max_messages_per_subject: 1,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        ..Default::default()
    })
    .await
    .expect("create the KV_secrets stream");

    let dir = PluginDir::new();
    dir.add_with_manifest("noop", "[delivery]\nmax_attempts = 1\n");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let mut dead = subscribe(&client, "dlq.bench.noop").await;

    for hostile in [
        "$JS.API.STREAM.DELETE.PRECIOUS",
        "$KV.secrets.api_key",
        "$SYS.REQ.SERVER.PING",
    ] {
        client
            .publish_with_reply_and_headers(
                "bench.noop",
                hostile.to_string(),
                HeaderMap::new(),
                "x".into(),
            )
            .await
            .expect("publish the hostile request");
        client.flush().await.expect("flush");
        let letter = next_dead_letter(&mut dead, &format!("the refusal of {hostile}"), &host).await;
        letter.assert_about("bench.noop", "noop", "invalid-output", 1, &host);
        assert!(
            letter.error.contains("system subject") && letter.error.contains(hostile),
            "the dead letter names the refused reply subject: {:?}",
            letter.error
        );
    }

    let mut stream = js
        .get_stream("PRECIOUS")
        .await
        .unwrap_or_else(|e| panic!("the stream is gone: {e}\n{}", host.log_report()));
    let info = stream.info().await.expect("stream info");
    assert_eq!(info.state.messages, 1, "the stream keeps its message");
    let mut kv = js
        .get_stream("KV_secrets")
        .await
        .expect("KV_secrets stream");
    assert_eq!(
        kv.info().await.expect("kv info").state.messages,
        0,
        "no key was written through a reply"
    );

    // Ordinary request/reply (an `_INBOX.` reply subject) still works.
    let answer = tokio::time::timeout(WAIT, client.request("bench.noop", "ping".into()))
        .await
        .expect("the request was answered in time")
        .unwrap_or_else(|e| panic!("request failed: {e}\n{}", host.log_report()));
    assert!(
        answer.payload.is_empty(),
        "noop answers with an empty reply"
    );
    assert!(
        pending_message(&mut dead).is_none(),
        "the request was not dead-lettered"
    );
}

/// A plugin may not subscribe where system traffic flows: a manifest asking
/// for `$KV.>` (every key-value write), `_INBOX.>` or a bare `>` is rejected
/// in one line, and the other plugins keep serving.
#[tokio::test(flavor = "multi_thread")]
async fn system_and_unrooted_subscriptions_are_refused() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let dir = PluginDir::new();
    dir.add("echo");
    for (name, subjects) in [
        ("kvspy", "$KV.>"),
        ("inboxspy", "_INBOX.>"),
        ("allspy", ">"),
    ] {
        dir.add_as(name, &evhost_tests::wasm("echo"));
        dir.write_manifest(name, &format!("subjects = [\"{subjects}\"]\n"));
    }
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    for (name, why) in [
        ("kvspy", "system subject"),
        ("inboxspy", "system subject"),
        ("allspy", "starts with a wildcard"),
    ] {
        let line = host
            .wait_for(&format!("{name} rejected"), WAIT, |l| {
                l.is("plugin rejected", Some(name))
            })
            .await;
        assert!(line.raw.contains(why), "{name}: {}", line.raw);
        assert_eq!(host.count_logs("plugin loaded", Some(name)), 0);
    }
    evhost_tests::echo_roundtrip(&client, &host, "still serving").await;
}

/// `Nats-*` headers steer JetStream (`Nats-Rollup: all` purges a stream) and
/// `Evhost-*` headers are the host's: an output carrying one is refused.
#[tokio::test(flavor = "multi_thread")]
async fn outputs_may_not_carry_nats_or_evhost_headers() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let js = async_nats::jetstream::new(client.clone());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "OUT".into(),
        subjects: vec!["test.bigout.out".into()],
        allow_rollup: true,
        ..Default::default()
    })
    .await
    .expect("create OUT");
    for i in 0..3 {
        js.publish("test.bigout.out", format!("kept {i}").into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
    let dir = PluginDir::new();
    dir.add_with_manifest("bigout", "[delivery]\nmax_attempts = 1\n");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let mut dead = subscribe(&client, "dlq.test.bigout").await;
    for header in [
        "Nats-Rollup=all",
        "Nats-Msg-Id=forged",
        "Evhost-Error-Kind=permanent",
    ] {
        let payload = format!("header:{header}");
        evhost_tests::publish(&client, "test.bigout", &[], payload.as_bytes()).await;
        let letter = next_dead_letter(&mut dead, &format!("the refusal of {header}"), &host).await;
        letter.assert_about("test.bigout", "bigout", "invalid-output", 1, &host);
        assert!(
            letter.error.contains("reserved"),
            "{header}: {}",
            letter.error
        );
    }
    let mut out = js.get_stream("OUT").await.expect("OUT");
    assert_eq!(
        out.info().await.expect("info").state.messages,
        3,
        "nothing was rolled up or added"
    );
}

/// A subject too long for the server's control line once the host writes it
/// (an output of 5 000 characters, or `dlq.` before a long input subject)
/// would make nats-server close the host's connection. Outputs over 1 024
/// bytes are `invalid-output`; dead letters of long subjects go to a
/// shortened subject that keeps the start and a digest; the host serves on.
#[tokio::test(flavor = "multi_thread")]
async fn long_subjects_neither_drop_the_connection_nor_lose_the_dead_letter() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let dir = PluginDir::new();
    let long_output = format!("test.{}", "o.".repeat(2500)) + "end";
    dir.add_with_manifest(
        "bigout",
        &format!("[config]\ncount = 1\nsubject = \"{long_output}\"\n"),
    );
    dir.add_with_manifest("panicker", "subjects = [\"long.>\"]\n");
    dir.add("echo");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;

    let mut dead = subscribe(&client, "dlq.test.bigout").await;
    client
        .publish("test.bigout", "many".into())
        .await
        .expect("publish");
    let letter = next_dead_letter(&mut dead, "the long output's dead letter", &host).await;
    assert_eq!(letter.kind, "invalid-output", "{}", letter.error);
    assert!(
        letter.error.contains("limit is 1024") && letter.error.len() < 300,
        "{}",
        letter.error
    );

    let long_input = format!("long.{}", "t.".repeat(1500)) + "end";
    let mut dead = subscribe(&client, "dlq.long.>").await;
    client
        .publish(long_input.clone(), "boom".into())
        .await
        .expect("publish to a long subject");
    let letter = next_dead_letter(&mut dead, "the long input's dead letter", &host).await;
    assert_eq!(letter.original_subject, long_input);
    let subject = letter.message.subject.as_str();
    assert!(
        subject.len() <= 1024 && subject.starts_with("dlq.long.t.t."),
        "dead letter of a {}-byte subject went to a {}-byte one: {}…",
        long_input.len(),
        subject.len(),
        &subject[..subject.len().min(80)]
    );
    assert_connection_held(&client, &host).await;
}

/// An input's `Nats-*` headers would steer the dead-letter stream:
/// `Nats-Expected-Stream` made it refuse the letter, and a `Nats-Msg-Id`
/// made it drop a second plugin's letter of the same input as a duplicate.
/// Inside a dead letter they are kept as `Evhost-Kept-Nats-*`.
#[tokio::test(flavor = "multi_thread")]
async fn an_inputs_control_headers_do_not_stop_its_dead_letters() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let js = async_nats::jetstream::new(client.clone());
    let mut dlq = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "DLQ".into(),
            subjects: vec!["dlq.>".into()],
            ..Default::default()
        })
        .await
        .expect("create the DLQ stream");
    let dir = PluginDir::new();
    dir.add_with_manifest("panicker", "subjects = [\"t.ctl\"]\n");
    dir.add_with_manifest(
        "flaky",
        "subjects = [\"t.ctl\"]\n[config]\nalways = true\n[delivery]\nmax_attempts = 1\n",
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let mut dead = subscribe(&client, "dlq.t.ctl").await;
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Expected-Stream", "ELSEWHERE");
    headers.insert("Nats-Msg-Id", "order-7");
    client
        .publish_with_headers("t.ctl", headers, "x".into())
        .await
        .expect("publish");
    for _ in 0..2 {
        next_dead_letter(&mut dead, "a dead letter of t.ctl", &host).await;
    }
    // Both letters are stored, each with the input's headers kept.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let stored = dlq.info().await.expect("DLQ stream info").state.messages;
        if stored == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{stored} letter(s) stored in the DLQ stream, not 2\n{}",
            host.log_report()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for seq in 1..=2 {
        let raw = dlq.get_raw_message(seq).await.expect("read a letter");
        let kept = raw
            .headers
            .get("Evhost-Kept-Nats-Expected-Stream")
            .map(|v| v.as_str().to_string());
        assert_eq!(kept.as_deref(), Some("ELSEWHERE"), "letter {seq}");
        assert!(raw.headers.get("Nats-Expected-Stream").is_none());
        assert_eq!(
            raw.headers
                .get("Evhost-Kept-Nats-Msg-Id")
                .map(|v| v.as_str()),
            Some("order-7")
        );
    }
}

/// A failing payload just under the server's `max_payload` has no room for
/// the `Evhost-*` headers: its dead letter was retried and then logged as
/// lost. Now it is cut to fit and says how long the original was.
#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_dead_letter_is_cut_to_fit_and_says_so() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let max = client.server_info().max_payload;
    let dir = PluginDir::new();
    dir.add("panicker");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let mut dead = subscribe(&client, "dlq.test.panic").await;
    let payload: Vec<u8> = (0..max - 100).map(|i| b'a' + (i % 26) as u8).collect();
    client
        .publish("test.panic", payload.clone().into())
        .await
        .expect("publish");
    let letter = next_dead_letter(&mut dead, "the oversized payload's dead letter", &host).await;
    assert_eq!(letter.kind, "trap");
    assert_eq!(
        evhost_tests::header(&letter.message, "Evhost-Payload-Truncated").as_deref(),
        Some((max - 100).to_string().as_str())
    );
    let body = letter.message.payload.as_ref();
    assert!(body.len() > max / 2, "{} bytes kept", body.len());
    assert_eq!(body, &payload[..body.len()], "the leading bytes, unchanged");
    assert_eq!(
        host.count_logs("dead letter lost: NATS refused it ten times", None),
        0
    );
}

/// Publishes to `subject` and waits for the input's dead letter on `dead`:
/// an `invalid-output` naming a dead-letter prefix.
async fn expect_prefix_refusal(
    client: &async_nats::Client,
    subject: String,
    dead: &mut async_nats::Subscriber,
    host: &Host,
) {
    client
        .publish(subject, "one".into())
        .await
        .expect("publish");
    let letter = next_dead_letter(dead, "the refused output's dead letter", host).await;
    assert_eq!(letter.kind, "invalid-output", "{}", letter.error);
    assert!(
        letter.error.contains("dead-letter prefix"),
        "{}",
        letter.error
    );
}

/// A plugin may not write into dead-letter subjects: its output would pass
/// for a dead letter of the host's.
#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_cannot_publish_under_its_dead_letter_prefix() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "bigout",
        "[config]\ncount = 1\nsubject = \"dlq.orders.order.created\"\n",
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let mut forged = subscribe(&client, "dlq.orders.>").await;
    let mut dead = subscribe(&client, "dlq.test.bigout").await;
    expect_prefix_refusal(&client, "test.bigout".into(), &mut dead, &host).await;
    assert!(
        pending_message(&mut forged).is_none(),
        "nothing was published there"
    );
}

/// Nor under another plugin's dead-letter prefix, nor under the default
/// `dlq.` when its own prefix is another: before, `bigout` (prefix
/// `errors.bigout.`) wrote into `echo`'s dead letters (`errors.echo.`).
#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_cannot_publish_under_another_plugins_dead_letter_prefix() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "echo",
        "[delivery]\ndead_letter_prefix = \"errors.echo.\"\n",
    );
    for (n, target) in [
        ("1", "errors.echo.test.echo"),
        ("2", "dlq.orders.order.created"),
    ] {
        dir.add_as(&format!("bigout{n}"), &evhost_tests::wasm("bigout"));
        dir.write_manifest(
            &format!("bigout{n}"),
            &format!(
                "subjects = [\"test.bigout{n}\"]\n[config]\ncount = 1\nsubject = \"{target}\"\n\
                 [delivery]\ndead_letter_prefix = \"errors.bigout.\"\n"
            ),
        );
    }
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let mut forged = subscribe(&client, "errors.echo.>").await;
    let mut forged_default = subscribe(&client, "dlq.>").await;
    let mut dead = subscribe(&client, "errors.bigout.>").await;
    for n in ["1", "2"] {
        expect_prefix_refusal(&client, format!("test.bigout{n}"), &mut dead, &host).await;
    }
    assert!(
        pending_message(&mut forged).is_none(),
        "nothing was published under echo's prefix"
    );
    assert!(
        pending_message(&mut forged_default).is_none(),
        "nothing was published under dlq."
    );
}

/// `limits.max_output_bytes` counts what an output puts on the wire, headers
/// included: before, 5 000 bytes of header went out under a 100-byte cap.
#[tokio::test(flavor = "multi_thread")]
async fn output_headers_count_against_max_output_bytes() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "bigout",
        "[limits]\nmax_output_bytes = 100\n[delivery]\nmax_attempts = 1\n",
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let mut out = subscribe(&client, "test.bigout.out").await;
    let mut dead = subscribe(&client, "dlq.test.bigout").await;

    let big = format!("header:X-Big={}", "v".repeat(5000));
    evhost_tests::publish(&client, "test.bigout", &[], big.as_bytes()).await;
    let letter = next_dead_letter(&mut dead, "the refusal of a 5 000-byte header", &host).await;
    letter.assert_about("test.bigout", "bigout", "invalid-output", 1, &host);
    assert!(
        letter.error.contains("max_output_bytes") && letter.error.contains("headers"),
        "{}",
        letter.error
    );
    assert!(pending_message(&mut out).is_none(), "nothing went out");

    // A small header still fits.
    evhost_tests::publish(&client, "test.bigout", &[], b"header:X-Small=1").await;
    let msg = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut out))
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the small output did not arrive\n{}", host.log_report()));
    assert_eq!(
        msg.headers
            .as_ref()
            .and_then(|h| h.get("X-Small"))
            .map(|v| v.as_str()),
        Some("1")
    );
}

/// A guest's log text cannot forge lines of the host's log: a line break in
/// `log()` text is escaped, not written.
#[test]
fn a_guest_cannot_forge_host_log_lines() {
    let wasm = evhost_tests::wasm("bigout");
    let forged = "log:paid\nINFO evhost: FORGED plugin reloaded";
    let out = evhost_tests::evhost(
        &[
            "invoke",
            wasm.to_str().unwrap(),
            "--subject",
            "test.bigout",
            "--payload",
            forged,
        ],
        None,
    );
    out.assert_no_panic();
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stderr
            .lines()
            .all(|l| !l.trim_start().starts_with("INFO evhost: FORGED")),
        "a guest line break started a host log line:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(r"paid\nINFO evhost: FORGED"),
        "the text is logged, escaped:\n{}",
        out.stderr
    );
}

/// A guest that logs in a loop is cut to a rate instead of flooding the
/// host's log (and its disk).
#[test]
fn a_guest_flooding_the_log_is_rate_limited() {
    let wasm = evhost_tests::wasm("bigout");
    let out = evhost_tests::evhost(
        &[
            "invoke",
            wasm.to_str().unwrap(),
            "--subject",
            "test.bigout",
            "--payload",
            "flood:5000",
        ],
        None,
    );
    out.assert_no_panic();
    assert_eq!(out.code, Some(0), "{out}");
    let logged = out
        .stderr
        .lines()
        .filter(|l| l.contains("flood line"))
        .count();
    assert!(
        (1..=1000).contains(&logged),
        "{logged} of 5 000 lines were logged; at most 1 000 a second should be"
    );
}

/// Whoever can write to the plugin folder cannot stall the host with a FIFO
/// named `x.wasm` (reading it blocked the host's main loop, so no plugin was
/// ever served) or make it follow a symlink: both are refused in one line,
/// and the other plugins are served.
#[tokio::test(flavor = "multi_thread")]
async fn a_fifo_or_symlink_in_the_plugin_folder_is_refused_and_others_serve() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let dir = PluginDir::new();
    let fifo = dir.path().join("aaa.wasm");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    std::os::unix::fs::symlink(evhost_tests::wasm("echo"), dir.path().join("linked.wasm")).unwrap();
    dir.add("echo");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    for (plugin, cause) in [("aaa", "not a regular file"), ("linked", "symbolic link")] {
        let line = host
            .wait_for_log("plugin rejected", Some(plugin), WAIT)
            .await;
        let error = line.field_str("error").unwrap_or_default();
        assert!(error.contains(cause), "{plugin}: {error}");
    }
    let mut out = subscribe(&client, "test.echo.out").await;
    evhost_tests::publish(&client, "test.echo", &[], b"still serving").await;
    let reply = tokio::time::timeout(WAIT, futures::StreamExt::next(&mut out))
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("echo does not answer\n{}", host.log_report()));
    assert_eq!(&reply.payload[..], b"still serving");
}

/// A plugin cannot claim more of the shared instance pool than half of it:
/// a `concurrency` the pool could not serve (which would starve the other
/// plugins of slots, dead-lettering their messages as exhausted) is refused
/// at load with what to set instead; the other plugins serve.
#[tokio::test(flavor = "multi_thread")]
async fn a_concurrency_the_instance_pool_cannot_serve_is_refused_at_load() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let dir = PluginDir::new();
    dir.add("echo");
    dir.add_as("greedy", &evhost_tests::wasm("echo"));
    dir.write_manifest(
        "greedy",
        "subjects = [\"test.greedy\"]\n[limits]\nconcurrency = 600\n",
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let line = host
        .wait_for_log("plugin rejected", Some("greedy"), WAIT)
        .await;
    let error = line.field_str("error").unwrap_or_default();
    assert!(
        error.contains("limits.concurrency = 600") && error.contains("500 or less"),
        "{error}"
    );
    assert_eq!(
        evhost_tests::echo_roundtrip(&client, &host, "others serve").await,
        "1"
    );
    // The count the share is computed from is real: echo makes a memory.
    let loaded = host.wait_for_log("plugin loaded", Some("echo"), WAIT).await;
    let memories = loaded.field("memories").and_then(|m| m.as_u64());
    assert!(memories.is_some_and(|m| m >= 1), "{}", loaded.raw);
}

/// Publishes raw `HPUB` frames on a connection of its own, as a hostile
/// publisher can: `frames` are (subject, header block, payload).
fn publish_raw(url: &str, frames: &[(&str, &[u8], &[u8])]) {
    use std::io::{BufRead, BufReader, Write};
    let addr = url.trim_start_matches("nats://");
    let stream = std::net::TcpStream::connect(addr).expect("connect to nats-server");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut info = String::new();
    reader.read_line(&mut info).expect("read INFO");
    let mut wire = b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true}\r\n".to_vec();
    for (subject, header, payload) in frames {
        wire.extend_from_slice(
            format!(
                "HPUB {subject} {} {}\r\n",
                header.len(),
                header.len() + payload.len()
            )
            .as_bytes(),
        );
        wire.extend_from_slice(header);
        wire.extend_from_slice(payload);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"PING\r\n");
    (&stream).write_all(&wire).expect("write the frames");
    let mut line = String::new();
    while !line.starts_with("PONG") {
        line.clear();
        reader.read_line(&mut line).expect("read until PONG");
        assert!(
            !line.starts_with("-ERR"),
            "the server refused a frame: {line}"
        );
    }
}

/// Header blocks the client cannot parse: invalid UTF-8, a line with no `:`,
/// a version line that is not `NATS/1.0`.
const MALFORMED: [(&[u8], &str); 3] = [
    (b"NATS/1.0\r\nX-Bad: \xff\xfe\r\n\r\n", "utf-8"),
    (b"NATS/1.0\r\nno colon on this line\r\n\r\n", "header"),
    (b"HTTP/1.1 200 OK\r\n\r\n", "NATS/1.0"),
];

/// Finding 3: one message with a header block the client cannot parse made
/// it drop the host's connection (core NATS: the messages behind it on that
/// connection were lost). Now such a message is dead-lettered with its
/// payload intact, the messages after it are handled, and the connection
/// stays up.
#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_header_block_is_dead_lettered_and_the_connection_stays_up() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let dir = PluginDir::new();
    dir.add("echo");
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let mut dead = subscribe(&client, "dlq.test.echo").await;
    let mut out = subscribe(&client, "test.echo.out").await;

    let mut frames: Vec<(&str, &[u8], &[u8])> = Vec::new();
    for (i, (header, _)) in MALFORMED.iter().enumerate() {
        frames.push(("test.echo", header, [b"bad-0", b"bad-1", b"bad-2"][i]));
        frames.push(("test.echo", b"NATS/1.0\r\nX-Ok: yes\r\n\r\n", b"good"));
    }
    publish_raw(&nats.url(), &frames);

    let mut letters = Vec::new();
    for _ in MALFORMED {
        letters.push(next_dead_letter(&mut dead, "a malformed message's dead letter", &host).await);
    }
    letters.sort_by(|a, b| a.message.payload.cmp(&b.message.payload));
    for (i, letter) in letters.iter().enumerate() {
        assert_eq!(
            letter.message.payload.as_ref(),
            format!("bad-{i}").as_bytes()
        );
        assert_eq!(letter.kind, "permanent", "{}", letter.error);
        assert_eq!(letter.attempts, 1);
        assert!(
            letter.error.contains("malformed headers") && letter.error.contains(MALFORMED[i].1),
            "{}",
            letter.error
        );
    }
    for _ in MALFORMED {
        let msg = evhost_tests::next_message(&mut out, WAIT, "echo of a good message", &host).await;
        assert_eq!(msg.payload.as_ref(), b"good");
    }
    assert_connection_held(&client, &host).await;
}

/// The same on JetStream, where the stored message used to drop the
/// connection again at every redelivery: it is dead-lettered once and
/// terminated.
#[tokio::test(flavor = "multi_thread")]
async fn a_stored_malformed_header_block_is_dead_lettered_once() {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "echo",
        "[jetstream]\nstream = \"IN\"\ncreate_stream = true\n\
         stream_subjects = [\"test.echo\"]\nack_wait = \"1s\"\n",
    );
    let host = Host::start_ready(&dir.path(), &nats.url()).await;
    let mut dead = subscribe(&client, "dlq.test.echo").await;
    publish_raw(&nats.url(), &[("test.echo", MALFORMED[1].0, b"stored-bad")]);
    let letter = next_dead_letter(&mut dead, "the stored message's dead letter", &host).await;
    assert_eq!(letter.message.payload.as_ref(), b"stored-bad");
    assert_eq!(letter.kind, "permanent", "{}", letter.error);
    assert!(
        letter.error.contains("malformed headers"),
        "{}",
        letter.error
    );
    // Three ack waits later: not delivered again, nothing reconnected.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(
        pending_message(&mut dead).is_none(),
        "dead-lettered twice: the message was not terminated"
    );
    assert_connection_held(&client, &host).await;
}

/// Finding 9: a component that compiles for longer than the compile time
/// limit is refused in one line naming the limit, and the host serves its
/// other plugins (a Python component compiles for seconds with the
/// compiled-code cache off).
#[tokio::test(flavor = "multi_thread")]
async fn a_compile_over_the_time_limit_is_refused_and_the_others_serve() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("echo");
    let host = Host::start(
        &dir.path(),
        &nats.url(),
        &["--no-compile-cache", "--compile-timeout", "3s"],
    );
    host.wait_for_log("host ready", None, WAIT).await;
    dir.add_as("slow-py", &evhost_tests::python::python_wasm("echo-py"));
    let rejected = host
        .wait_for_log("plugin rejected", Some("slow-py"), WAIT)
        .await;
    let error = rejected.field_str("error").unwrap_or_default();
    assert!(
        error.starts_with("compiling took longer than 3s"),
        "{error}\n{}",
        host.log_report()
    );
    assert!(!error.contains('\n'), "one line: {error}");
    let client = connect(&nats.url()).await;
    evhost_tests::echo_roundtrip(&client, &host, "served").await;
}

/// Finding 9: loads run beside one another and beside the main loop. While
/// a large component compiles (a Python one, with the cache off), a plugin
/// dropped in later is loaded and serves; before, it waited for the compile.
#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_dropped_in_during_a_long_compile_is_loaded_at_once() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("counter");
    let host = Host::start(&dir.path(), &nats.url(), &["--no-compile-cache"]);
    host.wait_for_log("host ready", None, WAIT).await;
    dir.add_as("slow-py", &evhost_tests::python::python_wasm("echo-py"));
    // Sequencing, not a measurement: let the watcher settle and the
    // compile begin (it takes ten seconds and more here).
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    dir.add("echo");
    host.wait_for_log("plugin loaded", Some("echo"), WAIT).await;
    assert_eq!(
        host.count_logs("plugin loaded", Some("slow-py")),
        0,
        "echo waited for slow-py's compile\n{}",
        host.log_report()
    );
    let client = connect(&nats.url()).await;
    evhost_tests::echo_roundtrip(&client, &host, "while slow-py compiles").await;
    // And the long one still arrives.
    host.wait_for_log(
        "plugin loaded",
        Some("slow-py"),
        std::time::Duration::from_secs(120),
    )
    .await;
}
