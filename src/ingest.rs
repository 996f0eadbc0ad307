//! Sources → validation → Redis. Files (JSONL, or a JSON array as in
//! DVMDash's historical dumps), `-` for stdin, gzip when the name ends in
//! `.gz`. Reading and validation run on a blocking thread, one chunk ahead
//! of the Redis writes; each chunk is enqueued atomically together with the
//! source's resume offset, so an interrupted ingest resumes exactly where
//! it stopped.

use crate::error::{Error, Result};
use crate::event::{self, Validation};
use crate::queue::{Accepted, Queue, Refused};
use crate::record::Record;
use dvmtop_core::day_of;
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

    pub fn label(&self) -> String {
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

    fn open(&self) -> Result<Box<dyn BufRead + Send>> {
        let raw: Box<dyn Read + Send> = match self {
            Source::Stdin => Box::new(std::io::stdin()),
            Source::Path(p) => Box::new(std::fs::File::open(p).map_err(|source| Error::Io {
                path: p.display().to_string(),
                source,
            })?),
        };
        let gz = matches!(self, Source::Path(p) if p.extension().is_some_and(|e| e == "gz"));
        Ok(if gz {
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
    pub skipped: u64,
}

struct Chunk {
    offset: u64,
    read: u64,
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
        Err(reason) => Err(Refused {
            reason: reason.as_str(),
            raw: raw.to_owned(),
        }),
    }
}

/// Reads elements (lines, or array items) and hands out validated chunks.
fn read_chunks(
    mut input: Box<dyn BufRead + Send>,
    skip: u64,
    cfg: IngestConfig,
    tx: tokio::sync::mpsc::Sender<Result<Chunk>>,
) {
    let mut chunk = Chunk {
        offset: 0,
        read: 0,
        accepted: Vec::new(),
        refused: Vec::new(),
    };
    let mut index: u64 = 0;
    let mut now = chrono::Utc::now().timestamp();
    let mut push = |raw: &str, chunk: &mut Chunk, index: &mut u64| -> bool {
        *index += 1;
        if *index <= skip {
            return true;
        }
        chunk.read += 1;
        match classify_line(raw, &cfg.validation, now) {
            Ok(a) => chunk.accepted.push(a),
            Err(r) => chunk.refused.push(r),
        }
        if (chunk.read as usize) >= cfg.chunk {
            chunk.offset = *index;
            let full = std::mem::replace(
                chunk,
                Chunk {
                    offset: 0,
                    read: 0,
                    accepted: Vec::new(),
                    refused: Vec::new(),
                },
            );
            now = chrono::Utc::now().timestamp();
            return tx.blocking_send(Ok(full)).is_ok();
        }
        true
    };
    // Peek at the first non-blank byte: '[' means a JSON array.
    let first = loop {
        match input.fill_buf() {
            Ok([]) => break None,
            Ok(buf) => match buf.iter().position(|b| !b.is_ascii_whitespace()) {
                Some(i) => {
                    let b = buf[i];
                    input.consume(i);
                    break Some(b);
                }
                None => {
                    let n = buf.len();
                    input.consume(n);
                }
            },
            Err(e) => {
                let _ = tx.blocking_send(Err(Error::Io {
                    path: "input".into(),
                    source: e,
                }));
                return;
            }
        }
    };
    if first == Some(b'[') {
        let mut text = String::new();
        if let Err(e) = input.read_to_string(&mut text) {
            let _ = tx.blocking_send(Err(Error::Io {
                path: "input".into(),
                source: e,
            }));
            return;
        }
        match serde_json::from_str::<Vec<&serde_json::value::RawValue>>(&text) {
            Ok(items) => {
                for item in items {
                    if !push(item.get(), &mut chunk, &mut index) {
                        return;
                    }
                }
            }
            // Not a valid array: the whole input is one malformed element.
            Err(_) => {
                if !push(&text, &mut chunk, &mut index) {
                    return;
                }
            }
        }
    } else if first.is_some() {
        let mut line = Vec::new();
        loop {
            line.clear();
            match input.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&line);
                    let text = text.trim();
                    if text.is_empty() {
                        continue;
                    }
                    if !push(text, &mut chunk, &mut index) {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(Error::Io {
                        path: "input".into(),
                        source: e,
                    }));
                    return;
                }
            }
        }
    }
    chunk.offset = index;
    let _ = tx.blocking_send(Ok(chunk));
}

/// Ingests one source to the end (or until `cancel`). Already-handled
/// elements of an interrupted earlier run are skipped.
pub async fn ingest(
    queue: &Queue,
    source: &Source,
    cfg: &IngestConfig,
    cancel: &Arc<AtomicBool>,
) -> Result<IngestTotals> {
    let field = source.offset_field()?;
    let skip = if field.is_empty() {
        0
    } else {
        queue.offset(&field).await?
    };
    let input = source.open()?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let reader_cfg = cfg.clone();
    let reader = tokio::task::spawn_blocking(move || read_chunks(input, skip, reader_cfg, tx));
    let mut totals = IngestTotals {
        skipped: skip,
        ..Default::default()
    };
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk.map_err(|e| match e {
            Error::Io { source: s, .. } => Error::Io {
                path: source.label(),
                source: s,
            },
            other => other,
        })?;
        if cancel.load(Ordering::Relaxed) {
            break;
        }
        while queue.depth().await? > cfg.high_water {
            if cancel.load(Ordering::Relaxed) {
                return Ok(totals);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if chunk.read == 0 && chunk.offset <= skip {
            continue;
        }
        let out = queue
            .ingest_chunk(
                &field,
                chunk.offset,
                chunk.read,
                &chunk.accepted,
                &chunk.refused,
            )
            .await?;
        totals.read += chunk.read;
        totals.accepted += out.accepted;
        totals.duplicates += out.duplicates;
        totals.refused += chunk.refused.len() as u64;
    }
    drop(rx);
    let _ = reader.await;
    Ok(totals)
}
