// The JSON API's description in the browser: served to a caller with a user certificate,
// refused (problem details) to one without.

import { expect, test } from "@playwright/test";
import { shot, userContext, zone } from "./lib.mjs";

test("with the admin's certificate, /api/v1/openapi.json is the OpenAPI 3.1 document", async ({ browser }) => {
  const z = zone("shanghai");
  const context = await userContext(browser, z, "admin");
  const page = await context.newPage();
  const res = await page.goto(z.openapi);
  expect(res.status()).toBe(200);
  expect(res.headers()["content-type"]).toMatch(/^application\/json/);
  const doc = await res.json();
  expect(doc.openapi).toBe("3.1.0");
  expect(Object.keys(doc.paths)).toContain("/api/v1/verify/verify-record");
  await shot(page, "openapi-admin");
  await context.close();
});

test("without a certificate, /api/v1/openapi.json is refused with problem details", async ({ browser }) => {
  const z = zone("shanghai");
  const context = await userContext(browser, z, null);
  const page = await context.newPage();
  const res = await page.goto(z.openapi);
  expect([401, 403]).toContain(res.status());
  expect(res.headers()["content-type"]).toMatch(/^application\/problem\+json/);
  const problem = await res.json();
  expect(problem.reason).toBe("NO_CLIENT_CERTIFICATE");
  expect(problem.type).toBe("urn:ftz:reason:NO_CLIENT_CERTIFICATE");
  await shot(page, "openapi-no-certificate");
  await context.close();
});
