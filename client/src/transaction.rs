//! Transactions (BEGIN_TX / PRODUCE_TX / COMMIT_TX / ABORT_TX): records
//! produced in a transaction become readable at [`Transaction::commit`],
//! every one of them or none, also across topics and partitions;
//! [`Transaction::abort`] discards them.
//!
//! The broker keeps an open transaction with the connection that began it:
//! if the client reconnects in between (a broker restart, a network error),
//! the transaction is gone and `produce`/`commit` fail with the reason;
//! begin a new one. An idle transaction is aborted after the broker's
//! `transaction_timeout_ms` (60 s by default).

use bytes::Bytes;
use flymq_proto::{ProduceTxRequest, Request, Response, TxRequest};

use crate::client::{Client, unexpected};
use crate::error::Result;

/// An open transaction; see the [module documentation](self).
#[derive(Debug)]
#[must_use = "a transaction does nothing until it is committed"]
pub struct Transaction {
    client: Client,
    id: String,
}

impl Client {
    /// Begins a transaction on this client's connection.
    ///
    /// ```no_run
    /// # async fn example(client: flymq_client::Client) -> flymq_client::Result<()> {
    /// let txn = client.begin_transaction().await?;
    /// txn.produce("debits", "acct-1:-100").await?;
    /// txn.produce("credits", "acct-2:+100").await?;
    /// txn.commit().await?; // both records readable, or (on an error) neither
    /// # Ok(())
    /// # }
    /// ```
    pub async fn begin_transaction(&self) -> Result<Transaction> {
        match self.request(&Request::BeginTx).await? {
            Response::BeginTx(r) => Ok(Transaction {
                client: self.clone(),
                id: r.txn_id,
            }),
            other => Err(unexpected("BEGIN_TX", &other)),
        }
    }
}

impl Transaction {
    /// The broker's id of this transaction.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Adds `value` (no key; the broker spreads a transaction's records over
    /// the topic's partitions) to the transaction. Invisible until commit.
    pub async fn produce(&self, topic: &str, value: impl Into<Bytes>) -> Result<()> {
        let req = Request::ProduceTx(ProduceTxRequest {
            txn_id: self.id.clone(),
            topic: topic.to_owned(),
            data: value.into(),
        });
        match self.client.request(&req).await? {
            Response::ProduceTx(_) => Ok(()),
            other => Err(unexpected("PRODUCE_TX", &other)),
        }
    }

    /// Makes every record of the transaction readable. An error says
    /// whether nothing was committed or the outcome could not be confirmed
    /// (then it is all or nothing: read before producing again).
    pub async fn commit(self) -> Result<()> {
        let req = Request::CommitTx(TxRequest { txn_id: self.id });
        match self.client.request(&req).await? {
            Response::CommitTx(_) => Ok(()),
            other => Err(unexpected("COMMIT_TX", &other)),
        }
    }

    /// Discards every record of the transaction.
    pub async fn abort(self) -> Result<()> {
        let req = Request::AbortTx(TxRequest { txn_id: self.id });
        match self.client.request(&req).await? {
            Response::AbortTx(_) => Ok(()),
            other => Err(unexpected("ABORT_TX", &other)),
        }
    }
}
