// Browser tests of the web console and the JSON API, in Debian's Chromium (/usr/bin/chromium),
// against the federation `ftzctl demo --serve` keeps running (federation.mjs). Run with
// tests/browser/run.sh; screenshots and reports go to target/browser/.

import { defineConfig } from "@playwright/test";
import { join } from "node:path";
import { outDir } from "./federation.mjs";

export default defineConfig({
  testDir: ".",
  testMatch: /.*\.spec\.mjs$/,
  globalSetup: "./federation.mjs",
  outputDir: join(outDir, "test-results"),
  // Two cores, three nodes in the same run: one browser at a time.
  workers: 1,
  fullyParallel: false,
  forbidOnly: true,
  retries: 0,
  timeout: 60_000,
  expect: { timeout: 15_000 },
  reporter: [["list"], ["junit", { outputFile: join(outDir, "junit.xml") }]],
  use: {
    browserName: "chromium",
    headless: true,
    // The nodes' certificates are issued by each zone's own CA, for 127.0.0.1: the browser does
    // not know that CA (README: "Using the console from a browser").
    ignoreHTTPSErrors: true,
    // Playwright starts Chromium with a new, empty profile (--user-data-dir in a fresh
    // temporary directory) for each launch.
    launchOptions: {
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
    trace: "retain-on-failure",
  },
});
