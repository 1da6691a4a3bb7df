//! `l2announcer-bench`: the benchmarks behind `cargo xtask bench`. Each one builds its own lab
//! (namespaces, veths, the API test kit, the real `l2announcer` binary from `L2ANNOUNCER_BIN`),
//! measures, tears the lab down, and returns a report section. Nothing here is a test: no
//! number is asserted.

mod control;
mod flood;
mod lab;
mod operator;
mod probe;
mod prog_run;
mod report;
mod stats;
mod svg;

use std::{
    panic::{AssertUnwindSafe, catch_unwind},
    path::PathBuf,
    time::Instant,
};

use report::{Machine, Report, Section};

const USAGE: &str = "\
usage: l2announcer-bench [--out DIR] [--quick] [--only ID[,ID...]]

  --out DIR   where report.md, raw.json and the plots go (default bench/results)
  --quick     fewer repetitions: a smoke run of every benchmark, not for publishing
  --only IDS  run only these benchmarks: prog-run, flood, announce, takeover, api-cost,
              spread, agent-resources, operator

Needs root (namespaces, XDP) and L2ANNOUNCER_BIN pointing at a release build of
l2announcer; `cargo xtask bench` sets that up.
";

/// What every benchmark is given.
pub struct Ctx {
    /// Fewer repetitions, for a smoke run.
    pub quick: bool,
}

impl Ctx {
    /// `full` repetitions normally, `quick` with `--quick`.
    pub fn reps(&self, full: usize, quick: usize) -> usize {
        if self.quick { quick } else { full }
    }
}

type Bench = fn(&Ctx) -> anyhow::Result<Section>;

/// Every benchmark, in report order.
const BENCHES: &[(&str, &str, Bench)] = &[
    (
        "prog-run",
        "Per-packet cost of the XDP program (BPF_PROG_RUN)",
        prog_run::run,
    ),
    (
        "flood",
        "End to end: replies per second and reply latency against the kernel",
        flood::run,
    ),
    (
        "announce",
        "From a Service's IP to the first ARP reply",
        control::announce,
    ),
    (
        "takeover",
        "Takeover after the holder stops or is killed",
        control::takeover,
    ),
    (
        "api-cost",
        "API requests caused by leases: 100 services on 10 nodes",
        control::api_cost,
    ),
    (
        "spread",
        "Lease spread: 100 services on 5 nodes",
        control::spread,
    ),
    (
        "agent-resources",
        "Agent memory and CPU by number of services",
        control::agent_resources,
    ),
    (
        "operator",
        "LB-IPAM operator cold start: 10,000 services",
        operator::run,
    ),
];

fn main() -> anyhow::Result<()> {
    let mut out = PathBuf::from("bench/results");
    let mut quick = false;
    let mut only: Option<Vec<String>> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--out" => {
                out = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--out needs a directory"))?
                    .into()
            }
            "--quick" => quick = true,
            "--only" => {
                let ids = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--only needs ids"))?;
                only = Some(ids.split(',').map(str::to_owned).collect());
            }
            _ => {
                eprint!("{USAGE}");
                std::process::exit(2);
            }
        }
    }
    if let Some(ids) = &only {
        for id in ids {
            anyhow::ensure!(
                BENCHES.iter().any(|(known, _, _)| known == id),
                "unknown benchmark {id:?}\n{USAGE}"
            );
        }
    }
    anyhow::ensure!(
        std::env::var_os("L2ANNOUNCER_BIN").is_some(),
        "L2ANNOUNCER_BIN is not set\n{USAGE}"
    );
    let ctx = Ctx { quick };
    let started = Instant::now();
    let mut sections = Vec::new();
    for (id, title, bench) in BENCHES {
        if only
            .as_ref()
            .is_some_and(|ids| !ids.iter().any(|i| i == id))
        {
            continue;
        }
        eprintln!("bench: {id}: {title}");
        let t = Instant::now();
        // The lab helpers panic on failure (and clean up on unwind): a failed benchmark is
        // reported as failed, and the others still run.
        let result = catch_unwind(AssertUnwindSafe(|| bench(&ctx)));
        let mut section = match result {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => failed(format!("{e:#}")),
            Err(panic) => failed(
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".into()),
            ),
        };
        section.id = id.to_string();
        if section.title.is_empty() {
            section.title = title.to_string();
        }
        eprintln!(
            "bench: {id}: done in {:.0} s{}",
            t.elapsed().as_secs_f64(),
            match &section.error {
                Some(e) => format!(", FAILED: {e}"),
                None => String::new(),
            }
        );
        sections.push(section);
    }
    let mut command = String::from("cargo xtask bench");
    if quick {
        command.push_str(" --quick");
    }
    if let Some(ids) = &only {
        command.push_str(&format!(" --only {}", ids.join(",")));
    }
    let report = Report {
        machine: Machine::probe(),
        command,
        seconds: started.elapsed().as_secs_f64(),
        sections,
    };
    report.write(&out)?;
    eprintln!(
        "bench: report written to {}",
        out.join("report.md").display()
    );
    let failures = report.sections.iter().filter(|s| s.error.is_some()).count();
    anyhow::ensure!(
        failures == 0,
        "{failures} benchmark(s) failed; see the report"
    );
    Ok(())
}

fn failed(error: String) -> Section {
    Section {
        error: Some(error),
        ..Section::default()
    }
}
