//! The argument forms the one-shot commands (`invoke`, `pub`) share: a
//! payload given inline, as `@FILE` or as `-` for stdin (as curl and the nats
//! CLI spell it), and `K=V` pairs for headers and config.

use std::io::Read as _;
use std::path::Path;

use anyhow::Context as _;

/// Where `--payload` takes the bytes from.
#[derive(Debug, PartialEq, Eq)]
pub enum Payload<'a> {
    /// The text itself.
    Inline(&'a str),
    /// `@FILE`: the file's bytes.
    File(&'a Path),
    /// `-`: standard input.
    Stdin,
}

impl<'a> Payload<'a> {
    /// Reads the `--payload` argument.
    pub fn parse(arg: &'a str) -> Self {
        match arg {
            "-" => Payload::Stdin,
            _ => match arg.strip_prefix('@') {
                Some(path) => Payload::File(Path::new(path)),
                None => Payload::Inline(arg),
            },
        }
    }

    /// The bytes it names.
    pub fn read(&self) -> anyhow::Result<Vec<u8>> {
        match self {
            Payload::Inline(text) => Ok(text.as_bytes().to_vec()),
            Payload::Stdin => {
                let mut buf = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .context("cannot read the payload from stdin")?;
                Ok(buf)
            }
            Payload::File(p) => std::fs::read(p)
                .with_context(|| format!("{}: cannot read the payload", p.display())),
        }
    }
}

/// The bytes of an optional `--payload` argument (none: empty).
pub fn read_payload(arg: Option<&str>) -> anyhow::Result<Vec<u8>> {
    arg.map_or(Ok(Vec::new()), |a| Payload::parse(a).read())
}

/// Parses `K=V`.
pub fn key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_inline_text_a_file_or_stdin() {
        assert_eq!(Payload::parse("{\"a\":1}"), Payload::Inline("{\"a\":1}"));
        assert_eq!(
            Payload::parse("@order.json"),
            Payload::File(Path::new("order.json"))
        );
        assert_eq!(Payload::parse("-"), Payload::Stdin);
        assert_eq!(Payload::parse(""), Payload::Inline(""));
    }

    #[test]
    fn payloads_are_read_from_where_they_say() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("e.json");
        std::fs::write(&file, b"{\"from\":\"file\"}").unwrap();
        let arg = format!("@{}", file.display());
        assert_eq!(read_payload(Some(&arg)).unwrap(), b"{\"from\":\"file\"}");
        assert_eq!(read_payload(Some("inline")).unwrap(), b"inline");
        assert_eq!(read_payload(None).unwrap(), b"");
        let missing = format!("@{}", dir.path().join("nope.json").display());
        let err = format!("{:#}", read_payload(Some(&missing)).unwrap_err());
        assert!(err.contains("nope.json: cannot read the payload"), "{err}");
    }

    #[test]
    fn key_value_splits_on_the_first_equals() {
        assert_eq!(key_value("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert_eq!(key_value("a="), Ok(("a".into(), "".into())));
        assert!(key_value("=b").is_err());
        assert!(key_value("ab").is_err());
    }
}
