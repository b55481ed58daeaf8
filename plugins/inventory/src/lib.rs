//! `inventory`: reserves stock for a created order.
//!
//! On `orders.order.created` it emits one `inventory.reservation.created`
//! listing the products and quantities to hold. A payload that is not an
//! order is a permanent error (the typed handler never sees it).
//!
//! With `stock_bucket = "stock"` in `[config]` (and that bucket granted in
//! `[capabilities] keyvalue`) it keeps stock counts in key-value state: the
//! key is the product id, the value `{"available": N, "held": {…}}`. Each
//! line is reserved with a compare-and-swap that takes the units and records
//! the hold under the message's idempotency key in one write, so several
//! hosts racing for the last unit never oversell and a redelivered order is
//! never reserved twice. When a product has too little stock, the lines
//! already held for the order are given back and it emits
//! `inventory.reservation.failed` instead. A product with no stock entry
//! has none available.

use std::collections::BTreeMap;

use evhost_sdk::kv::Bucket;
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

/// `inventory.reservation.failed`.
#[derive(Debug, Serialize)]
pub struct ReservationFailed {
    pub event_id: String,
    pub order_id: String,
    pub causation_id: String,
    pub reason: String,
    pub created_at: String,
}

/// A product's stock entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
pub struct Stock {
    /// Units not held by any order.
    pub available: u64,
    /// Units held, by the idempotency key of the order that holds them.
    #[serde(default)]
    pub held: BTreeMap<String, u64>,
}

/// What reserving one line does to a stock entry.
#[derive(Debug, PartialEq)]
pub enum Hold {
    /// The units are held now (the new entry to write).
    Taken(Stock),
    /// This order already holds them (a redelivery): nothing to write.
    AlreadyHeld,
    /// Too few units: nothing to write.
    Short { available: u64 },
}

/// Holds `quantity` units of `stock` for `holder`.
pub fn hold(stock: Option<Stock>, holder: &str, quantity: u64) -> Hold {
    let mut stock = stock.unwrap_or_default();
    if stock.held.contains_key(holder) {
        return Hold::AlreadyHeld;
    }
    if stock.available < quantity {
        return Hold::Short {
            available: stock.available,
        };
    }
    stock.available -= quantity;
    stock.held.insert(holder.to_string(), quantity);
    Hold::Taken(stock)
}

/// Gives back what `holder` holds in `stock`; `None` when it holds nothing.
pub fn release(stock: Option<Stock>, holder: &str) -> Option<Stock> {
    let mut stock = stock?;
    let quantity = stock.held.remove(holder)?;
    stock.available += quantity;
    Some(stock)
}

/// Holds every line of `reserved` in `bucket`, or none of them: the product
/// that was short when one is.
fn hold_all(
    bucket: &Bucket,
    holder: &str,
    reserved: &ReservationCreated,
) -> Result<Result<(), String>, HandlerError> {
    let mut taken: Vec<&str> = Vec::new();
    for line in &reserved.items {
        let mut short = None;
        bucket.update(&line.product_id, |stock: Option<Stock>| {
            match hold(stock, holder, u64::from(line.quantity)) {
                Hold::Taken(next) => Ok(Some(next)),
                Hold::AlreadyHeld => Ok(None),
                Hold::Short { available } => {
                    short = Some(available);
                    Ok(None)
                }
            }
        })?;
        if let Some(available) = short {
            for product in taken {
                bucket.update(product, |stock: Option<Stock>| Ok(release(stock, holder)))?;
            }
            return Ok(Err(format!(
                "product {} has {available} available, the order needs {}",
                line.product_id, line.quantity
            )));
        }
        taken.push(&line.product_id);
    }
    Ok(Ok(()))
}

#[handler(subject = "orders.order.created")]
fn on_order_created(order: OrderCreated, ctx: &Context) -> Result<Vec<Outgoing>, HandlerError> {
    let created_at = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
    let reserved = reservation(&order, uuid::Uuid::new_v4().to_string(), created_at);
    if let Some(name) = ctx.config("stock_bucket") {
        let bucket = Bucket::open(&name)?;
        if let Err(reason) = hold_all(&bucket, ctx.idempotency_key(), &reserved)? {
            evhost_sdk::info!("order {}: {reason}", order.order_id);
            let failed = ReservationFailed {
                event_id: reserved.event_id,
                order_id: reserved.order_id,
                causation_id: reserved.causation_id,
                reason,
                created_at: reserved.created_at,
            };
            return Ok(vec![Outgoing::json(
                "inventory.reservation.failed",
                &failed,
            )?]);
        }
    }
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
    fn a_hold_takes_units_once_per_holder() {
        let stock = Stock {
            available: 3,
            held: BTreeMap::new(),
        };
        let Hold::Taken(after) = hold(Some(stock), "inv:o-1", 2) else {
            panic!("not taken")
        };
        assert_eq!(after.available, 1);
        assert_eq!(after.held.get("inv:o-1"), Some(&2));
        assert_eq!(hold(Some(after.clone()), "inv:o-1", 2), Hold::AlreadyHeld);
        assert_eq!(
            hold(Some(after.clone()), "inv:o-2", 2),
            Hold::Short { available: 1 }
        );
        assert_eq!(hold(None, "inv:o-3", 1), Hold::Short { available: 0 });
        let back = release(Some(after), "inv:o-1").unwrap();
        assert_eq!(back.available, 3);
        assert!(back.held.is_empty());
        assert_eq!(release(Some(back), "inv:o-1"), None);
    }

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
