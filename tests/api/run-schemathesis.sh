#!/usr/bin/env bash
# Property-based tests of the JSON API (tests/api/run_schemathesis.py): installs the pinned
# schemathesis (tests/api/requirements.txt) into a virtual environment under target/, builds the
# debug ftzctl, and runs the tests against `ftzctl demo --serve`. Needs only Python 3 and pip.
# Extra arguments go to run_schemathesis.py (--help lists them).
set -euo pipefail
cd "$(dirname "$0")/../.."

venv="$PWD/target/api-venv"
req=tests/api/requirements.txt
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$req" "$venv/requirements.txt"; then
    rm -rf "$venv"
    if python3 -m venv "$venv" 2>/dev/null; then
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
        cp "$req" "$venv/requirements.txt"
    else
        # No venv module (Debian without python3-venv): install for this user instead.
        rm -rf "$venv"
        echo "python3 -m venv is not available: installing $req with pip --user"
        python3 -m pip install --quiet --disable-pip-version-check --user -r "$req"
    fi
fi
if [ -x "$venv/bin/python" ]; then
    py="$venv/bin/python"
    schemathesis="$venv/bin/schemathesis"
else
    py=python3
    schemathesis="$(python3 -m site --user-base)/bin/schemathesis"
fi
if [ ! -x "$schemathesis" ]; then
    echo "schemathesis is not installed (pip install -r $req)"; exit 1
fi
"$schemathesis" --version

cargo build --locked -q -p ftzctl
exec "$py" tests/api/run_schemathesis.py --schemathesis "$schemathesis" "$@"
