//! Synthetic DVM traffic, deterministic for a seed, calibrated by default
//! to DVMDash's real volumes (SPEC §1): kind 5300 ≈ 95 % of requests,
//! ~60–170 DVMs a month, responses ≈ 80 % of requests, feedback present,
//! a daily and weekly rhythm — plus knobs for the awkward input the
//! pipeline must survive.

use crate::event::{Event, compute_id};
use dvmtop_core::{YearMonth, day_start};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;
use std::io::Write;

#[derive(Debug, Clone)]
pub struct GenConfig {
    pub seed: u64,
    pub start: YearMonth,
    pub months: u32,
    /// Average events (requests + responses + feedback) per day.
    pub events_per_day: u32,
    /// Share of events emitted late (up to `late_max_hours` after their time).
    pub late_rate: f64,
    pub late_max_hours: u32,
    pub dup_rate: f64,
    pub malformed_rate: f64,
    pub future_rate: f64,
    /// Per event, the chance of an extra request with the same timestamp
    /// that is only emitted on day `STRAGGLER_DAY` of the following month,
    /// after that month's rollover.
    pub straggler_rate: f64,
    /// Sign events (BIP-340) instead of a placeholder signature.
    pub sign: bool,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            seed: 1,
            start: YearMonth {
                year: 2024,
                month: 1,
            },
            months: 3,
            events_per_day: 20_000,
            late_rate: 0.0,
            late_max_hours: 36,
            dup_rate: 0.0,
            malformed_rate: 0.0,
            future_rate: 0.0,
            straggler_rate: 0.0,
            sign: false,
        }
    }
}

/// Day of the month on which the previous month's stragglers are emitted:
/// late enough that the previous month has rolled over at any batch size
/// up to ~20 days of traffic.
pub const STRAGGLER_DAY: u32 = 25;

/// Timestamp of the generated future-dated events: 2100-01-01, so that a
/// committed sample stays "future" for good (and the output is
/// deterministic).
const FUTURE_TS: i64 = 4_102_444_800;

/// Events one job produces on average: the request, a response ~80 % of
/// the time (plus a competing DVM's 5 %), feedback ~35 % of the time.
const EVENTS_PER_JOB: f64 = 1.0 + 0.85 + 0.35;

/// How a generated DVM does its jobs: how often it answers and how fast.
struct DvmProfile {
    /// Share of its requests it answers (0.65–0.95, mean 0.8).
    answer_rate: f64,
    /// Its typical response time, seconds (2 s … 5 min, log-uniform).
    median_s: f64,
}

impl DvmProfile {
    fn new(rng: &mut ChaCha8Rng) -> DvmProfile {
        DvmProfile {
            answer_rate: rng.random_range(0.65..0.95),
            median_s: (rng.random_range(2f64.ln()..300f64.ln())).exp(),
        }
    }

    /// One response time: log-normal around the DVM's median (σ = 0.8),
    /// with a 2 % tail of slow jobs (up to 6 h), in whole seconds ≥ 1.
    fn latency(&self, rng: &mut ChaCha8Rng) -> i64 {
        if rng.random::<f64>() < 0.02 {
            return rng.random_range(600..6 * 3600);
        }
        // Box–Muller: one standard normal from two uniforms.
        let (u1, u2): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        ((self.median_s * (0.8 * z).exp()).round() as i64).clamp(1, 6 * 3600)
    }
}

/// Job kinds besides 5300 seen in DVMDash's data.
const OTHER_KINDS: [i64; 17] = [
    5000, 5001, 5002, 5005, 5050, 5100, 5101, 5102, 5107, 5200, 5201, 5202, 5250, 5301, 5302, 5303,
    5905,
];

struct Identity {
    pubkey: String,
    secret: Option<secp256k1::Keypair>,
}

fn identity(rng: &mut ChaCha8Rng, sign: bool) -> Identity {
    if sign {
        let secp = secp256k1::Secp256k1::signing_only();
        loop {
            let bytes: [u8; 32] = rng.random();
            if let Ok(sk) = secp256k1::SecretKey::from_byte_array(&bytes) {
                let kp = secp256k1::Keypair::from_secret_key(&secp, &sk);
                let (x, _) = kp.x_only_public_key();
                return Identity {
                    pubkey: hex::encode(x.serialize()),
                    secret: Some(kp),
                };
            }
        }
    }
    let bytes: [u8; 32] = rng.random();
    Identity {
        pubkey: hex::encode(bytes),
        secret: None,
    }
}

fn build(
    who: &Identity,
    created_at: i64,
    kind: i64,
    tags: Vec<Vec<String>>,
    content: String,
) -> Event {
    let mut ev = Event {
        id: String::new(),
        pubkey: who.pubkey.clone(),
        created_at,
        kind,
        tags,
        content,
        sig: String::new(),
    };
    ev.id = compute_id(&ev);
    ev.sig = match &who.secret {
        Some(kp) => {
            let secp = secp256k1::Secp256k1::signing_only();
            let msg: [u8; 32] = hex::decode(&ev.id)
                .expect("hex id")
                .try_into()
                .expect("32 bytes");
            hex::encode(secp.sign_schnorr_no_aux_rand(&msg, kp).to_byte_array())
        }
        None => "0".repeat(128),
    };
    ev
}

fn json(ev: &Event) -> String {
    serde_json::json!({
        "id": ev.id, "pubkey": ev.pubkey, "created_at": ev.created_at, "kind": ev.kind,
        "tags": ev.tags, "content": ev.content, "sig": ev.sig,
    })
    .to_string()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Relative activity at an hour of the week: a daily wave peaking in the
/// UTC afternoon and quieter weekends.
fn rhythm(weekday: u32, hour: u32) -> f64 {
    let daily = 1.0 + 0.5 * ((hour as f64 - 15.0) / 24.0 * std::f64::consts::TAU).cos();
    let weekly = if weekday >= 5 { 0.8 } else { 1.05 };
    daily * weekly
}

/// What `generate` wrote.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GenStats {
    pub lines: u64,
    pub events: u64,
    pub duplicates: u64,
    pub malformed: u64,
    pub future: u64,
    pub stragglers: u64,
}

/// The population behind the traffic, when it is not derived from the
/// volume (`dvmtop gen --users N --dvms N`; the 10×-population run of
/// `dvmtop bench`). Kept apart from [`GenConfig`] so existing callers
/// keep the calibrated defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Population {
    /// Users sending requests. When set, requests go to the users in turn,
    /// so every user is active in any month with at least this many
    /// requests (random picks would leave a third of them out).
    pub users: Option<usize>,
    /// DVMs (about two thirds of them are active in a given month: the
    /// generator's monthly churn).
    pub dvms: Option<usize>,
}

/// Writes JSONL to `out`.
pub fn generate(cfg: &GenConfig, out: &mut impl Write) -> std::io::Result<GenStats> {
    generate_population(cfg, Population::default(), out)
}

/// [`generate`] with a chosen population.
pub fn generate_population(
    cfg: &GenConfig,
    population: Population,
    out: &mut impl Write,
) -> std::io::Result<GenStats> {
    use chrono::Datelike;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut stats = GenStats::default();
    let monthly = cfg.events_per_day as f64 * 30.0;
    // ~0.55 requests per event; unique users ≈ 9 % of a month's requests.
    let n_users = population
        .users
        .unwrap_or((monthly * 0.55 * 0.09) as usize)
        .max(5);
    let n_dvms = population
        .dvms
        .unwrap_or(((monthly / 2500.0) as usize).clamp(8, 170))
        .max(8);
    let mut next_user = 0usize;
    let users: Vec<Identity> = (0..n_users).map(|_| identity(&mut rng, cfg.sign)).collect();
    let dvms: Vec<Identity> = (0..n_dvms).map(|_| identity(&mut rng, cfg.sign)).collect();
    // DVM popularity: a few big ones, a long tail; roughly a third each
    // month is active (churn gives the lifecycle something to do).
    let dvm_weight: Vec<f64> = (0..n_dvms)
        .map(|i| 1.0 / (1.0 + i as f64).powf(1.1))
        .collect();
    let total_w: f64 = dvm_weight.iter().sum();
    let profiles: Vec<DvmProfile> = (0..n_dvms).map(|_| DvmProfile::new(&mut rng)).collect();

    // Emission queue: (emit_at, seq, line). Late lines are emitted later.
    let mut delayed: VecDeque<(i64, u64, String)> = VecDeque::new();
    let mut stragglers: Vec<(i64, String)> = Vec::new();
    let mut recent: VecDeque<String> = VecDeque::with_capacity(512);
    let mut seq = 0u64;
    let emit = |line: String, out: &mut dyn Write, stats: &mut GenStats| -> std::io::Result<()> {
        stats.lines += 1;
        writeln!(out, "{line}")
    };

    let first = cfg.start.start();
    let mut month = cfg.start;
    let mut day = first;
    for _ in 0..cfg.months {
        month = month.next();
    }
    let end = month.start();
    while day < end {
        let base = day_start(day);
        // Stragglers from the previous month, emitted on day `STRAGGLER_DAY`.
        if day.day() == STRAGGLER_DAY {
            // Only the previous month's: this month's wait for next month.
            let this_month = YearMonth::of(day);
            let (due, keep): (Vec<_>, Vec<_>) = stragglers
                .drain(..)
                .partition(|(t, _)| YearMonth::of(dvmtop_core::day_of(*t)) < this_month);
            stragglers = keep;
            for (_, line) in due {
                emit(line, out, &mut stats)?;
                stats.stragglers += 1;
            }
        }
        let weekday = day.weekday().num_days_from_monday();
        let day_w: f64 = (0..24).map(|h| rhythm(weekday, h)).sum::<f64>() / 24.0;
        let mut day_lines: Vec<(i64, String, bool)> = Vec::new();
        let jobs = (cfg.events_per_day as f64 / EVENTS_PER_JOB
            * day_w
            * rng.random_range(0.85..1.15)) as usize;
        for _ in 0..jobs {
            // Time of day weighted by the rhythm (rejection sampling).
            let t = loop {
                let sec = rng.random_range(0..86_400i64);
                let h = (sec / 3600) as u32;
                if rng.random::<f64>() * 1.6 < rhythm(weekday, h) {
                    break base + sec;
                }
            };
            let kind = if rng.random::<f64>() < 0.95 {
                5300
            } else {
                OTHER_KINDS[rng.random_range(0..OTHER_KINDS.len())]
            };
            let user = if population.users.is_some() {
                next_user = (next_user + 1) % users.len();
                &users[next_user]
            } else {
                &users[rng.random_range(0..users.len())]
            };
            let mut pick = rng.random::<f64>() * total_w;
            let mut d = 0;
            while pick > dvm_weight[d] && d + 1 < n_dvms {
                pick -= dvm_weight[d];
                d += 1;
            }
            // Monthly churn: DVM d is only active in some months.
            let m_index = (day.year() * 12 + day.month0() as i32) as usize;
            if d > 6 && (d + m_index).is_multiple_of(3) {
                d = (d + 1) % n_dvms;
            }
            let dvm = &dvms[d];
            let req = build(
                user,
                t,
                kind,
                vec![
                    s(&["i", "what is new on nostr?", "text"]),
                    s(&["p", &dvm.pubkey]),
                    s(&["param", "max_results", "100"]),
                ],
                String::new(),
            );
            day_lines.push((t, json(&req), true));
            let p = &profiles[d];
            let answered = rng.random::<f64>() < p.answer_rate;
            // Feedback: mostly `processing`, sometimes a payment request or a
            // success note; a request the DVM gives up on often gets only an
            // `error` (a failed job).
            let status = if !answered && rng.random::<f64>() < 0.4 {
                Some("error")
            } else if rng.random::<f64>() < 0.28 {
                Some(match rng.random_range(0..10) {
                    0 => "payment-required",
                    1 => "success",
                    2 => "partial",
                    _ => "processing",
                })
            } else {
                None
            };
            if let Some(status) = status {
                let with_k = rng.random::<f64>() < 0.7;
                let mut tags = vec![
                    s(&["status", status]),
                    s(&["e", &req.id]),
                    s(&["p", &user.pubkey]),
                ];
                if with_k {
                    tags.push(s(&["k", &kind.to_string()]));
                }
                let fb = build(dvm, t + rng.random_range(0..5), 7000, tags, String::new());
                day_lines.push((fb.created_at, json(&fb), true));
            }
            // The answering DVM, and now and then a second one competing.
            let mut answers = Vec::new();
            if answered {
                answers.push(d);
            }
            if rng.random::<f64>() < 0.05 {
                answers.push((d + 1 + rng.random_range(0..5)) % n_dvms);
            }
            for a in answers {
                let latency = profiles[a].latency(&mut rng);
                let res = build(
                    &dvms[a],
                    t + latency,
                    kind + 1000,
                    vec![
                        s(&["e", &req.id]),
                        s(&["p", &user.pubkey]),
                        s(&["request", &json(&req)]),
                    ],
                    "[\"note1...\"]".into(),
                );
                // A few results reach the queue before their request (a
                // relay delivered them first): queued just ahead of it.
                let queued_at = if rng.random::<f64>() < 0.005 {
                    t - 1
                } else {
                    res.created_at
                };
                day_lines.push((queued_at, json(&res), true));
            }
        }
        day_lines.sort_by_key(|(t, _, _)| *t);
        // Lines whose time spilled into the next day still go out here:
        // they arrive a little early, like real relays deliver them.
        for (t, line, _) in day_lines {
            while delayed.front().is_some_and(|(at, _, _)| *at <= t) {
                let (_, _, l) = delayed.pop_front().expect("front exists");
                emit(l, out, &mut stats)?;
            }
            stats.events += 1;
            if rng.random::<f64>() < cfg.straggler_rate && day.day() >= 5 {
                // A distinct event of this month that only shows up after
                // the month has rolled over.
                let user = &users[rng.random_range(0..users.len())];
                let late = build(
                    user,
                    t,
                    5300,
                    vec![s(&["i", "straggler", "text"])],
                    format!("straggler {}", stats.stragglers + stragglers.len() as u64),
                );
                stragglers.push((t, json(&late)));
            }
            if rng.random::<f64>() < cfg.late_rate {
                let at = t + rng.random_range(60..=(cfg.late_max_hours.max(1) as i64 * 3600));
                seq += 1;
                let pos = delayed.partition_point(|(a, _, _)| *a <= at);
                delayed.insert(pos, (at, seq, line.clone()));
            } else {
                emit(line.clone(), out, &mut stats)?;
            }
            if rng.random::<f64>() < cfg.dup_rate && !recent.is_empty() {
                let pick = recent[rng.random_range(0..recent.len())].clone();
                emit(pick, out, &mut stats)?;
                stats.duplicates += 1;
            }
            if rng.random::<f64>() < cfg.malformed_rate {
                let cut = line.len() / 2;
                emit(line[..cut].to_owned(), out, &mut stats)?;
                stats.malformed += 1;
            }
            if rng.random::<f64>() < cfg.future_rate {
                let ev = build(
                    &users[0],
                    FUTURE_TS + rng.random_range(0..86_400),
                    5300,
                    vec![],
                    String::new(),
                );
                emit(json(&ev), out, &mut stats)?;
                stats.future += 1;
            }
            if recent.len() == 512 {
                recent.pop_front();
            }
            recent.push_back(line);
        }
        day = day.succ_opt().expect("date in range");
    }
    for (_, _, l) in delayed {
        emit(l, out, &mut stats)?;
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_valid() {
        let cfg = GenConfig {
            months: 1,
            events_per_day: 50,
            dup_rate: 0.05,
            malformed_rate: 0.02,
            ..Default::default()
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let sa = generate(&cfg, &mut a).unwrap();
        generate(&cfg, &mut b).unwrap();
        assert_eq!(a, b);
        assert!(sa.events > 1000 && sa.duplicates > 0 && sa.malformed > 0);
        let v = crate::event::Validation::default();
        let text = String::from_utf8(a).unwrap();
        let ok = text
            .lines()
            .filter(|l| crate::event::validate(l, &v, i64::MAX / 4).is_ok())
            .count() as u64;
        assert_eq!(ok, sa.events + sa.duplicates);
    }

    #[test]
    fn signed_events_verify() {
        let cfg = GenConfig {
            months: 1,
            events_per_day: 5,
            sign: true,
            ..Default::default()
        };
        let mut out = Vec::new();
        generate(&cfg, &mut out).unwrap();
        let v = crate::event::Validation {
            verify_signatures: true,
            ..Default::default()
        };
        for line in String::from_utf8(out).unwrap().lines().take(50) {
            assert!(
                crate::event::validate(line, &v, i64::MAX / 4).is_ok(),
                "{line}"
            );
        }
    }
}
