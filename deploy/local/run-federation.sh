#!/usr/bin/env bash
# Runs a three-zone development federation as three real ftz-node processes on 127.0.0.1.
#
#   deploy/local/run-federation.sh [--build] [DIR]     (default DIR: local-federation in the repository)
#
# Uses target/release/ftzctl and target/release/ftz-node of the repository, and builds them
# (`cargo build --release`) only when one is missing or older than a source file, or when
# --build is given. Creates the PKI, keys, configs and registry in DIR once (`ftzctl dev init`
# on ports 7543-7545, HTTPS 8543-8545: not `dev init`'s default 7443, so that both can run side
# by side; a DIR that `dev init` already created keeps its own ports), starts the nodes that do
# not already answer, in the background, waits until each answers its admin, and prints how to
# use and stop them, with absolute paths. Logs go to DIR/<zone>/node.log.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=no
if [ "${1:-}" = "--build" ]; then
    build=yes
    shift
fi
dir=${1:-$root/local-federation}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
zones=(shanghai hainan guangdong)
bin=$root/target/release

for b in ftzctl ftz-node; do
    if [ ! -x "$bin/$b" ]; then
        build=yes
    elif [ -d "$root/crates" ] && [ -n "$(find "$root/crates" "$root/proto" "$root/Cargo.lock" -newer "$bin/$b" \
        \( -name '*.rs' -o -name '*.proto' -o -name 'Cargo.toml' -o -name 'Cargo.lock' \) -print -quit 2>/dev/null)" ]; then
        build=yes
    fi
done
if [ "$build" = yes ]; then
    echo "building $bin/ftzctl and $bin/ftz-node (cargo build --release)"
    (cd "$root" && cargo build --release -q -p ftz-node -p ftzctl)
fi

if [ ! -f "$dir/registry.bin" ]; then
    "$bin/ftzctl" dev init --zones "$(IFS=,; echo "${zones[*]}")" --out "$dir" --base-port 7543 > /dev/null
fi

serving() {
    "$bin/ftzctl" --as "$dir/$1/users/admin.toml" --timeout 2 admin status > /dev/null 2>&1
}

for z in "${zones[@]}"; do
    if serving "$z"; then
        echo "$z: already serving"
        continue
    fi
    "$bin/ftz-node" --config "$dir/$z/node.toml" >> "$dir/$z/node.log" 2>&1 &
    echo $! > "$dir/$z/node.pid"
done

for z in "${zones[@]}"; do
    for _ in $(seq 1 150); do
        if serving "$z"; then
            pid=$(cat "$dir/$z/node.pid" 2>/dev/null || echo "?")
            echo "$z: serving (pid $pid, log $dir/$z/node.log)"
            continue 2
        fi
        sleep 0.2
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
