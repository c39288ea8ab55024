#!/usr/bin/env bash
# Installs what jitgate's tests drive besides Rust itself:
#   - npm (pinned in tests/support/node/package-lock.json): the official MCP
#     filesystem and everything servers, the official TypeScript SDK client,
#     the MCP conformance suite, a real OpenID provider (oidc-provider) for the
#     OAuth tests, and Node 22 for the suite and the provider (neither runs on
#     Node 20);
#   - the official Python MCP client and the Standard Webhooks reference
#     verifier (tests/support/python/requirements.txt) in .venv;
#   - Debian's chromium and chromium-driver, for the reviewer pages' browser test;
#   - Debian's prometheus, which scrapes the gateway in the metrics test.
# Safe to run again: it only reinstalls what changed. Needs Node >= 18, npm,
# Python >= 3.10 with venv; installs them with apt-get when missing and run as root.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
# PostgreSQL (the replicas' store) and nginx (their load balancer), from the
# distribution; the tests start private instances on loopback ports.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)   # certificates for the PostgreSQL TLS test
# Prometheus, which scrapes the gateway's /metrics in the metrics test.
command -v prometheus >/dev/null 2>&1 || need_apt+=(prometheus)
# Say what will be installed, and where, before anything is.
echo "setup-test-deps: will install, if missing or changed:" >&2
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "  - system packages (apt-get, --no-install-recommends): ${need_apt[*]}" >&2
fi
echo "  - npm packages into tests/support/node/node_modules (pinned by its package-lock.json)" >&2
echo "  - the Python MCP client into .venv (tests/support/python/requirements.txt)" >&2
echo "  (scripts/fuzz.sh, which .ci/run does not run, installs cargo-afl into ~/.cargo/bin on first use)" >&2
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup-test-deps: installing ${need_apt[*]} with apt-get" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
    # Installing them may start system-wide services; the tests need only
    # the binaries (they start private instances), so stop what we started.
    for svc in postgresql nginx prometheus prometheus-node-exporter; do
      case " ${need_apt[*]} " in *" $svc"*) service "$svc" stop >/dev/null 2>&1 || true ;; esac
    done
  else
    echo "setup-test-deps: please install: ${need_apt[*]}" >&2
    exit 1
  fi
fi

node_dir=tests/support/node
if [ ! -f "$node_dir/node_modules/.package-lock.json" ] || ! cmp -s "$node_dir/package-lock.json" "$node_dir/.installed-lock.json"; then
  echo "setup-test-deps: npm ci in $node_dir" >&2
  (cd "$node_dir" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$node_dir/package-lock.json" "$node_dir/.installed-lock.json"
fi

req=tests/support/python/requirements.txt
if [ ! -x .venv/bin/python ] || ! cmp -s "$req" .venv/.installed-requirements.txt; then
  echo "setup-test-deps: Python client into .venv" >&2
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r "$req"
  cp "$req" .venv/.installed-requirements.txt
fi
echo "setup-test-deps: ok (node $(node --version), $(.venv/bin/python -c 'import importlib.metadata as m; print("mcp", m.version("mcp"))'), $(chromium --version 2>/dev/null | head -1))" >&2
