//! The programs in `sdk/examples/` run against real agents and print what they did.

use rmds_scenarios::harness::TestNet;
use std::path::PathBuf;
use std::time::Duration;

/// `target/<profile>/examples/<name>` (cargo builds the examples for `cargo test`).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let p = profile.join("examples").join(name);
    assert!(
        p.is_file(),
        "{} is not built (cargo build -p rmds --examples)",
        p.display()
    );
    p
}

async fn run(name: &str, args: &[&str], stdin: &str) -> String {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(example(name))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{name} did not finish within 60 s"))
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{name} failed ({}): {text}",
        out.status
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_examples_run_against_real_agents() {
    let net = TestNet::builder()
        .agent("alice", &["chat:rw", "jobs:writer"])
        .agent("bob", &["chat:rw", "jobs:reader"])
        .start()
        .await
        .unwrap();
    net.wait_discovered("alice", "jobs", &["bob"])
        .await
        .unwrap();
    net.wait_discovered("alice", "chat", &["bob"])
        .await
        .unwrap();
    let (a, b) = (
        net.agent("alice").client().base().to_string(),
        net.agent("bob").client().base().to_string(),
    );

    let out = run("worker", &[&a, &b, "60", "3"], "").await;
    assert!(out.contains("60 jobs done, 0 more than once"), "{out}");
    let per: Vec<usize> = out
        .lines()
        .find_map(|l| l.strip_prefix("jobs per worker: "))
        .map(|l| {
            l.trim_matches(|c| c == '[' || c == ']')
                .split(", ")
                .map(|n| n.parse().unwrap())
                .collect()
        })
        .unwrap();
    assert_eq!(per.iter().sum::<usize>(), 60);
    assert!(
        per.iter().filter(|n| **n > 0).count() > 1,
        "the workers shared the jobs: {per:?}"
    );

    let out = run("chat", &[&a], "one\ntwo\nthree\n").await;
    assert_eq!(out.matches("sent ").count(), 3, "{out}");
    assert!(out.contains("[\"bob\"]"), "{out}");

    let out = run("replay", &[&b, "chat"], "").await;
    assert!(out.contains("read 3;"), "{out}");
    assert!(
        out.contains("replayed 3: the same messages at the same offsets"),
        "{out}"
    );
    assert!(out.contains(": {\"text\":\"two\"}"), "{out}");
}
