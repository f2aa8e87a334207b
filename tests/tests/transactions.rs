//! Transactions on a 3-broker cluster (issue 12, item 1), through the Rust
//! SDK: a commit across partitions is readable on every replica, and a
//! commit during which a broker is killed (the client's broker, or the
//! metadata leader that stores the decision) ends all or nothing: every
//! record of the transaction readable exactly once, or none of them.

use std::time::{Duration, Instant};

use flymq_client::Client;
use flymq_tests::cluster::{Cluster, client_for};

const TOPIC: &str = "payments";
const PARTITIONS: u32 = 3;
const RECORDS: usize = 30;

/// The values of every partition of the topic read through `client`, sorted.
async fn values(client: &Client) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for partition in 0..PARTITIONS as i32 {
        let mut offset = 0;
        loop {
            let fetched = client.fetch(TOPIC, partition, offset, 1000, "").await.ok()?;
            if fetched.records.is_empty() {
                break;
            }
            out.extend(
                fetched
                    .records
                    .iter()
                    .map(|r| String::from_utf8_lossy(&r.value).into_owned()),
            );
            offset = fetched.next_offset;
        }
    }
    out.sort();
    Some(out)
}

fn of_round(values: &[String], round: usize) -> Vec<String> {
    let prefix = format!("r{round}-");
    values.iter().filter(|v| v.starts_with(&prefix)).cloned().collect()
}

fn expected(round: usize) -> Vec<String> {
    (0..RECORDS).map(|i| format!("r{round}-{i:03}")).collect()
}

/// The brokers' log lines about transactions and failures, for a failure message.
fn transaction_log_lines(cluster: &Cluster) -> String {
    let all = format!("{}\n{}", cluster.past_logs.join("\n"), cluster.logs());
    all.lines()
        .filter(|l| l.starts_with("---") || l.contains("txn") || l.contains("transaction") || l.contains("WARN"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn metadata_leader(cluster: &Cluster) -> Option<usize> {
    (0..cluster.nodes.len())
        .find(|i| cluster.procs[*i].is_some() && cluster.status(*i)["role"].as_str() == Some("leader"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_is_all_or_nothing_when_a_broker_dies_during_its_commit() {
    let mut cluster = tokio::task::block_in_place(|| Cluster::start(221, 3));
    let all: Vec<_> = cluster.nodes.iter().collect();
    let admin = client_for(&all).await;
    admin.create_topic(TOPIC, PARTITIONS).await.expect("create topic");

    // Round 0: no failure; every replica has every record once.
    let via = client_for(&[&cluster.nodes[0]]).await;
    let txn = via.begin_transaction().await.expect("begin");
    for value in expected(0) {
        txn.produce(TOPIC, value).await.expect("produce in transaction");
    }
    assert_eq!(of_round(&values(&via).await.unwrap(), 0), Vec::<String>::new());
    txn.commit().await.expect("commit");
    for node in &cluster.nodes {
        let reader = client_for(&[node]).await;
        let mut got = Vec::new();
        for _ in 0..100 {
            got = of_round(&values(&reader).await.unwrap_or_default(), 0);
            if got.len() >= RECORDS {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(got, expected(0), "{}: the committed transaction", node.client_addr());
    }

    // Rounds 1-4: a broker dies while the commit is in flight: the client's
    // own broker (odd rounds) or the metadata leader (even rounds).
    for round in 1..=4 {
        let coordinator = round % 3;
        let via = client_for(&[&cluster.nodes[coordinator]]).await;
        let txn = via.begin_transaction().await.expect("begin");
        for value in expected(round) {
            txn.produce(TOPIC, value).await.expect("produce in transaction");
        }
        let victim = match round % 2 {
            1 => coordinator,
            _ => metadata_leader(&cluster).unwrap_or(coordinator),
        };
        let commit = tokio::spawn(txn.commit());
        tokio::time::sleep(Duration::from_millis(2 * round as u64)).await;
        tokio::task::block_in_place(|| cluster.kill9(victim));
        let answered = tokio::time::timeout(Duration::from_secs(30), commit)
            .await
            .expect("the commit answers or fails")
            .expect("commit task");

        // Give a new metadata leader time to finish a stored decision, then
        // the outcome must be all or nothing, and stay so.
        let survivor = (0..3).find(|i| *i != victim).unwrap();
        let reader = client_for(&[&cluster.nodes[survivor]]).await;
        // Up to 45 s: with a broker down, a share may wait for a partition
        // election and for the broker restarted in the previous round to
        // catch up; the recovery retries every second (a CI run once saw
        // 20 of 30 records after 20 s; not reproduced since).
        let settle = Instant::now() + Duration::from_secs(45);
        let mut got = Vec::new();
        while Instant::now() < settle {
            if let Some(all) = values(&reader).await {
                got = of_round(&all, round);
                if got.len() >= RECORDS {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            got.is_empty() || got == expected(round),
            "round {round} (killed broker {victim}, commit answered {answered:?}): \
             {} of {RECORDS} records readable: {got:?}\n{}",
            got.len(),
            transaction_log_lines(&cluster)
        );
        if answered.is_ok() {
            assert_eq!(got, expected(round), "round {round}: acknowledged commit");
        }
        tokio::task::block_in_place(|| cluster.restart(victim, &[]));

        // The restarted broker agrees, record for record.
        let rejoined = client_for(&[&cluster.nodes[victim]]).await;
        let mut again = Vec::new();
        for _ in 0..300 {
            if let Some(all) = values(&rejoined).await {
                again = of_round(&all, round);
                if again == got {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(again, got, "round {round}: the restarted broker's copy");
        eprintln!(
            "round {round}: killed broker {victim}, commit {}, {} records readable",
            if answered.is_ok() { "acknowledged" } else { "failed" },
            got.len()
        );
    }
}
