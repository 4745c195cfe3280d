// The live event stream, as a page uses it: a ticket from the console (the session token is in
// an HttpOnly cookie, out of this script's reach), a WebSocket offering it, a subscription with
// the page's filter, and after a drop a new connection that resumes from the last event seen,
// so nothing is missed and nothing is shown twice.

export interface LiveEvent {
  seq: number;
  type: string;
  subject: string;
  at: string;
  data: Record<string, unknown>;
}

export interface Filter {
  types?: string[];
  devices?: string[];
  bulkChanges?: string[];
}

export type LiveState = "connecting" | "live" | "offline";

export interface LiveHandlers {
  event(event: LiveEvent): void;
  state(state: LiveState, retryInSeconds?: number): void;
  /** What was missed is no longer kept: reload what the page shows. */
  reset(): void;
}

const SUBPROTOCOL = "cellbridge.events.v1";
/** A connection that follows devices pings every minute, which keeps them streaming. */
const PING_EVERY_MS = 60_000;
const MAX_BACKOFF_MS = 30_000;

export class LiveStream {
  private lastSeq?: number;
  private attempt = 0;
  private socket?: WebSocket;
  private pinger?: number;
  private historyAsked = false;
  /** Between asking for history and its first frame: a reset then only means less is kept. */
  private awaitingHistory = false;

  /** `history`: on the first connection, also replay up to this many of the newest events kept
   * (a timeline shows what just happened, not only what happens next). */
  constructor(
    private readonly url: string,
    private readonly csrf: string,
    private readonly filter: Filter,
    private readonly history: number,
    private readonly handlers: LiveHandlers,
  ) {}

  start(): void {
    void this.connect();
    // A laptop waking up or a network coming back: try at once rather than at the backoff's end.
    window.addEventListener("online", () => {
      if (!this.socket || this.socket.readyState === WebSocket.CLOSED) void this.connect();
    });
  }

  private async ticket(): Promise<string | undefined> {
    const response = await fetch("/console/live-ticket", {
      method: "POST",
      headers: { "x-csrf-token": this.csrf },
      credentials: "same-origin",
    });
    if (response.status === 401) {
      const here = location.pathname + location.search;
      location.assign(`/console/sign-in?expired=1&next=${encodeURIComponent(here)}`);
      return undefined;
    }
    if (!response.ok) throw new Error(`ticket: ${response.status}`);
    return ((await response.json()) as { ticket: string }).ticket;
  }

  private async connect(): Promise<void> {
    this.handlers.state("connecting");
    let ticket: string | undefined;
    try {
      ticket = await this.ticket();
    } catch {
      this.retry();
      return;
    }
    if (!ticket) return;
    const socket = new WebSocket(this.url, [SUBPROTOCOL, ticket]);
    this.socket = socket;
    socket.onopen = () => {
      this.subscribe(socket);
      this.pinger = window.setInterval(() => socket.send(JSON.stringify({ action: "ping" })), PING_EVERY_MS);
    };
    socket.onmessage = (message) => this.receive(socket, message);
    socket.onclose = () => {
      window.clearInterval(this.pinger);
      if (this.socket === socket) this.retry();
    };
  }

  private subscribe(socket: WebSocket): void {
    const frame: Record<string, unknown> = { action: "subscribe", filter: this.filter };
    if (this.lastSeq !== undefined) frame.lastSeq = this.lastSeq;
    socket.send(JSON.stringify(frame));
  }

  private receive(socket: WebSocket, message: MessageEvent): void {
    let frame: { kind?: string; lastSeq?: number } & Partial<LiveEvent>;
    try {
      frame = JSON.parse(String(message.data));
    } catch {
      return;
    }
    switch (frame.kind) {
      case "subscribed":
        this.attempt = 0;
        if (this.lastSeq === undefined && typeof frame.lastSeq === "number") {
          this.lastSeq = frame.lastSeq;
          if (this.history > 0 && !this.historyAsked && frame.lastSeq > 0) {
            this.historyAsked = true;
            this.awaitingHistory = true;
            this.lastSeq = Math.max(0, frame.lastSeq - this.history);
            this.subscribe(socket);
            return;
          }
        }
        this.handlers.state("live");
        break;
      case "event":
        if (typeof frame.seq !== "number") return;
        this.awaitingHistory = false;
        // A replay after a reconnect starts right after what was seen; anything older is a repeat.
        if (this.lastSeq !== undefined && frame.seq <= this.lastSeq) return;
        this.lastSeq = frame.seq;
        this.handlers.event(frame as LiveEvent);
        break;
      case "reset":
        this.lastSeq = undefined;
        if (!this.awaitingHistory) this.handlers.reset();
        this.awaitingHistory = false;
        this.subscribe(socket);
        break;
      default:
        break;
    }
  }

  private retry(): void {
    const delay = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** this.attempt);
    this.attempt += 1;
    this.handlers.state("offline", Math.round(delay / 1000));
    window.setTimeout(() => void this.connect(), delay);
  }
}
