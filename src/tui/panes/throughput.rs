//! Throughput and batch latency.

use super::super::app::{App, group};
use super::super::theme::Theme;
use super::{kv, si};
use ratatui::text::Line;

pub fn lines<'a>(app: &'a App, t: &Theme) -> Vec<Line<'a>> {
    let r = &app.run;
    let out = app
        .rates
        .out_per_s
        .map_or("–".into(), |v| format!("{} ev/s", si(v)));
    let mut l1 = kv(t, "processed ", out);
    l1.extend(kv(t, " · batches ", group(r.batches as i64)));
    let h = &app.latency_history;
    let l2 = match (&r.last_batch, h.is_empty()) {
        (Some(b), false) => {
            let avg = h.iter().sum::<u64>() as f64 / h.len() as f64;
            let mut s = kv(t, "batch ", format!("{:.0} ms", b.millis));
            s.extend(kv(t, " · avg ", format!("{avg:.0}")));
            s.extend(kv(t, " · max ", format!("{:.0}", r.max_batch_ms)));
            s
        }
        _ => kv(t, "batch ", "–".into()),
    };
    vec![Line::from(l1), Line::from(l2)]
}
