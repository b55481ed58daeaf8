//! `evhost check` shows what a plugin imports and what its manifest grants;
//! `evhost invoke` runs handlers that use HTTP (against a real server) and
//! key-value (in memory, or on a NATS server with `--nats`).

use std::path::Path;

use evhost_tests::provider::Provider;
use evhost_tests::*;

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

#[test]
fn check_lists_imported_capabilities_and_grants() {
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "tally",
        "[capabilities]\nkeyvalue = [\"tally\", \"other\"]\n",
    );
    dir.add("caller");
    dir.add("echo");
    let tally = evhost(
        &[
            "check",
            path_str(&dir.wasm_path("tally")),
            "--manifest",
            path_str(&dir.manifest_path("tally")),
        ],
        None,
    );
    assert_eq!(tally.code, Some(0), "{tally}");
    assert!(
        tally
            .stdout
            .contains("capability: wasi:keyvalue (buckets granted: tally, other)"),
        "{tally}"
    );
    let caller = evhost(&["check", path_str(&dir.wasm_path("caller"))], None);
    assert!(
        caller
            .stdout
            .contains("capability: wasi:http (not granted: every request is refused)"),
        "{caller}"
    );
    let echo = evhost(&["check", path_str(&dir.wasm_path("echo"))], None);
    assert!(
        echo.stdout.contains("capabilities: none imported"),
        "{echo}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invoke_calls_a_real_http_server_as_granted() {
    let provider = Provider::start().await;
    let dir = PluginDir::new();
    dir.add_with_manifest(
        "caller",
        &format!("[capabilities]\nhttp = [\"{}\"]\n", provider.url()),
    );
    let payload =
        serde_json::json!({ "url": format!("{}/status/200", provider.url()) }).to_string();
    let (wasm, manifest) = (dir.wasm_path("caller"), dir.manifest_path("caller"));
    let out = tokio::task::spawn_blocking(move || {
        evhost(
            &[
                "invoke",
                path_str(&wasm),
                "--manifest",
                path_str(&manifest),
                "--subject",
                "test.caller",
                "--payload",
                "-",
                "--header",
                "Nats-Msg-Id=m-1",
            ],
            Some(payload.as_bytes()),
        )
    })
    .await
    .unwrap();
    assert_eq!(out.code, Some(0), "{out}");
    let json = out.json();
    assert_eq!(
        json["outputs"][0]["payload"], "{\"status\":200}",
        "{json:#}"
    );
    let requests = provider.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].header("idempotency-key"),
        Some("caller:m-1"),
        "the key comes from Nats-Msg-Id"
    );
}

fn invoke_tally(wasm: &Path, manifest: &Path, nats: Option<&str>) -> CliOutput {
    let mut args = vec![
        "invoke",
        path_str(wasm),
        "--manifest",
        path_str(manifest),
        "--subject",
        "test.tally",
        "--payload",
        "-",
    ];
    if let Some(url) = nats {
        args.extend(["--nats", url]);
    }
    evhost(&args, Some(b"apples"))
}

#[tokio::test(flavor = "multi_thread")]
async fn invoke_keeps_key_value_in_memory_or_on_a_given_server() {
    let dir = PluginDir::new();
    dir.add_with_manifest("tally", "[capabilities]\nkeyvalue = [\"tally\"]\n");
    let (wasm, manifest) = (dir.wasm_path("tally"), dir.manifest_path("tally"));
    // In memory: every invoke starts from nothing.
    for _ in 0..2 {
        let out = invoke_tally(&wasm, &manifest, None);
        assert_eq!(out.code, Some(0), "{out}");
        assert_eq!(out.json()["outputs"][0]["payload"], "1", "{out}");
    }
    // On a server: the count carries over from one invoke to the next.
    let nats = NatsServer::start();
    let url = nats.url();
    for expected in ["1", "2"] {
        let (wasm, manifest, url) = (wasm.clone(), manifest.clone(), url.clone());
        let out = tokio::task::spawn_blocking(move || invoke_tally(&wasm, &manifest, Some(&url)))
            .await
            .unwrap();
        assert_eq!(out.code, Some(0), "{out}");
        assert_eq!(out.json()["outputs"][0]["payload"], expected, "{out}");
    }
    let js = async_nats::jetstream::new(connect(&url).await);
    let bucket = js
        .get_key_value("tally")
        .await
        .expect("the bucket on the server");
    assert_eq!(bucket.get("apples").await.unwrap().unwrap().as_ref(), b"2");
}
