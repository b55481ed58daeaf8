//! [`OrderCreated`]: the order event the example plugins decode.

/// An `orders.order.created` event, in the shape the example plugins
/// (`plugins/payment`, `plugins/inventory`) decode.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OrderCreated {
    /// The event's own id (outputs name it as their `causation_id`).
    pub event_id: String,
    /// The order's id.
    pub order_id: String,
    /// Who ordered.
    pub customer_id: String,
    /// What was ordered.
    pub items: Vec<OrderItem>,
    /// The total in cents: the sum of quantity × price.
    pub total_cents: u64,
    /// When the order was placed (RFC 3339).
    pub created_at: String,
}

/// One line of an order.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OrderItem {
    /// The product.
    pub product_id: String,
    /// How many.
    pub quantity: u32,
    /// Price of one, in cents.
    pub price_cents: u64,
}

impl OrderCreated {
    /// A valid order: two items, with the right total.
    pub fn new(order_id: &str, customer_id: &str) -> Self {
        let items = vec![
            OrderItem {
                product_id: "p-red-mug".to_string(),
                quantity: 2,
                price_cents: 1250,
            },
            OrderItem {
                product_id: "p-blue-plate".to_string(),
                quantity: 1,
                price_cents: 3999,
            },
        ];
        let total_cents = items
            .iter()
            .map(|i| u64::from(i.quantity) * i.price_cents)
            .sum();
        OrderCreated {
            event_id: format!("evt-{order_id}"),
            order_id: order_id.to_string(),
            customer_id: customer_id.to_string(),
            items,
            total_cents,
            created_at: "2026-11-22T10:00:00Z".to_string(),
        }
    }

    /// Sets a total that is not the sum of the items.
    pub fn with_wrong_total(mut self) -> Self {
        self.total_cents += 1;
        self
    }

    /// The event as JSON bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an order serializes")
    }
}
