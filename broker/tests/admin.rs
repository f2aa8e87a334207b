//! The admin gRPC API on a standalone broker: bad requests get the
//! documented status codes and leave the broker serving.

use bytes::Bytes;
use flymq_broker::testing::TestBroker;
use flymq_proto::grpc::admin::admin_client::AdminClient;
use flymq_proto::grpc::admin::{
    AddPartitionsRequest, CreateTopicRequest, DecommissionRequest, DescribeTopicRequest, ListTopicsRequest,
    TopicConfig, UpdateTopicConfigRequest, UpsertUserRequest,
};
use tonic::Code;

async fn admin(broker: &TestBroker) -> AdminClient<tonic::transport::Channel> {
    AdminClient::connect(format!("http://{}", broker.admin_addr()))
        .await
        .expect("admin API reachable")
}

fn create(name: &str, partitions: u32, replication_factor: u32) -> CreateTopicRequest {
    CreateTopicRequest {
        name: name.into(),
        partitions,
        replication_factor,
        ..Default::default()
    }
}

#[tokio::test]
async fn bad_admin_requests_get_clear_statuses() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.expect("broker starts");
    let mut api = admin(&broker).await;

    let err = api.create_topic(create("bad name!", 1, 0)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("invalid topic name"), "{}", err.message());

    let err = api.create_topic(create("orders", 1, 3)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("needs a cluster"), "{}", err.message());

    let err = api.create_topic(create("orders", 100_000, 0)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    let err = api
        .describe_topic(DescribeTopicRequest { name: "missing".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    let err = api.decommission(DecommissionRequest { node_id: 1 }).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    let err = api
        .upsert_user(UpsertUserRequest {
            username: "alice".into(),
            password: "s3cret-value".into(),
            roles: vec!["no-such-role".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("no-such-role"), "{}", err.message());
    assert!(
        !err.message().contains("s3cret-value"),
        "a password leaked into an error"
    );

    // The broker still serves, and creation is idempotent with if_not_exists.
    let info = api.create_topic(create("orders", 2, 0)).await.unwrap().into_inner();
    assert_eq!(info.partitions, 2);
    let err = api.create_topic(create("orders", 2, 0)).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    let again = CreateTopicRequest {
        if_not_exists: true,
        ..create("orders", 2, 0)
    };
    api.create_topic(again).await.expect("if_not_exists");
    let topics = api.list_topics(ListTopicsRequest {}).await.unwrap().into_inner().topics;
    assert_eq!(topics.len(), 1);
    broker.shutdown().await;
}

/// Topics change after creation: more partitions (existing records stay
/// where they are, the new ones take writes) and new retention settings,
/// both surviving a restart; shrinking and unknown topics are refused.
#[tokio::test]
async fn topics_grow_partitions_and_change_retention() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TestBroker::start(dir.path()).await.expect("broker starts");
    let mut api = admin(&broker).await;
    api.create_topic(create("orders", 2, 0)).await.unwrap();
    let core = broker.running().broker().clone();
    core.produce("orders", 1, Bytes::from_static(b"k"), Bytes::from_static(b"before"))
        .await
        .unwrap();

    let grown = api
        .add_partitions(AddPartitionsRequest {
            name: "orders".into(),
            partitions: 4,
        })
        .await
        .expect("add partitions")
        .into_inner();
    assert_eq!(grown.partitions, 4);
    assert_eq!(grown.partition_info.len(), 4);
    let ack = core
        .produce("orders", 3, Bytes::from_static(b"k"), Bytes::from_static(b"after"))
        .await
        .expect("the new partition takes writes");
    assert_eq!((ack.partition, ack.base_offset), (3, 0));
    assert_eq!(core.consume("orders", 1, 0).unwrap().1, Bytes::from_static(b"before"));

    for partitions in [4, 3, 100_000] {
        let err = api
            .add_partitions(AddPartitionsRequest {
                name: "orders".into(),
                partitions,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{partitions}: {err:?}");
        assert!(err.message().contains("has 4 partitions"), "{}", err.message());
    }
    let err = api
        .add_partitions(AddPartitionsRequest {
            name: "missing".into(),
            partitions: 2,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");

    let config = TopicConfig {
        retention_ms: 3_600_000,
        retention_bytes: 1 << 30,
        message_ttl_ms: 60_000,
        max_deliveries: 5,
    };
    let err = api
        .update_topic_config(UpdateTopicConfigRequest {
            name: "orders".into(),
            config: Some(TopicConfig {
                max_deliveries: 1001,
                ..config
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("between 1 and 1000"), "{err:?}");
    let updated = api
        .update_topic_config(UpdateTopicConfigRequest {
            name: "orders".into(),
            config: Some(config),
        })
        .await
        .expect("update config")
        .into_inner();
    assert_eq!(updated.config, Some(config));
    let err = api
        .update_topic_config(UpdateTopicConfigRequest {
            name: "missing".into(),
            config: Some(config),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    drop(core);
    broker.shutdown().await;

    // Both changes are durable.
    let broker = TestBroker::start(dir.path()).await.expect("broker restarts");
    let mut api = admin(&broker).await;
    let info = api
        .describe_topic(DescribeTopicRequest { name: "orders".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.partitions, 4);
    assert_eq!(info.config, Some(config));
    let core = broker.running().broker().clone();
    assert_eq!(core.consume("orders", 3, 0).unwrap().1, Bytes::from_static(b"after"));
    drop(core);
    broker.shutdown().await;
}
