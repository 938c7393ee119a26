//! rmds against JetStream in one invocation: the rmds batch workload and the
//! JetStream workload, alternated `--compare` times, each run on fresh processes;
//! every run, the medians and the ratio of medians (rmds / JetStream).

use super::jetstream::{run_batch, BatchOpts};
use super::net::Ctx;
use super::procfs::{cpu_json, cpu_line};
use super::rmds::Form;
use super::throughput::rmds_run;
use super::{median, rate};
use serde_json::{json, Value};

/// Runs the comparison.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Value> {
    let a = &ctx.args;
    let n = a.messages;
    let form = Form::Batch(a.batch);
    println!(
        "compare: {n} messages of {} B, {} alternations.\n  rmds: {} from {} publishers, synchronous={} on both agents, counted when bob's application pulled and its ack was answered.\n  JetStream: {} publishers x {} publish acks in flight, file storage, fsync {}; counted when the pull consumer had sent its ack (fire-and-forget, as async-nats acks; not confirmed by the server).",
        a.size,
        a.compare,
        form.label(),
        a.batch_publishers,
        a.synchronous,
        a.js_publishers,
        a.js_in_flight,
        ctx.js_sync
    );
    let opts = BatchOpts {
        messages: n,
        size: a.size,
        publishers: a.js_publishers,
        in_flight: a.js_in_flight,
        sync: a.js_sync,
    };
    let (mut rmds_e2e, mut rmds_acc, mut js_e2e, mut js_acc) = (vec![], vec![], vec![], vec![]);
    let mut runs = Vec::new();
    for i in 1..=a.compare.max(1) {
        let r = rmds_run(ctx, form, n, a.batch_publishers).await?;
        println!(
            "  run {i} rmds:      {:>9.0} msg/s accepted, {:>9.0} msg/s end to end ({:.2}s); {}",
            r.accepted_rate(),
            r.e2e_rate(),
            r.e2e.as_secs_f64(),
            cpu_line(&r.cpu)
        );
        rmds_e2e.push(r.e2e_rate());
        rmds_acc.push(r.accepted_rate());
        let mut v = r.json();
        v["system"] = json!("rmds");
        v["run"] = json!(i);
        runs.push(v);

        let j = run_batch(opts).await?;
        let (acc, e2e) = (rate(n, j.published), rate(n, j.e2e));
        println!(
            "  run {i} JetStream: {acc:>9.0} msg/s accepted, {e2e:>9.0} msg/s end to end ({:.2}s); {}",
            j.e2e.as_secs_f64(),
            cpu_line(&j.cpu)
        );
        js_e2e.push(e2e);
        js_acc.push(acc);
        runs.push(json!({
            "system": "jetstream", "run": i, "messages": n, "server": j.version,
            "published_s": j.published.as_secs_f64(), "e2e_s": j.e2e.as_secs_f64(),
            "accepted_per_s": acc, "e2e_per_s": e2e, "cpu_us_per_msg": cpu_json(&j.cpu),
        }));
    }
    let (re, ra, je, ja) = (
        median(&rmds_e2e),
        median(&rmds_acc),
        median(&js_e2e),
        median(&js_acc),
    );
    println!("  median rmds:      {ra:>9.0} msg/s accepted, {re:>9.0} msg/s end to end");
    println!("  median JetStream: {ja:>9.0} msg/s accepted, {je:>9.0} msg/s end to end");
    println!(
        "  ratio of medians rmds / JetStream: end to end {:.2}x, accepted {:.2}x",
        re / je,
        ra / ja
    );
    Ok(json!({
        "messages": n,
        "size": a.size,
        "alternations": a.compare,
        "rmds": {"form": form.label(), "publishers": a.batch_publishers, "synchronous": a.synchronous,
                 "median_e2e_per_s": re, "median_accepted_per_s": ra},
        "jetstream": {"publishers": a.js_publishers, "in_flight": a.js_in_flight, "sync": ctx.js_sync,
                      "median_e2e_per_s": je, "median_accepted_per_s": ja},
        "ratio_e2e": re / je,
        "ratio_accepted": ra / ja,
        "runs": runs,
    }))
}
