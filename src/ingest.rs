//! Sources → validation → Redis. Files (JSONL, or a JSON array as in
//! DVMDash's historical dumps, streamed element by element — see
//! [`split`]), `-` for stdin, gzip when the name ends in `.gz`. Reading and
//! validation run on a blocking thread, one chunk ahead of the Redis
//! writes; each chunk is enqueued atomically together with the source's
//! resume offset, so an interrupted ingest resumes exactly where it
//! stopped. Each queued element carries its source and position, so
//! PostgreSQL records with every commit how far each source is processed;
//! when Redis lost the queue (and the offsets with it), ingest starts
//! queueing right after that committed position and only counts what is
//! before it (see [`dvmtop_core::source`]). An input that breaks off (a
//! truncated array, damaged gzip data) has every complete element
//! enqueued before the error is reported.

mod pool;
pub mod split;

use crate::error::{BrokenInput, Error, Result};
use crate::event::{self, Validation};
use crate::queue::{Accepted, ChunkSpan, Queue, Refused};
use crate::record::Record;
use crate::store::Db;
use dvmtop_core::day_of;
use split::{Break, BreakKind, Elements};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Path(PathBuf),
    Stdin,
}

impl Source {
    pub fn parse(s: &str) -> Source {
        if s == "-" {
            Source::Stdin
        } else {
            Source::Path(PathBuf::from(s))
        }
    }

    pub(crate) fn label(&self) -> String {
        match self {
            Source::Path(p) => p.display().to_string(),
            Source::Stdin => "-".into(),
        }
    }

    /// Key of the resume offset: path and size, so a different file at the
    /// same path starts from the beginning. Stdin cannot resume.
    fn offset_field(&self) -> Result<String> {
        match self {
            Source::Stdin => Ok(String::new()),
            Source::Path(p) => {
                let io = |source| Error::Io {
                    path: p.display().to_string(),
                    source,
                };
                let canon = std::fs::canonicalize(p).map_err(io)?;
                let len = std::fs::metadata(&canon).map_err(io)?.len();
                Ok(format!("{}:{len}", canon.display()))
            }
        }
    }

    fn is_gzip(&self) -> bool {
        matches!(self, Source::Path(p) if p.extension().is_some_and(|e| e == "gz"))
    }

    fn open(&self) -> Result<Box<dyn BufRead + Send>> {
        let raw: Box<dyn Read + Send> = match self {
            Source::Stdin => Box::new(std::io::stdin()),
            Source::Path(p) => Box::new(std::fs::File::open(p).map_err(|source| Error::Io {
                path: p.display().to_string(),
                source,
            })?),
        };
        Ok(if self.is_gzip() {
            Box::new(BufReader::with_capacity(
                1 << 20,
                flate2::read::MultiGzDecoder::new(raw),
            ))
        } else {
            Box::new(BufReader::with_capacity(1 << 20, raw))
        })
    }
}

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub validation: Validation,
    /// Elements per atomic Redis write.
    pub chunk: usize,
    /// Back-pressure: wait while the queue is deeper than this.
    pub high_water: u64,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            validation: Validation::default(),
            chunk: 2000,
            high_water: 500_000,
        }
    }
}

/// What one source contributed in this run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestTotals {
    pub read: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub refused: u64,
    /// Elements skipped because an earlier run already handled them.
    pub(crate) skipped: u64,
    /// Elements read again only to count them, not queued: Redis had lost
    /// them, PostgreSQL had them committed (included in `read`).
    pub recounted: u64,
}

#[derive(Default)]
struct Chunk {
    /// The source's position after the chunk (elements).
    offset: u64,
    read: u64,
    /// Only counted, not queued (before the committed position).
    count_only: bool,
    accepted: Vec<Accepted>,
    refused: Vec<Refused>,
}

/// Validates one input element into an acceptance or a refusal.
pub fn classify_line(
    raw: &str,
    v: &Validation,
    now: i64,
) -> std::result::Result<Accepted, Refused> {
    match event::validate(raw, v, now) {
        Ok((ev, class)) => {
            let day = day_of(ev.created_at);
            let rec = Record::from_event(ev, class);
            Ok(Accepted {
                day,
                id: rec.id.clone(),
                payload: rec.encode(),
            })
        }
        Err(reason) => Err(Refused::new(reason.as_str(), raw)),
    }
}

/// The pool that validates (parses, hashes, verifies) every source's
/// input: relays use it too.
pub(crate) fn validation_pool() -> &'static pool::Pool {
    pool::shared()
}

/// The raw elements of one chunk, copied out of the reader's buffer so a
/// worker can validate them while the next chunk is read.
#[derive(Default)]
struct RawChunk {
    /// Position (1-based) of the first element.
    first: u64,
    /// The elements' bytes, back to back; `ends[i]` is where element `i`
    /// ends.
    bytes: Vec<u8>,
    ends: Vec<usize>,
    /// As in [`Chunk`].
    offset: u64,
    count_only: bool,
}

impl RawChunk {
    fn push(&mut self, raw: &[u8], index: u64) {
        if self.ends.is_empty() {
            self.first = index;
        }
        self.bytes.extend_from_slice(raw);
        self.ends.push(self.bytes.len());
    }

    fn len(&self) -> usize {
        self.ends.len()
    }
}

/// Validates a chunk's elements in order (on a pool worker), tagging the
/// accepted ones with their source (`id`) and position.
fn classify_chunk(raw: RawChunk, v: &Validation, id: Option<&str>) -> Chunk {
    let now = chrono::Utc::now().timestamp();
    let mut chunk = Chunk {
        offset: raw.offset,
        read: raw.len() as u64,
        count_only: raw.count_only,
        accepted: Vec::with_capacity(raw.len()),
        refused: Vec::new(),
    };
    let mut start = 0;
    for (i, &end) in raw.ends.iter().enumerate() {
        let element = &raw.bytes[start..end];
        start = end;
        match classify_line(&String::from_utf8_lossy(element), v, now) {
            Ok(mut a) => {
                if let Some(id) = id {
                    dvmtop_core::source::tag(&mut a.payload, id, raw.first + i as u64);
                }
                chunk.accepted.push(a)
            }
            Err(r) => chunk.refused.push(r),
        }
    }
    chunk
}

/// What the reader hands the forwarder, in input order.
enum Slot {
    Chunk(pool::Ticket<Chunk>),
    Broken(Error),
}

/// Reads elements (lines, or array items) into chunks, has them validated
/// on the [`pool`]'s workers (several chunks at once) and hands the results
/// out in input order. When the input breaks off, the chunk in progress
/// goes out first, with its offset, so every complete element before the
/// break is enqueued and a later `--resume` starts after it; then the
/// error.
///
/// Elements up to `plan.skip` are passed over; those up to
/// `plan.count_until` go out in count-only chunks (the last one ends
/// there). Accepted elements carry the tag of their source (`id`, when
/// the source can resume) and position.
fn read_chunks(
    input: Box<dyn BufRead + Send>,
    origin: Origin,
    plan: dvmtop_core::source::Plan,
    id: Option<String>,
    cfg: IngestConfig,
    tx: tokio::sync::mpsc::Sender<Result<Chunk>>,
) {
    let pool = pool::shared();
    // Chunks being validated or waiting to be sent: enough to keep every
    // worker busy while the writer works on the oldest.
    let (order_tx, order_rx) = std::sync::mpsc::sync_channel::<Slot>(2 * pool.threads());
    let validation = Arc::new(cfg.validation.clone());
    let id: Option<Arc<str>> = id.map(Arc::from);
    let label = origin.label.clone();
    std::thread::scope(|scope| {
        // Owned here, so the forwarder sees the end once the reader stops.
        let order_tx = order_tx;
        // The forwarder redeems the tickets in order, so a chunk goes out
        // as soon as it and every chunk before it are validated.
        scope.spawn(move || {
            for slot in order_rx {
                let item = match slot {
                    Slot::Chunk(ticket) => ticket.wait().ok_or_else(|| {
                        Error::Config(format!(
                            "{label}: validating a chunk failed (a bug: see the log)"
                        ))
                    }),
                    Slot::Broken(e) => Err(e),
                };
                let last = item.is_err();
                if tx.blocking_send(item).is_err() || last {
                    return;
                }
            }
        });
        let submit = |raw: RawChunk| {
            let v = Arc::clone(&validation);
            let id = id.clone();
            order_tx
                .send(Slot::Chunk(
                    pool.submit(move || classify_chunk(raw, &v, id.as_deref())),
                ))
                .is_ok()
        };
        let mut elements = Elements::new(input);
        let mut raw = RawChunk::default();
        let mut index: u64 = 0;
        loop {
            let element = match elements.next_element() {
                Ok(Some(element)) => element,
                Ok(None) => break,
                Err(b) => {
                    raw.offset = index;
                    if submit(raw) {
                        let _ = order_tx.send(Slot::Broken(origin.broken(b, index)));
                    }
                    return;
                }
            };
            index += 1;
            if index <= plan.skip {
                continue;
            }
            raw.push(element, index);
            raw.count_only = index <= plan.count_until;
            if raw.len() >= cfg.chunk || index == plan.count_until {
                raw.offset = index;
                if !submit(std::mem::take(&mut raw)) {
                    return;
                }
            }
        }
        raw.offset = index;
        submit(raw);
    });
}

/// What an error message needs to know about the source.
struct Origin {
    label: String,
    gzip: bool,
}

impl Origin {
    fn broken(&self, b: Break, elements: u64) -> Error {
        Error::BrokenInput(BrokenInput {
            path: self.label.clone(),
            offset: b.offset,
            elements,
            in_array: b.in_array,
            gzip: self.gzip,
            read_error: match b.kind {
                BreakKind::UnterminatedArray => None,
                BreakKind::Read(e) => Some(e.to_string()),
            },
        })
    }
}

/// Runs `op` until it succeeds, waiting out transient errors (Redis
/// restarting, a dropped connection) with backoff from 100 ms to 5 s;
/// `None` once `cancel` is set. Other errors end it.
async fn retrying<T, F, Fut>(cancel: &AtomicBool, mut op: F) -> Result<Option<T>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut delay = Duration::from_millis(100);
    let mut since: Option<std::time::Instant> = None;
    loop {
        match op().await {
            Ok(v) => {
                if let Some(t) = since {
                    tracing::info!(
                        after_s = t.elapsed().as_secs(),
                        "Redis answers again; ingest goes on"
                    );
                }
                return Ok(Some(v));
            }
            Err(e) if e.is_transient() => {
                let t = *since.get_or_insert_with(std::time::Instant::now);
                tracing::warn!(error = %e, waiting_s = t.elapsed().as_secs(), "Redis unreachable; ingest retries in {delay:?}");
            }
            Err(e) => return Err(e),
        }
        let until = std::time::Instant::now() + delay;
        while std::time::Instant::now() < until {
            if cancel.load(Ordering::Relaxed) {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Where the ingest of a source starts: Redis's offset, unless it is
/// behind the position PostgreSQL committed (`committed`: where to ask;
/// `None`: Redis alone decides).
async fn start_plan(
    queue: &Queue,
    committed: Option<&Db>,
    field: &str,
    id: &str,
    cancel: &AtomicBool,
) -> Result<Option<dvmtop_core::source::Plan>> {
    let Some(redis) = retrying(cancel, || queue.offset(field)).await? else {
        return Ok(None);
    };
    let done = match committed {
        Some(db) => match retrying(cancel, || db.committed_position(id)).await? {
            Some(n) => n,
            None => return Ok(None),
        },
        None => 0,
    };
    Ok(Some(dvmtop_core::source::plan(redis, done)))
}

/// Ingests one source to the end (or until `cancel`). Already-handled
/// elements of an interrupted earlier run are skipped; after Redis lost
/// the queue, the elements PostgreSQL committed (`committed`: its
/// positions) are counted again but not queued.
pub async fn ingest(
    queue: &Queue,
    committed: Option<&Db>,
    source: &Source,
    cfg: &IngestConfig,
    cancel: &Arc<AtomicBool>,
) -> Result<IngestTotals> {
    let field = source.offset_field()?;
    let id = (!field.is_empty()).then(|| dvmtop_core::source::id(&field));
    let plan = match &id {
        None => dvmtop_core::source::plan(0, 0),
        Some(id) => match start_plan(queue, committed, &field, id, cancel).await? {
            Some(p) => p,
            None => return Ok(IngestTotals::default()),
        },
    };
    if plan.recovers() {
        tracing::warn!(
            source = %source.label(),
            redis = plan.skip,
            committed = plan.count_until,
            "Redis lost this source's queue position: counting the elements PostgreSQL committed, queueing from there"
        );
    }
    let skip = plan.skip;
    let input = source.open()?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let reader_cfg = cfg.clone();
    let origin = Origin {
        label: source.label(),
        gzip: source.is_gzip(),
    };
    let reader =
        tokio::task::spawn_blocking(move || read_chunks(input, origin, plan, id, reader_cfg, tx));
    let mut totals = IngestTotals {
        skipped: skip,
        ..Default::default()
    };
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk?;
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        // Back-pressure for what is queued (a counted chunk adds nothing).
        if !chunk.count_only {
            loop {
                match retrying(cancel, || queue.depth()).await? {
                    None => return Ok(totals),
                    Some(d) if d > cfg.high_water => {
                        tokio::time::sleep(Duration::from_millis(50)).await
                    }
                    Some(_) => break,
                }
            }
        }
        if chunk.read == 0 && chunk.offset <= skip {
            continue;
        }
        // Retried until Redis answers: the script skips a chunk whose
        // offset is already recorded, so a retry after a lost reply does
        // not enqueue or count it twice.
        let span = ChunkSpan {
            field: &field,
            start: chunk.offset - chunk.read,
            end: chunk.offset,
            read: chunk.read,
            enqueue: !chunk.count_only,
        };
        let write = || queue.ingest_chunk(span, &chunk.accepted, &chunk.refused);
        let Some(out) = retrying(cancel, write).await? else {
            return Ok(totals);
        };
        let out = match out {
            Ok(out) => out,
            Err(lost) => {
                let e = Error::QueueLost(format!(
                    "{}: Redis lost this input's queue position (it has element {}, this ingest was at element {}: Redis restarted without its data, or was flushed); ingest stops rather than queue on behind what was lost. Run it again with --resume: it queues again from the last element PostgreSQL committed",
                    source.label(),
                    lost.redis,
                    span.start
                ));
                // Said at once (a service reports ingest's end only when
                // it stops).
                tracing::error!(error = %e, "ingest stopped");
                return Err(e);
            }
        };
        if chunk.count_only {
            totals.recounted += chunk.read;
        }
        totals.read += chunk.read;
        totals.accepted += out.accepted;
        totals.duplicates += out.duplicates;
        totals.refused += chunk.refused.len() as u64;
    }
    drop(rx);
    let _ = reader.await;
    Ok(totals)
}
