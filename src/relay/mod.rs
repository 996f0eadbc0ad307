//! Live ingest from Nostr relays (NIP-01), the way DVMDash's collectors do
//! it, inside dvmtop's own process.
//!
//! Each relay runs in a task of its own ([`conn`]): a websocket, one `REQ`
//! for the DVM kinds since `now − lookback`, reconnects with jittered
//! exponential backoff, a periodic resubscription, ping/idle detection.
//! Events go through the same validation chain and the same Redis script
//! as file ingest ([`crate::ingest::classify_line`],
//! [`crate::queue::Queue::ingest_chunk`]), in small per-relay chunks, so an
//! event seen on five relays is queued once. Per-relay figures live in a
//! Redis hash ([`stats`]) that `dvmtop status` and the TUI read from any
//! process.
//!
//! A relay never waits on another: nothing is shared between the tasks but
//! the multiplexed Redis connection, and every network step has a timeout.

mod backoff;
mod conn;
mod message;
mod seen;
pub(crate) mod stats;

pub use stats::{RelayStatus, relay_status};

use crate::error::{Error, Result};
use crate::event::Validation;
use crate::queue::Queue;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// A relay address, checked and normalised (`ws://` or `wss://`, a host,
/// lowercase scheme and host, no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelayUrl(String);

impl RelayUrl {
    pub fn parse(s: &str) -> Result<RelayUrl> {
        let bad = |why: &str| Error::Config(format!("invalid relay URL {s:?}: {why}"));
        let t = s.trim();
        let (scheme, rest) = t
            .split_once("://")
            .ok_or_else(|| bad("expected ws://HOST or wss://HOST"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "ws" && scheme != "wss" {
            return Err(bad("the scheme must be ws:// or wss://"));
        }
        let uri: tokio_tungstenite::tungstenite::http::Uri =
            t.parse()
                .map_err(|e: tokio_tungstenite::tungstenite::http::uri::InvalidUri| {
                    bad(&e.to_string())
                })?;
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.host().is_empty() {
            return Err(bad("no host"));
        }
        if authority.as_str().contains('@') {
            return Err(bad("credentials in relay URLs are not supported"));
        }
        let path_start = rest.find(['/', '?']).unwrap_or(rest.len());
        let mut tail = rest[path_start..].to_owned();
        if tail.ends_with('/') && !tail.contains('?') {
            tail.pop();
        }
        Ok(RelayUrl(format!(
            "{scheme}://{}{tail}",
            rest[..path_start].to_ascii_lowercase()
        )))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.0.starts_with("wss://")
    }
}

impl std::fmt::Display for RelayUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses a duration: `90` or `90s`, `15m`, `12h`, `1d`.
pub(crate) fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 90s, 15m, 12h or 1d"))?;
    let mult = match unit.trim() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return Err(format!("invalid duration {s:?}: units are s, m, h, d")),
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("duration {s:?} is too large"))
}

/// Relay ingest settings. The defaults suit production; tests shorten the
/// timers.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub urls: Vec<RelayUrl>,
    /// First subscription: `since = now − lookback`.
    pub lookback: Duration,
    /// A fresh `REQ` this often (relays drop long-lived subscriptions).
    pub resubscribe_every: Duration,
    /// A resubscription or reconnect asks again from this long before the
    /// point up to which everything was received.
    pub overlap: Duration,
    /// BIP-340 checks for relay events (on unless the operator opts out).
    pub verify_signatures: bool,
    /// TCP + TLS + websocket handshake.
    pub connect_timeout: Duration,
    /// A websocket ping this often; a relay silent for `idle_timeout` is
    /// reconnected.
    pub ping_every: Duration,
    pub idle_timeout: Duration,
    /// Sending one frame (REQ, CLOSE, ping).
    pub send_timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// A connection that lasted this long resets the backoff.
    pub healthy_after: Duration,
    /// Pending events are written at most this long after they arrived…
    pub flush_every: Duration,
    /// …or as soon as this many are pending.
    pub chunk: usize,
    /// Ids remembered per relay to drop re-deliveries without counting.
    pub recent_ids: usize,
    /// Largest websocket message accepted from a relay.
    pub max_message_bytes: usize,
    /// Stats heartbeat: how often an idle relay's hash is refreshed.
    pub heartbeat_every: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            urls: Vec::new(),
            lookback: Duration::from_secs(86_400),
            resubscribe_every: Duration::from_secs(600),
            overlap: Duration::from_secs(120),
            verify_signatures: true,
            connect_timeout: Duration::from_secs(15),
            ping_every: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(95),
            send_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            healthy_after: Duration::from_secs(30),
            flush_every: Duration::from_millis(200),
            chunk: 500,
            recent_ids: 50_000,
            max_message_bytes: 16 << 20,
            heartbeat_every: Duration::from_secs(5),
        }
    }
}

/// The running relay tasks.
pub struct RelayIngest {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    urls: Vec<RelayUrl>,
}

impl RelayIngest {
    /// Starts one task per relay. `validation` is the file ingest's (kinds,
    /// future limit); the signature check follows `cfg.verify_signatures`.
    pub fn start(queue: &Queue, cfg: &RelayConfig, validation: &Validation) -> RelayIngest {
        let (stop, rx) = watch::channel(false);
        let mut validation = validation.clone();
        validation.verify_signatures = cfg.verify_signatures;
        let mut tasks = JoinSet::new();
        let mut urls = cfg.urls.clone();
        urls.sort();
        urls.dedup();
        for url in &urls {
            let relay = conn::Relay::new(
                url.clone(),
                queue.clone(),
                cfg.clone(),
                validation.clone(),
                rx.clone(),
            );
            tasks.spawn(relay.run());
        }
        tracing::info!(relays = urls.len(), "relay ingest started");
        RelayIngest { stop, tasks, urls }
    }

    pub(crate) fn urls(&self) -> &[RelayUrl] {
        &self.urls
    }

    /// Stops every relay: each flushes its pending events, closes its
    /// subscription and socket. Gives up on a task after `wait`.
    pub async fn shutdown(mut self, wait: Duration) {
        let _ = self.stop.send(true);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(wait, all).await.is_err() {
            tracing::warn!("relay tasks did not stop within {wait:?}; aborting them");
            self.tasks.abort_all();
        }
        tracing::info!("relay ingest stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_normalised() {
        let ok = |s: &str| RelayUrl::parse(s).unwrap().0;
        assert_eq!(ok("wss://Relay.Damus.io/"), "wss://relay.damus.io");
        assert_eq!(ok(" ws://127.0.0.1:7777 "), "ws://127.0.0.1:7777");
        assert_eq!(ok("WSS://nos.lol/path/"), "wss://nos.lol/path");
        assert_eq!(ok("wss://a.b/x?y=1"), "wss://a.b/x?y=1");
        assert!(RelayUrl::parse("wss://a.b").unwrap().is_tls());
        for bad in [
            "",
            "relay.damus.io",
            "http://relay.damus.io",
            "wss://",
            "wss:// spaced.host",
            "wss://user:pw@host",
        ] {
            let e = RelayUrl::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("invalid relay URL"), "{bad}: {e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-5m").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}
