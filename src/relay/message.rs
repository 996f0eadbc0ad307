//! NIP-01 messages between dvmtop and a relay. Parsing never fails loudly:
//! whatever a relay sends becomes a [`RelayMessage`], `Invalid` included.

use serde_json::value::RawValue;

/// One message from a relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RelayMessage {
    /// `["EVENT", sub, event]`; `event` is the raw JSON as the relay sent it
    /// (validated later, like a file line). `None`: the frame has no event.
    Event { sub: String, event: Option<String> },
    /// `["EOSE", sub]`: stored events done, live ones follow.
    Eose { sub: String },
    /// `["NOTICE", text]`.
    Notice(String),
    /// `["CLOSED", sub, reason]`: the relay ended the subscription.
    Closed { sub: String, reason: String },
    /// `["OK", …]`, `["AUTH", …]`, `["COUNT", …]`, …: not for a reader.
    Other(String),
    /// Not a JSON array starting with a string.
    Invalid,
}

fn text(v: Option<&&RawValue>) -> Option<String> {
    serde_json::from_str::<String>(v?.get()).ok()
}

/// Reads one text frame.
pub(crate) fn parse_message(frame: &str) -> RelayMessage {
    let Ok(parts) = serde_json::from_str::<Vec<&RawValue>>(frame) else {
        return RelayMessage::Invalid;
    };
    let Some(kind) = text(parts.first()) else {
        return RelayMessage::Invalid;
    };
    let sub = || text(parts.get(1)).unwrap_or_default();
    match kind.as_str() {
        "EVENT" => RelayMessage::Event {
            sub: sub(),
            event: parts
                .get(2)
                .map(|e| e.get().to_owned())
                .filter(|e| e.starts_with('{')),
        },
        "EOSE" => RelayMessage::Eose { sub: sub() },
        "NOTICE" => RelayMessage::Notice(sub()),
        "CLOSED" => RelayMessage::Closed {
            sub: sub(),
            reason: text(parts.get(2)).unwrap_or_default(),
        },
        _ => RelayMessage::Other(kind),
    }
}

/// `["REQ", sub, {"kinds": […], "since": since}]`.
pub(crate) fn req(sub: &str, kinds: &[i64], since: i64) -> String {
    serde_json::json!(["REQ", sub, {"kinds": kinds, "since": since}]).to_string()
}

/// `["CLOSE", sub]`.
pub(crate) fn close(sub: &str) -> String {
    serde_json::json!(["CLOSE", sub]).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_messages() {
        let ev = r#"{"id":"x","kind":5300}"#;
        assert_eq!(
            parse_message(&format!(r#"["EVENT","s1",{ev}]"#)),
            RelayMessage::Event {
                sub: "s1".into(),
                event: Some(ev.into())
            }
        );
        // The raw text is kept exactly (whitespace included) for the id check
        // and the dead-letter list.
        assert_eq!(
            parse_message(r#"[ "EVENT" , "s1" , { "a" : 1 } ]"#),
            RelayMessage::Event {
                sub: "s1".into(),
                event: Some(r#"{ "a" : 1 }"#.into())
            }
        );
        assert_eq!(
            parse_message(r#"["EVENT","s1"]"#),
            RelayMessage::Event {
                sub: "s1".into(),
                event: None
            }
        );
        assert_eq!(
            parse_message(r#"["EVENT","s1",42]"#),
            RelayMessage::Event {
                sub: "s1".into(),
                event: None
            }
        );
        assert_eq!(
            parse_message(r#"["EOSE","s1"]"#),
            RelayMessage::Eose { sub: "s1".into() }
        );
        assert_eq!(
            parse_message(r#"["NOTICE","slow down"]"#),
            RelayMessage::Notice("slow down".into())
        );
        assert_eq!(
            parse_message(r#"["CLOSED","s1","error: too many"]"#),
            RelayMessage::Closed {
                sub: "s1".into(),
                reason: "error: too many".into()
            }
        );
        assert_eq!(
            parse_message(r#"["OK","id",true,""]"#),
            RelayMessage::Other("OK".into())
        );
        for junk in ["", "{}", "[]", "[1,2]", "nope", "[\"EVENT\"", "\u{0}"] {
            assert_eq!(parse_message(junk), RelayMessage::Invalid, "{junk:?}");
        }
    }

    #[test]
    fn requests() {
        assert_eq!(
            req("dvmtop-1", &[5000, 7000], 1_700_000_000),
            r#"["REQ","dvmtop-1",{"kinds":[5000,7000],"since":1700000000}]"#
        );
        assert_eq!(close("dvmtop-1"), r#"["CLOSE","dvmtop-1"]"#);
    }
}
