//! `cargo xtask setup`: installs what is missing, and nothing else.

use std::path::PathBuf;

use anyhow::{Context as _, bail};

use crate::util::{self, has, output, step};

/// Debian packages: LLVM 22 development files for bpf-linker; the network tools the lab
/// tests and the demo drive; kubectl for the API test kit's tests.
const PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "iproute2",
    "iputils-ping",
    "arping",
    "ndisc6",
    "tcpdump",
    "ethtool",
    "kubectl",
];

/// bpf-linker must be built against the same LLVM major version as the nightly rustc (22).
const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn run() -> anyhow::Result<()> {
    step("setup: checking what the build and the tests need");
    apt_packages()?;
    nightly_rust_src()?;
    bpf_linker()?;
    python_kubernetes()?;
    python_deploy_tools()?;
    eprintln!("setup: everything is in place");
    Ok(())
}

fn installed(pkg: &str) -> bool {
    output("dpkg-query", &["-W", "-f=${Status}", pkg])
        .is_some_and(|s| s.contains("install ok installed"))
}

fn apt_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        eprintln!("setup: Debian packages present");
        return Ok(());
    }
    if !util::is_root() {
        bail!(
            "missing Debian packages {}: run `cargo xtask setup` as root, or apt-get install them",
            missing.join(" ")
        );
    }
    eprintln!("setup: installing Debian packages: {}", missing.join(" "));
    util::run("apt-get", &["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&missing);
    crate::util::run_env(
        "apt-get",
        &args,
        &[("DEBIAN_FRONTEND", std::ffi::OsStr::new("noninteractive"))],
    )
}

fn nightly_rust_src() -> anyhow::Result<()> {
    let installed = output(
        "rustup",
        &["component", "list", "--installed", "--toolchain", "nightly"],
    )
    .context("rustup with a nightly toolchain is needed to build the eBPF program")?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("setup: nightly rust-src present");
        return Ok(());
    }
    eprintln!("setup: adding rust-src to the nightly toolchain");
    util::run(
        "rustup",
        &["component", "add", "rust-src", "--toolchain", "nightly"],
    )
}

fn llvm_bindir() -> Option<PathBuf> {
    output("llvm-config-22", &["--bindir"]).map(|s| PathBuf::from(s.trim()))
}

fn bpf_linker() -> anyhow::Result<()> {
    let linker = util::cargo_home().join("bin/bpf-linker");
    if let Some(v) = output(linker.to_str().unwrap_or("bpf-linker"), &["--version"]) {
        eprintln!("setup: {} present", v.trim());
        return Ok(());
    }
    let bindir = llvm_bindir().context("llvm-config-22 not found (llvm-22-dev)")?;
    eprintln!("setup: building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (a few minutes)");
    let mut paths = vec![bindir];
    paths.extend(std::env::split_paths(&util::path_with_cargo_bin()));
    let path = std::env::join_paths(paths)?;
    util::run_env(
        "cargo",
        &[
            "install",
            &format!("bpf-linker@{BPF_LINKER_VERSION}"),
            "--no-default-features",
            "--features",
            "llvm-22",
        ],
        &[("PATH", path.as_os_str())],
    )
}

/// The official Python client drives the API test kit in its own tests.
fn python_kubernetes() -> anyhow::Result<()> {
    if has("python3", "--version") && output("python3", &["-c", "import kubernetes"]).is_some() {
        eprintln!("setup: Python kubernetes client present");
        return Ok(());
    }
    eprintln!("setup: installing the Python kubernetes client");
    util::run(
        "python3",
        &["-m", "pip", "install", "--quiet", "kubernetes"],
    )
}

/// The deploy/ tests' Python modules: Helm's Go library (helm-sdkpy: lint and install the chart
/// into the API test kit), python-hcl2 (parse the Terraform module), PyYAML (read YAML as a
/// YAML 1.1 parser does). helm-sdkpy declares Python >= 3.12 but loads on 3.11, hence
/// `--ignore-requires-python`. Each is installed only if its import fails.
fn python_deploy_tools() -> anyhow::Result<()> {
    for (module, package, extra) in [
        ("helm_sdkpy", "helm-sdkpy", Some("--ignore-requires-python")),
        ("hcl2", "python-hcl2", None),
        ("yaml", "pyyaml", None),
    ] {
        if output("python3", &["-c", &format!("import {module}")]).is_some() {
            eprintln!("setup: Python {package} present");
            continue;
        }
        eprintln!("setup: installing the Python package {package}");
        let mut args = vec!["-m", "pip", "install", "--quiet"];
        args.extend(extra);
        args.push(package);
        util::run("python3", &args)?;
    }
    Ok(())
}
