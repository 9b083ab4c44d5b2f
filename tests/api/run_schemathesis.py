#!/usr/bin/env python3
"""Property-based tests of the JSON API with schemathesis, as each role sees it.

Starts `ftzctl --json demo --serve` (the demo's federation, left running with everything the
demo made), waits for its one ready line, fetches /api/v1/openapi.json with a user certificate
(the document is served to authenticated callers only: checked too), then runs schemathesis
against shanghai's node once per role (admin, auditor, enterprise, issuer), each with that
user's client certificate and the zone CA as the only trusted authority. Checks: no answer is a
server error (5xx), every answer matches the schema of its status (the 200 schema, or the
problem details of a refusal). Then the federation is stopped (SIGINT, as Ctrl-C).

Run by tests/api/run-schemathesis.sh (which installs the pinned schemathesis); exits non-zero
on any failure. Reports (JUnit, NDJSON events) go to target/schemathesis/<role>/.
"""

import argparse
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
ROLES = ["admin", "auditor", "enterprise", "issuer"]


def log(msg):
    print(msg, flush=True)


class Federation:
    """`ftzctl --json demo --serve` as a child process; `ready` is its ready line, parsed."""

    def __init__(self, ftzctl, log_path, timeout):
        self.log_file = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [str(ftzctl), "--json", "demo", "--serve"],
            stdout=subprocess.PIPE,
            stderr=self.log_file,
            stdin=subprocess.DEVNULL,
        )
        self.ready = self._read_ready(timeout)

    def _read_ready(self, timeout):
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"no ready line from ftzctl demo --serve within {timeout} s")
            if not sel.select(left):
                continue
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                raise RuntimeError(f"ftzctl demo --serve exited ({self.proc.wait()}) before it was ready")
            line += chunk
        doc = json.loads(line)
        if not doc.get("ready"):
            raise RuntimeError(f"unexpected first line: {line[:200]!r}")
        return doc

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log("  the federation did not stop within 30 s of SIGINT: killed")
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()
        return self.proc.returncode


def fetch_openapi(zone, out):
    """The API description, with the admin's certificate; and refused without one."""
    ca = zone["ca"]
    admin = zone["users"]["admin"]
    url = zone["openapi"]
    r = requests.get(url, cert=(admin["cert"], admin["key"]), verify=ca, timeout=30)
    r.raise_for_status()
    doc = r.json()
    if doc.get("openapi") != "3.1.0":
        raise RuntimeError(f"{url}: not OpenAPI 3.1.0: {doc.get('openapi')!r}")
    out.write_bytes(r.content)
    anon = requests.get(url, verify=ca, timeout=30)
    ctype = anon.headers.get("content-type", "")
    if anon.status_code not in (401, 403) or not ctype.startswith("application/problem+json"):
        raise RuntimeError(f"{url} without a certificate: {anon.status_code} {ctype}, expected a refusal")
    log(f"  {url}: OpenAPI {doc['openapi']}, {len(doc.get('paths', {}))} paths; "
        f"without a certificate: {anon.status_code} {anon.json().get('reason')}")
    return doc


def run_role(schemathesis, spec, zone, role, args, report_dir):
    user = zone["users"][role]
    report_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(schemathesis), "run", str(spec),
        "--url", zone["console"].rstrip("/"),
        "--request-cert", user["cert"],
        "--request-cert-key", user["key"],
        "--tls-verify", zone["ca"],
        "--checks", "not_a_server_error,response_schema_conformance",
        "--max-examples", str(args.max_examples),
        "--request-timeout", "30",
        "--generation-database", "none",
        "--no-color",
        "--report", "junit,ndjson",
        "--report-dir", str(report_dir),
    ]
    if args.seed is not None:
        cmd += ["--seed", str(args.seed)]
    log(f"\n-- {role}: schemathesis against {zone['console']} as ftz://{zone['zone']}/{role}/dev")
    start = time.monotonic()
    try:
        rc = subprocess.run(cmd, cwd=report_dir, timeout=args.role_timeout, stdin=subprocess.DEVNULL).returncode
    except subprocess.TimeoutExpired:
        log(f"-- {role}: FAILED: over {args.role_timeout} s")
        return False
    took = time.monotonic() - start
    log(f"-- {role}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {took:.0f} s")
    return rc == 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ftzctl", default=str(ROOT / "target" / "debug" / "ftzctl"))
    p.add_argument("--schemathesis", default=str(Path(sys.executable).parent / "schemathesis"))
    p.add_argument("--zone", default="shanghai")
    p.add_argument("--roles", default=",".join(ROLES))
    p.add_argument("--max-examples", type=int, default=int(os.environ.get("FTZ_SCHEMATHESIS_EXAMPLES", "20")))
    p.add_argument("--seed", type=int, default=os.environ.get("FTZ_SCHEMATHESIS_SEED"))
    p.add_argument("--role-timeout", type=int, default=300, help="seconds for one role's run")
    p.add_argument("--ready-timeout", type=int, default=300, help="seconds for the demo to be ready")
    p.add_argument("--out", default=str(ROOT / "target" / "schemathesis"))
    args = p.parse_args()

    # Absolute: schemathesis runs in its report directory.
    args.ftzctl = str(Path(args.ftzctl).resolve())
    args.schemathesis = str(Path(args.schemathesis).resolve())
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    for need in (args.ftzctl, args.schemathesis):
        if not Path(need).is_file():
            sys.exit(f"missing {need}: build ftzctl (cargo build -p ftzctl --locked) and install "
                     "tests/api/requirements.txt (tests/api/run-schemathesis.sh does both)")

    started = time.monotonic()
    log(f"starting {args.ftzctl} --json demo --serve (its log: {out / 'demo.log'})")
    fed = Federation(args.ftzctl, out / "demo.log", args.ready_timeout)
    results = {}
    try:
        ready = fed.ready
        log(f"  ready after {time.monotonic() - started:.0f} s; demo checks "
            f"{'all passed' if ready['passed'] else 'FAILED: ' + ', '.join(ready['failed'])}; files in {ready['dir']}")
        zone = next((z for z in ready["zones"] if z["zone"] == args.zone), None)
        if zone is None:
            sys.exit(f"no zone {args.zone} in the federation")
        spec = out / "openapi.json"
        fetch_openapi(zone, spec)
        for role in args.roles.split(","):
            results[role] = run_role(args.schemathesis, spec, zone, role, args, out / role)
    finally:
        rc = fed.stop()
        log(f"\nfederation stopped (exit {rc})")
    failed = [r for r, ok in results.items() if not ok]
    log(f"{time.monotonic() - started:.0f} s in all; reports in {out}")
    log(f"schemathesis: {len(results) - len(failed)} passed, {len(failed)} failed")
    if failed or rc != 0:
        sys.exit(1)


if __name__ == "__main__":
    main()
