#!/usr/bin/env bash
# Browser tests (Playwright, Debian's Chromium) of the web console and the JSON API against the
# federation `ftzctl demo --serve` keeps running. Needs /usr/bin/chromium (apt-get install
# chromium) and this folder's node modules (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci): .ci/run
# installs both. Screenshots and reports go to target/browser/. Extra arguments go to
# `playwright test` (a file name, -g PATTERN, ...).
set -euo pipefail
cd "$(dirname "$0")/../.."

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
    echo "browser tests: $chromium is missing; install Debian's Chromium: apt-get install -y chromium" >&2
    exit 1
fi
if [ ! -f tests/browser/node_modules/@playwright/test/package.json ]; then
    echo "browser tests: Playwright is not installed; run: (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci)" >&2
    exit 1
fi
"$chromium" --version

cargo build --locked -q -p ftzctl
mkdir -p target/browser
rm -f target/browser/*.png
cd tests/browser
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 exec node_modules/.bin/playwright test "$@"
