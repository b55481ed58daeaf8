//! The streams that keep dead letters, so that they can be listed and
//! replayed after the fact rather than only watched as they happen: the one
//! a manifest names (`dead_letter_stream`, in either delivery mode), the one
//! `evhost dev` makes for every plugin, and finding the stream that keeps a
//! dead-letter subject (what `evhost dlq` reads by default).

use anyhow::Context as _;
use async_nats::jetstream::{self, stream};

use crate::replicas::Replicas;

/// The stream `evhost dev` keeps a prefix's dead letters in: `DLQ` for
/// `dlq.`, else the prefix in capitals with every other character an `_`
/// (`errors.orders.` → `ERRORS_ORDERS`).
pub fn default_name(prefix: &str) -> String {
    prefix
        .trim_end_matches('.')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The subjects a dead-letter stream for `prefix` captures: `<prefix>>`.
pub fn subjects(prefix: &str) -> String {
    format!("{prefix}>")
}

/// The name of a stream that captures `subjects` (wildcards allowed), if any.
pub async fn find(js: &jetstream::Context, subjects: &str) -> anyhow::Result<Option<String>> {
    match js.stream_by_subject(subjects).await {
        Ok(name) => Ok(Some(name)),
        Err(err) if err.kind() == jetstream::context::GetStreamByNameErrorKind::NotFound => {
            Ok(None)
        }
        Err(err) => Err(anyhow::anyhow!(
            "cannot ask which stream keeps {subjects}: {err}"
        )),
    }
}

/// Makes sure stream `name` keeps the dead letters under `prefix`: creates it
/// (capturing `<prefix>>`, with `replicas` copies) when `create`, else checks
/// that it exists.
pub async fn ensure(
    js: &jetstream::Context,
    name: &str,
    prefix: &str,
    create: bool,
    replicas: Replicas,
) -> anyhow::Result<()> {
    if create {
        let config = stream::Config {
            name: name.to_string(),
            subjects: vec![subjects(prefix)],
            ..Default::default()
        };
        crate::replicas::get_or_create(js, config, replicas)
            .await
            .with_context(|| format!("cannot create dead-letter stream {name}"))?;
    } else {
        js.get_stream(name).await.with_context(|| {
            format!(
                "dead-letter stream {name} not found (create it, or set delivery.create_dead_letter_stream = true)"
            )
        })?;
    }
    Ok(())
}

/// For `evhost dev`: makes sure some stream keeps the dead letters under
/// `prefix`, creating [`default_name`] when none does; returns its name.
pub async fn ensure_any(
    js: &jetstream::Context,
    prefix: &str,
    replicas: Replicas,
) -> anyhow::Result<String> {
    if let Some(name) = find(js, &subjects(prefix)).await? {
        return Ok(name);
    }
    let name = default_name(prefix);
    ensure(js, &name, prefix, true, replicas).await?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_follow_the_prefix() {
        assert_eq!(default_name("dlq."), "DLQ");
        assert_eq!(default_name("errors.orders."), "ERRORS_ORDERS");
        assert_eq!(default_name("dead-letters."), "DEAD-LETTERS");
        assert_eq!(subjects("dlq."), "dlq.>");
    }
}
