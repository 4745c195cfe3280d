// What a live event changes on the page. Every element an event updates carries the event's
// subject in a data attribute, so any page can show any of them; a page whose lists the event
// would change as a whole (a new bulk change, say) has its live regions fetched again from the
// server, which stays the one place that renders them.
import type { LiveEvent } from "./live";
import { describe } from "./times";

function setBadge(badge: Element | null, status: string): void {
  if (!(badge instanceof HTMLElement)) return;
  badge.dataset.status = status;
  badge.textContent = status;
}

function count(data: Record<string, unknown>, name: string): number {
  const value = data[name];
  return typeof value === "number" ? value : 0;
}

function updateBulkChange(event: LiveEvent): boolean {
  const rows = document.querySelectorAll<HTMLElement>(`[data-bulk-change="${CSS.escape(event.subject)}"]`);
  const total = count(event.data, "total");
  const failed = count(event.data, "failed");
  const done = count(event.data, "succeeded") + failed;
  for (const row of rows) {
    const bar = row.querySelector("progress");
    if (bar) {
      bar.max = Math.max(1, total);
      bar.value = done;
      bar.setAttribute("aria-label", `${done} of ${total} done (${failed} failed)`);
    }
    const figures = row.querySelector("[data-progress-figures]");
    if (figures) figures.textContent = `${done}/${total}`;
    const failures = row.querySelector<HTMLElement>("[data-progress-failed]");
    if (failures) {
      failures.hidden = failed === 0;
      failures.textContent = `${failed} failed`;
    }
    if (typeof event.data.status === "string") {
      setBadge(row.querySelector(".badge[data-status]:not([data-progress-failed])"), event.data.status);
    }
  }
  return rows.length > 0;
}

function updateDevice(event: LiveEvent): boolean {
  const rows = document.querySelectorAll<HTMLElement>(`[data-device="${CSS.escape(event.subject)}"]`);
  for (const row of rows) {
    if (event.type === "device.presence" && typeof event.data.online === "boolean") {
      setBadge(row.querySelector("[data-presence] .badge"), event.data.online ? "online" : "offline");
    }
    if (event.type === "telemetry.latest") {
      const metrics = event.data.metrics as Record<string, unknown> | undefined;
      const latest = row.querySelector("[data-latest]");
      if (latest && metrics) {
        latest.textContent = Object.entries(metrics)
          .slice(0, 4)
          .map(([name, value]) => `${name} ${String(value)}`)
          .join(" · ");
      }
    }
  }
  return rows.length > 0;
}

function updateCommand(event: LiveEvent): boolean {
  const id = event.data.commandId;
  if (typeof id !== "string" || typeof event.data.status !== "string") return false;
  const rows = document.querySelectorAll(`[data-command="${CSS.escape(id)}"]`);
  for (const row of rows) setBadge(row.querySelector(".badge[data-status]"), event.data.status);
  return rows.length > 0;
}

function updateSim(event: LiveEvent): boolean {
  const rows = document.querySelectorAll(`[data-sim="${CSS.escape(event.subject)}"]`);
  if (typeof event.data.to !== "string") return false;
  for (const row of rows) setBadge(row.querySelector(".badge[data-status]"), event.data.to);
  return rows.length > 0;
}

/** One line for the timeline: what happened, in words. */
export function sentence(event: LiveEvent): string {
  const d = event.data;
  switch (event.type) {
    case "device.presence":
      return `${event.subject} went ${d.online ? "online" : "offline"}${d.timedOut ? " (timed out)" : ""}`;
    case "device.registered":
      return `${event.subject} registered (${String(d.model ?? "device")})`;
    case "command.status":
      return `${String(d.name ?? "command")} to ${event.subject}: ${String(d.status)}`;
    case "bulkChange.progress":
      return `bulk change ${event.subject.slice(0, 8)}: ${count(d, "succeeded") + count(d, "failed")}/${count(d, "total")} done`;
    case "bulkChange.completed":
      return `bulk change ${event.subject.slice(0, 8)} ${String(d.status)}: ${count(d, "succeeded")} succeeded, ${count(d, "failed")} failed`;
    case "sim.status":
      return `SIM ${event.subject} ${String(d.from)} → ${String(d.to)}`;
    default:
      return `${event.type} ${event.subject}`;
  }
}

const TIMELINE_LENGTH = 50;

function addToTimeline(event: LiveEvent): void {
  const timeline = document.querySelector<HTMLOListElement>("ol[data-timeline]");
  if (!timeline) return;
  timeline.querySelector("[data-timeline-empty]")?.remove();
  const item = document.createElement("li");
  item.dataset.seq = String(event.seq);
  item.dataset.type = event.type;
  const at = document.createElement("time");
  at.dateTime = event.at;
  at.dataset.relative = "";
  at.textContent = describe(new Date(event.at), new Date());
  const text = document.createElement("span");
  text.textContent = sentence(event);
  item.append(at, " ", text);
  timeline.prepend(item);
  while (timeline.children.length > TIMELINE_LENGTH) timeline.lastElementChild?.remove();
}

let refreshing: number | undefined;
/** Asked for while a fetch was under way, which may have been answered before the change. */
let refreshAgain = false;

/** Fetches this page again and swaps in its live regions (debounced: a burst is one fetch). */
export function refreshRegions(): void {
  if (refreshing !== undefined) {
    refreshAgain = true;
    return;
  }
  refreshing = window.setTimeout(async () => {
    refreshAgain = false;
    try {
      const response = await fetch(location.href, { credentials: "same-origin" });
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const region of document.querySelectorAll<HTMLElement>("[data-live-region]")) {
        const replacement = fresh.getElementById(region.id);
        if (replacement) region.replaceWith(document.importNode(replacement, true));
      }
    } finally {
      refreshing = undefined;
      if (refreshAgain) refreshRegions();
    }
  }, 100);
}

/** The shortest time between two redraws of regions that follow a frequent event (charts). */
const REDRAW_INTERVAL_MS = 5_000;
let redrawing: number | undefined;

/** Refreshes the live regions within a few seconds: a stream of samples is one fetch per interval. */
function redrawSoon(): void {
  if (redrawing !== undefined) return;
  redrawing = window.setTimeout(() => {
    redrawing = undefined;
    refreshRegions();
  }, REDRAW_INTERVAL_MS);
}

export function apply(event: LiveEvent): void {
  let shown = false;
  if (event.type.startsWith("bulkChange.")) shown = updateBulkChange(event);
  else if (event.type === "device.presence" || event.type === "telemetry.latest") shown = updateDevice(event);
  else if (event.type === "command.status") shown = updateCommand(event);
  else if (event.type === "sim.status") shown = updateSim(event);
  if (event.type !== "telemetry.latest") addToTimeline(event);
  // Something this page lists as a whole changed and its row is not here yet.
  const region = document.querySelector<HTMLElement>(`[data-live-region][data-refresh-on~="${CSS.escape(event.type)}"]`);
  if (!shown && region) refreshRegions();
  // Something drawn from many events (a chart) that a row update cannot extend.
  if (document.querySelector(`[data-live-region][data-redraw-on~="${CSS.escape(event.type)}"]`)) redrawSoon();
  document.dispatchEvent(new CustomEvent("cellbridge:event", { detail: event }));
}
