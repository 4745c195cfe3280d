// Timestamps arrive as UTC from the server; people read them best as "3 min ago" with the full
// local time on hover.
const units: [Intl.RelativeTimeFormatUnit, number][] = [
  ["day", 86_400_000],
  ["hour", 3_600_000],
  ["minute", 60_000],
  ["second", 1_000],
];

const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export function describe(at: Date, now: Date): string {
  const delta = at.getTime() - now.getTime();
  for (const [unit, ms] of units) {
    if (Math.abs(delta) >= ms || unit === "second") {
      return relative.format(Math.round(delta / ms), unit);
    }
  }
  return absolute.format(at);
}

export function enhanceTimes(root: ParentNode): void {
  const refresh = () => {
    const now = new Date();
    for (const element of root.querySelectorAll<HTMLTimeElement>("time[data-relative]")) {
      const at = new Date(element.dateTime);
      if (Number.isNaN(at.getTime())) continue;
      element.textContent = describe(at, now);
      element.title = absolute.format(at);
    }
  };
  refresh();
  setInterval(refresh, 15_000);
}
