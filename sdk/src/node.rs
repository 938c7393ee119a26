//! [`Node`]: this application's handle on its node, a sidecar agent or an embedded one.

use crate::{Channel, Client, Mgmt, Result, Role};
use std::sync::Arc;

/// How [`Node::connect_with`] reaches a sidecar agent.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// API key (`X-API-Key`) for an agent with `api.auth.enabled`.
    pub api_key: Option<String>,
}

/// This application's node: the agent next to it, reached over its local API
/// ([`Node::connect`]) or running inside this process ([`Node::embedded`], cargo
/// feature `embedded`). Both modes offer the same calls with the same guarantees;
/// code written against one runs against the other. Cheap to clone.
///
/// # Examples
/// ```
/// # rmds::doc_support::run(|d| async move { let url = d.url();
/// let node = rmds::Node::connect(&url).await?; // url: e.g. "http://127.0.0.1:7700"
/// let chat = node.join("chat", rmds::Role::ReadWrite).await?;
/// chat.send_text("hello").await?;
/// # Ok(()) });
/// ```
#[derive(Clone)]
pub struct Node {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) id: String,
    pub(crate) client: Client,
    #[cfg(feature = "embedded")]
    pub(crate) embedded: Option<crate::embedded::Embedded>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.inner.id)
            .field("api", &self.inner.client.base())
            .field("embedded", &self.is_embedded())
            .finish()
    }
}

impl Node {
    /// Connects to the sidecar agent at `url` (e.g. `http://127.0.0.1:7700`) and
    /// checks that it answers.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let url = d.url();
    /// let node = rmds::Node::connect(&url).await?; // url: e.g. "http://127.0.0.1:7700"
    /// println!("this is node {}", node.id());
    /// # Ok(()) });
    /// ```
    pub async fn connect(url: &str) -> Result<Node> {
        Node::connect_with(url, ConnectOptions::default()).await
    }

    /// Connects with options (an API key).
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let url = d.url();
    /// // The key of an agent with api.auth.enabled (none here).
    /// let opts = rmds::ConnectOptions { api_key: std::env::var("RMDS_API_KEY").ok() };
    /// let node = rmds::Node::connect_with(&url, opts).await?;
    /// # Ok(()) });
    /// ```
    pub async fn connect_with(url: &str, opts: ConnectOptions) -> Result<Node> {
        let client = match &opts.api_key {
            Some(k) => Client::with_api_key(url, k),
            None => Client::new(url),
        };
        Node::over(client).await
    }

    /// A node reached through an existing [`Client`].
    pub(crate) async fn over(client: Client) -> Result<Node> {
        let health = client.health().await.map_err(|e| {
            let mut e = e;
            e.message = format!("cannot reach the agent at {}: {}", client.base(), e.message);
            e
        })?;
        let id = health["node_id"].as_str().unwrap_or_default().to_string();
        Ok(Node {
            inner: Arc::new(Inner {
                id,
                client,
                #[cfg(feature = "embedded")]
                embedded: None,
            }),
        })
    }

    /// Starts an agent inside this process with `config` (its own store in
    /// `config.data_dir`, its own NATS connection, its API on `config.listen`; use
    /// port 0 for any free port). It stops when [`Node::shutdown`] is awaited, or
    /// when the last clone of the `Node` is dropped.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let url = d.url();
    /// # let (data_dir, nats_url) = (d.data_dir("carol"), d.nats_url());
    /// let mut config = rmds::agent::config::Config::default();
    /// config.node_id = "carol".into();
    /// config.data_dir = data_dir; // e.g. "/var/lib/rmds"
    /// config.listen = "127.0.0.1:0".parse().unwrap(); // any free port
    /// config.nats.urls = vec![nats_url]; // e.g. "nats://127.0.0.1:4222"
    /// let node = rmds::Node::embedded(config).await?;
    /// let chat = node.join("chat", rmds::Role::ReadWrite).await?;
    /// chat.send_text("hello from inside the process").await?;
    /// node.shutdown().await;
    /// # Ok(()) });
    /// ```
    #[cfg(feature = "embedded")]
    pub async fn embedded(config: rmds_agent::config::Config) -> Result<Node> {
        let e = crate::embedded::Embedded::start(config).await?;
        let client = Client::new(format!("http://{}", e.api_addr()));
        Ok(Node {
            inner: Arc::new(Inner {
                id: e.service().node_id(),
                client,
                embedded: Some(e),
            }),
        })
    }

    /// This node's id.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let node = d.alice.clone();
    /// println!("node {}", node.id());
    /// # Ok(()) });
    /// ```
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Whether the agent runs inside this process.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let node = d.alice.clone();
    /// println!("embedded: {}", node.is_embedded());
    /// # Ok(()) });
    /// ```
    pub fn is_embedded(&self) -> bool {
        #[cfg(feature = "embedded")]
        {
            self.inner.embedded.is_some()
        }
        #[cfg(not(feature = "embedded"))]
        {
            false
        }
    }

    /// The low-level HTTP client of this node's API (an embedded agent serves it on
    /// `config.listen` too).
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let node = d.alice.clone();
    /// let health = node.client().health().await?;
    /// println!("{health}");
    /// # Ok(()) });
    /// ```
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Joins `channel` with `role` (idempotent; changes the role of a member) and
    /// returns it.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let node = d.alice.clone();
    /// let chat = node.join("chat", rmds::Role::ReadWrite).await?;
    /// assert_eq!(chat.name(), "chat");
    /// # Ok(()) });
    /// ```
    pub async fn join(&self, channel: &str, role: Role) -> Result<Channel> {
        #[cfg(feature = "embedded")]
        if let Some(e) = &self.inner.embedded {
            e.join(channel, role).await?;
            return Ok(Channel::new(self.clone(), channel, role));
        }
        self.inner.client.join(channel, role).await?;
        Ok(Channel::new(self.clone(), channel, role))
    }

    /// Leaves `channel` ([`ErrorKind::NotFound`](crate::ErrorKind::NotFound) when this node is not a member).
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let node = d.alice.clone();
    /// node.leave("chat").await?;
    /// # Ok(()) });
    /// ```
    pub async fn leave(&self, channel: &str) -> Result<()> {
        #[cfg(feature = "embedded")]
        if let Some(e) = &self.inner.embedded {
            return e.leave(channel).await;
        }
        self.inner.client.leave(channel).await
    }

    /// Management of this node and the network: topology, nodes, channels,
    /// statistics, kick, purge, dead letters and consumer groups.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let node = d.alice.clone();
    /// for n in node.mgmt().nodes().await? {
    ///     println!("{} online={}", n.node_id, n.online);
    /// }
    /// # Ok(()) });
    /// ```
    pub fn mgmt(&self) -> Mgmt {
        Mgmt::new(self.inner.client.clone())
    }

    /// Stops an embedded agent in order (API, tasks, then the store is flushed) and
    /// waits for it; for a sidecar node this only drops the handle.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let node = d.alice.clone();
    /// node.shutdown().await;
    /// # Ok(()) });
    /// ```
    pub async fn shutdown(self) {
        #[cfg(feature = "embedded")]
        if let Some(e) = &self.inner.embedded {
            e.shutdown().await;
        }
    }
}
