//! `audit`: logs every domain event of the shop.
//!
//! Subscribed to `orders.>`, `payments.>` and `inventory.>`, it logs each
//! event's subject, size and `event_id` (when the payload is JSON with one).
//! It publishes nothing and never fails, whatever the payload.

use evhost_sdk::{Context, HandlerError, Message, Outgoing, handler};

/// The one-line audit record of a message.
pub fn describe(msg: &Message) -> String {
    let event_id = serde_json::from_slice::<serde_json::Value>(&msg.payload)
        .ok()
        .and_then(|v| {
            v.get("event_id")
                .and_then(|id| id.as_str())
                .map(str::to_string)
        });
    match event_id {
        Some(id) => format!(
            "audit {} ({} bytes) event_id={id}",
            msg.subject,
            msg.payload.len()
        ),
        None => format!("audit {} ({} bytes)", msg.subject, msg.payload.len()),
    }
}

#[handler(subjects = ["orders.>", "payments.>", "inventory.>"])]
fn on_event(msg: &Message, _ctx: &Context) -> Result<Vec<Outgoing>, HandlerError> {
    evhost_sdk::log::info(describe(msg));
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(payload: &[u8]) -> Message {
        Message {
            subject: "orders.order.created".into(),
            headers: vec![],
            payload: payload.to_vec(),
            reply_to: None,
            attempt: 1,
        }
    }

    #[test]
    fn describes_json_and_non_json_events() {
        assert_eq!(
            describe(&msg(br#"{"event_id":"e-7"}"#)),
            "audit orders.order.created (18 bytes) event_id=e-7"
        );
        assert_eq!(
            describe(&msg(b"\xff\x00")),
            "audit orders.order.created (2 bytes)"
        );
    }
}
