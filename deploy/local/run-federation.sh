#!/usr/bin/env bash
# Runs a three-zone development federation as three real ftz-node processes on 127.0.0.1.
#
#   deploy/local/run-federation.sh [DIR]      (default DIR: ./local-federation)
#
# Builds the binaries, creates the PKI, keys, configs and registry in DIR (once), starts the
# nodes in the background, waits until each answers its admin, and prints how to use and stop
# them. Logs go to DIR/<zone>/node.log.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=${1:-local-federation}
zones=(shanghai hainan guangdong)

cargo build --release -q -p ftz-node -p ftzctl
bin=target/release

if [ ! -f "$dir/registry.bin" ]; then
    "$bin/ftzctl" dev init --zones "$(IFS=,; echo "${zones[*]}")" --out "$dir" --base-port 7443 > /dev/null
fi

for z in "${zones[@]}"; do
    if [ -f "$dir/$z/node.pid" ] && kill -0 "$(cat "$dir/$z/node.pid")" 2>/dev/null; then
        echo "$z: already running (pid $(cat "$dir/$z/node.pid"))"
        continue
    fi
    "$bin/ftz-node" --config "$dir/$z/node.toml" >> "$dir/$z/node.log" 2>&1 &
    echo $! > "$dir/$z/node.pid"
done

for z in "${zones[@]}"; do
    for _ in $(seq 1 100); do
        if "$bin/ftzctl" --as "$dir/$z/users/admin.toml" --timeout 2 admin status > /dev/null 2>&1; then
            echo "$z: serving (pid $(cat "$dir/$z/node.pid"), log $dir/$z/node.log)"
            continue 2
        fi
        sleep 0.1
    done
    echo "$z: did not come up; see $dir/$z/node.log" >&2
    exit 1
done

cat <<MSG

Try:
  $bin/ftzctl --as $dir/shanghai/users/admin.toml admin ping hainan
  $bin/ftzctl --as $dir/hainan/users/enterprise.toml zones
Stop (graceful, SIGTERM):
  kill \$(cat $dir/*/node.pid)
MSG
