//! Plots as plain SVG. Three kinds cover the report: every sample as a dot (with its median),
//! cumulative distributions, and horizontal bars. Hand-written because the chart crates need a
//! font library to lay out text; in SVG the viewer lays out text, so none is needed here.

use std::fmt::Write as _;

use serde::Serialize;

use crate::stats::{Summary, fmt};

/// One plot of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Plot {
    /// File name in the results directory, e.g. `prog-run.svg`.
    pub file: String,
    pub title: String,
    /// The x axis: what is measured, with its unit.
    pub unit: String,
    pub kind: PlotKind,
}

#[derive(Clone, Debug, Serialize)]
pub enum PlotKind {
    /// One row per series, every sample a dot, the median a bar.
    Samples(Vec<(String, Vec<f64>)>),
    /// Cumulative distribution of each series.
    Cdf(Vec<(String, Vec<f64>)>),
    /// One bar per label.
    Bars(Vec<(String, f64)>),
}

const W: f64 = 760.0;
const LEFT: f64 = 230.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 40.0;
const COLORS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];

impl Plot {
    pub fn render(&self) -> String {
        match &self.kind {
            PlotKind::Samples(series) => self.samples(series),
            PlotKind::Cdf(series) => self.cdf(series),
            PlotKind::Bars(bars) => self.bars(bars),
        }
    }

    fn samples(&self, series: &[(String, Vec<f64>)]) -> String {
        let row = 34.0;
        let plot_h = row * series.len().max(1) as f64;
        let all: Vec<f64> = series.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        let axis = Axis::new(0.0, max_of(&all));
        let mut svg = self.open(plot_h);
        for (i, (label, values)) in series.iter().enumerate() {
            let y = TOP + row * (i as f64 + 0.5);
            let color = COLORS[i % COLORS.len()];
            label_left(&mut svg, y, label);
            for (j, v) in values.iter().enumerate() {
                // A small deterministic jitter keeps equal samples visible.
                let dy = ((j * 7919) % 13) as f64 - 6.0;
                let _ = write!(
                    svg,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2.2" fill="{color}" fill-opacity="0.45"/>"#,
                    axis.x(*v),
                    y + dy
                );
            }
            if let Some(s) = Summary::of(values) {
                let x = axis.x(s.p50);
                let _ = write!(
                    svg,
                    r#"<line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="black" stroke-width="2"/><text x="{:.1}" y="{:.1}" font-size="10">{}</text>"#,
                    y - 12.0,
                    y + 12.0,
                    x + 3.0,
                    y - 6.0,
                    fmt(s.p50)
                );
            }
        }
        axis.draw(&mut svg, plot_h, &self.unit);
        svg.push_str("</svg>\n");
        svg
    }

    fn cdf(&self, series: &[(String, Vec<f64>)]) -> String {
        let plot_h = 220.0;
        let all: Vec<f64> = series.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        let axis = Axis::new(0.0, max_of(&all));
        let mut svg = self.open(plot_h);
        for frac in [0.0, 0.5, 0.99, 1.0] {
            let y = TOP + plot_h * (1.0 - frac);
            let _ = write!(
                svg,
                r##"<line x1="{LEFT}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
                W - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                if frac == 0.99 {
                    "p99".to_owned()
                } else {
                    format!("{frac}")
                }
            );
        }
        for (i, (label, values)) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
            v.sort_by(f64::total_cmp);
            let mut points = String::new();
            for (j, x) in v.iter().enumerate() {
                let below = TOP + plot_h * (1.0 - j as f64 / v.len() as f64);
                let above = TOP + plot_h * (1.0 - (j + 1) as f64 / v.len() as f64);
                let _ = write!(
                    points,
                    "{:.1},{below:.1} {:.1},{above:.1} ",
                    axis.x(*x),
                    axis.x(*x)
                );
            }
            let _ = write!(
                svg,
                r#"<polyline points="{points}" fill="none" stroke="{color}" stroke-width="1.8"/>"#
            );
            let ly = TOP + 14.0 + 16.0 * i as f64;
            let _ = write!(
                svg,
                r#"<rect x="12" y="{:.1}" width="10" height="10" fill="{color}"/><text x="28" y="{:.1}" font-size="11">{} (n={})</text>"#,
                ly - 9.0,
                ly,
                esc(label),
                v.len()
            );
        }
        axis.draw(&mut svg, plot_h, &self.unit);
        svg.push_str("</svg>\n");
        svg
    }

    fn bars(&self, bars: &[(String, f64)]) -> String {
        let row = 26.0;
        let plot_h = row * bars.len().max(1) as f64;
        let values: Vec<f64> = bars.iter().map(|(_, v)| *v).collect();
        let axis = Axis::new(0.0, max_of(&values));
        let mut svg = self.open(plot_h);
        for (i, (label, value)) in bars.iter().enumerate() {
            let y = TOP + row * i as f64;
            let color = COLORS[i % COLORS.len()];
            label_left(&mut svg, y + row / 2.0, label);
            let _ = write!(
                svg,
                r#"<rect x="{LEFT}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
                y + 4.0,
                (axis.x(*value) - LEFT).max(0.0),
                row - 8.0,
                axis.x(*value) + 4.0,
                y + row / 2.0 + 4.0,
                fmt(*value)
            );
        }
        axis.draw(&mut svg, plot_h, &self.unit);
        svg.push_str("</svg>\n");
        svg
    }

    fn open(&self, plot_h: f64) -> String {
        let h = TOP + plot_h + 50.0;
        format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/><text x="{}" y="22" font-size="14" font-weight="bold" text-anchor="middle">{}</text>"#,
            W / 2.0,
            esc(&self.title)
        )
    }
}

fn label_left(svg: &mut String, y: f64, label: &str) {
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"#,
        LEFT - 8.0,
        y + 4.0,
        esc(label)
    );
}

fn max_of(values: &[f64]) -> f64 {
    values
        .iter()
        .copied()
        .filter(|x| x.is_finite())
        .fold(0.0, f64::max)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A linear x axis from `lo` to a round number at or above `hi`.
struct Axis {
    lo: f64,
    hi: f64,
    step: f64,
}

impl Axis {
    fn new(lo: f64, hi: f64) -> Axis {
        let span = (hi - lo).max(f64::MIN_POSITIVE);
        let raw = span / 5.0;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 2.5, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * mag);
        let hi = lo + (span / step).ceil().max(1.0) * step;
        Axis { lo, hi, step }
    }

    fn x(&self, v: f64) -> f64 {
        LEFT + (v - self.lo) / (self.hi - self.lo) * (W - LEFT - RIGHT)
    }

    fn draw(&self, svg: &mut String, plot_h: f64, unit: &str) {
        let base = TOP + plot_h;
        let _ = write!(
            svg,
            r#"<line x1="{LEFT}" x2="{:.1}" y1="{base:.1}" y2="{base:.1}" stroke="black"/>"#,
            W - RIGHT
        );
        let mut t = self.lo;
        while t <= self.hi + self.step / 2.0 {
            let x = self.x(t);
            let _ = write!(
                svg,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"##,
                base + 4.0,
                base + 17.0,
                fmt(t)
            );
            t += self.step;
        }
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">{}</text>"#,
            (LEFT + W - RIGHT) / 2.0,
            base + 38.0,
            esc(unit)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plot(kind: PlotKind) -> String {
        Plot {
            file: "x.svg".into(),
            title: "a <title>".into(),
            unit: "ns".into(),
            kind,
        }
        .render()
    }

    #[test]
    fn renders_each_kind_as_one_svg_document() {
        for svg in [
            plot(PlotKind::Samples(vec![(
                "ours".into(),
                vec![1.0, 2.0, 3.0],
            )])),
            plot(PlotKind::Cdf(vec![
                ("a".into(), vec![5.0, 1.0]),
                ("b".into(), vec![]),
            ])),
            plot(PlotKind::Bars(vec![("x".into(), 3.0), ("y".into(), 0.0)])),
            plot(PlotKind::Samples(vec![])),
        ] {
            assert!(svg.starts_with("<svg"), "{svg}");
            assert!(svg.trim_end().ends_with("</svg>"));
            assert!(svg.contains("a &lt;title&gt;"));
            assert!(!svg.contains("NaN"), "{svg}");
        }
    }

    #[test]
    fn axis_ends_on_a_round_number_above_the_data() {
        let a = Axis::new(0.0, 87.0);
        assert_eq!((a.step, a.hi), (20.0, 100.0));
        let a = Axis::new(0.0, 0.0);
        assert!(a.hi > 0.0);
    }
}
