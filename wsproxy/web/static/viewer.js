// The message viewer: text, pretty JSON, hex or the decoder's fields of one message. Large
// payloads are read only in part (SHOWN bytes) with a link to download the whole.

import { h, fill } from "./dom.js";
import { bytes, clock, closeText, directionText, hexDump, prettyJson, utf8 } from "./format.js";

const SHOWN = 256 * 1024;
const MODES = [
  ["text", "Text"],
  ["json", "JSON"],
  ["hex", "Hex"],
  ["decoded", "Decoded"],
];

export class MessageViewer {
  constructor(state, api) {
    this.state = state;
    this.api = api;
    this.mode = "text";
    this.msg = null;
    this.content = null; // {data, more} | {evicted: true} | {error}
    this.root = h("section", { class: "viewer", "aria-label": "Message" });
    this.show(null);
  }

  async show(msg) {
    this.msg = msg;
    this.content = null;
    this.replay = null;
    this.draw();
    if (!msg) return;
    const conn = this.state.selected;
    if (["ping", "pong", "close"].includes(msg.opcode) && !msg.size) {
      this.content = { data: new Uint8Array(0), more: false };
      this.draw();
      return;
    }
    try {
      this.content = await this.api.content(conn, msg.seq, SHOWN);
    } catch (error) {
      this.content = error.status === 410 ? { evicted: true } : { error: error.message };
    }
    if (this.msg === msg) this.draw();
  }

  draw() {
    const msg = this.msg;
    if (!msg) {
      fill(this.root, h("p", { class: "muted" }, "Select a message to see it whole."));
      return;
    }
    const conn = this.state.selected;
    const facts = [
      directionText(msg.from),
      clock(msg.ts),
      msg.opcode,
      `${bytes(msg.size)} decompressed`,
      `${bytes(msg.wire_size)} on the wire`,
      `${msg.fragments} fragment${msg.fragments === 1 ? "" : "s"}`,
      msg.verdict,
    ];
    if (msg.close) facts.push(`close ${closeText(msg.close)}`);
    const radios = MODES.map(([key, label]) =>
      h(
        "label",
        {},
        h("input", {
          type: "radio",
          name: "view-mode",
          value: key,
          checked: key === this.mode,
          onchange: () => {
            this.mode = key;
            this.draw();
          },
        }),
        label,
      ),
    );
    const contentUrl = this.api.contentUrl(conn, msg.seq);
    const download = h(
      "a",
      {
        href: contentUrl,
        onclick: (event) => {
          event.preventDefault();
          this.api.download(contentUrl, `${conn}-${msg.seq}.bin`).catch(() => {});
        },
      },
      `Download the whole message (${bytes(msg.size)})`,
    );
    const replayButton = h("button", { type: "button", onclick: () => this.copyReplay() }, "Copy as wsproxy replay");
    fill(
      this.root,
      h(
        "div",
        { class: "viewer-head" },
        h("h3", {}, `Message #${msg.seq}`),
        h("span", { class: "muted" }, facts.join(" · ")),
      ),
      h(
        "div",
        { class: "viewer-head" },
        h("fieldset", { class: "views", "aria-label": "View as" }, radios),
        h("span", { class: "grow" }),
        replayButton,
      ),
      this.replay
        ? h("textarea", { class: "replay mono", rows: 2, readonly: true, "aria-label": "Replay command", value: this.replay })
        : null,
      msg.verdict === "modified" && msg.original_preview != null
        ? h(
            "div",
            { class: "compare" },
            h("div", {}, h("h3", {}, "Original (as received)"), h("pre", { class: "payload", "aria-label": "Original message" }, msg.original_preview)),
            h("div", {}, h("h3", {}, "Forwarded"), this.body(msg)),
          )
        : this.body(msg),
      this.content && this.content.more
        ? h("p", { class: "muted" }, `Showing the first ${bytes(SHOWN)} of ${bytes(msg.size)}. `, download)
        : h("p", { class: "muted" }, download),
    );
  }

  body(msg) {
    const pre = (text, cls = "") => h("pre", { class: `payload ${cls}`, "aria-label": "Message content" }, text);
    if (this.mode === "decoded") {
      if (!msg.decoded) return pre("No decoder recognised this message.", "muted");
      const fields = Object.entries(msg.decoded).filter(([key]) => key !== "summary");
      return h(
        "div",
        { class: "payload" },
        h("p", {}, msg.decoded.summary || ""),
        h(
          "dl",
          { class: "fields" },
          fields.map(([key, value]) => [h("dt", {}, key), h("dd", {}, typeof value === "string" ? value : JSON.stringify(value))]),
        ),
      );
    }
    const content = this.content;
    if (!content) return pre(msg.preview || "", "muted");
    if (content.error) return pre(`Could not load the payload: ${content.error}`, "error");
    if (content.evicted) {
      return pre(`${msg.preview || ""}\n\n(The payload is gone from the UI's history: only this preview is left.)`, "muted");
    }
    const data = content.data;
    if (this.mode === "hex") return pre(hexDump(data), "mono");
    const text = utf8(data);
    if (this.mode === "json") {
      const pretty = prettyJson(text);
      if (pretty instanceof Error) {
        return pre(content.more ? "Only part of the message is loaded: download it to see it as JSON." : pretty.message, "muted");
      }
      return pre(pretty);
    }
    return pre(msg.opcode === "binary" ? hexDump(data) : text);
  }

  async copyReplay() {
    const msg = this.msg;
    if (!msg) return;
    try {
      const { command } = await this.api.replay(this.state.selected, msg.seq);
      this.replay = command;
      try {
        await navigator.clipboard.writeText(command);
      } catch {
        /* no clipboard permission: the command is in the box to copy by hand */
      }
    } catch (error) {
      this.replay = `replay unavailable: ${error.message}`;
    }
    if (this.msg === msg) this.draw();
  }
}
