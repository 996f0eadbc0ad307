//! Live relay ingest (issue 7) against a real NIP-01 relay implementation
//! (nostr-relay-builder's `LocalRelay`, in-memory store) started inside
//! each test on 127.0.0.1, and the real Redis/PostgreSQL, one namespace per
//! test. Conditions are polled with deadlines, never slept for.

mod common;
use common::process::{Dvmtop, Running};
use common::*;
use dvmtop::relay::{RelayConfig, RelayIngest, RelayStatus, RelayUrl, relay_status};
use dvmtop::run::Services;
use futures_util::{SinkExt, StreamExt};
use nostr_relay_builder::prelude::{
    EventBuilder, JsonUtil, Keys, Kind, LocalRelay, MemoryDatabase, MemoryDatabaseOptions,
    NostrDatabase, RelayBuilder, Tag, Timestamp,
};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

/// Generous: the machine is shared and busy.
const WAIT: Duration = Duration::from_secs(60);

/// Polls `f` until it yields `Some`, or fails the test after `limit`.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A real relay on 127.0.0.1 with an in-memory store that outlives it (so
/// a restart keeps its events, like a relay with a disk).
struct TestRelay {
    relay: LocalRelay,
    port: u16,
    db: Arc<MemoryDatabase>,
}

impl TestRelay {
    async fn start() -> TestRelay {
        let db = Arc::new(MemoryDatabase::with_opts(MemoryDatabaseOptions {
            events: true,
            max_events: Some(10_000),
        }));
        let relay = LocalRelay::new(RelayBuilder::default().database(db.clone()));
        relay.run().await.expect("start relay");
        let port = relay
            .url()
            .await
            .to_string()
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .expect("relay port");
        TestRelay { relay, port, db }
    }

    /// The same relay (same port and store) started again.
    async fn restart(port: u16, db: Arc<MemoryDatabase>) -> TestRelay {
        let relay = eventually("the relay's port to be free again", WAIT, || {
            let db = db.clone();
            async move {
                let relay = LocalRelay::new(RelayBuilder::default().port(port).database(db));
                relay.run().await.ok().map(|()| relay)
            }
        })
        .await;
        TestRelay { relay, port, db }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    fn stop(self) -> (u16, Arc<MemoryDatabase>) {
        self.relay.shutdown();
        (self.port, self.db)
    }

    /// Publishes over a websocket of its own, as any client would; returns
    /// the relay's OK verdict.
    async fn publish(&self, event_json: &str) -> (bool, String) {
        let (mut ws, _) = tokio_tungstenite::connect_async(self.url())
            .await
            .expect("connect to publish");
        ws.send(Message::text(format!(r#"["EVENT",{event_json}]"#)))
            .await
            .expect("send EVENT");
        let verdict = tokio::time::timeout(WAIT, async {
            while let Some(Ok(m)) = ws.next().await {
                if let Message::Text(t) = m {
                    let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                    if v[0] == "OK" {
                        return (v[2] == true, v[3].as_str().unwrap_or("").to_owned());
                    }
                }
            }
            panic!("relay closed before OK");
        })
        .await
        .expect("OK from the relay");
        let _ = ws.close(None).await;
        verdict
    }

    async fn publish_ok(&self, event_json: &str) {
        let (ok, why) = self.publish(event_json).await;
        assert!(ok, "relay refused the event: {why}");
    }
}

fn now() -> u64 {
    chrono::Utc::now().timestamp() as u64
}

/// A signed DVM event (real id and BIP-340 signature).
fn signed(keys: &Keys, kind: u16, created_at: u64, tags: &[&[&str]], content: &str) -> String {
    EventBuilder::new(Kind::Custom(kind), content)
        .tags(tags.iter().map(|t| Tag::parse(t.iter().copied()).unwrap()))
        .custom_created_at(Timestamp::from(created_at))
        .sign_with_keys(keys)
        .unwrap()
        .as_json()
}

fn request(keys: &Keys, n: u32) -> String {
    signed(
        keys,
        5300,
        now() - 60,
        &[&["i", &n.to_string(), "text"]],
        "",
    )
}

/// The processor's key of an event (the 128-bit prefix of its id), as
/// the queue shows it (see [`queued_ids`]).
fn id_of(json: &str) -> String {
    let id = serde_json::from_str::<serde_json::Value>(json).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    format!("{:032x}", dvmtop_core::keys::id_key(&id).unwrap())
}

/// Short timers, so reconnects and resubscriptions happen within a test.
fn fast(urls: &[String]) -> RelayConfig {
    RelayConfig {
        urls: urls.iter().map(|u| RelayUrl::parse(u).unwrap()).collect(),
        flush_every: Duration::from_millis(50),
        backoff_base: Duration::from_millis(100),
        backoff_cap: Duration::from_millis(1_000),
        heartbeat_every: Duration::from_millis(300),
        connect_timeout: Duration::from_secs(10),
        send_timeout: Duration::from_secs(3),
        ..RelayConfig::default()
    }
}

async fn stats(s: &Services, url: &str) -> RelayStatus {
    relay_status(&s.queue, chrono::Utc::now().timestamp())
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.url == url)
        .unwrap_or_default()
}

/// Waits until `url`'s stats satisfy `ok`.
async fn wait_stats(
    s: &Services,
    url: &str,
    what: &str,
    ok: impl Fn(&RelayStatus) -> bool,
) -> RelayStatus {
    eventually(what, WAIT, || async {
        let st = stats(s, url).await;
        ok(&st).then_some(st)
    })
    .await
}

/// Sends SIGTERM, waits for a clean exit, and returns what the process
/// printed. (Blocks this worker thread, handing its tasks to others: the
/// relay keeps running while dvmtop shuts down.)
fn terminate(child: &mut Running, what: &str) -> String {
    let done = tokio::task::block_in_place(|| child.terminate(WAIT));
    assert!(
        done.status.success(),
        "{what}: {:?} {}",
        done.status,
        done.stdout
    );
    done.stdout
}

/// The keys of the events in the queue, in order.
async fn queued_ids(s: &Services) -> Vec<String> {
    let v = dvmtop::event::Validation::default();
    s.queue
        .peek(100_000)
        .await
        .unwrap()
        .iter()
        .map(|p| format!("{:032x}", dvmtop::record::decode(p, &v, 0).unwrap().key))
        .collect()
}

async fn dead_letters(s: &Services) -> Vec<serde_json::Value> {
    let mut con = redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let dead: Vec<String> = redis::cmd("LRANGE")
        .arg(s.queue.keys.dead())
        .arg(0)
        .arg(-1)
        .query_async(&mut con)
        .await
        .unwrap();
    dead.iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_events_arrive_once_and_resubscriptions_do_not_recount() {
    let ns = TestNs::new("relayonce");
    let cfg = ns.config();
    let s = ns.open(&cfg).await;
    let relay = TestRelay::start().await;
    let keys = Keys::generate();
    // Two stored before we connect (the backfill), two published live.
    let early: Vec<String> = (0..2).map(|n| request(&keys, n)).collect();
    for e in &early {
        relay.publish_ok(e).await;
    }
    let mut rcfg = fast(&[relay.url()]);
    // Resubscribe every second: each new REQ re-delivers all four stored
    // events (they are inside the overlap).
    rcfg.resubscribe_every = Duration::from_secs(1);
    let ingest = RelayIngest::start(&s.queue, &rcfg, &cfg.validation);
    let url = relay.url();
    wait_stats(&s, &url, "the backfill", |r| r.accepted == 2 && r.connected).await;
    let late: Vec<String> = (2..4).map(|n| request(&keys, n)).collect();
    for e in &late {
        relay.publish_ok(e).await;
    }
    wait_stats(&s, &url, "the live events", |r| r.accepted == 4).await;
    // Several resubscriptions later nothing was counted or queued again.
    let st = wait_stats(&s, &url, "re-deliveries", |r| r.redelivered >= 8).await;
    assert_eq!(
        (st.events_received, st.accepted, st.duplicates),
        (4, 4, 0),
        "{st:?}"
    );
    assert_eq!(st.rejected_total(), 0, "{st:?}");
    let all: Vec<String> = early.iter().chain(&late).map(|e| id_of(e)).collect();
    assert_eq!(sorted(queued_ids(&s).await), sorted(all));
    let ingest_stats = s.queue.ingest_stats().await.unwrap();
    assert_eq!(ingest_stats.get("events_read"), Some(&4));
    assert_eq!(ingest_stats.get("rejected:duplicate"), None);
    ingest.shutdown(Duration::from_secs(10)).await;
    let st = stats(&s, &url).await;
    assert_eq!(st.state, "stopped");
    assert!(!st.connected);
    assert!(st.synced_at.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_on_two_relays_is_queued_once() {
    let ns = TestNs::new("relaytwo");
    let cfg = ns.config();
    let s = ns.open(&cfg).await;
    let (a, b) = (TestRelay::start().await, TestRelay::start().await);
    let ingest = RelayIngest::start(&s.queue, &fast(&[a.url(), b.url()]), &cfg.validation);
    let keys = Keys::generate();
    let events: Vec<String> = (0..3).map(|n| request(&keys, n)).collect();
    for e in &events {
        a.publish_ok(e).await;
        b.publish_ok(e).await;
    }
    let (ua, ub) = (a.url(), b.url());
    eventually("both relays' copies", WAIT, || async {
        let (x, y) = (stats(&s, &ua).await, stats(&s, &ub).await);
        (x.events_received == 3
            && y.events_received == 3
            && x.accepted + x.duplicates == 3
            && y.accepted + y.duplicates == 3)
            .then_some(())
    })
    .await;
    let (x, y) = (stats(&s, &ua).await, stats(&s, &ub).await);
    assert_eq!(x.accepted + y.accepted, 3, "{x:?} {y:?}");
    assert_eq!(x.duplicates + y.duplicates, 3, "{x:?} {y:?}");
    assert_eq!(
        sorted(queued_ids(&s).await),
        sorted(events.iter().map(|e| id_of(e)).collect())
    );
    ingest.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_relay_is_reconnected() {
    let ns = TestNs::new("relayrestart");
    let cfg = ns.config();
    let s = ns.open(&cfg).await;
    let relay = TestRelay::start().await;
    let url = relay.url();
    let ingest = RelayIngest::start(&s.queue, &fast(std::slice::from_ref(&url)), &cfg.validation);
    let keys = Keys::generate();
    let first = request(&keys, 1);
    relay.publish_ok(&first).await;
    wait_stats(&s, &url, "the first event", |r| r.accepted == 1).await;
    let (port, db) = relay.stop();
    let down = wait_stats(&s, &url, "the loss to be noticed", |r| {
        r.state != "connected" && r.last_error.is_some()
    })
    .await;
    assert!(!down.connected);
    let relay = TestRelay::restart(port, db).await;
    let second = request(&keys, 2);
    relay.publish_ok(&second).await;
    let st = wait_stats(&s, &url, "the event published after the restart", |r| {
        r.accepted == 2 && r.connected
    })
    .await;
    assert!(st.connects >= 2, "{st:?}");
    // The stored first event came again on the new connection: not counted.
    assert_eq!((st.events_received, st.duplicates), (2, 0), "{st:?}");
    assert_eq!(
        sorted(queued_ids(&s).await),
        sorted(vec![id_of(&first), id_of(&second)])
    );
    ingest.shutdown(Duration::from_secs(10)).await;
}

/// The same event with another event's signature: a valid shape and id,
/// a wrong BIP-340 signature.
fn with_bad_sig(keys: &Keys) -> String {
    let good = request(keys, 100);
    let other = request(keys, 101);
    let mut v: serde_json::Value = serde_json::from_str(&good).unwrap();
    v["sig"] = serde_json::from_str::<serde_json::Value>(&other).unwrap()["sig"].clone();
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_and_future_events_are_rejected() {
    let relay = TestRelay::start().await;
    let keys = Keys::generate();
    let bad = with_bad_sig(&keys);
    // The relay itself refuses it over the wire, so it goes straight into
    // its store, as a relay that does not check would have it.
    let (ok, why) = relay.publish(&bad).await;
    assert!(!ok, "the relay accepted a bad signature");
    assert!(why.contains("signature"), "{why}");
    relay
        .db
        .save_event(&nostr_relay_builder::prelude::Event::from_json(&bad).unwrap())
        .await
        .unwrap();
    let future = signed(&keys, 5300, now() + 3_600, &[&["i", "f", "text"]], "");
    relay.publish_ok(&future).await;
    let good = request(&keys, 1);
    relay.publish_ok(&good).await;
    let url = relay.url();

    for verify in [true, false] {
        let ns = TestNs::new("relayreject");
        let cfg = ns.config();
        let s = ns.open(&cfg).await;
        let mut rcfg = fast(std::slice::from_ref(&url));
        rcfg.verify_signatures = verify;
        // File ingest's default (no signature checks) does not apply here.
        assert!(!cfg.validation.verify_signatures);
        let ingest = RelayIngest::start(&s.queue, &rcfg, &cfg.validation);
        let st = wait_stats(&s, &url, "all three events", |r| {
            r.accepted + r.rejected_total() == 3
        })
        .await;
        assert_eq!(st.events_received, 3, "{st:?}");
        assert_eq!(st.rejected["future"], 1, "{st:?}");
        let dead = dead_letters(&s).await;
        let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap()).collect();
        if verify {
            assert_eq!((st.accepted, st.rejected["bad_sig"]), (1, 1), "{st:?}");
            assert_eq!(
                sorted(reasons.iter().map(|r| r.to_string()).collect()),
                ["bad_sig", "future"]
            );
            let bad_dead = dead.iter().find(|d| d["reason"] == "bad_sig").unwrap();
            assert_eq!(id_of(bad_dead["raw"].as_str().unwrap()), id_of(&bad));
            assert_eq!(queued_ids(&s).await, vec![id_of(&good)]);
            let ingest_stats = s.queue.ingest_stats().await.unwrap();
            assert_eq!(ingest_stats.get("rejected:bad_sig"), Some(&1));
            assert_eq!(ingest_stats.get("rejected:future"), Some(&1));
        } else {
            // The operator's opt-out: the bad signature is not looked at.
            assert_eq!((st.accepted, st.rejected["bad_sig"]), (2, 0), "{st:?}");
            assert_eq!(reasons, ["future"]);
        }
        ingest.shutdown(Duration::from_secs(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_announcement_updates_the_profile_without_counting_as_activity() {
    let ns = TestNs::new("relayannounce");
    let cfg = ns.config();
    let s = ns.open(&cfg).await;
    let relay = TestRelay::start().await;
    let url = relay.url();
    let ingest = RelayIngest::start(&s.queue, &fast(std::slice::from_ref(&url)), &cfg.validation);
    let dvm = Keys::generate();
    let content =
        r#"{"name":"Relay DVM","about":"translates","picture":"https://example.invalid/p.png"}"#;
    let ann = signed(
        &dvm,
        31990,
        now() - 30,
        &[&["k", "5300"], &["k", "5050"], &["d", "x"]],
        content,
    );
    relay.publish_ok(&ann).await;
    wait_stats(&s, &url, "the announcement", |r| r.accepted == 1).await;
    ingest.shutdown(Duration::from_secs(10)).await;
    let mut p =
        dvmtop::pipeline::Processor::open(s.db.clone(), s.queue.clone(), Services::settings(&cfg))
            .await
            .unwrap();
    settle(&mut p).await;
    let row: (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Vec<i32>,
    ) = sqlx::query_as("SELECT id, name, about, picture, kinds FROM dvm_profiles")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(row.0, dvm.public_key().to_hex());
    assert_eq!(row.1.as_deref(), Some("Relay DVM"));
    assert_eq!(row.2.as_deref(), Some("translates"));
    assert_eq!(row.3.as_deref(), Some("https://example.invalid/p.png"));
    assert_eq!(row.4, vec![5050, 5300]);
    // Not activity: no DVM, no user, no activity rows, no request/response.
    let count = |t: &'static str| {
        let pool = s.db.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {t}")))
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    assert_eq!(count("dvms").await, 0);
    assert_eq!(count("users").await, 0);
    assert_eq!(count("entity_activity").await, 0);
    assert_eq!(
        queued_ids(&s).await,
        Vec::<String>::new(),
        "the announcement was consumed"
    );
}

/// Accepts TCP connections and never answers: no websocket handshake.
async fn black_hole() -> (String, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", l.local_addr().unwrap());
    let h = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = l.accept().await {
            held.push(sock);
        }
    });
    (url, h)
}

/// Completes the websocket handshake, then reads nothing and says nothing
/// (so pings go unanswered).
async fn mute_after_handshake() -> (String, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", l.local_addr().unwrap());
    let h = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = l.accept().await {
            if let Ok(ws) = tokio_tungstenite::accept_async(sock).await {
                held.push(ws);
            }
        }
    });
    (url, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_relays_stall_neither_the_others_nor_the_pipeline() {
    let ns = TestNs::new("relaysilent");
    let cfg = ns.config();
    let s = ns.open(&cfg).await;
    let (hole, _h1) = black_hole().await;
    let (mute, _h2) = mute_after_handshake().await;
    let good = TestRelay::start().await;
    let mut rcfg = fast(&[hole.clone(), mute.clone(), good.url()]);
    // The black hole only times out after 120 s: everything below must
    // happen long before that.
    rcfg.connect_timeout = Duration::from_secs(120);
    rcfg.ping_every = Duration::from_millis(300);
    rcfg.idle_timeout = Duration::from_secs(2);
    let started = Instant::now();
    let ingest = RelayIngest::start(&s.queue, &rcfg, &cfg.validation);
    let keys = Keys::generate();
    let e = request(&keys, 1);
    good.publish_ok(&e).await;
    wait_stats(&s, &good.url(), "the good relay's event", |r| {
        r.accepted == 1
    })
    .await;
    // The pipeline processes it meanwhile.
    let mut p =
        dvmtop::pipeline::Processor::open(s.db.clone(), s.queue.clone(), Services::settings(&cfg))
            .await
            .unwrap();
    settle(&mut p).await;
    let snap = s.db.snapshot().await.unwrap();
    assert_eq!(snap.counters.get("processed"), Some(&1));
    assert!(
        started.elapsed() < Duration::from_secs(110),
        "took {:?}: something waited for the black hole",
        started.elapsed()
    );
    let h = stats(&s, &hole).await;
    assert_eq!(h.state, "connecting", "{h:?}");
    // The relay that went mute after the handshake is detected and retried.
    let m = wait_stats(&s, &mute, "the mute relay to be dropped", |r| {
        r.last_error
            .as_deref()
            .is_some_and(|e| e.contains("sent nothing"))
    })
    .await;
    assert!(!m.connected || m.connects >= 2, "{m:?}");
    // Shutdown does not wait for the black hole's connect either.
    let t = Instant::now();
    ingest.shutdown(Duration::from_secs(20)).await;
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
}

/// Says everything a confused or hostile relay might say, then a message
/// larger than the limit.
async fn garbage_relay(ev: String) -> (String, tokio::task::JoinHandle<()>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", l.local_addr().unwrap());
    let h = tokio::spawn(async move {
        while let Ok((sock, _)) = l.accept().await {
            let ev = ev.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(sock).await else {
                    return;
                };
                // Wait for the REQ.
                let sub = loop {
                    match ws.next().await {
                        Some(Ok(Message::Text(t))) => {
                            let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
                            if v[0] == "REQ" {
                                break v[1].as_str().unwrap().to_owned();
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => return,
                    }
                };
                for m in [
                    "not json".to_owned(),
                    "{}".to_owned(),
                    "[]".to_owned(),
                    r#"["WHAT","x"]"#.to_owned(),
                    format!(r#"["EVENT","{sub}"]"#),
                    format!(r#"["EVENT","{sub}",{{"id":"zz","kind":"5300"}}]"#),
                    format!(r#"["EVENT","{sub}",{ev}]"#),
                    r#"["NOTICE","hello"]"#.to_owned(),
                    format!(r#"["EOSE","{sub}"]"#),
                ] {
                    if ws.send(Message::text(m)).await.is_err() {
                        return;
                    }
                }
                let _ = ws.send(Message::binary(vec![0u8; 10])).await;
                let _ = ws.send(Message::text("x".repeat(200_000))).await;
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    (url, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_a_relay_is_counted_never_fatal() {
    let ns = TestNs::new("relaygarbage");
    let cfg = ns.config();
    let s = ns.open(&cfg).await;
    let keys = Keys::generate();
    let ev = request(&keys, 1);
    let (url, _h) = garbage_relay(ev.clone()).await;
    let mut rcfg = fast(std::slice::from_ref(&url));
    rcfg.max_message_bytes = 64 * 1024;
    let ingest = RelayIngest::start(&s.queue, &rcfg, &cfg.validation);
    let st = wait_stats(
        &s,
        &url,
        "the oversized message to drop the connection",
        |r| r.connects >= 2 && r.last_error.is_some(),
    )
    .await;
    assert!(st.invalid_messages >= 4, "{st:?}");
    assert!(st.rejected["malformed"] >= 2, "{st:?}");
    assert_eq!(st.accepted, 1, "{st:?}");
    assert!(st.notices >= 1, "{st:?}");
    assert_eq!(st.last_notice.as_deref(), Some("hello"));
    assert!(
        st.last_error.as_deref().unwrap().contains("websocket"),
        "{st:?}"
    );
    // Re-sent on every reconnect, the valid event is still queued once.
    assert_eq!(queued_ids(&s).await, vec![id_of(&ev)]);
    ingest.shutdown(Duration::from_secs(10)).await;
}

/// A TLS client that meets a server speaking plain text: the handshake
/// fails, the error is recorded, the task keeps retrying (wss:// goes
/// through rustls; nothing here reaches the internet).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_tls_handshake_is_an_error_not_a_crash() {
    let ns = TestNs::new("relaytls");
    let cfg = ns.config();
    let s = ns.open(&cfg).await;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("wss://{}", l.local_addr().unwrap());
    let _h = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut sock, _)) = l.accept().await {
            let _ = sock.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        }
    });
    let ingest = RelayIngest::start(&s.queue, &fast(std::slice::from_ref(&url)), &cfg.validation);
    let st = wait_stats(&s, &url, "a failed handshake", |r| {
        r.last_error.is_some() && r.last_error_at.is_some() && r.state != "connected"
    })
    .await;
    let e = st.last_error.unwrap();
    println!("last_error: {e}");
    assert!(e.starts_with("connect: "), "{e}");
    // The handshake failed in TLS, not in TCP or HTTP.
    assert!(
        e.to_lowercase().contains("tls") || e.contains("corrupt"),
        "{e}"
    );
    assert!(!e.contains('\n'));
    ingest.shutdown(Duration::from_secs(10)).await;
}

#[test]
fn an_invalid_relay_url_is_one_line_and_a_failure() {
    let ns = TestNs::new("relaybadurl");
    for (args, want) in [
        (
            vec!["ingest", "--relay", "http://relay.example"],
            "invalid relay URL",
        ),
        (vec!["serve", "--relay", "wss://"], "invalid relay URL"),
        (
            vec![
                "ingest",
                "--lookback",
                "soon",
                "--relay",
                "ws://127.0.0.1:1",
            ],
            "--lookback",
        ),
        (vec!["ingest"], "nothing to ingest"),
    ] {
        let out = Dvmtop::shared(&ns).output(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

/// `dvmtop ingest --relay …` as an operator runs it: a collector-only
/// process, one relay up and one unreachable, read by `dvmtop status
/// --json` from another process, stopped by SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_subcommand_collects_until_sigterm() {
    let ns = TestNs::new("relaycli");
    let cfg = ns.config();
    let s = ns.open(&cfg).await;
    let relay = TestRelay::start().await;
    // Nothing listens on port 1.
    let dead = "ws://127.0.0.1:1".to_owned();
    let mut child =
        Dvmtop::shared(&ns).spawn(["ingest", "--relay", &relay.url(), "--relay", &dead]);
    let url = relay.url();
    wait_stats(&s, &url, "the collector to connect", |r| r.connected).await;
    let keys = Keys::generate();
    let e = request(&keys, 1);
    relay.publish_ok(&e).await;
    wait_stats(&s, &url, "the event", |r| r.accepted == 1).await;
    wait_stats(&s, &dead, "the unreachable relay's error", |r| {
        r.last_error.is_some()
    })
    .await;
    let out = Dvmtop::shared(&ns).output(["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let relays = v["relays"].as_array().unwrap();
    assert_eq!(relays.len(), 2, "{v}");
    let up = relays.iter().find(|r| r["url"] == url.as_str()).unwrap();
    assert_eq!(up["connected"], true, "{up}");
    assert_eq!(up["events_received"], 1, "{up}");
    assert_eq!(up["accepted"], 1, "{up}");
    assert_eq!(up["duplicates"], 0, "{up}");
    assert_eq!(up["rejected"]["bad_sig"], 0, "{up}");
    assert!(up["last_event_at"].is_i64(), "{up}");
    assert!(up["last_error"].is_null(), "{up}");
    let down = relays.iter().find(|r| r["url"] == dead.as_str()).unwrap();
    assert_eq!(down["connected"], false, "{down}");
    assert!(
        down["last_error"]
            .as_str()
            .unwrap()
            .starts_with("connect: "),
        "{down}"
    );
    assert_eq!(v["queue_depth"], 1, "{v}");

    let stdout = terminate(&mut child, "dvmtop ingest");
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "ingested", "{stdout}");
    assert_eq!(last["queue_depth"], 1);
    for r in last["relays"].as_array().unwrap() {
        assert_eq!(r["state"], "stopped", "{r}");
    }
}

#[test]
fn relay_settings_come_from_flags_over_the_config_file() {
    use dvmtop::cli::{GlobalArgs, RelayArgs};
    use dvmtop::config::Config;
    use dvmtop_core::clock::Policy;
    let dir = std::env::temp_dir().join(format!("dvmtop_relaycfg_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.toml");
    std::fs::write(
        &file,
        "relays = [\"wss://Nos.lol/\", \"wss://relay.damus.io\", \"wss://nos.lol\"]\nlookback = \"6h\"\nresubscribe_every = \"5m\"\nverify_relay_signatures = false\n",
    )
    .unwrap();
    let args = |relays: RelayArgs| GlobalArgs {
        config: Some(file.clone()),
        relays,
        ..Default::default()
    };
    let c = Config::resolve(&args(RelayArgs::default()), Policy::Auto).unwrap();
    let urls: Vec<&str> = c.relay.urls.iter().map(|u| u.as_str()).collect();
    assert_eq!(urls, ["wss://nos.lol", "wss://relay.damus.io"]);
    assert_eq!(c.relay.lookback, Duration::from_secs(6 * 3_600));
    assert_eq!(c.relay.resubscribe_every, Duration::from_secs(300));
    assert!(!c.relay.verify_signatures);
    // Flags replace the file's list; --no-relays empties it.
    let c = Config::resolve(
        &args(RelayArgs {
            relays: vec!["ws://127.0.0.1:7777".into()],
            lookback: Some("30m".into()),
            ..Default::default()
        }),
        Policy::Auto,
    )
    .unwrap();
    let urls: Vec<&str> = c.relay.urls.iter().map(|u| u.as_str()).collect();
    assert_eq!(urls, ["ws://127.0.0.1:7777"]);
    assert_eq!(c.relay.lookback, Duration::from_secs(1_800));
    let c = Config::resolve(
        &args(RelayArgs {
            no_relays: true,
            ..Default::default()
        }),
        Policy::Auto,
    )
    .unwrap();
    assert!(c.relay.urls.is_empty());
    // Without any file: no relays, signatures checked, one day back.
    let c = Config::resolve(
        &GlobalArgs {
            config: Some("/dev/null".into()),
            ..Default::default()
        },
        Policy::Auto,
    )
    .unwrap();
    assert!(c.relay.urls.is_empty() && c.relay.verify_signatures);
    assert_eq!(c.relay.lookback, Duration::from_secs(86_400));
    assert!(!c.validation.verify_signatures, "files keep their opt-in");
    std::fs::write(&file, "relays = [\"https://nope\"]\n").unwrap();
    let e = Config::resolve(&args(RelayArgs::default()), Policy::Auto).unwrap_err();
    assert!(
        e.to_string().contains("invalid relay URL \"https://nope\""),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `dvmtop serve --relay …`: relay ingest and processing in one process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_ingests_from_relays_and_processes() {
    let ns = TestNs::new("relayserve");
    let cfg = ns.config();
    let s = ns.open(&cfg).await;
    let relay = TestRelay::start().await;
    let mut child = Dvmtop::shared(&ns).spawn(["serve", "--relay", &relay.url()]);
    let keys = Keys::generate();
    let e = request(&keys, 1);
    relay.publish_ok(&e).await;
    wait_stats(&s, &relay.url(), "the event", |r| r.accepted == 1).await;
    eventually("the event to be processed", WAIT, || async {
        let snap = s.db.snapshot().await.unwrap();
        (snap.counters.get("processed") == Some(&1)).then_some(())
    })
    .await;
    let stdout = terminate(&mut child, "dvmtop serve");
    assert!(stdout.contains(r#""event":"relays_started""#), "{stdout}");
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "summary", "{stdout}");
    assert_eq!(last["processed"], 1, "{stdout}");
    assert_eq!(stats(&s, &relay.url()).await.state, "stopped");
}
