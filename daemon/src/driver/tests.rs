//! The driver with both ends in this process, over loopback.

use std::sync::Mutex;
use std::time::Duration;

use sshvpn_proto::connection::tun::{TunDecoder, lone_packet};
use sshvpn_proto::{ClientConfig, Ed25519Key, ServerConfig, TunMode};
use tokio::net::TcpListener;

use super::*;

#[derive(Debug)]
struct TrustAll;

impl Policy for TrustAll {
    fn verify_host_key(&mut self, _: &HostKey) -> bool {
        true
    }

    fn authorize_key(
        &mut self,
        _: &str,
        _: &PublicKey,
        _: Option<&sshvpn_proto::ssh_key::Certificate>,
        _: bool,
    ) -> bool {
        true
    }
}

/// A client driver logged in to a server driver: the client's handle, and the server's
/// queue of what the client asks for.
async fn connected() -> (Handle, mpsc::Receiver<Incoming>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let client_socket = TcpStream::connect(listener.local_addr().expect("address"))
        .await
        .expect("connect");
    let (server_socket, _) = listener.accept().await.expect("accept");
    let now = Instant::now();
    let server = ServerConfig::new(Ed25519Key::from_seed(&[7; 32]));
    let server = Connection::server(server, now).expect("server connection");
    let client = ClientConfig::new("root", vec![Ed25519Key::from_seed(&[9; 32])]);
    let client = Connection::client(client, now).expect("client connection");
    let (_, incoming, _) = spawn(server_socket, server, Box::new(TrustAll));
    let (handle, _, _) = spawn(client_socket, client, Box::new(TrustAll));
    handle.authenticated().await.expect("log in");
    (handle, incoming)
}

/// One tun@openssh.com message whose packet is `seq`.
fn frame(seq: u64) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&12u32.to_be_bytes());
    f.extend_from_slice(&2u32.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f
}

fn seq_of(packet: &[u8]) -> u64 {
    u64::from_be_bytes(packet.try_into().expect("an 8-byte packet"))
}

/// Takes lone frames except the third of every four, logging what it took.
#[derive(Debug)]
struct Picky(Arc<Mutex<Vec<u64>>>);

impl Sink for Picky {
    fn take(&mut self, chunk: &[u8]) -> bool {
        let Some(seq) = lone_packet(chunk).map(|p| seq_of(p.data)) else {
            return false;
        };
        if seq % 4 == 2 {
            return false;
        }
        self.0.lock().unwrap().push(seq);
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_never_overtakes_data_the_reader_has_not_finished_with() {
    const FRAMES: u64 = 40;
    let (client, mut incoming) = connected().await;
    let tun = ChannelKind::Tun {
        mode: TunMode::PointToPoint,
        unit: None,
    };
    let (opened, accepted) = tokio::join!(client.open(tun), async {
        match incoming.recv().await {
            Some(Incoming::Channel(c)) => c.accept().await.expect("accept"),
            other => panic!("expected a channel, got {other:?}"),
        }
    });
    let ChannelStream {
        mut reader,
        mut writer,
    } = opened.expect("open");
    let log = Arc::new(Mutex::new(Vec::new()));
    writer.deliver_to(Box::new(Picky(log.clone()))).await;
    // The reader is slow to finish with each chunk. Frames come in fours, 2 ms apart: the
    // sink takes the first two, leaves the third to the reader, and the fourth arrives while
    // the reader is still busy with the third, so it must wait for it, or order is lost.
    let read_log = log.clone();
    let slow_reader = tokio::spawn(async move {
        let mut read = 0;
        while let Inbound::Data(chunk) = reader.recv().await {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let mut decoder = TunDecoder::default();
            decoder.push(&chunk);
            while let Some(p) = decoder.next_packet().expect("framing") {
                read_log.lock().unwrap().push(seq_of(p.data));
                read += 1;
            }
        }
        read
    });
    let mut sender = accepted.writer;
    for seq in 0..FRAMES {
        sender.send(frame(seq)).await.expect("send");
        let pause = if seq % 4 == 3 { 40 } else { 2 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while log.lock().unwrap().len() < FRAMES as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sender.close().await;
    let read = tokio::time::timeout(Duration::from_secs(10), slow_reader)
        .await
        .expect("the reader sees the close")
        .expect("reader task");
    let log = log.lock().unwrap().clone();
    assert_eq!(
        log,
        (0..FRAMES).collect::<Vec<_>>(),
        "frames in the order sent"
    );
    assert!(read > 0, "the reader got what the sink left");
    assert!(
        read < FRAMES,
        "the sink took frames while the reader was idle"
    );
}

/// The SSH connection's send buffer is widened past the kernel's 4 MiB tuning limit, which
/// would cap a 40 ms path at about 0.7 Gbit/s (BENCHMARKS.md, thirteenth measurement), and
/// what may wait unsent in it is bounded. That needs CAP_NET_ADMIN: the tests run as root,
/// as the daemon does.
#[tokio::test]
async fn the_ssh_socket_may_hold_what_a_long_fast_path_needs() {
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    assert!(
        root,
        "this test needs root (CAP_NET_ADMIN for SO_SNDBUFFORCE), as CI runs it"
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let socket = TcpStream::connect(listener.local_addr().expect("address"))
        .await
        .expect("connect");
    let _queue = SendQueue::new(&socket);
    let mut low_water: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    #[allow(unsafe_code)] // No safe getter for TCP_NOTSENT_LOWAT.
    // SAFETY: a valid socket descriptor, a live c_int and its length.
    let got = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&socket),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&raw mut low_water).cast(),
            &raw mut len,
        )
    };
    assert_eq!(got, 0, "getsockopt TCP_NOTSENT_LOWAT");
    assert_eq!(
        low_water as usize,
        send_queue::QUEUE_MAX,
        "what may wait unsent stays bounded"
    );
    let socket = tokio::net::TcpSocket::from_std_stream(socket.into_std().expect("std socket"));
    let size = socket.send_buffer_size().expect("SO_SNDBUF");
    // The kernel reports twice what was asked, its own overhead included.
    assert!(
        size >= 2 * send_queue::SEND_BUFFER as u32,
        "SO_SNDBUF is {size}"
    );
}
