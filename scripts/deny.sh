#!/usr/bin/env bash
# Supply chain: `cargo deny --offline check` (advisories, licenses, bans, sources; policy in
# deny.toml). Installs cargo-deny (crates.io) into .peers when missing.
#
# RustSec's advisory database lives on GitHub, which this machine kind cannot reach, so the
# advisories are checked against a snapshot kept in deny/advisory-db: the advisories of every
# crate in Cargo.lock (crates/<name>/), the names of every crate the database covers (NAMES),
# and where and when it was taken (SNAPSHOT). The check refuses a Cargo.lock crate the
# database covers whose advisories are not in the snapshot: refresh it, where GitHub is
# reachable, with
#
#   git clone --depth 1 https://github.com/rustsec/advisory-db /tmp/advisory-db
#   scripts/deny.sh --refresh /tmp/advisory-db
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SNAP=deny/advisory-db
# cargo-deny keeps the default database (this URL) in <db-path>/advisory-db-<hash of the URL>.
DB=target/advisory-dbs/advisory-db-3157b0e258782691
lock_crates() { sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.lock | sort -u; }

if [ "${1:-}" = --refresh ]; then
    full=${2:?usage: scripts/deny.sh --refresh PATH-TO-ADVISORY-DB-CHECKOUT}
    rm -rf "$SNAP"
    mkdir -p "$SNAP/crates"
    for c in $(lock_crates); do
        if [ -d "$full/crates/$c" ]; then cp -r "$full/crates/$c" "$SNAP/crates/"; fi
    done
    find "$full/crates" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort >"$SNAP/NAMES"
    cp "$full/LICENSE.txt" "$SNAP/"
    printf 'source https://github.com/rustsec/advisory-db\ncommit %s\ndate %s\n' \
        "$(git -C "$full" log -1 --format=%H)" "$(git -C "$full" log -1 --format=%cI)" >"$SNAP/SNAPSHOT"
    echo "deny: snapshot refreshed: $(tr '\n' ' ' <"$SNAP/SNAPSHOT")"
    exit 0
fi

DENY=${PORTCULLIS_PEERS:-$PWD/.peers}/cargo-deny/bin/cargo-deny
if [ ! -x "$DENY" ]; then
    echo "deny: installing cargo-deny 0.20.2 (crates.io)"
    cargo install --quiet --locked cargo-deny --version 0.20.2 --root "$(dirname "$(dirname "$DENY")")"
fi

# Every Cargo.lock crate the database covers must be in the snapshot.
missing=()
for c in $(lock_crates); do
    if grep -qxF -- "$c" "$SNAP/NAMES" && [ ! -d "$SNAP/crates/$c" ]; then missing+=("$c"); fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "deny: the advisory snapshot lacks ${missing[*]} (in Cargo.lock, covered by RustSec): refresh it (see scripts/deny.sh)" >&2
    exit 1
fi

# The snapshot as the git repository cargo-deny reads, dated as the snapshot.
date=$(sed -n 's/^date //p' "$SNAP/SNAPSHOT")
rm -rf "$DB"
mkdir -p "$DB"
cp -r "$SNAP/crates" "$DB/"
(
    cd "$DB"
    git init -q
    git add -A
    GIT_AUTHOR_DATE=$date GIT_COMMITTER_DATE=$date \
        git -c user.name=snapshot -c user.email=snapshot@localhost -c commit.gpgsign=false \
        commit -q -m "RustSec advisory-db snapshot"
)
age=$(( ($(date +%s) - $(date -d "$date" +%s)) / 86400 ))
if [ "$age" -gt 90 ]; then
    echo "deny: WARNING: the advisory snapshot is $age days old; refresh it where GitHub is reachable (see the top of this script)"
fi
echo "deny: advisories from the RustSec snapshot of $date ($(sed -n 's/^commit //p' "$SNAP/SNAPSHOT" | cut -c1-12))"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
rc=0
"$DENY" --offline --color never check >"$out" 2>&1 || rc=$?
if [ "$rc" != 0 ]; then
    grep -v '^warning\[duplicate\]' "$out" >&2 || true
    exit "$rc"
fi
grep -E 'ok$' "$out" || true
echo "deny: advisories, licenses, bans and sources ok ($(grep -c '^warning\[duplicate\]' "$out") duplicate-version warnings)"
