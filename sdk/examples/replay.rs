//! Replay: a consumer group reads a channel's log from the start, then is moved back
//! to the start and reads the same messages again, at the same offsets.
//!
//! ```text
//! cargo run -p rmds --example replay -- http://127.0.0.1:7702 chat
//! ```

use futures::StreamExt;
use std::time::Duration;

async fn read_all(chat: &rmds::Channel, group: &str) -> rmds::Result<Vec<(u64, String)>> {
    let mut sub = chat.subscribe(group, Default::default()).await?;
    let mut got = Vec::new();
    // Everything in the log, until nothing more comes for a second.
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(1), sub.next()).await {
        let m = m?;
        got.push((m.offset, m.text()?));
        m.ack().await?;
    }
    sub.unsubscribe().await;
    Ok(got)
}

#[tokio::main]
async fn main() -> rmds::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (url, channel) = match args.as_slice() {
        [url, channel] => (url, channel),
        _ => {
            eprintln!("usage: replay AGENT_URL CHANNEL");
            std::process::exit(2);
        }
    };
    let node = rmds::Node::connect(url).await?;
    let chat = node.join(channel, rmds::Role::Reader).await?;
    let group = "replay-example";
    let mgmt = node.mgmt();
    let _ = mgmt.delete_group(channel, group).await;
    let opts = rmds::GroupOptions {
        start: rmds::GroupStart::Earliest,
        ..Default::default()
    };
    mgmt.create_group(channel, group, &opts).await?;
    let first = read_all(&chat, group).await?;
    for (offset, text) in &first {
        println!("{offset}: {text}");
    }
    let g = mgmt
        .reset_group(channel, group, rmds::GroupStart::Earliest)
        .await?;
    println!(
        "read {}; group moved back to offset {}",
        first.len(),
        g.next_offset
    );
    let again = read_all(&chat, group).await?;
    println!(
        "replayed {}: {}",
        again.len(),
        if again == first {
            "the same messages at the same offsets"
        } else {
            "DIFFERENT"
        }
    );
    Ok(())
}
