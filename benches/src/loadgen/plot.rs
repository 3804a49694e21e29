//! SVG charts of a run's figures (`loadgen --plot DIR`): a pure function from [`Figures`] to
//! SVG text, one chart per kind of measurement the run made, drawn with plotters' SVG backend
//! (text stays `<text>` elements, so no font files are read).

use super::figures::{Figures, SoakSample};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::ops::Range;
use std::path::Path;

/// Size of one chart, in SVG pixels.
const SIZE: (u32, u32) = (820, 480);
/// The write floor's and targets' colour: what ours is compared with.
const FLOOR_COLOUR: RGBColor = RGBColor(90, 90, 90);
/// Colours of the measured series, in turn.
const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// One SVG file to write.
#[derive(Debug)]
pub(crate) struct Chart {
    /// File name inside the plot directory.
    pub file: &'static str,
    /// The SVG document.
    pub svg: String,
}

/// One line of a chart.
struct Series {
    label: String,
    points: Vec<(f64, f64)>,
    colour: RGBColor,
    /// A circle on every point (measured sizes); off for dense curves.
    markers: bool,
}

/// One panel: axes and the lines on them.
struct Panel {
    title: String,
    x_desc: &'static str,
    y_desc: &'static str,
    log_x: bool,
    /// The y axis ends at 1 (a share), not above the largest value.
    share: bool,
    series: Vec<Series>,
}

impl Series {
    fn new(label: impl Into<String>, colour: RGBColor, points: Vec<(f64, f64)>) -> Self {
        Series {
            label: label.into(),
            points,
            colour,
            markers: true,
        }
    }
}

/// Every chart the figures have data for (none for a run that measured nothing plottable).
pub(crate) fn render(figures: &Figures) -> Result<Vec<Chart>, String> {
    let mut charts = Vec::new();
    let mut add = |file: &'static str, panels: Vec<Panel>| -> Result<(), String> {
        if panels
            .iter()
            .any(|p| p.series.iter().any(|s| !s.points.is_empty()))
        {
            charts.push(Chart {
                file,
                svg: svg(&panels)?,
            });
        }
        Ok(())
    };
    add("fanout-cpu.svg", vec![fanout_cpu(figures)])?;
    add("fanout-latency.svg", vec![fanout_latency(figures)])?;
    add("idle-rss.svg", vec![idle_rss(figures)])?;
    add("cluster-cpu.svg", vec![cluster_cpu(figures)])?;
    add("soak.svg", soak(&figures.soak))?;
    Ok(charts)
}

/// Writes every chart and the figures as JSON (`json`, e.g. `figures.json`) into `dir`;
/// returns the paths written.
pub(crate) fn write(dir: &Path, json: &str, figures: &Figures) -> Result<Vec<String>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut written = Vec::new();
    let text = serde_json::to_string_pretty(figures).map_err(|e| e.to_string())?;
    let mut files = vec![(json.to_string(), text)];
    files.extend(
        render(figures)?
            .into_iter()
            .map(|c| (c.file.to_string(), c.svg)),
    );
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path.display().to_string());
    }
    Ok(written)
}

/// "10k", "1.5k", "250", "0.42": short tick labels.
fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1000.0 {
        let k = v / 1000.0;
        if (k - k.round()).abs() < 0.05 {
            format!("{:.0}k", k)
        } else {
            format!("{k:.1}k")
        }
    } else if a >= 10.0 || (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        let two = format!("{v:.2}");
        two.trim_end_matches('0').to_string()
    }
}

fn fanout_cpu(f: &Figures) -> Panel {
    let pick = |tls: bool, get: fn(&super::figures::FanoutPoint) -> Option<f64>| {
        f.fanout
            .iter()
            .filter(|p| p.tls == tls)
            .filter_map(|p| Some((f64::from(p.subscribers), get(p)? / 1e3)))
            .collect::<Vec<_>>()
    };
    let deflate = if f.fanout.iter().any(|p| p.deflate) {
        " (permessage-deflate)"
    } else {
        ""
    };
    Panel {
        title: format!("Server CPU per fan-out delivery against the write floor{deflate}"),
        x_desc: "subscribers on one channel",
        y_desc: "CPU per delivery (µs)",
        log_x: true,
        share: false,
        series: vec![
            Series::new(
                "ferrocast, burst",
                COLOURS[0],
                pick(false, |p| p.burst_cpu_ns),
            ),
            Series::new(
                "ferrocast, one publish at a time",
                COLOURS[1],
                pick(false, |p| p.single_cpu_ns),
            ),
            Series::new(
                "write floor: one write per delivery",
                FLOOR_COLOUR,
                pick(false, |p| p.floor_cpu_ns),
            ),
            Series::new(
                "ferrocast over TLS, burst",
                COLOURS[2],
                pick(true, |p| p.burst_cpu_ns),
            ),
            Series::new(
                "ferrocast over TLS, one publish at a time",
                COLOURS[4],
                pick(true, |p| p.single_cpu_ns),
            ),
            Series::new(
                "TLS floor: one sealed write per delivery",
                COLOURS[3],
                pick(true, |p| p.floor_cpu_ns),
            ),
        ],
    }
}

fn fanout_latency(f: &Figures) -> Panel {
    let series = f
        .latency
        .iter()
        .enumerate()
        .map(|(i, cdf)| Series {
            label: format!(
                "{} subscribers{}",
                short(f64::from(cdf.subscribers)),
                if cdf.tls { ", TLS" } else { "" }
            ),
            points: cdf
                .points
                .iter()
                .map(|&(ns, share)| (ns.max(1.0) / 1e6, share))
                .collect(),
            colour: COLOURS[i % COLOURS.len()],
            markers: false,
        })
        .collect();
    Panel {
        title: "Fan-out delivery latency, one publish at a time (CDF)".into(),
        x_desc: "publish-to-receive latency (ms)",
        y_desc: "share of deliveries",
        log_x: true,
        share: true,
        series,
    }
}

fn idle_rss(f: &Figures) -> Panel {
    const MIB: f64 = 1024.0 * 1024.0;
    let curve = |tls: bool| {
        let points: Vec<_> = f.idle.iter().filter(|p| p.tls == tls).collect();
        let mut out = Vec::new();
        if let Some(first) = points.first() {
            out.push((0.0, first.base_rss_bytes / MIB));
            out.extend(
                points
                    .iter()
                    .map(|p| (f64::from(p.connections), p.rss_bytes / MIB)),
            );
        }
        out
    };
    let (ours, over_tls) = (curve(false), curve(true));
    let mut target = Vec::new();
    if let Some(first) = f.idle.first() {
        let base = first.base_rss_bytes;
        let most = f.idle.iter().map(|p| p.connections).max().unwrap_or(0);
        target = vec![
            (0.0, base / MIB),
            (f64::from(most), (base + 4096.0 * f64::from(most)) / MIB),
        ];
    }
    let mut target = Series::new("4 KiB per connection (target)", FLOOR_COLOUR, target);
    target.markers = false;
    Panel {
        title: "Server RSS against subscribed idle connections".into(),
        x_desc: "subscribed idle connections",
        y_desc: "server RSS (MiB)",
        log_x: false,
        share: false,
        series: vec![
            Series::new("ferrocast RSS", COLOURS[0], ours),
            Series::new("ferrocast RSS over TLS", COLOURS[2], over_tls),
            target,
        ],
    }
}

fn cluster_cpu(f: &Figures) -> Panel {
    let nodes = f
        .cluster
        .iter()
        .map(|p| p.node_burst_cpu_ns.len())
        .max()
        .unwrap_or(0);
    let mut series: Vec<Series> = (0..nodes)
        .map(|i| {
            let role = if i == 0 { " (publishes)" } else { "" };
            Series::new(
                format!("node {}{role}", i + 1),
                COLOURS[(i + 2) % COLOURS.len()],
                f.cluster
                    .iter()
                    .filter_map(|p| {
                        let v = p.node_burst_cpu_ns.get(i)?;
                        Some((f64::from(p.subscribers), v / 1e3))
                    })
                    .collect(),
            )
        })
        .collect();
    let all = |get: fn(&super::figures::ClusterPoint) -> f64| -> Vec<(f64, f64)> {
        f.cluster
            .iter()
            .map(|p| (f64::from(p.subscribers), get(p) / 1e3))
            .collect()
    };
    series.push(Series::new(
        "all nodes together",
        COLOURS[0],
        all(|p| p.all_nodes_burst_cpu_ns),
    ));
    series.push(Series::new(
        "one node, no Redis",
        FLOOR_COLOUR,
        all(|p| p.single_node_burst_cpu_ns),
    ));
    Panel {
        title: format!("Cluster of {nodes} nodes: CPU per fan-out delivery, burst"),
        x_desc: "subscribers, spread over the nodes",
        y_desc: "CPU per delivery (µs)",
        log_x: true,
        share: false,
        series,
    }
}

fn soak(samples: &[SoakSample]) -> Vec<Panel> {
    let line = |label: &str, colour, get: fn(&SoakSample) -> f64| {
        Series::new(
            label,
            colour,
            samples.iter().map(|s| (s.t_s, get(s))).collect(),
        )
    };
    vec![
        Panel {
            title: "Soak: server RSS over time".into(),
            x_desc: "seconds since the churn started",
            y_desc: "server RSS (MiB)",
            log_x: false,
            share: false,
            series: vec![line("server RSS", COLOURS[0], |s| {
                s.rss_bytes as f64 / (1024.0 * 1024.0)
            })],
        },
        Panel {
            title: "Soak: descriptors and engine state over time".into(),
            x_desc: "seconds since the churn started",
            y_desc: "count",
            log_x: false,
            share: false,
            series: vec![
                line("open descriptors", COLOURS[1], |s| s.fds as f64),
                line("connections", COLOURS[2], |s| s.connections as f64),
                line("occupied channels", COLOURS[3], |s| s.channels as f64),
            ],
        },
    ]
}

/// The panels stacked in one SVG.
fn svg(panels: &[Panel]) -> Result<String, String> {
    let mut out = String::new();
    {
        let height = SIZE.1 * panels.len() as u32;
        let root = SVGBackend::with_string(&mut out, (SIZE.0, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let areas = root.split_evenly((panels.len(), 1));
        for (panel, area) in panels.iter().zip(&areas) {
            draw(area, panel)?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// The range of `values` with room around it (`head`: a share of the span above, for the
/// legend), from zero for amounts.
fn bounds(values: impl Iterator<Item = f64>, log: bool, from_zero: bool, head: f64) -> Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return if log { 1.0..10.0 } else { 0.0..1.0 };
    }
    if log {
        return lo / 1.5..hi * 1.5;
    }
    if from_zero {
        lo = lo.min(0.0);
    }
    let span = (hi - lo).max(hi.abs() * 0.1).max(1e-9);
    let lo = if from_zero { lo } else { lo - span * 0.05 };
    lo..hi + span * head
}

fn draw(area: &DrawingArea<SVGBackend<'_>, Shift>, panel: &Panel) -> Result<(), String> {
    let xs = || {
        panel
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
    };
    let ys = panel
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1));
    let x = bounds(xs(), panel.log_x, !panel.log_x, 0.03);
    let y = if panel.share {
        0.0..1.05
    } else {
        bounds(ys, false, true, 0.3)
    };
    if panel.log_x {
        draw_on(area, panel, x.log_scale(), y)
    } else {
        draw_on(area, panel, x, y)
    }
}

fn draw_on<X>(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    panel: &Panel,
    x: X,
    y: Range<f64>,
) -> Result<(), String>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x, y)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(panel.x_desc)
        .y_desc(panel.y_desc)
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(&|v| short(*v))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(err)?;
    for series in &panel.series {
        if series.points.is_empty() {
            continue;
        }
        let style = series.colour.stroke_width(2);
        let colour = series.colour;
        chart
            .draw_series(LineSeries::new(series.points.iter().copied(), style))
            .map_err(err)?
            .label(series.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        if series.markers {
            chart
                .draw_series(
                    series
                        .points
                        .iter()
                        .map(|&p| Circle::new(p, 4, series.colour.filled())),
                )
                .map_err(err)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(180, 180, 180))
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadgen::figures::{ClusterPoint, FanoutPoint, IdlePoint, LatencyCdf};
    use crate::loadgen::histogram::Histogram;

    fn small() -> Figures {
        let mut h = Histogram::new();
        for v in [200_000, 400_000, 900_000, 3_000_000] {
            h.record(v);
        }
        Figures {
            fanout: vec![
                FanoutPoint {
                    subscribers: 100,
                    deflate: false,
                    tls: false,
                    burst_cpu_ns: Some(9_000.0),
                    single_cpu_ns: Some(12_000.0),
                    floor_cpu_ns: Some(7_000.0),
                },
                FanoutPoint {
                    subscribers: 1000,
                    deflate: false,
                    tls: false,
                    burst_cpu_ns: Some(8_000.0),
                    single_cpu_ns: None,
                    floor_cpu_ns: Some(6_500.0),
                },
                FanoutPoint {
                    subscribers: 1000,
                    deflate: false,
                    tls: true,
                    burst_cpu_ns: Some(10_000.0),
                    single_cpu_ns: None,
                    floor_cpu_ns: Some(8_000.0),
                },
            ],
            latency: vec![
                LatencyCdf::of(1000, false, &h),
                LatencyCdf::of(1000, true, &h),
            ],
            idle: vec![
                IdlePoint {
                    connections: 1000,
                    rss_bytes: 8e6,
                    base_rss_bytes: 6e6,
                    tls: false,
                },
                IdlePoint {
                    connections: 5000,
                    rss_bytes: 16e6,
                    base_rss_bytes: 6e6,
                    tls: false,
                },
            ],
            cluster: vec![ClusterPoint {
                subscribers: 1000,
                node_burst_cpu_ns: vec![7_000.0, 5_000.0],
                all_nodes_burst_cpu_ns: 6_000.0,
                single_node_burst_cpu_ns: 6_500.0,
            }],
            soak: (0..3)
                .map(|i| SoakSample {
                    t_s: f64::from(i) * 10.0,
                    rss_bytes: 9 << 20,
                    fds: 20 + i as u64,
                    connections: 40,
                    channels: 12,
                    subscriptions: 90,
                    presence_members: 10,
                })
                .collect(),
        }
    }

    fn chart<'a>(charts: &'a [Chart], file: &str) -> &'a str {
        &charts
            .iter()
            .find(|c| c.file == file)
            .unwrap_or_else(|| panic!("no {file} among {charts:?}"))
            .svg
    }

    #[test]
    fn a_small_report_renders_every_chart_with_its_series_and_labels() {
        let charts = render(&small()).expect("renders");
        assert_eq!(charts.len(), 5, "{charts:?}");
        for c in &charts {
            assert!(c.svg.starts_with("<svg"), "{}", c.file);
            assert!(c.svg.contains("</svg>"), "{}", c.file);
            // Every measured series is drawn: lines as polylines, points as circles.
            assert!(c.svg.contains("<polyline"), "{}", c.file);
        }
        let cpu = chart(&charts, "fanout-cpu.svg");
        for text in [
            "ferrocast, burst",
            "ferrocast, one publish at a time",
            "write floor: one write per delivery",
            "subscribers on one channel",
            "CPU per delivery (µs)",
        ] {
            assert!(cpu.contains(text), "fanout-cpu.svg lacks {text:?}");
        }
        // Plain: 2 burst + 1 single + 2 floor circles; TLS: 1 burst + 1 floor.
        assert_eq!(cpu.matches("<circle").count(), 7, "{cpu}");
        assert!(cpu.contains("ferrocast over TLS, burst"));
        assert!(cpu.contains("TLS floor: one sealed write per delivery"));
        let cdf = chart(&charts, "fanout-latency.svg");
        assert!(cdf.contains("1k subscribers") && cdf.contains("share of deliveries"));
        assert!(cdf.contains("1k subscribers, TLS"));
        let idle = chart(&charts, "idle-rss.svg");
        assert!(idle.contains("ferrocast RSS") && idle.contains("4 KiB per connection (target)"));
        let cluster = chart(&charts, "cluster-cpu.svg");
        for text in [
            "node 1 (publishes)",
            "node 2",
            "all nodes together",
            "one node, no Redis",
        ] {
            assert!(cluster.contains(text), "cluster-cpu.svg lacks {text:?}");
        }
        let soak = chart(&charts, "soak.svg");
        for text in [
            "server RSS (MiB)",
            "open descriptors",
            "connections",
            "occupied channels",
        ] {
            assert!(soak.contains(text), "soak.svg lacks {text:?}");
        }
    }

    #[test]
    fn a_run_without_plottable_figures_draws_nothing() {
        assert!(render(&Figures::default()).expect("renders").is_empty());
        let only_idle = Figures {
            idle: small().idle,
            ..Figures::default()
        };
        let charts = render(&only_idle).expect("renders");
        assert_eq!(
            charts.iter().map(|c| c.file).collect::<Vec<_>>(),
            ["idle-rss.svg"]
        );
    }

    #[test]
    fn tick_labels_are_short() {
        assert_eq!(short(10_000.0), "10k");
        assert_eq!(short(1_500.0), "1.5k");
        assert_eq!(short(250.0), "250");
        assert_eq!(short(2.5), "2.5");
        assert_eq!(short(5.0), "5");
        assert_eq!(short(0.42), "0.42");
        assert_eq!(short(0.5), "0.5");
    }
}
