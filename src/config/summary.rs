//! What a compiled config says in words: the summary `portcullis check` prints, and which
//! startup-only settings a reload would change.

use std::time::Duration;

use super::compiled::{redacted_url, Config, Provider, ScopeMode, Transport};

fn dur(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

impl Config {
    /// A short human summary: listener, upstreams, auth, policy and limits (printed by
    /// `portcullis check`). Shows no secret.
    pub fn summary(&self) -> String {
        let mut out = Vec::new();
        let s = &self.server;
        out.push(format!(
            "listen: {} (threads {}, grace period {})",
            s.listen,
            s.threads,
            dur(s.grace_period)
        ));
        if let Some(t) = &s.tls {
            out.push(format!(
                "tls: {} + {} (HTTP/2 and HTTP/1.1; files checked every {})",
                t.cert_file.display(),
                t.key_file.display(),
                dur(t.reload_interval)
            ));
        }
        if let Some(u) = &s.public_url {
            out.push(format!("public url: {}", redacted_url(u)));
        }
        out.push(format!(
            "max body: {} bytes; max head: {} bytes ({} fields), within {}; max connections: {}; max event streams per caller: {}",
            s.max_body_bytes,
            s.max_header_bytes,
            crate::request::MAX_HEADER_FIELDS,
            dur(s.header_timeout),
            s.max_connections,
            s.max_streams_per_principal
        ));
        let admin_at = match s.admin_listen {
            Some(a) => format!("on {a} (off the main listener)"),
            None => "on the main listener".to_owned(),
        };
        let status = match (&s.admin_scope, self.oauth.enabled, s.admin_listen) {
            (_, _, Some(_)) | (_, false, None) => "open".to_owned(),
            (Some(scope), true, None) => format!("needs scope `{scope}`"),
            (None, true, None) => "closed (set admin_scope or admin_listen)".to_owned(),
        };
        let metrics = if s.metrics_auth.is_some() {
            "basic auth"
        } else {
            "open"
        };
        out.push(format!(
            "admin endpoints: {admin_at}; /status {status}; /metrics {metrics}"
        ));
        if !s.allowed_origins.is_empty() {
            out.push(format!("allowed origins: {}", s.allowed_origins.join(", ")));
        }
        let o = &self.oauth;
        if o.enabled {
            let mut from: Vec<String> = o
                .authorization_servers
                .iter()
                .map(|u| u.to_string())
                .collect();
            if let Some(j) = &o.jwks_uri {
                from.push(format!("jwks {j}"));
            }
            let aud = if o.audiences.is_empty() {
                "any".to_string()
            } else {
                o.audiences.join(", ")
            };
            out.push(format!(
                "auth: on ({}; issuers: {}; audiences: {aud}; leeway {})",
                match o.provider {
                    Provider::Okta => "okta",
                    Provider::Oidc => "oidc",
                },
                from.join(", "),
                dur(o.leeway)
            ));
        } else {
            out.push("auth: off".into());
        }
        out.push(format!(
            "upstreams: {} (separator `{}`)",
            self.proxy.servers.len(),
            self.proxy.separator
        ));
        for u in &self.proxy.servers {
            let target = match &u.transport {
                Transport::StreamableHttp(t) | Transport::Sse(t) => redacted_url(&t.url),
                // Arguments may carry secrets: only their number is shown.
                Transport::Stdio(c) => format!("{} ({} args)", c.command, c.args.len()),
            };
            let mut extra = vec![format!("timeout {}", dur(u.timeout))];
            if !matches!(u.transport, Transport::Stdio(_)) {
                extra.push(format!("connect {}", dur(u.connect_timeout)));
            }
            if !u.inject_headers.is_empty() {
                let names: Vec<&str> = u.inject_headers.iter().map(|(n, _)| n.as_str()).collect();
                extra.push(format!("headers: {}", names.join(", ")));
            }
            if let Transport::Stdio(c) = &u.transport {
                if !c.env.is_empty() {
                    let names: Vec<&str> = c.env.iter().map(|(k, _)| k.as_str()).collect();
                    extra.push(format!("env: {}", names.join(", ")));
                }
            }
            if let Transport::StreamableHttp(t) = &u.transport {
                if t.fallback_sse {
                    extra.push("fallback sse".into());
                }
            }
            if let Transport::StreamableHttp(t) | Transport::Sse(t) = &u.transport {
                if let Some(tls) = &t.tls_options {
                    if tls.ca.is_some() {
                        extra.push("own CA".into());
                    }
                    if tls.client.is_some() {
                        extra.push("client certificate".into());
                    }
                }
            }
            if u.forward_authorization {
                extra.push("forwards authorization".into());
            }
            out.push(format!(
                "  {} {} {} ({})",
                u.name,
                u.transport.kind(),
                target,
                extra.join(", ")
            ));
        }
        let a = &self.auth;
        out.push(format!(
            "policy: {} permission rules, {} mappings, claims [{}], scope_mode {}, default {}",
            a.permissions.len(),
            a.mappings.len(),
            a.claims.join(", "),
            match a.scope_mode {
                ScopeMode::Any => "any",
                ScopeMode::All => "all",
            },
            match &a.default_scope {
                Some(s) => format!("scope `{s}`"),
                None => "deny".into(),
            }
        ));
        if let Some(u) = &self.telemetry.otlp_traces {
            out.push(format!(
                "traces: OTLP/HTTP to {} as `{}`",
                redacted_url(u),
                self.telemetry.service_name
            ));
        }
        if self.rate_limits.is_empty() {
            out.push("rate limits: none".into());
        }
        for r in &self.rate_limits {
            let tools = if r.tools.is_empty() {
                String::new()
            } else {
                let list: Vec<String> = r.tools.iter().map(|(s, t)| format!("{s}:{t}")).collect();
                format!(", tools {}", list.join(", "))
            };
            out.push(format!(
                "rate limit ({}): per {} {}/s burst {}{tools}",
                r.source, r.key, r.requests_per_second, r.burst
            ));
        }
        for w in &self.warnings {
            out.push(format!(
                "warning: {} ({}:{}:{})",
                w.message, w.file, w.line, w.column
            ));
        }
        let mut text = out.join("\n");
        text.push('\n');
        text
    }

    /// The startup-only fields (`server.listen`, `server.threads`, `server.grace_period`) whose
    /// value differs in `new`; a reload that changes any of them is refused.
    pub fn startup_only_changes(&self, new: &Config) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.server.listen != new.server.listen {
            out.push("server.listen");
        }
        if self.server.threads != new.server.threads {
            out.push("server.threads");
        }
        if self.server.grace_period != new.server.grace_period {
            out.push("server.grace_period");
        }
        if self.server.admin_listen != new.server.admin_listen {
            out.push("server.admin_listen");
        }
        if self.server.tls != new.server.tls {
            out.push("server.tls");
        }
        if self.telemetry != new.telemetry {
            out.push("telemetry");
        }
        // The verifier and the key sources are built at start (the refresher keeps keys
        // current); changing who may issue tokens needs a restart for now.
        if self.oauth.enabled != new.oauth.enabled {
            out.push("oauth.enabled");
        }
        if self.oauth.authorization_servers != new.oauth.authorization_servers {
            out.push("oauth.authorization_servers");
        }
        if self.oauth.audiences != new.oauth.audiences {
            out.push("oauth.audiences");
        }
        if self.oauth.jwks_uri != new.oauth.jwks_uri {
            out.push("oauth.jwks_uri");
        }
        if self.oauth.leeway != new.oauth.leeway {
            out.push("oauth.leeway");
        }
        if self.oauth.jwks_refresh != new.oauth.jwks_refresh {
            out.push("oauth.jwks_refresh");
        }
        out
    }
}
