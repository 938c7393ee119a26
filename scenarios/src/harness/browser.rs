//! A real headless Chromium for the browser tests, driven over WebDriver
//! (`chromedriver`, from Debian's `chromium-driver`; `scripts/install-deps.sh`
//! installs both). Each [`Browser`] runs its own chromedriver on a free port and one
//! browser session; dropping it ends both.

use super::free_port;
use anyhow::Context;
use fantoccini::{Client, ClientBuilder, Locator};
use std::path::Path;
use std::time::Duration;

/// A chromedriver process and its browser session.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    _driver: tokio::process::Child,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium (1280×900, no sandbox: tests run
    /// as root in CI).
    pub async fn start() -> anyhow::Result<Browser> {
        // Two TLS back ends are linked (async-nats and the WebDriver client pick
        // different ones): choose one for this process. Only loopback HTTP is used.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = free_port();
        let driver = tokio::process::Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("chromedriver (Debian package chromium-driver; scripts/install-deps.sh installs it)")?;
        let mut caps = serde_json::Map::new();
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ];
        let mut opts = serde_json::json!({ "args": args });
        if let Some(bin) = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .iter()
            .find(|p| Path::new(p).exists())
        {
            opts["binary"] = serde_json::json!(bin);
        }
        caps.insert("goog:chromeOptions".into(), opts);
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let client = loop {
            match ClientBuilder::rustls()
                .context("WebDriver client")?
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e).context("cannot start a browser session"),
            }
        };
        Ok(Browser {
            client,
            _driver: driver,
        })
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("opening {url}"))
    }

    /// The text of the first element matching `css`, waiting up to 15 s for it.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        let e = self.wait_for(css).await?;
        Ok(e.text().await?)
    }

    /// Waits up to 15 s for an element matching `css`.
    pub async fn wait_for(&self, css: &str) -> anyhow::Result<fantoccini::elements::Element> {
        self.client
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("no element {css} within 15 s"))
    }

    /// Waits until `check` holds for the page's text under `css` (up to `timeout`).
    pub async fn wait_text(
        &self,
        css: &str,
        timeout: Duration,
        check: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = String::new();
        loop {
            if let Ok(els) = self.client.find_all(Locator::Css(css)).await {
                let mut all = String::new();
                for e in els {
                    if let Ok(t) = e.text().await {
                        all.push_str(&t);
                        all.push('\n');
                    }
                }
                if check(&all) {
                    return Ok(all);
                }
                last = all;
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("timed out after {timeout:?} waiting on {css}; it shows:\n{last}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the first element matching `css`. A page that re-renders between the
    /// lookup and the click (a stale element) is looked up again.
    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let mut tries = 0;
        loop {
            match self.wait_for(css).await?.click().await {
                Ok(()) => return Ok(()),
                Err(e) if tries < 10 && e.to_string().contains("stale") => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Types `text` into the first element matching `css`.
    pub async fn type_into(&self, css: &str, text: &str) -> anyhow::Result<()> {
        self.wait_for(css).await?.send_keys(text).await?;
        Ok(())
    }

    /// Saves a PNG screenshot of the page to `path`.
    pub async fn screenshot(&self, path: &Path) -> anyhow::Result<()> {
        let png = self.client.screenshot().await?;
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(path, png)?;
        Ok(())
    }

    /// Ends the session (chromedriver stops when the `Browser` is dropped).
    pub async fn close(self) -> anyhow::Result<()> {
        self.client.close().await?;
        Ok(())
    }
}
