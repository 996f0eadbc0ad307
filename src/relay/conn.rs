//! One relay's task: connect, subscribe, read, write chunks, reconnect.
//!
//! Reading and writing share one loop, so memory per relay is bounded: at
//! most a few chunks are pending, and while Redis does not take them the
//! socket is simply not read (TCP pushes back on that relay alone).

use super::RelayConfig;
use super::RelayUrl;
use super::backoff::Backoff;
use super::message::{self, RelayMessage};
use super::seen::RecentIds;
use super::stats::StatsWriter;
use crate::event::Validation;
use crate::ingest::classify_line;
use crate::queue::{Accepted, Queue, Refused};
use futures_util::{SinkExt, StreamExt};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a session ended.
enum End {
    /// Shutdown asked for.
    Stopped,
    /// The connection is gone or unusable; reconnect.
    Lost(String),
}

/// An error text made one line and bounded (relays and TLS stacks can say a
/// lot).
fn one_line(s: &str) -> String {
    let mut t: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if t.len() > 300 {
        let mut cut = 300;
        while !t.is_char_boundary(cut) {
            cut -= 1;
        }
        t.truncate(cut);
        t.push('…');
    }
    t
}

/// Resolves once a shutdown is asked for (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

/// rustls with the ring provider and Mozilla's roots, built once.
fn tls() -> Result<Arc<rustls::ClientConfig>, String> {
    static CFG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CFG.get_or_init(|| {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
        .map_err(|e| format!("TLS setup: {e}"))
    })
    .clone()
}

async fn connect(url: &RelayUrl, cfg: &RelayConfig) -> Result<Ws, String> {
    let ws_cfg = WebSocketConfig::default()
        .max_message_size(Some(cfg.max_message_bytes))
        .max_frame_size(Some(cfg.max_message_bytes));
    let connector = if url.is_tls() {
        Some(Connector::Rustls(tls()?))
    } else {
        None
    };
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
        url.as_str(),
        Some(ws_cfg),
        true,
        connector,
    )
    .await
    .map_err(|e| one_line(&e.to_string()))?;
    Ok(ws)
}

/// Only the id of an event, to recognise re-deliveries cheaply.
#[derive(serde::Deserialize)]
struct IdOnly {
    id: String,
}

pub(super) struct Relay {
    url: RelayUrl,
    queue: Queue,
    cfg: RelayConfig,
    validation: Validation,
    stop: watch::Receiver<bool>,
    stats: StatsWriter,
    recent: RecentIds,
    backoff: Backoff,
    kinds: Vec<i64>,
    /// Wall clock (unix s) up to which everything this relay sent has been
    /// written to Redis.
    synced_at: Option<i64>,
    sub_seq: u64,
    /// Raw events waiting for the next chunk, with their ids.
    pending: Vec<(Option<String>, String)>,
    pending_bytes: usize,
    pending_since: Option<Instant>,
}

/// A chunk is written once it holds this much, whatever its count.
const CHUNK_BYTES: usize = 4 << 20;

/// Stored events of the current subscription are done (EOSE seen).
#[derive(Default)]
struct Sub {
    id: String,
    live: bool,
    /// When to try again after the relay CLOSED it.
    retry_at: Option<Instant>,
    closed_count: u32,
}

impl Relay {
    pub(super) fn new(
        url: RelayUrl,
        queue: Queue,
        cfg: RelayConfig,
        validation: Validation,
        stop: watch::Receiver<bool>,
    ) -> Relay {
        let seed = {
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(url.as_str())
        };
        Relay {
            stats: StatsWriter::new(queue.clone(), url.to_string()),
            recent: RecentIds::new(cfg.recent_ids),
            backoff: Backoff::new(cfg.backoff_base, cfg.backoff_cap, seed),
            kinds: validation.kinds.subscription_kinds(),
            url,
            queue,
            cfg,
            validation,
            stop,
            synced_at: None,
            sub_seq: 0,
            pending: Vec::new(),
            pending_bytes: 0,
            pending_since: None,
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Reconnects until stopped.
    pub(super) async fn run(mut self) {
        // Resume from where an earlier run (or another collector of this
        // namespace) had everything.
        if let Ok(Ok(Some(v))) = tokio::time::timeout(
            Duration::from_secs(5),
            self.queue.relay_field(self.url.as_str(), "synced_at"),
        )
        .await
        {
            self.synced_at = v.parse().ok();
        }
        let mut stop = self.stop.clone();
        while !self.stopping() {
            self.stats.set("state", "connecting");
            self.stats.write().await;
            let mut session_began = None;
            let connected = tokio::select! {
                r = tokio::time::timeout(self.cfg.connect_timeout, connect(&self.url, &self.cfg)) => Some(r),
                _ = stopped(&mut stop) => None,
            };
            let end = match connected {
                None => End::Stopped,
                Some(Err(_)) => End::Lost(format!(
                    "connect timed out after {} s",
                    self.cfg.connect_timeout.as_secs_f64()
                )),
                Some(Ok(Err(e))) => End::Lost(format!("connect: {e}")),
                Some(Ok(Ok(ws))) => {
                    tracing::info!(relay = %self.url, "connected");
                    self.stats.set("state", "connected");
                    self.stats.set("connected_since", now_unix());
                    self.stats.add("connects", 1);
                    self.stats.write().await;
                    session_began = Some(Instant::now());
                    self.session(ws).await
                }
            };
            match end {
                End::Stopped => break,
                End::Lost(why) => {
                    tracing::warn!(relay = %self.url, error = %why, "relay connection lost");
                    // What was read before the loss is still written.
                    self.flush().await;
                    self.stats.set("state", "disconnected");
                    self.stats.set("last_error", &why);
                    self.stats.set("last_error_at", now_unix());
                    self.stats.clear("connected_since");
                    self.stats.write().await;
                }
            }
            // A connection that held for a while was healthy: the next
            // attempt starts from the base delay again.
            if session_began.is_some_and(|t| t.elapsed() >= self.cfg.healthy_after) {
                self.backoff.reset();
            }
            let delay = self.backoff.next_delay();
            tracing::debug!(relay = %self.url, ?delay, "reconnecting after a pause");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stopped(&mut stop) => break,
            }
        }
        self.flush().await;
        if let Some(t) = self.synced_at {
            self.stats.set("synced_at", t);
        }
        self.stats.set("state", "stopped");
        self.stats.clear("connected_since");
        self.stats.write().await;
    }

    /// `since` of the next subscription: from shortly before the point up
    /// to which everything was written, but never before `now − lookback`.
    fn since(&self, now: i64) -> i64 {
        since(now, self.cfg.lookback, self.cfg.overlap, self.synced_at)
    }

    async fn send(&self, ws: &mut Ws, m: Message) -> Result<(), String> {
        match tokio::time::timeout(self.cfg.send_timeout, ws.send(m)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("send: {}", one_line(&e.to_string()))),
            Err(_) => Err(format!(
                "send timed out after {} s",
                self.cfg.send_timeout.as_secs_f64()
            )),
        }
    }

    /// Sends a new `REQ` (and closes the previous one, after, so there is
    /// no gap).
    async fn subscribe(&mut self, ws: &mut Ws, sub: &mut Sub) -> Result<(), String> {
        self.sub_seq += 1;
        let id = format!("dvmtop-{}", self.sub_seq);
        let since = self.since(now_unix());
        self.send(ws, Message::text(message::req(&id, &self.kinds, since)))
            .await?;
        tracing::debug!(relay = %self.url, sub = %id, since, "subscribed");
        let old = std::mem::replace(&mut sub.id, id);
        sub.live = false;
        sub.retry_at = None;
        if !old.is_empty() {
            self.send(ws, Message::text(message::close(&old))).await?;
        }
        Ok(())
    }

    async fn session(&mut self, mut ws: Ws) -> End {
        let mut stop = self.stop.clone();
        let mut sub = Sub::default();
        if let Err(e) = self.subscribe(&mut ws, &mut sub).await {
            return End::Lost(e);
        }
        let started = Instant::now();
        let mut resubscribe_at = started + self.cfg.resubscribe_every;
        let mut next_ping = started + self.cfg.ping_every;
        let mut last_rx = started;
        let tick_every = self.cfg.flush_every.min(Duration::from_secs(1));
        let mut tick = tokio::time::interval(tick_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Redis not keeping up: stop reading until the pending chunk is
        // written.
        let max_pending = self.cfg.chunk.saturating_mul(4).max(1);
        loop {
            let room = self.pending.len() < max_pending && self.pending_bytes < CHUNK_BYTES;
            tokio::select! {
                biased;
                _ = stopped(&mut stop) => {
                    self.flush().await;
                    let _ = self.send(&mut ws, Message::text(message::close(&sub.id))).await;
                    let _ = tokio::time::timeout(self.cfg.send_timeout, ws.close(None)).await;
                    return End::Stopped;
                }
                m = ws.next(), if room => {
                    last_rx = Instant::now();
                    match m {
                        None => return End::Lost("the relay closed the connection".into()),
                        Some(Err(e)) => return End::Lost(format!("websocket: {}", one_line(&e.to_string()))),
                        Some(Ok(Message::Text(t))) => self.on_text(t.as_str(), &mut sub),
                        Some(Ok(Message::Close(frame))) => {
                            let why = frame.map(|f| format!(" ({} {})", f.code, one_line(&f.reason))).unwrap_or_default();
                            return End::Lost(format!("the relay closed the connection{why}"));
                        }
                        Some(Ok(Message::Binary(_))) => self.stats.add("invalid_messages", 1),
                        Some(Ok(_)) => {} // ping, pong: tungstenite answers pings itself
                    }
                    if self.pending.len() >= self.cfg.chunk || self.pending_bytes >= CHUNK_BYTES {
                        self.flush().await;
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if self.pending_since.is_some_and(|t| t.elapsed() >= self.cfg.flush_every) {
                        self.flush().await;
                    }
                    if sub.live && self.pending.is_empty() {
                        // Everything received so far is written.
                        self.synced_at = Some(now_unix());
                    }
                    if self.stats.due(self.cfg.heartbeat_every) {
                        if let Some(s) = self.synced_at {
                            self.stats.set("synced_at", s);
                        }
                        self.stats.write().await;
                    }
                    if now >= next_ping {
                        if last_rx.elapsed() >= self.cfg.idle_timeout {
                            return End::Lost(format!(
                                "the relay sent nothing for {} s (not even a pong)",
                                last_rx.elapsed().as_secs()
                            ));
                        }
                        if let Err(e) = self.send(&mut ws, Message::Ping(Vec::new().into())).await {
                            return End::Lost(e);
                        }
                        next_ping = now + self.cfg.ping_every;
                    }
                    let retry = sub.retry_at.is_some_and(|t| now >= t);
                    if now >= resubscribe_at || retry {
                        if let Err(e) = self.subscribe(&mut ws, &mut sub).await {
                            return End::Lost(e);
                        }
                        resubscribe_at = now + self.cfg.resubscribe_every;
                    }
                }
            }
        }
    }

    /// One text frame from the relay: whatever it holds, it is counted and
    /// the session goes on.
    fn on_text(&mut self, text: &str, sub: &mut Sub) {
        match message::parse_message(text) {
            RelayMessage::Event { event, .. } => {
                // Events of an older subscription of ours are DVM events
                // all the same; validation decides.
                let raw = match event {
                    Some(e) => e,
                    // No event object: a malformed event, kept as sent.
                    None => text.to_owned(),
                };
                let id = serde_json::from_str::<IdOnly>(&raw).ok().map(|i| i.id);
                if let Some(id) = &id
                    && !self.recent.insert(id)
                {
                    self.stats.add("redelivered", 1);
                    return;
                }
                self.stats.add("events_received", 1);
                self.stats.set("last_event_at", now_unix());
                self.pending_bytes += raw.len();
                self.pending.push((id, raw));
                self.pending_since.get_or_insert_with(Instant::now);
            }
            RelayMessage::Eose { sub: s } if s == sub.id => {
                sub.live = true;
                sub.closed_count = 0;
                self.stats.set("eose_at", now_unix());
            }
            RelayMessage::Eose { .. } => {}
            RelayMessage::Notice(n) => {
                tracing::info!(relay = %self.url, notice = %one_line(&n), "relay notice");
                self.stats.add("notices", 1);
                self.stats.set("last_notice", one_line(&n));
            }
            RelayMessage::Closed { sub: s, reason } if s == sub.id => {
                // The relay ended our subscription: ask again later, more
                // slowly each time it refuses.
                sub.live = false;
                sub.closed_count = sub.closed_count.saturating_add(1);
                let wait = self
                    .cfg
                    .backoff_base
                    .saturating_mul(1 << sub.closed_count.min(10))
                    .max(Duration::from_secs(1))
                    .min(self.cfg.resubscribe_every.max(Duration::from_secs(1)));
                sub.retry_at = Some(Instant::now() + wait);
                let why = format!("subscription closed by the relay: {}", one_line(&reason));
                tracing::warn!(relay = %self.url, error = %why, "resubscribing in {wait:?}");
                self.stats.add("closed_by_relay", 1);
                self.stats.set("last_error", why);
                self.stats.set("last_error_at", now_unix());
            }
            RelayMessage::Closed { .. } | RelayMessage::Other(_) => {}
            RelayMessage::Invalid => self.stats.add("invalid_messages", 1),
        }
    }

    /// Validates the pending events and writes them as one chunk, through
    /// the same script as file ingest. Retries while Redis fails, unless
    /// a shutdown is asked for.
    async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let v = self.validation.clone();
        let raws: Vec<String> = batch.iter().map(|(_, r)| r.clone()).collect();
        // Signature checks cost tens of microseconds each: off the async
        // workers, on the validation pool that file ingest uses (every
        // core), results in the relay's order.
        let classified = tokio::task::spawn_blocking(move || {
            let now = now_unix();
            let results = crate::ingest::validation_pool().map_ordered(raws, move |raw: String| {
                let verdict = classify_line(&raw, &v, now);
                let created_at = verdict
                    .is_ok()
                    .then(|| serde_json::from_str::<CreatedAt>(&raw).ok())
                    .flatten()
                    .map(|ev| ev.created_at);
                (verdict, created_at)
            });
            let mut acc: Vec<Accepted> = Vec::new();
            let mut refused: Vec<Refused> = Vec::new();
            let mut newest: Option<i64> = None;
            for result in results {
                // A lost result (a panic in validation) is a bug; the
                // whole chunk is dropped as before when validation fails.
                let (verdict, created_at) = result?;
                match verdict {
                    Ok(a) => {
                        if let Some(t) = created_at {
                            newest = Some(newest.map_or(t, |n| n.max(t)));
                        }
                        acc.push(a)
                    }
                    Err(r) => refused.push(r),
                }
            }
            Some((acc, refused, newest))
        })
        .await;
        let Ok(Some((acc, refused, newest))) = classified else {
            tracing::error!(relay = %self.url, "validation task failed; chunk dropped");
            self.forget(&batch);
            self.pending_since = None;
            return;
        };
        let mut backoff = Backoff::new(
            Duration::from_millis(200),
            Duration::from_secs(5),
            self.sub_seq,
        );
        loop {
            let r = tokio::time::timeout(
                Duration::from_secs(30),
                self.queue.ingest_chunk(
                    // A relay has no resume position: never refused as lost.
                    crate::queue::ChunkSpan {
                        field: "",
                        start: 0,
                        end: 0,
                        read: batch.len() as u64,
                        enqueue: true,
                    },
                    &acc,
                    &refused,
                ),
            )
            .await;
            let err = match r {
                Ok(Ok(out)) => {
                    let out = out.unwrap_or_default();
                    self.stats.add("accepted", out.accepted);
                    self.stats.add("duplicates", out.duplicates);
                    for r in &refused {
                        self.stats.add(format!("rejected:{}", r.reason), 1);
                    }
                    if let Some(n) = newest {
                        self.stats.set("last_event_created_at", n);
                    }
                    self.stats.write().await;
                    self.pending_since = None;
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "Redis did not answer within 30 s".into(),
            };
            tracing::warn!(relay = %self.url, error = %err, "cannot enqueue relay events; retrying");
            self.stats
                .set("last_error", format!("enqueue: {}", one_line(&err)));
            self.stats.set("last_error_at", now_unix());
            if self.stopping() {
                tracing::error!(relay = %self.url, events = batch.len(), "shutting down with relay events not enqueued (Redis failing); the next run asks the relay again");
                self.forget(&batch);
                self.pending_since = None;
                return;
            }
            let mut stop = self.stop.clone();
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = stopped(&mut stop) => {}
            }
        }
    }

    /// Events that were not written may come again: do not treat them as
    /// re-deliveries then.
    fn forget(&mut self, batch: &[(Option<String>, String)]) {
        for (id, _) in batch {
            if let Some(id) = id {
                self.recent.remove(id);
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct CreatedAt {
    created_at: i64,
}

/// `since` for a subscription at `now`: `synced_at − overlap`, but never
/// before `now − lookback` (nor before 0).
fn since(now: i64, lookback: Duration, overlap: Duration, synced_at: Option<i64>) -> i64 {
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let floor = now.saturating_sub(secs(lookback)).max(0);
    synced_at.map_or(floor, |s| s.saturating_sub(secs(overlap)).max(floor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_starts_from_the_lookback_then_from_what_was_synced() {
        let (day, two_min) = (Duration::from_secs(86_400), Duration::from_secs(120));
        let now = 1_700_000_000;
        assert_eq!(since(now, day, two_min, None), now - 86_400);
        assert_eq!(since(now, day, two_min, Some(now - 60)), now - 180);
        // Synced long ago (or by a run with a longer lookback): the
        // lookback still bounds it.
        assert_eq!(
            since(now, day, two_min, Some(now - 5 * 86_400)),
            now - 86_400
        );
        assert_eq!(since(now, Duration::from_secs(u64::MAX), two_min, None), 0);
        assert_eq!(
            since(now, day, Duration::from_secs(u64::MAX), Some(now)),
            now - 86_400
        );
    }

    #[test]
    fn errors_become_one_bounded_line() {
        assert_eq!(one_line("a\n  b\tc"), "a b c");
        let long = "é".repeat(400);
        let l = one_line(&long);
        assert!(l.len() <= 304 && l.ends_with('…'), "{}", l.len());
    }
}
