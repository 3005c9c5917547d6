#!/bin/sh
# run.sh --extra-cmd mediaedge-sh=gateway/perf/shared.sh: one port per worker and leg.
MEDIAEDGE_PORT_MODE=shared exec "$(dirname "$0")/callback.py" "$@"
