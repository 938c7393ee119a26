//! CPU of an idle agent: one measured agent and `--idle-peers` peers, all `rw` on one
//! shared channel, production timings; after discovery, utime + stime of the measured
//! process (all threads, `/proc/PID/stat`) over `--idle-seconds`, as % of one core.

use super::net::{spec, Ctx};
use super::procfs::{clock_ticks, cpu_ticks};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const CHANNEL: &str = "idle";

/// Runs the measurement.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Value> {
    let a = &ctx.args;
    let peers: Vec<String> = (1..=a.idle_peers).map(|i| format!("p{i:02}")).collect();
    let mut agents = vec![spec("measured", CHANNEL, "rw")];
    agents.extend(peers.iter().map(|p| spec(p, CHANNEL, "rw")));
    let mut net = ctx.net(&agents, true).await?;
    let names: Vec<&str> = peers.iter().map(String::as_str).collect();
    net.wait_discovered("measured", CHANNEL, &names).await?;
    // Every peer knows the measured one too: nothing is still being set up.
    for p in &names {
        net.wait_discovered(p, CHANNEL, &["measured"]).await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = net
        .pid("measured")
        .ok_or_else(|| anyhow::anyhow!("measured agent has no pid"))?;
    let peer_pids: Vec<u32> = names.iter().filter_map(|p| net.pid(p)).collect();
    let ticks =
        |pid: u32| cpu_ticks(pid).ok_or_else(|| anyhow::anyhow!("cannot read /proc/{pid}/stat"));
    let t0 = Instant::now();
    let c0 = ticks(pid)?;
    let p0: u64 = peer_pids.iter().filter_map(|p| cpu_ticks(*p)).sum();
    tokio::time::sleep(Duration::from_secs(a.idle_seconds.max(1))).await;
    let c1 = ticks(pid)?;
    let p1: u64 = peer_pids.iter().filter_map(|p| cpu_ticks(*p)).sum();
    let wall = t0.elapsed().as_secs_f64();
    let hz = clock_ticks() as f64;
    let cpu_s = (c1 - c0) as f64 / hz;
    let pct = 100.0 * cpu_s / wall;
    let peers_pct = 100.0 * (p1 - p0) as f64 / hz / wall / peer_pids.len().max(1) as f64;
    let keepalive = ctx
        .settings
        .iter()
        .find(|(_, k, _)| k == "keepalive_interval")
        .map(|(_, _, v)| {
            v.as_str()
                .map(String::from)
                .unwrap_or_else(|| v.to_string())
        })
        .unwrap_or_else(|| "250ms, the harness's".into());
    println!(
        "idle: agent with {} peers on one channel (keepalive_interval {keepalive}), {wall:.0} s: {:.2} s of CPU = {pct:.3} % of one core (resolution 1/{hz:.0} s); peers' mean {peers_pct:.3} %",
        peer_pids.len(),
        cpu_s,
    );
    net.assert_healthy()?;
    Ok(json!({
        "peers": peer_pids.len(),
        "keepalive_interval": keepalive,
        "seconds": wall,
        "cpu_s": cpu_s,
        "percent_of_core": pct,
        "peers_mean_percent_of_core": peers_pct,
        "clock_ticks_per_s": hz,
    }))
}
