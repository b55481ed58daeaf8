//! `payment`: charges an order when it is created.
//!
//! On `orders.order.created` it validates the order (items present, every
//! quantity positive, `total_cents` equal to the sum of the items), charges a
//! simulated provider and emits `payments.payment.completed`, or
//! `payments.payment.failed` when the order is over the configured limit.
//!
//! A broken business rule or a declined card is a permanent error; the
//! provider being unavailable is transient.
//!
//! With `provider_url = "https://…"` in `[config]` (and that URL granted in
//! `[capabilities] http`), it charges a real provider: `POST
//! {provider_url}/charges` with `{"order_id", "customer_id", "amount_cents"}`
//! and the message's idempotency key as `Idempotency-Key`, so a retried
//! charge is never charged twice. 2xx is a completed payment, 402 a declined
//! card (permanent), 5xx, 429 and timeouts are transient.
//!
//! Without `provider_url` it simulates the provider, driven by the
//! manifest's `[config]`, so failures can be provoked on purpose:
//! - `decline_customers = "c-1,c-2"`: these customers' cards are declined;
//! - `fail_attempts = 2`: the provider is unavailable on attempts 1 and 2;
//! - `unavailable = true`: the provider is always unavailable;
//! - `limit_cents = 100000`: larger orders fail as a business outcome;
//! - `version = "v2"`: copied into every output as `handler_version`.

use evhost_sdk::{Context, HandlerError, Outgoing, handler};
use serde::{Deserialize, Serialize};

/// `orders.order.created`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct OrderCreated {
    pub event_id: String,
    pub order_id: String,
    pub customer_id: String,
    pub items: Vec<Item>,
    pub total_cents: u64,
    pub created_at: String,
}

/// One line of an order.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Item {
    pub product_id: String,
    pub quantity: u32,
    pub price_cents: u64,
}

/// `payments.payment.completed`.
#[derive(Debug, Serialize)]
struct PaymentCompleted<'a> {
    event_id: String,
    order_id: &'a str,
    customer_id: &'a str,
    amount_cents: u64,
    causation_id: &'a str,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    handler_version: Option<String>,
}

/// `payments.payment.failed`.
#[derive(Debug, Serialize)]
struct PaymentFailed<'a> {
    event_id: String,
    order_id: &'a str,
    reason: String,
    causation_id: &'a str,
    created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    handler_version: Option<String>,
}

/// Checks the order's business rules; the error names the rule broken.
pub fn validate(order: &OrderCreated) -> Result<(), String> {
    if order.items.is_empty() {
        return Err(format!("order {} has no items", order.order_id));
    }
    if let Some(item) = order.items.iter().find(|i| i.quantity == 0) {
        return Err(format!(
            "order {}: item {} has quantity 0",
            order.order_id, item.product_id
        ));
    }
    let sum: u64 = order
        .items
        .iter()
        .map(|i| u64::from(i.quantity) * i.price_cents)
        .sum();
    if sum != order.total_cents {
        return Err(format!(
            "order {}: total_cents {} does not match the items ({sum})",
            order.order_id, order.total_cents
        ));
    }
    Ok(())
}

/// What the simulated provider does with a charge.
#[derive(Debug, PartialEq, Eq)]
pub enum Charge {
    /// The money moved.
    Approved,
    /// The card was declined.
    Declined,
    /// The provider could not be reached.
    Unavailable,
}

/// The provider's answer for `customer` on delivery `attempt`, given the
/// plugin's configuration.
pub fn charge(
    customer: &str,
    attempt: u32,
    declined: Option<&str>,
    fail_attempts: u32,
    unavailable: bool,
) -> Charge {
    if unavailable || attempt <= fail_attempts {
        return Charge::Unavailable;
    }
    if declined.is_some_and(|list| list.split(',').any(|c| c.trim() == customer)) {
        return Charge::Declined;
    }
    Charge::Approved
}

/// The request a real provider gets.
#[derive(Serialize)]
struct ChargeRequest<'a> {
    order_id: &'a str,
    customer_id: &'a str,
    amount_cents: u64,
}

/// Charges `order` at the provider behind `url`.
fn charge_provider(url: &str, order: &OrderCreated) -> Result<Charge, HandlerError> {
    let response =
        evhost_sdk::http::Request::post(format!("{}/charges", url.trim_end_matches('/')))
            .json(&ChargeRequest {
                order_id: &order.order_id,
                customer_id: &order.customer_id,
                amount_cents: order.total_cents,
            })?
            .send()?;
    charge_from_status(response.status())
}

/// What a provider's status means for the charge.
pub fn charge_from_status(status: u16) -> Result<Charge, HandlerError> {
    match status {
        200..=299 => Ok(Charge::Approved),
        402 => Ok(Charge::Declined),
        429 | 500..=599 => Ok(Charge::Unavailable),
        other => Err(HandlerError::permanent(format!(
            "payment provider answered {other}"
        ))),
    }
}

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[handler(subject = "orders.order.created")]
fn on_order_created(order: OrderCreated, ctx: &Context) -> Result<Vec<Outgoing>, HandlerError> {
    validate(&order).map_err(HandlerError::permanent)?;
    let fail_attempts = match ctx.config("fail_attempts") {
        Some(v) => v
            .parse()
            .map_err(|e| HandlerError::permanent(format!("config fail_attempts {v:?}: {e}")))?,
        None => 0,
    };
    let unavailable = ctx.config("unavailable").as_deref() == Some("true");
    let version = ctx.config("version");
    let limit = ctx
        .config("limit_cents")
        .and_then(|v| v.parse::<u64>().ok());

    if let Some(limit) = limit.filter(|l| order.total_cents > *l) {
        evhost_sdk::info!("order {} over the limit of {limit} cents", order.order_id);
        let failed = PaymentFailed {
            event_id: uuid::Uuid::new_v4().to_string(),
            order_id: &order.order_id,
            reason: format!(
                "amount {} over the limit of {limit} cents",
                order.total_cents
            ),
            causation_id: &order.event_id,
            created_at: now(),
            handler_version: version,
        };
        return Ok(vec![Outgoing::json("payments.payment.failed", &failed)?]);
    }

    let outcome = match ctx.config("provider_url") {
        Some(url) => charge_provider(&url, &order)?,
        None => charge(
            &order.customer_id,
            ctx.attempt(),
            ctx.config("decline_customers").as_deref(),
            fail_attempts,
            unavailable,
        ),
    };
    match outcome {
        Charge::Unavailable => Err(HandlerError::transient(format!(
            "payment provider unavailable (attempt {})",
            ctx.attempt()
        ))),
        Charge::Declined => Err(HandlerError::permanent(format!(
            "card declined for customer {}",
            order.customer_id
        ))),
        Charge::Approved => {
            evhost_sdk::debug!(
                "charged {} cents for order {}",
                order.total_cents,
                order.order_id
            );
            let completed = PaymentCompleted {
                event_id: uuid::Uuid::new_v4().to_string(),
                order_id: &order.order_id,
                customer_id: &order.customer_id,
                amount_cents: order.total_cents,
                causation_id: &order.event_id,
                created_at: now(),
                handler_version: version,
            };
            Ok(vec![Outgoing::json(
                "payments.payment.completed",
                &completed,
            )?])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(items: Vec<(u32, u64)>, total: u64) -> OrderCreated {
        OrderCreated {
            event_id: "e-1".into(),
            order_id: "o-1".into(),
            customer_id: "c-1".into(),
            items: items
                .into_iter()
                .enumerate()
                .map(|(i, (quantity, price_cents))| Item {
                    product_id: format!("p-{i}"),
                    quantity,
                    price_cents,
                })
                .collect(),
            total_cents: total,
            created_at: "2026-11-22T10:00:00Z".into(),
        }
    }

    #[test]
    fn valid_order_passes() {
        assert_eq!(validate(&order(vec![(2, 500), (1, 250)], 1250)), Ok(()));
    }

    #[test]
    fn broken_rules_are_named() {
        assert!(
            validate(&order(vec![], 0))
                .unwrap_err()
                .contains("no items")
        );
        assert!(
            validate(&order(vec![(0, 500)], 0))
                .unwrap_err()
                .contains("quantity 0")
        );
        assert!(
            validate(&order(vec![(2, 500)], 999))
                .unwrap_err()
                .contains("does not match")
        );
    }

    #[test]
    fn provider_statuses_map_to_charges() {
        assert_eq!(charge_from_status(201), Ok(Charge::Approved));
        assert_eq!(charge_from_status(402), Ok(Charge::Declined));
        assert_eq!(charge_from_status(503), Ok(Charge::Unavailable));
        assert_eq!(charge_from_status(429), Ok(Charge::Unavailable));
        assert!(matches!(
            charge_from_status(400),
            Err(HandlerError::Permanent(_))
        ));
    }

    #[test]
    fn provider_behaviour_follows_config() {
        assert_eq!(charge("c-1", 1, None, 0, false), Charge::Approved);
        assert_eq!(charge("c-1", 1, None, 2, false), Charge::Unavailable);
        assert_eq!(charge("c-1", 3, None, 2, false), Charge::Approved);
        assert_eq!(charge("c-1", 9, None, 0, true), Charge::Unavailable);
        assert_eq!(
            charge("c-2", 1, Some("c-1, c-2"), 0, false),
            Charge::Declined
        );
        assert_eq!(
            charge("c-3", 1, Some("c-1,c-2"), 0, false),
            Charge::Approved
        );
    }
}
