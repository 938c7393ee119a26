//! The README's demo command runs to completion and shows exactly-once delivery.

use std::process::Command;

#[test]
fn given_the_demo_when_run_to_the_end_then_every_reader_got_every_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_rmds-demo"))
        .arg("--exit")
        .env(
            "RMDS_AGENT_BIN",
            std::path::Path::new(env!("CARGO_BIN_EXE_rmds-demo")).with_file_name("rmds-agent"),
        )
        .output()
        .expect("demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("lisa received [\"alice:hello\", \"alice:how are you\", \"alice:bye\"]"),
        "{stdout}"
    );
    // Order is per sender stream; alice's and bob's messages may interleave either way.
    let andy = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("andy received"))
        .nth(1)
        .unwrap_or_default();
    assert!(
        andy.contains("alice:sent during the outage") && andy.contains("bob:me too"),
        "{stdout}"
    );
    assert!(
        stdout.contains("bob received [\"alice:sent during the outage\"]"),
        "{stdout}"
    );
    assert!(stdout.contains("pending=0"), "{stdout}");
}
