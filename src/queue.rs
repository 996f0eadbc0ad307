//! Redis: the ingest side (atomic dedup + enqueue + counters + resume
//! offsets), the processing side (peek, then acknowledge after the
//! PostgreSQL commit) and the housekeeping (depth, dead letters, wipe).
//!
//! Exactly-once: the processor never pops destructively. It peeks the head
//! of the queue, commits the batch in PostgreSQL together with a sequence
//! number and the element count, and only then trims the head, in a script
//! that trims only if that sequence is not acknowledged yet. A crash in
//! between replays the trim at start-up, never the batch.

use crate::error::{Error, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::collections::BTreeMap;
use std::time::Duration;

/// Key names under a namespace.
#[derive(Debug, Clone)]
pub struct Keys {
    pub(crate) prefix: String,
    pub queue: String,
}

impl Keys {
    /// `queue_key` overrides the queue's name (e.g. DVMDash's
    /// `dvmdash_events`); everything else stays under the prefix.
    pub fn new(namespace: &str, queue_key: Option<&str>) -> Keys {
        Keys {
            prefix: namespace.to_owned(),
            queue: queue_key.map_or_else(|| format!("{namespace}:queue"), str::to_owned),
        }
    }
    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }
    pub(crate) fn acked(&self) -> String {
        self.key("acked")
    }
    pub(crate) fn ingest_stats(&self) -> String {
        self.key("ingest")
    }
    pub fn dead(&self) -> String {
        self.key("dead")
    }
    pub(crate) fn offsets(&self) -> String {
        self.key("offsets")
    }
    /// Ingest dedup set of one UTC day (events of a day share a bucket, and
    /// duplicates share their day, so the buckets of closed months can go).
    pub(crate) fn seen(&self, day: chrono::NaiveDate) -> String {
        self.key(&format!("seen:{}", day.format("%Y%m%d")))
    }
    /// The set of relay URLs that have a stats hash.
    pub(crate) fn relays(&self) -> String {
        self.key("relays")
    }
    /// The Pub/Sub channel ingest notifies when it enqueued something, so
    /// an idle processor wakes at once instead of polling.
    pub(crate) fn wake(&self) -> String {
        self.key("wake")
    }
    /// The token of the queue's generation (see [`Queue::read`]): a Redis
    /// that lost its data no longer has it.
    pub(crate) fn epoch(&self) -> String {
        self.key("epoch")
    }
    /// One relay's stats hash (see `relay::stats`).
    pub(crate) fn relay(&self, url: &str) -> String {
        self.key(&format!("relay:{url}"))
    }
}

/// One accepted event ready to enqueue.
pub struct Accepted {
    pub(crate) day: chrono::NaiveDate,
    pub(crate) id: String,
    pub(crate) payload: String,
}

/// A dead letter keeps at most this much of a refused element: enough to
/// see what it was, while one hostile 50 MB line cannot fill Redis (or the
/// `dead_letters` table).
pub(crate) const DEAD_LETTER_KEEP: usize = 64 << 10;

/// One refused input element, as its dead letter keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub(crate) reason: &'static str,
    /// The element's first [`DEAD_LETTER_KEEP`] bytes (cut on a character
    /// boundary).
    pub(crate) raw: String,
    /// The element's size in bytes.
    pub(crate) size: usize,
}

impl Refused {
    pub(crate) fn new(reason: &'static str, raw: &str) -> Refused {
        Refused {
            reason,
            raw: raw[..raw.floor_char_boundary(DEAD_LETTER_KEEP)].to_owned(),
            size: raw.len(),
        }
    }

    /// Like [`Refused::new`], without a copy when the element is small.
    pub(crate) fn from_owned(reason: &'static str, mut raw: String) -> Refused {
        let size = raw.len();
        if size > DEAD_LETTER_KEEP {
            raw.truncate(raw.floor_char_boundary(DEAD_LETTER_KEEP));
            raw.shrink_to_fit();
        }
        Refused { reason, raw, size }
    }

    #[cfg(test)]
    pub(crate) fn truncated(&self) -> bool {
        self.raw.len() < self.size
    }
}

/// Bounds of the Redis dead-letter list. Past them new dead letters are
/// dropped, but still counted (under `rejected:<reason>`, and as
/// `dead_letters_dropped`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterCaps {
    pub max_entries: u64,
    /// Sum of the entries' sizes (their JSON), tracked as
    /// `dead_letter_bytes` in the ingest stats hash.
    pub max_bytes: u64,
}

impl Default for DeadLetterCaps {
    fn default() -> Self {
        DeadLetterCaps {
            max_entries: 100_000,
            max_bytes: 256 << 20,
        }
    }
}

/// What one ingest chunk did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ChunkOutcome {
    pub(crate) accepted: u64,
    pub(crate) duplicates: u64,
}

/// One chunk of a source's elements for [`Queue::ingest_chunk`].
#[derive(Debug, Clone, Copy)]
pub struct ChunkSpan<'a> {
    /// The source's resume key (empty: it cannot resume, e.g. stdin, a
    /// relay).
    pub field: &'a str,
    /// The source's position before and after the chunk (elements).
    pub start: u64,
    pub end: u64,
    /// Elements read (validated) in the chunk.
    pub read: u64,
    /// Queue the accepted elements (false: only dedup and count them —
    /// PostgreSQL has them already).
    pub enqueue: bool,
}

/// Redis no longer has a source's position where the chunk starts: it
/// lost the queue (restarted without its data, or was flushed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PositionLost {
    /// Redis's position of the source now.
    pub redis: u64,
}

// Atomically: dedup each candidate in its day set and enqueue the new ones
// (unless the chunk is only counted: PostgreSQL has it already), count
// everything, park refused lines in the dead-letter list (within its
// caps: entries, and bytes as tracked in the stats hash — so no scan is
// needed; an emptied list resets the byte count), move the source's
// resume offset, and notify waiting processors. A chunk whose offset the
// source already reached was written before (a retry after a lost reply):
// it is skipped, so nothing is enqueued or counted twice. A chunk that
// does not start where the source's offset stands (Redis lost it: it
// restarted without its data) is refused with {-1, offset}: what was
// queued before it may be gone, and queueing on would leave a hole.
// KEYS: queue, stats, dead, offsets, wake channel.
// ARGV: offset_field, start, offset, read, enqueue (1/0), dead_max_entries,
//       dead_max_bytes, n, (seen_key, id, payload)*n, m, (reason, raw, size)*m
const ENQUEUE: &str = r#"
if ARGV[1] ~= '' then
  local at = tonumber(redis.call('HGET', KEYS[4], ARGV[1]) or '0')
  if at >= tonumber(ARGV[3]) then return {0, 0} end
  if at ~= tonumber(ARGV[2]) then return {-1, at} end
end
local queue = ARGV[5] == '1'
local i = 9
local n = tonumber(ARGV[8])
local acc, dup = 0, 0
for _ = 1, n do
  if redis.call('SADD', ARGV[i], ARGV[i + 1]) == 1 then
    if queue then redis.call('RPUSH', KEYS[1], ARGV[i + 2]) end
    acc = acc + 1
  else
    dup = dup + 1
  end
  i = i + 3
end
local m = tonumber(ARGV[i])
i = i + 1
if m > 0 then
  local max_n, max_bytes = tonumber(ARGV[6]), tonumber(ARGV[7])
  local len = redis.call('LLEN', KEYS[3])
  local bytes = 0
  if len > 0 then bytes = tonumber(redis.call('HGET', KEYS[2], 'dead_letter_bytes') or '0') end
  local dropped = 0
  for _ = 1, m do
    local raw, size = ARGV[i + 1], tonumber(ARGV[i + 2])
    redis.call('HINCRBY', KEYS[2], 'rejected:' .. ARGV[i], 1)
    local entry = cjson.encode({reason = ARGV[i], raw = raw, size = size, truncated = size > #raw})
    if len < max_n and bytes + #entry <= max_bytes then
      redis.call('RPUSH', KEYS[3], entry)
      len = len + 1
      bytes = bytes + #entry
    else
      dropped = dropped + 1
    end
    i = i + 3
  end
  redis.call('HSET', KEYS[2], 'dead_letter_bytes', bytes)
  if dropped > 0 then redis.call('HINCRBY', KEYS[2], 'dead_letters_dropped', dropped) end
end
if dup > 0 then redis.call('HINCRBY', KEYS[2], 'rejected:duplicate', dup) end
redis.call('HINCRBY', KEYS[2], 'accepted', acc)
redis.call('HINCRBY', KEYS[2], 'events_read', tonumber(ARGV[4]))
if ARGV[1] ~= '' then redis.call('HSET', KEYS[4], ARGV[1], ARGV[3]) end
if queue and acc > 0 then redis.call('PUBLISH', KEYS[5], acc) end
return {acc, dup}
"#;

// KEYS: queue, acked, epoch. ARGV: seq, count, epoch. Trims the head once
// per sequence, and only in the generation the group was read from (-1:
// the queue was lost meanwhile; nothing is trimmed).
const ACK: &str = r#"
if redis.call('GET', KEYS[3]) ~= ARGV[3] then return -1 end
local acked = tonumber(redis.call('GET', KEYS[2]) or '0')
if acked < tonumber(ARGV[1]) then
  redis.call('LTRIM', KEYS[1], tonumber(ARGV[2]), -1)
  redis.call('SET', KEYS[2], ARGV[1])
  return 1
end
return 0
"#;

/// What an acknowledge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acked {
    Trimmed,
    /// That sequence was trimmed before.
    Already,
    /// The queue is not of the group's generation any more (lost): nothing
    /// was trimmed.
    EpochChanged,
}

/// One read of the queue (see [`Queue::read`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Read {
    /// The generation's token as Redis has it now.
    pub(crate) epoch: Option<String>,
    /// The list's length.
    pub(crate) len: u64,
    pub(crate) items: Vec<String>,
}

/// Redis not answering: since when, and the last error.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Outage {
    pub(crate) since: chrono::DateTime<chrono::Utc>,
    pub(crate) error: String,
}

/// The reconnecting connection, noting when Redis stops answering (every
/// command of every user goes through it, so an outage is seen by all).
#[derive(Clone)]
struct Tracked {
    inner: ConnectionManager,
    outage: std::sync::Arc<std::sync::Mutex<Option<Outage>>>,
}

impl Tracked {
    fn outage(&self) -> Option<Outage> {
        self.outage.lock().map_or(None, |o| o.clone())
    }

    fn note<T>(&self, r: &redis::RedisResult<T>) {
        let Ok(mut o) = self.outage.lock() else {
            return;
        };
        match r {
            Ok(_) => *o = None,
            Err(e) if is_connection_error(e) => {
                let since = o.as_ref().map_or_else(chrono::Utc::now, |x| x.since);
                *o = Some(Outage {
                    since,
                    error: e.to_string(),
                });
            }
            // Redis answered (with an error): it is reachable.
            Err(_) => *o = None,
        }
    }
}

/// The error says Redis is not reachable (as opposed to an answer) — or
/// not available yet: a restarted Redis answers `LOADING` to every command
/// until its data is loaded, whether it comes back alone, in a pipeline,
/// or as an aborted transaction's errors.
pub(crate) fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.clone().into_server_errors().is_some_and(|errs| {
            errs.iter()
                .any(|(_, s)| s.kind() == Some(redis::ServerErrorKind::BusyLoading))
        })
}

impl redis::aio::ConnectionLike for Tracked {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        Box::pin(async move {
            let r = self.inner.req_packed_command(cmd).await;
            self.note(&r);
            r
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        Box::pin(async move {
            let r = self
                .inner
                .req_packed_commands(pipeline, offset, count)
                .await;
            self.note(&r);
            r
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

/// A namespace's Redis handle. The connection reconnects by itself after
/// Redis restarts or the link drops (the command in flight fails and is
/// retried by its caller, like any transient error).
#[derive(Clone)]
pub struct Queue {
    client: redis::Client,
    conn: Tracked,
    pub keys: Keys,
    dead_caps: DeadLetterCaps,
    enqueue: std::sync::Arc<redis::Script>,
    ack: std::sync::Arc<redis::Script>,
}

/// The URL without its password, for messages and logs.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// One line for a failed Redis connection, by cause: login refused, TLS
/// refused (and why), or unreachable.
fn redis_err(url: &str) -> impl Fn(redis::RedisError) -> Error + '_ {
    move |e| {
        let url = redact(url);
        let text = e.to_string();
        if e.kind() == redis::ErrorKind::AuthenticationFailed
            || text.contains("WRONGPASS")
            || text.contains("NOAUTH")
        {
            Error::Unreachable(format!(
                "Redis at {url} refused the login ({text}): check the user and password in REDIS_URL"
            ))
        } else if crate::tls::words(&text).is_some() {
            Error::Unreachable(format!(
                "TLS to Redis at {url} failed: {}: check the rediss:// URL and --redis-ca",
                crate::tls::explain(&text)
            ))
        } else {
            Error::Unreachable(format!(
                "Redis at {url} is unreachable ({text}): start it or set REDIS_URL"
            ))
        }
    }
}

impl Queue {
    pub async fn connect(url: &str, keys: Keys) -> Result<Queue> {
        Queue::connect_with(url, keys, None).await
    }

    /// Connects; `rediss://` URLs use TLS (rustls), trusting `ca` (a PEM
    /// file) when given, else the system's roots plus Mozilla's.
    pub(crate) async fn connect_with(
        url: &str,
        keys: Keys,
        ca: Option<&std::path::Path>,
    ) -> Result<Queue> {
        let invalid = |e: redis::RedisError| {
            Error::Config(format!("invalid REDIS_URL {:?}: {e}", redact(url)))
        };
        let client = match ca {
            None => {
                if url.starts_with("rediss://") {
                    crate::tls::install_provider();
                }
                redis::Client::open(url).map_err(invalid)?
            }
            Some(path) => {
                if !url.starts_with("rediss://") {
                    return Err(Error::Config(format!(
                        "--redis-ca is for TLS, but REDIS_URL {:?} is not rediss://",
                        redact(url)
                    )));
                }
                let pem = std::fs::read(path).map_err(|source| Error::Io {
                    path: path.display().to_string(),
                    source,
                })?;
                crate::tls::install_provider();
                redis::Client::build_with_tls(
                    url,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
                .map_err(|e| {
                    Error::Config(format!(
                        "--redis-ca {}: not a usable PEM CA file ({e})",
                        path.display()
                    ))
                })?
            }
        };
        // redis-rs 1.x times responses out after 500 ms by default; our
        // scripts on large batches can take longer, so allow generously.
        // Reconnects back off from 100 ms to 5 s, forever.
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(120)))
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_secs(5))
            .set_number_of_retries(usize::MAX);
        // One plain attempt first: the manager retries its first connection
        // forever, so a refused login, a TLS failure or a server that is
        // not there would hang the start instead of saying so.
        let probe_cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(10)));
        let mut probe = client
            .get_multiplexed_async_connection_with_config(&probe_cfg)
            .await
            .map_err(redis_err(url))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut probe)
            .await
            .map_err(redis_err(url))?;
        drop(probe);
        let mut conn = ConnectionManager::new_with_config(client.clone(), cfg)
            .await
            .map_err(redis_err(url))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(redis_err(url))?;
        Ok(Queue {
            client,
            conn: Tracked {
                inner: conn,
                outage: Default::default(),
            },
            keys,
            dead_caps: DeadLetterCaps::default(),
            enqueue: std::sync::Arc::new(redis::Script::new(ENQUEUE)),
            ack: std::sync::Arc::new(redis::Script::new(ACK)),
        })
    }

    /// The same queue with other dead-letter caps.
    pub(crate) fn with_dead_letter_caps(mut self, caps: DeadLetterCaps) -> Queue {
        self.dead_caps = caps;
        self
    }

    /// Enqueues a chunk of validated input atomically with its counters and
    /// the source's new resume offset; `Ok(Err(_))` when Redis's offset of
    /// the source is not where the chunk starts (the queue was lost).
    pub async fn ingest_chunk(
        &self,
        span: ChunkSpan<'_>,
        accepted: &[Accepted],
        refused: &[Refused],
    ) -> Result<std::result::Result<ChunkOutcome, PositionLost>> {
        let mut inv = self.enqueue.prepare_invoke();
        inv.key(&self.keys.queue)
            .key(self.keys.ingest_stats())
            .key(self.keys.dead())
            .key(self.keys.offsets())
            .key(self.keys.wake())
            .arg(span.field)
            .arg(span.start)
            .arg(span.end)
            .arg(span.read)
            .arg(if span.enqueue { 1 } else { 0 })
            .arg(self.dead_caps.max_entries)
            .arg(self.dead_caps.max_bytes)
            .arg(accepted.len());
        for a in accepted {
            inv.arg(self.keys.seen(a.day)).arg(&a.id).arg(&a.payload);
        }
        inv.arg(refused.len());
        for r in refused {
            inv.arg(r.reason).arg(&r.raw).arg(r.size);
        }
        let (acc, dup): (i64, u64) = inv.invoke_async(&mut self.conn.clone()).await?;
        Ok(if acc < 0 {
            Err(PositionLost { redis: dup })
        } else {
            Ok(ChunkOutcome {
                accepted: acc as u64,
                duplicates: dup,
            })
        })
    }

    /// Waits for ingest's notifications on the wake channel and sends a
    /// [`Signal::Work`](crate::pipeline::Signal) for each (dropped when one
    /// is already waiting). Resubscribes after a lost connection; returns
    /// when the receiver is gone.
    pub(crate) async fn forward_wakes(
        &self,
        to: tokio::sync::mpsc::Sender<crate::pipeline::Signal>,
    ) {
        use futures_util::StreamExt;
        let mut delay = Duration::from_millis(200);
        while !to.is_closed() {
            let stream = async {
                let mut ps = self.client.get_async_pubsub().await?;
                ps.subscribe(self.keys.wake()).await?;
                Ok::<_, redis::RedisError>(ps.into_on_message())
            };
            match stream.await {
                Ok(mut messages) => {
                    delay = Duration::from_millis(200);
                    // A signal now: work may have arrived while unsubscribed.
                    let _ = to.try_send(crate::pipeline::Signal::Work);
                    while messages.next().await.is_some() {
                        if to.try_send(crate::pipeline::Signal::Work).is_err() && to.is_closed() {
                            return;
                        }
                    }
                    tracing::debug!("Redis wake subscription ended; subscribing again");
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot subscribe to the Redis wake channel; retrying in {delay:?}");
                }
            }
            // Redis went away: an idle pipeline looks at once, so that it
            // shows Redis as unreachable (and retries) instead of idling.
            if to.try_send(crate::pipeline::Signal::Work).is_err() && to.is_closed() {
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Where a source's ingest stopped (elements already handled).
    pub(crate) async fn offset(&self, field: &str) -> Result<u64> {
        let v: Option<u64> = redis::cmd("HGET")
            .arg(self.keys.offsets())
            .arg(field)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(v.unwrap_or(0))
    }

    /// The first `n` queue elements, without removing them.
    pub async fn peek(&self, n: usize) -> Result<Vec<String>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        Ok(redis::cmd("LRANGE")
            .arg(&self.keys.queue)
            .arg(0)
            .arg(n as i64 - 1)
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// `n` elements from position `start`, without removing them.
    pub(crate) async fn range(&self, start: i64, n: usize) -> Result<Vec<String>> {
        Ok(redis::cmd("LRANGE")
            .arg(&self.keys.queue)
            .arg(start)
            .arg(start + n as i64 - 1)
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// Removes the `count` head elements consumed by batch `seq` (once),
    /// if the queue is still of generation `epoch`.
    pub(crate) async fn ack(&self, seq: i64, count: i64, epoch: &str) -> Result<Acked> {
        let done: i64 = self
            .ack
            .key(&self.keys.queue)
            .key(self.keys.acked())
            .key(self.keys.epoch())
            .arg(seq)
            .arg(count)
            .arg(epoch)
            .invoke_async(&mut self.conn.clone())
            .await?;
        Ok(match done {
            1 => Acked::Trimmed,
            0 => Acked::Already,
            _ => Acked::EpochChanged,
        })
    }

    /// The queue generation's token, if Redis has one.
    pub(crate) async fn epoch(&self) -> Result<Option<String>> {
        Ok(redis::cmd("GET")
            .arg(self.keys.epoch())
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// Starts a new queue generation whose position is group `acked`
    /// (both in one transaction) and returns its token.
    pub(crate) async fn new_epoch(&self, acked: i64) -> Result<String> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let token = format!(
            "{nanos:x}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let () = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(self.keys.epoch())
            .arg(&token)
            .ignore()
            .cmd("SET")
            .arg(self.keys.acked())
            .arg(acked)
            .ignore()
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(token)
    }

    /// `n` elements from position `start`, read in one transaction with
    /// the generation token and the list's length — so that a queue lost
    /// and refilled in between is never read at a stale position.
    pub(crate) async fn read(&self, start: i64, n: usize) -> Result<Read> {
        let (epoch, len, items): (Option<String>, u64, Vec<String>) = redis::pipe()
            .atomic()
            .cmd("GET")
            .arg(self.keys.epoch())
            .cmd("LLEN")
            .arg(&self.keys.queue)
            .cmd("LRANGE")
            .arg(&self.keys.queue)
            .arg(start)
            .arg(start + n as i64 - 1)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(Read { epoch, len, items })
    }

    /// What Redis persists (`CONFIG GET appendonly`, `save`); `None` when
    /// CONFIG is not allowed (managed Redis services often rename it).
    pub async fn persistence(&self) -> Option<dvmtop_core::alert::Persistence> {
        let get = |name: &'static str| {
            let mut conn = self.conn.clone();
            async move {
                let v: Vec<String> = redis::cmd("CONFIG")
                    .arg("GET")
                    .arg(name)
                    .query_async(&mut conn)
                    .await
                    .ok()?;
                v.get(1).cloned()
            }
        };
        let aof = get("appendonly").await?;
        let save = get("save").await?;
        Some(dvmtop_core::alert::Persistence::from_config(&aof, &save))
    }

    /// Since when Redis has not answered (any user of this handle: ingest,
    /// relays, the processor), and the error; `None` when the last command
    /// succeeded.
    pub(crate) fn outage(&self) -> Option<Outage> {
        self.conn.outage()
    }

    pub(crate) async fn acked(&self) -> Result<Option<i64>> {
        Ok(redis::cmd("GET")
            .arg(self.keys.acked())
            .query_async(&mut self.conn.clone())
            .await?)
    }

    pub(crate) async fn set_acked(&self, seq: i64) -> Result<()> {
        let _: () = redis::cmd("SET")
            .arg(self.keys.acked())
            .arg(seq)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }

    pub async fn depth(&self) -> Result<u64> {
        Ok(redis::cmd("LLEN")
            .arg(&self.keys.queue)
            .query_async(&mut self.conn.clone())
            .await?)
    }

    pub async fn dead_letters(&self) -> Result<u64> {
        Ok(redis::cmd("LLEN")
            .arg(self.keys.dead())
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// Ingest counters: events_read, accepted, rejected:<reason>,
    /// dead_letter_bytes, dead_letters_dropped.
    pub async fn ingest_stats(&self) -> Result<BTreeMap<String, u64>> {
        Ok(redis::cmd("HGETALL")
            .arg(self.keys.ingest_stats())
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// Updates one relay's stats hash in one transaction: registers the
    /// relay, increments `incr`, sets `set`, deletes `del`.
    pub(crate) async fn relay_update(
        &self,
        url: &str,
        incr: &[(String, i64)],
        set: &[(&str, String)],
        del: &[&str],
    ) -> Result<()> {
        let key = self.keys.relay(url);
        let mut p = redis::pipe();
        p.atomic()
            .cmd("SADD")
            .arg(self.keys.relays())
            .arg(url)
            .ignore();
        for (f, n) in incr {
            p.cmd("HINCRBY").arg(&key).arg(f).arg(*n).ignore();
        }
        if !set.is_empty() {
            let mut c = redis::cmd("HSET");
            c.arg(&key);
            for (f, v) in set {
                c.arg(*f).arg(v);
            }
            p.add_command(c).ignore();
        }
        if !del.is_empty() {
            p.cmd("HDEL").arg(&key).arg(del).ignore();
        }
        let () = p.query_async(&mut self.conn.clone()).await?;
        Ok(())
    }

    /// One field of a relay's stats hash.
    pub(crate) async fn relay_field(&self, url: &str, field: &str) -> Result<Option<String>> {
        Ok(redis::cmd("HGET")
            .arg(self.keys.relay(url))
            .arg(field)
            .query_async(&mut self.conn.clone())
            .await?)
    }

    /// Every relay's stats hash, by URL.
    pub(crate) async fn relay_hashes(&self) -> Result<BTreeMap<String, BTreeMap<String, String>>> {
        let mut conn = self.conn.clone();
        let urls: Vec<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.relays())
            .query_async(&mut conn)
            .await?;
        let mut out = BTreeMap::new();
        for url in urls {
            let h: BTreeMap<String, String> = redis::cmd("HGETALL")
                .arg(self.keys.relay(&url))
                .query_async(&mut conn)
                .await?;
            out.insert(url, h);
        }
        Ok(out)
    }

    /// Drops the ingest dedup sets of days before `day` (closed months).
    pub(crate) async fn forget_seen_before(&self, day: chrono::NaiveDate) -> Result<u64> {
        let cutoff = self.keys.seen(day);
        let mut dropped = 0;
        for k in self.scan(&format!("{}:seen:*", self.keys.prefix)).await? {
            if k < cutoff {
                // UNLINK: a month of day sets is freed off Redis's main thread.
                let _: () = redis::cmd("UNLINK")
                    .arg(&k)
                    .query_async(&mut self.conn.clone())
                    .await?;
                dropped += 1;
            }
        }
        Ok(dropped)
    }

    async fn scan(&self, pattern: &str) -> Result<Vec<String>> {
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut out = Vec::new();
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            out.extend(keys);
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }

    /// Whether anything of the namespace exists in Redis.
    pub(crate) async fn has_data(&self) -> Result<bool> {
        Ok(!self
            .scan(&format!("{}:*", self.keys.prefix))
            .await?
            .is_empty())
    }

    /// Deletes every key of the namespace (not an external queue key).
    pub async fn wipe(&self) -> Result<()> {
        for k in self.scan(&format!("{}:*", self.keys.prefix)).await? {
            let _: () = redis::cmd("DEL")
                .arg(&k)
                .query_async(&mut self.conn.clone())
                .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letters_keep_64_kib_cut_on_a_character() {
        let small = Refused::new("malformed", "{oops");
        assert_eq!((small.raw.as_str(), small.size), ("{oops", 5));
        assert!(!small.truncated());
        // 'é' is two bytes: 64 KiB falls inside one after a one-byte prefix.
        let big = format!("x{}", "é".repeat(40_000));
        for r in [
            Refused::new("malformed", &big),
            Refused::from_owned("malformed", big.clone()),
        ] {
            assert_eq!(r.size, big.len());
            assert_eq!(r.raw.len(), DEAD_LETTER_KEEP - 1);
            assert!(big.starts_with(&r.raw) && r.truncated());
        }
    }
}
