//! The README stays true: every `l2announcer` command it shows parses with the real binary,
//! every flag in its tables is one the binary accepts, and every `cargo xtask` command it
//! names exists. (deploy/README.md's kubectl commands are run by tests/deploy.rs.)

use std::{collections::BTreeSet, process::Command};

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap()
}

/// `l2announcer <sub> --help` of the real binary.
fn help(sub: &str) -> String {
    let out = Command::new(l2announcer_tests::binary())
        .args([sub, "--help"])
        .output()
        .unwrap();
    assert!(out.status.success(), "l2announcer {sub} --help failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Lines of the README's ```sh blocks.
fn shell_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("```") {
            inside = line.trim() == "```sh";
            continue;
        }
        if inside {
            out.push(line.split(" #").next().unwrap_or("").trim().to_owned());
        }
    }
    out
}

fn flags_in(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_l2announcer_command_and_table_flag_is_accepted_by_the_binary() {
    let text = readme();
    let subcommands = ["agent", "operator", "standalone", "status"];
    let helps: Vec<(&str, BTreeSet<String>)> = subcommands
        .iter()
        .map(|s| (*s, flags_in(&help(s))))
        .collect();
    let known = |flag: &str| helps.iter().any(|(_, f)| f.contains(flag));

    // Commands shown in shell blocks: the subcommand exists and takes every flag given.
    let mut checked = 0;
    for line in shell_lines(&text) {
        let Some(rest) = line.strip_prefix("l2announcer ") else {
            continue;
        };
        let sub = rest.split_whitespace().next().unwrap();
        let (_, flags) = helps
            .iter()
            .find(|(s, _)| *s == sub)
            .unwrap_or_else(|| panic!("README shows `l2announcer {sub}`, which does not exist"));
        for flag in flags_in(rest) {
            assert!(
                flags.contains(&flag),
                "README: `l2announcer {sub} {flag}` is not a flag"
            );
        }
        checked += 1;
    }
    assert!(checked >= 2, "the README's standalone examples were found");

    // Flags in the configuration tables (rows starting with a flag).
    let mut rows = 0;
    for line in text.lines().filter(|l| l.starts_with("| `--")) {
        let cell = line.split('|').nth(1).unwrap();
        for flag in flags_in(cell) {
            assert!(
                known(&flag),
                "README table documents {flag}, which no subcommand takes"
            );
        }
        rows += 1;
    }
    assert!(
        rows >= 20,
        "the README's flag tables were found ({rows} rows)"
    );
}

#[test]
fn every_xtask_command_named_exists() {
    let text = readme();
    let usage = Command::new(env!("CARGO"))
        .args(["run", "--quiet", "--package", "xtask"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .unwrap();
    let usage = String::from_utf8_lossy(&usage.stderr).into_owned();
    let named: BTreeSet<&str> = text
        .split("cargo xtask ")
        .skip(1)
        .filter_map(|rest| rest.split(|c: char| !c.is_ascii_alphanumeric()).next())
        .filter(|w| !w.is_empty())
        .collect();
    assert!(
        named.contains("demo") && named.contains("test"),
        "{named:?}"
    );
    for command in named {
        assert!(
            usage.lines().any(|l| l.trim_start().starts_with(command)),
            "README names `cargo xtask {command}`, which xtask does not list:\n{usage}"
        );
    }
}
