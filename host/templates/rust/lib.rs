//! {{name}}: an evhost handler. Build it with `evhost build`, try it with
//! `evhost invoke {{name}}.wasm --subject greetings.requested --payload @events/greetings.requested.json`.

use evhost_sdk::{Context, HandlerError, Outgoing, handler};
use serde::{Deserialize, Serialize};

/// The event this handler takes (events/greetings.requested.json).
#[derive(Deserialize)]
struct GreetingRequested {
    name: String,
}

/// The event it publishes.
#[derive(Serialize)]
struct Greeted {
    message: String,
}

#[handler(subject = "greetings.requested")]
fn on_greeting(request: GreetingRequested, _ctx: &Context) -> Result<Vec<Outgoing>, HandlerError> {
    if request.name.is_empty() {
        // Dead-lettered; `HandlerError::transient` is retried with backoff.
        return Err(HandlerError::permanent("a greeting needs a name"));
    }
    let done = Greeted {
        message: format!("hello, {}", request.name),
    };
    Ok(vec![Outgoing::json("greetings.greeted", &done)?])
}
