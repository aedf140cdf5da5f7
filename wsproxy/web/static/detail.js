// One connection: its facts, the message timeline (virtual), the message viewer, the
// handshake headers and the compose/close/abort forms.

import { h, fill, select } from "./dom.js";
import { VirtualList } from "./vlist.js";
import { MessageViewer } from "./viewer.js";
import { hasHeadRow } from "./state.js";
import { exportLinks } from "./exports.js";
import {
  arrow,
  bytes,
  clock,
  closeSummary,
  closeText,
  counts,
  directionText,
  fromHex,
  toBase64,
} from "./format.js";

const SUBTABS = [
  ["timeline", "Timeline"],
  ["handshake", "Handshake"],
  ["compose", "Compose"],
];

export class DetailView {
  constructor(state, api) {
    this.state = state;
    this.api = api;
    this.root = document.getElementById("detail");
    this.tab = "timeline";
    this.handshake = null;
    this.build();
    state.on("selected", () => this.opened());
    state.on("selected-conn", () => this.drawHead());
    state.on("conns", () => this.drawHead());
    state.on("timeline", (detail) => this.timelineChanged(detail || {}));
    state.on("hide-control", () => (this.hideControl.checked = state.hideControl));
    state.on("hello", () => this.drawHead());
  }

  build() {
    this.head = h("div", { class: "detail-head" });
    this.actions = h("div", { class: "detail-actions" });
    this.tabButtons = SUBTABS.map(([key, label]) =>
      h(
        "button",
        {
          role: "tab",
          id: `subtab-${key}`,
          "aria-controls": `panel-${key}`,
          "aria-selected": key === this.tab ? "true" : "false",
          onclick: () => this.showTab(key),
        },
        label,
      ),
    );
    this.hideControl = h("input", {
      type: "checkbox",
      id: "hide-control",
      onchange: () => this.state.setHideControl(this.hideControl.checked).catch(() => {}),
    });
    this.timelineCount = h("span", { class: "muted" });
    this.timelineViewport = h("div", {
      class: "vlist timeline",
      role: "listbox",
      "aria-label": "Messages",
      tabindex: "0",
    });
    this.viewer = new MessageViewer(this.state, this.api);
    this.panels = {
      timeline: h(
        "div",
        { class: "subpanel timeline-panel", id: "panel-timeline", role: "tabpanel", "aria-labelledby": "subtab-timeline" },
        h(
          "div",
          { class: "toolbar" },
          h("label", { title: "Control frames: ping, pong and close (p)" }, this.hideControl, " Hide ping/pong (control frames)"),
          this.timelineCount,
          h("span", { class: "grow" }),
          h("button", { type: "button", onclick: () => this.timeline.scrollToEnd() }, "Newest ↓"),
        ),
        this.timelineViewport,
        this.viewer.root,
      ),
      handshake: h("div", {
        class: "subpanel",
        id: "panel-handshake",
        role: "tabpanel",
        "aria-labelledby": "subtab-handshake",
        hidden: true,
      }),
      compose: h(
        "div",
        { class: "subpanel", id: "panel-compose", role: "tabpanel", "aria-labelledby": "subtab-compose", hidden: true },
        this.composeForms(),
      ),
    };
    this.empty = h("p", { class: "empty" }, "Select a connection.");
    this.body = h(
      "div",
      { class: "subpanel", hidden: true },
      this.head,
      this.actions,
      h("div", { class: "subtabs", role: "tablist", "aria-label": "Connection views" }, this.tabButtons),
      Object.values(this.panels),
    );
    fill(this.root, this.empty, this.body);
    this.timeline = new VirtualList(this.timelineViewport, {
      count: () => this.rowCount(),
      row: (index) => this.messageRow(index),
      onRange: (first) => {
        if (first === 0 && this.state.timeline && !this.state.timeline.atStart) this.loadOlder();
      },
    });
    this.timelineViewport.addEventListener("click", (event) => {
      const row = event.target.closest("[data-seq]");
      if (row) this.chooseMessage(Number(row.dataset.seq));
    });
  }

  showTab(key) {
    this.tab = key;
    for (const button of this.tabButtons) {
      button.setAttribute("aria-selected", button.id === `subtab-${key}` ? "true" : "false");
    }
    for (const [name, panel] of Object.entries(this.panels)) panel.hidden = name !== key;
    if (key === "timeline") this.timeline.refresh();
    if (key === "handshake") this.drawHandshake();
  }

  conn() {
    return this.state.conns.get(this.state.selected) || null;
  }

  async opened() {
    const id = this.state.selected;
    this.empty.hidden = !!id;
    this.body.hidden = !id;
    this.handshake = null;
    this.viewer.show(null);
    this.drawHead();
    this.timeline.scrollToEnd();
    if (!id) return;
    try {
      const detail = await this.api.connection(id);
      if (this.state.selected !== id) return;
      this.handshake = detail;
    } catch (error) {
      this.handshake = { error: error.message };
    }
    if (this.tab === "handshake") this.drawHandshake();
  }

  drawHead() {
    const conn = this.conn();
    if (!conn) return;
    const ws = conn.kind === "websocket";
    const facts = [`client ${conn.client}`, `started ${clock(conn.started)}`];
    if (conn.ended) facts.push(`ended ${clock(conn.ended)}`);
    if (conn.worker != null) facts.push(`worker ${conn.worker}`);
    if (ws) {
      facts.push(`subprotocol ${conn.subprotocol || "none"}`);
      facts.push(`extensions ${conn.extensions && conn.extensions.length ? conn.extensions.join(", ") : "none"}`);
      facts.push(`client → server ${counts(conn, "client")}`, `server → client ${counts(conn, "server")}`);
      if (conn.decoder) facts.push(`decoder ${conn.decoder}`);
    } else {
      facts.push(`HTTP ${conn.status ?? "…"}`);
    }
    const closed = closeSummary(conn);
    fill(
      this.head,
      h(
        "h2",
        { id: "detail-title" },
        h("span", { class: `badge state-${conn.state}` }, conn.state),
        " ",
        ws ? "" : `${conn.method} `,
        conn.url,
      ),
      h("div", { class: "facts" }, facts.join(" · ")),
      closed ? h("div", { class: "facts" }, `Close: ${closed}`) : null,
      conn.error ? h("div", { class: "err" }, `Error: ${conn.error}`) : null,
    );
    const live = ws && conn.state === "open" && !this.state.hello.readonly;
    fill(
      this.actions,
      exportLinks(this.api, () => ({ conn: conn.id }), "this connection"),
    );
    for (const control of this.liveControls || []) control.disabled = !live;
    for (const button of this.tabButtons) {
      if (button.id === "subtab-compose") button.hidden = !ws || this.state.hello.readonly;
    }
    if (!ws && this.tab !== "handshake") this.showTab("handshake");
  }

  drawHandshake() {
    const panel = this.panels.handshake;
    const detail = this.handshake;
    if (!detail) {
      fill(panel, h("p", { class: "muted" }, "Loading…"));
      return;
    }
    if (detail.error) {
      fill(panel, h("p", { class: "error" }, detail.error));
      return;
    }
    const request = detail.request || { headers: [] };
    const response = detail.response || null;
    fill(
      panel,
      h("h3", {}, `Request: ${detail.method || "GET"} ${detail.url}`),
      headerTable(request.headers || [], "Request headers"),
      h("h3", {}, response ? `Response: ${response.status}` : "Response: none yet"),
      response ? headerTable(response.headers || [], "Response headers") : null,
    );
  }

  // -- timeline ----------------------------------------------------------------------------

  rowCount() {
    const t = this.state.timeline;
    if (!t || t.conn !== this.state.selected) return 0;
    return t.msgs.length + (hasHeadRow(t) ? 1 : 0);
  }

  messageRow(index) {
    const t = this.state.timeline;
    if (hasHeadRow(t)) {
      if (index === 0) {
        const text = t.atStart
          ? `${t.firstSeq - 1} older message${t.firstSeq === 2 ? " is" : "s are"} no longer kept (--web-history)`
          : "Loading older messages…";
        return h("div", { class: "vrow loading-row", role: "option", "aria-selected": "false" }, text);
      }
      index -= 1;
    }
    const msg = t.msgs[index];
    const control = ["ping", "pong", "close"].includes(msg.opcode);
    const sizes = msg.wire_size !== undefined && msg.wire_size !== msg.size ? `${bytes(msg.size)} (${bytes(msg.wire_size)} wire)` : bytes(msg.size);
    const text = msg.opcode === "close" && msg.close ? closeText(msg.close) : msg.decoded ? msg.decoded.summary : msg.preview;
    const selected = msg.seq === t.selectedSeq;
    return h(
      "div",
      {
        class: `vrow msg-row${control ? " control" : ""}`,
        role: "option",
        id: `msg-${msg.seq}`,
        "aria-selected": selected ? "true" : "false",
        "aria-label": `#${msg.seq} ${directionText(msg.from)} ${msg.opcode} ${bytes(msg.size)} ${msg.verdict}: ${(text || "").slice(0, 80)}`,
        dataset: { seq: String(msg.seq) },
      },
      h("span", { class: `dir side-${msg.from}`, title: directionText(msg.from) }, arrow(msg.from)),
      h("span", { class: "time" }, clock(msg.ts)),
      h("span", { class: "op" }, msg.opcode),
      h("span", { class: "size", title: "decompressed (on the wire)" }, sizes),
      msg.fragments > 1 ? h("span", { class: "badge muted", title: "fragments" }, `×${msg.fragments}`) : null,
      h("span", { class: `badge verdict-${msg.verdict}` }, msg.verdict),
      h("span", { class: "preview" }, text || ""),
      msg.verdict === "modified" && msg.original_preview !== null && msg.original_preview !== undefined
        ? h("span", { class: "preview muted", title: "original" }, `was: ${msg.original_preview}`)
        : null,
    );
  }

  timelineChanged(detail) {
    const t = this.state.timeline;
    const n = t ? t.msgs.length : 0;
    this.timelineCount.textContent = t && t.loading && !n ? "loading…" : `${n} shown${t && !t.atStart ? " (older above)" : ""}`;
    if (detail.reset) this.timeline.scrollToEnd();
    if (detail.prepended) this.timeline.prepended(detail.prepended);
    else this.timeline.refresh();
  }

  async loadOlder() {
    const t = this.state.timeline;
    if (!t || t.atStart || t.loading) return;
    try {
      await this.state.loadOlder();
    } catch {
      /* the next scroll tries again */
    }
  }

  chooseMessage(seq) {
    const t = this.state.timeline;
    if (!t) return;
    t.selectedSeq = seq;
    this.timelineViewport.setAttribute("aria-activedescendant", `msg-${seq}`);
    this.timeline.refresh();
    this.viewer.show(this.state.selectedMessage());
  }

  /** j/k inside the timeline. */
  moveMessage(step) {
    const t = this.state.timeline;
    if (!t || !t.msgs.length) return;
    let at = t.msgs.findIndex((msg) => msg.seq === t.selectedSeq);
    at = at < 0 ? (step > 0 ? 0 : t.msgs.length - 1) : Math.min(t.msgs.length - 1, Math.max(0, at + step));
    this.timeline.follow = false;
    this.chooseMessage(t.msgs[at].seq);
    this.timeline.reveal(at + (hasHeadRow(t) ? 1 : 0));
  }

  // -- compose, close, abort ---------------------------------------------------------------

  composeForms() {
    const status = h("p", { class: "muted", role: "status", id: "compose-status" });
    const say = (text, bad = false) => {
      status.textContent = text;
      status.className = bad ? "error" : "muted";
    };
    const run = async (what, call) => {
      const id = this.state.selected;
      try {
        await call(id);
        say(`${what}: done`);
      } catch (error) {
        say(`${what} failed: ${error.message}`, true);
      }
    };
    const to = select({ id: "compose-to", "aria-label": "Send to" }, [["server", "server"], ["client", "client"]], "server");
    const kind = select({ id: "compose-kind", "aria-label": "Message type" }, [["text", "text"], ["binary", "binary (hex)"]], "text");
    const body = h("textarea", { id: "compose-body", rows: 5, class: "mono", "aria-label": "Message to send", spellcheck: "false" });
    const send = h("button", { type: "submit", class: "primary" }, "Send");
    const sendForm = h(
      "form",
      {
        class: "block",
        "aria-label": "Send a message",
        onsubmit: (event) => {
          event.preventDefault();
          let payload;
          try {
            payload = kind.value === "text" ? { text: body.value } : { base64: toBase64(fromHex(body.value)) };
          } catch (error) {
            say(`Send: ${error.message}`, true);
            return;
          }
          run(`Send to ${to.value}`, (id) => this.api.sendMessage(id, { to: to.value, ...payload }));
        },
      },
      h("h3", {}, "Send a message"),
      h("div", { class: "row" }, h("label", {}, "To ", to), h("label", {}, "As ", kind)),
      body,
      h("div", { class: "row" }, send),
    );
    const code = h("input", { id: "close-code", type: "number", min: "1000", max: "4999", value: "1000", "aria-label": "Close code" });
    const reason = h("input", { id: "close-reason", type: "text", maxlength: "123", "aria-label": "Close reason" });
    const side = select({ id: "close-side", "aria-label": "Close which side" }, [["both", "both"], ["client", "client"], ["server", "server"]], "both");
    const closeButton = h("button", { type: "submit" }, "Close connection");
    const closeForm = h(
      "form",
      {
        class: "block",
        "aria-label": "Close the connection",
        onsubmit: (event) => {
          event.preventDefault();
          const body = { code: Number(code.value), reason: reason.value, side: side.value };
          run(`Close ${side.value} with ${code.value}`, (id) => this.api.close(id, body));
        },
      },
      h("h3", {}, "Close"),
      h("div", { class: "row" }, h("label", {}, "Code ", code), h("label", {}, "Reason ", reason), h("label", {}, "Side ", side), closeButton),
    );
    const abortButton = h(
      "button",
      {
        type: "button",
        class: "danger",
        onclick: () => run("Abort", (id) => this.api.abort(id)),
      },
      "Abort connection",
    );
    this.liveControls = [send, closeButton, abortButton];
    return [
      sendForm,
      closeForm,
      h("div", { class: "block row" }, abortButton, h("span", { class: "muted" }, "Drops both TCP connections at once, no close frames.")),
      status,
    ];
  }
}

function headerTable(headers, label) {
  return h(
    "table",
    { class: "headers", "aria-label": label },
    h(
      "tbody",
      {},
      headers.map(([name, value]) => h("tr", {}, h("th", { scope: "row" }, name), h("td", {}, value))),
    ),
  );
}
