#!/usr/bin/env bash
# Checks the systemd files: `systemd-analyze verify` must print nothing and
# `systemd-analyze security --offline=true` must score 2.0 or lower.
# Usage: systemd/check-units.sh [BINARY]  (default: bin/mediaedge)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$(realpath "${1:-$here/../bin/mediaedge}")"
max_exposure="${MAX_EXPOSURE:-2.0}"
command -v systemd-analyze >/dev/null || { echo "systemd-analyze not found (apt-get install systemd)" >&2; exit 1; }
[ -x "$bin" ] || { echo "$bin not built (make build)" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# verify checks that ExecStart= exists: point the unit at the built binary.
sed "s|@BINDIR@|$(dirname "$bin")|g" "$here/mediaedge.service.in" > "$tmp/mediaedge.service"

out="$(systemd-analyze verify "$tmp/mediaedge.service" 2>&1)" || true
if [ -n "$out" ]; then
	echo "systemd-analyze verify reported:" >&2
	echo "$out" >&2
	exit 1
fi
echo "verify: clean"

report="$(systemd-analyze security --offline=true "$tmp/mediaedge.service" 2>&1)"
score="$(printf '%s\n' "$report" | sed -n 's/.*Overall exposure level for mediaedge.service: \([0-9.]*\).*/\1/p')"
[ -n "$score" ] || { echo "could not read the exposure score:" >&2; echo "$report" >&2; exit 1; }
if awk -v s="$score" -v m="$max_exposure" 'BEGIN { exit !(s > m) }'; then
	printf '%s\n' "$report" | grep '✗' >&2 || true
	echo "exposure $score is above $max_exposure" >&2
	exit 1
fi
echo "security: exposure $score (limit $max_exposure)"

# The other files must at least parse.
grep -q '^u mediaedge ' "$here/mediaedge.sysusers"
while read -r key _ value; do
	case "$key" in ''|'#'*) continue;; esac
	[ -e "/proc/sys/${key//.//}" ] || { echo "sysctl $key does not exist on this kernel" >&2; exit 1; }
done < <(sed 's/=/ = /' "$here/mediaedge.sysctl" | awk '{print $1, $2, $3}')
echo "sysusers, tmpfiles, sysctl: OK"
