// The web console in Chromium, each role with its own certificate, against the page contract:
//
// - every page: <html lang> from Accept-Language (zh-CN or en), the language switch
//   a[data-lang="en"|"zh"], nav links a[data-nav="verify"|"lot"|"audit"|"admin"|"issuer"];
// - a refusal: the refusal's HTTP status and section.refusal[data-reason=<reason code>];
// - enterprise: /verify (#verify-form, #verdict with its three parts, #download-bundle,
//   #bundle-file -> #bundle-verdict), /lot (#lot-results);
// - auditor: /audit (#entries, #filters, a#next-page), /audit/entry/N (#proof-check checked in
//   the browser, a tampered proof caught), /audit/charts, /audit/witnesses, /audit/equivocations;
// - admin: /admin (#status, #peers, #registry, #agreements, #policies, #outbox, #budgets),
//   /admin/install (a garbage file refused, with its reason);
// - issuer: /issuer (#issue-form, #revoke-form, #push-form, #import-form: a CSV imported with
//   progress).
//
// The records are the demo's (crates/ftzctl/src/demo.rs and demo/*.rs): SH-AEO-2026-0100 is
// valid and recognised in hainan, SH-AEO-2026-0001 was revoked, guangdong's result for lot
// LOT-850760-0042 was pushed to shanghai. Each page is screenshot to target/browser/<name>.png.

import { expect, test } from "@playwright/test";
import { join } from "node:path";
import { federation, shot, url, userContext, zone } from "./lib.mjs";

const VALID = { zone: "shanghai", id: "SH-AEO-2026-0100" };
const REVOKED = { zone: "shanghai", id: "SH-AEO-2026-0001" };
const LOT = "LOT-850760-0042";

/** What every page carries: its language, the language switch and the navigation. */
async function checkLayout(page, lang) {
  await expect(page.locator("html")).toHaveAttribute("lang", lang);
  await expect(page.locator('a[data-lang="en"]')).toHaveCount(1);
  await expect(page.locator('a[data-lang="zh"]')).toHaveCount(1);
  for (const nav of ["verify", "lot", "audit", "admin", "issuer"]) {
    await expect(page.locator(`a[data-nav="${nav}"]`).first()).toBeVisible();
  }
}

/**
 * Opens an entry page until its proof check has ended in the browser: "unwitnessed" (the
 * latest checkpoint not cosigned yet: the tests' own refusals keep the log growing) is tried
 * again, every state is returned.
 */
async function checkedEntry(page, z, path) {
  for (let i = 0; ; i++) {
    await open(page, z, path);
    const box = page.locator("#proof-check");
    await expect(box).not.toHaveAttribute("data-state", "pending");
    const state = await box.getAttribute("data-state");
    if (state !== "unwitnessed" || i >= 40) return state;
    await page.waitForTimeout(250);
  }
}

/** Opens `path` on zone `z` and checks the answer's status and the layout. */
async function open(page, z, path, { status = 200, lang = "en" } = {}) {
  const res = await page.goto(url(z, path));
  expect(res.status(), `${path}: HTTP status`).toBe(status);
  expect(res.headers()["content-type"]).toMatch(/^text\/html/);
  await checkLayout(page, lang);
  return res;
}

test.describe("every page", () => {
  test("the language follows Accept-Language, and the switch changes it", async ({ browser }) => {
    const z = zone("hainan");
    const zh = await userContext(browser, z, "enterprise", { locale: "zh-CN" });
    const page = await zh.newPage();
    await open(page, z, "/", { lang: "zh-CN" });
    await shot(page, "home-zh");
    await page.locator('a[data-lang="en"]').click();
    await checkLayout(page, "en");
    await zh.close();

    const en = await userContext(browser, z, "enterprise", { locale: "en-US" });
    const p2 = await en.newPage();
    await open(p2, z, "/", { lang: "en" });
    await shot(p2, "home-en");
    await p2.locator('a[data-lang="zh"]').click();
    await checkLayout(p2, "zh-CN");
    await en.close();
  });

  test("a page of another role is a refusal with its reason (enterprise opens /admin)", async ({ browser }) => {
    const z = zone("hainan");
    const context = await userContext(browser, z, "enterprise", { locale: "en-US" });
    const page = await context.newPage();
    await open(page, z, "/admin", { status: 403 });
    // ROLE_NOT_ALLOWED: the reason code (docs/reason-codes.md) of a PERMISSION_DENIED refusal.
    await expect(page.locator('section.refusal[data-reason="ROLE_NOT_ALLOWED"]')).toBeVisible();
    await shot(page, "refusal-enterprise-admin");
    await context.close();
  });
});

test.describe("enterprise", () => {
  test("verifies a record by zone and id: the verdict and its three parts", async ({ browser }) => {
    const z = zone("hainan");
    const context = await userContext(browser, z, "enterprise", { locale: "en-US" });
    const page = await context.newPage();
    await open(page, z, "/verify");
    const form = page.locator("#verify-form");
    await expect(form).toHaveAttribute("method", "get");
    await form.locator('input[name="zone"]').fill(VALID.zone);
    await form.locator('input[name="id"]').fill(VALID.id);
    await Promise.all([page.waitForURL(/\/verify\?/), form.locator('button[type="submit"]').click()]);
    const verdict = page.locator("#verdict");
    await expect(verdict).toHaveAttribute("data-verdict", "VALID");
    for (const part of ["authentic", "current", "recognised"]) {
      await expect(verdict.locator(`[data-part="${part}"]`)).toHaveAttribute("data-ok", "true");
    }
    await shot(page, "enterprise-verify-valid");

    await open(page, z, `/verify?zone=${REVOKED.zone}&id=${REVOKED.id}`);
    await expect(verdict).toHaveAttribute("data-verdict", "NOT_VALID");
    await expect(verdict.locator('[data-part="authentic"]')).toHaveAttribute("data-ok", "true");
    await expect(verdict.locator('[data-part="current"]')).toHaveAttribute("data-ok", "false");
    await shot(page, "enterprise-verify-revoked");
    await context.close();
  });

  test("downloads the record's bundle, and the bundle dropped back is checked offline", async ({ browser }) => {
    const z = zone("hainan");
    const context = await userContext(browser, z, "enterprise", { locale: "en-US", acceptDownloads: true });
    const page = await context.newPage();
    await open(page, z, `/verify?zone=${VALID.zone}&id=${VALID.id}`);
    const [download] = await Promise.all([page.waitForEvent("download"), page.locator("#download-bundle").click()]);
    const bundle = await download.path();
    expect(bundle).toBeTruthy();

    await page.locator("#bundle-file").setInputFiles(bundle);
    await expect(page.locator("#bundle-verdict")).toHaveAttribute("data-verdict", "VALID");
    await shot(page, "enterprise-bundle-valid");

    await page.locator("#bundle-file").setInputFiles({
      name: "garbage.bundle",
      mimeType: "application/octet-stream",
      buffer: Buffer.from("not a bundle at all"),
    });
    await expect(page.locator("#bundle-verdict")).not.toHaveAttribute("data-verdict", "VALID");
    await shot(page, "enterprise-bundle-garbage");
    await context.close();
  });

  test("finds a lot's inspection results", async ({ browser }) => {
    const z = zone("shanghai");
    const context = await userContext(browser, z, "enterprise", { locale: "en-US" });
    const page = await context.newPage();
    await open(page, z, "/lot");
    const form = page.locator("#lot-form");
    await form.locator('input[name="lot"]').fill(LOT);
    await Promise.all([page.waitForURL(/\/lot\?/), form.locator('button[type="submit"]').click()]);
    await expect(page.locator("#lot-results tbody tr").first()).toBeVisible();
    await shot(page, "enterprise-lot");
    await context.close();
  });
});

test.describe("auditor", () => {
  test.beforeAll(async ({ browser }) => {
    // More than a page of the log (50 entries): shanghai's enterprise is refused the admin's
    // status 60 times, each refusal logged.
    const z = zone("shanghai");
    const context = await userContext(browser, z, "enterprise");
    for (let i = 0; i < 60; i++) {
      const res = await context.request.get(url(z, "/api/v1/admin/get-node-status"));
      expect(res.status()).toBe(403);
    }
    await context.close();
  });

  test("pages the log, filters it, and opens an entry", async ({ browser }) => {
    const z = zone("shanghai");
    const context = await userContext(browser, z, "auditor", { locale: "en-US" });
    const page = await context.newPage();
    await open(page, z, "/audit");
    const rows = page.locator("#entries tbody tr");
    await expect(rows.first()).toBeVisible();
    await expect(rows.first().locator('a[href^="/audit/entry/"]')).toHaveCount(1);
    await shot(page, "auditor-log");

    await open(page, z, "/audit?from_index=0");
    await expect(page.locator("a#next-page")).toBeVisible();
    const param = (name, value) => (u) => u.searchParams.get(name) === value;
    await Promise.all([page.waitForURL(param("from_index", "50")), page.locator("a#next-page").click()]);
    await expect(rows.first()).toBeVisible();

    const filters = page.locator("#filters");
    for (const name of ["decision", "zone", "class", "from", "until"]) {
      await expect(filters.locator(`[name="${name}"]`)).toHaveCount(1);
    }
    await filters.locator('[name="decision"]').selectOption("refused");
    await Promise.all([page.waitForURL(param("decision", "refused")), filters.locator('button[type="submit"]').click()]);
    await expect(rows.first()).toBeVisible();
    for (const d of await rows.evaluateAll((trs) => trs.map((tr) => tr.dataset.decision))) {
      expect(d).toBe("refused");
    }
    await shot(page, "auditor-log-refused");

    await Promise.all([page.waitForURL(/\/audit\/entry\/\d+/), rows.first().locator("a").first().click()]);
    await checkLayout(page, "en");
    await expect(page.locator("#proof-check")).toHaveAttribute("data-state", "ok");
    await context.close();
  });

  test("an entry's proof is checked in the browser, and a tampered one fails", async ({ browser }) => {
    const z = zone("shanghai");
    const context = await userContext(browser, z, "auditor", { locale: "en-US" });
    const page = await context.newPage();
    expect(await checkedEntry(page, z, "/audit/entry/0")).toBe("ok");
    await shot(page, "auditor-entry-ok");

    // The same page with one hex digit of the leaf changed on its way to the browser.
    await page.route("**/audit/entry/0*", async (route) => {
      const res = await route.fetch();
      const html = await res.text();
      const tampered = html.replace(
        /(<script[^>]*id="proof-data"[^>]*>[\s\S]*?"leaf_hex":")([0-9a-f])/,
        (_, before, digit) => before + (digit === "0" ? "1" : "0"),
      );
      expect(tampered).not.toBe(html);
      await route.fulfill({ response: res, body: tampered });
    });
    await open(page, z, "/audit/entry/0");
    await expect(page.locator("#proof-check")).toHaveAttribute("data-state", "failed");
    await shot(page, "auditor-entry-tampered");
    await context.close();
  });

  test("with keys the auditor pinned, the node's own keys are not used", async ({ browser }) => {
    const z = zone("shanghai");
    const context = await userContext(browser, z, "auditor", { locale: "en-US" });
    const page = await context.newPage();
    expect(await checkedEntry(page, z, "/audit/entry/0")).toBe("ok");
    const keys = await page.locator("ul.keys code").allTextContents();
    const witnesses = keys.filter((k) => k.includes("/witness+"));
    // Only witness keys pinned: the log's own signature is not among what the auditor trusts.
    await page.locator("#pinned summary").click();
    await page.fill("#pinned-keys", witnesses.join("\n"));
    await page.click("#pinned-save");
    await expect(page.locator("#proof-check")).toHaveAttribute("data-state", "failed");
    await expect(page.locator("#proof-status")).toContainText("no valid signature of the log itself");
    // Every key pinned (as `ftzctl keys show --registry` prints them): checked, and kept.
    await page.fill("#pinned-keys", keys.join("\n"));
    await page.click("#pinned-save");
    await expect(page.locator("#proof-check")).toHaveAttribute("data-state", /^(ok|unwitnessed)$/);
    expect(await checkedEntry(page, z, "/audit/entry/0")).toBe("ok");
    await expect(page.locator("#proof-steps")).toContainText(`with the ${keys.length} key(s) you pinned`);
    await shot(page, "auditor-entry-pinned");
    await context.close();
  });

  test("charts, witnesses, equivocations and the registry history", async ({ browser }) => {
    const z = zone("shanghai");
    const context = await userContext(browser, z, "auditor", { locale: "en-US" });
    const page = await context.newPage();
    await open(page, z, "/audit/charts");
    await expect(page.locator("svg#chart-transfers")).toBeVisible();
    await shot(page, "auditor-charts");
    await open(page, z, "/audit/witnesses");
    await expect(page.locator("table#witness-matrix")).toBeVisible();
    await shot(page, "auditor-witnesses");
    await open(page, z, "/audit/equivocations");
    await expect(page.locator("#equivocations")).toBeVisible();
    await shot(page, "auditor-equivocations");
    await open(page, z, "/audit/registry");
    await expect(page.locator("table#registry-history tbody tr")).toHaveCount(1);
    await shot(page, "auditor-registry");
    await context.close();
  });
});

test.describe("auditor's cross-check", () => {
  test("another zone's export, uploaded as its directory, is compared with this log", async ({ browser }) => {
    // The demo's step 9 exported every zone's log (ftzctl audit export) under DIR/exports.
    const exported = join(federation().dir, "exports", "audit-1", "hainan");
    const z = zone("shanghai");
    const context = await userContext(browser, z, "auditor", { locale: "en-US" });
    const page = await context.newPage();
    await open(page, z, "/audit/cross-check");
    await page.setInputFiles("#cross-check-files", exported);
    await page.click("#cross-check-submit");
    const result = page.locator("#cross-check-result[data-state]");
    await expect(result).toHaveAttribute("data-state", "ok", { timeout: 30_000 });
    await expect(result).toContainText("in_both");
    await expect(result).toContainText("hainan");
    await shot(page, "auditor-cross-check");
    await context.close();
  });
});

test.describe("admin", () => {
  test("the node's overview", async ({ browser }) => {
    const z = zone("shanghai");
    const context = await userContext(browser, z, "admin", { locale: "en-US" });
    const page = await context.newPage();
    await open(page, z, "/admin");
    for (const sel of ["#status", "table#peers", "#registry", "#agreements", "#policies", "#outbox", "#budgets"]) {
      await expect(page.locator(sel), sel).toBeVisible();
    }
    await shot(page, "admin-overview");
    await context.close();
  });

  test("installing a garbage file is refused, with the reason shown", async ({ browser }) => {
    const z = zone("shanghai");
    const context = await userContext(browser, z, "admin", { locale: "en-US" });
    const page = await context.newPage();
    await open(page, z, "/admin/install");
    await expect(page.locator("select#install-kind")).toBeVisible();
    await page.locator("select#install-kind").selectOption("agreement");
    await page.locator("input#install-file").setInputFiles({
      name: "garbage.agreement",
      mimeType: "application/octet-stream",
      buffer: Buffer.from("this is not a signed agreement"),
    });
    await page.locator("button#install-submit").click();
    const result = page.locator("#install-result");
    await expect(result).toHaveAttribute("data-state", "failed");
    await expect(result.locator("section.refusal[data-reason]")).toBeVisible();
    await shot(page, "admin-install-garbage");
    await context.close();
  });
});

test.describe("issuer", () => {
  test("the forms, and a CSV file imported with progress", async ({ browser }) => {
    const z = zone("shanghai");
    const context = await userContext(browser, z, "issuer", { locale: "en-US" });
    const page = await context.newPage();
    await open(page, z, "/issuer");
    for (const sel of ["#issue-form", "#revoke-form", "#push-form", "#import-form"]) {
      await expect(page.locator(sel), sel).toBeVisible();
    }
    await expect(page.locator("#import-form input#import-file")).toHaveCount(1);
    await expect(page.locator("#import-form progress#import-progress")).toHaveCount(1);

    const csv = [
      "enterprise_uscc,enterprise_name,industry_code,region,period,output_value,employment,capacity",
      "91310115MA1H7XQ200,Pudong Precision Instruments,C4011,310115,2026-Q1,1200,85,40",
      "91310115MA1H7XQ200,Pudong Precision Instruments,C4011,310115,2026-Q2,1300,88,41",
    ].join("\n");
    await page.locator("input#import-file").setInputFiles({ name: "rows.csv", mimeType: "text/csv", buffer: Buffer.from(csv) });
    await page.locator("#import-submit").click();
    const result = page.locator("#import-result");
    await expect(result).toHaveAttribute("data-state", "ok");
    const bar = page.locator("progress#import-progress");
    expect(await bar.evaluate((p) => p.value === p.max)).toBe(true);
    await shot(page, "issuer-import");

    await page.locator("input#import-file").setInputFiles({
      name: "bad.csv",
      mimeType: "text/csv",
      buffer: Buffer.from("enterprise_uscc,enterprise_name\nnot-a-uscc,x\n"),
    });
    await page.locator("#import-submit").click();
    await expect(result).toHaveAttribute("data-state", "failed");
    await shot(page, "issuer-import-refused");
    await context.close();
  });
});
