//! The run's private network namespace: the only place iptables is ever run.
//!
//! `rmds-scenarios chaos` re-executes itself under `unshare -n` (see [`reexec`]); the
//! child proves it sits in a fresh namespace of its own ([`Netns::enter`]: the parent's
//! namespace id in an environment marker differs from its own, and `ip -o link` shows
//! only `lo`), brings `lo` up, and only then starts NATS and the agents on 127.0.0.1.
//! iptables is reachable only through a [`Netns`] value, which only `enter` makes, so
//! no code path can touch the host's firewall.

use anyhow::{bail, Context};
use std::path::PathBuf;
use std::process::Command;

/// Environment marker set by the parent: its own network namespace id.
pub const MARKER: &str = "RMDS_CHAOS_PARENT_NETNS";

/// Proof that this process runs in the fresh network namespace its parent created.
#[derive(Debug)]
pub struct Netns {
    id: String,
}

fn netns_id() -> anyhow::Result<String> {
    let p = std::fs::read_link("/proc/self/ns/net").context("cannot read /proc/self/ns/net")?;
    Ok(p.display().to_string())
}

/// Finds `name` on `PATH` (and in the sbin directories, which root's PATH may lack).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn need(name: &str, package: &str) -> anyhow::Result<PathBuf> {
    which(name).with_context(|| {
        format!(
            "`{name}` not found: network faults need it (apt-get install {package}), \
             or run with --no-netns to skip packet loss and blackholes"
        )
    })
}

/// Runs this same command again inside a new network namespace and returns its exit
/// code. Needs root (or CAP_SYS_ADMIN), `unshare`, `ip` and `iptables`.
pub fn reexec() -> anyhow::Result<i32> {
    let unshare = need("unshare", "util-linux")?;
    need("ip", "iproute2")?;
    need("iptables", "iptables")?;
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "network faults run in a private network namespace, which needs root; \
             run as root or pass --no-netns"
        );
    }
    let exe = std::env::current_exe().context("cannot find this executable")?;
    let status = Command::new(unshare)
        .arg("-n")
        .arg("--")
        .arg(exe)
        .args(std::env::args_os().skip(1))
        .arg("--in-netns")
        .env(MARKER, netns_id()?)
        .status()
        .context("cannot run unshare -n")?;
    Ok(status.code().unwrap_or(1))
}

impl Netns {
    /// Checks that this process is in a fresh namespace made by its parent, and brings
    /// `lo` up. Fails (and nothing network-related is done) otherwise.
    pub fn enter() -> anyhow::Result<Netns> {
        let parent = std::env::var(MARKER)
            .with_context(|| format!("--in-netns without {MARKER}: not started by chaos"))?;
        let id = netns_id()?;
        if parent == id {
            bail!("still in the parent's network namespace ({id}); refusing network faults");
        }
        let links = run_out("ip", &["-o", "link"])?;
        let names: Vec<&str> = links
            .lines()
            .filter_map(|l| l.split(':').nth(1).map(str::trim))
            .collect();
        if names != ["lo"] {
            bail!("network namespace is not fresh (links {names:?}); refusing network faults");
        }
        run("ip", &["link", "set", "lo", "up"])?;
        Ok(Netns { id })
    }

    /// The namespace id (`net:[…]`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Runs `iptables ARGS` in this namespace, checking again that it is this one.
    pub fn iptables(&self, args: &[&str]) -> anyhow::Result<()> {
        if netns_id()? != self.id {
            bail!("namespace changed under the run; refusing iptables");
        }
        run("iptables", args)
    }

    /// Removes every rule this run added.
    pub fn flush(&self) -> anyhow::Result<()> {
        self.iptables(&["-F", "INPUT"])
    }
}

fn run_out(cmd: &str, args: &[&str]) -> anyhow::Result<String> {
    let bin = need(cmd, cmd)?;
    let out = Command::new(bin)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {cmd}"))?;
    if !out.status.success() {
        bail!(
            "{cmd} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn run(cmd: &str, args: &[&str]) -> anyhow::Result<()> {
    run_out(cmd, args).map(|_| ())
}
