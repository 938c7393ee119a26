//! A TCP proxy between one agent and NATS that a scenario can cut and restore: that
//! agent loses NATS while every other agent keeps it (a partition).

use super::free_port;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A cuttable proxy on a loopback port. Stops on drop.
pub struct Proxy {
    port: u16,
    cut: Arc<watch::Sender<bool>>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a fresh loopback port and forwards to `127.0.0.1:target`.
    pub async fn start(target: u16) -> anyhow::Result<Proxy> {
        let port = free_port();
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let (tx, _) = watch::channel(false);
        let cut = Arc::new(tx);
        let c = cut.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    break;
                };
                if *c.borrow() {
                    drop(client); // partitioned: refuse
                    continue;
                }
                let mut rx = c.subscribe();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = rx.wait_for(|cut| *cut) => {} // drop both ends
                    }
                });
            }
        });
        Ok(Proxy { port, cut, task })
    }

    /// The proxy's loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `nats://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Drops every connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut.send_replace(true);
        self.task.abort();
    }
}
