// wsproxy web UI: the entry point. Token first (or the token screen), then the state from REST,
// then live updates from /api/updates; views redraw from the state.

import { Api, Updates, forgetToken, saveToken, takeToken } from "./api.js";
import { State } from "./state.js";
import { ConnectionsView } from "./connections.js";
import { DetailView } from "./detail.js";
import { BreakpointsView } from "./breakpoints.js";
import { installKeys } from "./keys.js";
import { installTheme } from "./theme.js";

function tokenScreen(reason) {
  document.getElementById("app").hidden = true;
  const screen = document.getElementById("token-screen");
  screen.hidden = false;
  if (reason) document.getElementById("token-reason").textContent = reason;
  const form = document.getElementById("token-form");
  form.onsubmit = (event) => {
    event.preventDefault();
    saveToken(document.getElementById("token-input").value.trim());
    location.reload();
  };
  document.getElementById("token-input").focus();
}

let unauthorized = false;
function onUnauthorized() {
  if (unauthorized) return;
  unauthorized = true;
  forgetToken();
  if (window.wsproxyUpdates) window.wsproxyUpdates.stop();
  tokenScreen("The token was not accepted (wrong, or the UI server restarted with a new one). Paste the token wsproxy-web printed.");
}

function tabs(state) {
  const buttons = [document.getElementById("tab-traffic"), document.getElementById("tab-breakpoints")];
  const show = (name) => {
    for (const button of buttons) {
      const on = button.id === `tab-${name}`;
      button.setAttribute("aria-selected", on ? "true" : "false");
      button.tabIndex = on ? 0 : -1;
      document.getElementById(button.getAttribute("aria-controls")).hidden = !on;
    }
    state.view = name;
    state.emit("view", name);
  };
  buttons[0].addEventListener("click", () => show("traffic"));
  buttons[1].addEventListener("click", () => show("breakpoints"));
  state.view = "traffic";
  return show;
}

async function main() {
  const token = takeToken();
  if (!token) {
    tokenScreen();
    return;
  }
  const api = new Api(token, { onUnauthorized });
  const state = new State(api);
  document.getElementById("app").hidden = false;
  installTheme();
  const showView = tabs(state);
  const connections = new ConnectionsView(state, api);
  const detail = new DetailView(state, api);
  const breakpoints = new BreakpointsView(state, api);
  installKeys({ state, connections, detail, breakpoints, showView });

  const status = document.getElementById("link-status");
  const setStatus = (text, down = false) => {
    status.textContent = text;
    status.classList.toggle("down", down);
  };
  const updates = new Updates(token, {
    onHello: (hello) => {
      state.hello = hello;
      document.getElementById("readonly-badge").hidden = !hello.readonly;
      state.emit("hello");
    },
    onBatch: (events) => state.applyBatch(events),
    onOpen: () => {
      setStatus("live");
      state.refetchAll().catch(() => {});
    },
    onDown: () => {
      setStatus("disconnected: reconnecting…", true);
      // A refused WebSocket does not say why; a REST call does (401 -> the token screen).
      api.pauses().catch(() => {});
    },
  });
  window.wsproxyUpdates = updates;
  window.wsproxyState = state; // for the browser console and the tests' checks
  window.wsproxyViews = { connections, detail, breakpoints };
  updates.start();
}

main();
