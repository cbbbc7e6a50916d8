//! Tests of [`super`]: classification of request bodies.

use super::*;

fn req(body: &str) -> Message {
    classify(body.as_bytes()).unwrap().messages.remove(0)
}

#[test]
fn tool_call_target_is_extracted() {
    let m = req(
        r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}"#,
    );
    assert_eq!(
        m,
        Message::Request {
            id: Value::from(7),
            method: "tools/call".into(),
            uses: Some(Use {
                kind: Kind::Tool,
                name: "echo".into(),
                span: None,
            })
        }
    );
}

#[test]
fn params_before_method_still_yields_target() {
    let m =
        req(r#"{"params":{"uri":"file:///a"},"method":"resources/read","id":"x","jsonrpc":"2.0"}"#);
    assert_eq!(
        m,
        Message::Request {
            id: Value::from("x"),
            method: "resources/read".into(),
            uses: Some(Use {
                kind: Kind::Resource,
                name: "file:///a".into(),
                span: None,
            })
        }
    );
}

#[test]
fn other_methods_keep_no_target() {
    let m = req(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"name":"x"}}"#);
    assert!(matches!(m, Message::Request { uses: None, .. }));
}

#[test]
fn notification_and_response() {
    assert!(matches!(
        req(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#),
        Message::Notification { .. }
    ));
    assert!(matches!(
        req(r#"{"jsonrpc":"2.0","id":3,"result":{"content":[]}}"#),
        Message::Response { .. }
    ));
}

#[test]
fn batch_is_classified_element_by_element() {
    let e = classify(br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/x"}]"#).unwrap();
    assert!(e.batch);
    assert_eq!(e.messages.len(), 2);
    assert_eq!(e.error_id(), Value::Null);
}

#[test]
fn duplicate_keys_are_rejected_at_any_depth() {
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"x":1,"x":2}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"x","params":[{"a":1,"\u0061":2}]}"#,
    ] {
        let err = classify(body.as_bytes()).unwrap_err();
        assert!(
            matches!(err, RpcError::Invalid(ref m) if m.contains("duplicate key")),
            "{body}: {err:?}"
        );
    }
}

#[test]
fn syntax_errors_are_parse_errors() {
    for body in [
        &b""[..],
        b"   ",
        b"{",
        b"{\"jsonrpc\":\"2.0\",}",
        b"{\"jsonrpc\":\"2.0\",\"method\":\"x\"} trailing",
        b"{\"jsonrpc\":\"2.0\",\"method\":\"\xff\xfe\"}",
        b"{\"jsonrpc\":\"2.0\",\"method\":\"\\ud800\"}",
    ] {
        let err = classify(body).unwrap_err();
        assert_eq!(
            err.code(),
            -32700,
            "{:?}: {err:?}",
            String::from_utf8_lossy(body)
        );
    }
}

#[test]
fn envelope_errors_are_invalid_requests() {
    for body in [
        r#"{"id":1,"method":"x"}"#,
        r#"{"jsonrpc":"1.0","id":1,"method":"x"}"#,
        r#"{"jsonrpc":"2.0","id":1}"#,
        r#"{"jsonrpc":"2.0","id":1.5,"method":"x"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"x","params":3}"#,
        r#"[]"#,
        r#"42"#,
    ] {
        let err = classify(body.as_bytes()).unwrap_err();
        assert_eq!(err.code(), -32600, "{body}: {err:?}");
    }
}

#[test]
fn large_objects_are_checked_in_linear_time() {
    let n = 100_000;
    let keys: Vec<String> = (0..n).map(|i| format!("\"k{i}\":0")).collect();
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{{}}}}}"#,
        keys.join(",")
    );
    let start = std::time::Instant::now();
    classify(body.as_bytes()).unwrap();
    assert!(start.elapsed().as_secs() < 5, "quadratic key check");
    let dup = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{{},"k5":1}}}}"#,
        keys.join(",")
    );
    assert!(classify(dup.as_bytes()).is_err());
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"a":{}1{}}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    assert_eq!(classify(body.as_bytes()).unwrap_err().code(), -32700);
}

#[test]
fn covered_methods_must_be_decidable() {
    // Notifications of covered methods: no answer could carry a denial.
    for body in [
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"x"}}"#,
        r#"{"jsonrpc":"2.0","method":"resources\/read","params":{"uri":"x"}}"#,
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"prompts/get","params":{"name":"x"}}]"#,
    ] {
        let err = classify(body.as_bytes()).unwrap_err();
        assert_eq!(err.code(), -32600, "{body}: {err:?}");
    }
    // Params that name nothing decidable: -32602, with the request's id (null in a batch).
    for (body, id) in [
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call"}"#,
            Value::from(4),
        ),
        (
            r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":["x"]}"#,
            Value::from("a"),
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":1}}"#,
            Value::from(4),
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":null}}"#,
            Value::from(4),
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"prompts/get","params":{"uri":"x"}}"#,
            Value::from(4),
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"resources/subscribe","params":{"name":"x"}}"#,
            Value::from(4),
        ),
        (
            r#"{"params":{},"id":5,"method":"completion/complete","jsonrpc":"2.0"}"#,
            Value::from(5),
        ),
        (
            r#"{"jsonrpc":"2.0","id":5,"method":"completion/complete","params":{"ref":{"type":"ref/tool","name":"x"}}}"#,
            Value::from(5),
        ),
        (
            r#"{"jsonrpc":"2.0","id":5,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","uri":"x"}}}"#,
            Value::from(5),
        ),
        (
            r#"[{"jsonrpc":"2.0","id":6,"method":"tools/call"}]"#,
            Value::Null,
        ),
    ] {
        let err = classify(body.as_bytes()).unwrap_err();
        assert_eq!(err.code(), -32602, "{body}: {err:?}");
        assert_eq!(err.id(), id, "{body}");
    }
}

#[test]
fn completion_references_are_uses() {
    let m = req(
        r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"argument":{"name":"a","value":"b"},"ref":{"name":"secret","type":"ref/prompt"}}}"#,
    );
    let Message::Request { uses: Some(u), .. } = m else {
        panic!("{m:?}")
    };
    assert_eq!((u.kind, u.name.as_str()), (Kind::Prompt, "secret"));
    let m = req(
        r#"{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"file:///{p}"}}}"#,
    );
    assert!(matches!(
        m,
        Message::Request {
            uses: Some(Use {
                kind: Kind::Resource,
                ..
            }),
            ..
        }
    ));
}

#[test]
fn an_unescaped_name_has_its_span_in_the_body() {
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{},"name":"wf__calc"}}"#;
    let e = classify(body).unwrap();
    let Some(Message::Request { uses: Some(u), .. }) = e.single() else {
        panic!("{e:?}")
    };
    let span = u.span.clone().unwrap();
    assert_eq!(&body[span.clone()], b"wf__calc");
    assert_eq!(body[span.start - 1], b'"');
    let escaped =
        br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"wf__c\u0061lc"}}"#;
    let e = classify(escaped).unwrap();
    let Some(Message::Request { uses: Some(u), .. }) = e.single() else {
        panic!("{e:?}")
    };
    assert_eq!((u.name.as_str(), u.span.clone()), ("wf__calc", None));
}
