use evhost_sdk::{Message, handler};

#[handler(subject = "orders.order.created")]
fn on_message(msg: &Message) {
    let _ = msg;
}

fn main() {}
