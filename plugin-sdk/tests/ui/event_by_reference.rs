use evhost_sdk::{HandlerError, Outgoing, handler};

#[derive(serde::Deserialize)]
struct Order {
    id: String,
}

#[handler(subject = "orders.order.created")]
fn on_order(order: &Order) -> Result<Vec<Outgoing>, HandlerError> {
    let _ = &order.id;
    Ok(vec![])
}

fn main() {}
