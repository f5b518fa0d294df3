//! The byte pump: join two streams and copy both ways until both directions are done.
//!
//! Half-close is carried through: when one side finishes sending, the other side's write
//! half is shut down and the opposite direction keeps flowing.

use std::io;

use tokio::io::copy_bidirectional_with_sizes;

use super::Stream;

/// Bytes moved by a finished pump.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transferred {
    /// From the client to the server.
    pub client_to_server: u64,
    /// From the server to the client.
    pub server_to_client: u64,
}

/// Buffer per direction. 64 KiB keeps bulk transfers out of the per-call overhead while
/// costing little for idle connections (tokio allocates the buffers lazily per copy).
pub const BUF_SIZE: usize = 64 * 1024;

/// Copy bytes between `client` and `server` until both directions reach EOF.
pub async fn pump(client: &mut Stream, server: &mut Stream) -> io::Result<Transferred> {
    let (a, b) = copy_bidirectional_with_sizes(client, server, BUF_SIZE, BUF_SIZE).await?;
    Ok(Transferred {
        client_to_server: a,
        server_to_client: b,
    })
}
