//! Entry points of the fuzz targets (`host/fuzz/`, built with `cargo fuzz`)
//! and of their corpus replay on stable (`host/tests/fuzz_corpus.rs`): one
//! function per target, taking the fuzzer's bytes. Each drives the real host
//! code an untrusted input reaches (a manifest, a subject, a message's
//! headers and payload, a guest's outputs) and asserts what that code
//! promises, not only that it does not panic; a broken promise is a panic,
//! which the fuzzer reports as a crash and the replay test as a failure.
//!
//! Where the host only ever hands a function inputs of some shape (plugin
//! names the registry accepts, headers `async-nats` can hold, a dead-letter
//! prefix the manifest check passed), the entry point makes the same
//! inputs from the fuzzer's bytes, so a crash is one the host can meet.
//!
//! The manifest target reads its bytes as the manifest's text. The others
//! read theirs as [`Fields`]: text fields separated by bytes that UTF-8 never
//! holds, so a corpus file is a readable record of real subjects, headers and
//! payloads that the fuzzer mutates field by field.

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use bytes::Bytes;

use crate::bus;
use crate::deadletter::{self, DeadLetter};
use crate::dedup::{self, DedupKey};
use crate::manifest::{Manifest, ManifestError};
use crate::outcome::{DeadLetterKind, FailureKind};
use crate::output_rules;
use crate::plugin_settings::PluginSettings;
use crate::runtime::Outgoing;
use crate::subject::{self, MAX_PREFIX_LEN, MAX_SUBJECT_LEN, MAX_SUBSCRIPTIONS, PublishDenied};

/// A fuzz target's entry point: it takes the fuzzer's bytes and panics when
/// the code under test breaks a promise.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name: the folders of `host/fuzz/corpus/`.
pub const TARGETS: [(&str, Target); 6] = [
    ("manifest", manifest),
    ("subject", subject),
    ("headers", headers),
    ("outputs", outputs),
    ("dedup", dedup),
    ("dead_letter", dead_letter),
];

/// The plugin name the targets resolve manifests for.
const PLUGIN: &str = "fuzz";

/// Ends a field.
pub const FIELD: u8 = 0xFF;
/// Ends an item of a list field.
pub const ITEM: u8 = 0xFE;
/// Parts a header's name from its value, in a list of headers.
pub const PAIR: u8 = 0xFD;
/// A list field that is this byte alone is the empty list (an empty field is
/// no list at all).
pub const EMPTY: u8 = 0xFC;

/// A target's input read field by field, in the order the target asks for
/// them. A field ends at [`FIELD`] or with the input; a field the input
/// lacks is empty. Text that is not UTF-8 is read lossily, so every input
/// reaches the code under test.
pub struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    /// The fields of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Fields { rest: data }
    }

    /// The next field's bytes.
    fn raw(&mut self) -> &'a [u8] {
        match self.rest.iter().position(|&b| b == FIELD) {
            Some(end) => {
                let field = &self.rest[..end];
                self.rest = &self.rest[end + 1..];
                field
            }
            None => std::mem::take(&mut self.rest),
        }
    }

    /// The next field as text.
    fn text(&mut self) -> String {
        text(self.raw())
    }

    /// The next field as text, `None` when it is empty.
    fn optional(&mut self) -> Option<String> {
        Some(self.raw()).filter(|f| !f.is_empty()).map(text)
    }

    /// The next field as a decimal number, `None` when it is not one.
    fn number(&mut self) -> Option<u64> {
        self.text().trim().parse().ok()
    }

    /// The next field as a list of texts separated by [`ITEM`]: `None` when
    /// the field is empty, the empty list when it is [`EMPTY`].
    fn list(&mut self) -> Option<Vec<String>> {
        match self.raw() {
            [] => None,
            [EMPTY] => Some(Vec::new()),
            field => Some(field.split(|&b| b == ITEM).map(text).collect()),
        }
    }

    /// The next field as headers: items of `name` [`PAIR`] `value` (an item
    /// without [`PAIR`] is a name with an empty value).
    fn headers(&mut self) -> Vec<(String, String)> {
        match self.raw() {
            [] => Vec::new(),
            field => field.split(|&b| b == ITEM).map(pair).collect(),
        }
    }

    /// Whether any byte is left.
    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// All that is left, separators and all: a payload.
    fn rest(self) -> &'a [u8] {
        self.rest
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn pair(item: &[u8]) -> (String, String) {
    match item.iter().position(|&b| b == PAIR) {
        Some(at) => (text(&item[..at]), text(&item[at + 1..])),
        None => (text(item), String::new()),
    }
}

/// An error shown to a person must be one line: a manifest error goes after
/// `FILE:LINE:COLUMN: `, a failure into a log line and a dead-letter header.
fn assert_one_line(text: &str) {
    assert!(
        !text.contains(['\n', '\r']),
        "an error message spans lines: {text:?}"
    );
}

// ---------------------------------------------------------------- manifest

/// The manifest parser and resolver, on any UTF-8 text (a manifest that is
/// not UTF-8 is refused when read). Parsing never panics; an error is one
/// line whose position lies inside the text; parsing and resolving are
/// deterministic; settings that resolve keep every range and rule the
/// resolver checks.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = Manifest::parse(text);
    let manifest = match parsed {
        Ok(manifest) => manifest,
        Err(err) => return assert_error(&err, text),
    };
    // Compared as text: a `nan` in `[config]` is not equal to itself.
    let again = Manifest::parse(text).map(|m| format!("{m:?}")).ok();
    assert_eq!(
        again,
        Some(format!("{manifest:?}")),
        "parsing is deterministic"
    );
    match manifest.resolve(PLUGIN) {
        Ok(settings) => {
            assert_settings(&settings);
            let again = manifest.resolve(PLUGIN).map(|s| format!("{s:?}")).ok();
            assert_eq!(
                again,
                Some(format!("{settings:?}")),
                "resolving is deterministic"
            );
        }
        Err(err) => assert_error(&err.located(text), text),
    }
}

/// An error names its line and column inside `text`, in one line.
fn assert_error(err: &ManifestError, text: &str) {
    let shown = err.to_string();
    assert_one_line(&shown);
    if let ManifestError::Syntax { line, column, .. } = *err {
        let lines: Vec<&str> = text.split('\n').collect();
        assert!(
            (1..=lines.len()).contains(&line),
            "line {line} of {}: {shown}",
            lines.len()
        );
        let width = lines[line - 1].chars().count();
        assert!(
            (1..=width + 1).contains(&column),
            "column {column} of {width}: {shown}"
        );
        assert!(shown.starts_with(&format!("{line}:{column}: ")), "{shown}");
    }
}

/// What `Manifest::resolve` promises of the settings it returns.
fn assert_settings(s: &PluginSettings) {
    assert!((1..=10_000).contains(&s.concurrency), "{}", s.concurrency);
    assert!(!s.timeout.is_zero());
    assert!(
        (1 << 20..=(crate::manifest_resolve::MAX_MEMORY_MB as usize) << 20)
            .contains(&s.memory_bytes),
        "{}",
        s.memory_bytes
    );
    assert!(s.max_attempts >= 1);
    assert!(s.recycle_after >= 1);
    assert!(s.log_lines_per_second >= 1);
    assert!(subject::is_valid_token_string(&s.queue_group));
    assert_eq!(
        subject::check_dead_letter_prefix(&s.dead_letter_prefix),
        Ok(())
    );
    if let Some(subjects) = &s.subjects {
        assert!(!subjects.is_empty());
        assert_eq!(subject::check_subscriptions(subjects), Ok(()));
    }
    for pattern in s.publish_allow.iter().flatten() {
        assert!(subject::is_valid_pattern(pattern), "{pattern:?}");
    }
    for bucket in &s.capabilities.keyvalue {
        assert!(crate::capabilities::valid_bucket(bucket), "{bucket:?}");
        assert_ne!(bucket, crate::plugin_settings::DEFAULT_DEDUP_BUCKET);
    }
    assert!(s.capabilities.kv_max_value_bytes >= 1);
    let name_ok = |name: &str| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if let Some((stream, _)) = &s.dead_letter_stream {
        assert!(name_ok(stream), "{stream:?}");
    }
    if let Some(js) = &s.jetstream {
        assert!(name_ok(&js.stream), "{:?}", js.stream);
        assert!(name_ok(&js.durable), "{:?}", js.durable);
        assert!(name_ok(&js.dedup_bucket), "{:?}", js.dedup_bucket);
        assert!(js.ack_wait >= std::time::Duration::from_secs(1));
        assert!((1..=10_000).contains(&js.pull_batch));
        for pattern in js.create_stream.iter().flatten() {
            assert!(subject::is_valid_pattern(pattern), "{pattern:?}");
        }
        assert_eq!(js.dead_letter_stream, s.dead_letter_stream);
    }
}

// ----------------------------------------------------------------- subject

struct SubjectInput {
    subject: String,
    pattern: String,
    reply_to: Option<String>,
    allow: Option<Vec<String>>,
    prefix: String,
    header: String,
}

/// Subject and pattern validation and matching, the publish and subscribe
/// rules, the dead-letter prefix rule and reserved header names. Fields:
/// subject, pattern, reply-to, allow list, dead-letter prefix, header name.
pub fn subject(data: &[u8]) {
    let mut f = Fields::new(data);
    let i = SubjectInput {
        subject: f.text(),
        pattern: f.text(),
        reply_to: f.optional(),
        allow: f.list(),
        prefix: f.text(),
        header: f.text(),
    };
    let (s, p) = (i.subject.as_str(), i.pattern.as_str());

    // Validity and matching.
    let _ = subject::matches(p, s);
    if subject::is_valid_subject(s) {
        // (Not always a valid pattern: `a*` is a literal token to a
        // publisher but refused in a subscription.)
        assert!(subject::matches(s, s), "{s:?} matches itself");
        assert!(subject::matches(">", s), "> matches {s:?}");
        let first = s.split('.').next().unwrap_or_default();
        assert_eq!(subject::matches(&format!("{first}.>"), s), s.contains('.'));
    }
    if subject::is_valid_pattern(p) && subject::is_valid_subject(s) {
        let (pt, st): (Vec<&str>, Vec<&str>) = (p.split('.').collect(), s.split('.').collect());
        assert_eq!(
            subject::matches(p, s),
            reference_match(&pt, &st),
            "{p:?} ~ {s:?}"
        );
    }

    // Publishing.
    let allow = i.allow.as_deref();
    match subject::check_publish(s, i.reply_to.as_deref(), allow) {
        Ok(()) => {
            assert!(s.len() <= MAX_SUBJECT_LEN);
            assert!(subject::is_valid_subject(s), "{s:?}");
            assert!(!s.starts_with('$'), "{s:?}");
            let own_inbox =
                s.starts_with(subject::INBOX_PREFIX) && i.reply_to.as_deref() == Some(s);
            assert!(own_inbox || !subject::is_system_subject(s), "{s:?}");
            if let (Some(allow), false) = (allow, own_inbox) {
                assert!(allow.iter().any(|a| subject::matches(a, s)), "{s:?}");
            }
        }
        Err(denied) => {
            assert_one_line(&denied.to_string());
            if let PublishDenied::TooLong(start, len) = &denied {
                assert_eq!(*len, s.len());
                assert!(s.len() > MAX_SUBJECT_LEN && start.len() <= 64);
                assert!(s.starts_with(start.as_str()));
            }
        }
    }

    // Subscribing.
    let patterns = i.allow.clone().unwrap_or_else(|| vec![i.pattern.clone()]);
    match subject::check_subscriptions(&patterns) {
        Ok(()) => {
            assert!(patterns.len() <= MAX_SUBSCRIPTIONS);
            for pattern in &patterns {
                assert!(subject::is_valid_pattern(pattern), "{pattern:?}");
                let first = pattern.split('.').next().unwrap_or_default();
                assert!(!matches!(first, "*" | ">" | "_INBOX"), "{pattern:?}");
                assert!(!first.starts_with('$'), "{pattern:?}");
            }
        }
        Err(denied) => assert_one_line(&denied.to_string()),
    }

    // Dead-letter prefixes.
    match subject::check_dead_letter_prefix(&i.prefix) {
        Ok(()) => {
            assert!(i.prefix.ends_with('.') && i.prefix.len() <= MAX_PREFIX_LEN);
            assert!(subject::is_valid_subject(&format!("{}x", i.prefix)));
            assert!(!subject::is_system_subject(&i.prefix));
        }
        Err(message) => assert_one_line(&message),
    }

    // Reserved headers: a case-insensitive prefix, whatever the name.
    let lower = i.header.to_ascii_lowercase();
    assert_eq!(
        subject::is_reserved_header(&i.header),
        lower.starts_with("nats-") || lower.starts_with("evhost-"),
        "{:?}",
        i.header
    );
}

/// NATS wildcards read token by token: `*` is any one token, a last `>` one
/// or more.
fn reference_match(pattern: &[&str], subject: &[&str]) -> bool {
    match (pattern.split_first(), subject.split_first()) {
        (Some((&">", [])), Some(_)) => true,
        (Some((p, pattern)), Some((s, subject))) => {
            (*p == "*" || p == s) && reference_match(pattern, subject)
        }
        (None, None) => true,
        _ => false,
    }
}

// ----------------------------------------------------------------- headers

/// The pairs `async-nats` can hold as a header (a name of visible ASCII but
/// `:`, a value without line breaks): no others can reach the host.
fn holdable(pairs: &[(String, String)]) -> Vec<(&str, &str)> {
    pairs
        .iter()
        .filter(|(name, value)| {
            name.parse::<async_nats::HeaderName>().is_ok()
                && value.parse::<async_nats::HeaderValue>().is_ok()
        })
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

/// A received message's header map: the holdable pairs, repeated names kept.
fn header_map(pairs: &[(String, String)]) -> Option<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in holdable(pairs) {
        map.append(name, value);
    }
    (!map.is_empty()).then_some(map)
}

/// Header pairs grouped by name, each name's values in order: what a
/// `HeaderMap` keeps (it does not keep the order between names).
fn grouped<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> BTreeMap<&'a str, Vec<&'a str>> {
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, value) in pairs {
        groups.entry(name).or_default().push(value);
    }
    groups
}

/// A subject as a NATS server delivers one: the protocol splits its lines on
/// white space, so a received subject has none.
fn delivered_subject(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Header mapping both ways. NATS → WIT: `bus::to_message` hands the
/// handler the subject, reply-to, payload and attempt as received and every
/// header value, repeated names kept in order. WIT → NATS: a handler that
/// returns the input's headers on an output gets every header the output
/// rules allow back out of `bus::output_headers`, unchanged, plus the input's
/// trace context where it set none, and nothing else. Fields: subject,
/// reply-to, headers, attempt, then the payload.
pub fn headers(data: &[u8]) {
    let mut f = Fields::new(data);
    let (subject, reply_to, pairs) = (f.text(), f.optional(), f.headers());
    let attempt = f.number().map_or(1, |n| n as u32);
    let payload = f.rest();
    if !delivered_subject(&subject) || !reply_to.as_deref().is_none_or(delivered_subject) {
        return;
    }
    let msg = async_nats::Message {
        subject: subject.clone().into(),
        reply: reply_to.clone().map(Into::into),
        payload: Bytes::copy_from_slice(payload),
        headers: header_map(&pairs),
        status: None,
        description: None,
        length: 0,
    };
    let message = bus::to_message(&msg, attempt);
    assert_eq!(message.subject, subject);
    assert_eq!(message.reply_to, reply_to.as_deref());
    assert_eq!(message.payload, payload);
    assert_eq!(message.attempt, attempt);
    let received = holdable(&pairs);
    assert_eq!(message.headers.len(), received.len());
    assert_eq!(grouped(message.headers.iter().copied()), grouped(received));

    // The guest hands its input's headers back on an output; those the
    // output rules let through are published.
    let settings = default_settings();
    let passes = |name: &str, value: &str| {
        let one = Outgoing {
            subject: "out".into(),
            headers: vec![(name.into(), value.into())],
            payload: Vec::new(),
        };
        output_rules::check(&settings, &[one], None, &[]).is_ok()
    };
    let kept: Vec<(String, String)> = message
        .headers
        .iter()
        .filter(|(n, v)| passes(n, v))
        .map(|&(n, v)| (n.to_string(), v.to_string()))
        .collect();
    let out = Outgoing {
        subject: "out".into(),
        headers: kept.clone(),
        payload: payload.to_vec(),
    };
    assert!(output_rules::check(&settings, std::slice::from_ref(&out), None, &[]).is_ok());
    let published = bus::output_headers(&out, msg.headers.as_ref());
    let published_pairs = bus::header_pairs(Some(&published));
    let mut expected = grouped(kept.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    for name in bus::TRACE_HEADERS {
        let own = kept.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        if let (false, Some(value)) = (own, msg.headers.as_ref().and_then(|h| h.get(name))) {
            expected.insert(name, vec![value.as_str()]);
        }
    }
    assert_eq!(grouped(published_pairs.iter().copied()), expected);
    for (name, _) in &published_pairs {
        assert!(!subject::is_reserved_header(name), "{name:?} published");
    }
}

/// The settings of a plugin whose manifest says nothing.
fn default_settings() -> PluginSettings {
    Manifest::default()
        .resolve(PLUGIN)
        .expect("the empty manifest resolves")
}

// ----------------------------------------------------------------- outputs

/// Guest output validation (`output_rules::check`) against an independent
/// statement of the rules: it accepts exactly the outputs that keep every
/// rule, a refusal is an `invalid-output` failure in one line, and what it
/// accepts `async-nats` can publish (`bus::output_headers` takes every
/// header as it is). Fields: `limits.max_outputs` and
/// `limits.max_output_bytes` (the defaults when not numbers), the allow
/// list, the dead-letter prefix, the input's reply-to, then one field per
/// output: its subject, payload and headers as items.
pub fn outputs(data: &[u8]) {
    let mut f = Fields::new(data);
    let mut settings = default_settings();
    if let Some(n) = f.number() {
        settings.max_outputs = n as usize;
    }
    if let Some(n) = f.number() {
        settings.max_output_bytes = n as usize;
    }
    // Settings as `Manifest::resolve` makes them: a valid allow list and
    // dead-letter prefix.
    settings.publish_allow = f
        .list()
        .filter(|allow| allow.iter().all(|p| subject::is_valid_pattern(p)));
    let prefix = f.text();
    if subject::check_dead_letter_prefix(&prefix).is_ok() {
        settings.dead_letter_prefix = prefix;
    }
    let reply_to = f.optional();
    let reply_to = reply_to.as_deref();
    let mut outputs = Vec::new();
    while !f.is_empty() {
        let field = f.raw();
        let mut items = field.split(|&b| b == ITEM);
        outputs.push(Outgoing {
            subject: items.next().map(text).unwrap_or_default(),
            payload: items.next().unwrap_or_default().to_vec(),
            headers: items.map(pair).collect(),
        });
    }

    let bytes: usize = outputs
        .iter()
        .map(|o| {
            o.payload.len()
                + o.headers
                    .iter()
                    .map(|(n, v)| format!("{n}: {v}\r\n").len())
                    .sum::<usize>()
        })
        .sum();
    let header_ok = |(name, value): &(String, String)| {
        let lower = name.to_ascii_lowercase();
        !name.is_empty()
            && name
                .bytes()
                .all(|b| (b'!'..=b'~').contains(&b) && b != b':')
            && !value.contains(['\r', '\n'])
            && !lower.starts_with("nats-")
            && !lower.starts_with("evhost-")
    };
    let output_ok = |o: &Outgoing| {
        subject::check_publish(&o.subject, reply_to, settings.publish_allow.as_deref()).is_ok()
            && !o.subject.starts_with(&settings.dead_letter_prefix)
            && o.headers.iter().all(header_ok)
    };
    let expected = outputs.len() <= settings.max_outputs
        && bytes <= settings.max_output_bytes
        && outputs.iter().all(output_ok);

    match output_rules::check(&settings, &outputs, reply_to, &[]) {
        Ok(()) => {
            assert!(expected, "accepted: {outputs:?} under {settings:?}");
            for out in &outputs {
                let published = bus::output_headers(out, None);
                assert_eq!(
                    grouped(bus::header_pairs(Some(&published))),
                    grouped(out.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())))
                );
            }
        }
        Err(failure) => {
            assert!(!expected, "refused ({}): {outputs:?}", failure.message);
            assert_eq!(failure.kind, FailureKind::InvalidOutput);
            assert_one_line(&failure.message);
        }
    }
}

// ------------------------------------------------------------------- dedup

struct DedupInput<'a> {
    spec: String,
    plugin: String,
    id: String,
    headers: Vec<(String, String)>,
    payload: &'a [u8],
}

/// Dedup key extraction: `DedupKey::parse` takes exactly `header:NAME` and
/// `json:/pointer`; `extract` finds the first header of that name (any case)
/// or the string or number at the pointer, never an empty id; `bucket_key`
/// makes of any id a key under the plugin's own prefix that the key-value
/// store can hold, the id itself when it is plain and short. Fields: the
/// `jetstream.dedup` spec, plugin name, an id to make a key of, the
/// headers, then the payload.
pub fn dedup(data: &[u8]) {
    let mut f = Fields::new(data);
    let (spec, plugin, id, headers) = (f.text(), f.text(), f.text(), f.headers());
    let i = DedupInput {
        spec,
        plugin,
        id,
        headers,
        payload: f.rest(),
    };
    let header = i.spec.strip_prefix("header:").filter(|n| !n.is_empty());
    let json = i.spec.strip_prefix("json:").filter(|p| p.starts_with('/'));
    let key = match DedupKey::parse(&i.spec) {
        Ok(key) => key,
        Err(message) => {
            assert_one_line(&message);
            assert!(header.is_none() && json.is_none(), "{:?} refused", i.spec);
            return;
        }
    };
    match &key {
        DedupKey::Header(name) => assert_eq!(Some(name.as_str()), header),
        DedupKey::JsonPointer(pointer) => assert_eq!(Some(pointer.as_str()), json),
    }
    let map = header_map(&i.headers);
    let pairs = bus::header_pairs(map.as_ref());
    let id = key.extract(&pairs, i.payload);
    match &key {
        DedupKey::Header(name) => {
            let first = pairs.iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
            let want = first.map(|(_, v)| *v).filter(|v| !v.is_empty());
            assert_eq!(id.as_deref(), want);
        }
        DedupKey::JsonPointer(pointer) => {
            if let Some(id) = &id {
                let value: serde_json::Value =
                    serde_json::from_slice(i.payload).expect("an id came from JSON");
                match value.pointer(pointer) {
                    Some(serde_json::Value::String(s)) => assert_eq!(s, id),
                    Some(serde_json::Value::Number(n)) => assert_eq!(&n.to_string(), id),
                    other => panic!("id {id:?} from {other:?}"),
                }
            }
        }
    }
    if let Some(id) = &id {
        assert!(!id.is_empty());
    }

    let plugin = usable_plugin_name(&i.plugin);
    for id in id.iter().chain((!i.id.is_empty()).then_some(&i.id)) {
        let bucket_key = dedup::bucket_key(plugin, id);
        assert_eq!(bucket_key, dedup::bucket_key(plugin, id), "deterministic");
        let own = bucket_key
            .strip_prefix(plugin)
            .and_then(|rest| rest.strip_prefix('.'))
            .expect("a key starts with its plugin's name");
        assert!(!own.is_empty() && own.len() <= 200, "{bucket_key:?}");
        assert!(
            own.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '=')),
            "{bucket_key:?}"
        );
        let plain = id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '='));
        if plain && id.len() <= 200 {
            assert_eq!(own, id);
        }
    }
}

/// `name` if the registry would take it as a plugin's name, else `"fuzz"`.
fn usable_plugin_name(name: &str) -> &str {
    let path = std::path::PathBuf::from(format!("{name}.wasm"));
    match crate::registry::plugin_name(&path) {
        Some(usable) if usable == name => name,
        _ => PLUGIN,
    }
}

// ------------------------------------------------------------- dead letter

struct DeadLetterInput<'a> {
    subject: String,
    plugin: String,
    kind: u64,
    error: String,
    attempts: u32,
    stream: Option<(String, u64)>,
    prefix: String,
    max_payload: usize,
    headers: Vec<(String, String)>,
    payload: &'a [u8],
}

/// Dead-letter construction. The subject starts with the prefix, fits
/// `MAX_SUBJECT_LEN`, is `<prefix><subject>` when that fits and is a valid
/// subject when the original is. The headers carry every original header
/// (`Nats-*` renamed, `Evhost-*` left out) unless they had to be dropped,
/// plus the host's own, once each; no `Nats-*` header is left to steer the
/// dead-letter stream. Headers and payload fit `max_payload` whenever the
/// host's own headers do, the payload cut to a prefix only when it must.
/// Fields: subject, plugin name, kind (a number), error, attempts, stream
/// (`NAME` [`PAIR`] `SEQ`), dead-letter prefix, the server's `max_payload`
/// (1 MiB when not a number), headers, then the payload.
pub fn dead_letter(data: &[u8]) {
    let mut f = Fields::new(data);
    let i = DeadLetterInput {
        subject: f.text(),
        plugin: f.text(),
        kind: f.number().unwrap_or(0),
        error: f.text(),
        attempts: f.number().map_or(1, |n| n as u32),
        stream: Some(f.raw())
            .filter(|field| !field.is_empty())
            .map(pair)
            .map(|(name, seq)| (name, seq.parse().unwrap_or(0))),
        prefix: f.text(),
        max_payload: f.number().map_or(1 << 20, |n| n as usize),
        headers: f.headers(),
        payload: f.rest(),
    };
    if !delivered_subject(&i.subject) {
        return;
    }
    let prefix = match subject::check_dead_letter_prefix(&i.prefix) {
        Ok(()) => i.prefix.as_str(),
        Err(_) => "dlq.",
    };
    let kinds = [
        DeadLetterKind::Permanent,
        DeadLetterKind::Exhausted,
        DeadLetterKind::Trap,
        DeadLetterKind::Timeout,
        DeadLetterKind::InvalidOutput,
    ];
    let kind = kinds[(i.kind % kinds.len() as u64) as usize];
    let stream_ok = |s: &str| crate::capabilities::valid_bucket(s);
    let stream = i
        .stream
        .as_ref()
        .filter(|(s, _)| stream_ok(s))
        .map(|(s, seq)| (s.as_str(), *seq));
    let original = header_map(&i.headers);
    let version = crate::plugin::version_of(i.payload);
    let letter = DeadLetter {
        subject: &i.subject,
        headers: original.as_ref(),
        plugin: usable_plugin_name(&i.plugin),
        version: &version,
        kind,
        error: &i.error,
        attempts: i.attempts,
        stream,
        trace: None,
    };

    // The subject.
    let to = letter.subject(prefix);
    assert!(to.starts_with(prefix), "{to:?}");
    assert!(to.len() <= MAX_SUBJECT_LEN, "{} bytes", to.len());
    if prefix.len() + i.subject.len() <= MAX_SUBJECT_LEN {
        assert_eq!(to, format!("{prefix}{}", i.subject));
    }
    if subject::is_valid_subject(&i.subject) {
        assert!(subject::is_valid_subject(&to), "{to:?}");
    }
    assert_eq!(to, deadletter::subject_for(prefix, &i.subject), "stable");

    // The headers and payload.
    let payload = Bytes::copy_from_slice(i.payload);
    let max_payload = i.max_payload;
    let (headers, body) = letter.message(&payload, max_payload);
    let get = |name: &str| {
        headers
            .get_all(name)
            .map(|v| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(get(deadletter::ORIGINAL_SUBJECT), [i.subject.as_str()]);
    assert_eq!(get(deadletter::ERROR_KIND), [kind.as_str()]);
    assert_eq!(get(deadletter::ATTEMPTS), [i.attempts.to_string()]);
    assert_eq!(get(deadletter::PLUGIN), [letter.plugin]);
    let error = get(deadletter::ERROR);
    assert!(error.len() == 1 && error[0].len() <= 1024, "{error:?}");
    assert!(!error[0].chars().any(char::is_control), "{error:?}");
    if i.error.len() <= 1024 && !i.error.chars().any(char::is_control) {
        assert_eq!(
            error[0], i.error,
            "a short one-line reason is kept as it is"
        );
    }
    for (name, _) in headers.iter() {
        let name: &str = name.as_ref();
        assert!(
            !name.to_ascii_lowercase().starts_with("nats-"),
            "{name:?} would steer the dead-letter stream"
        );
    }
    assert!(body.len() <= payload.len() && payload.starts_with(&body));
    let truncated = get(deadletter::PAYLOAD_TRUNCATED);
    if body.len() < payload.len() {
        assert_eq!(truncated, [payload.len().to_string()]);
    }
    let dropped = !get(deadletter::HEADERS_DROPPED).is_empty();
    if dropped {
        let count = original.iter().flat_map(|h| h.iter()).map(|(_, v)| v.len());
        assert_eq!(
            get(deadletter::HEADERS_DROPPED),
            [count.sum::<usize>().to_string()]
        );
    }
    if !dropped && let Some(original) = &original {
        for (name, values) in original.iter() {
            let name: &str = name.as_ref();
            let lower = name.to_ascii_lowercase();
            if lower.starts_with("evhost-") {
                continue;
            }
            let kept = match lower.starts_with("nats-") {
                true => format!("{}{name}", deadletter::KEPT_PREFIX),
                false => name.to_string(),
            };
            let values: Vec<&str> = values.iter().map(|v| v.as_str()).collect();
            assert_eq!(get(&kept), values, "{name:?} kept as {kept:?}");
        }
    }

    // Within `max_payload` whenever the host's own headers (with the two
    // that say what was cut) leave room.
    let limit = max_payload.saturating_sub(64);
    let own = DeadLetter {
        headers: None,
        ..letter
    }
    .headers();
    let own_len = wire_len(&own) + 2 * (deadletter::PAYLOAD_TRUNCATED.len() + 4 + 20);
    let total = wire_len(&headers) + body.len();
    if own_len <= limit {
        assert!(total <= limit, "{total} bytes over {limit}");
    }
    if total <= limit && body.len() < payload.len() {
        assert_eq!(total, limit, "cut only as far as needed");
    }
}

/// A header block's size on the wire: `NATS/1.0\r\n`, `name: value\r\n`
/// for each value, `\r\n`.
fn wire_len(headers: &HeaderMap) -> usize {
    let mut len = "NATS/1.0\r\n\r\n".len();
    for (name, values) in headers.iter() {
        let name: &str = name.as_ref();
        for value in values {
            len += format!("{name}: {}\r\n", value.as_str()).len();
        }
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_matcher_reads_wildcards() {
        let m = |p: &str, s: &str| {
            reference_match(
                &p.split('.').collect::<Vec<_>>(),
                &s.split('.').collect::<Vec<_>>(),
            )
        };
        assert!(m("a.*.c", "a.b.c") && m("a.>", "a.b.c") && m("a", "a"));
        assert!(!m("a.>", "a") && !m("a.*", "a.b.c") && !m("a.b", "a.c"));
    }

    #[test]
    fn short_inputs_are_skipped_not_misread() {
        for (_, target) in TARGETS {
            target(b"");
            target(b"\x00");
        }
    }
}
