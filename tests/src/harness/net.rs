//! TCP peers for data-path tests: an echo server, a sink that digests what it receives, and a
//! bulk transfer that checks an echo byte for byte.
//!
//! The data is a deterministic pattern computed from the byte offset alone, so a reader can
//! check any received range without keeping what was sent.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

/// Size of the reads and writes in bulk transfers.
const CHUNK: usize = 64 * 1024;

/// Fills `buf` with the pattern bytes at `offset..offset + buf.len()`.
pub fn fill_pattern(offset: u64, buf: &mut [u8]) {
    let mut word_index = u64::MAX;
    let mut word = [0u8; 8];
    for (position, byte) in (offset..).zip(buf.iter_mut()) {
        if position / 8 != word_index {
            word_index = position / 8;
            word = splitmix64(word_index).to_le_bytes();
        }
        *byte = word[(position % 8) as usize];
    }
}

fn splitmix64(index: u64) -> u64 {
    let mut z = index.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// SHA-256 of the first `total` pattern bytes, to compare with a [`SinkReport`].
pub fn pattern_sha256(total: usize) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0;
    while offset < total {
        let n = CHUNK.min(total - offset);
        fill_pattern(offset as u64, &mut buf[..n]);
        hasher.update(&buf[..n]);
        offset += n;
    }
    hasher.finalize().into()
}

/// Writes the first `total` pattern bytes to `writer` in 64 KiB chunks (no shutdown).
pub async fn write_pattern<W: AsyncWrite + Unpin>(
    writer: &mut W,
    total: usize,
) -> std::io::Result<()> {
    write_pattern_counted(writer, total, &AtomicU64::new(0)).await
}

async fn write_pattern_counted<W: AsyncWrite + Unpin>(
    writer: &mut W,
    total: usize,
    written: &AtomicU64,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0;
    while offset < total {
        let n = CHUNK.min(total - offset);
        fill_pattern(offset as u64, &mut buf[..n]);
        writer.write_all(&buf[..n]).await?;
        offset += n;
        written.store(offset as u64, Ordering::Relaxed);
    }
    writer.flush().await
}

/// Connects to `addr` and runs [`transfer_echo_on`].
pub async fn transfer_echo(
    addr: SocketAddr,
    total: usize,
    timeout: Duration,
) -> Result<(), String> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| format!("connect to {addr} timed out after {timeout:?}"))?
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    transfer_echo_on(stream, total, timeout).await
}

/// Writes `total` pattern bytes to `stream` while reading its echo concurrently, then half-
/// closes and expects exactly the same bytes followed by EOF, all within `timeout`.
pub async fn transfer_echo_on(
    stream: TcpStream,
    total: usize,
    timeout: Duration,
) -> Result<(), String> {
    let (mut reader, mut writer) = stream.into_split();
    let written = AtomicU64::new(0);
    let read = AtomicU64::new(0);

    let send = async {
        write_pattern_counted(&mut writer, total, &written)
            .await
            .map_err(|e| {
                format!(
                    "write failed at byte {}: {e}",
                    written.load(Ordering::Relaxed)
                )
            })?;
        writer
            .shutdown()
            .await
            .map_err(|e| format!("shutdown after writing {total} bytes: {e}"))
    };

    let receive = async {
        let mut buf = vec![0u8; CHUNK];
        let mut expected = vec![0u8; CHUNK];
        let mut offset = 0usize;
        loop {
            let n = reader
                .read(&mut buf)
                .await
                .map_err(|e| format!("read failed at byte {offset}: {e}"))?;
            if n == 0 {
                break;
            }
            if offset + n > total {
                return Err(format!(
                    "echo returned more than the {total} bytes sent (at least {})",
                    offset + n
                ));
            }
            fill_pattern(offset as u64, &mut expected[..n]);
            if let Some(i) = buf[..n]
                .iter()
                .zip(&expected[..n])
                .position(|(a, b)| a != b)
            {
                return Err(format!(
                    "echoed data differs at byte {} (got {:#04x}, sent {:#04x})",
                    offset + i,
                    buf[i],
                    expected[i]
                ));
            }
            offset += n;
            read.store(offset as u64, Ordering::Relaxed);
        }
        if offset == total {
            Ok(())
        } else {
            Err(format!("echo ended (EOF) after {offset} of {total} bytes"))
        }
    };

    let both = async {
        let (sent, received) = tokio::join!(send, receive);
        received.and(sent)
    };
    match tokio::time::timeout(timeout, both).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "transfer of {total} bytes timed out after {timeout:?}: wrote {}, read back {}",
            written.load(Ordering::Relaxed),
            read.load(Ordering::Relaxed)
        )),
    }
}

/// A TCP echo server on 127.0.0.1: each connection gets back everything it sends, then EOF
/// once it half-closes. Stops (with all its connections) on drop.
#[derive(Debug)]
pub struct EchoServer {
    pub port: u16,
    task: JoinHandle<()>,
    accepted: std::sync::Arc<AtomicU64>,
}

impl EchoServer {
    pub async fn start() -> EchoServer {
        // A backlog of 1024, not tokio's 128: tests open hundreds of connections at once.
        let socket = tokio::net::TcpSocket::new_v4().expect("echo server socket");
        socket
            .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .expect("bind echo server");
        let listener = socket.listen(1024).expect("echo server listen");
        let port = listener.local_addr().expect("echo server address").port();
        let accepted = std::sync::Arc::new(AtomicU64::new(0));
        let count = accepted.clone();
        let task = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection task.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        count.fetch_add(1, Ordering::Relaxed);
                        connections.spawn(echo(stream));
                    }
                    Some(_) = connections.join_next() => {}
                }
            }
        });
        EchoServer {
            port,
            task,
            accepted,
        }
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(stream: TcpStream) {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::with_capacity(CHUNK, reader);
    if tokio::io::copy_buf(&mut reader, &mut writer).await.is_ok() {
        let _ = writer.shutdown().await;
    }
}

/// What a [`SinkServer`] connection received before EOF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkReport {
    pub bytes: u64,
    pub sha256: [u8; 32],
    /// The read error that ended the connection, if it did not end with EOF.
    pub error: Option<String>,
}

/// A TCP server on 127.0.0.1 that reads each connection to EOF and reports how many bytes
/// it got and their SHA-256. Stops on drop.
#[derive(Debug)]
pub struct SinkServer {
    pub port: u16,
    reports: mpsc::UnboundedReceiver<SinkReport>,
    task: JoinHandle<()>,
}

impl SinkServer {
    pub async fn start() -> SinkServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind sink server");
        let port = listener.local_addr().expect("sink server address").port();
        let (sender, reports) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        connections.spawn(sink(stream, sender.clone()));
                    }
                    Some(_) = connections.join_next() => {}
                }
            }
        });
        SinkServer {
            port,
            reports,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The report of the next connection to finish; panics if none does within `timeout`.
    pub async fn next_report(&mut self, timeout: Duration) -> SinkReport {
        match tokio::time::timeout(timeout, self.reports.recv()).await {
            Ok(Some(report)) => report,
            Ok(None) => panic!("sink server stopped"),
            Err(_) => panic!("no connection to the sink finished within {timeout:?}"),
        }
    }
}

impl Drop for SinkServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn sink(mut stream: TcpStream, reports: mpsc::UnboundedSender<SinkReport>) {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut bytes = 0u64;
    let error = loop {
        match stream.read(&mut buf).await {
            Ok(0) => break None,
            Ok(n) => {
                hasher.update(&buf[..n]);
                bytes += n as u64;
            }
            Err(e) => break Some(e.to_string()),
        }
    };
    let _ = reports.send(SinkReport {
        bytes,
        sha256: hasher.finalize().into(),
        error,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An "echo" that flips the byte at `corrupt_at` and stops after `limit` bytes.
    async fn faulty_echo(corrupt_at: usize, limit: usize) -> (SocketAddr, JoinHandle<()>) {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (mut reader, mut writer) = stream.into_split();
            let mut buf = vec![0u8; CHUNK];
            let mut offset = 0;
            while offset < limit {
                let n = reader.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                let n = n.min(limit - offset);
                if (offset..offset + n).contains(&corrupt_at) {
                    buf[corrupt_at - offset] ^= 0xff;
                }
                writer.write_all(&buf[..n]).await.unwrap();
                offset += n;
            }
            writer.shutdown().await.unwrap();
            // Keep reading so the sender is not reset.
            while reader.read(&mut buf).await.unwrap_or(0) > 0 {}
        });
        (addr, task)
    }

    #[tokio::test]
    async fn transfer_echo_passes_through_a_true_echo() {
        let echo = EchoServer::start().await;
        transfer_echo(echo.addr(), 3 * CHUNK + 17, Duration::from_secs(10))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn transfer_echo_reports_the_first_corrupted_byte() {
        let (addr, _task) = faulty_echo(100_000, usize::MAX).await;
        let err = transfer_echo(addr, 200_000, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(err.contains("differs at byte 100000"), "{err}");
    }

    #[tokio::test]
    async fn transfer_echo_reports_a_short_echo() {
        let (addr, _task) = faulty_echo(usize::MAX, 150_000).await;
        let err = transfer_echo(addr, 200_000, Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(err.contains("after 150000 of 200000"), "{err}");
    }

    #[test]
    fn pattern_is_offset_addressable() {
        let mut whole = vec![0u8; 100];
        fill_pattern(0, &mut whole);
        let mut tail = vec![0u8; 37];
        fill_pattern(63, &mut tail);
        assert_eq!(&whole[63..], &tail[..]);
        assert_ne!(whole[..8], whole[8..16]);
    }
}
