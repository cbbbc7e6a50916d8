//! Reading a claim out of a verified token's claims, one way for every reader: the scope map
//! (`auth.claims`, [`super::scopes`]) and `claim:NAME` rate limits ([`super::principal`]).

use serde_json::Value;

/// The values of claim `name` as `auth` reads them (a top-level member or a dotted path; a
/// string split on whitespace, an array's non-empty strings), without duplicates.
pub fn claim_values<'v>(claims: &'v Value, name: &str) -> Vec<&'v str> {
    let mut out: Vec<&str> = Vec::new();
    let mut push = |v: &'v str| {
        if !out.contains(&v) {
            out.push(v);
        }
    };
    match lookup(claims, name) {
        Some(Value::String(s)) => s.split_whitespace().for_each(&mut push),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .for_each(&mut push),
        _ => {}
    }
    out
}

/// The value of claim `name`: a top-level member of that exact name if there is one, otherwise
/// the dotted path walked through nested objects.
pub(crate) fn lookup<'v>(claims: &'v Value, name: &str) -> Option<&'v Value> {
    if let Some(v) = claims.get(name) {
        return Some(v);
    }
    if !name.contains('.') {
        return None;
    }
    name.split('.').try_fold(claims, |v, part| v.get(part))
}
