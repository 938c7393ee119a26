//! The low-level client's consumer-group routes.

use crate::client::enc;
use crate::{Client, Error, GroupOptions, GroupStart};

impl Client {
    /// Creates a consumer group on `channel` (409 `conflict` when it exists).
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let client = d.alice.client().clone();
    /// let opts = rmds::GroupOptions { max_in_flight: Some(1), ..Default::default() };
    /// let g = client.create_group("chat", "ordered", &opts).await?;
    /// assert_eq!(g["max_in_flight"], 1);
    /// # Ok(()) });
    /// ```
    pub async fn create_group(
        &self,
        channel: &str,
        name: &str,
        opts: &GroupOptions,
    ) -> Result<serde_json::Value, Error> {
        let mut body = serde_json::json!({"name": name});
        match opts.start {
            GroupStart::Earliest => body["start"] = "earliest".into(),
            GroupStart::Latest => body["start"] = "latest".into(),
            GroupStart::Offset(o) => body["offset"] = o.into(),
            GroupStart::Time(t) => {
                body["time"] = humantime::format_rfc3339_millis(t).to_string().into()
            }
        }
        if let Some(d) = opts.ack_wait {
            body["ack_wait"] = format!("{}ms", d.as_millis()).into();
        }
        if let Some(d) = opts.idle_ttl {
            body["idle_ttl"] = format!("{}ms", d.as_millis()).into();
        }
        if let Some(n) = opts.max_deliveries {
            body["max_deliveries"] = n.into();
        }
        if let Some(n) = opts.max_in_flight {
            body["max_in_flight"] = n.into();
        }
        if !opts.backoff.is_empty() {
            body["backoff"] = opts
                .backoff
                .iter()
                .map(|d| format!("{}ms", d.as_millis()))
                .collect::<Vec<_>>()
                .into();
        }
        self.post_json(&format!("/v1/channels/{}/groups", enc(channel)), &body)
            .await
    }

    /// Creates a consumer group unless it exists already (then it is left as it is).
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let client = d.alice.client().clone();
    /// client.ensure_group("chat", "ui", &Default::default()).await?;
    /// client.ensure_group("chat", "ui", &Default::default()).await?; // exists: left as it is
    /// # Ok(()) });
    /// ```
    pub async fn ensure_group(
        &self,
        channel: &str,
        name: &str,
        opts: &GroupOptions,
    ) -> Result<(), Error> {
        match self.create_group(channel, name, opts).await {
            Ok(_) => Ok(()),
            Err(e) if e.status == Some(409) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A group's position, backlog and settings.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let client = d.alice.client().clone();
    /// client.ensure_group("chat", "ui", &Default::default()).await?;
    /// let g = client.group("chat", "ui").await?;
    /// println!("pending {}", g["pending"]);
    /// # Ok(()) });
    /// ```
    pub async fn group(&self, channel: &str, name: &str) -> Result<serde_json::Value, Error> {
        self.get_json(&format!(
            "/v1/channels/{}/groups/{}",
            enc(channel),
            enc(name)
        ))
        .await
    }

    /// Deletes a group.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let client = d.alice.client().clone();
    /// client.ensure_group("chat", "ui", &Default::default()).await?;
    /// client.delete_group("chat", "ui").await?;
    /// # Ok(()) });
    /// ```
    pub async fn delete_group(&self, channel: &str, name: &str) -> Result<(), Error> {
        self.delete(&format!(
            "/v1/channels/{}/groups/{}",
            enc(channel),
            enc(name)
        ))
        .await
    }

    /// Moves a group's position (replay from `start`).
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let client = d.alice.client().clone();
    /// client.ensure_group("chat", "ui", &Default::default()).await?;
    /// client.reset_group("chat", "ui", rmds::GroupStart::Earliest).await?;
    /// # Ok(()) });
    /// ```
    pub async fn reset_group(
        &self,
        channel: &str,
        name: &str,
        start: GroupStart,
    ) -> Result<serde_json::Value, Error> {
        let body = match start {
            GroupStart::Earliest => serde_json::json!({"start": "earliest"}),
            GroupStart::Latest => serde_json::json!({"start": "latest"}),
            GroupStart::Offset(o) => serde_json::json!({"offset": o}),
            GroupStart::Time(t) => {
                serde_json::json!({"time": humantime::format_rfc3339_millis(t).to_string()})
            }
        };
        self.post_json(
            &format!("/v1/channels/{}/groups/{}/reset", enc(channel), enc(name)),
            &body,
        )
        .await
    }

    /// A group's dead letters.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let client = d.bob.client().clone();
    /// # d.group_dead_letter().await;
    /// for dead in client.group_dead_letters("chat", "dlq").await? { println!("{}", dead["reason"]); }
    /// # Ok(()) });
    /// ```
    pub async fn group_dead_letters(
        &self,
        channel: &str,
        name: &str,
    ) -> Result<Vec<serde_json::Value>, Error> {
        let v = self
            .get_json(&format!(
                "/v1/channels/{}/groups/{}/dead-letters",
                enc(channel),
                enc(name)
            ))
            .await?;
        Ok(v["dead_letters"].as_array().cloned().unwrap_or_default())
    }

    /// Delivers a group's dead letter again, once.
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let client = d.bob.client().clone();
    /// # let id = d.group_dead_letter().await;
    /// client.redrive_group_dead_letter("chat", "dlq", &id).await?;
    /// # Ok(()) });
    /// ```
    pub async fn redrive_group_dead_letter(
        &self,
        channel: &str,
        name: &str,
        id: &str,
    ) -> Result<serde_json::Value, Error> {
        self.post_json(
            &format!(
                "/v1/channels/{}/groups/{}/dead-letters/{}/redrive",
                enc(channel),
                enc(name),
                enc(id)
            ),
            &serde_json::json!({}),
        )
        .await
    }
}
