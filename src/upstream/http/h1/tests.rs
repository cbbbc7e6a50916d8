//! Tests of [`super`]: framing, interim answers, refused answers, pool checks.

use super::pool::idle_and_open;
use super::*;
use std::time::Instant;
use tokio::net::TcpListener;

const FIVE: Option<Duration> = Some(Duration::from_secs(5));

/// Serve `answer` in pieces of `step` bytes to the first request, return what was received.
async fn exchange(answer: &'static [u8], step: usize) -> (Head, Vec<u8>, bool) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut req = [0u8; 1024];
        let _ = s.read(&mut req).await.unwrap();
        for piece in answer.chunks(step) {
            s.write_all(piece).await.unwrap();
            s.flush().await.unwrap();
            tokio::task::yield_now().await;
        }
        // Keep the connection open (a reusable answer must not need EOF).
        let _ = s.read(&mut req).await;
    });
    let stream = Pool::connect(addr, Duration::from_secs(5)).await.unwrap();
    let head = b"POST /mcp HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\n\r\n";
    let (mut ex, resp) = Exchange::start(Conn::Plain(stream), head, b"{}", FIVE)
        .await
        .unwrap();
    let mut body = Vec::new();
    while let Some(chunk) = ex.next_chunk().await.unwrap() {
        body.extend_from_slice(&chunk);
    }
    (resp, body, ex.reusable())
}

const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nx-trailer: t\r\n\r\n";

#[tokio::test]
async fn chunked_with_extensions_and_trailers_in_one_piece_and_byte_by_byte() {
    for step in [CHUNKED.len(), 1, 3] {
        let (resp, body, reusable) = exchange(CHUNKED, step).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(body, b"hello 0123456789", "step {step}");
        assert!(reusable, "step {step}");
    }
}

#[tokio::test]
async fn interim_100_is_skipped_and_content_length_is_honoured() {
    let answer: &[u8] =
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\ncontent-length: 4\r\n\r\nabcd";
    let (resp, body, reusable) = exchange(answer, 5).await;
    assert_eq!(resp.status(), 202);
    assert_eq!(body, b"abcd");
    assert!(reusable);
}

#[tokio::test]
async fn connection_close_is_not_reused_and_204_has_no_body() {
    let answer: &[u8] = b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n";
    let (resp, body, reusable) = exchange(answer, 64).await;
    assert_eq!(resp.status(), 204);
    assert!(body.is_empty());
    assert!(!reusable);
}

/// The error of an exchange whose answer is `answer`.
#[tokio::test]
async fn fields_the_upstreams_connection_names_are_hop_by_hop() {
    let answer: &[u8] = b"HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop , x-other\r\nx-hop: 1\r\nx-kept: s3cr3t\r\nX-Other: 3\r\nkeep-alive: timeout=30\r\ncontent-length: 2\r\n\r\nok";
    let (resp, body, reusable) = exchange(answer, 64).await;
    let names: Vec<&[u8]> = resp.fields().map(|(n, _)| n).collect();
    assert_eq!(names, [&b"x-kept"[..]]);
    assert_eq!(body, b"ok");
    assert!(reusable, "keep-alive among the tokens");
    // The debug form names fields, never values.
    let debug = format!("{resp:?}");
    assert!(
        debug.contains("x-kept") && !debug.contains("s3cr3t"),
        "{debug}"
    );
}

async fn refused(answer: &'static [u8]) -> H1Error {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut req = [0u8; 1024];
        let _ = s.read(&mut req).await.unwrap();
        s.write_all(answer).await.unwrap();
        let _ = s.read(&mut req).await;
    });
    let stream = Pool::connect(addr, Duration::from_secs(5)).await.unwrap();
    Exchange::start(Conn::Plain(stream), b"POST / HTTP/1.1\r\n\r\n", b"", FIVE)
        .await
        .err()
        .unwrap()
}

#[tokio::test]
async fn conflicting_odd_lengths_and_protocol_switches_are_refused() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab"[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2 2\r\n\r\nab",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
    ] {
        let err = refused(answer).await;
        assert!(matches!(err, H1Error::Protocol(_)), "{err}");
    }
}

#[tokio::test]
async fn equal_duplicate_lengths_are_written_back_once() {
    let answer: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 02\r\ncontent-length: 2\r\n\r\nab";
    let (resp, body, _) = exchange(answer, 64).await;
    // Written back once, canonical, by the front end: the head carries the length only.
    assert_eq!(resp.length(), Some(2));
    assert!(resp.get("content-length").is_none());
    assert_eq!(body, b"ab");
}

#[test]
fn keep_alive_timeouts() {
    assert_eq!(keep_alive_timeout(b"timeout=5"), Some(5));
    assert_eq!(keep_alive_timeout(b"max=100, Timeout = 7"), Some(7));
    assert_eq!(keep_alive_timeout(b"max=100"), None);
    assert_eq!(keep_alive_timeout(b"timeout=x"), None);
}

#[tokio::test]
async fn an_idle_connection_the_upstream_closed_is_not_checked_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = tokio::spawn(async move { listener.accept().await.unwrap().0 });
    let pool = Pool::default();
    let stream = Pool::connect(addr, Duration::from_secs(5)).await.unwrap();
    let server_side = accept.await.unwrap();
    pool.checkin(stream, Duration::from_secs(30));
    drop(server_side); // the upstream times the idle connection out
                       // The FIN arrives asynchronously: poll until it shows (bounded), from the reactor's
                       // readiness and from the socket itself.
    let probe = pool.idle.pop().unwrap().0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while idle_and_open(&probe, false) {
        assert!(Instant::now() < deadline, "the close never showed");
        tokio::task::yield_now().await;
    }
    assert!(!idle_and_open(&probe, true));
    pool.checkin(probe, Duration::from_secs(30));
    let listener2 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr2 = listener2.local_addr().unwrap();
    let (_, reused) = pool.checkout(addr2, Duration::from_secs(5)).await.unwrap();
    assert!(!reused, "a closed pooled connection was handed out");
}

/// The pool is shared by the threads, each with a runtime (and a reactor) of its own: a
/// socket's readiness is only as fresh as its reactor's last poll. Asked directly, the socket
/// tells the truth.
#[test]
fn a_socket_whose_reactor_is_busy_is_asked_directly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (give, take) = std::sync::mpsc::channel();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let owner = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let stream = rt
            .block_on(Pool::connect(addr, Duration::from_secs(5)))
            .unwrap();
        give.send(stream).unwrap();
        // Busy elsewhere: this runtime's reactor polls no more until released.
        released.recv().unwrap();
    });
    let stream = take.recv().unwrap();
    drop(listener.accept().unwrap().0); // the upstream closes it
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(5);
        while idle_and_open(&stream, true) {
            assert!(Instant::now() < deadline, "the close never showed");
            tokio::task::yield_now().await;
        }
        // What the owner's reactor last saw is stale: the socket looks idle and open.
        assert!(idle_and_open(&stream, false));
    });
    drop(stream);
    release.send(()).unwrap();
    owner.join().unwrap();
}

#[tokio::test]
async fn keep_alive_timeout_limits_pooling() {
    let answer: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nkeep-alive: timeout=5\r\n\r\nok";
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut req = [0u8; 1024];
        let _ = s.read(&mut req).await.unwrap();
        s.write_all(answer).await.unwrap();
        let _ = s.read(&mut req).await;
    });
    let stream = Pool::connect(addr, Duration::from_secs(5)).await.unwrap();
    let (mut ex, _) = Exchange::start(Conn::Plain(stream), b"GET / HTTP/1.1\r\n\r\n", b"", FIVE)
        .await
        .unwrap();
    while ex.next_chunk().await.unwrap().is_some() {}
    assert!(ex.reusable());
    assert_eq!(ex.into_conn().1, Duration::from_secs(4));
}
