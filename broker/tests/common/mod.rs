//! Test support: a raw protocol client (frames built with flymq-proto) for
//! talking to a real broker, including deliberately malformed input.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use flymq_proto::{Frame, Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub const TIMEOUT: Duration = Duration::from_secs(10);

pub struct RawClient {
    pub stream: TcpStream,
    buf: BytesMut,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("connect timeout")
            .expect("connect");
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            buf: BytesMut::new(),
        }
    }

    pub async fn send(&mut self, request: &Request) {
        let bytes = request.to_frame_bytes().expect("encode request");
        self.stream.write_all(&bytes).await.expect("write");
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Reads one response frame; `None` if the broker closed the connection.
    pub async fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = Frame::decode(&mut self.buf).expect("broker sent a malformed frame") {
                return Some(frame);
            }
            let n = tokio::time::timeout(TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .expect("timed out waiting for a response")
                .ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    pub async fn read_response(&mut self) -> Response {
        let frame = self.read_frame().await.expect("connection closed before the response");
        Response::decode_frame(&frame).expect("undecodable response")
    }

    pub async fn call(&mut self, request: Request) -> Response {
        self.send(&request).await;
        self.read_response().await
    }

    /// Whether the broker closed the connection (EOF or reset) without answering.
    pub async fn is_closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(TIMEOUT, self.stream.read(&mut byte)).await {
            Ok(Ok(0)) | Ok(Err(_)) => true,
            Ok(Ok(_)) => false,
            Err(_) => panic!("broker neither answered nor closed"),
        }
    }
}

/// The error text of an error response, or a panic naming what came instead.
pub fn error_text(response: Response) -> String {
    match response {
        Response::Error(e) => e.message,
        other => panic!("expected an error frame, got {other:?}"),
    }
}
