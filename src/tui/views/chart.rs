//! A line chart over time with both axes labelled: dates (or months) under
//! it, the scale beside it. Shared by the detail and history views.

use super::super::panes::si;
use super::super::theme::Theme;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Chart, Dataset, GraphType, LegendPosition};

/// One line: its name, style, and a value per x step.
pub(crate) struct Series<'a> {
    pub(crate) name: &'a str,
    pub(crate) style: Style,
    pub(crate) values: Vec<f64>,
}

/// Draws `series` over `x_labels.len()` steps; `x_labels` are the time
/// axis's labels at the start, middle and end.
pub(crate) fn render(
    f: &mut Frame,
    area: Rect,
    t: &Theme,
    series: &[Series],
    x_labels: [String; 3],
) {
    let steps = series.iter().map(|s| s.values.len()).max().unwrap_or(0);
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let points: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            s.values
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64, *v))
                .collect()
        })
        .collect();
    let datasets: Vec<Dataset> = series
        .iter()
        .zip(&points)
        .map(|(s, p)| {
            Dataset::default()
                .name(s.name)
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(s.style)
                .data(p)
        })
        .collect();
    let [a, b, c] = x_labels;
    let x = Axis::default()
        .style(t.label())
        .bounds([0.0, (steps.max(2) - 1) as f64])
        .labels([a, b, c].map(|s| Span::styled(s, t.label())));
    let y = Axis::default()
        .style(t.label())
        .bounds([0.0, max])
        .labels(["0".to_owned(), si(max / 2.0), si(max)].map(|s| Span::styled(s, t.label())));
    let legend = if series.len() > 1 {
        Some(LegendPosition::TopLeft)
    } else {
        None
    };
    f.render_widget(
        Chart::new(datasets)
            .x_axis(x)
            .y_axis(y)
            .legend_position(legend)
            .hidden_legend_constraints((
                ratatui::layout::Constraint::Percentage(60),
                ratatui::layout::Constraint::Percentage(60),
            )),
        area,
    );
}

/// A one-line stand-in when there is nothing to chart.
pub(crate) fn empty<'a>(t: &Theme, what: &'a str) -> Line<'a> {
    Line::styled(what, t.label())
}
