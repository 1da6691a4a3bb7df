//! Small helpers for running commands and saying what is done.

use std::{
    ffi::OsStr,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{Context as _, bail};

/// Prints a step heading.
pub fn step(what: &str) {
    eprintln!("\n==> {what}");
}

/// Whether a command exists on PATH and runs.
pub fn has(cmd: &str, arg: &str) -> bool {
    Command::new(cmd)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Runs a command, inheriting output; fails if it does.
pub fn run(cmd: &str, args: &[&str]) -> anyhow::Result<()> {
    run_env(cmd, args, &[])
}

pub fn run_env(cmd: &str, args: &[&str], env: &[(&str, &OsStr)]) -> anyhow::Result<()> {
    let mut c = Command::new(cmd);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let status = c
        .status()
        .with_context(|| format!("running {cmd} {}", args.join(" ")))?;
    if !status.success() {
        bail!("{cmd} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Runs a command and returns its standard output, or `None` if it cannot run or fails.
pub fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The cargo that runs us.
fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    cargo_env(args, &[])
}

pub fn cargo_env(args: &[&str], env: &[(&str, &OsStr)]) -> anyhow::Result<()> {
    let root = workspace_root()?;
    let mut c = Command::new(cargo_bin());
    c.args(args).current_dir(root);
    for (k, v) in env {
        c.env(k, v);
    }
    // bpf-linker and the nightly toolchain are found through PATH; make sure cargo's own
    // bin directory is on it (a fresh shell may not have it).
    c.env("PATH", path_with_cargo_bin());
    let status = c.status().context("running cargo")?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// PATH with ~/.cargo/bin in front.
pub fn path_with_cargo_bin() -> std::ffi::OsString {
    let mut paths = vec![cargo_home().join("bin")];
    if let Some(p) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(paths).unwrap_or_default()
}

pub fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

pub fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").context("run through `cargo xtask`")?;
    PathBuf::from(manifest)
        .parent()
        .map(PathBuf::from)
        .context("workspace root")
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn require_root(why: &str) -> anyhow::Result<()> {
    if !is_root() {
        bail!("this needs root: {why}. Run it as root (e.g. `sudo -E cargo xtask ...`).");
    }
    Ok(())
}
