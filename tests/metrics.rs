//! `--metrics-addr`: a `serve` exposes `/metrics`, scraped over HTTP and
//! parsed by a Prometheus text-format parser; the figures agree with
//! `status --json`.

mod common;
use common::fault::free_port;
use common::process::{Dvmtop, generate};
use common::*;
use prometheus_parse::{Scrape, Value};
use std::io::{Read, Write};
use std::time::{Duration, Instant};

fn scrape(port: u16) -> Option<Scrape> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    Some(Scrape::parse(lines).expect("the Prometheus text format"))
}

fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|m| m.metric == name && labels.iter().all(|(k, v)| m.labels.get(k) == Some(*v)))
        .and_then(|m| match &m.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
            _ => None,
        })
}

#[test]
fn serve_exposes_prometheus_metrics_that_agree_with_status() {
    let ns = TestNs::new("metrics");
    let d = Dvmtop::shared(&ns);
    let file = d.data_dir.join("in.jsonl");
    generate(&["--months", "2", "--events-per-day", "200"], &file);
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut serve = d.spawn([
        "serve",
        "--no-relays",
        "--metrics-addr",
        &addr,
        file.to_str().unwrap(),
    ]);
    // Wait until everything is processed and the exporter has polled.
    let start = Instant::now();
    let (s, status) = loop {
        let out = d.output(["status", "--json"]);
        let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(s) = scrape(port) {
            let processed = st["counters"]["processed"].as_f64();
            let settled = st["queue_depth"] == 0
                && processed.is_some()
                && value(&s, "dvmtop_events_processed_total", &[]) == processed
                && value(&s, "dvmtop_rollovers_total", &[]).is_some();
            if settled {
                break (s, st);
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "metrics did not settle; status:\n{st:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(value(&s, "dvmtop_queue_depth", &[]), Some(0.0));
    assert_eq!(
        value(&s, "dvmtop_rollovers_total", &[]),
        Some(1.0),
        "January rolled over (auto)"
    );
    assert_eq!(
        value(&s, "dvmtop_overflow_events", &[]),
        status["overflow_size"].as_f64()
    );
    let clock = value(&s, "dvmtop_processing_clock_seconds", &[]).expect("the clock");
    assert_eq!(Some(clock), status["clock_unix"].as_f64());
    assert!(value(&s, "dvmtop_processing_lag_seconds", &[]).unwrap() > 0.0);
    assert!(
        value(
            &s,
            "dvmtop_entities",
            &[("role", "dvm"), ("state", "active")]
        )
        .unwrap()
            >= 1.0
    );
    let buckets = s
        .samples
        .iter()
        .find(|m| m.metric == "dvmtop_batch_duration_seconds")
        .map(|m| m.value.clone());
    match buckets {
        Some(Value::Histogram(h)) => {
            assert!(h.len() >= 10, "bucketed: {h:?}");
            assert!(h.last().unwrap().count >= 1.0, "batches recorded: {h:?}");
        }
        other => panic!("dvmtop_batch_duration_seconds is a histogram, got {other:?}"),
    }
    assert_eq!(value(&s, "dvmtop_rollover_waiting", &[]), Some(0.0));
    assert!(
        s.docs.contains_key("dvmtop_queue_depth"),
        "HELP lines are there"
    );
    let done = serve.terminate(Duration::from_secs(60));
    assert!(!done.stderr.contains("panicked"), "{}", done.stderr);
}

#[test]
fn a_taken_metrics_port_is_one_clear_line() {
    let ns = TestNs::new("metricsport");
    let d = Dvmtop::shared(&ns);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = d.output(["serve", "--no-relays", "--metrics-addr", &addr]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot serve metrics on {addr}")) && err.lines().count() <= 2,
        "{err}"
    );
}
