// Breakpoints: the rule list (edited here, saved whole with PUT /api/breakpoints), the paused
// items as they arrive, and the editor that resolves one (forward, edited, drop, answer;
// for a handshake: edited headers or a refusal).

import { h, fill, select } from "./dom.js";
import { bytes, directionText, fromBase64, fromHex, toBase64, toHex } from "./format.js";

const NEW_RULE = { filter: "", direction: "both", on: "message", timeout: 60, default: "forward", enabled: true };

export class BreakpointsView {
  constructor(state, api) {
    this.state = state;
    this.api = api;
    this.rulesRoot = document.getElementById("rules");
    this.rulesError = document.getElementById("rules-error");
    this.rulesStatus = document.getElementById("rules-status");
    this.pauseList = document.getElementById("pause-list");
    this.editor = document.getElementById("pause-editor");
    this.count = document.getElementById("paused-count");
    this.draft = null; // the rules as edited here, until saved
    this.badRule = null;
    this.selectedPause = null;
    this.notice = null;
    this.editing = null; // the pause whose editor is on screen (redraws keep what was typed)
    this.actions = null; // the editor's forward/drop/edit, for the keyboard
    document.getElementById("add-rule").addEventListener("click", () => this.addRule());
    document.getElementById("save-rules").addEventListener("click", () => this.save());
    this.pauseList.addEventListener("click", (event) => {
      const item = event.target.closest("[data-pause]");
      if (item) this.choose(item.dataset.pause);
    });
    state.on("breakpoints", () => this.rulesChanged());
    state.on("pauses", () => this.drawPauses());
    state.on("resumed", (event) => this.resumed(event));
    state.on("hello", () => this.drawRules());
    setInterval(() => this.tick(), 1000);
    this.drawRules();
    this.drawPauses();
  }

  // -- rules -------------------------------------------------------------------------------

  rules() {
    return this.draft || this.state.breakpoints;
  }

  rulesChanged() {
    if (this.draft) {
      this.rulesStatus.textContent = "The rules changed on the server; saving replaces them with these.";
      return;
    }
    this.drawRules();
  }

  edit(index, key, value) {
    if (!this.draft) this.draft = this.state.breakpoints.map((rule) => ({ ...rule }));
    this.draft[index][key] = value;
    this.rulesStatus.textContent = "Not saved yet.";
  }

  addRule() {
    if (!this.draft) this.draft = this.state.breakpoints.map((rule) => ({ ...rule }));
    this.draft.push({ id: this.newId(), ...NEW_RULE });
    this.rulesStatus.textContent = "Not saved yet.";
    this.drawRules();
    const inputs = this.rulesRoot.querySelectorAll("input[type=text]");
    if (inputs.length) inputs[inputs.length - 1].focus();
  }

  newId() {
    const used = new Set(this.rules().map((rule) => rule.id));
    let n = this.rules().length + 1;
    while (used.has(`b${n}`)) n++;
    return `b${n}`;
  }

  remove(index) {
    if (!this.draft) this.draft = this.state.breakpoints.map((rule) => ({ ...rule }));
    this.draft.splice(index, 1);
    this.rulesStatus.textContent = "Not saved yet.";
    this.drawRules();
  }

  async save() {
    const rules = this.rules().map((rule) => ({ ...rule, timeout: Number(rule.timeout) }));
    fill(this.rulesError);
    this.badRule = null;
    try {
      const result = await this.api.setBreakpoints(rules);
      this.draft = null;
      if (result && result.breakpoints) this.state.breakpoints = result.breakpoints;
      this.rulesStatus.textContent = `Saved: ${rules.length} rule${rules.length === 1 ? "" : "s"}.`;
    } catch (error) {
      const body = error.body || {};
      const index = body.index ?? body.rule ?? this.guessBadRule(rules, error.message);
      this.badRule = index;
      const lines = [error.message];
      if (index !== null && index !== undefined && error.column && rules[index]) {
        lines.push(rules[index].filter, `${" ".repeat(Math.max(0, error.column - 1))}^`);
      }
      fill(this.rulesError, lines.join("\n"));
      this.rulesStatus.textContent = "Not saved.";
    }
    this.drawRules();
  }

  /** The rule a filter error is about, when the server did not say: the one whose filter the
   * message quotes. */
  guessBadRule(rules, message) {
    const index = rules.findIndex((rule) => rule.filter && message.includes(JSON.stringify(rule.filter).slice(1, -1)));
    return index < 0 ? null : index;
  }

  drawRules() {
    const readonly = this.state.hello.readonly;
    const rules = this.rules();
    if (!rules.length) {
      fill(this.rulesRoot, h("p", { class: "empty" }, "No rules. Add one to pause matching traffic."));
      return;
    }
    const rows = rules.map((rule, index) => {
      const n = index + 1;
      const change = (key, read) => (event) => this.edit(index, key, read(event.target));
      return h(
        "tr",
        { class: index === this.badRule ? "bad" : "" },
        h("td", {}, h("input", { type: "checkbox", checked: !!rule.enabled, "aria-label": `Rule ${n} enabled`, onchange: change("enabled", (t) => t.checked) })),
        h("td", {}, h("input", { type: "text", value: rule.filter, spellcheck: "false", placeholder: "~u chat & ~b secret", "aria-label": `Rule ${n} filter`, oninput: change("filter", (t) => t.value) })),
        h("td", {}, select({ "aria-label": `Rule ${n} direction`, onchange: change("direction", (t) => t.value) }, [["both", "both"], ["client", "from client"], ["server", "from server"]], rule.direction)),
        h("td", {}, select({ "aria-label": `Rule ${n} pauses on`, onchange: change("on", (t) => t.value) }, [["message", "message"], ["handshake", "handshake"]], rule.on)),
        h("td", {}, h("input", { type: "number", min: "1", value: String(rule.timeout), "aria-label": `Rule ${n} timeout in seconds`, oninput: change("timeout", (t) => t.value) })),
        h("td", {}, select({ "aria-label": `Rule ${n} default action`, onchange: change("default", (t) => t.value) }, [["forward", "forward"], ["drop", "drop"]], rule.default)),
        h("td", {}, h("button", { type: "button", "aria-label": `Remove rule ${n}`, onclick: () => this.remove(index) }, "✕")),
      );
    });
    fill(
      this.rulesRoot,
      h(
        "table",
        { "aria-label": "Breakpoint rules" },
        h("thead", {}, h("tr", {}, ["On", "Filter", "Direction", "Pause on", "Timeout (s)", "Then", ""].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows),
      ),
    );
    for (const control of this.rulesRoot.querySelectorAll("input, select, button")) control.disabled = readonly;
  }

  // -- pauses ------------------------------------------------------------------------------

  pauses() {
    return [...this.state.pauses.values()];
  }

  drawPauses() {
    const pauses = this.pauses();
    this.count.textContent = String(pauses.length);
    this.count.classList.toggle("hot", pauses.length > 0);
    if (this.selectedPause && !this.state.pauses.has(this.selectedPause)) this.selectedPause = null;
    if (!this.selectedPause && pauses.length) this.selectedPause = pauses[0].id;
    if (!pauses.length) {
      fill(this.pauseList, h("p", { class: "empty" }, "Nothing is paused."));
    } else {
      fill(
        this.pauseList,
        pauses.map((pause) => {
          const conn = this.state.conns.get(pause.conn);
          const what = pause.on === "handshake" ? `handshake ${pause.request ? pause.request.url : ""}` : `${directionText(pause.from)} ${pause.msg ? pause.msg.opcode : ""}`;
          const preview = pause.on === "handshake" ? "" : pause.text ?? (pause.msg ? pause.msg.preview : "");
          return h(
            "div",
            {
              class: "pause-item",
              role: "option",
              id: `pause-${pause.id}`,
              "aria-selected": pause.id === this.selectedPause ? "true" : "false",
              "aria-label": `Paused ${what}: ${(preview || "").slice(0, 60)}`,
              dataset: { pause: pause.id },
            },
            h("div", {}, h("strong", {}, what), " ", h("span", { class: "deadline", dataset: { deadline: String(pause.deadline) } }, remaining(pause.deadline))),
            h("div", { class: "facts" }, `${pause.conn}${conn ? ` ${conn.url}` : ""}`),
            preview ? h("div", { class: "facts mono" }, preview.slice(0, 120)) : null,
          );
        }),
      );
    }
    this.pauseList.setAttribute("aria-activedescendant", this.selectedPause ? `pause-${this.selectedPause}` : "");
    this.drawEditor();
  }

  choose(id) {
    this.selectedPause = id;
    this.notice = null;
    this.drawPauses();
  }

  move(step) {
    const pauses = this.pauses();
    if (!pauses.length) return;
    const at = pauses.findIndex((p) => p.id === this.selectedPause);
    const next = Math.min(pauses.length - 1, Math.max(0, at + step));
    this.choose(pauses[next].id);
  }

  resumed(event) {
    if (event.pause === this.editing) {
      this.notice = `${event.pause} was resumed: ${event.action}.`;
      this.editing = null;
    }
  }

  tick() {
    for (const el of document.querySelectorAll(".deadline[data-deadline]")) {
      el.textContent = remaining(Number(el.dataset.deadline));
    }
  }

  drawEditor() {
    const pause = this.state.pauses.get(this.selectedPause);
    if (!pause) {
      this.editing = null;
      this.actions = null;
      fill(this.editor, this.notice ? h("p", { class: "notice", role: "status" }, this.notice) : null);
      return;
    }
    if (this.editing === pause.id) return; // keep what the user typed
    this.editing = pause.id;
    this.notice = null;
    fill(this.editor, pause.on === "handshake" ? this.handshakeEditor(pause) : this.messageEditor(pause));
  }

  messageEditor(pause) {
    const msg = pause.msg || {};
    const binary = pause.text === null || pause.text === undefined;
    const original = binary ? toHex(pause.base64 ? fromBase64(pause.base64) : new Uint8Array(0)) : pause.text;
    const label = binary ? "Message (hex)" : "Message (text)";
    const body = h("textarea", { id: "pause-body", class: "mono", rows: 8, spellcheck: "false", "aria-label": label, value: original });
    const answer = h("textarea", { id: "pause-answer", class: "mono", rows: 3, spellcheck: "false", "aria-label": "Answer text" });
    const status = h("p", { class: "error", role: "alert" });
    const act = (action) => this.resolve(pause, action, status);
    const edited = () => {
      if (!binary) return { action: "forward", text: body.value };
      return { action: "forward", base64: toBase64(fromHex(body.value)) };
    };
    body.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        act(edited);
      }
    });
    this.actions = { forward: () => act({ action: "forward" }), drop: () => act({ action: "drop" }), edit: () => body.focus() };
    return [
      h("h3", {}, `Paused message ${directionText(pause.from)} on ${pause.conn}`),
      h(
        "p",
        { class: "muted" },
        `${msg.opcode || ""} · ${bytes(msg.size)} · `,
        h("span", { class: "deadline", dataset: { deadline: String(pause.deadline) } }, remaining(pause.deadline)),
      ),
      msg.decoded ? h("p", { class: "mono" }, msg.decoded.summary) : null,
      h("label", { for: "pause-body" }, label),
      body,
      h(
        "div",
        { class: "row" },
        h("button", { type: "button", onclick: () => act({ action: "forward" }), title: "f" }, "Forward"),
        h("button", { type: "button", class: "primary", onclick: () => act(edited), title: "Ctrl+Enter" }, "Forward edited"),
        h("button", { type: "button", class: "danger", onclick: () => act({ action: "drop" }), title: "d" }, "Drop"),
      ),
      h("label", { for: "pause-answer" }, "Answer (sent back to the sender instead)"),
      answer,
      h("div", { class: "row" }, h("button", { type: "button", onclick: () => act(() => ({ action: "answer", text: answer.value })) }, "Answer")),
      status,
    ];
  }

  handshakeEditor(pause) {
    const request = pause.request || { method: "GET", url: "", headers: [] };
    const original = (request.headers || []).map(([k, v]) => `${k}: ${v}`).join("\n");
    const headers = h("textarea", { id: "pause-headers", class: "mono", rows: 10, spellcheck: "false", "aria-label": "Request headers", value: original });
    const status = h("input", { id: "refuse-status", type: "number", min: "400", max: "599", value: "403", "aria-label": "Refuse with status" });
    const problem = h("p", { class: "error", role: "alert" });
    const act = (action) => this.resolve(pause, action, problem);
    const forward = () => {
      if (headers.value === original) return { action: "forward" };
      return { action: "forward", headers: parseHeaders(headers.value) };
    };
    this.actions = { forward: () => act(forward), drop: () => act(() => ({ action: "refuse", status: Number(status.value) })), edit: () => headers.focus() };
    return [
      h("h3", {}, `Paused handshake on ${pause.conn}`),
      h("p", { class: "mono" }, `${request.method} ${request.url}`),
      h("p", { class: "muted" }, h("span", { class: "deadline", dataset: { deadline: String(pause.deadline) } }, remaining(pause.deadline))),
      h("label", { for: "pause-headers" }, "Request headers (one “Name: value” a line)"),
      headers,
      h(
        "div",
        { class: "row" },
        h("button", { type: "button", class: "primary", onclick: () => act(forward) }, "Forward"),
        h("label", {}, "Status ", status),
        h("button", { type: "button", class: "danger", onclick: () => act(() => ({ action: "refuse", status: Number(status.value) })) }, "Refuse"),
      ),
      problem,
    ];
  }

  /** `action` is a dict or a function making one (it may throw: bad hex, bad header line). */
  async resolve(pause, action, status) {
    let body;
    try {
      body = typeof action === "function" ? action() : action;
    } catch (error) {
      status.textContent = error.message;
      return;
    }
    try {
      await this.api.resolve(pause.id, body);
      status.textContent = "";
      this.state.pauses.delete(pause.id);
      this.notice = `${pause.id}: ${body.action} sent.`;
      this.editing = null;
      this.drawPauses();
    } catch (error) {
      status.textContent = `${body.action} failed: ${error.message}`;
    }
  }

  /** Keyboard: f, d, e on the selected pause. */
  key(name) {
    if (!this.state.pauses.has(this.selectedPause)) return false;
    if (!this.actions || this.editing !== this.selectedPause) return false;
    this.actions[name]();
    return true;
  }
}

function remaining(deadline) {
  if (!deadline) return "";
  const left = Math.max(0, Math.round(deadline - Date.now() / 1000));
  return `${left} s left`;
}

function parseHeaders(text) {
  return text
    .split("\n")
    .filter((line) => line.trim())
    .map((line, index) => {
      const at = line.indexOf(":");
      if (at <= 0) throw new Error(`header line ${index + 1} has no "Name: value"`);
      return [line.slice(0, at).trim(), line.slice(at + 1).trim()];
    });
}
