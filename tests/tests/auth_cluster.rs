//! Users, roles and ACLs in a 3-broker cluster: created through one broker,
//! enforced by every other (they live in the replicated metadata group),
//! and kept by a broker that restarts.

use std::time::Duration;

use flymq_client::{Client, ClientConfig, Credentials};
use flymq_tests::cluster::{Cluster, wait_until};

const ADMIN_PASSWORD: &str = "cluster-admin-pw";

/// A client of `addr`, retried for a while: a user created through another
/// broker exists here once this broker has applied the change.
async fn client(addr: String, user: Option<(&str, &str)>) -> Client {
    let mut last = None;
    for _ in 0..40 {
        match Client::connect(ClientConfig {
            bootstrap: vec![addr.clone()],
            credentials: user.map(|(u, p)| Credentials::new(u, p)),
            request_timeout: Duration::from_secs(20),
            ..ClientConfig::default()
        })
        .await
        {
            Ok(client) => return client,
            Err(err) => last = Some(err),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("cannot connect to {addr} as {:?}: {last:?}", user.map(|u| u.0))
}

fn is_denied(err: &flymq_client::Error, text: &str) -> bool {
    err.to_string().ends_with(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn users_and_acls_made_on_one_broker_are_enforced_on_every_broker() {
    let env = [
        ("FLYMQ_AUTH_ENABLED", "true"),
        ("FLYMQ_DEFAULT_PUBLIC", "false"),
        ("FLYMQ_ADMIN_PASSWORD", ADMIN_PASSWORD),
    ];
    let mut cluster = tokio::task::block_in_place(|| Cluster::start_with(161, 3, &env));
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.client_addr()).collect();
    let addr = |i: usize| addrs[i].clone();

    // The bootstrap admin exists once the metadata group has applied it.
    let admin = client(addr(0), Some(("admin", ADMIN_PASSWORD))).await;
    admin.create_topic("payments", 1).await.unwrap();
    admin.produce("payments", "p0").await.unwrap();
    admin
        .create_user("writer", "writer-pw", vec!["producer".into()])
        .await
        .unwrap();
    admin
        .create_user("reader", "reader-pw", vec!["guest".into()])
        .await
        .unwrap();
    admin
        .set_acl("payments", false, vec!["reader".into()], vec![])
        .await
        .unwrap();

    // On brokers 1 and 2: the users authenticate and the ACL applies.
    for i in [1, 2] {
        let writer = client(addr(i), Some(("writer", "writer-pw"))).await;
        writer.produce("payments", format!("from-{i}")).await.unwrap();
        let err = writer.consume("payments", 0, 0).await.unwrap_err();
        assert!(is_denied(&err, "unauthorized"), "broker {i}: {err}");
        let reader = client(addr(i), Some(("reader", "reader-pw"))).await;
        reader.consume("payments", 0, 0).await.unwrap();
        // An ACL entry grants the topic, writes included (WIRE.md §6.4).
        reader.produce("payments", "via-acl").await.unwrap();
        let anonymous = client(addr(i), None).await;
        let err = anonymous.consume("payments", 0, 0).await.unwrap_err();
        assert!(is_denied(&err, "authentication required"), "broker {i}: {err}");
        assert!(
            Client::connect(ClientConfig {
                bootstrap: vec![addr(i)],
                credentials: Some(Credentials::new("writer", "bad-pw")),
                ..ClientConfig::default()
            })
            .await
            .is_err(),
            "a wrong password must not connect on broker {i}"
        );
    }

    // Revoking on broker 2 takes effect on broker 0.
    let admin2 = client(addr(2), Some(("admin", ADMIN_PASSWORD))).await;
    admin2.delete_acl("payments").await.unwrap();
    let reader0 = client(addr(0), Some(("reader", "reader-pw"))).await;
    wait_until("the ACL removal reaches broker 0", Duration::from_secs(10), || {
        let reader0 = &reader0;
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(async {
                reader0
                    .consume("payments", 0, 0)
                    .await
                    .is_err_and(|e| is_denied(&e, "unauthorized"))
            })
        })
    });

    // A restarted broker still knows the users.
    tokio::task::block_in_place(|| {
        cluster.kill9(1);
        cluster.restart(1, &[]);
        wait_until("node 1 is ready again", Duration::from_secs(60), || {
            flymq_tests::cluster::is_node_ready(&cluster.nodes[1])
        });
    });
    let writer = client(addr(1), Some(("writer", "writer-pw"))).await;
    writer.produce("payments", "after-restart").await.unwrap();
}
