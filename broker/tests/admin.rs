//! The admin gRPC API on a standalone broker: bad requests get the
//! documented status codes and leave the broker serving.

use flymq_broker::testing::TestBroker;
use flymq_proto::grpc::admin::admin_client::AdminClient;
use flymq_proto::grpc::admin::{
    CreateTopicRequest, DecommissionRequest, DescribeTopicRequest, ListTopicsRequest, UpsertUserRequest,
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
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
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
