//! Entry points for the fuzz targets (`fuzz/`, run by `scripts/fuzz.sh` in CI): each feeds
//! arbitrary bytes to one parser of untrusted input, the way the gateway does. Not part of the
//! product's interface.

use std::collections::BTreeSet;
use std::sync::OnceLock;

/// The front door's request head parser, and where it finds the end of a head.
pub fn front_head(data: &[u8]) {
    crate::http::front::fuzz_head(data);
}

/// JSON-RPC classification of a request body (strict JSON, duplicate keys, envelope, uses).
pub fn classify(data: &[u8]) {
    let _ = crate::mcp::jsonrpc::classify(data);
}

/// The config loader (YAML parse, `${VAR}` substitution, compile with every diagnostic).
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::load_str(text, "fuzz.yaml", &|name| {
            (name == "SET").then(|| "value".to_owned())
        });
    }
}

/// The sealed `/mcp` session id decoder.
pub fn session(data: &[u8]) {
    static KEY: OnceLock<crate::mcp::session::SessionKey> = OnceLock::new();
    let key = KEY.get_or_init(|| crate::mcp::session::SessionKey::new(Some(&[7u8; 32])));
    let _ = key.open(data, &[1u8; 16], 1_800_000_000);
}

/// SSE framing of an upstream answer (split where the first byte says), then list filtering of
/// each event's data, as the gateway rewrites `tools/list` answers for a caller.
pub fn sse_filter(data: &[u8]) {
    static POLICY: OnceLock<crate::policy::Policy> = OnceLock::new();
    let policy = POLICY.get_or_init(|| {
        let yaml = "oauth:\n  enabled: false\nauth:\n  permissions:\n    \"up:secret_*\": [\"scope:admin\"]\n    \"up:*\": [\"scope:user\"]\nproxy:\n  servers:\n    - name: up\n      type: streamable-http\n      connection: { url: \"http://127.0.0.1:9/mcp\" }\n";
        match crate::config::load_str(yaml, "fuzz.yaml", &|_| None) {
            Ok(c) => crate::policy::Policy::from_config(&c),
            Err(e) => panic!("the fuzz policy does not load: {e}"),
        }
    });
    let scopes: BTreeSet<String> = ["scope:user".to_owned()].into();
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let at = (split as usize).min(rest.len());
    let mut framer = crate::mcp::sse::Framer::default();
    for chunk in [&rest[..at], &rest[at..]] {
        let Ok(events) = framer.push(chunk) else {
            return;
        };
        for kind in [
            crate::mcp::filter::ListKind::Tools,
            crate::mcp::filter::ListKind::Prompts,
            crate::mcp::filter::ListKind::Resources,
        ] {
            let filter = crate::mcp::filter::ListFilter {
                policy,
                scopes: &scopes,
                server: "up",
                kind,
            };
            for event in &events {
                let _ = filter.apply(event);
            }
            // A plain JSON answer too.
            let _ = filter.apply(rest);
        }
    }
}

/// The upstream HTTP/1.1 response reader: `data` is what an upstream answers on a real
/// loopback connection; the head is parsed and the body read to its end.
pub fn upstream_response(data: &[u8]) {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let rt = RT.get_or_init(|| {
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("no runtime: {e}"),
        }
    });
    let data = data.to_vec();
    rt.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(listener) = tokio::net::TcpListener::bind("127.0.0.1:0").await else {
            return;
        };
        let Ok(addr) = listener.local_addr() else {
            return;
        };
        let upstream = tokio::spawn(async move {
            if let Ok((mut s, _)) = listener.accept().await {
                let mut req = [0u8; 256];
                let _ = s.read(&mut req).await;
                let _ = s.write_all(&data).await;
                let _ = s.shutdown().await;
            }
        });
        let Ok(tcp) = tokio::net::TcpStream::connect(addr).await else {
            return;
        };
        let conn = crate::upstream::http::h1::Conn::Plain(tcp);
        let timeout = Some(std::time::Duration::from_secs(2));
        if let Ok((mut ex, _head)) = crate::upstream::http::h1::Exchange::start(
            conn,
            b"POST /mcp HTTP/1.1\r\nhost: up\r\ncontent-length: 2\r\n\r\n",
            b"{}",
            timeout,
        )
        .await
        {
            while let Ok(Some(_)) = ex.next_chunk().await {}
        }
        let _ = upstream.await;
    });
}
