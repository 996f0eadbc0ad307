//! Job analytics (pure): request → result matching and the latency
//! samples it yields (issue 14; README "Job analytics").
//!
//! A result answers the request named by its first `e` tag when that
//! request was processed and `|result − request| ≤ horizon`; its latency
//! is `max(0, result − request)` seconds. Per (DVM, request) only the
//! earliest result counts, per request overall the earliest of any DVM.
//!
//! The [`Matcher`] keeps exactly what makes that independent of arrival
//! order: every processed request (with the earliest result of each DVM so
//! far) and every result whose request has not been processed (yet). A
//! result that arrives before its request waits for it; a late result that
//! is earlier than the one counted replaces it. Every change to a sample
//! set comes out as a [`Delta`] (−1 for the sample replaced, +1 for the
//! new one), which the month figures ([`MonthJobs`], exact) and the window
//! histograms ([`bucket_of`], approximate) consume. Because the final
//! state depends only on the set of events applied, never on their order,
//! replaying the persisted facts ([`encode_request`], [`encode_result`])
//! in any order rebuilds it exactly — that is how a restart resumes.

use crate::keys::{FastMap, Pubkey};
use crate::role::JobKind;
use crate::time::YearMonth;
use chrono::NaiveDate;
use std::collections::BTreeMap;

/// The default matching horizon: 7 days.
pub const DEFAULT_HORIZON: i64 = 7 * 86_400;

/// The longest horizon (`--job-horizon` is capped here): 366 days.
pub const MAX_HORIZON: i64 = 366 * 86_400;

/// A NIP-90 feedback (kind 7000) `status` tag value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FeedbackStatus {
    PaymentRequired = 0,
    Processing = 1,
    Error = 2,
    Success = 3,
    Partial = 4,
}

impl FeedbackStatus {
    pub const ALL: [FeedbackStatus; 5] = [
        FeedbackStatus::PaymentRequired,
        FeedbackStatus::Processing,
        FeedbackStatus::Error,
        FeedbackStatus::Success,
        FeedbackStatus::Partial,
    ];

    /// The tag value (and the key in `feedback_status`).
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackStatus::PaymentRequired => "payment-required",
            FeedbackStatus::Processing => "processing",
            FeedbackStatus::Error => "error",
            FeedbackStatus::Success => "success",
            FeedbackStatus::Partial => "partial",
        }
    }

    /// A `status` tag value; anything else is not counted.
    pub fn parse(s: &str) -> Option<FeedbackStatus> {
        FeedbackStatus::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// Whose sample set a sample belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// Per request overall: its earliest result of any DVM.
    All,
    /// Per (DVM, request): that DVM's earliest result.
    Dvm(Pubkey),
    /// Per request overall, by the request's kind.
    Kind(JobKind),
}

/// One change to a sample set: the sample of result time `at` with
/// `latency` seconds enters (`sign` = 1) or leaves (−1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delta {
    pub scope: Scope,
    pub at: i64,
    pub latency: i64,
    pub sign: i64,
}

const NO_DVM: u32 = u32::MAX;

/// A processed request and the earliest result of each DVM within the
/// horizon (the first inline: most requests get one result). Result times
/// are kept as offsets from the request (within the horizon, at most a
/// year: an `i32`), so an entry is 32 bytes — the matcher holds a month
/// and a horizon of requests.
#[derive(Debug, Clone)]
struct Req {
    t: i64,
    kind: JobKind,
    first: (u32, i32),
    rest: Option<Box<[(u32, i32)]>>,
}

impl Req {
    fn results(&self) -> impl Iterator<Item = (u32, i64)> + '_ {
        std::iter::once(self.first)
            .filter(|(d, _)| *d != NO_DVM)
            .chain(self.rest.iter().flat_map(|r| r.iter().copied()))
            .map(|(d, dt)| (d, self.t + i64::from(dt)))
    }

    fn best(&self) -> Option<i64> {
        self.results().map(|(_, t)| t).min()
    }

    /// The earliest result of `dvm` so far; sets it to `t` (within the
    /// horizon of the request) when earlier. Returns the previous one when
    /// it changed, `None` when `t` is no improvement.
    fn improve(&mut self, dvm: u32, t: i64) -> Option<Option<i64>> {
        let dt = i32::try_from(t - self.t).ok()?;
        if self.first.0 == NO_DVM {
            self.first = (dvm, dt);
            return Some(None);
        }
        let slot = if self.first.0 == dvm {
            Some(&mut self.first)
        } else {
            self.rest
                .as_mut()
                .and_then(|r| r.iter_mut().find(|(d, _)| *d == dvm))
        };
        match slot {
            Some(s) if s.1 <= dt => None,
            Some(s) => {
                let old = self.t + i64::from(s.1);
                s.1 = dt;
                Some(Some(old))
            }
            None => {
                // A boxed slice (8 bytes in the entry, not a vector's
                // 24): regrown on the rare extra DVM.
                let mut more = self.rest.take().map(Vec::from).unwrap_or_default();
                more.push((dvm, dt));
                self.rest = Some(more.into_boxed_slice());
                Some(None)
            }
        }
    }
}

/// The matching state (see the module doc).
#[derive(Debug, Clone)]
pub struct Matcher {
    horizon: i64,
    requests: FastMap<u128, Req>,
    /// Results whose request has not been processed: request key → (dvm, t).
    orphans: FastMap<u128, Vec<(u32, i64)>>,
    /// DVM public keys, interned (a result stores 4 bytes, not 32).
    dvms: Vec<Pubkey>,
    dvm_ix: FastMap<Pubkey, u32>,
}

impl Default for Matcher {
    fn default() -> Self {
        Matcher::new(DEFAULT_HORIZON)
    }
}

impl Matcher {
    /// The horizon is at most a year ([`MAX_HORIZON`]): result offsets
    /// are kept in 32 bits.
    pub fn new(horizon: i64) -> Matcher {
        Matcher {
            horizon: horizon.clamp(0, MAX_HORIZON),
            requests: FastMap::default(),
            orphans: FastMap::default(),
            dvms: Vec::new(),
            dvm_ix: FastMap::default(),
        }
    }

    /// (requests held, requests waited for by early results).
    pub fn held(&self) -> (usize, usize) {
        (self.requests.len(), self.orphans.len())
    }

    fn intern(&mut self, dvm: &Pubkey) -> u32 {
        if let Some(&i) = self.dvm_ix.get(dvm) {
            return i;
        }
        let i = self.dvms.len() as u32;
        self.dvms.push(*dvm);
        self.dvm_ix.insert(*dvm, i);
        i
    }

    fn within(&self, request: i64, result: i64) -> bool {
        (result - request).abs() <= self.horizon
    }

    /// A processed request (`key`: its id key). Results that arrived
    /// before it are matched now.
    pub fn request(&mut self, key: u128, t: i64, kind: JobKind, out: &mut impl FnMut(Delta)) {
        if self.requests.contains_key(&key) {
            return;
        }
        let mut req = Req {
            t,
            kind,
            first: (NO_DVM, 0),
            rest: None,
        };
        if let Some(early) = self.orphans.remove(&key) {
            for (dvm, at) in early {
                if self.within(t, at) {
                    req.improve(dvm, at);
                }
            }
            for (dvm, at) in req.results() {
                out(self.delta(Scope::Dvm(self.dvms[dvm as usize]), t, at, 1));
            }
            if let Some(best) = req.best() {
                out(self.delta(Scope::All, t, best, 1));
                out(self.delta(Scope::Kind(kind), t, best, 1));
            }
        }
        self.requests.insert(key, req);
    }

    /// A processed result by `dvm` at `t` naming request `of` (its first
    /// `e` tag's id key).
    pub fn result(&mut self, of: u128, dvm: &Pubkey, t: i64, out: &mut impl FnMut(Delta)) {
        let d = self.intern(dvm);
        let horizon = self.horizon;
        let Some(req) = self.requests.get_mut(&of) else {
            self.orphans.entry(of).or_default().push((d, t));
            return;
        };
        if (t - req.t).abs() > horizon {
            return;
        }
        let best = req.best();
        let Some(old) = req.improve(d, t) else {
            return;
        };
        let (q, kind) = (req.t, req.kind);
        if let Some(old) = old {
            out(self.delta(Scope::Dvm(*dvm), q, old, -1));
        }
        out(self.delta(Scope::Dvm(*dvm), q, t, 1));
        if best.is_none_or(|b| t < b) {
            for scope in [Scope::All, Scope::Kind(kind)] {
                if let Some(b) = best {
                    out(self.delta(scope, q, b, -1));
                }
                out(self.delta(scope, q, t, 1));
            }
        }
    }

    fn delta(&self, scope: Scope, request: i64, result: i64, sign: i64) -> Delta {
        Delta {
            scope,
            at: result,
            latency: (result - request).max(0),
            sign,
        }
    }

    /// Forgets requests and waiting results older than `cut` (unix
    /// seconds): nothing that can still be processed can match them.
    pub fn prune(&mut self, cut: i64) {
        self.requests.retain(|_, r| r.t >= cut);
        self.orphans.retain(|_, v| {
            v.retain(|(_, t)| *t >= cut);
            !v.is_empty()
        });
        self.requests.shrink_to_fit();
        self.orphans.shrink_to_fit();
    }
}

/// Where matching state can be dropped once `open` is the oldest month
/// not rolled over: the start of the day holding `start(open) − horizon`.
/// Events before `open` are ignored, so no request older than that can be
/// matched by a result still to come, and no result older than that can
/// answer a request still to come. (Day-aligned, so the facts stored per
/// day and the memory are cut at the same point.)
pub fn prune_cut(open: YearMonth, horizon: i64) -> i64 {
    let t = crate::time::day_start(open.start()) - horizon.max(0);
    t - t.rem_euclid(86_400)
}

/// A multiset of latencies (seconds), exact. Hashed, not ordered: a
/// sample is added per result, a percentile read only at a rollover or a
/// preview (which sorts the distinct values then).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hist {
    n: i64,
    counts: FastMap<i64, i64>,
}

impl Hist {
    pub fn add(&mut self, latency: i64, sign: i64) {
        let c = self.counts.entry(latency).or_default();
        *c += sign;
        if *c == 0 {
            self.counts.remove(&latency);
        }
        self.n += sign;
    }

    pub fn len(&self) -> i64 {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The value at sorted index `i` (0-based); `None` without samples.
    fn at(&self, i: i64) -> Option<i64> {
        if self.n <= 0 {
            return None;
        }
        let mut values: Vec<(i64, i64)> = self.counts.iter().map(|(v, c)| (*v, *c)).collect();
        values.sort_unstable();
        let mut seen = 0;
        for (v, c) in values {
            seen += c;
            if seen > i {
                return Some(v);
            }
        }
        None
    }

    /// Lower median: sorted index ⌊(n−1)/2⌋; `None` without samples.
    pub fn median(&self) -> Option<i64> {
        self.at((self.n - 1) / 2)
    }

    /// Nearest rank p90: sorted index ⌈0.9·n⌉ − 1; `None` without samples.
    pub fn p90(&self) -> Option<i64> {
        self.at(p90_index(self.n))
    }
}

/// ⌈0.9·n⌉ − 1 in integers (n ≥ 1).
pub fn p90_index(n: i64) -> i64 {
    (9 * n + 9) / 10 - 1
}

/// A month's exact job figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MonthJobs {
    pub all: Hist,
    pub dvms: FastMap<Pubkey, Hist>,
    pub kinds: FastMap<JobKind, Hist>,
}

impl MonthJobs {
    pub fn add(&mut self, d: &Delta) {
        match d.scope {
            Scope::All => self.all.add(d.latency, d.sign),
            Scope::Dvm(pk) => self.dvms.entry(pk).or_default().add(d.latency, d.sign),
            Scope::Kind(k) => self.kinds.entry(k).or_default().add(d.latency, d.sign),
        }
    }
}

/// The matcher and the exact figures of the months not rolled over.
#[derive(Debug, Clone, Default)]
pub struct Jobs {
    pub matcher: Matcher,
    months: BTreeMap<YearMonth, MonthJobs>,
    /// Months before this are rolled over: their figures are frozen.
    open: Option<YearMonth>,
    /// The window histograms of the days results can still land on (the
    /// shell drops the closed months' rows once it has written them:
    /// [`Jobs::open_start`]).
    pub hist: HistBook,
}

impl Jobs {
    pub fn new(horizon: i64, open: Option<YearMonth>) -> Jobs {
        Jobs {
            matcher: Matcher::new(horizon),
            months: BTreeMap::new(),
            open,
            hist: HistBook::default(),
        }
    }

    /// Applies a delta to its month (unless that month is closed) and
    /// hands it on (the window histograms take every delta).
    fn take(
        months: &mut BTreeMap<YearMonth, MonthJobs>,
        hist: &mut HistBook,
        open: Option<YearMonth>,
        d: Delta,
    ) {
        let day = crate::time::day_of(d.at);
        let m = YearMonth::of(day);
        // A result dated in a month already rolled over changes nothing
        // (README "Job analytics", the edge left as is).
        if open.is_none_or(|o| m >= o) {
            months.entry(m).or_default().add(&d);
            hist.add(day, &d);
        }
    }

    /// A processed request.
    pub fn request(&mut self, key: u128, t: i64, kind: JobKind) {
        let Jobs {
            matcher,
            months,
            open,
            hist,
        } = self;
        matcher.request(key, t, kind, &mut |d| Jobs::take(months, hist, *open, d));
    }

    /// A processed result naming request `of` (see [`Jobs::request`]).
    pub fn result(&mut self, of: u128, dvm: &Pubkey, t: i64) {
        let Jobs {
            matcher,
            months,
            open,
            hist,
        } = self;
        matcher.result(of, dvm, t, &mut |d| Jobs::take(months, hist, *open, d));
    }

    /// The first day a result can still be counted on (the open month's
    /// start), if a month is open.
    pub fn open_start(&self) -> Option<NaiveDate> {
        self.open.map(YearMonth::start)
    }

    /// The exact figures of month `m` so far.
    pub fn month(&self, m: YearMonth) -> Option<&MonthJobs> {
        self.months.get(&m)
    }

    /// `m` is rolled over: its figures are frozen (and dropped here), and
    /// the state nothing can match any more is forgotten.
    pub fn close(&mut self, m: YearMonth) {
        let next = m.next();
        self.open = Some(self.open.map_or(next, |o| o.max(next)));
        self.months.retain(|k, _| *k > m);
        if let Some(o) = self.open {
            self.matcher.prune(prune_cut(o, self.matcher.horizon));
        }
    }
}

/// One histogram row's cells: (UTC hour, bucket, count), sorted by hour
/// and bucket, no zero counts.
pub type HistCells = Vec<(u8, i16, i32)>;

/// The window response-time histograms (`job_day_stats`): one row per
/// (day of the result, scope), cells by hour and [`bucket_of`]. The whole
/// rows of the days a result can still be dated on (the open month and
/// later) are kept here, so a commit writes each changed row whole — no
/// read-modify-write in PostgreSQL, and the same rows whatever the commit
/// split. A row's content depends only on the deltas applied, so a crash
/// that replays the same queue rebuilds the same rows.
#[derive(Debug, Clone, Default)]
pub struct HistBook {
    /// Cells keyed `hour << 16 | bucket` (buckets are never negative, so
    /// the key orders as (hour, bucket)); a day's overall row has
    /// thousands of cells, too many for a sorted vector's inserts.
    rows: FastMap<(NaiveDate, Scope), HistRow>,
}

/// A row's cells and whether it changed since the last commit took it.
#[derive(Debug, Clone, Default)]
struct HistRow {
    cells: FastMap<u32, i32>,
    dirty: bool,
}

fn sorted(cells: &FastMap<u32, i32>) -> HistCells {
    let mut v: Vec<(u32, i32)> = cells.iter().map(|(k, n)| (*k, *n)).collect();
    v.sort_unstable();
    v.into_iter()
        .map(|(k, n)| ((k >> 16) as u8, (k & 0xffff) as i16, n))
        .collect()
}

fn cell_key(hour: u8, bucket: i16) -> u32 {
    u32::from(hour) << 16 | u32::from(bucket.max(0) as u16)
}

impl HistBook {
    pub fn add(&mut self, day: NaiveDate, d: &Delta) {
        let hour = (d.at.rem_euclid(86_400) / 3600) as u8;
        let key = cell_key(hour, bucket_of(d.latency));
        let row = self.rows.entry((day, d.scope)).or_default();
        row.dirty = true;
        let c = row.cells.entry(key).or_default();
        *c += d.sign as i32;
        if *c == 0 {
            row.cells.remove(&key);
        }
    }

    /// A row's cells, sorted by (hour, bucket).
    pub fn get(&self, day: NaiveDate, scope: &Scope) -> HistCells {
        self.rows
            .get(&(day, *scope))
            .map_or_else(Vec::new, |r| sorted(&r.cells))
    }

    /// The rows changed since the last call, whole and sorted by key (what
    /// a commit writes); they count as unchanged afterwards.
    pub fn take_dirty(&mut self) -> Vec<(NaiveDate, Scope, HistCells)> {
        let mut out: Vec<(NaiveDate, Scope, HistCells)> = self
            .rows
            .iter_mut()
            .filter(|(_, r)| r.dirty)
            .map(|((d, s), r)| {
                r.dirty = false;
                (*d, *s, sorted(&r.cells))
            })
            .collect();
        out.sort_unstable_by_key(|a| (a.0, a.1));
        out
    }

    /// A stored row (start-up).
    pub fn insert(&mut self, day: NaiveDate, scope: Scope, cells: HistCells) {
        let cells = cells
            .into_iter()
            .map(|(h, b, n)| (cell_key(h, b), n))
            .collect();
        self.rows.insert(
            (day, scope),
            HistRow {
                cells,
                dirty: false,
            },
        );
    }

    pub fn forget_before(&mut self, day: NaiveDate) {
        self.rows.retain(|(d, _), _| *d >= day);
    }

    /// Every row, sorted cells (tests compare them).
    pub fn rows(&self) -> Vec<((NaiveDate, Scope), HistCells)> {
        self.rows
            .keys()
            .map(|(d, s)| ((*d, *s), self.get(*d, s)))
            .collect()
    }
}

/// A row's cells as stored (`job_day_stats.cells`): 7 bytes each, hour,
/// bucket and count big-endian.
pub fn encode_cells(cells: &[(u8, i16, i32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(cells.len() * HIST_CELL);
    for (h, b, n) in cells {
        out.push(*h);
        out.extend_from_slice(&b.to_be_bytes());
        out.extend_from_slice(&n.to_be_bytes());
    }
    out
}

pub const HIST_CELL: usize = 7;

/// Decodes stored cells; `None` if the blob is not whole cells.
pub fn decode_cells(blob: &[u8]) -> Option<HistCells> {
    decode_all(blob, HIST_CELL, |c| {
        Some((
            c[0],
            i16::from_be_bytes(c[1..3].try_into().ok()?),
            i32::from_be_bytes(c[3..7].try_into().ok()?),
        ))
    })
}

/// A processed request as stored in `job_facts`: id key, `created_at`,
/// kind (28 bytes).
pub fn encode_request(buf: &mut Vec<u8>, key: u128, t: i64, kind: JobKind) {
    buf.extend_from_slice(&key.to_be_bytes());
    buf.extend_from_slice(&t.to_be_bytes());
    buf.extend_from_slice(&kind.0.to_be_bytes());
}

pub const REQUEST_FACT: usize = 28;
pub const RESULT_FACT: usize = 56;

/// A processed result as stored in `job_facts`: the id key of the request
/// it names, the DVM, `created_at` (56 bytes).
pub fn encode_result(buf: &mut Vec<u8>, of: u128, dvm: &Pubkey, t: i64) {
    buf.extend_from_slice(&of.to_be_bytes());
    buf.extend_from_slice(dvm);
    buf.extend_from_slice(&t.to_be_bytes());
}

/// Splits a blob into `size`-byte records decoded by `one`; `None` if
/// the blob is not whole records or a record does not decode.
fn decode_all<T>(blob: &[u8], size: usize, one: impl Fn(&[u8]) -> Option<T>) -> Option<Vec<T>> {
    if !blob.len().is_multiple_of(size) {
        return None;
    }
    blob.chunks_exact(size).map(one).collect()
}

/// Decodes request facts; `None` if the blob is not whole facts.
pub fn decode_requests(blob: &[u8]) -> Option<Vec<(u128, i64, JobKind)>> {
    decode_all(blob, REQUEST_FACT, |c| {
        Some((
            u128::from_be_bytes(c[0..16].try_into().ok()?),
            i64::from_be_bytes(c[16..24].try_into().ok()?),
            JobKind(u32::from_be_bytes(c[24..28].try_into().ok()?)),
        ))
    })
}

/// Decodes result facts; `None` if the blob is not whole facts.
pub fn decode_results(blob: &[u8]) -> Option<Vec<(u128, Pubkey, i64)>> {
    decode_all(blob, RESULT_FACT, |c| {
        Some((
            u128::from_be_bytes(c[0..16].try_into().ok()?),
            c[16..48].try_into().ok()?,
            i64::from_be_bytes(c[48..56].try_into().ok()?),
        ))
    })
}

/// Window histogram buckets: latencies below [`EXACT_BELOW`] seconds have
/// a bucket each; above, bucket boundaries grow by [`GROWTH`] (1 %), and a
/// bucket reports its midpoint rounded to whole seconds. The reported
/// value of a sample is then within 0.5 % (half a bucket) + 0.4 % (the
/// rounding, at ≥ 128 s) < 1 % of its true value — the bound on every
/// window percentile.
pub const EXACT_BELOW: i64 = 128;
pub const GROWTH: f64 = 1.01;

pub fn bucket_of(latency: i64) -> i16 {
    let x = latency.max(0);
    if x < EXACT_BELOW {
        return x as i16;
    }
    let k = ((x as f64) / (EXACT_BELOW as f64)).ln() / GROWTH.ln();
    (EXACT_BELOW + k.floor() as i64).min(i64::from(i16::MAX)) as i16
}

/// The value a bucket reports (its midpoint, whole seconds).
pub fn bucket_value(b: i16) -> i64 {
    let b = i64::from(b.max(0));
    if b < EXACT_BELOW {
        return b;
    }
    let lo = EXACT_BELOW as f64 * GROWTH.powi((b - EXACT_BELOW) as i32);
    (lo * (1.0 + GROWTH) / 2.0).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: JobKind = JobKind(5300);

    fn run(m: &mut Jobs, ev: &Ev) {
        match *ev {
            Ev::Req(key, t) => m.request(key, t, K),
            Ev::Res(of, dvm, t) => m.result(of, &[dvm; 32], t),
        }
    }

    #[derive(Debug, Clone, Copy)]
    enum Ev {
        Req(u128, i64),
        Res(u128, u8, i64),
    }

    type Figures = (i64, Option<i64>, Option<i64>, Vec<(u8, i64)>);

    fn figures(j: &Jobs, m: YearMonth) -> Figures {
        let f = j.month(m).cloned().unwrap_or_default();
        let mut dvms: Vec<(u8, i64)> = f.dvms.iter().map(|(k, h)| (k[0], h.len())).collect();
        dvms.sort();
        dvms.retain(|(_, n)| *n > 0);
        (f.all.len(), f.all.median(), f.all.p90(), dvms)
    }

    #[test]
    fn early_results_late_earlier_results_and_the_horizon() {
        let t0 = 1_704_067_200; // 2024-01-01
        let jan = YearMonth::of(crate::time::day_of(t0));
        let evs = [
            Ev::Res(1, 7, t0 + 50), // before its request
            Ev::Req(1, t0),
            Ev::Res(1, 8, t0 + 30), // another DVM, earlier: overall 30
            Ev::Res(1, 7, t0 + 20), // DVM 7's earlier result replaces 50
            Ev::Req(2, t0 + 100),   // never answered
            Ev::Req(3, t0 + 200),   // answered outside the horizon only
            Ev::Res(3, 7, t0 + 200 + DEFAULT_HORIZON + 1),
            Ev::Res(9, 7, t0 + 10), // its request never comes
            Ev::Req(4, t0 + 1000),
            Ev::Res(4, 8, t0 + 900), // before the request in time: latency 0
        ];
        let mut j = Jobs::default();
        for e in &evs {
            run(&mut j, e);
        }
        let (n, med, p90, dvms) = figures(&j, jan);
        assert_eq!(n, 2);
        assert_eq!((med, p90), (Some(0), Some(20)));
        assert_eq!(dvms, vec![(7, 1), (8, 2)]);
        assert_eq!(j.month(jan).unwrap().dvms[&[8; 32]].median(), Some(0));
        assert_eq!(j.month(jan).unwrap().kinds[&K].len(), 2);
    }

    #[test]
    fn percentiles_follow_the_contract() {
        let mut h = Hist::default();
        assert_eq!((h.median(), h.p90()), (None, None));
        for v in [5, 1, 3, 2, 4, 6, 7, 8, 9, 10] {
            h.add(v, 1);
        }
        // n = 10: median index 4 (value 5), p90 index 8 (value 9).
        assert_eq!((h.median(), h.p90()), (Some(5), Some(9)));
        h.add(11, 1); // n = 11: median index 5, p90 index ⌈9.9⌉−1 = 9
        assert_eq!((h.median(), h.p90()), (Some(6), Some(10)));
        h.add(11, -1);
        h.add(5, -1);
        assert_eq!(h.len(), 9);
        assert_eq!((h.median(), h.p90()), (Some(6), Some(10)));
        assert_eq!(p90_index(1), 0);
        assert_eq!(p90_index(20), 17);
    }

    #[test]
    fn buckets_stay_within_one_percent() {
        let mut last = -1;
        for x in (0..2_000_000).step_by(37).chain([127, 128, 129, 604_800]) {
            let b = bucket_of(x);
            let v = bucket_value(b);
            let err = (v - x).abs() as f64 / (x.max(1)) as f64;
            assert!(err < 0.01, "{x} → bucket {b} → {v}");
            if x % 37 == 0 && x < 2_000_000 {
                assert!(i64::from(b) >= last);
                last = i64::from(b);
            }
        }
    }

    #[test]
    fn facts_round_trip_and_pruning() {
        let mut b = Vec::new();
        encode_request(&mut b, 42, 1_700_000_000, K);
        assert_eq!(decode_requests(&b), Some(vec![(42, 1_700_000_000, K)]));
        assert_eq!(decode_requests(&b[1..]), None);
        let mut r = Vec::new();
        encode_result(&mut r, 42, &[3; 32], 5);
        assert_eq!(decode_results(&r), Some(vec![(42, [3; 32], 5)]));
        let feb = YearMonth::new(2024, 2).unwrap();
        let cut = prune_cut(feb, DEFAULT_HORIZON);
        assert_eq!(cut, crate::time::day_start(feb.start()) - DEFAULT_HORIZON);
        let mut j = Jobs::default();
        run(&mut j, &Ev::Req(1, cut - 1));
        run(&mut j, &Ev::Req(2, cut));
        run(&mut j, &Ev::Res(3, 1, cut - 5));
        j.close(YearMonth::new(2024, 1).unwrap());
        assert_eq!(j.matcher.held(), (1, 0));
    }
}
