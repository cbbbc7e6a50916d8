#![allow(clippy::unwrap_used)]

use super::*;
use crate::config::load_str;
use crate::mcp::era::negotiate;
use crate::policy::Kind;

fn config(auth: &str) -> crate::config::Config {
    let yaml = format!(
        "server:\n  listen: \"127.0.0.1:8080\"\n{auth}proxy:\n  servers:\n    - name: everything\n      type: stdio\n      connection: {{ command: x }}\n    - name: n8n\n      type: stdio\n      prefix: wf\n      aliases: {{ calculator: calc }}\n      connection: {{ command: x }}\n"
    );
    load_str(&yaml, "t.yaml", &|_| None).unwrap()
}

fn names() -> Names {
    Names::new(&config("oauth:\n  enabled: false\n"))
}

fn renamed(body: &Value, method: &str, kind: Kind, original: &str) -> Option<Value> {
    let target = crate::policy::covered(method).unwrap();
    let bytes = body.to_string();
    let e = crate::mcp::jsonrpc::classify(bytes.as_bytes()).ok();
    let used = match e.as_ref().and_then(|e| e.single()) {
        Some(crate::mcp::jsonrpc::Message::Request { uses: Some(u), .. }) => u.clone(),
        _ => Use {
            kind,
            name: String::new(),
            span: None,
        },
    };
    assert_eq!(used.kind, kind);
    // In place (the classifier's span), and by reading the body again (no span): the same.
    let fast = rename_target(bytes.as_bytes(), &used, target, original);
    let slow = rename_target(
        bytes.as_bytes(),
        &Use {
            span: None,
            ..used.clone()
        },
        target,
        original,
    );
    assert_eq!(fast, slow);
    fast.map(|b| serde_json::from_slice(&b).unwrap())
}

#[test]
fn a_covered_request_gets_the_upstream_name_back() {
    let call = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"wf__calc","arguments":{"x":1}}});
    let out = renamed(&call, "tools/call", Kind::Tool, "calculator").unwrap();
    assert_eq!(out["params"]["name"], "calculator");
    assert_eq!(out["params"]["arguments"]["x"], 1);
    let read = json!({"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"mcp://wf/file:///a"}});
    let out = renamed(&read, "resources/read", Kind::Resource, "file:///a").unwrap();
    assert_eq!(out["params"]["uri"], "file:///a");
    let prompt = json!({"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"wf__p"}}});
    let out = renamed(&prompt, "completion/complete", Kind::Prompt, "p").unwrap();
    assert_eq!(out["params"]["ref"]["name"], "p");
    let template = json!({"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"mcp://wf/f/{x}"}}});
    let out = renamed(&template, "completion/complete", Kind::Resource, "f/{x}").unwrap();
    assert_eq!(out["params"]["ref"]["uri"], "f/{x}");
    // Quotes and backslashes in the upstream's name are escaped.
    let out = renamed(&call, "tools/call", Kind::Tool, "a\"b\\c").unwrap();
    assert_eq!(out["params"]["name"], "a\"b\\c");
}

#[test]
fn server_requests_get_ids_that_route_the_answer_back_statelessly() {
    let n = names();
    for id in [json!(7), json!("srv-1"), json!("a__b"), json!({"odd": [1]})] {
        let out = outward_id(&n, "n8n", &id);
        assert!(out.as_str().unwrap().starts_with("wf__"), "{out}");
        assert_eq!(inward_id(&n, &out), Some(("n8n", id.clone())));
    }
    assert_eq!(inward_id(&n, &json!(7)), None);
    assert_eq!(inward_id(&n, &json!("nobody__7")), None);
    assert_eq!(inward_id(&n, &json!("wf__not json")), None);
}

#[test]
fn upstream_messages_are_namespaced_on_the_way_out() {
    let n = names();
    let request = br#"{"jsonrpc":"2.0","id":3,"method":"sampling/createMessage","params":{}}"#;
    let out: Value = serde_json::from_slice(&outward(&n, "everything", request).unwrap()).unwrap();
    assert_eq!(out["id"], "everything__3");
    let updated = br#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///x"}}"#;
    let out: Value = serde_json::from_slice(&outward(&n, "n8n", updated).unwrap()).unwrap();
    assert_eq!(out["params"]["uri"], "mcp://wf/file:///x");
    assert!(out.get("id").is_none());
    let read =
        br#"{"jsonrpc":"2.0","id":1,"result":{"contents":[{"uri":"file:///x","text":"t"}]}}"#;
    let out: Value = serde_json::from_slice(&outward(&n, "n8n", read).unwrap()).unwrap();
    assert_eq!(out["result"]["contents"][0]["uri"], "mcp://wf/file:///x");
    let tool = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"resource_link","uri":"a://1","name":"a"},{"type":"resource","resource":{"uri":"b://2","text":""}},{"type":"text","text":"uri"}]}}"#;
    let out: Value = serde_json::from_slice(&outward(&n, "everything", tool).unwrap()).unwrap();
    assert_eq!(out["result"]["content"][0]["uri"], "mcp://everything/a://1");
    assert_eq!(
        out["result"]["content"][1]["resource"]["uri"],
        "mcp://everything/b://2"
    );
    // Progress and plain results pass untouched (no parse).
    let progress = br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}"#;
    assert_eq!(outward(&n, "everything", progress), None);
    let plain = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hi"}]}}"#;
    assert_eq!(outward(&n, "everything", plain), None);
}

#[test]
fn list_pages_are_filtered_namespaced_and_keep_the_cursor() {
    let cfg = config("oauth:\n  enabled: true\n  authorization_servers: [\"https://idp.example.com\"]\n  audiences: [\"api\"]\nauth:\n  permissions:\n    \"everything:echo\": [\"scope:user\"]\n    \"n8n:calculator\": [\"scope:user\"]\n");
    let n = Names::new(&cfg);
    let policy = Policy::from_config(&cfg);
    let scopes: BTreeSet<String> = ["scope:user".to_owned()].into();
    let reader = Reader {
        policy: &policy,
        scopes: Some(&scopes),
    };
    let mut items = Vec::new();
    let page = json!({"tools":[{"name":"echo"},{"name":"secret"}],"nextCursor":"c2"});
    let next = merge_page(ListKind::Tools, &n, reader, "everything", page, &mut items);
    assert_eq!(next, Some(json!("c2")));
    let page = json!({"tools":[{"name":"calculator","description":"d"},{"name":"mail"}]});
    assert_eq!(
        merge_page(ListKind::Tools, &n, reader, "n8n", page, &mut items),
        None
    );
    let names: Vec<&str> = items.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["everything__echo", "wf__calc"]);
    assert_eq!(items[1]["description"], "d");
    // Without authentication nothing is filtered; templates are namespaced like URIs.
    let open = Reader {
        policy: &policy,
        scopes: None,
    };
    let mut items = Vec::new();
    let page = json!({"resourceTemplates":[{"uriTemplate":"file:///{p}","name":"f"}]});
    merge_page(ListKind::Templates, &n, open, "n8n", page, &mut items);
    assert_eq!(items[0]["uriTemplate"], "mcp://wf/file:///{p}");
}

#[test]
fn initialize_results_merge_capabilities_and_name_the_gateway() {
    let a = json!({"protocolVersion":"2025-06-18","capabilities":{"tools":{"listChanged":false}},"serverInfo":{"name":"a"},"instructions":"use a"});
    let b = json!({"protocolVersion":"2025-11-25","capabilities":{"tools":{"listChanged":true},"resources":{"subscribe":true},"logging":{}},"serverInfo":{"name":"b"}});
    let merged = merge_initialize(
        "2025-11-25",
        &[
            Initialized {
                server: "a",
                result: &a,
            },
            Initialized {
                server: "b",
                result: &b,
            },
        ],
    );
    assert_eq!(merged["protocolVersion"], "2025-11-25");
    assert_eq!(merged["serverInfo"]["name"], "portcullis");
    assert_eq!(merged["capabilities"]["tools"]["listChanged"], true);
    assert_eq!(merged["capabilities"]["resources"]["subscribe"], true);
    assert!(merged["capabilities"].get("prompts").is_none());
    assert!(merged["capabilities"].get("logging").is_some());
    assert_eq!(merged["instructions"], "[a] use a");
    assert_eq!(negotiate(Some("2025-06-18")), "2025-06-18");
    assert_eq!(negotiate(Some("1999-01-01")), "2025-11-25");
    assert_eq!(negotiate(None), "2025-11-25");
}

#[test]
fn live_names_that_collide_or_were_shortened_are_reported_and_only_reachable_ones_listed() {
    let n = names();
    let policy = Policy::from_config(&config("oauth:\n  enabled: false\n"));
    let open = Reader {
        policy: &policy,
        scopes: None,
    };
    let long = "l".repeat(70);
    // `calc` is also the alias of `calculator`: wf__calc means `calculator`, so the upstream's
    // own `calc` cannot be reached on /mcp and is left out (whatever the list's order).
    let page = json!({"tools":[{"name":"calc"},{"name":"calculator"},{"name": long},{"name":"build-deadbeef"}]});
    let mut items = Vec::new();
    merge_page(ListKind::Tools, &n, open, "n8n", page, &mut items);
    let listed: Vec<&str> = items.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(listed[0], "wf__calc");
    assert!(
        listed[1].starts_with("wf__lll") && listed[1].len() <= 64,
        "{listed:?}"
    );
    assert_eq!(listed[2], "wf__build-deadbeef");
    let seen = n.seen();
    let report = &seen["n8n"];
    assert_eq!(report.collisions.len(), 1, "{report:?}");
    assert!(report.collisions[0].contains("`calc`"), "{report:?}");
    assert_eq!(report.shortened, vec![(long.clone(), listed[1].to_owned())]);
}
