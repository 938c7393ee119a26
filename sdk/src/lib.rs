//! # rmds: the Rust SDK of rmds
//!
//! An application talks only to the agent of its own node. This crate gives it a
//! [`Node`]: connect to a sidecar agent, or run the agent inside the process (cargo
//! feature `embedded`); join channels, send, consume with acknowledgements, and
//! manage the network. Both modes offer the same calls with the same guarantees:
//! a send is durable on this node when it returns; every reader node gets every
//! message in order, exactly once; a message comes back until it is acknowledged.
//!
//! ## A sidecar agent
//! ```
//! use futures::StreamExt;
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Line { text: String }
//!
//! # rmds::doc_support::run(|d| async move { let url = d.url();
//! let node = rmds::Node::connect(&url).await?; // url: e.g. "http://127.0.0.1:7700"
//! let chat = node.join("chat", rmds::Role::ReadWrite).await?;
//!
//! // Send: stored in this node's outbox when the call returns.
//! let receipt = chat.send(&Line { text: "hello".into() }).await?;
//! println!("{} goes to {:?}", receipt.id, receipt.receivers);
//!
//! // Receive: a handler acks on Ok and nacks (redelivery) on Err.
//! chat.on_message("chat-ui", |m| async move {
//!     let line: Line = m.json()?;
//!     println!("{}: {}", m.sender, line.text);
//!     Ok::<_, rmds::Error>(())
//! })
//! .await?;
//!
//! // Or a stream with credit-based flow control.
//! let mut sub = chat.subscribe("audit", rmds::SubscribeOptions { credit: 10, ..Default::default() }).await?;
//! # d.bob_chat.send(&Line { text: "hi alice".into() }).await?;
//! if let Some(m) = sub.next().await {
//!     let m = m?;
//!     println!("{}: {}", m.sender, m.json::<Line>()?.text);
//!     m.ack().await?;
//! }
//! # Ok(()) });
//! ```
//!
//! ## An embedded agent (feature `embedded`)
//! ```
//! # rmds::doc_support::run(|d| async move { let url = d.url();
//! # let (data_dir, nats_url) = (d.data_dir("carol"), d.nats_url());
//! let mut config = rmds::agent::config::Config::default();
//! config.node_id = "carol".into();
//! config.data_dir = data_dir; // e.g. "/var/lib/rmds"
//! config.listen = "127.0.0.1:0".parse().unwrap(); // any free port
//! config.nats.urls = vec![nats_url]; // e.g. "nats://127.0.0.1:4222"
//! let node = rmds::Node::embedded(config).await?;
//! let chat = node.join("chat", rmds::Role::ReadWrite).await?;
//! chat.send_text("hello from inside the process").await?;
//! node.shutdown().await;
//! # Ok(()) });
//! ```
//!
//! ## Management
//! ```
//! # rmds::doc_support::run(|d| async move { let node = d.alice.clone();
//! let mgmt = node.mgmt();
//! for n in mgmt.nodes().await? {
//!     println!("{} online={} channels={:?}", n.node_id, n.online, n.memberships);
//! }
//! mgmt.kick_channel("mallory", "chat").await?;
//! mgmt.purge_sent(rmds::model::Scope::All).await?;
//! # Ok(()) });
//! ```
//!
//! The examples in `sdk/examples/` run against real agents: `chat.rs`, `worker.rs`
//! (competing consumers) and `replay.rs` (a group read again from the start).
//! [`Client`] is the low-level HTTP client underneath, one method per route.

#![deny(missing_docs)]

mod channel;
mod client;
mod client_groups;
#[cfg(feature = "embedded")]
#[doc(hidden)]
pub mod doc_support;
#[cfg(feature = "embedded")]
mod embedded;
mod error;
mod handler;
mod message;
mod mgmt;
pub mod model;
mod node;
mod subscription;
mod types;
mod ws;

pub use channel::{Channel, SendOptions};
pub use client::{Client, REQUEST_MARKER};
pub use error::{Error, ErrorKind, Result};
pub use handler::Handler;
pub use message::Message;
pub use mgmt::Mgmt;
pub use node::{ConnectOptions, Node};
pub use subscription::{SubscribeOptions, Subscription};
pub use types::{GroupOptions, GroupStart, PublishOptions, Receipt, Role, Settled};

/// The agent library, for [`Node::embedded`]'s configuration.
#[cfg(feature = "embedded")]
pub use rmds_agent as agent;
