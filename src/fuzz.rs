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

/// The differential target: one HTTP/1.1 request (head and body) decided by the front door and
/// by Pingora's path (each with its own parser) must get the same decision whenever both decide
/// it. Authentication is on (keys from `tests/fixtures/jwt`, tokens in the seed corpus signed
/// with them), with a policy, aliases, a session key and an `Origin` allow-list.
pub fn differential(data: &[u8]) {
    if let Some((front, pingora)) = decisions(data) {
        assert_eq!(
            front,
            pingora,
            "the front door and Pingora's path decided {:?} differently",
            String::from_utf8_lossy(data)
        );
    }
}

/// The two decisions of [`differential`] (`None`: not both paths decide `data`).
pub fn decisions(data: &[u8]) -> Option<(String, String)> {
    struct Fixture {
        rt: tokio::runtime::Runtime,
        gateway: crate::gateway::Gateway,
        snap: crate::state::Snapshot,
    }
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    let f = FIXTURE.get_or_init(|| {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("no runtime: {e}"),
        };
        let yaml = DIFFERENTIAL_CONFIG.replace(
            "JWKS",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt/jwks.json"),
        );
        let config = match crate::config::load_str(&yaml, "differential.yaml", &|_| None) {
            Ok(c) => c,
            Err(e) => panic!("the differential config does not load: {e}"),
        };
        let authn = match crate::auth::Authn::from_config(&config) {
            Ok(a) => a,
            Err(e) => panic!("no token verification: {e}"),
        };
        if let Some(a) = &authn {
            let failed = rt.block_on(a.jwks.refresh());
            assert!(failed.is_empty() && a.ready(), "the test keys do not load");
        }
        Fixture {
            gateway: crate::gateway::Gateway {
                authn,
                health: Default::default(),
                listener: Default::default(),
                streams: Default::default(),
            },
            snap: crate::state::Snapshot::new(config),
            rt,
        }
    });
    f.rt.block_on(crate::http::front::fuzz_decisions(
        &f.gateway, &f.snap, data,
    ))
}

const DIFFERENTIAL_CONFIG: &str = r#"server:
  url: "https://mcp.example.com"
  listen: "127.0.0.1:8080"
  allowed_origins: ["https://app.example.com"]
  admin_scope: "scope:admin"
  max_body_bytes: 4KiB
oauth:
  enabled: true
  provider: okta
  authorization_servers: ["https://issuer.example.com/oauth2/default"]
  audiences: ["api://default"]
  jwks_uri: "file://JWKS"
auth:
  claims: ["groups"]
  mappings:
    "groups:User": ["scope:user"]
    "groups:Admin": ["scope:admin"]
  permissions:
    "up:*": ["scope:user"]
    "up:secret_*": ["scope:admin"]
    "other:echo": ["scope:user"]
    "other:greet": ["scope:user"]
proxy:
  session_key: "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
  servers:
    - name: up
      type: streamable-http
      connection: { url: "http://127.0.0.1:9/mcp" }
    - name: other
      type: streamable-http
      prefix: oth
      aliases: { echo: say }
      connection: { url: "http://127.0.0.1:9/mcp" }
"#;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    /// The differential target's seeds, run as a test: both paths decide each alike, and the
    /// fixture decides for real (tokens verify, the policy allows and denies).
    #[test]
    fn the_differential_seeds_get_one_decision_on_both_paths() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/differential");
        let mut decided = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let Some((front, pingora)) = super::decisions(&data) else {
                continue;
            };
            assert_eq!(front, pingora, "{}", path.display());
            decided += 1;
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let expect = match name.as_str() {
                "call_allowed" | "call_admin" | "list_tools" | "prompt" | "get_stream" => "forward",
                "initialize_agg" | "modern_discover" => "fanout",
                "call_denied" | "call_escaped" | "call_duplicate_key" | "no_token"
                | "bad_token" | "foreign_host" | "bad_origin" | "query_token"
                | "modern_mismatch" => "answer",
                _ => continue,
            };
            assert!(front.starts_with(expect), "{name}: {front}");
        }
        assert!(
            decided >= 30,
            "only {decided} seeds were decided by both paths"
        );
    }
}
