#!/usr/bin/env bash
# Runs every interop trial of wsedge with real peers from other ecosystems:
# headless Chromium, Socket.IO v4, Node.js `ws` with permessage-deflate,
# wscat, curl and Python's websockets. Installs what it needs (npm packages
# into this directory; Debian's chromium, curl and python3-websockets when
# missing), builds wsedge from this checkout unless WSEDGE_BIN names a
# binary, and exits non-zero if any trial fails.
#
#   bash testdata/interop/run.sh            # all trials
#   bash testdata/interop/run.sh ws.js      # some of them
#
# Only loopback addresses are used (127.0.1.x .. 127.0.4.x); see README.md.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
	echo "run.sh: node and npm are needed (Node.js 18 or later)" >&2
	exit 1
fi

if [[ ! -x /usr/bin/chromium ]]; then
	echo "run.sh: installing Debian's chromium"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || {
		echo "run.sh: could not install chromium" >&2
		exit 1
	}
fi
if ! command -v curl >/dev/null || ! /usr/bin/python3 -c 'import websockets' 2>/dev/null; then
	echo "run.sh: installing curl and python3-websockets"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl python3-websockets >/dev/null || {
		echo "run.sh: could not install curl and python3-websockets" >&2
		exit 1
	}
fi

# playwright-core never downloads a browser; the variable makes sure no
# other package tries either.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if [[ ! -d node_modules ]] || [[ package-lock.json -nt node_modules ]] || [[ package.json -nt node_modules ]]; then
	npm ci --no-audit --no-fund --loglevel=error || exit 1
	touch node_modules
fi

if [[ -z "${WSEDGE_BIN:-}" ]]; then
	WSEDGE_BIN="$(mktemp -d)/wsedge"
	(cd "$root" && go build -o "$WSEDGE_BIN" ./cmd/wsedge) || {
		echo "run.sh: go build ./cmd/wsedge failed" >&2
		exit 1
	}
fi
export WSEDGE_BIN
echo "wsedge: $("$WSEDGE_BIN" version)"
echo "node: $(node --version)   chromium: $(/usr/bin/chromium --version 2>/dev/null | head -n1)"

trials=("$@")
if [[ ${#trials[@]} -eq 0 ]]; then
	trials=(browser.js browser-socketio.js socketio.js ws.js everyday.js)
fi

passed=0
failed=0
failures=()
for t in "${trials[@]}"; do
	echo
	echo "=== $t"
	if timeout 300 node "$t"; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		failures+=("$t")
	fi
done

echo
if [[ $failed -gt 0 ]]; then
	echo "failed trials: ${failures[*]}"
fi
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
