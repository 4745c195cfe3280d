// Keyboard shortcuts for people who live in the console: "/" jumps to the page's search, "j"
// and "k" move between the rows of its table, and Enter opens the focused row's link.
function typing(target: EventTarget | null): boolean {
  return (
    target instanceof HTMLInputElement ||
    target instanceof HTMLTextAreaElement ||
    target instanceof HTMLSelectElement ||
    (target instanceof HTMLElement && target.isContentEditable)
  );
}

function rowLinks(root: ParentNode): HTMLAnchorElement[] {
  return Array.from(root.querySelectorAll<HTMLAnchorElement>("table[data-rows] tbody tr a[data-row-link]"));
}

export function enhanceKeyboard(root: Document): void {
  root.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    if (event.key === "/") {
      const search = root.querySelector<HTMLInputElement>("[data-search]");
      if (search) {
        event.preventDefault();
        search.focus();
        search.select();
      }
      return;
    }
    if (event.key === "j" || event.key === "k") {
      const links = rowLinks(root);
      if (links.length === 0) return;
      const current = links.indexOf(root.activeElement as HTMLAnchorElement);
      const step = event.key === "j" ? 1 : -1;
      const next = current < 0 ? (step > 0 ? 0 : links.length - 1) : current + step;
      const target = links[Math.max(0, Math.min(links.length - 1, next))];
      event.preventDefault();
      target.focus();
      target.closest("tr")?.scrollIntoView({ block: "nearest" });
    }
  });
}
