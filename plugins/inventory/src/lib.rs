//! `inventory`: reserves stock for a created order.
//!
//! On `orders.order.created` it emits one `inventory.reservation.created`
//! listing the products and quantities to hold. A payload that is not an
//! order is a permanent error (the typed handler never sees it).

use evhost_sdk::{Context, HandlerError, Outgoing, handler};
use serde::{Deserialize, Serialize};

/// The part of `orders.order.created` inventory needs.
#[derive(Debug, Deserialize)]
pub struct OrderCreated {
    pub event_id: String,
    pub order_id: String,
    pub items: Vec<Item>,
}

/// One line of an order.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Item {
    pub product_id: String,
    pub quantity: u32,
}

/// `inventory.reservation.created`.
#[derive(Debug, Serialize)]
pub struct ReservationCreated {
    pub event_id: String,
    pub order_id: String,
    pub causation_id: String,
    pub items: Vec<Item>,
    pub created_at: String,
}

/// The reservation for an order: one line per product, quantities summed.
pub fn reservation(
    order: &OrderCreated,
    event_id: String,
    created_at: String,
) -> ReservationCreated {
    let mut items: Vec<Item> = Vec::new();
    for item in &order.items {
        match items.iter_mut().find(|i| i.product_id == item.product_id) {
            Some(line) => line.quantity += item.quantity,
            None => items.push(Item {
                product_id: item.product_id.clone(),
                quantity: item.quantity,
            }),
        }
    }
    ReservationCreated {
        event_id,
        order_id: order.order_id.clone(),
        causation_id: order.event_id.clone(),
        items,
        created_at,
    }
}

#[handler(subject = "orders.order.created")]
fn on_order_created(order: OrderCreated, ctx: &Context) -> Result<Vec<Outgoing>, HandlerError> {
    let created_at = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let reserved = reservation(&order, uuid::Uuid::new_v4().to_string(), created_at);
    evhost_sdk::debug!(
        "reserving {} products for order {} (attempt {})",
        reserved.items.len(),
        order.order_id,
        ctx.attempt()
    );
    Ok(vec![Outgoing::json(
        "inventory.reservation.created",
        &reserved,
    )?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_product_lines_are_merged() {
        let order = OrderCreated {
            event_id: "e".into(),
            order_id: "o".into(),
            items: vec![
                Item {
                    product_id: "a".into(),
                    quantity: 1,
                },
                Item {
                    product_id: "b".into(),
                    quantity: 2,
                },
                Item {
                    product_id: "a".into(),
                    quantity: 3,
                },
            ],
        };
        let r = reservation(&order, "id".into(), "now".into());
        assert_eq!(
            r.items,
            vec![
                Item {
                    product_id: "a".into(),
                    quantity: 4
                },
                Item {
                    product_id: "b".into(),
                    quantity: 2
                }
            ]
        );
        assert_eq!(r.causation_id, "e");
        assert_eq!(r.order_id, "o");
    }
}
