use evhost_sdk::{HandlerError, Message, Outgoing, handler};

#[handler]
fn on_message(msg: &Message) -> Result<Vec<Outgoing>, HandlerError> {
    let _ = msg;
    Ok(vec![])
}

fn main() {}
