//! The run's findings: table rows (ours, floor, ratio), correctness failures, and the
//! formatting of times, rates and sizes.

use super::figures::Figures;

/// One line of the summary table.
pub(crate) struct Row {
    /// What was measured.
    pub scenario: String,
    /// Our figure.
    pub ours: String,
    /// The floor it is compared with.
    pub floor: String,
    /// Ours divided by the floor.
    pub ratio: String,
}

/// Everything a run found.
#[derive(Default)]
pub(crate) struct Report {
    /// Summary table.
    pub rows: Vec<Row>,
    /// Correctness failures (loss, duplicates, disorder, refused or dropped clients).
    pub failures: Vec<String>,
    /// Notes printed under the table.
    pub notes: Vec<String>,
    /// The measured numbers the charts are drawn from.
    pub measured: Figures,
    /// Figures kept for later rows to compare with (the plain ones, under `--tls`).
    figures: std::collections::HashMap<String, f64>,
}

impl Report {
    /// Adds a table row.
    pub(crate) fn row(
        &mut self,
        scenario: String,
        ours: String,
        floor: Option<String>,
        ratio: Option<f64>,
    ) {
        self.rows.push(Row {
            scenario,
            ours,
            floor: floor.unwrap_or_else(|| "—".into()),
            ratio: ratio.map_or_else(|| "—".into(), |r| format!("{r:.1}×")),
        });
    }

    /// Keeps a figure, when there is one, under `key`.
    pub(crate) fn keep(&mut self, key: String, value: Option<f64>) {
        if let Some(value) = value {
            self.figures.insert(key, value);
        }
    }

    /// A figure kept under `key`.
    pub(crate) fn figure(&self, key: &str) -> Option<f64> {
        self.figures.get(key).copied()
    }

    /// Records a correctness failure (and prints it at once).
    pub(crate) fn fail(&mut self, what: String) {
        println!("  FAILED: {what}");
        self.failures.push(what);
    }

    /// The summary table as Markdown.
    pub(crate) fn table(&self) -> String {
        let header = ["scenario", "ours", "floor", "ratio"];
        let cells: Vec<[&str; 4]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.scenario.as_str(),
                    r.ours.as_str(),
                    r.floor.as_str(),
                    r.ratio.as_str(),
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &cells {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |row: [&str; 4]| {
            let padded: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let mut out = line(header);
        let dashes: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        out.push_str(&format!("|-{}-|\n", dashes.join("-|-")));
        for row in cells {
            out.push_str(&line(row));
        }
        out
    }
}

/// The median of `values` (0 when empty).
pub(crate) fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// A duration in nanoseconds, in a readable unit.
pub(crate) fn ns(value: f64) -> String {
    if value < 1_000.0 {
        format!("{value:.0} ns")
    } else if value < 1_000_000.0 {
        format!("{:.2} µs", value / 1e3)
    } else if value < 1_000_000_000.0 {
        format!("{:.2} ms", value / 1e6)
    } else {
        format!("{:.2} s", value / 1e9)
    }
}

/// A rate per second.
pub(crate) fn rate(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2} M/s", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1} k/s", value / 1e3)
    } else {
        format!("{value:.0}/s")
    }
}

/// A byte count in KiB or MiB.
pub(crate) fn bytes(value: f64) -> String {
    if value.abs() >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", value / (1024.0 * 1024.0))
    } else {
        format!("{:.2} KiB", value / 1024.0)
    }
}

/// A client count as `1k`, `10k`, `19k`, or the number itself.
pub(crate) fn count(n: u32) -> String {
    if n >= 1000 && n.checked_rem(1000) == Some(0) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// `a / b` when both are known and `b` is positive.
pub(crate) fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_units() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(ns(1500.0), "1.50 µs");
        assert_eq!(rate(2_500_000.0), "2.50 M/s");
        assert_eq!(count(10_000), "10k");
        assert_eq!(ratio(Some(2.0), Some(0.0)), None);
    }

    #[test]
    fn the_table_is_aligned_markdown() {
        let mut r = Report::default();
        r.row("a".into(), "1".into(), None, Some(2.0));
        let t = r.table();
        assert!(t.contains("| a        | 1    | —     | 2.0×  |"), "{t}");
    }
}
