use evhost_sdk::{HandlerError, Message, Outgoing, handler};

#[handler(subjet = "orders.order.created")]
fn on_message(msg: &Message) -> Result<Vec<Outgoing>, HandlerError> {
    let _ = msg;
    Ok(vec![])
}

fn main() {}
