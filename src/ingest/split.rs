//! Splits an input stream into elements while holding at most one element
//! (plus the reader's buffer): JSONL lines, or the items of top-level JSON
//! arrays (DVMDash's historical dumps), streamed.
//!
//! The array splitter does not parse JSON. It tracks just enough — nesting
//! depth, whether it is inside a string, escapes — to find the commas and
//! the closing bracket at depth zero that end elements. Each element's raw
//! text then goes through the same validation as a JSONL line, so a garbage
//! element is one `malformed` dead letter and its neighbours are not
//! affected. (Reading the whole array first, as before, held the file in
//! memory and turned one bad element into the loss of all the others.)
//!
//! An element is complete only once its terminator has been read: `,` or
//! `]` in an array; the newline — or a clean end of input — for a line.
//! When the input breaks (an array that never closes, or a reader error
//! such as corrupt or cut-off gzip data), every complete element has been
//! handed out first, then a [`Break`] says where the input stopped; the
//! element cut there is not handed out.

use std::io::{BufRead, ErrorKind};

/// Why the input stopped before its proper end.
#[derive(Debug)]
pub enum BreakKind {
    /// The input ends inside a JSON array (no closing `]`).
    UnterminatedArray,
    /// The reader failed (e.g. corrupt or truncated gzip data).
    Read(std::io::Error),
}

/// Where and why the input broke.
#[derive(Debug)]
pub struct Break {
    /// Bytes of (decompressed) input read before it broke.
    pub offset: u64,
    /// Whether the input was a JSON array (else JSONL).
    pub(crate) in_array: bool,
    pub kind: BreakKind,
}

/// Where the splitter is in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing but whitespace read so far: the first other byte decides.
    Start,
    /// JSONL: one element per line, to the end of the input.
    Lines,
    /// Inside a top-level array.
    Array,
    /// After a top-level array's closing `]`.
    AfterArray,
    /// The input ended or broke: nothing more comes.
    Done,
}

/// The array scanner's state (kept across buffer refills).
#[derive(Debug, Clone, Copy, Default)]
struct Scan {
    /// Open `[`/`{` inside the current element.
    depth: u32,
    in_string: bool,
    /// The previous byte was a backslash inside a string.
    escaped: bool,
    /// The current element has a non-whitespace byte.
    started: bool,
    /// This array had a comma: a `]` then ends an element even when it is
    /// empty (`[1,]` is two elements, the second malformed).
    after_comma: bool,
}

/// How an array element ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delim {
    Comma,
    Close,
}

/// Elements over a buffered reader; see the module documentation.
pub struct Elements<R> {
    input: R,
    mode: Mode,
    scan: Scan,
    /// Bytes consumed from `input`.
    pos: u64,
    /// The current element (or line).
    buf: Vec<u8>,
    /// The input is a JSON array (decided by its first non-blank byte).
    array: bool,
}

/// An element buffer larger than this is freed instead of reused, so one
/// huge element does not pin its memory for the rest of the input.
const KEEP_BUF: usize = 4 << 20;

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// `b` without leading and trailing JSON whitespace.
fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&c| !is_ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|&c| !is_ws(c)).map_or(start, |e| e + 1);
    &b[start..end]
}

impl<R: BufRead> Elements<R> {
    pub fn new(input: R) -> Self {
        Elements {
            input,
            mode: Mode::Start,
            scan: Scan::default(),
            pos: 0,
            buf: Vec::new(),
            array: false,
        }
    }

    /// The next element's raw bytes, surrounding whitespace removed;
    /// `Ok(None)` at the clean end of the input. After an error or the end,
    /// every call returns `Ok(None)`.
    pub fn next_element(&mut self) -> Result<Option<&[u8]>, Break> {
        loop {
            match self.mode {
                Mode::Done => return Ok(None),
                Mode::Start => match self.skip_ws()? {
                    None => self.mode = Mode::Done,
                    Some(b'[') => {
                        self.array = true;
                        self.open_array();
                    }
                    Some(_) => self.mode = Mode::Lines,
                },
                Mode::Lines => {
                    if !self.read_line()? {
                        self.mode = Mode::Done;
                    } else if !trim(&self.buf).is_empty() {
                        return Ok(Some(trim(&self.buf)));
                    }
                }
                Mode::Array => {
                    let delim = self.scan_array()?;
                    let ended = self.scan;
                    self.scan = Scan {
                        after_comma: true,
                        ..Scan::default()
                    };
                    if delim == Delim::Close {
                        self.mode = Mode::AfterArray;
                        if !ended.started && !ended.after_comma {
                            continue; // `[]`: no element
                        }
                    }
                    return Ok(Some(trim(&self.buf)));
                }
                // Concatenated dumps (`cat a.json b.json`) are arrays one
                // after the other; anything else after an array is read a
                // line at a time, each line one (most likely malformed)
                // element, so nothing is skipped silently.
                Mode::AfterArray => match self.skip_ws()? {
                    None => self.mode = Mode::Done,
                    Some(b'[') => self.open_array(),
                    Some(_) => {
                        if self.read_line()? {
                            return Ok(Some(trim(&self.buf)));
                        }
                    }
                },
            }
        }
    }

    /// Consumes a top-level `[` (already peeked).
    fn open_array(&mut self) {
        self.input.consume(1);
        self.pos += 1;
        self.scan = Scan::default();
        self.mode = Mode::Array;
    }

    /// Marks the input broken at the current offset.
    fn broke(&mut self, kind: BreakKind) -> Break {
        self.mode = Mode::Done;
        Break {
            offset: self.pos,
            in_array: self.array,
            kind,
        }
    }

    fn clear_buf(&mut self) {
        if self.buf.capacity() > KEEP_BUF {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
    }

    /// Skips whitespace; the next byte (not consumed), `None` at the end.
    fn skip_ws(&mut self) -> Result<Option<u8>, Break> {
        loop {
            let avail = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.broke(BreakKind::Read(e))),
            };
            if avail.is_empty() {
                return Ok(None);
            }
            let (n, next) = match avail.iter().position(|&b| !is_ws(b)) {
                Some(i) => (i, Some(avail[i])),
                None => (avail.len(), None),
            };
            self.input.consume(n);
            self.pos += n as u64;
            if next.is_some() {
                return Ok(next);
            }
        }
    }

    /// Reads one line into `buf` (newline included). `false`: the input
    /// ended before any byte. A line cut by a read error is dropped.
    fn read_line(&mut self) -> Result<bool, Break> {
        self.clear_buf();
        match self.input.read_until(b'\n', &mut self.buf) {
            Ok(n) => {
                self.pos += n as u64;
                Ok(n > 0)
            }
            // The bytes read before the error are in `buf`.
            Err(e) => {
                self.pos += self.buf.len() as u64;
                self.buf.clear();
                Err(self.broke(BreakKind::Read(e)))
            }
        }
    }

    /// Reads the current array element into `buf`, up to and including
    /// its terminator (which is consumed but not kept).
    fn scan_array(&mut self) -> Result<Delim, Break> {
        self.clear_buf();
        loop {
            let avail = match self.input.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.broke(BreakKind::Read(e))),
            };
            if avail.is_empty() {
                return Err(self.broke(BreakKind::UnterminatedArray));
            }
            let found = scan(&mut self.scan, avail);
            let (keep, used) = match found {
                Some((i, _)) => (i, i + 1),
                None => (avail.len(), avail.len()),
            };
            self.buf.extend_from_slice(&avail[..keep]);
            self.input.consume(used);
            self.pos += used as u64;
            if let Some((_, delim)) = found {
                return Ok(delim);
            }
        }
    }
}

/// Advances the scanner over `bytes`; the index of the first delimiter at
/// depth zero outside strings, if any, and which one it is.
fn scan(st: &mut Scan, bytes: &[u8]) -> Option<(usize, Delim)> {
    let mut i = 0;
    while i < bytes.len() {
        if st.in_string {
            if st.escaped {
                st.escaped = false;
                i += 1;
                continue;
            }
            // Inside a string only a quote or a backslash matters: skip
            // to the next one.
            // (memchr: vectorised; a byte loop here made array input
            // ~40 % slower than JSONL once parsing ran on every core.)
            match memchr::memchr2(b'"', b'\\', &bytes[i..]) {
                None => return None,
                Some(k) => {
                    i += k;
                    if bytes[i] == b'\\' {
                        st.escaped = true;
                    } else {
                        st.in_string = false;
                    }
                }
            }
            i += 1;
            continue;
        }
        match bytes[i] {
            b'"' => {
                st.in_string = true;
                st.started = true;
            }
            b'[' | b'{' => {
                st.depth += 1;
                st.started = true;
            }
            b']' if st.depth == 0 => return Some((i, Delim::Close)),
            b',' if st.depth == 0 => return Some((i, Delim::Comma)),
            // A stray `}` at depth zero is just part of a bad element.
            b']' | b'}' if st.depth > 0 => st.depth -= 1,
            b if is_ws(b) => {}
            _ => st.started = true,
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every element and how the input ended, reading through a tiny
    /// buffer so elements straddle refills.
    fn split(input: &str, cap: usize) -> (Vec<String>, Option<(u64, bool)>) {
        let mut e = Elements::new(std::io::BufReader::with_capacity(cap, input.as_bytes()));
        let mut out = Vec::new();
        loop {
            match e.next_element() {
                Ok(Some(el)) => out.push(String::from_utf8_lossy(el).into_owned()),
                Ok(None) => return (out, None),
                Err(b) => {
                    let unterminated = matches!(b.kind, BreakKind::UnterminatedArray);
                    return (out, Some((b.offset, unterminated)));
                }
            }
        }
    }

    #[test]
    fn arrays_split_at_top_level_commas_only() {
        for cap in [1, 2, 3, 7, 64, 8192] {
            let (els, end) = split(r#" [ {"a":[1,2],"b":"],\"["} , 3,"x,]" ,[[]],{}] "#, cap);
            assert_eq!(
                els,
                [r#"{"a":[1,2],"b":"],\"["}"#, "3", r#""x,]""#, "[[]]", "{}"],
                "cap {cap}"
            );
            assert!(end.is_none());
        }
    }

    #[test]
    fn empty_arrays_empty_slots_and_concatenated_arrays() {
        assert_eq!(split("[]", 4), (vec![], None));
        assert_eq!(split(" [ \n ] ", 4), (vec![], None));
        assert_eq!(split("[1,]", 4).0, ["1", ""]);
        assert_eq!(split("[,]", 4).0, ["", ""]);
        assert_eq!(split("[1][2,3]\n[]", 4).0, ["1", "2", "3"]);
        assert_eq!(split("[1]\n{oops}\n", 4).0, ["1", "{oops}"]);
        assert_eq!(split("", 4), (vec![], None));
        assert_eq!(split(" \n\t", 4), (vec![], None));
    }

    #[test]
    fn a_cut_array_hands_out_the_complete_elements_then_breaks() {
        let cut = r#"[{"a":1}, {"b":"2"}, {"c":"#;
        let (els, end) = split(cut, 5);
        assert_eq!(els, [r#"{"a":1}"#, r#"{"b":"2"}"#]);
        assert_eq!(end, Some((cut.len() as u64, true)), "where the input ends");
        // A complete last element without its `]` is not complete.
        let (els, end) = split("[1, 2", 3);
        assert_eq!(els, ["1"]);
        assert_eq!(end, Some((5, true)));
    }

    #[test]
    fn lines_skip_blank_ones_and_keep_a_last_line_without_newline() {
        let (els, end) = split("a\n\n  \r\nb c\r\nlast", 3);
        assert_eq!(els, ["a", "b c", "last"]);
        assert!(end.is_none());
        // A JSONL file whose first line is garbage stays JSONL.
        assert_eq!(split("x\n[1,2]\n", 3).0, ["x", "[1,2]"]);
    }

    /// A reader that fails after `n` bytes.
    struct FailAt<'a> {
        data: &'a [u8],
        n: usize,
    }

    impl std::io::Read for FailAt<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.n == 0 {
                return Err(std::io::Error::other("corrupt deflate stream"));
            }
            let k = out.len().min(self.n).min(self.data.len());
            out[..k].copy_from_slice(&self.data[..k]);
            self.data = &self.data[k..];
            self.n -= k;
            Ok(k)
        }
    }

    #[test]
    fn a_read_error_drops_the_cut_line_and_reports_the_offset() {
        let data = b"one\ntwo\nthr";
        let r = std::io::BufReader::with_capacity(4, FailAt { data, n: 11 });
        let mut e = Elements::new(r);
        assert_eq!(e.next_element().unwrap(), Some(&b"one"[..]));
        assert_eq!(e.next_element().unwrap(), Some(&b"two"[..]));
        let b = e.next_element().unwrap_err();
        assert_eq!(b.offset, 11);
        assert!(!b.in_array);
        assert!(matches!(b.kind, BreakKind::Read(_)));
        assert_eq!(e.next_element().unwrap(), None);
    }
}
