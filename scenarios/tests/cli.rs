//! The scenario CLI: a passing scenario exits 0 with its table row; a failing one (the
//! recorder sabotaged on purpose) exits non-zero naming the scenario, the stream and
//! the missing, duplicated and swapped message numbers.

use std::process::Command;

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rmds-scenarios"))
}

#[test]
fn given_a_passing_scenario_then_exit_0_and_a_markdown_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.md");
    let out = cli()
        .args(["run", "normal", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("normal") && stdout.contains("pass"),
        "{stdout}"
    );
    let md = std::fs::read_to_string(&report).unwrap();
    assert!(md.contains("| normal | processes | pass |"), "{md}");
    assert!(md.contains("rmds-scenarios run normal"), "{md}");
}

#[test]
fn given_a_faulty_consumer_then_exit_non_zero_naming_scenario_stream_and_messages() {
    let out = cli()
        .args(["run", "thousand-in-order", "--faulty-consumer"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for reader in ["bob", "lisa", "andy"] {
        let line = stdout
            .lines()
            .find(|l| {
                l.starts_with("FAILED thousand-in-order")
                    && l.contains(&format!("alice -> {reader}"))
            })
            .unwrap_or_else(|| panic!("no failure line for {reader}: {stdout}"));
        assert!(line.contains("lost [1]"), "{line}");
        assert!(line.contains("duplicated [2]"), "{line}");
        assert!(line.contains("out of order [(1000, 999)]"), "{line}");
    }
    let unknown = cli().args(["run", "no-such"]).output().unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no scenario"));
}
