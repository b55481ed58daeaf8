//! What a handler may return: the checks every output passes before the host
//! publishes it (count and byte limits, publish rules, the dead-letter
//! prefix, header syntax, reserved headers). Pure: the settings in, a
//! decision out, so the rules can be tested and fuzzed without a component.

use crate::outcome::{Failure, FailureKind};
use crate::plugin_settings::PluginSettings;
use crate::runtime::Outgoing;
use crate::subject;

/// Checks a handler's `outputs` against the plugin's `settings`, for an input
/// whose reply subject is `reply_to`, with `reserved` the dead-letter
/// prefixes of the host's other plugins (`dead_letter_prefixes.rs`). `Ok`
/// means every output may be published; otherwise an `invalid-output`
/// failure names the first rule broken.
pub fn check(
    settings: &PluginSettings,
    outputs: &[Outgoing],
    reply_to: Option<&str>,
    reserved: &[String],
) -> Result<(), Failure> {
    let s = settings;
    let invalid = |m: String| Err(Failure::new(FailureKind::InvalidOutput, m));
    if outputs.len() > s.max_outputs {
        return invalid(format!(
            "handler returned {} outputs; the limit is {} (limits.max_outputs)",
            outputs.len(),
            s.max_outputs
        ));
    }
    let bytes: usize = outputs.iter().map(output_bytes).sum();
    if bytes > s.max_output_bytes {
        return invalid(format!(
            "handler returned {bytes} bytes of payloads and headers; the limit is {} (limits.max_output_bytes)",
            s.max_output_bytes
        ));
    }
    for out in outputs {
        if let Err(denied) =
            subject::check_publish(&out.subject, reply_to, s.publish_allow.as_deref())
        {
            return invalid(denied.to_string());
        }
        // Dead letters are the host's to write: a plugin's would look
        // like one to `evhost dlq` and to whoever reads the stream.
        if out.subject.starts_with(&s.dead_letter_prefix) {
            return invalid(format!(
                "output subject {:?} is under the plugin's dead-letter prefix {:?}",
                out.subject, s.dead_letter_prefix
            ));
        }
        if let Some(prefix) = reserved
            .iter()
            .find(|p| out.subject.starts_with(p.as_str()))
        {
            return invalid(format!(
                "output subject {:?} is under the dead-letter prefix {prefix:?}: dead letters are the host's to write",
                out.subject
            ));
        }
        if let Some((name, _)) = out.headers.iter().find(|(n, v)| !valid_header(n, v)) {
            return invalid(format!("output header {name:?} is not a valid NATS header"));
        }
        if let Some((name, _)) = out
            .headers
            .iter()
            .find(|(n, _)| subject::is_reserved_header(n))
        {
            return invalid(format!(
                "output header {name:?} is reserved: Nats-* headers steer JetStream and Evhost-* are the host's"
            ));
        }
    }
    Ok(())
}

/// What an output costs against `limits.max_output_bytes`: its payload and
/// its headers as they go on the wire (`Name: value\r\n`), so a plugin
/// cannot send large headers under a small cap.
fn output_bytes(out: &Outgoing) -> usize {
    out.payload.len()
        + out
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len() + 4)
            .sum::<usize>()
}

/// A header name of visible ASCII without ':', and a value without line breaks.
fn valid_header(name: &str, value: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        && !value.contains(['\r', '\n'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_count_against_the_output_byte_limit() {
        let out = Outgoing {
            subject: "a".into(),
            payload: b"12345".to_vec(),
            headers: vec![("K".into(), "vv".into())],
        };
        // 5 payload bytes + "K: vv\r\n".
        assert_eq!(output_bytes(&out), 5 + 7);
    }

    #[test]
    fn no_output_under_any_dead_letter_prefix() {
        let settings =
            crate::manifest::Manifest::parse("[delivery]\ndead_letter_prefix = \"errors.mine.\"\n")
                .unwrap()
                .resolve("p")
                .unwrap();
        let to = |subject: &str| Outgoing {
            subject: subject.into(),
            payload: vec![],
            headers: vec![],
        };
        let reserved = ["dlq.".to_string(), "errors.other.".to_string()];
        let check = |subject| check(&settings, &[to(subject)], None, &reserved);
        assert!(check("orders.shipped").is_ok());
        for planted in ["errors.mine.orders", "dlq.orders.x", "errors.other.orders"] {
            let err = check(planted).unwrap_err();
            assert_eq!(err.kind, FailureKind::InvalidOutput);
            assert!(
                err.message.contains("dead-letter prefix"),
                "{}",
                err.message
            );
        }
    }
}
