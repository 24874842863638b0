//! The HTTP request handling: the input is the raw bytes a client sends on one connection (any
//! number of requests); the server answers or closes, never panics, and never hangs once the
//! client has hung up.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use stack_exporter::http::{serve_connection, Server};
use stack_exporter::scrape::Scraper;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longer than any answer takes (a scrape with no collector is immediate); a connection still
/// open after the client hung up is a wedge.
const CONNECTION_BOUND: Duration = Duration::from_secs(5);

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a tokio runtime")
    })
}

fn server() -> Arc<Server> {
    static SERVER: OnceLock<Arc<Server>> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            Arc::new(Server {
                scraper: Scraper::new(vec![]),
                telemetry_path: "/metrics".to_string(),
                default_timeout: Duration::from_secs(1),
            })
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(async {
        let (mut client, server_side) = tokio::io::duplex(64 * 1024);
        let connection = tokio::spawn(serve_connection(server(), server_side));
        let (mut reader, mut writer) = tokio::io::split(&mut client);
        let send = async {
            // The server may answer and close before it has read everything: not an error.
            let _ = writer.write_all(data).await;
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
            Err(_) => panic!(
                "the connection was still open {CONNECTION_BOUND:?} after the client hung up"
            ),
        }
    });
});
