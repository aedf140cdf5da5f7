// The connections list (virtual, newest last) and its filter box.

import { h, fill } from "./dom.js";
import { VirtualList } from "./vlist.js";
import { closeSummary, counts } from "./format.js";
import { exportLinks } from "./exports.js";

export class ConnectionsView {
  constructor(state, api) {
    this.state = state;
    this.api = api;
    this.viewport = document.getElementById("conn-list");
    this.filterInput = document.getElementById("filter");
    this.filterError = document.getElementById("filter-error");
    this.countLabel = document.getElementById("conn-count");
    this.list = new VirtualList(this.viewport, {
      count: () => state.order.length,
      row: (index) => this.row(index),
    });
    this.viewport.addEventListener("click", (event) => {
      const row = event.target.closest("[data-conn]");
      if (row) this.choose(row.dataset.conn);
    });
    this.viewport.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && state.selected) this.state.emit("open-detail");
    });
    let timer = null;
    this.filterInput.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => this.applyFilter(), 300);
    });
    this.filterInput.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        clearTimeout(timer);
        this.applyFilter();
      }
    });
    state.on("conns", () => this.redraw());
    state.on("selected", () => this.redraw());
    state.on("filter-error", () => this.showFilterError());
    fill(
      document.getElementById("export-list"),
      exportLinks(api, () => ({ filter: state.filter }), "the listed connections"),
    );
  }

  applyFilter() {
    this.state.setFilter(this.filterInput.value).catch(() => {});
  }

  showFilterError() {
    const problem = this.state.filterError;
    this.filterInput.setAttribute("aria-invalid", problem ? "true" : "false");
    if (!problem) {
      fill(this.filterError);
      return;
    }
    const lines = [problem.message];
    if (problem.column) {
      // the expression with a caret under the column the server named (counted from 1)
      lines.push(this.state.filter, `${" ".repeat(Math.max(0, problem.column - 1))}^`);
    }
    fill(this.filterError, lines.join("\n"));
  }

  redraw() {
    const n = this.state.order.length;
    this.countLabel.textContent = `(${n}${this.state.filter ? " matching" : ""})`;
    this.list.refresh();
  }

  choose(id) {
    if (id === this.state.selected) return;
    this.state.select(id).catch(() => {});
  }

  /** Move the selection by `step` rows (j/k). */
  move(step) {
    const order = this.state.order;
    if (!order.length) return;
    const at = order.indexOf(this.state.selected);
    const next = at < 0 ? (step > 0 ? 0 : order.length - 1) : Math.min(order.length - 1, Math.max(0, at + step));
    this.list.follow = false;
    this.choose(order[next]);
    this.list.reveal(next);
  }

  row(index) {
    const conn = this.state.connAt(index);
    const selected = conn.id === this.state.selected;
    const isWs = conn.kind === "websocket";
    const facts = [conn.client];
    if (conn.worker != null) facts.push(`worker ${conn.worker}`);
    if (isWs) {
      facts.push(`→ ${counts(conn, "client")}`, `← ${counts(conn, "server")}`);
      if (conn.subprotocol) facts.push(`subprotocol ${conn.subprotocol}`);
      if (conn.decoder) facts.push(conn.decoder);
      if (conn.extensions && conn.extensions.length) facts.push(conn.extensions.join(", "));
    } else if (conn.status) {
      facts.push(`HTTP ${conn.status}`);
    }
    const closed = closeSummary(conn);
    if (closed) facts.push(closed);
    const label = `${isWs ? "WebSocket" : conn.method} ${conn.url} ${conn.state}`;
    return h(
      "div",
      {
        class: "vrow conn-row",
        role: "option",
        id: `conn-${conn.id}`,
        "aria-selected": selected ? "true" : "false",
        "aria-label": label,
        dataset: { conn: conn.id },
      },
      h(
        "div",
        { class: "line" },
        h("span", { class: `badge state-${conn.state}` }, conn.state),
        h("span", { class: "badge muted" }, isWs ? "ws" : conn.method || "http"),
        h("span", { class: "url", title: conn.url }, conn.url),
      ),
      h(
        "div",
        { class: "line facts" },
        facts.join(" · "),
        conn.error ? h("span", { class: "err" }, ` ⚠ ${conn.error}`) : null,
      ),
    );
  }
}
