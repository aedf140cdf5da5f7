// Small DOM helpers. Everything that comes from traffic goes in as text (textContent), never as
// markup: a hostile peer's message must not become script in the page.

/** h("button", {class: "x", onclick: fn, "aria-label": "Close"}, "text", child) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "class") {
      el.className = value;
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "value" || (key in el && typeof value !== "string")) {
      el[key] = value; // a property: a textarea's value has no attribute; checked, disabled...
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** A <select> with `options` ([value, label] pairs or plain values) and `value` chosen. */
export function select(attrs, options, value) {
  return h(
    "select",
    attrs,
    options.map((option) => {
      const [v, label] = Array.isArray(option) ? option : [option, option];
      return h("option", { value: v, selected: v === value }, label);
    }),
  );
}
