//! Property tests of the input side (issue 13): the event parser and
//! validator never panic on any input and ignore extra fields; the element
//! splitter yields exactly the complete elements of arrays and JSONL, in
//! order, however the input is cut or fails, and never panics.
//!
//! Case counts are kept small so the suite stays fast; raise them locally
//! (`PROPTEST_CASES=20000`) for a longer fuzzing run.

use dvmtop::event::{self, Event, Validation};
use dvmtop::ingest::split::{BreakKind, Elements};
use proptest::prelude::*;
use serde_json::Value;
use std::io::BufReader;
use std::sync::OnceLock;

fn fixture() -> &'static [String] {
    static LINES: OnceLock<Vec<String>> = OnceLock::new();
    LINES.get_or_init(|| {
        std::fs::read_to_string("tests/fixtures/dvm-events-real.jsonl")
            .expect("fixture")
            .lines()
            .map(str::to_owned)
            .collect()
    })
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Any JSON value, with strings full of JSON punctuation.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
        r#"[\[\]{},:"\\ \n\t]{0,8}"#.prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(r#"[a-z\[\]{},"]{0,5}"#, inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const CANONICAL: [&str; 7] = [
    "id",
    "pubkey",
    "created_at",
    "kind",
    "tags",
    "content",
    "sig",
];

/// Extra top-level fields: names that are not NIP-01's, any values.
fn extra_fields() -> impl Strategy<Value = Vec<(String, Value)>> {
    prop::collection::vec(
        (
            "[a-z_$][a-z0-9_]{0,10}"
                .prop_filter("not a NIP-01 field", |k| !CANONICAL.contains(&k.as_str())),
            json_value(),
        ),
        1..5,
    )
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, u8),
    Delete(usize),
    Replace(usize, u8),
    Truncate(usize),
    Repeat(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let punct = prop::sample::select(b"{}[]\",:\\0123456789 -e.tfn".to_vec());
    let byte = prop_oneof![any::<u8>(), punct];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), byte).prop_map(|(i, b)| Edit::Replace(i, b)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), 1usize..40).prop_map(|(i, n)| Edit::Repeat(i, n)),
    ]
}

fn apply(bytes: &mut Vec<u8>, e: &Edit) {
    let at = |i: usize, len: usize| if len == 0 { 0 } else { i % len };
    match *e {
        Edit::Insert(i, b) => {
            let i = at(i, bytes.len() + 1);
            bytes.insert(i, b)
        }
        Edit::Delete(i) if !bytes.is_empty() => {
            let i = at(i, bytes.len());
            bytes.remove(i);
        }
        Edit::Replace(i, b) if !bytes.is_empty() => {
            let i = at(i, bytes.len());
            bytes[i] = b
        }
        Edit::Truncate(i) => bytes.truncate(at(i, bytes.len() + 1)),
        Edit::Repeat(i, n) if !bytes.is_empty() => {
            let i = at(i, bytes.len());
            let end = (i + n).min(bytes.len());
            let slice = bytes[i..end].to_vec();
            bytes.splice(i..i, slice);
        }
        _ => {}
    }
}

/// Whatever `validate` says, an accepted event is self-consistent.
fn check_validate(raw: &str, v: &Validation) {
    if let Ok((ev, _)) = event::validate(raw, v, now()) {
        assert_eq!(event::compute_id(&ev), ev.id);
        assert!(ev.created_at >= v.min_created_at);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_parser_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = Event::parse(&text);
        check_validate(&text, &Validation::default());
    }

    #[test]
    fn the_parser_never_panics_on_arbitrary_json(v in json_value()) {
        let text = v.to_string();
        let _ = Event::parse(&text);
        check_validate(&text, &Validation { min_created_at: 0, ..Validation::default() });
    }

    #[test]
    fn mutated_valid_events_never_panic(
        i in 0usize..118,
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let mut bytes = fixture()[i].clone().into_bytes();
        for e in &edits {
            apply(&mut bytes, e);
        }
        let text = String::from_utf8_lossy(&bytes);
        check_validate(&text, &Validation::default());
        check_validate(&text, &Validation { verify_signatures: true, ..Validation::default() });
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn valid_events_with_extra_fields_are_accepted(
        i in 0usize..118,
        before in extra_fields(),
        after in extra_fields(),
    ) {
        let line = &fixture()[i];
        let body = &line.trim()[1..line.trim().len() - 1];
        let field = |(k, v): &(String, Value)| format!("{}:{v}", Value::from(k.as_str()));
        let mut parts: Vec<String> = before.iter().map(field).collect();
        parts.push(body.to_owned());
        parts.extend(after.iter().map(field));
        let extended = format!("{{{}}}", parts.join(","));
        let v = Validation { verify_signatures: true, ..Validation::default() };
        let (plain, _) = event::validate(line, &v, now()).expect("the fixture is valid");
        match event::validate(&extended, &v, now()) {
            Ok((ev, _)) => prop_assert_eq!(ev, plain),
            Err(r) => prop_assert!(false, "{} refused as {}", extended, r),
        }
    }
}

/// One array element: its text, and its value when it is JSON.
fn element() -> impl Strategy<Value = (String, Option<Value>)> {
    prop_oneof![
        (0usize..118).prop_map(|i| {
            let l = fixture()[i].clone();
            let v = serde_json::from_str(&l).ok();
            (l, v)
        }),
        // Garbage that cannot end an element early: no quotes, brackets
        // or commas, nothing but JSON whitespace inside, none at the ends.
        "[a-zA-Z0-9:.+-]{1,6}( [a-zA-Z0-9:.+-]{1,6}){0,2}".prop_map(|g| {
            let v = serde_json::from_str(&g).ok();
            (g, v)
        }),
        json_value().prop_map(|v| (v.to_string(), Some(v))),
    ]
}

fn ws() -> impl Strategy<Value = String> {
    "[ \t\r\n]{0,3}"
}

/// An array as text, with the offset of each element's terminator (its
/// `,` or the closing `]`).
#[derive(Debug, Clone)]
struct ArrayText {
    text: Vec<u8>,
    /// Offsets of the `[` and the `]`.
    open: usize,
    close: usize,
    terminators: Vec<usize>,
    elements: Vec<(String, Option<Value>)>,
}

fn array_text() -> impl Strategy<Value = ArrayText> {
    (
        ws(),
        prop::collection::vec((ws(), element(), ws()), 0..12),
        ws(),
        ws(),
    )
        .prop_map(|(lead, items, inner, trail)| {
            let mut text = lead.into_bytes();
            let open = text.len();
            text.push(b'[');
            let mut terminators = Vec::new();
            let mut elements = Vec::new();
            for (k, (a, e, b)) in items.iter().enumerate() {
                text.extend_from_slice(a.as_bytes());
                text.extend_from_slice(e.0.as_bytes());
                text.extend_from_slice(b.as_bytes());
                terminators.push(text.len());
                text.push(if k + 1 < items.len() { b',' } else { b']' });
                elements.push(e.clone());
            }
            if items.is_empty() {
                text.extend_from_slice(inner.as_bytes());
                text.push(b']');
            }
            let close = text.len() - 1;
            text.extend_from_slice(trail.as_bytes());
            ArrayText {
                text,
                open,
                close,
                terminators,
                elements,
            }
        })
}

/// A reader that returns `data`, then fails (like a corrupt gzip).
struct FailAtEnd<'a> {
    data: &'a [u8],
}

impl std::io::Read for FailAtEnd<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.data.is_empty() {
            return Err(std::io::Error::other("corrupt deflate stream"));
        }
        let k = out.len().min(self.data.len());
        out[..k].copy_from_slice(&self.data[..k]);
        self.data = &self.data[k..];
        Ok(k)
    }
}

/// How a split ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Clean,
    Unterminated(u64),
    Failed(u64),
}

fn split_all<R: std::io::BufRead>(r: R) -> (Vec<Vec<u8>>, End) {
    let mut e = Elements::new(r);
    let mut out = Vec::new();
    loop {
        match e.next_element() {
            Ok(Some(el)) => out.push(el.to_vec()),
            Ok(None) => return (out, End::Clean),
            Err(b) => {
                // Nothing comes after a break.
                assert!(matches!(e.next_element(), Ok(None)));
                return match b.kind {
                    BreakKind::UnterminatedArray => (out, End::Unterminated(b.offset)),
                    BreakKind::Read(_) => (out, End::Failed(b.offset)),
                };
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_array_splitter_yields_exactly_the_complete_elements(
        a in array_text(),
        cut_at in any::<prop::sample::Index>(),
        cap in 1usize..64,
        fail in any::<bool>(),
    ) {
        let cut = cut_at.index(a.text.len() + 1);
        let input = &a.text[..cut];
        let (got, end) = if fail {
            split_all(BufReader::with_capacity(cap, FailAtEnd { data: input }))
        } else {
            split_all(BufReader::with_capacity(cap, input))
        };
        let complete: Vec<&(String, Option<Value>)> = a
            .terminators
            .iter()
            .zip(&a.elements)
            .filter(|(t, _)| **t < cut)
            .map(|(_, e)| e)
            .collect();
        let want: Vec<&[u8]> = complete.iter().map(|e| e.0.as_bytes()).collect();
        prop_assert_eq!(&got.iter().map(Vec::as_slice).collect::<Vec<_>>(), &want);
        let expected_end = if fail {
            End::Failed(cut as u64)
        } else if cut <= a.open || cut > a.close {
            End::Clean
        } else {
            End::Unterminated(cut as u64)
        };
        prop_assert_eq!(end, expected_end);
        // What serde_json makes of the complete prefix, closed, is what
        // the splitter handed out.
        if let (Some(&last), true) = (
            a.terminators.iter().rfind(|t| **t < cut),
            complete.iter().all(|e| e.1.is_some()),
        ) {
            let mut prefix = a.text[..last].to_vec();
            prefix.push(b']');
            let parsed: Vec<Value> = serde_json::from_slice(&prefix).expect("a valid prefix");
            let split: Vec<Value> = got
                .iter()
                .map(|g| serde_json::from_slice(g).expect("a JSON element"))
                .collect();
            prop_assert_eq!(parsed, split);
        }
    }
}

/// A JSONL text: lines (some blank, CRLF or LF) with the offset of each
/// line's newline; the first line is a valid event, so it is not an array.
#[derive(Debug, Clone)]
struct LinesText {
    text: Vec<u8>,
    /// (start, newline offset) of each line.
    lines: Vec<(usize, usize)>,
}

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        (0usize..118).prop_map(|i| fixture()[i].clone()),
        "[a-zA-Z0-9:.+{}\\[\\]\", -]{1,20}",
        "[ \t]{0,3}",
        json_value().prop_map(|v| v.to_string()),
    ]
}

fn lines_text() -> impl Strategy<Value = LinesText> {
    (
        prop::collection::vec((line(), any::<bool>()), 0..12),
        0usize..118,
    )
        .prop_map(|(body, first)| {
            let mut text = Vec::new();
            let mut lines = Vec::new();
            let first = (fixture()[first].clone(), false);
            for (l, crlf) in std::iter::once(&first).chain(body.iter()) {
                let start = text.len();
                text.extend_from_slice(l.as_bytes());
                if *crlf {
                    text.push(b'\r');
                }
                lines.push((start, text.len()));
                text.push(b'\n');
            }
            LinesText { text, lines }
        })
}

fn trim(b: &[u8]) -> &[u8] {
    let ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r');
    let s = b.iter().position(|c| !ws(c)).unwrap_or(b.len());
    let e = b.iter().rposition(|c| !ws(c)).map_or(s, |e| e + 1);
    &b[s..e]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_line_splitter_yields_exactly_the_complete_lines(
        l in lines_text(),
        cut_at in any::<prop::sample::Index>(),
        cap in 1usize..64,
        fail in any::<bool>(),
    ) {
        let cut = cut_at.index(l.text.len() + 1);
        let input = &l.text[..cut];
        let (got, end) = if fail {
            split_all(BufReader::with_capacity(cap, FailAtEnd { data: input }))
        } else {
            split_all(BufReader::with_capacity(cap, input))
        };
        let mut want: Vec<&[u8]> = Vec::new();
        for &(start, nl) in &l.lines {
            if nl < cut {
                want.push(trim(&l.text[start..nl]));
            } else if start < cut && !fail {
                // A clean end of input ends the last line too; a failing
                // reader's cut line is not handed out.
                want.push(trim(&l.text[start..cut]));
            }
        }
        want.retain(|w| !w.is_empty());
        prop_assert_eq!(&got.iter().map(Vec::as_slice).collect::<Vec<_>>(), &want);
        prop_assert_eq!(end, if fail { End::Failed(cut as u64) } else { End::Clean });
    }
}
