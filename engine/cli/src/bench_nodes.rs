//! `wyvern bench --nodes N --postgres URL`: one, two … N nodes on one shared PostgreSQL store,
//! the load tool's connections spread evenly over them (connection `c` to node `c % n`), the
//! database emptied before each run. On a machine with few cores the total cannot grow with
//! the nodes (they, the database and the load tool share the cores), so what each run reports
//! is the cost: every node's CPU per message it took, the nodes' together, and PostgreSQL's
//! commits per second.

use std::path::Path;
use std::process::ExitCode;

use crate::bench::{
    POSTGRES, Scenario, Server, Target, cpu_secs, load, messages, pg_commits, reset_shared, start,
};

pub async fn bench_nodes(
    most: usize,
    work: &Path,
    scenarios: &[Scenario],
) -> anyhow::Result<ExitCode> {
    let Some(url) = POSTGRES.get() else {
        anyhow::bail!("--nodes needs --postgres URL (bench/shared-store.sh makes a throwaway one)");
    };
    println!(
        "| scenario | nodes | ACKs/s | engine CPU/msg (all nodes) | each node's CPU/msg it took | PostgreSQL commits/s | ACKs right |"
    );
    println!("|---|---:|---:|---:|---|---:|---|");
    let mut all_right = true;
    for (si, s) in scenarios.iter().enumerate() {
        for n in 1..=most.max(1) {
            eprintln!(
                "  {}: {} messages over {n} node(s) …",
                s.label(),
                s.messages
            );
            reset_shared(url).await?;
            let nodes: Vec<Server> = (0..n)
                .map(|i| {
                    start(
                        Target::WyvernShared,
                        &work.join(format!("s{si}-n{n}-node{i}")),
                        "",
                    )
                })
                .collect::<anyhow::Result<_>>()?;
            let addrs: Vec<String> = nodes.iter().map(|x| x.addr.to_string()).collect();
            let cpu_before: Vec<Option<f64>> =
                nodes.iter().map(|x| cpu_secs(x.child.id())).collect();
            let commits_before = pg_commits().await;
            let msgs = messages(&format!("N{si}{n}"), s.messages);
            let (ok, wrong, secs, _) = load(&addrs, *s, msgs, None).await?;
            let commits = commits_before
                .zip(pg_commits().await)
                .map_or("-".into(), |(a, b)| {
                    format!("{:.0}", (b - a) as f64 / secs.max(1e-9))
                });
            let used: Vec<Option<f64>> = nodes
                .iter()
                .zip(&cpu_before)
                .map(|(x, before)| before.zip(cpu_secs(x.child.id())).map(|(a, b)| b - a))
                .collect();
            let took = taken_by_each(s, n);
            let each: Vec<String> = used
                .iter()
                .zip(&took)
                .map(|(u, &m)| {
                    u.map_or("-".into(), |u| {
                        format!("{:.0} µs", u * 1e6 / m.max(1) as f64)
                    })
                })
                .collect();
            let total = used
                .iter()
                .copied()
                .sum::<Option<f64>>()
                .map_or("-".into(), |u| {
                    format!("{:.0} µs", u * 1e6 / ((ok + wrong) as f64).max(1.0))
                });
            println!(
                "| {} | {n} | {:.0} | {total} | {} | {commits} | {} |",
                s.label(),
                (ok + wrong) as f64 / secs.max(1e-9),
                each.join(", "),
                if wrong == 0 {
                    "yes".to_string()
                } else {
                    format!("{wrong} wrong")
                }
            );
            all_right &= wrong == 0;
        }
    }
    Ok(if all_right {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// How many of the scenario's messages each of `n` nodes took: `load` gives connection `c`
/// its own run of the messages and sends it to node `c % n` (16 connections over 3 nodes are
/// 6, 5 and 5 — not a third each).
fn taken_by_each(s: &Scenario, n: usize) -> Vec<usize> {
    let per = s.messages.div_ceil(s.connections.max(1));
    let mut took = vec![0; n.max(1)];
    for c in 0..s.connections {
        let run = ((c + 1) * per).min(s.messages) - (c * per).min(s.messages);
        took[c % n.max(1)] += run;
    }
    took
}
