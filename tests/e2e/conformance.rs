//! The MCP conformance suite (`@modelcontextprotocol/conformance`, server scenarios) run twice
//! against an upstream, directly and through the gateway:
//! - server-everything (what users run): every scenario that passes directly must pass through
//!   the gateway; it lacks the suite's own test tools, so some scenarios fail on both paths;
//! - the suite's server (our `tests/e2e/servers/everything-server.mjs`, which implements every
//!   tool the suite calls): it passes every scenario directly, and must pass exactly the same
//!   through the gateway, server-to-client requests (sampling, elicitation) on the session's GET
//!   stream included.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::harness::{run_bounded, Stack, Upstream};

/// Scenario name to whether all its checks passed, from the suite's `=== SUMMARY ===` lines
/// (`✓ name: 2 passed, 0 failed`).
fn summary(stdout: &str) -> BTreeMap<String, bool> {
    let (_, tail) = stdout
        .split_once("=== SUMMARY ===")
        .unwrap_or_else(|| panic!("no summary in conformance output:\n{stdout}"));
    tail.lines()
        .filter_map(|line| {
            let (mark, rest) = line.trim().split_once(' ')?;
            let (name, counts) = rest.split_once(": ")?;
            let failed: u32 = counts
                .strip_suffix(" failed")?
                .rsplit(' ')
                .next()?
                .parse()
                .ok()?;
            matches!(mark, "✓" | "✗").then(|| (name.to_owned(), mark == "✓" && failed == 0))
        })
        .collect()
}

async fn run_suite(stack: &Stack, label: &str, url: &str) -> BTreeMap<String, bool> {
    let home = stack.dir().join("conformance-home");
    std::fs::create_dir_all(&home).expect("conformance HOME");
    let mut cmd = Command::new(stack.peers.conformance());
    cmd.args(["server", "--url", url, "-o"])
        .arg(stack.dir().join(format!("conformance-{label}")))
        .env("HOME", &home)
        .env("PATH", stack.peers.path_env());
    let name = format!("conformance-{label}");
    // Exit 1 is expected: some scenarios need tools server-everything does not have.
    let out = run_bounded(&name, cmd, stack.dir(), Duration::from_secs(180)).await;
    let results = summary(&out.stdout);
    assert!(
        !results.is_empty(),
        "{name}: no scenario results ({}):\n{}\n{}",
        out.status,
        out.stdout,
        out.stderr
    );
    results
}

#[tokio::test]
async fn conformance_suite_passes_through_gateway_as_directly() {
    let mut stack = Stack::start().await;
    let direct = run_suite(&stack, "direct", stack.upstream_url()).await;
    let gateway = run_suite(&stack, "gateway", stack.mcp_url()).await;

    let table: Vec<String> = direct
        .keys()
        .chain(gateway.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .map(|s| {
            format!(
                "{s}: direct {:?}, gateway {:?}",
                direct.get(s),
                gateway.get(s)
            )
        })
        .collect();
    let passing_direct = direct.values().filter(|ok| **ok).count();
    assert!(
        passing_direct >= 10,
        "server-everything passes too few scenarios directly ({passing_direct}): {table:#?}"
    );
    let regressions: Vec<&String> = direct
        .iter()
        .filter(|(s, ok)| **ok && gateway.get(*s) != Some(&true))
        .map(|(s, _)| s)
        .collect();
    assert!(
        regressions.is_empty(),
        "pass directly, fail through the gateway: {regressions:?}\n{table:#?}"
    );
    assert_eq!(
        gateway.get("dns-rebinding-protection"),
        Some(&true),
        "the gateway must reject non-local Host/Origin: {table:#?}"
    );
    stack.assert_running();
}

#[tokio::test]
async fn reference_server_passes_through_the_gateway_exactly_as_directly() {
    let mut stack = Stack::start_reference().await;
    let direct = run_suite(&stack, "reference-direct", stack.upstream_url()).await;
    let gateway = run_suite(&stack, "reference-gateway", stack.mcp_url()).await;
    let failing: Vec<&String> = direct
        .iter()
        .filter(|(_, ok)| !**ok)
        .map(|(s, _)| s)
        .collect();
    assert!(
        failing.is_empty() && direct.len() >= 25,
        "the reference server must pass every scenario directly; failing: {failing:?} of {}",
        direct.len()
    );
    assert_eq!(gateway, direct, "through the gateway, as directly");
    for scenario in [
        "tools-call-sampling",
        "tools-call-elicitation",
        "elicitation-sep1034-defaults",
        "elicitation-sep1330-enums",
    ] {
        assert_eq!(gateway.get(scenario), Some(&true), "{scenario}");
    }
    stack.assert_running();
}

/// The error message of every failed check in the suite's output folder of run `label`, by
/// scenario.
fn failed_checks(stack: &Stack, label: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let dir = stack.dir().join(format!("conformance-{label}"));
    for entry in std::fs::read_dir(&dir).expect("conformance output folder") {
        let path = entry.expect("entry").path().join("checks.json");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let checks: serde_json::Value = serde_json::from_str(&text).expect("checks.json");
        for c in checks.as_array().into_iter().flatten() {
            if c["status"] == "FAILURE" {
                out.push((
                    c["id"].as_str().unwrap_or_default().to_owned(),
                    c["errorMessage"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
    }
    out
}

/// The suite against the aggregated `/mcp` in front of its own server: the scenarios that name
/// no tool, prompt or resource pass; every other one fails only because the suite calls the
/// upstream's bare names (`test_simple_text`), which `/mcp` exposes as
/// `everything__test_simple_text` (README, "The aggregated /mcp").
#[tokio::test]
async fn reference_server_behind_the_aggregated_endpoint_fails_only_by_name() {
    let mut stack = Stack::start_reference().await;
    let url = format!("{}/mcp", stack.base_url());
    let results = run_suite(&stack, "aggregate", &url).await;
    for scenario in [
        "server-initialize",
        "logging-set-level",
        "ping",
        "tools-list",
        "resources-list",
        "prompts-list",
        "server-sse-multiple-streams",
        "dns-rebinding-protection",
    ] {
        assert_eq!(
            results.get(scenario),
            Some(&true),
            "{scenario}: {results:#?}"
        );
    }
    let failed = failed_checks(&stack, "aggregate");
    let failing: Vec<&String> = results
        .iter()
        .filter(|(_, ok)| !**ok)
        .map(|(s, _)| s)
        .collect();
    assert!(
        !failing.is_empty(),
        "bare names cannot work on /mcp: {results:#?}"
    );
    for (check, message) in &failed {
        let bare = bare_name(message);
        assert!(
            bare,
            "{check} failed for another reason than a bare name: {message}"
        );
    }
    stack.assert_running();
}

/// Every check of a run of the newer suite (`conformance-next`, `--requirements REQ`), by
/// scenario and check id: its status.
async fn run_requirements(
    stack: &Stack,
    label: &str,
    url: &str,
    requirements: &str,
) -> BTreeMap<(String, String), String> {
    let home = stack.dir().join("conformance-home");
    std::fs::create_dir_all(&home).expect("conformance HOME");
    let out_dir = stack.dir().join(format!("conformance-{label}"));
    let mut cmd = Command::new(stack.peers.conformance_next());
    cmd.args(["server", "--url", url, "--requirements", requirements, "-o"])
        .arg(&out_dir)
        .env("HOME", &home)
        .env("PATH", stack.peers.path_env());
    let name = format!("conformance-{label}");
    let out = run_bounded(&name, cmd, stack.dir(), Duration::from_secs(300)).await;
    let mut checks = BTreeMap::new();
    for entry in std::fs::read_dir(&out_dir).expect("conformance output folder") {
        let dir = entry.expect("entry").path();
        // `server-<scenario>-<yyyy>-<mm>-<dd>T<hh>-<mm>-<ss>-<ms>Z`
        let folder = dir.file_name().unwrap().to_string_lossy().into_owned();
        let scenario = folder.rsplitn(7, '-').last().unwrap_or_default();
        let scenario = scenario
            .strip_prefix("server-")
            .unwrap_or(scenario)
            .to_owned();
        let Ok(text) = std::fs::read_to_string(dir.join("checks.json")) else {
            continue;
        };
        let list: serde_json::Value = serde_json::from_str(&text).expect("checks.json");
        for c in list.as_array().into_iter().flatten() {
            let id = c["id"].as_str().unwrap_or_default().to_owned();
            let status = c["status"].as_str().unwrap_or_default().to_owned();
            checks.insert((scenario.clone(), id), status);
        }
    }
    assert!(
        checks.len() > 20,
        "{name}: too few checks ({}):\n{}\n{}",
        checks.len(),
        out.stdout,
        out.stderr
    );
    checks
}

/// The checks that differ between two runs.
fn differences(
    a: &BTreeMap<(String, String), String>,
    b: &BTreeMap<(String, String), String>,
) -> Vec<String> {
    a.keys()
        .chain(b.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k:?}: direct {:?}, gateway {:?}", a.get(k), b.get(k)))
        .collect()
}

/// 2026-07-28 through `/mcp/{server}` in front of the Python SDK's everything-server: every
/// check as directly, with the gateway checking the routing headers itself.
#[tokio::test]
async fn modern_requirements_pass_through_the_gateway_check_by_check() {
    let mut stack = Stack::start_upstream(Upstream::Python, crate::harness::gateway_yaml).await;
    let direct =
        run_requirements(&stack, "modern-direct", stack.upstream_url(), "2026-07-28").await;
    let gateway = run_requirements(&stack, "modern-gateway", stack.mcp_url(), "2026-07-28").await;
    let diff = differences(&direct, &gateway);
    assert!(
        diff.is_empty(),
        "through the gateway, not as directly: {diff:#?}"
    );
    for scenario in [
        "server-stateless",
        "http-header-validation",
        "caching",
        "tools-call-with-progress",
    ] {
        let failed: Vec<_> = gateway
            .iter()
            .filter(|((s, _), st)| s == scenario && *st == "FAILURE")
            .collect();
        assert!(failed.is_empty(), "{scenario}: {failed:?}");
        assert!(
            gateway.keys().any(|(s, _)| s == scenario),
            "{scenario} did not run"
        );
    }
    stack.assert_running();
}

/// The newer suite's 2025-11-25 set through `/mcp/{server}` in front of the reference server:
/// every check as directly.
#[tokio::test]
async fn legacy_requirements_pass_through_the_gateway_check_by_check() {
    let mut stack = Stack::start_reference().await;
    let direct =
        run_requirements(&stack, "legacy-direct", stack.upstream_url(), "2025-11-25").await;
    let gateway = run_requirements(&stack, "legacy-gateway", stack.mcp_url(), "2025-11-25").await;
    let diff = differences(&direct, &gateway);
    assert!(
        diff.is_empty(),
        "through the gateway, not as directly: {diff:#?}"
    );
    let failed: Vec<_> = direct.iter().filter(|(_, st)| *st == "FAILURE").collect();
    assert!(
        failed.is_empty(),
        "the reference server passes directly: {failed:?}"
    );
    stack.assert_running();
}

/// Whether a failed check's message says the suite called a bare (un-namespaced) name.
fn bare_name(message: &str) -> bool {
    let bare = |n: &str| !n.starts_with("everything__") && !n.starts_with("mcp://");
    let unknown = ["Unknown tool: ", "Unknown prompt: ", "Unknown resource: "]
        .iter()
        .find_map(|p| message.split_once(p).map(|(_, name)| name))
        .is_some_and(bare);
    // "Tool 'json_schema_2020_12_tool' not found. Available tools: everything__..."
    let not_listed = message
        .strip_prefix("Tool '")
        .and_then(|r| r.split_once("' not found"))
        .is_some_and(|(n, _)| bare(n));
    unknown || not_listed
}

/// The newer suite against `/mcp`: 2025-11-25 in front of the reference server fails only on
/// bare names; 2026-07-28 in front of the Python SDK's server passes every scenario that
/// names nothing (header validation and caching included).
#[tokio::test]
async fn both_requirement_sets_against_the_aggregated_endpoint() {
    let mut stack = Stack::start_reference().await;
    let url = format!("{}/mcp", stack.base_url());
    let legacy = run_requirements(&stack, "aggregate-legacy", &url, "2025-11-25").await;
    let failed = failed_checks(&stack, "aggregate-legacy");
    assert!(!failed.is_empty(), "bare names cannot work on /mcp");
    for (check, message) in &failed {
        assert!(
            bare_name(message),
            "{check} failed for another reason than a bare name: {message}"
        );
    }
    for scenario in [
        "server-initialize",
        "tools-list",
        "prompts-list",
        "resources-list",
    ] {
        let ok = legacy
            .iter()
            .filter(|((s, _), _)| s == scenario)
            .all(|(_, st)| st != "FAILURE");
        assert!(
            ok && legacy.keys().any(|(s, _)| s == scenario),
            "{scenario}"
        );
    }
    stack.assert_running();

    let mut stack = Stack::start_upstream(Upstream::Python, crate::harness::gateway_yaml).await;
    let url = format!("{}/mcp", stack.base_url());
    let modern = run_requirements(&stack, "aggregate-modern", &url, "2026-07-28").await;
    for scenario in [
        "tools-list",
        "prompts-list",
        "resources-list",
        "caching",
        "http-header-validation",
        "dns-rebinding-protection",
        "sep-2164-resource-not-found",
    ] {
        let failed: Vec<_> = modern
            .iter()
            .filter(|((s, _), st)| s == scenario && *st == "FAILURE")
            .collect();
        assert!(failed.is_empty(), "{scenario} on /mcp: {failed:?}");
        assert!(
            modern.keys().any(|(s, _)| s == scenario),
            "{scenario} did not run"
        );
    }
    stack.assert_running();
}

#[test]
fn summary_lines_parse() {
    let out = "noise\n=== SUMMARY ===\n✓ ping: 1 passed, 0 failed\n✗ tools-call-image: 0 passed, 1 failed\n✗ dns-rebinding-protection: 1 passed, 1 failed\n\nTotal: 2 passed, 2 failed\n";
    let parsed = summary(out);
    assert_eq!(parsed.get("ping"), Some(&true));
    assert_eq!(parsed.get("tools-call-image"), Some(&false));
    assert_eq!(parsed.get("dns-rebinding-protection"), Some(&false));
    assert_eq!(parsed.len(), 3);
}
