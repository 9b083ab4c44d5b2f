// Playwright's global setup: starts `ftzctl --json demo --serve` (the demo's three-zone
// federation, left running with everything the demo made), waits for its one ready line and
// hands it to the tests in FTZ_FEDERATION; the function it returns (global teardown) stops the
// federation with SIGINT, as Ctrl-C, and waits for it to exit.

import { spawn } from "node:child_process";
import { createWriteStream, existsSync, mkdirSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
export const root = resolve(here, "..", "..");
export const outDir = join(root, "target", "browser");

const READY_TIMEOUT_MS = Number(process.env.FTZ_READY_TIMEOUT_MS || 300_000);

export default async function globalSetup() {
  const ftzctl = process.env.FTZCTL || join(root, "target", "debug", "ftzctl");
  if (!existsSync(ftzctl)) {
    throw new Error(`${ftzctl} is missing: build it first (cargo build -p ftzctl --locked)`);
  }
  mkdirSync(outDir, { recursive: true });
  const log = createWriteStream(join(outDir, "demo.log"));
  const child = spawn(ftzctl, ["--json", "demo", "--serve"], { stdio: ["ignore", "pipe", "pipe"] });
  child.stderr.pipe(log);

  const ready = await new Promise((ok, fail) => {
    let buf = "";
    const timer = setTimeout(() => fail(new Error(`no ready line from ftzctl demo --serve within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
    const onData = (chunk) => {
      buf += chunk.toString("utf8");
      const nl = buf.indexOf("\n");
      if (nl < 0) return;
      clearTimeout(timer);
      child.stdout.off("data", onData);
      // Anything after the ready line would be a bug (the line is the whole output); keep reading so the pipe never fills.
      child.stdout.on("data", () => {});
      try {
        ok(JSON.parse(buf.slice(0, nl)));
      } catch (e) {
        fail(new Error(`the first line of ftzctl demo --serve is not JSON: ${buf.slice(0, 200)}`));
      }
    };
    child.stdout.on("data", onData);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      fail(new Error(`ftzctl demo --serve exited (${code ?? signal}) before it was ready; see ${join(outDir, "demo.log")}`));
    });
  });
  if (!ready.ready) throw new Error(`unexpected ready line: ${JSON.stringify(ready).slice(0, 200)}`);
  if (!ready.passed) console.warn(`the demo's checks did not all pass: ${ready.failed.join("; ")}`);
  writeFileSync(join(outDir, "federation.json"), JSON.stringify(ready, null, 2));
  process.env.FTZ_FEDERATION = JSON.stringify(ready);
  console.log(`federation ready: ${ready.zones.map((z) => `${z.zone} ${z.console}`).join(", ")}`);

  return async function globalTeardown() {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((ok) => child.once("exit", (code, signal) => ok(code ?? signal)));
    child.kill("SIGINT");
    const timeout = new Promise((ok) => setTimeout(() => ok("timeout"), 30_000));
    let how = await Promise.race([exited, timeout]);
    if (how === "timeout") {
      console.warn("the federation did not stop within 30 s of SIGINT: killed");
      child.kill("SIGKILL");
      how = await exited;
    }
    log.end();
    console.log(`federation stopped (${how})`);
    if (how !== 0) process.exitCode = 1;
  };
}
