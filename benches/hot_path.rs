//! Micro-benchmarks of the per-request work the gateway adds: JSON-RPC classification (with
//! duplicate-key checks) at several body sizes, route parsing and the upstream header rewrite.
//!
//! `cargo bench --bench hot_path`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use portcullis::mcp::jsonrpc::classify;
use portcullis::proxy::route::Route;

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
        b.iter(|| Route::parse(black_box("/mcp/everything")))
    });
}

criterion_group!(benches, bench_classify, bench_route);
criterion_main!(benches);
