// The console works without this script: every page is complete HTML from the server. The
// script adds live updates from the event stream and conveniences on top (keyboard shortcuts,
// selection, local times).
import { enhanceKeyboard } from "./keyboard";
import { type Filter, LiveStream, type LiveState } from "./live";
import { enhanceSelection } from "./selection";
import { enhanceTimes } from "./times";
import { apply, refreshRegions } from "./updates";

enhanceTimes(document);
enhanceSelection(document);
enhanceKeyboard(document);

let caughtUp = false;

function showState(state: LiveState, retryInSeconds?: number): void {
  // What changed between the server rendering the page and the stream starting is not replayed:
  // regions that must not miss it are fetched again once, as soon as the page is live.
  if (state === "live" && !caughtUp) {
    caughtUp = true;
    if (document.querySelector("[data-live-region][data-catch-up]")) refreshRegions();
  }
  const status = document.getElementById("live-status");
  if (!status) return;
  status.hidden = false;
  status.dataset.state = state;
  status.textContent =
    state === "live"
      ? "Live"
      : state === "connecting"
        ? "Connecting to live updates…"
        : `Live updates lost: this page may be out of date. Reconnecting in ${retryInSeconds ?? 1} s…`;
  document.body.dataset.live = state;
}

const url = document.body.dataset.liveUrl;
const csrf = document.body.dataset.csrf;
const main = document.querySelector<HTMLElement>("main[data-live-filter]");
if (url && csrf && main) {
  let filter: Filter = {};
  try {
    filter = JSON.parse(main.dataset.liveFilter ?? "{}") as Filter;
  } catch {
    filter = {};
  }
  const history = Number(main.dataset.liveHistory ?? "0");
  new LiveStream(url, csrf, filter, history, {
    event: apply,
    state: showState,
    reset: refreshRegions,
  }).start();
}
