//! The report: a Markdown file with a headline table, one section per benchmark (method,
//! tables, plots, caveats), the machine it ran on, and every raw number in `raw.json`.

use std::{fmt::Write as _, fs, path::Path, process::Command};

use serde::Serialize;

use crate::svg::Plot;

/// What one benchmark produced.
#[derive(Debug, Default, Serialize)]
pub struct Section {
    /// Short name, also the `--only` filter: `prog-run`, `flood`, `takeover`, ...
    pub id: String,
    pub title: String,
    /// How it was measured: setup, parameters, repetitions (Markdown).
    pub method: String,
    pub tables: Vec<Table>,
    pub plots: Vec<Plot>,
    /// Rows for the report's headline table.
    pub headline: Vec<Headline>,
    /// Caveats: what this does not measure, or where it is weak.
    pub notes: Vec<String>,
    /// Every raw sample, for `raw.json`.
    pub raw: serde_json::Value,
    /// Set when the benchmark failed: the report says so instead of a number.
    pub error: Option<String>,
}

/// A Markdown table.
#[derive(Debug, Default, Serialize)]
pub struct Table {
    pub caption: String,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(caption: &str, header: &[&str]) -> Table {
        Table {
            caption: caption.into(),
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn markdown(&self, out: &mut String) {
        if !self.caption.is_empty() {
            let _ = writeln!(out, "{}\n", self.caption);
        }
        let _ = writeln!(out, "| {} |", self.header.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(self.header.len()));
        for row in &self.rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out.push('\n');
    }
}

/// One line of the headline table.
#[derive(Debug, Serialize)]
pub struct Headline {
    pub measure: String,
    pub ours: String,
    pub baseline: String,
    /// The comparison, e.g. "1.3× the floor" or "5.6× fewer requests".
    pub comparison: String,
}

impl Headline {
    pub fn new(measure: &str, ours: String, baseline: String, comparison: String) -> Headline {
        Headline {
            measure: measure.into(),
            ours,
            baseline,
            comparison,
        }
    }
}

/// The machine and software the run used.
#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub rustc: String,
    pub commit: String,
    pub date: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .unwrap_or("unknown")
            .trim()
            .to_owned();
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0);
        let memory_gib = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .map(|kb| kb / 1024.0 / 1024.0)
            .unwrap_or(0.0);
        Machine {
            cpu,
            cores,
            memory_gib,
            kernel: output(&["uname", "-sr"]),
            rustc: output(&["rustc", "--version"]),
            commit: output(&["git", "describe", "--always", "--dirty"]),
            date: output(&["date", "-u", "+%Y-%m-%d %H:%M UTC"]),
        }
    }
}

fn output(args: &[&str]) -> String {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    /// The command that produced it.
    pub command: String,
    pub seconds: f64,
    pub sections: Vec<Section>,
}

impl Report {
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(out, "# l2announcer benchmarks\n");
        let _ = writeln!(
            out,
            "Produced by `{}` in {:.0} s, on {} ({} cores, {:.0} GiB), {}, {}, commit `{}`, {}.\n",
            self.command,
            self.seconds,
            m.cpu,
            m.cores,
            m.memory_gib,
            m.kernel,
            m.rustc,
            m.commit,
            m.date
        );
        let _ = writeln!(
            out,
            "Everything below was measured in this one run on this one machine. Where the machine's \
             speed decides a number, the report gives it beside a baseline measured the same way \
             in the same run, and the ratio. Every figure is a median of repeated trials with its \
             spread; `raw.json` has every sample.\n"
        );
        let _ = writeln!(out, "## Headline\n");
        let _ = writeln!(out, "| measure | l2announcer | baseline | comparison |");
        let _ = writeln!(out, "|---|---|---|---|");
        for s in &self.sections {
            if let Some(e) = &s.error {
                let _ = writeln!(out, "| {} | failed: {} | | |", s.title, one_line(e));
            }
            for h in &s.headline {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    h.measure, h.ours, h.baseline, h.comparison
                );
            }
        }
        out.push('\n');
        for s in &self.sections {
            let _ = writeln!(out, "## {}\n", s.title);
            if let Some(e) = &s.error {
                let _ = writeln!(out, "**This benchmark failed:** `{}`\n", one_line(e));
            }
            if !s.method.is_empty() {
                let _ = writeln!(out, "{}\n", s.method.trim());
            }
            for t in &s.tables {
                t.markdown(&mut out);
            }
            for p in &s.plots {
                let _ = writeln!(out, "![{}]({})\n", p.title, p.file);
            }
            for n in &s.notes {
                let _ = writeln!(out, "- {n}");
            }
            if !s.notes.is_empty() {
                out.push('\n');
            }
        }
        out
    }

    /// Writes `report.md`, `raw.json` and every plot into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        fs::create_dir_all(dir)?;
        for s in &self.sections {
            for p in &s.plots {
                fs::write(dir.join(&p.file), p.render())?;
            }
        }
        fs::write(dir.join("report.md"), self.markdown())?;
        fs::write(dir.join("raw.json"), serde_json::to_string_pretty(self)?)?;
        Ok(())
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '|'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::svg::PlotKind;

    #[test]
    fn markdown_has_headline_sections_plots_and_failures() {
        let mut table = Table::new("Per packet", &["packet", "ns"]);
        table.row(vec!["ARP".into(), "12".into()]);
        let report = Report {
            machine: Machine::probe(),
            command: "cargo xtask bench".into(),
            seconds: 3.0,
            sections: vec![
                Section {
                    id: "a".into(),
                    title: "Alpha".into(),
                    method: "How.".into(),
                    tables: vec![table],
                    plots: vec![Plot {
                        file: "a.svg".into(),
                        title: "A".into(),
                        unit: "ns".into(),
                        kind: PlotKind::Bars(vec![("x".into(), 1.0)]),
                    }],
                    headline: vec![Headline::new("cost", "1".into(), "2".into(), "2×".into())],
                    notes: vec!["weak".into()],
                    ..Section::default()
                },
                Section {
                    id: "b".into(),
                    title: "Beta".into(),
                    error: Some("no\nroot | here".into()),
                    ..Section::default()
                },
            ],
        };
        let md = report.markdown();
        assert!(md.contains("| cost | 1 | 2 | 2× |"), "{md}");
        assert!(md.contains("| Beta | failed: no root   here | | |"), "{md}");
        assert!(md.contains(
            "## Alpha\n\nHow.\n\nPer packet\n\n| packet | ns |\n|---|---|\n| ARP | 12 |"
        ));
        assert!(md.contains("![A](a.svg)"));
        assert!(md.contains("- weak"));
        assert!(md.contains("`cargo xtask bench`"));
    }
}
