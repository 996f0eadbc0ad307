mod common;
use common::*;

#[tokio::test]
async fn fixture_backtest_processes_everything() {
    let ns = TestNs::new("smoke");
    let cfg = ns.config();
    let s = backtest(
        &cfg,
        &["tests/fixtures/dvm-events-real.jsonl".into()],
        dvmtop::run::Start::New,
    )
    .await;
    assert_eq!((s.events_read, s.accepted, s.processed), (118, 118, 118));
}
