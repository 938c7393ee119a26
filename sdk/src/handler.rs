//! [`Handler`]: a subscription driven by an application function
//! ([`Channel::on_message`](crate::Channel::on_message)).

use crate::{Message, Result, Subscription};
use futures::StreamExt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

/// A running message handler. [`stop`](Handler::stop) ends it after the handlers in
/// progress finish and settle; dropping the `Handler` leaves it running until its
/// subscription ends.
///
/// # Examples
/// ```
/// # rmds::doc_support::run(|d| async move { let chat = d.chat.clone();
/// let h = chat.on_message("log", |m| async move {
///     println!("{}", m.text()?);
///     Ok::<_, rmds::Error>(())
/// }).await?;
/// h.stop().await?;
/// # Ok(()) });
/// ```
#[derive(Debug)]
pub struct Handler {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Handler {
    pub(crate) fn spawn<F, Fut, E>(sub: Subscription, concurrency: usize, f: F) -> Handler
    where
        F: Fn(Message) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(sub, concurrency, Arc::new(f), stop_rx));
        Handler { stop, task }
    }

    /// Stops taking messages, waits for the handlers in progress to finish and
    /// settle, and ends the subscription. Answers the error that ended it early, if
    /// any (the group was deleted, this node left the channel).
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let chat = d.chat.clone();
    /// let h = chat.on_message("log", |m| async move { println!("{}", m.id); Ok::<_, rmds::Error>(()) }).await?;
    /// h.stop().await?;
    /// # Ok(()) });
    /// ```
    pub async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        self.task
            .await
            .unwrap_or_else(|e| Err(crate::Error::new(crate::ErrorKind::Closed, e.to_string())))
    }

    /// Waits until the subscription ends by itself (it reconnects across agent
    /// restarts, so this is an error or a stop from elsewhere).
    ///
    /// # Examples
    /// ```
    /// # rmds::doc_support::run(|d| async move { let chat = d.bob_chat.clone();
    /// let h = chat.on_message("log", |m| async move { println!("{}", m.id); Ok::<_, rmds::Error>(()) }).await?;
    /// // The subscription ends when its group is deleted.
    /// let waiting = tokio::spawn(h.wait());
    /// chat.node().mgmt().delete_group("chat", "log").await?;
    /// let ended = waiting.await.unwrap();
    /// assert_eq!(ended.unwrap_err().kind, rmds::ErrorKind::NotFound);
    /// # Ok(()) });
    /// ```
    pub async fn wait(self) -> Result<()> {
        let Handler { stop, task } = self;
        let r = task
            .await
            .unwrap_or_else(|e| Err(crate::Error::new(crate::ErrorKind::Closed, e.to_string())));
        drop(stop);
        r
    }
}

async fn run<F, Fut, E>(
    mut sub: Subscription,
    concurrency: usize,
    f: Arc<F>,
    mut stop: watch::Receiver<bool>,
) -> Result<()>
where
    F: Fn(Message) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::result::Result<(), E>> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let room = Arc::new(Semaphore::new(concurrency));
    let mut running = JoinSet::new();
    let mut result = Ok(());
    loop {
        while running.try_join_next().is_some() {}
        // A permit first, then a message: with one permit, one message after the other.
        let permit = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            p = room.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let next = tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            m = sub.next() => m,
        };
        let msg = match next {
            None => break,
            Some(Err(e)) => {
                result = Err(e);
                break;
            }
            Some(Ok(m)) => m,
        };
        let f = f.clone();
        running.spawn(async move {
            let settle = msg.clone();
            // A handler that settled the message itself makes this a no-op.
            match f(msg).await {
                Ok(()) => {
                    let _ = settle.ack().await;
                }
                Err(e) => {
                    let _ = settle.nack_with_error(Duration::ZERO, &e.to_string()).await;
                }
            }
            drop(permit);
        });
    }
    while running.join_next().await.is_some() {}
    sub.unsubscribe().await;
    result
}
