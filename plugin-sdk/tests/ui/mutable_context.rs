use evhost_sdk::{Context, HandlerError, Message, Outgoing, handler};

#[handler(subject = "orders.order.created")]
fn on_message(msg: &Message, ctx: &mut Context) -> Result<Vec<Outgoing>, HandlerError> {
    let _ = (msg, ctx);
    Ok(vec![])
}

fn main() {}
