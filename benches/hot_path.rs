//! Micro-benchmarks of the per-request work the gateway adds: JSON-RPC classification (with
//! duplicate-key checks) at several body sizes, endpoint parsing, policy, tokens, the whole
//! decision (`Gateway::decide`) and the trace context.
//!
//! `cargo bench --bench hot_path`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use portcullis::endpoints::Endpoint;
use portcullis::mcp::jsonrpc::classify;

fn tools_call(pad: usize) -> Vec<u8> {
    format!(
        r#"{{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"hello","pad":"{}"}},"_meta":{{"progressToken":"t-1"}}}}}}"#,
        "x".repeat(pad)
    )
    .into_bytes()
}

fn realistic_call() -> Vec<u8> {
    // A tools/call whose arguments are a nested object with arrays, as agents send them.
    let items: Vec<String> = (0..50)
        .map(|i| format!(r#"{{"id":{i},"name":"item-{i}","tags":["a","b","c"],"score":{i}.5}}"#))
        .collect();
    format!(
        r#"{{"jsonrpc":"2.0","id":"req-7","method":"tools/call","params":{{"name":"bulk_update","arguments":{{"items":[{}],"dry_run":false}}}}}}"#,
        items.join(",")
    )
    .into_bytes()
}

fn bench_classify(c: &mut Criterion) {
    let mut g = c.benchmark_group("classify");
    for (name, body) in [
        ("small_tools_call", tools_call(0)),
        ("nested_50_items", realistic_call()),
        ("pad_64KiB", tools_call(64 * 1024)),
        ("pad_1MiB", tools_call(1024 * 1024)),
    ] {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| b.iter(|| classify(black_box(&body)).unwrap()));
    }
    let ping = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    g.throughput(Throughput::Bytes(ping.len() as u64));
    g.bench_function("ping", |b| b.iter(|| classify(black_box(ping)).unwrap()));
    g.finish();
}

fn bench_route(c: &mut Criterion) {
    c.bench_function("route_parse", |b| {
        b.iter(|| Endpoint::parse(black_box("/mcp/everything")))
    });
}

/// A policy of 50 patterns, a caller with two scopes, and a 100-tool `tools/list` answer.
fn bench_policy(c: &mut Criterion) {
    use portcullis::mcp::filter::{ListFilter, ListKind};
    use portcullis::policy::{Kind, Policy};
    let mut yaml = String::from(
        "server:\n  listen: \"127.0.0.1:8080\"\noauth:\n  enabled: false\nauth:\n  claims: [groups]\n  mappings:\n    \"groups:User\": [scope:user]\n  permissions:\n",
    );
    for i in 0..48 {
        yaml.push_str(&format!("    \"srv:tool_{i}\": [scope:admin]\n"));
    }
    yaml.push_str("    \"srv:echo*\": [scope:user]\n    \"srv:*\": [scope:admin]\n");
    yaml.push_str("proxy:\n  servers:\n    - name: srv\n      type: streamable-http\n      connection:\n        url: \"http://127.0.0.1:1/mcp\"\n");
    let rt = portcullis::config::load_str(&yaml, "bench.yaml", &|_| None).expect("bench config");
    let policy = Policy::from_config(&rt);
    let scopes: std::collections::BTreeSet<String> =
        ["scope:user".to_string(), "openid".to_string()].into();
    c.bench_function("authorize_50_patterns", |b| {
        b.iter(|| {
            policy
                .authorize(
                    black_box(&scopes),
                    Kind::Tool,
                    "srv",
                    black_box("echo_upper"),
                )
                .is_ok()
        })
    });
    let tools: Vec<String> = (0..100)
        .map(|i| {
            let name = if i % 10 == 0 { format!("echo_{i}") } else { format!("tool_{i}") };
            format!(r#"{{"name":"{name}","description":"Tool number {i} does useful things","inputSchema":{{"type":"object","properties":{{"a":{{"type":"string"}},"b":{{"type":"number"}}}},"required":["a"]}}}}"#)
        })
        .collect();
    let answer = format!(
        r#"{{"jsonrpc":"2.0","id":1,"result":{{"tools":[{}]}}}}"#,
        tools.join(",")
    );
    let filter = ListFilter {
        policy: &policy,
        scopes: &scopes,
        server: "srv",
        kind: ListKind::Tools,
    };
    let mut g = c.benchmark_group("filter");
    g.throughput(Throughput::Bytes(answer.len() as u64));
    g.bench_function("tools_list_100", |b| {
        b.iter(|| filter.apply(black_box(answer.as_bytes())).unwrap())
    });
    g.finish();
    let call = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo_upper","arguments":{"text":"hi"}}}"#;
    c.bench_function("classify_and_authorize", |b| {
        b.iter(|| {
            let env = classify(black_box(call)).unwrap();
            match &env.messages[0] {
                portcullis::mcp::jsonrpc::Message::Request { uses: Some(u), .. } => policy
                    .authorize(&scopes, Kind::Tool, "srv", &u.name)
                    .is_ok(),
                _ => false,
            }
        })
    });
}

/// A repeated RS256 bearer (as every request of a session carries): the verified-token cache
/// lookup, then its claims mapped to scopes.
fn bench_token(c: &mut Criterion) {
    use portcullis::auth::cache::TokenCache;
    use portcullis::auth::jwt::{KeySet, Verifier};
    let root = env!("CARGO_MANIFEST_DIR");
    let pem = std::fs::read(format!("{root}/tests/fixtures/jwt/rsa1.pem")).unwrap();
    let jwks = std::fs::read(format!("{root}/tests/fixtures/jwt/jwks.json")).unwrap();
    let keys = KeySet::from_jwks_json(&jwks).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": "https://bench.example/oauth2/default", "aud": "api://bench", "sub": "00u1abcd",
        "iat": now, "exp": now + 3600, "groups": ["Everyone", "Bench", "Engineering"],
        "scp": ["openid", "profile"], "cid": "0oa1bench", "uid": "00u1abcd",
    });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap();
    let verifier = Verifier::new(
        vec!["https://bench.example/oauth2/default".into()],
        vec!["api://bench".into()],
        std::time::Duration::from_secs(30),
    );
    let cache = TokenCache::new(1024);
    verifier.verify_cached(&token, &keys, &cache).unwrap();
    c.bench_function("token_cached", |b| {
        b.iter(|| {
            verifier
                .verify_cached(black_box(&token), &keys, &cache)
                .unwrap()
        })
    });
    let yaml = "server:\n  listen: \"127.0.0.1:8080\"\noauth:\n  enabled: false\nauth:\n  claims: [groups]\n  mappings:\n    \"groups:Bench\": [scope:bench]\n    \"groups:Engineering\": [scope:eng, scope:read]\n";
    let rt = portcullis::config::load_str(yaml, "bench.yaml", &|_| None).expect("bench config");
    let policy = portcullis::policy::Policy::from_config(&rt);
    let verified = verifier.verify_cached(&token, &keys, &cache).unwrap();
    c.bench_function("claims_to_scopes", |b| {
        b.iter(|| policy.scope_map().scopes_for(black_box(&verified.claims)))
    });
    // What a request pays: the principal remembered with the cached token.
    c.bench_function("claims_to_scopes_remembered", |b| {
        b.iter(|| {
            policy
                .scope_map()
                .principal(black_box(&verified.claims), &verified.principal)
        })
    });
}

/// The whole decision on an allowed `tools/call` (no authentication; the body in memory), and
/// the trace context every request gets.
fn bench_decide(c: &mut Criterion) {
    use futures_util::FutureExt;
    use portcullis::gateway::{Gateway, Observation, Plan, Trace};
    use portcullis::request::{Fields, RequestView};
    let yaml = "server:\n  listen: \"127.0.0.1:8080\"\noauth:\n  enabled: false\nproxy:\n  servers:\n    - name: srv\n      type: streamable-http\n      connection:\n        url: \"http://127.0.0.1:1/mcp\"\n";
    let rt = portcullis::config::load_str(yaml, "bench.yaml", &|_| None).expect("bench config");
    let snap = portcullis::state::Snapshot::new(rt);
    let gw = Gateway {
        authn: None,
        health: Default::default(),
        listener: Default::default(),
        streams: Default::default(),
    };
    let body = bytes::Bytes::from(tools_call(0));
    let mut headers = http::HeaderMap::new();
    headers.insert("host", "127.0.0.1:8080".parse().unwrap());
    headers.insert("content-type", "application/json".parse().unwrap());
    headers.insert(
        "accept",
        "application/json, text/event-stream".parse().unwrap(),
    );
    headers.insert("content-length", body.len().to_string().parse().unwrap());
    c.bench_function("decide_tools_call", |b| {
        b.iter(|| {
            let view = RequestView::new(
                http::Method::POST,
                Some("/mcp/srv"),
                None,
                false,
                Fields::Map(&headers),
            );
            let mut src = body.clone();
            let mut obs = Observation::start(&http::Method::POST);
            let plan = gw
                .decide(&snap, black_box(&view), &mut src, &mut obs)
                .now_or_never()
                .expect("decided without waiting");
            matches!(plan, Plan::Forward(_))
        })
    });
    c.bench_function("trace_context", |b| {
        b.iter(|| {
            Trace::continue_or_start(black_box(None))
                .traceparent()
                .len()
        })
    });
}

/// Sealing and opening an `/mcp` session id with three upstream sessions (issue target: < 2 µs
/// each), and the principal tag computed per request.
fn bench_session(c: &mut Criterion) {
    use portcullis::auth::Principal;
    use portcullis::mcp::session::{principal_tag, Session, SessionKey};
    let key = SessionKey::new(Some(&[7; 32]));
    let principal = Principal {
        subject: "00u1a2b3c4d5e6f7g8h9".into(),
        issuer: "https://example.okta.com/oauth2/default".into(),
        ..Default::default()
    };
    let tag = principal_tag(&principal);
    let session = Session {
        created: 1_800_000_000,
        principal: tag,
        protocol: "2025-11-25".into(),
        upstreams: [
            ("everything", "ps1-9f2c4e6a8b0d1f3e5a7c9b1d3f5e7a9c-3"),
            ("ref", "5b0e2f5c-8a9d-4c3b-9e1f-7a6b5c4d3e2f"),
            ("py", "04b0232e019a46798a00987b2ff31724"),
        ]
        .iter()
        .map(|(s, id)| portcullis::mcp::session::Held {
            server: (*s).into(),
            session: (*id).into(),
            version: "2025-11-25".into(),
        })
        .collect(),
    };
    let id = key.seal(&session).unwrap();
    c.bench_function("session_seal", |b| {
        b.iter(|| key.seal(black_box(&session)).unwrap())
    });
    // The same id again (what a client sends with every request): remembered per thread.
    c.bench_function("session_open_again", |b| {
        b.iter(|| {
            key.open(black_box(id.as_bytes()), &tag, 1_800_000_100)
                .unwrap()
        })
    });
    // More ids than a thread remembers, in turn: every open decrypts.
    let ids: Vec<String> = (0..64).map(|_| key.seal(&session).unwrap()).collect();
    let mut i = 0;
    c.bench_function("session_open_first", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            key.open(black_box(ids[i].as_bytes()), &tag, 1_800_000_100)
                .unwrap()
        })
    });
    c.bench_function("session_principal_tag", |b| {
        b.iter(|| principal_tag(black_box(&principal)))
    });
}

criterion_group!(
    benches,
    bench_classify,
    bench_route,
    bench_policy,
    bench_token,
    bench_decide,
    bench_session
);
criterion_main!(benches);
