//! The HTTP request handling: the input is the raw bytes a client sends on one connection (any
//! number of requests, complete or not). The server must answer or close, never panic, and close
//! once the client has waited a minute and hung up.
//!
//! The runtime's clock is paused and jumps ahead whenever every task waits, so the server's own
//! timeouts (30 s for a request head) pass in no real time and a wedge shows as a connection
//! still open at `CONNECTION_BOUND`.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use stack_exporter::http::{serve_connection, Server};
use stack_exporter::scrape::Scraper;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the client waits for answers before it hangs up: longer than any server timeout.
const CLIENT_PATIENCE: Duration = Duration::from_secs(60);
/// A connection still open this long after it started is a wedge.
const CONNECTION_BOUND: Duration = Duration::from_secs(300);
/// More than libFuzzer's longest input, so writing the input never waits for the server.
const PIPE_BUFFER: usize = 1 << 20;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a tokio runtime")
    })
}

fn server() -> Arc<Server> {
    static SERVER: OnceLock<Arc<Server>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            Arc::new(Server::new(
                Scraper::new(vec![]),
                "/metrics".to_string(),
                Duration::from_secs(1),
            ))
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(async {
        let (client, server_side) = tokio::io::duplex(PIPE_BUFFER);
        let connection = tokio::spawn(serve_connection(server(), server_side));
        let (mut reader, mut writer) = tokio::io::split(client);
        let send = async {
            // The server may answer and close before it has read everything: not an error.
            let _ = writer.write_all(data).await;
            // Hanging up at once would make the server drop the request unanswered.
            tokio::time::sleep(CLIENT_PATIENCE).await;
            let _ = writer.shutdown().await;
        };
        let receive = async {
            let mut response = Vec::new();
            let _ = reader.read_to_end(&mut response).await;
        };
        let exchange = async {
            tokio::join!(send, receive);
            connection.await
        };
        match tokio::time::timeout(CONNECTION_BOUND, exchange).await {
            Ok(Ok(())) => {}
            Ok(Err(join_error)) if join_error.is_panic() => {
                std::panic::resume_unwind(join_error.into_panic())
            }
            Ok(Err(cancelled)) => {
                panic!("the connection task ended without an answer: {cancelled}")
            }
            Err(_) => panic!("the connection was still open after {CONNECTION_BOUND:?}"),
        }
    });
});
