//! Transactions (WIRE.md §9.11).

use bytes::Bytes;

use crate::wire::wire_struct;

wire_struct! {
    /// PRODUCE_TX (0x43): `str16 txn_id | str16 topic | bytes32 data`.
    pub struct ProduceTxRequest {
        /// Transaction id from BEGIN_TX.
        pub txn_id: String => str16,
        /// Topic.
        pub topic: String => str16,
        /// Record value.
        pub data: Bytes => bytes32,
    }
}

wire_struct! {
    /// COMMIT_TX (0x41) and ABORT_TX (0x42): `str16 txn_id`.
    pub struct TxRequest {
        /// Transaction id.
        pub txn_id: String => str16,
    }
}

wire_struct! {
    /// BEGIN_TX / COMMIT_TX / ABORT_TX reply: `str16 txn_id | u8 success`.
    pub struct TxResponse {
        /// Transaction id.
        pub txn_id: String => str16,
        /// Always true in FlyMQ (failures are error frames).
        pub success: bool => bool,
    }
}
