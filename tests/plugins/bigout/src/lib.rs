//! Test plugin: returns outputs that break the host's rules, on request.
//!
//! By payload:
//! - `system`: one output to `$JS.API.STREAM.DELETE.x`;
//! - `sys`: one output to `$SYS.REQ.SERVER.PING`;
//! - `inbox`: one output to `_INBOX.not-yours` (a foreign inbox);
//! - `wildcard`: one output to `test.bigout.*`;
//! - `reply`: one output to the input's own reply-to subject;
//! - `header:NAME=VALUE`: one output to `test.bigout.out` carrying that header;
//! - `log:TEXT`: logs TEXT (info) and writes it to stderr, no outputs;
//! - `flood:N`: logs N lines, no outputs;
//! - anything else: config `count` outputs (default 10000) of config `size`
//!   bytes (default 16) each, to config `subject` (default `test.bigout.out`).

use evhost_sdk::{Context, HandlerError, Message, Outgoing};

fn number(ctx: &Context, key: &str, default: usize) -> Result<usize, HandlerError> {
    match ctx.config(key) {
        Some(v) => v
            .parse()
            .map_err(|e| HandlerError::permanent(format!("bad {key} {v:?}: {e}"))),
        None => Ok(default),
    }
}

#[evhost_sdk::handler(subject = "test.bigout")]
fn handle(msg: Message, ctx: &Context) -> Result<Vec<Outgoing>, HandlerError> {
    let one = |subject: &str| Ok(vec![Outgoing::new(subject, b"bigout".to_vec())]);
    match msg.payload.as_slice() {
        b"system" => one("$JS.API.STREAM.DELETE.x"),
        b"sys" => one("$SYS.REQ.SERVER.PING"),
        b"inbox" => one("_INBOX.not-yours"),
        b"wildcard" => one("test.bigout.*"),
        b"reply" => match &msg.reply_to {
            Some(reply) => one(reply),
            None => Err(HandlerError::permanent("bigout: `reply` needs a reply-to")),
        },
        p if p.starts_with(b"log:") => {
            let text = String::from_utf8_lossy(&p[4..]);
            evhost_sdk::log::info(&text);
            eprintln!("stderr:{text}");
            Ok(Vec::new())
        }
        p if p.starts_with(b"flood:") => {
            let n: usize = String::from_utf8_lossy(&p[6..])
                .parse()
                .map_err(|e| HandlerError::permanent(format!("flood: {e}")))?;
            for i in 0..n {
                evhost_sdk::log::info(format!("flood line {i}"));
            }
            Ok(Vec::new())
        }
        p if p.starts_with(b"header:") => {
            let text = String::from_utf8_lossy(&p[7..]).into_owned();
            let (name, value) = text.split_once('=').unwrap_or((text.as_str(), ""));
            Ok(vec![
                Outgoing::new("test.bigout.out", b"bigout".to_vec()).with_header(name, value),
            ])
        }
        _ => {
            let count = number(ctx, "count", 10_000)?;
            let size = number(ctx, "size", 16)?;
            let subject = ctx
                .config("subject")
                .unwrap_or_else(|| "test.bigout.out".to_string());
            Ok((0..count)
                .map(|i| Outgoing::new(subject.as_str(), vec![b'a' + (i % 26) as u8; size]))
                .collect())
        }
    }
}
