//! Policy engine: claims -> scopes -> most-specific permission pattern, table driven, plus the
//! `portcullis explain` command run as a binary.

use std::collections::BTreeSet;
use std::process::Command;

use portcullis::config::{load_str, Config};
use portcullis::policy::{Kind, Policy};

/// Builds a config around an `auth` section, with servers `n8n`, `admin`, `github`, `files`.
fn config(auth: &str) -> Config {
    let yaml = format!(
        r#"server:
  listen: "127.0.0.1:8080"
oauth:
  enabled: false
{auth}
proxy:
  servers:
    - name: n8n
      type: streamable-http
      connection: {{ url: "http://127.0.0.1:1/mcp" }}
    - name: admin
      type: streamable-http
      connection: {{ url: "http://127.0.0.1:2/mcp" }}
    - name: github
      type: streamable-http
      connection: {{ url: "http://127.0.0.1:3/mcp" }}
    - name: files
      type: streamable-http
      connection: {{ url: "http://127.0.0.1:4/mcp" }}
"#
    );
    match load_str(&yaml, "test.yaml", &|_| None) {
        Ok(rt) => rt,
        Err(d) => panic!("config does not load:\n{d}\n{yaml}"),
    }
}

/// Seed 004's permission example, verbatim.
const SEED: &str = r#"auth:
  claims: ["groups", "roles"]
  mappings:
    "groups:Developers": ["scope:dev"]
    "roles:Admin": ["scope:admin"]
  permissions:
    "n8n:*": ["scope:dev"]           # Developers can use n8n tools
    "admin:user_management": ["scope:admin"]  # Only admins can manage users
  options:
    scope_mode: "any"  # User needs at least one matching scope
    default_scope: null  # Deny by default
"#;

/// `examples/okta/gateway.yaml`'s policy.
const OKTA: &str = r#"auth:
  claims: ["groups"]
  mappings:
    "groups:Admin": ["scope:admin"]
    "groups:User": ["scope:user"]
  permissions:
    "n8n:*": ["scope:user"]
    "admin:*": ["scope:admin"]
"#;

/// Overlapping patterns, each needing its own scope, to see which one decides.
const SPECIFIC: &str = r#"auth:
  claims: ["groups"]
  mappings:
    "groups:all": ["s:all"]
    "groups:n8n": ["s:n8n"]
    "groups:send": ["s:send"]
    "groups:email": ["s:email"]
    "groups:s": ["s:s"]
    "groups:gh": ["s:gh"]
    "groups:del": ["s:del"]
    "groups:pub": ["s:pub"]
    "groups:n8": ["s:n8"]
  permissions:
    "*:*": ["s:all"]
    "n8n:*": ["s:n8n"]
    "n8n:s*": ["s:s"]
    "n8n:send_*": ["s:send"]
    "n8n:send_email": ["s:email"]
    "n8*:send_email": ["s:n8"]
    "github__*": ["s:gh"]
    "*:delete_*": ["s:del"]
    "files:file:///public/*": ["s:pub"]
"#;

/// `scope_mode: all`.
const ALL: &str = r#"auth:
  claims: ["groups"]
  mappings:
    "groups:A": ["s:a"]
    "groups:B": ["s:b"]
    "groups:AB": ["s:a", "s:b"]
  permissions:
    "n8n:*": ["s:a", "s:b"]
    "admin:*": ["s:a"]
  options:
    scope_mode: all
"#;

/// A `default_scope` for everything without a pattern.
const DEFAULT: &str = r#"auth:
  claims: ["groups"]
  mappings:
    "groups:Staff": ["s:basic"]
    "groups:Admin": ["s:admin"]
  permissions:
    "admin:*": ["s:admin"]
  options:
    default_scope: "s:basic"
"#;

/// Every claim shape.
const CLAIMS: &str = r#"auth:
  claims: ["scope", "realm_access.roles", "roles", "tier", "flags"]
  mappings:
    "scope:mcp:write": ["s:write"]
    "realm_access.roles:editor": ["s:edit"]
    "groups:Ops": ["s:ops"]
    "roles:Auditor": ["s:audit"]
    "tier:5": ["s:num"]
    "flags:true": ["s:flag"]
    "scp:tools.run": ["s:run"]
  permissions:
    "n8n:write_*": ["s:write"]
    "n8n:edit_*": ["s:edit"]
    "n8n:ops_*": ["s:ops"]
    "n8n:read_*": ["mcp:read"]
    "n8n:run_*": ["s:run"]
    "n8n:audit_*": ["s:audit"]
    "n8n:num_*": ["s:num"]
    "n8n:flag_*": ["s:flag"]
"#;

struct Case {
    what: &'static str,
    auth: &'static str,
    claims: &'static str,
    kind: Kind,
    server: &'static str,
    name: &'static str,
    /// `Ok(source)`: allowed by that rule; `Err(source)`: denied by it.
    want: Result<&'static str, &'static str>,
}

const fn tool(
    what: &'static str,
    auth: &'static str,
    claims: &'static str,
    server: &'static str,
    name: &'static str,
    want: Result<&'static str, &'static str>,
) -> Case {
    Case {
        what,
        auth,
        claims,
        kind: Kind::Tool,
        server,
        name,
        want,
    }
}

const CASES: &[Case] = &[
    // --- seed 004 ---
    tool(
        "seed: developer uses n8n",
        SEED,
        r#"{"groups":["Developers"]}"#,
        "n8n",
        "send_email",
        Ok("n8n:*"),
    ),
    tool(
        "seed: stranger denied n8n",
        SEED,
        r#"{"groups":["Sales"]}"#,
        "n8n",
        "send_email",
        Err("n8n:*"),
    ),
    tool(
        "seed: admin role manages users",
        SEED,
        r#"{"roles":["Admin"]}"#,
        "admin",
        "user_management",
        Ok("admin:user_management"),
    ),
    tool(
        "seed: developer cannot manage users",
        SEED,
        r#"{"groups":["Developers"]}"#,
        "admin",
        "user_management",
        Err("admin:user_management"),
    ),
    tool(
        "seed: roles as a plain string",
        SEED,
        r#"{"roles":"Admin"}"#,
        "admin",
        "user_management",
        Ok("admin:user_management"),
    ),
    tool(
        "seed: unlisted admin tool has no rule",
        SEED,
        r#"{"roles":["Admin"]}"#,
        "admin",
        "drop_db",
        Err("no rule"),
    ),
    tool(
        "seed: unknown server has no rule",
        SEED,
        r#"{"groups":["Developers"]}"#,
        "github",
        "x",
        Err("no rule"),
    ),
    tool(
        "seed: no claims at all",
        SEED,
        r#"{}"#,
        "n8n",
        "send_email",
        Err("n8n:*"),
    ),
    // --- examples/okta ---
    tool(
        "okta: user group uses n8n",
        OKTA,
        r#"{"groups":["User"]}"#,
        "n8n",
        "run",
        Ok("n8n:*"),
    ),
    tool(
        "okta: admin group gets admin tools",
        OKTA,
        r#"{"groups":["Admin"]}"#,
        "admin",
        "reset",
        Ok("admin:*"),
    ),
    tool(
        "okta: admin group is not a user",
        OKTA,
        r#"{"groups":["Admin"]}"#,
        "n8n",
        "run",
        Err("n8n:*"),
    ),
    tool(
        "okta: user group denied admin",
        OKTA,
        r#"{"groups":["User"]}"#,
        "admin",
        "reset",
        Err("admin:*"),
    ),
    tool(
        "okta: both groups",
        OKTA,
        r#"{"groups":["User","Admin"]}"#,
        "admin",
        "reset",
        Ok("admin:*"),
    ),
    tool(
        "okta: group names are case sensitive",
        OKTA,
        r#"{"groups":["admin"]}"#,
        "admin",
        "reset",
        Err("admin:*"),
    ),
    // --- specificity ---
    tool(
        "exact beats globs",
        SPECIFIC,
        r#"{"groups":["email"]}"#,
        "n8n",
        "send_email",
        Ok("n8n:send_email"),
    ),
    tool(
        "exact decides even when a glob would allow",
        SPECIFIC,
        r#"{"groups":["all","n8n","send","s"]}"#,
        "n8n",
        "send_email",
        Err("n8n:send_email"),
    ),
    tool(
        "longer literal beats shorter",
        SPECIFIC,
        r#"{"groups":["send"]}"#,
        "n8n",
        "send_sms",
        Ok("n8n:send_*"),
    ),
    tool(
        "longer literal decides over shorter",
        SPECIFIC,
        r#"{"groups":["s"]}"#,
        "n8n",
        "send_sms",
        Err("n8n:send_*"),
    ),
    tool(
        "shorter literal when longer does not match",
        SPECIFIC,
        r#"{"groups":["s"]}"#,
        "n8n",
        "search",
        Ok("n8n:s*"),
    ),
    tool(
        "server-specific beats *:*",
        SPECIFIC,
        r#"{"groups":["n8n"]}"#,
        "n8n",
        "list",
        Ok("n8n:*"),
    ),
    tool(
        "server-specific decides over *:*",
        SPECIFIC,
        r#"{"groups":["all"]}"#,
        "n8n",
        "list",
        Err("n8n:*"),
    ),
    tool(
        "*:* catches other servers",
        SPECIFIC,
        r#"{"groups":["all"]}"#,
        "admin",
        "list",
        Ok("*:*"),
    ),
    tool(
        "server specificity before name",
        SPECIFIC,
        r#"{"groups":["n8n"]}"#,
        "n8n",
        "delete_all",
        Ok("n8n:*"),
    ),
    tool(
        "*:delete_* on other servers",
        SPECIFIC,
        r#"{"groups":["del"]}"#,
        "admin",
        "delete_user",
        Ok("*:delete_*"),
    ),
    tool(
        "exact server beats server glob",
        SPECIFIC,
        r#"{"groups":["n8"]}"#,
        "n8n",
        "send_email",
        Err("n8n:send_email"),
    ),
    tool(
        "server glob with exact name",
        SPECIFIC,
        r#"{"groups":["n8"]}"#,
        "n8nx",
        "send_email",
        Ok("n8*:send_email"),
    ),
    tool(
        "server__tool spelling",
        SPECIFIC,
        r#"{"groups":["gh"]}"#,
        "github",
        "create_issue",
        Ok("github__*"),
    ),
    tool(
        "server__tool spelling denies others",
        SPECIFIC,
        r#"{"groups":["all"]}"#,
        "github",
        "create_issue",
        Err("github__*"),
    ),
    // --- scope_mode all ---
    tool(
        "all: both scopes",
        ALL,
        r#"{"groups":["A","B"]}"#,
        "n8n",
        "x",
        Ok("n8n:*"),
    ),
    tool(
        "all: one mapping granting both",
        ALL,
        r#"{"groups":["AB"]}"#,
        "n8n",
        "x",
        Ok("n8n:*"),
    ),
    tool(
        "all: partial scopes denied",
        ALL,
        r#"{"groups":["A"]}"#,
        "n8n",
        "x",
        Err("n8n:*"),
    ),
    tool(
        "all: other partial denied",
        ALL,
        r#"{"groups":["B"]}"#,
        "n8n",
        "x",
        Err("n8n:*"),
    ),
    tool(
        "all: single-scope rule",
        ALL,
        r#"{"groups":["A"]}"#,
        "admin",
        "x",
        Ok("admin:*"),
    ),
    tool(
        "all: no match still denies",
        ALL,
        r#"{"groups":["AB"]}"#,
        "github",
        "x",
        Err("no rule"),
    ),
    // --- default_scope ---
    tool(
        "default: holder allowed",
        DEFAULT,
        r#"{"groups":["Staff"]}"#,
        "n8n",
        "x",
        Ok("default_scope"),
    ),
    tool(
        "default: non-holder denied",
        DEFAULT,
        r#"{"groups":["Guest"]}"#,
        "n8n",
        "x",
        Err("default_scope"),
    ),
    tool(
        "default: a matching rule still decides",
        DEFAULT,
        r#"{"groups":["Staff"]}"#,
        "admin",
        "x",
        Err("admin:*"),
    ),
    tool(
        "default: admin via rule",
        DEFAULT,
        r#"{"groups":["Admin"]}"#,
        "admin",
        "x",
        Ok("admin:*"),
    ),
    tool(
        "default: admin lacks the default scope",
        DEFAULT,
        r#"{"groups":["Admin"]}"#,
        "n8n",
        "x",
        Err("default_scope"),
    ),
    // --- claim shapes ---
    tool(
        "space-separated scope string",
        CLAIMS,
        r#"{"scope":"openid mcp:write profile"}"#,
        "n8n",
        "write_doc",
        Ok("n8n:write_*"),
    ),
    tool(
        "scope string without the scope",
        CLAIMS,
        r#"{"scope":"openid profile"}"#,
        "n8n",
        "write_doc",
        Err("n8n:write_*"),
    ),
    tool(
        "dotted realm_access.roles",
        CLAIMS,
        r#"{"realm_access":{"roles":["editor"]}}"#,
        "n8n",
        "edit_doc",
        Ok("n8n:edit_*"),
    ),
    tool(
        "dotted path needs the nesting",
        CLAIMS,
        r#"{"roles":["editor"]}"#,
        "n8n",
        "edit_doc",
        Err("n8n:edit_*"),
    ),
    tool(
        "groups read without being configured",
        CLAIMS,
        r#"{"groups":["Ops"]}"#,
        "n8n",
        "ops_restart",
        Ok("n8n:ops_*"),
    ),
    tool(
        "okta scp values are scopes",
        CLAIMS,
        r#"{"scp":["openid","mcp:read"]}"#,
        "n8n",
        "read_doc",
        Ok("n8n:read_*"),
    ),
    tool(
        "okta scp keys map too",
        CLAIMS,
        r#"{"scp":["tools.run"]}"#,
        "n8n",
        "run_job",
        Ok("n8n:run_*"),
    ),
    tool(
        "scp as a space-separated string",
        CLAIMS,
        r#"{"scp":"openid mcp:read"}"#,
        "n8n",
        "read_doc",
        Ok("n8n:read_*"),
    ),
    tool(
        "array elements are not split",
        CLAIMS,
        r#"{"roles":["Auditor Extra"]}"#,
        "n8n",
        "audit_log",
        Err("n8n:audit_*"),
    ),
    tool(
        "array roles",
        CLAIMS,
        r#"{"roles":["x","Auditor"]}"#,
        "n8n",
        "audit_log",
        Ok("n8n:audit_*"),
    ),
    tool(
        "number claim ignored",
        CLAIMS,
        r#"{"tier":5}"#,
        "n8n",
        "num_x",
        Err("n8n:num_*"),
    ),
    tool(
        "bool claim ignored",
        CLAIMS,
        r#"{"flags":true}"#,
        "n8n",
        "flag_x",
        Err("n8n:flag_*"),
    ),
    tool(
        "non-string array elements ignored",
        CLAIMS,
        r#"{"roles":[1,{"a":"Auditor"},null]}"#,
        "n8n",
        "audit_log",
        Err("n8n:audit_*"),
    ),
    tool(
        "object claim ignored",
        CLAIMS,
        r#"{"scope":{"mcp:write":true}}"#,
        "n8n",
        "write_doc",
        Err("n8n:write_*"),
    ),
];

/// Prompts and resources use the same patterns.
const OTHER_KINDS: &[Case] = &[
    Case {
        what: "prompt under n8n:*",
        auth: OKTA,
        claims: r#"{"groups":["User"]}"#,
        kind: Kind::Prompt,
        server: "n8n",
        name: "summarize",
        want: Ok("n8n:*"),
    },
    Case {
        what: "prompt denied",
        auth: OKTA,
        claims: r#"{"groups":["Admin"]}"#,
        kind: Kind::Prompt,
        server: "n8n",
        name: "summarize",
        want: Err("n8n:*"),
    },
    Case {
        what: "resource URI through a glob",
        auth: SPECIFIC,
        claims: r#"{"groups":["pub"]}"#,
        kind: Kind::Resource,
        server: "files",
        name: "file:///public/docs/a.md",
        want: Ok("files:file:///public/*"),
    },
    Case {
        what: "resource outside the glob",
        auth: SPECIFIC,
        claims: r#"{"groups":["pub"]}"#,
        kind: Kind::Resource,
        server: "files",
        name: "file:///etc/passwd",
        want: Err("*:*"),
    },
];

fn run(case: &Case) -> Result<String, String> {
    let rt = config(case.auth);
    let policy = Policy::from_config(&rt);
    let claims: serde_json::Value = serde_json::from_str(case.claims).unwrap();
    let scopes = policy.scope_map().scopes_for(&claims);
    let got = policy.authorize(&scopes, case.kind, case.server, case.name);
    assert_eq!(
        got.is_ok(),
        policy.visible(&scopes, case.kind, case.server, case.name),
        "{}: visible must agree with authorize",
        case.what
    );
    match got {
        Ok(p) => {
            assert_eq!(p.kind, case.kind);
            Ok(p.by.source().to_owned())
        }
        Err(d) => {
            assert_eq!(d.kind, case.kind);
            Err(d.by.source().to_owned())
        }
    }
}

#[test]
fn policy_table() {
    assert!(CASES.len() + OTHER_KINDS.len() >= 40);
    let mut failures = Vec::new();
    for case in CASES.iter().chain(OTHER_KINDS) {
        let got = run(case);
        let want = case.want.map(str::to_owned).map_err(str::to_owned);
        if got != want {
            failures.push(format!(
                "{}: {} {}:{} with {} -> got {got:?}, want {want:?}",
                case.what, case.kind, case.server, case.name, case.claims
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn denied_carries_the_needed_scopes() {
    let rt = config(ALL);
    let policy = Policy::from_config(&rt);
    let scopes: BTreeSet<String> = ["s:a".to_string()].into();
    let d = policy
        .authorize(&scopes, Kind::Tool, "n8n", "x")
        .unwrap_err();
    assert_eq!(d.needed, ["s:a", "s:b"]);
    assert_eq!(d.scope_hint(), "s:a s:b");
    assert_eq!(
        d.to_string(),
        "tool denied by rule `n8n:*`: needs all of [s:a, s:b]"
    );

    let rt = config(DEFAULT);
    let policy = Policy::from_config(&rt);
    let d = policy
        .authorize(&BTreeSet::new(), Kind::Prompt, "n8n", "x")
        .unwrap_err();
    assert_eq!(d.needed, ["s:basic"]);

    let rt = config(SEED);
    let policy = Policy::from_config(&rt);
    let d = policy
        .authorize(&BTreeSet::new(), Kind::Resource, "github", "x")
        .unwrap_err();
    assert!(d.needed.is_empty());
    assert_eq!(
        d.to_string(),
        "resource denied by no matching rule (default_scope is null)"
    );
}

#[test]
fn split_qualified_accepts_both_spellings() {
    let rt = config(SEED);
    let policy = Policy::from_config(&rt);
    assert_eq!(policy.split_qualified("n8n__send"), Some(("n8n", "send")));
    assert_eq!(policy.split_qualified("n8n:send"), Some(("n8n", "send")));
    assert_eq!(policy.split_qualified("n8n__a__b"), Some(("n8n", "a__b")));
    assert_eq!(policy.split_qualified("n8n"), None);
    assert_eq!(policy.split_qualified("__x"), None);
}

#[test]
fn live_snapshot_carries_the_policy() {
    let live = portcullis::state::Snapshot::new(config(OKTA));
    let scopes: BTreeSet<String> = ["scope:user".to_string()].into();
    assert!(live.policy.visible(&scopes, Kind::Tool, "n8n", "anything"));
}

fn explain(args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("explain")
        .args(args)
        .env_remove("PORTCULLIS_CONFIG")
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn explain_prints_keys_scopes_and_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.yaml");
    std::fs::write(
        &path,
        r#"server:
  listen: "127.0.0.1:8080"
oauth:
  enabled: false
auth:
  claims: ["groups"]
  mappings:
    "groups:User": ["scope:user"]
  permissions:
    "n8n:*": ["scope:user"]
    "n8n:delete_*": ["scope:admin"]
proxy:
  servers:
    - name: n8n
      type: streamable-http
      connection: { url: "http://127.0.0.1:1/mcp" }
"#,
    )
    .unwrap();
    let cfg = path.to_str().unwrap();
    let claims = r#"{"groups":["User"],"scp":["openid"]}"#;
    let (code, out, err) = explain(
        &[
            "--config",
            cfg,
            "--claims",
            claims,
            "--tool",
            "n8n__send",
            "--tool",
            "n8n:delete_x",
            "--tool",
            "other__x",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        lines(&out),
        [
            "claims read: groups, scp",
            "claim keys: groups:User, scp:openid",
            "scopes: openid, scope:user",
            "policy: 2 rules, scope_mode any, default_scope null (deny)",
            "n8n__send allowed by rule `n8n:*`",
            "n8n:delete_x denied by rule `n8n:delete_*`: needs scope `scope:admin`",
            "other__x denied by no matching rule (default_scope is null)",
        ]
    );

    // No --tool: every configured pattern.
    let (code, out, _) = explain(&["--config", cfg, "--claims", claims], &[]);
    assert_eq!(code, 0);
    let out = lines(&out);
    assert_eq!(
        &out[4..],
        [
            "pattern n8n:* allowed by rule `n8n:*`",
            "pattern n8n:delete_* denied by rule `n8n:delete_*`: needs scope `scope:admin`",
        ]
    );

    // Bad claims: exit 2 with a message.
    let (code, out, err) = explain(&["--config", cfg, "--claims", "{nope"], &[]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(err.contains("--claims is not valid JSON"), "{err}");
    let (code, _, err) = explain(&["--config", cfg, "--claims", "[]"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("must be a JSON object"), "{err}");

    // Bad config: exit 1 with diagnostics.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "server: [\n").unwrap();
    let (code, _, err) = explain(&["--config", bad.to_str().unwrap(), "--claims", "{}"], &[]);
    assert_eq!(code, 1);
    assert!(err.contains("bad.yaml"), "{err}");
}

#[test]
fn explain_works_on_the_okta_example() {
    let cfg = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/okta/gateway.yaml");
    let env = [
        ("OKTA_ISSUER", "https://example.okta.com/oauth2/default"),
        ("N8N_URL", "http://127.0.0.1:5678/mcp"),
        ("N8N_PROXY_KEY", "k"),
    ];
    let (code, out, err) = explain(
        &[
            "--config",
            cfg,
            "--claims",
            r#"{"groups":["Admin"]}"#,
            "--tool",
            "admin__users",
            "--tool",
            "n8n__run",
        ],
        &env,
    );
    assert_eq!(code, 0, "{err}");
    let out = lines(&out);
    assert!(
        out.contains(&"admin__users allowed by rule `admin:*`".to_string()),
        "{out:?}"
    );
    assert!(
        out.contains(&"n8n__run denied by rule `n8n:*`: needs scope `scope:user`".to_string()),
        "{out:?}"
    );
}
