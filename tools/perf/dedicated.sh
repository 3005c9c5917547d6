#!/bin/sh
# run.sh --extra-cmd mediaedge-ded=tools/perf/dedicated.sh: a port per session.
MEDIAEDGE_PORT_MODE=dedicated exec "$(dirname "$0")/callback.py" "$@"
