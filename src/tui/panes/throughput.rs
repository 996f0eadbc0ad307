//! Throughput and batch latency.

use super::super::app::{App, group};
use super::super::theme::Theme;
use super::{kv, si};
use ratatui::text::Line;

pub(crate) fn lines<'a>(app: &'a App, t: &Theme) -> Vec<Line<'a>> {
    let s = &app.status;
    let out = if s.session.batches == 0 {
        "–".to_owned()
    } else {
        format!("{} ev/s", si(s.processed_per_s))
    };
    let mut l1 = kv(t, "processed ", out);
    l1.extend(kv(t, " · batches ", group(s.session.batches as i64)));
    // Last, average and maximum over the same recent batches.
    let l = s.latency;
    let l2 = if l.batches == 0 {
        kv(t, "batch ", "–".into())
    } else {
        let mut v = kv(t, "batch ", format!("{:.0} ms", l.last_ms));
        v.extend(kv(t, " · avg ", format!("{:.0}", l.avg_ms)));
        v.extend(kv(t, " · max ", format!("{:.0}", l.max_ms)));
        v
    };
    vec![Line::from(l1), Line::from(l2)]
}
