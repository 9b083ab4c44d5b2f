#!/usr/bin/env bash
# step: Debian package ftz-exchange (cargo-deb): lintian clean, installs with dpkg -i, ftz-node --check passes as the package's user, removes and purges cleanly
set -euo pipefail

# The packaging tool (cargo-deb, pinned in .ci/run) and lintian (Debian 12's) come from .ci/run.
PKG=ftz-exchange
USER_NAME=ftz-exchange
CONF=/etc/ftz-exchange
STATE=/var/lib/ftz-exchange

[ "$(id -u)" = 0 ] || { echo "this step installs a package: run it as root (CI does)"; exit 1; }

say() { printf -- '-- %s\n' "$*"; }
fail() { echo "FAIL: $*"; exit 1; }

# --- tools (installed by .ci/run) ----------------------------------------------------------------
cargo deb --version >/dev/null 2>&1 || fail "cargo-deb is needed: .ci/run installs it (cargo install cargo-deb --locked)"
for tool in lintian adduser readelf; do
    command -v "$tool" >/dev/null || fail "$tool is needed: apt-get install lintian adduser binutils"
done

if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q 'ok installed'; then
    fail "$PKG is installed on this machine already; this step installs and purges it (dpkg -P $PKG first)"
fi
for d in "$CONF" "$STATE"; do
    [ ! -e "$d" ] || fail "$d exists without the package; this step would purge it (remove it first)"
done

work=$(mktemp -d)
node_pid=
cleanup() {
    [ -z "$node_pid" ] || kill "$node_pid" 2>/dev/null || true
    if dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q 'installed'; then
        dpkg -P "$PKG" >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# --- build -------------------------------------------------------------------------------------
say "release build of ftz-node and ftzctl"
cargo build -q --release --locked -p ftz-node -p ftzctl
say "cargo deb -p ftz-node --no-build"
deb=$(cargo deb -p ftz-node --no-build --output "$work/" | tail -1)
[ -f "$deb" ] || fail "cargo deb printed no package path (got: $deb)"
echo "$deb"
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
dpkg-deb --contents "$deb"

# --- lintian -----------------------------------------------------------------------------------
# Errors and warnings fail; every override is in deploy/debian/lintian-overrides with its reason.
say "lintian (errors and warnings fail; overrides: deploy/debian/lintian-overrides)"
lintian --fail-on error,warning --display-info "$deb"
echo "ok: lintian"

# --- install -----------------------------------------------------------------------------------
say "dpkg -i"
dpkg -i "$deb"
for bin in /usr/bin/ftz-node /usr/bin/ftzctl; do
    [ -x "$bin" ] || fail "$bin missing"
    if readelf -S "$bin" | grep -q '\.symtab'; then fail "$bin is not stripped"; fi
done
/usr/bin/ftz-node --version
/usr/bin/ftzctl --version

getent passwd "$USER_NAME" >/dev/null || fail "no user $USER_NAME"
IFS=: read -r _ _ uid _ _ home shell < <(getent passwd "$USER_NAME")
[ "$uid" -lt 1000 ] || fail "$USER_NAME is not a system user (uid $uid)"
[ "$home" = "$STATE" ] || fail "$USER_NAME's home is $home"
[ "$shell" = /usr/sbin/nologin ] || fail "$USER_NAME's shell is $shell"
getent group "$USER_NAME" >/dev/null || fail "no group $USER_NAME"
[ "$(stat -c '%U:%G %a' "$CONF")" = "root:$USER_NAME 750" ] || fail "$CONF is $(stat -c '%U:%G %a' "$CONF")"
[ "$(stat -c '%U:%G %a' "$STATE")" = "$USER_NAME:$USER_NAME 700" ] || fail "$STATE is $(stat -c '%U:%G %a' "$STATE")"
echo "ok: user $USER_NAME (uid $uid), $CONF root:$USER_NAME 0750, $STATE $USER_NAME 0700"

unit=$(dpkg -L "$PKG" | grep -E '/systemd/system/ftz-node\.service$') || fail "no ftz-node.service in the package"
grep -qx 'ConditionPathExists=/etc/ftz-exchange/node.toml' "$unit" || fail "$unit starts without a config"
grep -qx 'ExecStart=/usr/bin/ftz-node --config /etc/ftz-exchange/node.toml' "$unit" || fail "$unit: ExecStart"
if command -v systemd-analyze >/dev/null; then
    # Offline: parses the unit and checks its directives and ExecStart's binary.
    systemd-analyze verify "$unit"
    echo "ok: systemd-analyze verify $unit"
else
    echo "note: systemd-analyze not installed (no systemd here): $unit only checked with grep"
fi
[ -f /usr/share/doc/$PKG/examples/node.toml ] || fail "no example config"
[ -f /usr/share/doc/$PKG/copyright ] || fail "no copyright"
[ -f /usr/share/doc/$PKG/changelog.Debian.gz ] || fail "no changelog"
[ ! -e "$CONF/node.toml" ] || fail "the package installed a node.toml (nothing may start by itself)"

say "dpkg -i again (maintainer scripts are idempotent)"
dpkg -i "$deb" >/dev/null
[ "$(stat -c '%U:%G %a' "$STATE")" = "$USER_NAME:$USER_NAME 700" ] || fail "reinstall changed $STATE"

# --- a real config: one zone of a dev federation -----------------------------------------------
say "ftzctl dev init, zone shanghai's files into $CONF"
base=$((20000 + RANDOM % 20000))
/usr/bin/ftzctl dev init --out "$work/fed" --base-port "$base" >/dev/null
z="$work/fed/shanghai"
install -o root -g "$USER_NAME" -m 0640 "$z/node.crt" "$work/fed/registry.bin" "$CONF/"
install -o "$USER_NAME" -g "$USER_NAME" -m 0600 "$z/node.key" "$z/node-signing.key" "$z/issuing.key" "$CONF/"
sed -e "s|^data_dir = .*|data_dir = \"$STATE\"|" \
    -e 's|^file = .*registry.bin"|file = "registry.bin"|' \
    -e 's|^drain_ms = .*|drain_ms = 200|' \
    "$z/node.toml" >"$work/node.toml"
grep -q "^data_dir = \"$STATE\"" "$work/node.toml" || fail "data_dir not set in node.toml"
grep -q '^file = "registry.bin"' "$work/node.toml" || fail "registry.file not set in node.toml"
install -o root -g "$USER_NAME" -m 0640 "$work/node.toml" "$CONF/node.toml"
ls -l "$CONF"

say "ftz-node --check as $USER_NAME"
runuser -u "$USER_NAME" -- /usr/bin/ftz-node --config "$CONF/node.toml" --check
echo "ok: --check"

say "a key its group can read is refused (the check is not vacuous)"
chmod 0640 "$CONF/node-signing.key"
if out=$(runuser -u "$USER_NAME" -- /usr/bin/ftz-node --config "$CONF/node.toml" --check 2>&1); then
    echo "$out"; fail "--check passed with a group-readable key"
fi
echo "$out" | grep -q 'readable by group' || { echo "$out"; fail "unexpected refusal"; }
chmod 0600 "$CONF/node-signing.key"
echo "ok: refused: $(echo "$out" | tail -1)"

say "the node serves as $USER_NAME with its store in $STATE, and stops on SIGTERM"
ops=$(sed -n '/^\[ops\]/,/^\[/s/^listen = "\(.*\)"/\1/p' "$CONF/node.toml")
[ -n "$ops" ] || fail "no [ops] listen in dev init's node.toml"
# setpriv execs the node itself (runuser would stay its parent and stand between it and SIGTERM).
setpriv --reuid="$USER_NAME" --regid="$USER_NAME" --init-groups -- \
    /usr/bin/ftz-node --config "$CONF/node.toml" >"$work/node.out" 2>"$work/node.err" &
node_pid=$!
for _ in $(seq 1 100); do
    grep -q 'listening on' "$work/node.out" 2>/dev/null && break
    kill -0 "$node_pid" 2>/dev/null || { cat "$work/node.err"; fail "ftz-node exited"; }
    sleep 0.1
done
grep -q 'listening on' "$work/node.out" || { cat "$work/node.err"; fail "ftz-node did not report listening"; }
python3 - "$ops" <<'PY'
import sys, time, urllib.request
url = f"http://{sys.argv[1]}/healthz"
for _ in range(50):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                print(f"ok: {url} answers 200")
                sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(f"{url} does not answer")
PY
kill -TERM "$node_pid"
rc=0; wait "$node_pid" || rc=$?
[ "$rc" = 0 ] || { cat "$work/node.err"; fail "ftz-node exited with $rc on SIGTERM"; }
node_pid=
[ -n "$(find "$STATE" -mindepth 1 -maxdepth 1 -print -quit)" ] || fail "the node wrote no store in $STATE"
bad=$(find "$STATE" ! -user "$USER_NAME" -print -quit)
[ -z "$bad" ] || fail "$bad in the store is not owned by $USER_NAME"
echo "ok: store in $STATE, owned by $USER_NAME"

# --- remove, purge -----------------------------------------------------------------------------
say "dpkg -r: programs and unit go, config and store stay"
dpkg -r "$PKG" >/dev/null
for f in /usr/bin/ftz-node /usr/bin/ftzctl "$unit"; do [ ! -e "$f" ] || fail "$f left after dpkg -r"; done
[ -f "$CONF/node.toml" ] && [ -f "$CONF/node-signing.key" ] || fail "dpkg -r removed the config"
[ -n "$(find "$STATE" -mindepth 1 -print -quit)" ] || fail "dpkg -r removed the store"
echo "ok"

say "dpkg -P: config and store deleted, the system user stays (Debian's practice)"
dpkg -P "$PKG" >/dev/null
[ ! -e "$CONF" ] || fail "$CONF left after purge"
[ ! -e "$STATE" ] || fail "$STATE left after purge"
! dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q installed || fail "$PKG still known to dpkg"
left=$(find /usr /etc /var/lib \( -name 'ftz-node*' -o -name "$PKG*" \) -print 2>/dev/null \
    | grep -v '^/var/lib/dpkg/' || true)
[ -z "$left" ] || fail "left after purge: $left"
getent passwd "$USER_NAME" >/dev/null || fail "purge removed the user (Debian leaves system users)"
echo "ok: clean"
