// What the page knows, kept in one place: connections, the open connection's timeline, pauses
// and breakpoint rules. REST fills it, the push channel's batches keep it current; views
// subscribe by topic ("conns", "timeline", "pauses", "breakpoints", "hello") and redraw.

const MAX_CONNS = 10_000; // the server's list is bounded too; the page keeps no more than this
const MAX_TIMELINE = 200_000; // messages of the open connection kept in the page
export const PAGE = 500; // messages per /messages request

// What "Hide ping/pong" hides: the control frames, as the server's control=0 does.
const CONTROL = new Set(["ping", "pong", "close"]);

/** Whether the timeline starts with a head row: "loading older" while there are older pages,
 * or "older messages no longer kept" once the start of what the server keeps is reached. */
export function hasHeadRow(timeline) {
  return !timeline.atStart || timeline.firstSeq > 1;
}

export class State {
  constructor(api) {
    this.api = api;
    this.hello = { readonly: false, web_history: null };
    this.conns = new Map(); // id -> CONN, in arrival order (Map keeps insertion order)
    this.order = []; // ids, oldest first (the server's order: newest last)
    this.filter = "";
    this.filterError = null;
    this.selected = null; // connection id
    this.timeline = null;
    this.hideControl = false;
    this.pauses = new Map();
    this.breakpoints = [];
    this.listeners = new Map();
    this.refetchTimer = null;
  }

  on(topic, fn) {
    if (!this.listeners.has(topic)) this.listeners.set(topic, new Set());
    this.listeners.get(topic).add(fn);
  }

  emit(topic, detail) {
    for (const fn of this.listeners.get(topic) || []) fn(detail);
  }

  // -- connections -------------------------------------------------------------------------

  async loadConnections() {
    let result;
    try {
      result = await this.api.connections(this.filter);
    } catch (error) {
      if (error.status === 400) {
        this.filterError = { message: error.message, column: error.column };
        this.emit("filter-error");
        return;
      }
      throw error;
    }
    this.filterError = null;
    this.emit("filter-error");
    this.conns = new Map();
    for (const conn of result.connections || []) this.conns.set(conn.id, conn);
    this.order = [...this.conns.keys()];
    this.emit("conns", { reset: true });
  }

  setFilter(filter) {
    this.filter = filter.trim();
    return this.loadConnections();
  }

  upsertConn(conn) {
    if (this.conns.has(conn.id)) {
      this.conns.set(conn.id, conn);
      return;
    }
    if (this.filter) {
      // Only the server can tell whether a new connection matches the filter: ask it again,
      // at most once a second however many connections arrive.
      this.refetchSoon();
      return;
    }
    this.conns.set(conn.id, conn);
    this.order.push(conn.id);
    if (this.order.length > MAX_CONNS) {
      for (const id of this.order.splice(0, this.order.length - MAX_CONNS)) {
        if (id !== this.selected) this.conns.delete(id);
      }
    }
  }

  refetchSoon() {
    if (this.refetchTimer) return;
    this.refetchTimer = setTimeout(() => {
      this.refetchTimer = null;
      this.loadConnections().catch(() => {});
    }, 1000);
  }

  connAt(index) {
    return this.conns.get(this.order[index]);
  }

  // -- the open connection's timeline ------------------------------------------------------

  /** Open `id`: its newest page of messages now, older pages as the user scrolls up. */
  async select(id) {
    this.selected = id;
    this.emit("selected");
    await this.openTimeline();
  }

  async openTimeline() {
    const id = this.selected;
    if (!id) return;
    const timeline = {
      conn: id,
      control: !this.hideControl,
      msgs: [],
      seqs: new Set(),
      firstSeq: null, // the oldest message the server still keeps
      olderCursor: null, // every message below this seq is not loaded yet
      atStart: false,
      loading: true,
      pending: [], // pushed while the first page loads
      selectedSeq: null,
    };
    this.timeline = timeline;
    this.emit("timeline", { reset: true });
    const first = await this.api.messages(id, { after: 0, limit: PAGE, control: timeline.control });
    if (this.timeline !== timeline) return;
    let page = first;
    const firstSeq = first.first_seq ?? (first.messages[0] ? first.messages[0].seq : 0);
    const lastSeq = first.last_seq ?? firstSeq;
    const got = first.messages || [];
    if (got.length && got[got.length - 1].seq < lastSeq) {
      // more than one page: start at the newest, like a chat, and go back on demand
      page = await this.api.messages(id, {
        after: Math.max(firstSeq - 1, lastSeq - PAGE),
        limit: PAGE,
        control: timeline.control,
      });
      if (this.timeline !== timeline) return;
    }
    const msgs = page.messages || [];
    timeline.firstSeq = firstSeq;
    timeline.olderCursor = msgs.length ? msgs[0].seq : lastSeq + 1;
    timeline.atStart = page === first || timeline.olderCursor <= firstSeq;
    timeline.loading = false;
    this.addMessages(timeline, msgs);
    this.addMessages(timeline, timeline.pending);
    timeline.pending = [];
    this.emit("timeline", { reset: true });
  }

  addMessages(timeline, msgs) {
    for (const msg of msgs) {
      if (timeline.seqs.has(msg.seq)) continue;
      const last = timeline.msgs[timeline.msgs.length - 1];
      if (last && msg.seq < last.seq) continue; // older ones come only through loadOlder
      timeline.msgs.push(msg);
      timeline.seqs.add(msg.seq);
    }
    if (timeline.msgs.length > MAX_TIMELINE) {
      const gone = timeline.msgs.splice(0, timeline.msgs.length - MAX_TIMELINE);
      for (const msg of gone) timeline.seqs.delete(msg.seq);
      timeline.olderCursor = timeline.msgs[0].seq;
      timeline.atStart = false;
    }
  }

  /** One older page, prepended; returns how many rows were added in front. */
  async loadOlder() {
    const timeline = this.timeline;
    if (!timeline || timeline.loading || timeline.atStart) return 0;
    timeline.loading = true;
    const after = Math.max(timeline.firstSeq - 1, timeline.olderCursor - PAGE - 1);
    let page;
    try {
      page = await this.api.messages(timeline.conn, { after, limit: PAGE, control: timeline.control });
    } finally {
      timeline.loading = false;
    }
    if (this.timeline !== timeline) return 0;
    if (page.first_seq !== undefined) timeline.firstSeq = page.first_seq;
    const older = (page.messages || []).filter(
      (msg) => msg.seq < timeline.olderCursor && !timeline.seqs.has(msg.seq),
    );
    for (const msg of older) timeline.seqs.add(msg.seq);
    const headBefore = hasHeadRow(timeline);
    timeline.msgs.unshift(...older);
    timeline.olderCursor = after + 1;
    timeline.atStart = after <= timeline.firstSeq - 1;
    const headAfter = hasHeadRow(timeline);
    this.emit("timeline", { prepended: older.length + Number(headAfter) - Number(headBefore) });
    return older.length;
  }

  setHideControl(hide) {
    this.hideControl = hide;
    this.emit("hide-control");
    return this.openTimeline();
  }

  selectedMessage() {
    const t = this.timeline;
    if (!t || t.selectedSeq === null) return null;
    return t.msgs.find((msg) => msg.seq === t.selectedSeq) || null;
  }

  // -- pushed events -----------------------------------------------------------------------

  /** Apply one batch of pushed events; each topic redraws once per batch. */
  applyBatch(events) {
    const touched = new Set();
    for (const event of events) {
      switch (event.type) {
        case "conn":
          this.upsertConn(event.conn);
          touched.add("conns");
          if (event.conn.id === this.selected) touched.add("selected-conn");
          break;
        case "msg": {
          const t = this.timeline;
          if (!t || t.conn !== event.conn) break;
          if (!t.control && CONTROL.has(event.msg.opcode)) break;
          if (t.loading && !t.msgs.length) t.pending.push(event.msg);
          else this.addMessages(t, [event.msg]);
          touched.add("timeline");
          break;
        }
        case "pause":
          this.pauses.set(event.pause.id, event.pause);
          touched.add("pauses");
          break;
        case "resume":
          this.pauses.delete(event.pause);
          touched.add("pauses");
          this.emit("resumed", event);
          break;
        case "breakpoints":
          this.breakpoints = event.breakpoints || [];
          touched.add("breakpoints");
          break;
        case "dropped_events":
          touched.add("refetch");
          break;
        default:
          break; // a newer server's event: ignore what this page does not know
      }
    }
    if (touched.has("refetch")) {
      this.refetchAll();
      return;
    }
    for (const topic of touched) this.emit(topic, {});
  }

  /** Everything again through REST: after a reconnect or when the server dropped events. */
  async refetchAll() {
    const [, pauses, breakpoints] = await Promise.all([
      this.loadConnections(),
      this.api.pauses(),
      this.api.breakpoints(),
    ]);
    this.pauses = new Map((pauses.pauses || []).map((p) => [p.id, p]));
    this.breakpoints = breakpoints.breakpoints || [];
    this.emit("pauses", {});
    this.emit("breakpoints", {});
    if (this.selected) {
      this.emit("selected-conn", {});
      await this.openTimeline();
    }
  }
}
