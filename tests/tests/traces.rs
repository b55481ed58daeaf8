//! OpenTelemetry traces: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, each message
//! is a consumer span exported over OTLP/HTTP to a real receiver started by
//! the test; the span is the child of the input's `traceparent`, and the
//! parent of the outputs and dead letters published while handling it.

use evhost_tests::otlp::{OtlpReceiver, ReceivedSpan, SPAN_KIND_CONSUMER, STATUS_CODE_ERROR};
use evhost_tests::*;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PUBLISHER_SPAN: &str = "00f067aa0ba902b7";
const OTHER_PUBLISHER_SPAN: &str = "b7ad6b7169203331";

/// `traceparent`'s trace id and parent span id.
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "a W3C traceparent: {traceparent}");
    assert_eq!(parts[0], "00", "version 00: {traceparent}");
    (parts[1].to_string(), parts[2].to_string())
}

fn host_exporting_to(receiver: &OtlpReceiver, dir: &PluginDir, nats: &NatsServer) -> Host {
    Host::start_with(
        &dir.path(),
        &nats.url(),
        HostOptions {
            env: vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT".into(), receiver.endpoint()),
                // Export at once rather than every five seconds.
                ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
            ],
            ..HostOptions::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn spans_chain_the_input_the_handler_and_its_outputs_and_dead_letters() {
    let receiver = OtlpReceiver::start().await;
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("payment");
    let host = host_exporting_to(&receiver, &dir, &nats);
    host.wait_for_log("host ready", None, WAIT).await;
    let client = connect(&nats.url()).await;
    let mut payments = subscribe(&client, "payments.payment.completed").await;
    let mut dead = subscribe(&client, "dlq.>").await;

    let input_parent = format!("00-{TRACE_ID}-{PUBLISHER_SPAN}-01");
    let order = OrderCreated::new("ord-traced", "cust-1");
    publish(
        &client,
        "orders.order.created",
        &[("traceparent", &input_parent)],
        &order.to_bytes(),
    )
    .await;
    let output = next_message(&mut payments, WAIT, "the payment", &host).await;
    let output_parent = header(&output, "traceparent").expect("the output carries traceparent");
    let (trace, handler_span) = ids(&output_parent);
    assert_eq!(trace, TRACE_ID, "the output stays in the input's trace");
    assert_ne!(
        handler_span, PUBLISHER_SPAN,
        "the output's parent is the host's span, not the publisher's"
    );

    let span = receiver
        .wait_for(
            "the handler span",
            |s: &ReceivedSpan| s.span_id == handler_span,
            WAIT,
            &host,
        )
        .await;
    assert_eq!(span.trace_id, TRACE_ID);
    assert_eq!(
        span.parent_span_id, PUBLISHER_SPAN,
        "a child of the input's traceparent"
    );
    assert_eq!(span.kind, SPAN_KIND_CONSUMER, "{span:?}");
    assert_eq!(span.name, "process orders.order.created");
    assert_eq!(span.attribute("messaging.system"), Some("nats"), "{span:?}");
    assert_eq!(
        span.attribute("messaging.operation.type"),
        Some("process"),
        "{span:?}"
    );
    assert_eq!(
        span.attribute("messaging.destination.name"),
        Some("orders.order.created"),
        "{span:?}"
    );
    assert_eq!(span.attribute("plugin"), Some("payment"), "{span:?}");
    assert_eq!(span.service_name.as_deref(), Some("evhost"));

    // A payload that does not decode: the dead letter is the child of the
    // span that gave up, which ends as an error.
    let letter_input = format!("00-{TRACE_ID}-{OTHER_PUBLISHER_SPAN}-01");
    publish(
        &client,
        "orders.order.created",
        &[("traceparent", &letter_input)],
        b"{not json",
    )
    .await;
    let letter = next_dead_letter(&mut dead, "the malformed order's dead letter", &host).await;
    let letter_parent =
        header(&letter.message, "traceparent").expect("the dead letter carries traceparent");
    let (trace, failed_span) = ids(&letter_parent);
    assert_eq!(trace, TRACE_ID);
    let failed = receiver
        .wait_for(
            "the failed handler span",
            |s: &ReceivedSpan| s.span_id == failed_span,
            WAIT,
            &host,
        )
        .await;
    assert_eq!(failed.parent_span_id, OTHER_PUBLISHER_SPAN);
    assert_eq!(failed.status_code, STATUS_CODE_ERROR, "{failed:?}");
}

/// A message with no `traceparent`, or one that is not W3C trace context (a
/// publisher's bytes are untrusted), is the root of a new trace: its span
/// has no parent and its output names that span.
#[tokio::test(flavor = "multi_thread")]
async fn a_message_without_valid_trace_context_starts_a_trace() {
    let receiver = OtlpReceiver::start().await;
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("payment");
    let host = host_exporting_to(&receiver, &dir, &nats);
    host.wait_for_log("host ready", None, WAIT).await;
    let client = connect(&nats.url()).await;
    let mut payments = subscribe(&client, "payments.payment.completed").await;
    let garbage = format!("00-{}-zz-01", "g".repeat(40));
    let inputs: [&[(&str, &str)]; 3] = [
        &[],
        &[("traceparent", "not trace context")],
        &[("traceparent", &garbage), ("tracestate", "=,=,=")],
    ];
    for (i, headers) in inputs.into_iter().enumerate() {
        let order = OrderCreated::new(&format!("ord-root-{i}"), "cust-1");
        publish(&client, "orders.order.created", headers, &order.to_bytes()).await;
        let output = next_message(&mut payments, WAIT, "the payment", &host).await;
        let (trace, handler_span) =
            ids(&header(&output, "traceparent").expect("the output carries the new trace"));
        let span = receiver
            .wait_for(
                "the root handler span",
                |s: &ReceivedSpan| s.span_id == handler_span,
                WAIT,
                &host,
            )
            .await;
        assert_eq!(span.trace_id, trace, "input {i}");
        assert!(
            span.parent_span_id.is_empty(),
            "input {i}: a root span: {span:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsupported_otlp_protocol_is_a_one_line_error_at_start() {
    let nats = NatsServer::start();
    let dir = PluginDir::new();
    dir.add("payment");
    let host = Host::start_with(
        &dir.path(),
        &nats.url(),
        HostOptions {
            env: vec![
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                    "http://127.0.0.1:4318".into(),
                ),
                ("OTEL_EXPORTER_OTLP_PROTOCOL".into(), "grpc".into()),
            ],
            ..HostOptions::default()
        },
    );
    let status = host.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(1), "{}", host.log_report());
    let logs = host.logs();
    assert!(
        logs.contains("OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported"),
        "{logs}"
    );
    assert_eq!(logs.trim().lines().count(), 1, "one line:\n{logs}");
}
