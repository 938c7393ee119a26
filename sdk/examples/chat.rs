//! A chat window in forty lines: incoming lines through `on_message`, typed lines
//! out through `send`.
//!
//! ```text
//! cargo run -p rmds --example chat -- http://127.0.0.1:7700            # a sidecar agent
//! cargo run -p rmds --example chat -- --embedded erin nats://127.0.0.1:4222
//! ```
//! Type lines; end with Ctrl-D.

use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(serde::Serialize, serde::Deserialize)]
struct Line {
    text: String,
}

#[tokio::main]
async fn main() -> rmds::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let node = match args.as_slice() {
        [flag, id, nats] if flag == "--embedded" => {
            let mut config = rmds::agent::config::Config {
                node_id: id.clone(),
                data_dir: format!("data-{id}").into(),
                listen: "127.0.0.1:0".parse().expect("address"),
                ..Default::default()
            };
            config.nats.urls = vec![nats.clone()];
            rmds::Node::embedded(config).await?
        }
        [url] => rmds::Node::connect(url).await?,
        _ => {
            eprintln!("usage: chat AGENT_URL | chat --embedded NODE_ID NATS_URL");
            std::process::exit(2);
        }
    };
    let chat = node.join("chat", rmds::Role::ReadWrite).await?;
    let window = format!("example-{}", node.id());
    let handler = chat
        .on_message(&window, |m| async move {
            println!("[{}] {}", m.sender, m.json::<Line>()?.text);
            Ok::<_, rmds::Error>(())
        })
        .await?;
    println!("node {}: type lines, Ctrl-D to leave", node.id());
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(text)) = lines.next_line().await {
        let r = chat.send(&Line { text }).await?;
        println!("sent {} to {:?}", r.id, r.receivers);
    }
    handler.stop().await?;
    node.shutdown().await;
    Ok(())
}
