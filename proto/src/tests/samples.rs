//! One representative value for every request and response variant.

use bytes::Bytes;

use crate::*;

fn s(v: &str) -> String {
    v.to_owned()
}

fn b(v: &'static [u8]) -> Bytes {
    Bytes::from_static(v)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| s(x)).collect()
}

fn audit_query() -> AuditQuery {
    AuditQuery {
        start: 1_700_000_000,
        end: 0,
        event_types: strings(&["auth", "acl"]),
        user: s("alice"),
        resource: s("topic:orders"),
        result: s("success"),
        search: s("login"),
        limit: 50,
        offset: 10,
    }
}

fn metadata() -> RecordMetadata {
    RecordMetadata::new("orders", 2, 99, 1_700_000_000_123, b"key", b"value")
}

fn user_info() -> UserInfo {
    UserInfo {
        username: s("bob"),
        roles: strings(&["producer"]),
        permissions: strings(&["write"]),
        enabled: true,
        created: 1_700_000_000,
        updated: 1_700_000_100,
    }
}

fn user_request() -> UserRequest {
    UserRequest {
        username: s("bob"),
        password: s("new-pw"),
        old_password: s("old-pw"),
        roles: strings(&["consumer", "producer"]),
        enabled: true,
    }
}

/// Every request variant (each request opcode appears at least once).
pub fn requests() -> Vec<Request> {
    vec![
        Request::Produce(ProduceRequest {
            topic: s("orders"),
            key: b(b"k1"),
            value: b(b"{\"id\":1}"),
            partition: 3,
        }),
        Request::Consume(ConsumeRequest {
            topic: s("orders"),
            partition: 1,
            offset: 42,
        }),
        Request::CreateTopic(CreateTopicRequest {
            topic: s("orders"),
            partitions: 6,
        }),
        Request::Metadata(TopicRequest { topic: s("orders") }),
        Request::Subscribe(SubscribeRequest {
            topic: s("orders"),
            group_id: s("g1"),
            partition: 0,
            mode: s(MODE_EARLIEST),
        }),
        Request::Commit(CommitRequest {
            topic: s("orders"),
            group_id: s("g1"),
            partition: 0,
            offset: 17,
        }),
        Request::Fetch(FetchRequest {
            topic: s("orders"),
            partition: 0,
            offset: 5,
            max_messages: 100,
            filter: s("$.id"),
        }),
        Request::ListTopics,
        Request::DeleteTopic(TopicRequest { topic: s("old") }),
        Request::ConsumeZeroCopy(ConsumeRequest {
            topic: s("t"),
            partition: 0,
            offset: 1,
        }),
        Request::FetchBinary(FetchRequest {
            topic: s("t"),
            partition: 2,
            offset: 0,
            max_messages: 0,
            filter: String::new(),
        }),
        Request::RegisterSchema(RegisterSchemaRequest {
            name: s("user"),
            schema_type: s("json"),
            definition: b(b"{\"type\":\"object\"}"),
        }),
        Request::GetSchema(SchemaVersionRequest {
            name: s("user"),
            version: 2,
        }),
        Request::ListSchemas(ListSchemasRequest { filter: s("user") }),
        Request::ValidateSchema(ValidateSchemaRequest {
            name: s("user"),
            message: b(b"{}"),
        }),
        Request::ProduceWithSchema(ProduceWithSchemaRequest {
            topic: s("users"),
            data: b(b"{\"name\":\"x\"}"),
            schema_name: s("user"),
        }),
        Request::DeleteSchema(SchemaVersionRequest {
            name: s("user"),
            version: 0,
        }),
        Request::FetchDlq(FetchDlqRequest {
            topic: s("orders"),
            max_messages: 10,
        }),
        Request::ReplayDlq(ReplayDlqRequest {
            topic: s("orders"),
            target: DlqTarget::MessageId(s("dlq-123")),
        }),
        Request::ReplayDlq(ReplayDlqRequest {
            topic: s("orders"),
            target: DlqTarget::Offset(12),
        }),
        Request::PurgeDlq(TopicRequest { topic: s("orders") }),
        Request::ProduceDelayed(ProduceDelayedRequest {
            topic: s("orders"),
            data: b(b"later"),
            delay_ms: 5_000,
        }),
        Request::CancelDelayed(RawPayload(b(b"\x00\x01opaque"))),
        Request::ProduceWithTtl(ProduceWithTtlRequest {
            topic: s("orders"),
            data: b(b"short-lived"),
            ttl_ms: 60_000,
        }),
        Request::BeginTx,
        Request::CommitTx(TxRequest { txn_id: s("txn-1") }),
        Request::AbortTx(TxRequest { txn_id: s("txn-2") }),
        Request::ProduceTx(ProduceTxRequest {
            txn_id: s("txn-1"),
            topic: s("orders"),
            data: b(b"in-tx"),
        }),
        Request::ClusterJoin(ClusterJoinRequest {
            peer_address: s("10.0.0.2:9093"),
        }),
        Request::ClusterLeave,
        Request::ClusterStatus,
        Request::ClusterMetadata(ClusterMetadataRequest { topic: s("orders") }),
        Request::GetOffset(GroupPartitionRequest {
            topic: s("orders"),
            group_id: s("g1"),
            partition: 1,
        }),
        Request::ResetOffset(ResetOffsetRequest {
            topic: s("orders"),
            group_id: s("g1"),
            partition: 1,
            mode: s(MODE_OFFSET),
            offset: 77,
        }),
        Request::ResetOffset(ResetOffsetRequest {
            topic: s("orders"),
            group_id: s("g1"),
            partition: 1,
            mode: s(MODE_LATEST),
            offset: 0,
        }),
        Request::ListGroups,
        Request::DescribeGroup(GroupRequest {
            topic: s("orders"),
            group_id: s("g1"),
        }),
        Request::GetLag(GroupPartitionRequest {
            topic: s("orders"),
            group_id: s("g1"),
            partition: 0,
        }),
        Request::DeleteGroup(GroupRequest {
            topic: s("orders"),
            group_id: s("g1"),
        }),
        Request::SeekToTimestamp(SeekToTimestampRequest {
            topic: s("orders"),
            partition: 0,
            timestamp_ms: 1_700_000_000_000,
        }),
        Request::Auth(AuthRequest {
            username: s("admin"),
            password: s("secret"),
        }),
        Request::Whoami,
        Request::UserCreate(user_request()),
        Request::UserDelete(UsernameRequest { username: s("bob") }),
        Request::UserUpdate(UserRequest {
            enabled: false,
            ..user_request()
        }),
        Request::UserList,
        Request::UserGet(UsernameRequest { username: s("bob") }),
        Request::AclSet(AclSetRequest {
            topic: s("orders"),
            public: false,
            users: strings(&["bob"]),
            roles: strings(&["consumer"]),
        }),
        Request::AclGet(TopicRequest { topic: s("orders") }),
        Request::AclDelete(TopicRequest { topic: s("orders") }),
        Request::AclList,
        Request::PasswordChange(user_request()),
        Request::RoleList,
        Request::AuditQuery(audit_query()),
        Request::AuditExport(AuditExportRequest {
            query: audit_query(),
            format: s("csv"),
        }),
        Request::MatchTopics(TopicRequest {
            topic: s("sensors/+/temp"),
        }),
        Request::JoinGroup(JoinGroupRequest {
            topic: s("orders"),
            group_id: s("billing"),
            member_id: s(""),
            session_timeout_ms: 10_000,
        }),
        Request::GroupHeartbeat(GroupMemberRequest {
            topic: s("orders"),
            group_id: s("billing"),
            member_id: s("member-1"),
        }),
        Request::LeaveGroup(GroupMemberRequest {
            topic: s("orders"),
            group_id: s("billing"),
            member_id: s("member-1"),
        }),
        Request::RejectRecord(RejectRecordRequest {
            topic: s("orders"),
            group_id: s("billing"),
            partition: 1,
            offset: 17,
            reason: s("unparsable amount"),
        }),
        Request::CommitFenced(CommitFencedRequest {
            topic: s("orders"),
            group_id: s("billing"),
            partition: 2,
            offset: 41,
            member_id: s("member-1"),
            generation: 7,
        }),
        Request::ProduceBatch(ProduceBatchRequest {
            topic: s("orders"),
            partition: -1,
            records: vec![
                BatchRecord {
                    key: Bytes::new(),
                    value: b(b"one"),
                },
                BatchRecord {
                    key: b(b"k"),
                    value: b(b"two"),
                },
            ],
        }),
        Request::AuditQueryAlt(audit_query()),
        Request::AuditExportAlt(AuditExportRequest {
            query: AuditQuery::default(),
            format: s("json"),
        }),
    ]
}

fn audit_events() -> AuditQueryResponse {
    AuditQueryResponse {
        events: vec![
            AuditEvent {
                id: s("ev-1"),
                timestamp_ms: 1_700_000_000_000,
                event_type: s("auth"),
                user: s("alice"),
                client_ip: s("10.0.0.9"),
                resource: s("cluster"),
                action: s("login"),
                result: s("success"),
                node_id: s("node-1"),
                details: vec![AuditDetail {
                    key: s("method"),
                    value: s("password"),
                }],
            },
            AuditEvent::default(),
        ],
        total: 7,
        has_more: true,
    }
}

fn group(topic: &str) -> GroupRecord {
    GroupRecord {
        topic: s(topic),
        group_id: s("g1"),
        members: 2,
        offsets: vec![
            PartitionOffset {
                partition: 0,
                offset: 10,
            },
            PartitionOffset {
                partition: 1,
                offset: 0,
            },
        ],
    }
}

/// Every response variant (each response opcode appears at least once).
pub fn responses() -> Vec<Response> {
    let schemas = SchemaListResponse {
        schemas: vec![
            SchemaEntry {
                name: s("user"),
                schema_type: s("json"),
                version: 1,
            },
            SchemaEntry {
                name: s("user"),
                schema_type: s("json"),
                version: 2,
            },
        ],
    };
    let fetch = FetchResponse {
        next_offset: 12,
        records: vec![
            FetchedRecord {
                offset: 10,
                key: Bytes::new(),
                value: b(b"a"),
            },
            FetchedRecord {
                offset: 11,
                key: b(b"k"),
                value: b(b"bb"),
            },
        ],
    };
    let acl_info = AclInfo {
        topic: s("orders"),
        exists: true,
        public: false,
        default_public: true,
        users: strings(&["bob"]),
        roles: strings(&["consumer"]),
    };
    vec![
        Response::Produce(metadata()),
        Response::Consume(ConsumeResponse {
            key: Bytes::new(),
            value: b(b"payload"),
        }),
        Response::CreateTopic,
        Response::Metadata(MetadataResponse {
            topic: s("orders"),
            partitions: vec![PartitionInfo {
                id: 0,
                leader: 1,
                oldest_offset: 0,
                newest_offset: 9,
            }],
        }),
        Response::Subscribe(OffsetResponse { offset: 5 }),
        Response::Commit,
        Response::Fetch(fetch.clone()),
        Response::ListTopics(ListTopicsResponse {
            topics: strings(&["a", "b.dlq", "orders"]),
        }),
        Response::DeleteTopic,
        Response::ConsumeZeroCopy(ConsumeResponse {
            key: b(b"k"),
            value: b(b"v"),
        }),
        Response::FetchBinary(fetch),
        Response::RegisterSchema(SchemaEntry {
            name: s("user"),
            schema_type: s("avro"),
            version: 3,
        }),
        Response::GetSchema(SchemaListResponse {
            schemas: schemas.schemas[..1].to_vec(),
        }),
        Response::ListSchemas(schemas),
        Response::ValidateSchema(ValidateSchemaResponse {
            valid: false,
            errors: strings(&["missing field id", "bad type"]),
        }),
        Response::ProduceWithSchema(metadata()),
        Response::DeleteSchema(OkMessage::ok("OK")),
        Response::FetchDlq(FetchDlqResponse {
            entries: vec![DlqEntry {
                id: s("dlq-1"),
                data: b(b"poison"),
                error: s("handler failed"),
                retries: 3,
            }],
        }),
        Response::ReplayDlq(ReplayDlqResponse {
            success: true,
            message: s("replayed"),
        }),
        Response::PurgeDlq(OkMessage {
            success: false,
            message: s("DLQ not enabled"),
        }),
        Response::ProduceDelayed(RecordMetadata {
            offset: 0,
            ..metadata()
        }),
        Response::ProduceWithTtl(metadata()),
        Response::BeginTx(TxResponse {
            txn_id: s("txn-1"),
            success: true,
        }),
        Response::CommitTx(TxResponse {
            txn_id: s("txn-1"),
            success: true,
        }),
        Response::AbortTx(TxResponse {
            txn_id: s("txn-2"),
            success: true,
        }),
        Response::ProduceTx(metadata()),
        Response::ClusterJoin,
        Response::ClusterLeave,
        Response::ClusterStatus(ClusterStatus {
            cluster_id: s("prod"),
            node_id: s("node-1"),
            leader_id: s("node-2"),
            nodes: vec![
                ClusterNode {
                    node_id: s("node-1"),
                    address: s("10.0.0.1:9092"),
                    role: s("follower"),
                    state: s("alive"),
                },
                ClusterNode {
                    node_id: s("node-2"),
                    address: s("10.0.0.2:9092"),
                    role: s("leader"),
                    state: s("alive"),
                },
            ],
        }),
        Response::ClusterMetadata(ClusterMetadata {
            cluster_id: s("standalone"),
            topics: vec![TopicMetadata {
                topic: s("orders"),
                partitions: vec![PartitionMetadata {
                    partition: 0,
                    leader_id: s("node-1"),
                    leader_addr: s("127.0.0.1:9092"),
                    epoch: 1,
                    state: s("online"),
                    replicas: strings(&["node-1", "node-2"]),
                    isr: strings(&["node-1"]),
                }],
            }],
        }),
        Response::GetOffset(OffsetResponse { offset: 17 }),
        Response::ResetOffset,
        Response::ListGroups(ListGroupsResponse {
            groups: vec![group("a"), group("b")],
        }),
        Response::DescribeGroup(group("orders")),
        Response::GetLag(LagInfo {
            current: 3,
            committed: 3,
            latest: 10,
            lag: 7,
        }),
        Response::DeleteGroup,
        Response::SeekToTimestamp(OffsetResponse { offset: 1234 }),
        Response::Auth(AuthResponse {
            success: true,
            username: s("admin"),
            roles: strings(&["admin"]),
            error: String::new(),
        }),
        Response::Whoami(WhoamiResponse {
            authenticated: true,
            username: s("admin"),
            roles: strings(&["admin"]),
            permissions: strings(&["read", "write", "admin"]),
        }),
        Response::UserCreate(user_info()),
        Response::UserDelete(OkMessage::ok("bob")),
        Response::UserUpdate(OkMessage::ok("updated")),
        Response::UserList(UserListResponse {
            users: vec![user_info(), UserInfo::default()],
        }),
        Response::UserGet(user_info()),
        Response::AclSet(AclAck {
            success: true,
            topic: s("orders"),
        }),
        Response::AclGet(acl_info),
        Response::AclDelete(AclAck {
            success: true,
            topic: s("orders"),
        }),
        Response::AclList(AclListResponse {
            entries: vec![AclListEntry {
                topic: s("orders"),
                exists: true,
                public: true,
                users: vec![],
                roles: strings(&["admin"]),
            }],
            default_public: true,
        }),
        Response::PasswordChange(OkMessage::ok("password changed")),
        Response::RoleList(RoleListResponse {
            roles: vec![RoleInfo {
                name: s("admin"),
                permissions: strings(&["read", "write", "admin"]),
                description: s("everything"),
            }],
        }),
        Response::AuditQuery(audit_events()),
        Response::AuditExport(AuditExportResponse {
            format: s("json"),
            data: b(b"[]"),
        }),
        Response::MatchTopics(ListTopicsResponse {
            topics: vec![s("sensors/room1/temp"), s("sensors/room2/temp")],
        }),
        Response::JoinGroup(GroupAssignment {
            member_id: s("member-1"),
            generation: 7,
            partitions: vec![0, 3],
        }),
        Response::GroupHeartbeat(GroupAssignment {
            member_id: s("member-1"),
            generation: 8,
            partitions: vec![],
        }),
        Response::LeaveGroup,
        Response::CommitFenced,
        Response::RejectRecord(OkMessage::ok("moved to orders.dlq as 1:17")),
        Response::ProduceBatch(ProduceBatchResponse {
            topic: s("orders"),
            partition: 4,
            base_offset: 100,
            count: 50,
            timestamp: 1_700_000_000_000,
        }),
        Response::AuditQueryAlt(AuditQueryResponse::default()),
        Response::AuditExportAlt(AuditExportResponse {
            format: s("csv"),
            data: b(b"id,user\n"),
        }),
        Response::error("topic not found: t9"),
    ]
}
