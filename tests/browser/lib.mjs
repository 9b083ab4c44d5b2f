// What the tests share: the running federation (from federation.mjs), browser contexts that
// present a zone user's client certificate, and full-page screenshots under target/browser/.

import { join } from "node:path";
import { outDir } from "./federation.mjs";

/** The ready line of `ftzctl demo --serve --json`. */
export function federation() {
  const raw = process.env.FTZ_FEDERATION;
  if (!raw) throw new Error("FTZ_FEDERATION is not set: run the tests through playwright.config.mjs (tests/browser/run.sh)");
  return JSON.parse(raw);
}

/** One zone of the federation: its console address, CA and users' certificate files. */
export function zone(id) {
  const z = federation().zones.find((z) => z.zone === id);
  if (!z) throw new Error(`no zone ${id} in the federation`);
  return z;
}

/** `https://127.0.0.1:PORT`, the origin a client certificate is presented to. */
export function origin(z) {
  return new URL(z.console).origin;
}

/** A URL of the zone's console. */
export function url(z, path) {
  return new URL(path, z.console).toString();
}

/**
 * A browser context presenting the certificate of `z`'s development user with `role` (its
 * PKCS#12 file and password, as a person imports it), or none when `role` is null.
 */
export async function userContext(browser, z, role, options = {}) {
  const clientCertificates = role
    ? [{ origin: origin(z), pfxPath: z.users[role].p12, passphrase: z.users[role].password }]
    : [];
  return browser.newContext({ ignoreHTTPSErrors: true, clientCertificates, ...options });
}

/** A full-page screenshot, target/browser/<name>.png. */
export async function shot(page, name) {
  await page.screenshot({ path: join(outDir, `${name}.png`), fullPage: true });
}
