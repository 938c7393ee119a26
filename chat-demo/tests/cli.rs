//! The terminal chat in both modes: one window on a sidecar agent, one with its own
//! embedded agent, on the same NATS. A line typed in one shows in the other, with
//! its sender; `/nodes` and `/topology` answer.

use rmds_scenarios::harness::TestNet;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

struct Window {
    child: Child,
    out: Lines<BufReader<ChildStdout>>,
}

impl Window {
    fn start(args: &[&str]) -> Window {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rmds-chat"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("rmds-chat");
        let out = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Window { child, out }
    }

    async fn type_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
    }

    /// Whether a line containing every one of `want` comes within `wait`.
    async fn sees(&mut self, want: &[&str], wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Ok(Some(line))) = tokio::time::timeout_at(deadline, self.out.next_line()).await
        {
            if want.iter().all(|w| line.contains(w)) {
                return true;
            }
        }
        false
    }

    /// Reads lines until one contains `want`; fails after 30 s.
    async fn expect(&mut self, want: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let line = tokio::time::timeout_at(deadline, self.out.next_line())
                .await
                .unwrap_or_else(|_| panic!("no line with {want:?} within 30 s"))
                .unwrap()
                .unwrap_or_else(|| panic!("rmds-chat ended before printing {want:?}"));
            if line.contains(want) {
                return line;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_window_and_an_embedded_window_chat() {
    let net = TestNet::builder().agent("bob", &[]).start().await.unwrap();
    let data = net.dir().join("dave-data");
    let nats = net.nats.url();
    let mut bob = Window::start(&[
        "--agent",
        net.agent("bob").client().base(),
        "--group",
        "bob-window",
    ]);
    bob.expect("node bob (agent at").await;
    let mut dave = Window::start(&[
        "--embedded",
        "--node-id",
        "dave",
        "--nats",
        &nats,
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    dave.expect("node dave (embedded agent)").await;
    // Both see each other before anyone speaks.
    let mut tries = 0;
    loop {
        dave.type_line("/nodes").await;
        if dave
            .sees(&["bob", "online"], Duration::from_millis(500))
            .await
        {
            break;
        }
        tries += 1;
        assert!(tries < 60, "dave never saw bob online");
    }
    dave.type_line("hello from dave <b>").await;
    assert_eq!(
        bob.expect("hello from dave").await,
        "[dave] hello from dave <b>"
    );
    bob.type_line("hi dave").await;
    assert_eq!(dave.expect("hi dave").await, "[bob] hi dave");
    dave.type_line("/topology").await;
    let t = dave.expect("#chat").await;
    assert!(t.contains("\"bob\"") && t.contains("\"dave\""), "{t}");
    dave.type_line("/quit").await;
    let status = tokio::time::timeout(Duration::from_secs(30), dave.child.wait())
        .await
        .expect("dave quits")
        .unwrap();
    assert!(status.success(), "{status}");
}
