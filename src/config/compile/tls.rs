//! `server.tls` and `connection.tls`: the files named are read and checked here (through
//! [`crate::tls`]), so `portcullis check` names a bad one by its field.

use std::sync::Arc;
use std::time::Duration;

use super::ctx::{root, Ctx};
use crate::config::compiled::ServerTls;
use crate::config::diagnostic::FieldPath;
use crate::config::raw::{RawServerTls, RawUpstreamTls};

/// `server.tls`: both files named, readable, a certificate chain and its key. `false` after
/// an error.
pub(super) fn compile_server_tls(
    raw: Option<&RawServerTls>,
    ctx: &mut Ctx<'_>,
) -> (Option<ServerTls>, bool) {
    let Some(raw) = raw else {
        return (None, true);
    };
    let p = root().key("server").key("tls");
    let empty = |v: &Option<String>| v.as_deref().is_none_or(|v| v.trim().is_empty());
    if empty(&raw.cert_file) && empty(&raw.key_file) {
        // `cert_file: "${PORTCULLIS_TLS_CERT_FILE:-}"` and its key left unset (the chart's
        // default file): a plain listener, as with `admin_listen` and `metrics_auth`.
        return (None, true);
    }
    let file = |ctx: &mut Ctx<'_>, key: &str, value: &Option<String>, what: &str| match value
        .as_deref()
        .map(str::trim)
    {
        Some(v) if !v.is_empty() => Some(ctx.file_path(v)),
        _ => {
            ctx.missing(
                &p.key(key),
                format!("`server.tls` needs `{key}`"),
                Some(format!(
                    "the path of the PEM {what}, e.g. `/etc/portcullis/tls.{}`",
                    if key == "cert_file" { "crt" } else { "key" }
                )),
            );
            None
        }
    };
    let cert = file(
        ctx,
        "cert_file",
        &raw.cert_file,
        "certificate chain (leaf first)",
    );
    let key = file(ctx, "key_file", &raw.key_file, "private key");
    let interval = raw.reload_interval.map_or(Duration::from_secs(10), |d| d.0);
    let interval_ok = interval >= Duration::from_millis(100);
    if !interval_ok {
        ctx.error(
            &p.key("reload_interval"),
            "`reload_interval` is shorter than 100ms".into(),
            Some("the files are checked this often; e.g. `10s`".into()),
        );
    }
    let (Some(cert_file), Some(key_file)) = (cert, key) else {
        return (None, false);
    };
    if ctx.reload {
        return (
            interval_ok.then_some(ServerTls {
                cert_file,
                key_file,
                reload_interval: interval,
            }),
            interval_ok,
        );
    }
    let checked = crate::tls::certified_key(&cert_file, &key_file);
    if let Err((field, e)) = checked {
        ctx.error(&p.key(field), format!("unusable TLS file: {e}"), None);
        return (None, false);
    }
    (
        interval_ok.then_some(ServerTls {
            cert_file,
            key_file,
            reload_interval: interval,
        }),
        interval_ok,
    )
}

/// `connection.tls` of an HTTP upstream: read and check its files now. `None` after an error;
/// `Some(None)` when not set.
pub(super) fn upstream_tls(
    ctx: &mut Ctx<'_>,
    path: &FieldPath,
    raw: Option<&RawUpstreamTls>,
    https: bool,
) -> Option<Option<Arc<crate::tls::UpstreamTls>>> {
    let Some(raw) = raw else {
        return Some(None);
    };
    if !https {
        ctx.error(
            path,
            "`tls` applies to an `https://` URL only".into(),
            Some("use `https://` in `connection.url`, or remove `tls`".into()),
        );
        return None;
    }
    let named = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| ctx.file_path(v))
    };
    let (ca, cert, key) = (
        named(&raw.ca_file),
        named(&raw.cert_file),
        named(&raw.key_file),
    );
    let client = match (&cert, &key) {
        (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
        (None, None) => None,
        (Some(_), None) => {
            ctx.missing(
                &path.key("key_file"),
                "`cert_file` needs `key_file`".into(),
                Some("the PEM private key of the client certificate".into()),
            );
            return None;
        }
        (None, Some(_)) => {
            ctx.missing(
                &path.key("cert_file"),
                "`key_file` needs `cert_file`".into(),
                Some("the PEM client certificate chain".into()),
            );
            return None;
        }
    };
    if ca.is_none() && client.is_none() {
        return Some(None);
    }
    let checked = crate::tls::UpstreamTls::load(ca.as_deref(), client);
    match checked {
        Ok(t) => Some(Some(Arc::new(t))),
        Err((field, e)) => {
            ctx.error(&path.key(field), format!("unusable TLS file: {e}"), None);
            None
        }
    }
}
