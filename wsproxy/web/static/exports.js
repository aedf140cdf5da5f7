// Export links (HAR, JSONL, mitmproxy flows) for one connection or the filtered list. They are
// real links to /api/export; a click downloads through fetch, which can send the token.

import { h } from "./dom.js";

const FORMATS = [
  ["har", "HAR"],
  ["jsonl", "JSONL"],
  ["mitm", "mitm"],
];

/** `scope()` gives {conn} or {filter} at click time; `what` names it for the labels. */
export function exportLinks(api, scope, what) {
  return [
    h("span", { class: "muted" }, "Export"),
    FORMATS.map(([format, label]) => {
      const link = h(
        "a",
        {
          href: api.exportUrl(format, scope()),
          "aria-label": `Export ${what} as ${label}`,
          onclick: (event) => {
            event.preventDefault();
            const url = api.exportUrl(format, scope());
            api.download(url, `wsproxy.${format === "mitm" ? "mitm" : format}`).catch((error) => {
              link.title = `export failed: ${error.message}`;
            });
          },
          onmouseenter: () => (link.href = api.exportUrl(format, scope())),
          onfocus: () => (link.href = api.exportUrl(format, scope())),
        },
        label,
      );
      return link;
    }),
  ];
}
