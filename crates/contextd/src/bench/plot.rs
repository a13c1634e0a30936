//! `bench plot`: two SVG charts drawn from saved results, by hand (a few lines of SVG text; no
//! plotting library):
//! - `latency-vs-load.svg`: p50 and p99 against offered load (open-loop runs, `--rate`), per
//!   scenario and label, with the echo ceiling's p99 at the same load (dotted);
//! - `lookup-vs-size.svg`: lookup p50 and p99 against the number of objects loaded (closed-loop
//!   lookup runs; of several at one size, the one with the highest same-run echo ceiling).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{bail, Context as _};

use super::run::RunResult;
use super::PlotArgs;

const WIDTH: f64 = 840.0;
const HEIGHT: f64 = 460.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 270.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 55.0;
const COLORS: &[&str] = &[
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#7f7f7f",
];

struct Series {
    name: String,
    color: &'static str,
    line: Line,
    points: Vec<(f64, f64)>,
}

#[derive(Clone, Copy)]
enum Line {
    Solid,
    Dashed,
    /// Thin and dotted: the echo ceiling.
    Dotted,
}

impl Line {
    fn attributes(self) -> &'static str {
        match self {
            Line::Solid => r#" stroke-width="2""#,
            Line::Dashed => r#" stroke-width="2" stroke-dasharray="6 4""#,
            Line::Dotted => r#" stroke-width="1.5" stroke-dasharray="2 3""#,
        }
    }
}

struct Axis {
    label: &'static str,
    log: bool,
}

impl Axis {
    fn map(&self, v: f64) -> f64 {
        if self.log {
            v.max(1e-9).log10()
        } else {
            v
        }
    }

    /// Range and tick values covering `lo..hi` (data values).
    fn ticks(&self, lo: f64, hi: f64) -> (f64, f64, Vec<f64>) {
        if self.log {
            let a = lo.max(1e-9).log10().floor();
            let b = hi.max(1e-9).log10().ceil().max(a + 1.0);
            let ticks = (a as i32..=b as i32).map(|e| 10f64.powi(e)).collect();
            (a, b, ticks)
        } else {
            let lo = lo.min(0.0);
            let span = (hi - lo).max(1e-9);
            let raw = span / 5.0;
            let mag = 10f64.powf(raw.log10().floor());
            let step = [1.0, 2.0, 5.0, 10.0]
                .iter()
                .map(|m| m * mag)
                .find(|s| *s >= raw)
                .unwrap_or(10.0 * mag);
            let top = (hi / step).ceil() * step;
            let ticks = (0..=((top - lo) / step).round() as i64)
                .map(|i| lo + i as f64 * step)
                .collect();
            (lo, top.max(lo + step), ticks)
        }
    }
}

fn label(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{}M", v / 1_000_000.0)
    } else if v >= 1000.0 {
        format!("{}k", v / 1000.0)
    } else if v >= 1.0 || v == 0.0 {
        format!("{v}")
    } else {
        format!("{v:.3}").trim_end_matches('0').to_owned()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An SVG line chart.
fn chart(title: &str, x: &Axis, y: &Axis, series: &[Series]) -> String {
    let points = series.iter().flat_map(|s| s.points.iter());
    let (mut x_lo, mut x_hi, mut y_lo, mut y_hi) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (px, py) in points {
        x_lo = x_lo.min(*px);
        x_hi = x_hi.max(*px);
        y_lo = y_lo.min(*py);
        y_hi = y_hi.max(*py);
    }
    if x_lo > x_hi {
        (x_lo, x_hi, y_lo, y_hi) = (1.0, 10.0, 1.0, 10.0);
    }
    let (x0, x1, x_ticks) = x.ticks(x_lo, x_hi);
    let (y0, y1, y_ticks) = y.ticks(y_lo, y_hi);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let sx = |v: f64| LEFT + (x.map(v) - x0) / (x1 - x0).max(1e-9) * plot_w;
    let sy = |v: f64| TOP + plot_h - (y.map(v) - y0) / (y1 - y0).max(1e-9) * plot_h;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        escape(title)
    );
    for t in &x_ticks {
        let px = sx(*t);
        let _ = writeln!(
            svg,
            r##"<line x1="{px:.1}" y1="{TOP}" x2="{px:.1}" y2="{:.1}" stroke="#e5e5e5"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            TOP + plot_h,
            TOP + plot_h + 16.0,
            label(*t)
        );
    }
    for t in &y_ticks {
        let py = sy(*t);
        let _ = writeln!(
            svg,
            r##"<line x1="{LEFT}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            py + 4.0,
            label(*t)
        );
    }
    let _ = writeln!(
        svg,
        r#"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 14.0,
        escape(x.label)
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        TOP + plot_h / 2.0,
        escape(y.label)
    );
    for (i, s) in series.iter().enumerate() {
        let path: Vec<String> = s
            .points
            .iter()
            .map(|(px, py)| format!("{:.1},{:.1}", sx(*px), sy(*py)))
            .collect();
        let dash = s.line.attributes();
        let _ = writeln!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{}"{dash}/>"#,
            path.join(" "),
            s.color
        );
        for p in &path {
            let (px, py) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = writeln!(
                svg,
                r#"<circle cx="{px}" cy="{py}" r="3" fill="{}"/>"#,
                s.color
            );
        }
        let ly = TOP + 10.0 + i as f64 * 18.0;
        let lx = LEFT + plot_w + 12.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{}"{dash}/><text x="{}" y="{}">{}</text>"#,
            lx + 24.0,
            s.color,
            lx + 30.0,
            ly + 4.0,
            escape(&s.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn read_results(path: &std::path::Path) -> anyhow::Result<Vec<RunResult>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(line).with_context(|| {
                format!("{} line {}: not a bench result", path.display(), i + 1)
            })?,
        );
    }
    Ok(out)
}

/// Latency (p50, p99) against offered load, one colour per scenario and label.
fn latency_vs_load(results: &[RunResult]) -> Option<String> {
    // (label, scenario) → rate → the latest result at that rate.
    let mut groups: BTreeMap<(String, String), BTreeMap<u64, &RunResult>> = BTreeMap::new();
    for r in results.iter().filter(|r| r.mode == "open") {
        if let Some(rate) = r.rate {
            groups
                .entry((r.label.clone(), r.scenario.clone()))
                .or_default()
                .insert(rate, r);
        }
    }
    if groups.is_empty() {
        return None;
    }
    let mut series = Vec::new();
    for (i, ((label, scenario), by_rate)) in groups.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points = |f: fn(&RunResult) -> f64| -> Vec<(f64, f64)> {
            by_rate
                .iter()
                .map(|(rate, r)| (*rate as f64, f(r).max(0.001)))
                .collect()
        };
        series.push(Series {
            name: format!("{scenario} {label} p50"),
            color,
            line: Line::Solid,
            points: points(|r| r.p50_ms),
        });
        series.push(Series {
            name: format!("{scenario} {label} p99"),
            color,
            line: Line::Dashed,
            points: points(|r| r.p99_ms),
        });
        if by_rate.values().any(|r| r.baseline_p99_ms > 0.0) {
            series.push(Series {
                name: format!("{scenario} {label} echo p99"),
                color,
                line: Line::Dotted,
                points: points(|r| r.baseline_p99_ms),
            });
        }
    }
    Some(chart(
        "Latency against offered load (open loop)",
        &Axis {
            label: "offered load, requests/s (log)",
            log: true,
        },
        &Axis {
            label: "latency, ms (log)",
            log: true,
        },
        &series,
    ))
}

/// Lookup latency against dataset size, per label.
fn lookup_vs_size(results: &[RunResult]) -> Option<String> {
    // label → size (2 significant digits) → the run whose same-run echo ceiling was highest,
    // i.e. the one least disturbed by whatever else the machine was doing.
    let mut groups: BTreeMap<String, BTreeMap<u64, &RunResult>> = BTreeMap::new();
    for r in results
        .iter()
        .filter(|r| r.mode == "closed" && r.scenario == "lookup" && r.objects > 0)
    {
        let slot = groups
            .entry(r.label.clone())
            .or_default()
            .entry(two_digits(r.objects))
            .or_insert(r);
        if r.baseline_ops_per_sec > slot.baseline_ops_per_sec {
            *slot = r;
        }
    }
    if groups.is_empty() {
        return None;
    }
    let mut series = Vec::new();
    for (i, (label, by_size)) in groups.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        for (name, line, f) in [
            (
                "p50",
                Line::Solid,
                (|r: &RunResult| r.p50_ms) as fn(&RunResult) -> f64,
            ),
            ("p99", Line::Dashed, |r: &RunResult| r.p99_ms),
        ] {
            series.push(Series {
                name: format!("lookup {label} {name}"),
                color,
                line,
                points: by_size
                    .iter()
                    .map(|(size, r)| (*size as f64, f(r)))
                    .collect(),
            });
        }
    }
    Some(chart(
        "Lookup by phone: latency against dataset size (closed loop)",
        &Axis {
            label: "objects loaded (log)",
            log: true,
        },
        &Axis {
            label: "latency, ms",
            log: false,
        },
        &series,
    ))
}

/// `n` rounded to two significant digits (runs at "the same size" differ by what ingest added).
fn two_digits(n: u64) -> u64 {
    let mut scale = 1;
    while n / scale >= 100 {
        scale *= 10;
    }
    (n + scale / 2) / scale * scale
}

/// `bench plot`.
pub fn plot(args: &PlotArgs) -> anyhow::Result<()> {
    let results = read_results(&args.results)?;
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let mut wrote = 0;
    for (name, svg) in [
        ("latency-vs-load.svg", latency_vs_load(&results)),
        ("lookup-vs-size.svg", lookup_vs_size(&results)),
    ] {
        match svg {
            Some(svg) => {
                let path = args.out_dir.join(name);
                std::fs::write(&path, svg)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("bench: wrote {}", path.display());
                wrote += 1;
            }
            None => eprintln!("bench: no results for {name} in {}", args.results.display()),
        }
    }
    if wrote == 0 {
        bail!("nothing to plot: run `contextd bench run --results FILE` (with --rate for load sweeps) first");
    }
    Ok(())
}
