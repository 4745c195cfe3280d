// The console in a real browser: Debian's Chromium, driven by Playwright, against the local
// stack the devstack scenario `console` started (it sets CONSOLE_URL and CONSOLE_PASSWORD).
//
//   CONSOLE_URL=http://127.0.0.1:3000 CONSOLE_PASSWORD=demo-password-1234 node --test tests/browser/
//
// SCREENSHOTS_DIR, when set, receives a screenshot of every page (docs/console.md shows them).
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { chromium } from "playwright-core";

const consoleUrl = process.env.CONSOLE_URL;
const password = process.env.CONSOLE_PASSWORD;
if (!consoleUrl || !password) {
  throw new Error("set CONSOLE_URL and CONSOLE_PASSWORD (the devstack scenario `console` does)");
}
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const screenshots = process.env.SCREENSHOTS_DIR;
const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

const OPERATOR = "ops@demo.example";
const VIEWER = "viewer@demo.example";
const ADMIN = "admin@demo.example";
const OTHER_TENANT = "ops@globex.example";
const SESSION_COOKIE = "__Host-cellbridge-session";
/** The SIMs the devstack scenario seeded for these tests (ICCIDs starting so). */
const SCENARIO_PREFIX = "890126000000600";

let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath,
    // This machine's network is closed: Chromium's own background connections would fail.
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});

after(async () => {
  await browser?.close();
});

/** A page in a browser context of its own (its own cookies). `inspect` lets the accessibility
 * checker's script in past the console's Content Security Policy. */
async function newPage({ inspect = false } = {}) {
  const context = await browser.newContext({
    baseURL: consoleUrl,
    viewport: { width: 1366, height: 860 },
    bypassCSP: inspect,
  });
  // The local stack starts a function's first instance on its first request.
  context.setDefaultTimeout(60_000);
  return context.newPage();
}

async function signIn(page, username) {
  await page.goto("/console/sign-in");
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await Promise.all([page.waitForURL(/\/console(\?|$)/), page.getByRole("button", { name: "Sign in" }).click()]);
}

/** axe-core's serious and critical findings on the page as it is now. */
async function seriousViolations(page) {
  await page.addScriptTag({ content: axeSource });
  const results = await page.evaluate(async () => window.axe.run(document, { resultTypes: ["violations"] }));
  return results.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join(", ")})`);
}

async function screenshot(page, name) {
  if (!screenshots) return;
  mkdirSync(screenshots, { recursive: true });
  await page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: false });
}

describe("signing in and out", () => {
  test("a page asked for before sign-in comes back after it", async () => {
    const page = await newPage({ inspect: true });
    await page.goto("/console/sims?status=active");
    assert.match(page.url(), /\/console\/sign-in\?next=/);
    assert.deepEqual(await seriousViolations(page), []);
    await screenshot(page, "sign-in");
    await page.getByLabel("Username").fill(OPERATOR);
    await page.getByLabel("Password").fill(password);
    await Promise.all([page.waitForURL(/\/console\/sims\?status=active$/), page.getByRole("button", { name: "Sign in" }).click()]);
    await page.getByRole("heading", { name: "SIMs" }).waitFor();
    await page.context().close();
  });

  test("the token is in an HttpOnly, Secure, SameSite cookie no script can read", async () => {
    const page = await newPage();
    await signIn(page, OPERATOR);
    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === SESSION_COOKIE);
    assert.ok(session, `a session cookie among ${cookies.map((c) => c.name)}`);
    assert.equal(session.httpOnly, true);
    assert.equal(session.secure, true);
    assert.equal(session.sameSite, "Lax");
    assert.equal(await page.evaluate(() => document.cookie.includes("cellbridge-session")), false);
    assert.equal(
      await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage })),
      "{}{}",
    );
    await page.context().close();
  });

  test("signing out ends the session and returns to sign-in", async () => {
    const page = await newPage();
    await signIn(page, OPERATOR);
    await expectText(page, "[data-testid=signed-in-user]", OPERATOR);
    await Promise.all([page.waitForURL(/sign-in\?signed-out=1/), page.getByRole("button", { name: "Sign out" }).click()]);
    await page.getByText("You have signed out.").waitFor();
    const cookies = await page.context().cookies();
    assert.equal(cookies.find((c) => c.name === SESSION_COOKIE), undefined);
    await page.goto("/console");
    assert.match(page.url(), /\/console\/sign-in/);
    await page.context().close();
  });

  test("a wrong password is told on the form, with the username kept", async () => {
    const page = await newPage();
    await page.goto("/console/sign-in");
    await page.getByLabel("Username").fill(VIEWER);
    await page.getByLabel("Password").fill("not the password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").filter({ hasText: "username or password is wrong" }).waitFor();
    assert.equal(await page.getByLabel("Username").inputValue(), VIEWER);
    await page.context().close();
  });
});

describe("CSRF", () => {
  test("a form post without the page's token changes nothing", async () => {
    const page = await newPage();
    await signIn(page, OPERATOR);
    const status = await page.evaluate(async () => {
      const response = await fetch("/console/sign-out", {
        method: "POST",
        body: new URLSearchParams({ csrf: "forged" }),
        redirect: "manual",
      });
      return response.status;
    });
    assert.equal(status, 403);
    await page.goto("/console");
    await expectText(page, "[data-testid=signed-in-user]", OPERATOR);
    await page.context().close();
  });

  test("a sign-in post without the form's own cookie is refused", async () => {
    const page = await newPage();
    const response = await page.request.post("/console/sign-in", {
      form: { csrf: "guessed", username: OPERATOR, password },
      maxRedirects: 0,
    });
    assert.equal(response.status(), 403);
    assert.equal(response.headers()["set-cookie"]?.includes(SESSION_COOKIE) ?? false, false);
    await page.context().close();
  });
});

describe("pages", () => {
  test("every page renders, is reachable by keyboard and has no serious accessibility violation", async () => {
    const page = await newPage({ inspect: true });
    await signIn(page, OPERATOR);
    for (const [name, path, heading] of [
      ["overview", "/console", "Overview"],
      ["admin-as-operator", "/console/admin", "Admin"],
      ["sims", "/console/sims", "SIMs"],
      ["bulk-changes", "/console/bulk-changes", "Bulk changes"],
      ["devices", "/console/devices", "Devices"],
    ]) {
      await page.goto(path);
      await page.getByRole("heading", { level: 1, name: heading }).waitFor();
      assert.deepEqual(await seriousViolations(page), [], `${path}`);
      // The admin page as an operator sees it is an error state, not a page to show in the docs.
      if (!name.startsWith("admin-as-")) await screenshot(page, name);
    }
    // The first Tab reaches the skip link, which moves focus to the content.
    await page.goto("/console/sims");
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Skip to content");
    await page.context().close();
  });

  test("the SIM table filters, searches by prefix and pages with a cursor", async () => {
    const page = await newPage();
    await signIn(page, OPERATOR);
    await page.goto("/console/sims");
    const rows = page.locator("table tbody tr");
    assert.equal(await rows.count(), 50, "a full first page");
    const first = (await rows.first().locator("td").nth(1).innerText()).trim();

    await page.getByRole("link", { name: "Next page" }).click();
    await page.waitForURL(/cursor=/);
    const second = (await rows.first().locator("td").nth(1).innerText()).trim();
    assert.notEqual(second, first, "the next page starts elsewhere");

    // "/" jumps to the search box; a prefix narrows the table to the SIMs it starts.
    await page.goto("/console/sims");
    await page.keyboard.press("/");
    assert.equal(await page.evaluate(() => document.activeElement?.id), "q");
    await page.keyboard.type(first.slice(0, 18));
    await Promise.all([page.waitForURL(/q=/), page.keyboard.press("Enter")]);
    const found = await page.locator("table tbody tr td:nth-child(2)").allInnerTexts();
    assert.ok(found.length > 0 && found.every((iccid) => iccid.trim().startsWith(first.slice(0, 18))), `${found}`);

    await page.getByLabel("Status").selectOption("suspended");
    await Promise.all([page.waitForURL(/status=suspended/), page.getByRole("button", { name: "Show" }).click()]);
    const statuses = await page.locator("table tbody tr .badge").allInnerTexts();
    assert.ok(statuses.every((s) => s === "suspended"), `${statuses}`);
    await page.context().close();
  });

  test("the API's complaint about a search is shown next to the search box", async () => {
    const page = await newPage();
    await signIn(page, OPERATOR);
    await page.goto("/console/sims?q=89x");
    const search = page.getByRole("searchbox");
    assert.equal(await search.getAttribute("aria-invalid"), "true");
    const message = await page.locator("#q-error").innerText();
    assert.ok(message.length > 0, "the API's message");
    assert.equal(await search.getAttribute("aria-describedby"), "q-error");
    await page.context().close();
  });

  test("a tenant sees only its own bulk changes", async () => {
    const demo = await newPage();
    await signIn(demo, OPERATOR);
    await demo.goto("/console/bulk-changes");
    const demoChanges = await demo.locator("tr[data-bulk-change]").evaluateAll((rows) => rows.map((r) => r.dataset.bulkChange));
    assert.ok(demoChanges.length > 0, "the scenario made the demo tenant a bulk change");
    const other = await newPage();
    await signIn(other, OTHER_TENANT);
    await expectText(other, "[data-testid=signed-in-user]", OTHER_TENANT);
    await other.goto("/console/bulk-changes");
    const otherChanges = await other.locator("tr[data-bulk-change]").evaluateAll((rows) => rows.map((r) => r.dataset.bulkChange));
    assert.deepEqual(otherChanges.filter((id) => demoChanges.includes(id)), []);
    // Asking for the other tenant's bulk change by its address shows nothing of it either.
    const response = await other.goto(`/console/bulk-changes/${demoChanges[0]}`);
    assert.notEqual(response.status(), 200);
    await demo.context().close();
    await other.context().close();
  });
});

describe("changing SIMs", () => {
  test("a bulk change goes from a selection through the preview to live completion", async () => {
    const page = await newPage();
    await signIn(page, OPERATOR);
    await page.goto(`/console/sims?q=${SCENARIO_PREFIX}&in=iccid&status=active&carrier=jasper`);
    const boxes = page.locator("tbody input[name=iccid]");
    for (const n of [0, 1, 2]) await boxes.nth(n).check();
    await page.locator("[data-selection-count]").filter({ hasText: "3 selected" }).waitFor();
    await page.getByLabel("Change", { exact: true }).selectOption("suspend");
    await page.getByRole("button", { name: "Preview for the selected SIMs" }).click();
    await page.getByRole("heading", { name: "Suspend the 3 selected SIMs?" }).waitFor();
    assert.equal(await page.getByTestId("accepted").innerText(), "3 SIMs");
    await screenshot(page, "change-preview");

    await Promise.all([page.waitForURL(/\/console\/bulk-changes\/[0-9a-f-]+$/), page.getByRole("button", { name: "Suspend 3 SIMs" }).click()]);
    const landed = page.url();
    await page.locator("#live-status[data-state=live]").waitFor();
    const panel = page.locator("section.panel[data-bulk-change]");
    await panel.locator(".badge[data-status=completed]").waitFor();
    assert.equal(await panel.locator("[data-progress-figures]").innerText(), "3/3");
    assert.equal(page.url(), landed, "completion arrived without leaving the page");
    await page.reload();
    await page.locator("table tbody tr .badge[data-status=succeeded]").nth(2).waitFor();
    await screenshot(page, "bulk-change");
    await page.context().close();
  });

  test("a rate plan change moves the selected SIMs, and the table shows their new plan", async () => {
    const page = await newPage();
    await signIn(page, OPERATOR);
    const listing = `/console/sims?q=${SCENARIO_PREFIX}&in=iccid&status=active&carrier=jasper`;
    await page.goto(listing);
    const boxes = page.locator("tbody input[name=iccid]");
    const iccids = [await boxes.nth(0).inputValue(), await boxes.nth(1).inputValue()];
    for (const n of [0, 1]) await boxes.nth(n).check();
    await page.getByLabel("Change", { exact: true }).selectOption("ratePlan");
    // A plan none of the simulator's SIMs is on: the preview refuses SIMs already on the plan.
    await page.getByLabel("New rate plan (to change it)").fill("RP-10GB");
    await page.getByRole("button", { name: "Preview for the selected SIMs" }).click();
    await page.getByRole("heading", { name: "Move the 2 selected SIMs to rate plan RP-10GB?" }).waitFor();
    assert.equal(await page.getByTestId("accepted").innerText(), "2 SIMs");
    await Promise.all([page.waitForURL(/\/console\/bulk-changes\/[0-9a-f-]+$/), page.getByRole("button", { name: "Move 2 SIMs to RP-10GB" }).click()]);
    await page.locator("section.panel[data-bulk-change] .badge[data-status=completed]").waitFor();
    for (const iccid of iccids) {
      for (let tries = 0; ; tries++) {
        await page.goto(`/console/sims?q=${iccid}&in=iccid`);
        if ((await page.locator(`tr[data-sim="${iccid}"]`).innerText()).includes("RP-10GB")) break;
        assert.ok(tries < 30, `${iccid} never showed its new rate plan`);
        await page.waitForTimeout(1_000);
      }
    }
    await page.context().close();
  });

  test("a viewer is offered no change, and one asked for anyway is refused by the API", async () => {
    const page = await newPage();
    await signIn(page, VIEWER);
    await page.goto("/console/sims");
    await page.getByRole("heading", { name: "SIMs" }).waitFor();
    assert.equal(await page.locator("input[name=iccid]").count(), 0);
    assert.equal(await page.getByRole("button", { name: /Preview/ }).count(), 0);
    const [status, text] = await page.evaluate(async () => {
      const body = new URLSearchParams({ csrf: document.body.dataset.csrf ?? "", action: "suspend", scope: "filter", status: "active" });
      const response = await fetch("/console/bulk-changes/preview", { method: "POST", body });
      return [response.status, await response.text()];
    });
    assert.equal(status, 403);
    assert.match(text, /operator role/);
    // Admin is not offered either, and asked for, the API's refusal is what the page says.
    assert.equal(await page.getByRole("link", { name: "Admin" }).count(), 0);
    await page.goto("/console/admin");
    await page.getByRole("alert").filter({ hasText: "admin role" }).first().waitFor();
    await page.context().close();
  });
});

describe("admin", () => {
  test("an admin adds and removes a user, the API's complaint shown at the field it names", async () => {
    const page = await newPage();
    await signIn(page, ADMIN);
    await page.getByRole("link", { name: "Admin" }).click();
    await page.getByRole("heading", { level: 1, name: "Admin" }).waitFor();
    const username = "night-shift@demo.example";
    await page.getByLabel("Username").fill(username);
    await page.getByLabel(/^Password/).fill("short");
    await page.getByRole("button", { name: "Add user" }).click();
    const password = page.getByLabel(/^Password/);
    assert.equal(await password.getAttribute("aria-invalid"), "true");
    assert.ok((await page.locator("#new-password-error").innerText()).length > 0);
    assert.equal(await password.inputValue(), "", "a password is never sent back into the page");
    assert.equal(await page.getByLabel("Username").inputValue(), username);

    await page.getByLabel(/^Password/).fill("a-long-enough-password");
    await page.getByLabel("Role").selectOption("operator");
    await page.getByRole("button", { name: "Add user" }).click();
    const row = page.locator(`tr[data-user="${username}"]`);
    await row.waitFor();
    assert.match(await row.innerText(), /operator/);
    await screenshot(page, "admin");
    await row.getByRole("button", { name: `Delete ${username}` }).click();
    await page.getByRole("heading", { level: 1, name: "Admin" }).waitFor();
    assert.equal(await page.locator(`tr[data-user="${username}"]`).count(), 0);

    // A recount of the fleet's numbers lands on the overview, which shows them.
    await Promise.all([page.waitForURL(/\/console$/), page.getByRole("button", { name: "Recount" }).click()]);
    assert.ok(Number(await page.locator("[data-count=sims-total]").innerText()) > 0);
    await page.context().close();
  });
});

describe("a device's page", () => {
  const device = process.env.CONSOLE_DEVICE;
  const control = process.env.CONSOLE_CONTROL_DIR;

  test("a command goes live through to the device's answer", async () => {
    const page = await newPage();
    await signIn(page, OPERATOR);
    await page.goto(`/console/devices/${device}`);
    await page.locator("#live-status[data-state=live]").waitFor();
    // The API's complaint is shown at the field it names.
    await page.getByLabel("Command", { exact: true }).fill("Not A Name!");
    await page.getByRole("button", { name: "Send" }).click();
    assert.equal(await page.getByLabel("Command", { exact: true }).getAttribute("aria-invalid"), "true");
    assert.ok((await page.locator("#command-name-error").innerText()).length > 0);

    await page.getByLabel("Command", { exact: true }).fill("ping");
    await Promise.all([page.waitForURL(/#commands-heading$/), page.getByRole("button", { name: "Send" }).click()]);
    const row = page.locator("tr[data-command]").filter({ hasText: "ping" }).first();
    await row.waitFor();
    await row.locator(".badge[data-status=SUCCESSFUL]").waitFor();
    await screenshot(page, "device");
    await page.context().close();
  });

  test("the chart follows the device's samples without a reload", async () => {
    const page = await newPage();
    await signIn(page, OPERATOR);
    await page.goto(`/console/devices/${device}?range=15m`);
    await page.locator("#live-status[data-state=live]").waitFor();
    const navigations = [];
    page.on("framenavigated", (frame) => frame === page.mainFrame() && navigations.push(frame.url()));
    // How many samples the first chart was drawn from, as its label tells screen readers.
    const drawnFrom = () => {
      const label = document.querySelector("#telemetry-region svg")?.getAttribute("aria-label") ?? "";
      return Number(/drawn from (\d+) samples/.exec(label)?.[1] ?? 0);
    };
    const grows = async () => {
      const known = await page.evaluate(drawnFrom);
      for (let tries = 0; (await page.evaluate(drawnFrom)) <= known; tries++) {
        assert.ok(tries < 120, `the chart stayed at ${known} samples for a minute`);
        await page.waitForTimeout(500);
      }
    };
    // The page catches up once when it goes live; growing twice takes redraws as samples arrive.
    await grows();
    await grows();
    assert.deepEqual(navigations, [], "the page was never reloaded");
    await page.context().close();
  });

  test("a device dropping off while its page is open shows offline without a reload", async () => {
    const page = await newPage();
    await signIn(page, OPERATOR);
    await page.goto(`/console/devices/${device}`);
    await page.locator("#live-status[data-state=live]").waitFor();
    const presence = page.locator("section.panel[data-device] [data-presence] .badge");
    assert.equal(await presence.innerText(), "online");
    const landed = page.url();
    writeFileSync(join(control, "disconnect-device"), "");
    await page.locator("section.panel[data-device] [data-presence] .badge[data-status=offline]").waitFor();
    assert.equal(page.url(), landed);
    await page.context().close();
  });
});

describe("live updates", () => {
  test("a bulk change made elsewhere appears and advances without a reload", async () => {
    const page = await newPage();
    await signIn(page, OPERATOR);
    await page.goto("/console/bulk-changes");
    await page.locator("#live-status[data-state=live]").waitFor();
    const navigations = [];
    page.on("framenavigated", (frame) => frame === page.mainFrame() && navigations.push(frame.url()));

    const login = await page.request.post("/auth/login", { data: { username: OPERATOR, password } });
    const { token } = await login.json();
    const created = await page.request.post("/bulk-changes", {
      headers: { authorization: `Bearer ${token}` },
      data: JSON.parse(process.env.CONSOLE_BULK_CHANGE ?? "{}"),
    });
    assert.equal(created.status(), 202, await created.text());
    const { id } = await created.json();

    const row = page.locator(`tr[data-bulk-change="${id}"]`);
    await row.waitFor();
    await row.locator(".badge[data-status=completed], .badge[data-status=completedWithErrors]").waitFor();
    assert.deepEqual(navigations, [], "the page was never reloaded");

    // The overview's timeline tells it too, from the stream's recent events.
    await page.goto("/console");
    await page.locator(`ol[data-timeline] li[data-type="bulkChange.completed"]`).first().waitFor();
    await page.context().close();
  });
});

describe("the overview", () => {
  test("the fleet's numbers follow a change without a reload", async () => {
    const page = await newPage();
    await signIn(page, OPERATOR);
    const login = await page.request.post("/auth/login", { data: { username: OPERATOR, password } });
    const headers = { authorization: `Bearer ${(await login.json()).token}` };
    const api = async (path) => (await page.request.get(path, { headers })).json();
    await page.goto("/console");
    await page.locator("#live-status[data-state=live]").waitFor();
    const navigations = [];
    page.on("framenavigated", (frame) => frame === page.mainFrame() && navigations.push(frame.url()));
    // Jasper has one state for suspended and deactivated SIMs: what the change moves for sure is
    // Jasper's active count.
    const shown = async (cell) => Number(await page.locator(`[data-count=${cell}]`).innerText());
    // Earlier changes may still be landing: the page and the API agree once they settle.
    let before;
    for (let tries = 0; ; tries++) {
      before = (await api("/fleet/summary")).sims.byCarrier.jasper.active;
      if ((await shown("sims-jasper-active")) === before) break;
      assert.ok(tries < 30, `the page shows ${await shown("sims-jasper-active")}, the API ${before}`);
      await page.waitForTimeout(1_000);
    }
    assert.ok((await shown("sims-total")) >= 120, "the scenario's SIMs are counted");

    const active = await api(`/sims?iccidPrefix=${SCENARIO_PREFIX}&status=active&carrier=jasper&limit=2`);
    const iccids = active.items.map((sim) => sim.iccid);
    assert.equal(iccids.length, 2);
    const created = await page.request.post("/bulk-changes", {
      headers,
      data: { change: { type: "statusUpdate", action: "suspend" }, filter: { iccids } },
    });
    assert.equal(created.status(), 202, await created.text());

    await page.waitForFunction(
      (most) => Number(document.querySelector("[data-count=sims-jasper-active]")?.textContent ?? Infinity) <= most,
      before - 2,
      { timeout: 60_000 },
    );
    assert.deepEqual(navigations, [], "the page was never reloaded");
    await page.context().close();
  });
});

async function expectText(page, selector, text) {
  const actual = (await page.locator(selector).innerText()).trim();
  assert.equal(actual, text);
}
