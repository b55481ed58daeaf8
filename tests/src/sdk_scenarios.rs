//! What every language's SDK must do against the real host, as scenarios the
//! Python and JavaScript tests run on their own test plugin (`echo-py`,
//! `echo-js`): keep state in a granted key-value bucket, and call out over
//! HTTP to what the manifest grants and nothing else. The plugins differ only
//! in their subjects and in how a few failures end, which [`SdkPlugin`] says.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;

use crate::provider::{Provider, one_idempotency_key};
use crate::{
    DeadLetter, Host, NatsServer, PluginDir, WAIT, connect, kv_value, next_dead_letter,
    next_message, publish, subscribe,
};

/// How long a host may take to compile a Python or JavaScript component on a
/// busy machine before a test gives up: an upper bound, not an assertion.
pub const COMPILE_WAIT: Duration = Duration::from_secs(300);

/// Starts a host on `dir` and waits until it is ready, one test at a time:
/// the first compiles the component and fills the compiled-code cache, so
/// the tests after it load from there instead of all compiling the same
/// component at once on a shared machine.
pub async fn start_compiling_host(dir: &PluginDir, url: &str) -> Host {
    static STARTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one_at_a_time = STARTING.lock().await;
    let host = Host::start(&dir.path(), url, &[]);
    host.wait_for_log("host ready", None, COMPILE_WAIT).await;
    host
}

/// How a failure ends for the plugin: the dead letter's kind and attempts,
/// and words its error holds.
#[derive(Debug, Clone, Copy)]
pub struct Ending {
    pub kind: &'static str,
    pub attempts: u32,
    pub says: &'static str,
}

impl Ending {
    /// Fails unless `letter` (of `plugin`, for `subject`) ended so.
    fn assert(&self, letter: &DeadLetter, subject: &str, plugin: &str, host: &Host) {
        letter.assert_about(subject, plugin, self.kind, self.attempts, host);
        assert!(letter.error.contains(self.says), "{}", letter.error);
    }
}

/// A test plugin with a tally handler (payload `KEY`, `inc KEY`,
/// `many K…`, `drop K…`, in the bucket `[config] bucket` names, default
/// `tally`; answers the counts or `deleted N`) and a fetch handler (payload
/// a URL; POSTs `charge` with the SDK's HTTP client and answers `STATUS
/// BODY`, failing as `error_for_status` says for a 4xx or 5xx).
pub struct SdkPlugin {
    pub name: &'static str,
    pub wasm: PathBuf,
    pub tally: &'static str,
    pub fetch: &'static str,
    /// Words of the error for a bucket the manifest does not grant
    /// (`secrets`).
    pub not_granted: &'static str,
    /// How a destination the host refuses ends.
    pub refused: Ending,
    /// How an answer over `http_max_response_bytes` ends.
    pub oversized: Ending,
}

impl SdkPlugin {
    fn dir(&self, manifest: &str) -> PluginDir {
        let dir = PluginDir::new();
        dir.write_manifest(self.name, manifest);
        dir.add_as(self.name, &self.wasm);
        dir
    }

    async fn ask(
        &self,
        client: &async_nats::Client,
        out: &mut async_nats::Subscriber,
        host: &Host,
        payload: &str,
    ) -> String {
        publish(client, self.tally, &[], payload.as_bytes()).await;
        let what = format!("{}'s answer to {payload:?}", self.tally);
        let msg = next_message(out, WAIT, &what, host).await;
        String::from_utf8_lossy(&msg.payload).into_owned()
    }
}

/// The SDK's bucket against a real JetStream bucket: a compare-and-swap
/// update, the atomic increment, and one get-many, set-many and delete-many
/// each for several keys; the state is the NATS bucket's (read back here). A
/// batch with an invalid key changes nothing; a bucket the manifest does not
/// grant is a permanent error.
pub async fn keeps_state_in_a_granted_bucket(plugin: &SdkPlugin) {
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let dir = plugin.dir("[capabilities]\nkeyvalue = [\"tally\"]\n[delivery]\nmax_attempts = 1\n");
    let host = start_compiling_host(&dir, &nats.url()).await;
    let mut out = subscribe(&client, &format!("{}.out", plugin.tally)).await;
    let mut dead = subscribe(&client, &format!("dlq.{}", plugin.tally)).await;
    for (payload, answer) in [
        ("apples", "1"),
        ("apples", "2"),
        ("inc pears", "1"),
        ("many apples plums", "3 1"),
        ("many apples plums figs", "4 2 1"),
    ] {
        assert_eq!(
            plugin.ask(&client, &mut out, &host, payload).await,
            answer,
            "{payload}"
        );
    }
    let bucket = jetstream::new(client.clone())
        .get_key_value("tally")
        .await
        .expect("bucket tally");
    assert_eq!(
        kv_value(&bucket, "apples").await.as_deref(),
        Some(&b"4"[..])
    );
    assert_eq!(kv_value(&bucket, "pears").await.as_deref(), Some(&b"1"[..]));

    let deleted = plugin
        .ask(&client, &mut out, &host, "drop apples figs")
        .await;
    assert_eq!(deleted, "deleted 2");
    assert_eq!(kv_value(&bucket, "apples").await, None);
    assert_eq!(kv_value(&bucket, "plums").await.as_deref(), Some(&b"2"[..]));

    publish(&client, plugin.tally, &[], b"many plums x..y").await;
    let letter = next_dead_letter(&mut dead, "the batch with an invalid key", &host).await;
    letter.assert_about(plugin.tally, plugin.name, "permanent", 1, &host);
    assert!(
        letter.error.contains("invalid key \"x..y\""),
        "{}",
        letter.error
    );
    assert_eq!(kv_value(&bucket, "plums").await.as_deref(), Some(&b"2"[..]));

    // The same plugin, told to use a bucket its manifest does not grant.
    dir.write_manifest(
        plugin.name,
        "[config]\nbucket = \"secrets\"\n[capabilities]\nkeyvalue = [\"tally\"]\n[delivery]\nmax_attempts = 1\n",
    );
    host.wait_for_log("plugin reloaded", Some(plugin.name), COMPILE_WAIT)
        .await;
    publish(&client, plugin.tally, &[], b"apples").await;
    let letter = next_dead_letter(&mut dead, "the refused bucket", &host).await;
    letter.assert_about(plugin.tally, plugin.name, "permanent", 1, &host);
    assert!(
        letter.error.contains(plugin.not_granted),
        "{}",
        letter.error
    );
}

/// The SDK's HTTP client goes out through the host's allow-list to a real
/// HTTP server: a granted destination answers, with the message's
/// idempotency key on every attempt (the same on the retry of a 503); a 402
/// is permanent; an answer over `http_max_response_bytes` and a destination
/// not on the list end as the plugin says, the latter logged and never
/// connected to.
pub async fn reaches_what_the_manifest_grants_and_nothing_else(plugin: &SdkPlugin) {
    let provider = Provider::start().await;
    let elsewhere = Provider::start().await;
    let nats = NatsServer::start();
    let client = connect(&nats.url()).await;
    let dir = plugin.dir(&format!(
        "[capabilities]\nhttp = [\"{}\"]\n[delivery]\nmax_attempts = 2\nbackoff = \"10ms\"\n\
         [limits]\nhttp_max_response_bytes = 100000\n",
        provider.url()
    ));
    let host = start_compiling_host(&dir, &nats.url()).await;
    let mut out = subscribe(&client, &format!("{}.out", plugin.fetch)).await;
    let mut dead = subscribe(&client, &format!("dlq.{}", plugin.fetch)).await;
    let prefix = format!("{}:", plugin.name);

    let url = format!("{}/charges", provider.url());
    publish(&client, plugin.fetch, &[], url.as_bytes()).await;
    let answer = next_message(&mut out, WAIT, "the charge's answer", &host).await;
    let text = String::from_utf8_lossy(&answer.payload);
    assert!(text.starts_with("200 {\"charge_id\""), "{text}");
    let charges = provider.requests();
    assert_eq!(charges.len(), 1, "{charges:?}");
    assert_eq!(charges[0].method, "POST");
    assert_eq!(charges[0].body, b"charge");
    let key = one_idempotency_key(&charges, &prefix);

    // A 503 is transient: retried once, with the same key, then exhausted.
    let url = format!("{}/status/503", provider.url());
    publish(&client, plugin.fetch, &[], url.as_bytes()).await;
    let letter = next_dead_letter(&mut dead, "the 503 charge", &host).await;
    letter.assert_about(plugin.fetch, plugin.name, "exhausted", 2, &host);
    let failed = provider.requests_to("/status/503");
    assert_eq!(failed.len(), 2, "{failed:?}");
    let retried = one_idempotency_key(&failed, &prefix);
    assert_ne!(retried, key, "another message, another key");

    // A 402 is permanent: one attempt.
    let url = format!("{}/status/402", provider.url());
    publish(&client, plugin.fetch, &[], url.as_bytes()).await;
    let letter = next_dead_letter(&mut dead, "the 402 charge", &host).await;
    letter.assert_about(plugin.fetch, plugin.name, "permanent", 1, &host);
    assert!(letter.error.contains("HTTP 402"), "{}", letter.error);

    // An answer over `http_max_response_bytes`.
    let url = format!("{}/big/1000000", provider.url());
    publish(&client, plugin.fetch, &[], url.as_bytes()).await;
    let letter = next_dead_letter(&mut dead, "the oversized answer", &host).await;
    plugin
        .oversized
        .assert(&letter, plugin.fetch, plugin.name, &host);

    // Not on the list: refused before any connection.
    let url = format!("{}/charges", elsewhere.url());
    publish(&client, plugin.fetch, &[], url.as_bytes()).await;
    let letter = next_dead_letter(&mut dead, "the refused charge", &host).await;
    plugin
        .refused
        .assert(&letter, plugin.fetch, plugin.name, &host);
    host.wait_for("the refusal in the log", WAIT, |l| {
        l.message()
            .is_some_and(|m| m.starts_with("HTTP request refused"))
            && l.field_str("url").as_deref() == Some(url.as_str())
    })
    .await;
    assert_eq!(elsewhere.connections(), 0, "{:?}", elsewhere.requests());
}
