//! `cargo xtask <command>`: setup, test, crds, bench, demo.

mod crds;
mod demo;
mod setup;
mod util;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  setup   install what the build and the tests need (Debian packages, nightly rust-src,
          bpf-linker for LLVM 22, the Python kubernetes client, helm-sdkpy, python-hcl2
          and pyyaml for the deploy/ tests); idempotent
  test    setup, then the whole test suite (needs root: namespaces and XDP)
  crds    write the CRDs generated from api/ into deploy/crds/ and the Helm chart, and render
          deploy/manifests/ from the Kustomize overlays; `crds --check` fails if any is stale
  bench   setup, then the benchmarks (release build, needs root): the XDP program against a
          floor and the kernel, takeover, API cost, spread, memory, the operator's cold start;
          writes bench/results/report.md, raw.json and SVG plots. `bench --quick` is a smoke
          run into target/bench-quick/; `bench --only prog-run,flood` picks benchmarks
  demo    setup, then a network-namespace lab where l2announcer answers ARP and NDP for a
          virtual IPv4 and IPv6 address; `demo --hold` keeps the lab up until Ctrl-C
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup::run(),
        Some("test") => setup::run().and_then(|()| test(&args[1..])),
        Some("crds") => crds::run(&args[1..]),
        Some("demo") => setup::run().and_then(|()| demo::run(&args[1..])),
        Some("bench") => setup::run().and_then(|()| bench(&args[1..])),
        _ => {
            eprint!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The whole suite: unit tests of every crate, the BPF_PROG_RUN tests, and the namespace lab
/// tests that drive the real binary. Extra arguments go to `cargo test` (e.g. a filter).
fn test(extra: &[String]) -> anyhow::Result<()> {
    util::require_root("the tests create network namespaces and load XDP programs")?;
    util::step("building l2announcer");
    util::cargo(&["build", "--package", "l2announcer", "--bin", "l2announcer"])?;
    let bin = util::workspace_root()?.join("target/debug/l2announcer");
    util::step("running the test suite");
    let mut args = vec!["test", "--workspace", "--exclude", "l2announcer-ebpf"];
    if !extra.is_empty() {
        args.push("--");
        args.extend(extra.iter().map(String::as_str));
    }
    util::cargo_env(&args, &[("L2ANNOUNCER_BIN", bin.as_os_str())])
}

/// The benchmarks: release builds of l2announcer and of the bench runner, which writes the
/// report into bench/results/. Extra arguments go to the runner (`--quick`, `--only ...`).
fn bench(extra: &[String]) -> anyhow::Result<()> {
    util::require_root("the benchmarks create network namespaces and load XDP programs")?;
    util::step("building l2announcer and the benchmarks (release)");
    util::cargo(&[
        "build",
        "--release",
        "--package",
        "l2announcer",
        "--bin",
        "l2announcer",
        "--package",
        "l2announcer-bench",
        "--bin",
        "l2announcer-bench",
    ])?;
    let root = util::workspace_root()?;
    let bin = root.join("target/release/l2announcer");
    // A smoke run must not overwrite the published report.
    let out = if extra.iter().any(|a| a == "--quick") {
        root.join("target/bench-quick")
    } else {
        root.join("bench/results")
    };
    util::step("running the benchmarks");
    // From the workspace root: the report names the commit it measured.
    let status = std::process::Command::new(root.join("target/release/l2announcer-bench"))
        .arg("--out")
        .arg(&out)
        .args(extra)
        .env("L2ANNOUNCER_BIN", &bin)
        .current_dir(&root)
        .status()?;
    anyhow::ensure!(
        status.success(),
        "the benchmarks failed ({status}); see the report"
    );
    Ok(())
}
