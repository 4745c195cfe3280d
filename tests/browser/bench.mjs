// The console's numbers in a real browser, for `cargo xtask bench console` (which starts the
// stack, fills it and runs this with CONSOLE_URL, CONSOLE_PASSWORD and CONSOLE_BULK_CHANGE set).
// Prints one JSON object: interaction-to-next-paint on the SIM table, and how long after a bulk
// change is written the bulk-changes page shows it.
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import { chromium } from "playwright-core";

const consoleUrl = process.env.CONSOLE_URL;
const password = process.env.CONSOLE_PASSWORD;
const bulkChange = JSON.parse(process.env.CONSOLE_BULK_CHANGE ?? "{}");
const changes = Number(process.env.CONSOLE_BENCH_CHANGES ?? "20");
const interactions = Number(process.env.CONSOLE_BENCH_INTERACTIONS ?? "60");
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";

function percentile(values, p) {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

const browser = await chromium.launch({
  executablePath,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext({ baseURL: consoleUrl, viewport: { width: 1366, height: 860 } });
context.setDefaultTimeout(120_000);
const page = await context.newPage();
await page.goto("/console/sign-in");
await page.getByLabel("Username").fill("ops@demo.example");
await page.getByLabel("Password").fill(password);
await Promise.all([page.waitForURL(/\/console$/), page.getByRole("button", { name: "Sign in" }).click()]);

// Interaction to next paint on the SIM table: every interaction's longest event, as Chrome's
// Event Timing API reports them (it reports only those of 16 ms or more: the others count as
// under 16 ms).
await page.goto("/console/sims");
await page.locator("tbody input[name=iccid]").first().waitFor();
await page.evaluate(() => {
  window.__interactions = new Map();
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if (!entry.interactionId) continue;
      const longest = window.__interactions.get(entry.interactionId) ?? 0;
      window.__interactions.set(entry.interactionId, Math.max(longest, entry.duration));
    }
  }).observe({ type: "event", durationThreshold: 16, buffered: true });
});
const boxes = page.locator("tbody input[name=iccid]");
const rows = await boxes.count();
for (let n = 0; n < interactions; n += 1) {
  switch (n % 4) {
    case 0:
      await boxes.nth(n % rows).click();
      break;
    case 1:
      await page.keyboard.press("j");
      break;
    case 2:
      await page.locator("input[data-select-all]").click();
      break;
    default:
      await page.keyboard.press("k");
  }
}
await page.waitForTimeout(500);
const reported = await page.evaluate(() => [...window.__interactions.values()]);
const durations = [...reported, ...Array(Math.max(0, interactions - reported.length)).fill(0)];

// From a bulk change's write to the bulk-changes page showing it: the change's own createdAt
// against the moment its row is in the page and painted.
await page.goto("/console/bulk-changes");
await page.locator("#live-status[data-state=live]").waitFor();
const login = await page.request.post("/auth/login", { data: { username: "ops@demo.example", password } });
const { token } = await login.json();
const delays = [];
for (let n = 0; n < changes; n += 1) {
  const created = await page.request.post("/bulk-changes", { headers: { authorization: `Bearer ${token}` }, data: bulkChange });
  if (created.status() !== 202) throw new Error(`creating a bulk change: ${created.status()} ${await created.text()}`);
  const { id, createdAt } = await created.json();
  const shownAt = await page.evaluate(
    (id) =>
      new Promise((resolve) => {
        const seen = () => document.querySelector(`tr[data-bulk-change="${id}"]`);
        const painted = () => requestAnimationFrame(() => resolve(performance.timeOrigin + performance.now()));
        if (seen()) return painted();
        const observer = new MutationObserver(() => {
          if (seen()) {
            observer.disconnect();
            painted();
          }
        });
        observer.observe(document.body, { childList: true, subtree: true });
      }),
    id,
  );
  delays.push(shownAt - Date.parse(createdAt));
  await page.waitForTimeout(1000);
}

// The bundle as a browser downloads it.
const dist = join(dirname(fileURLToPath(import.meta.url)), "../../functions/console/web/dist");
const manifest = JSON.parse(readFileSync(join(dist, "manifest.json"), "utf8"));
const gzipped = (file) => gzipSync(readFileSync(join(dist, file)), { level: 9 }).length;
const scriptGzip = gzipped(manifest["console.js"]);
const bundleGzip = Object.values(manifest).reduce((sum, file) => sum + gzipped(file), 0);

console.log(
  JSON.stringify({
    scriptGzip,
    bundleGzip,
    interactions,
    inpReported: reported.length,
    inpP50: percentile(durations, 50),
    inpP95: percentile(durations, 95),
    inpMax: Math.max(0, ...durations),
    changes,
    eventToPaintP50: percentile(delays, 50),
    eventToPaintP95: percentile(delays, 95),
    eventToPaintMax: Math.max(...delays),
  }),
);
await browser.close();
