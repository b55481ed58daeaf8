//! Write evhost event handlers in Rust.
//!
//! A handler is a plain function marked with [`handler`]. Build the crate as
//! a `cdylib` with `cargo build --target wasm32-wasip2`, drop the `.wasm` into
//! evhost's plugin directory, and evhost calls it once per message.
//!
//! ```no_run
//! use evhost_sdk::{handler, Context, HandlerError, Outgoing};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct OrderCreated { order_id: String, total_cents: u64 }
//!
//! #[derive(Serialize)]
//! struct PaymentCompleted { order_id: String, amount_cents: u64 }
//!
//! #[handler(subject = "orders.order.created")]
//! fn on_order(order: OrderCreated, ctx: &Context) -> Result<Vec<Outgoing>, HandlerError> {
//!     evhost_sdk::info!("charging order {} (attempt {})", order.order_id, ctx.attempt());
//!     let done = PaymentCompleted { order_id: order.order_id, amount_cents: order.total_cents };
//!     Ok(vec![Outgoing::json("payments.payment.completed", &done)?])
//! }
//! ```
//!
//! The typed form decodes the payload as JSON; a payload that does not decode
//! is a [`HandlerError::Permanent`] (evhost dead-letters it) and the function
//! is not called. The raw form takes the whole [`Message`]:
//! `fn f(msg: Message, ctx: &Context)` (or `msg: &Message`; `ctx` is optional).
//!
//! Returned [`Outgoing`] messages are published only if the handler succeeds.
//! Return [`HandlerError::transient`] for failures worth retrying and
//! [`HandlerError::permanent`] for messages that can never succeed.

mod context;
mod error;
pub mod http;
mod idempotency;
pub mod kv;
pub mod log;
mod message;

pub use context::Context;
pub use error::HandlerError;
pub use evhost_sdk_macros::handler;
pub use idempotency::current as idempotency_key;
pub use message::{Message, Outgoing};

/// The generated bindings of the `evhost:plugin/handler` world. Internal:
/// plugin authors use the types above.
#[doc(hidden)]
#[allow(clippy::too_many_arguments)] // generated code
pub mod bindings {
    wit_bindgen::generate!({
        world: "handler",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_handler",
        default_bindings_module: "::evhost_sdk::bindings",
        generate_all,
    });
}

/// What the [`handler`] macro's expansion calls. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings::Guest;
    use crate::bindings::evhost::plugin::types as wit;
    use crate::{Context, HandlerError, Message, Outgoing};

    /// The WIT result of a handler call.
    pub type WitResult = Result<Vec<wit::Outgoing>, wit::HandlerError>;
    /// The WIT message record.
    pub type WitMessage = wit::Message;

    fn finish(result: Result<Vec<Outgoing>, HandlerError>) -> WitResult {
        result
            .map(|outs| outs.into_iter().map(Into::into).collect())
            .map_err(Into::into)
    }

    /// Calls a typed handler: decode the payload as `T` (else permanent), then `f`.
    pub fn typed<T: serde::de::DeserializeOwned>(
        msg: WitMessage,
        type_name: &str,
        f: impl FnOnce(T, &Context) -> Result<Vec<Outgoing>, HandlerError>,
    ) -> WitResult {
        let msg = Message::from(msg);
        let value = match serde_json::from_slice::<T>(&msg.payload) {
            Ok(value) => value,
            Err(err) => {
                return finish(Err(HandlerError::permanent(format!(
                    "payload does not decode as {type_name}: {err}"
                ))));
            }
        };
        let ctx = Context::taking(msg);
        finish(f(value, &ctx))
    }

    /// Calls a raw handler with the whole message.
    pub fn raw(
        msg: WitMessage,
        f: impl FnOnce(Message) -> Result<Vec<Outgoing>, HandlerError>,
    ) -> WitResult {
        let msg = Message::from(msg);
        finish(f(msg))
    }

    /// Calls a raw handler with the whole message and its context.
    pub fn raw_with_context(
        msg: WitMessage,
        f: impl FnOnce(Message, &Context) -> Result<Vec<Outgoing>, HandlerError>,
    ) -> WitResult {
        let msg = Message::from(msg);
        let ctx = Context::of(&msg);
        finish(f(msg, &ctx))
    }
}
