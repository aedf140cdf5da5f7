// Keyboard shortcuts (the help dialog lists them). Keys typed into a field stay the field's,
// except Escape, which leaves it.

import { cycleTheme } from "./theme.js";

export function installKeys({ state, connections, detail, breakpoints, showView }) {
  const help = document.getElementById("help");
  document.getElementById("help-button").addEventListener("click", () => help.showModal());
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing = target.closest && target.closest("input, textarea, select, [contenteditable]");
    if (event.key === "Escape" && typing) {
      target.blur();
      return;
    }
    if (typing || event.ctrlKey || event.metaKey || event.altKey || help.open) return;
    const inTimeline = target.closest && target.closest(".timeline, .viewer");
    const handled = (() => {
      switch (event.key) {
        case "/":
          showView("traffic");
          document.getElementById("filter").focus();
          return true;
        case "?":
          help.showModal();
          return true;
        case "t":
          cycleTheme();
          return true;
        case "b":
          showView("breakpoints");
          return true;
        case "c":
          showView("traffic");
          return true;
        case "p":
          document.getElementById("hide-control").click();
          return true;
        case "j":
        case "k": {
          const step = event.key === "j" ? 1 : -1;
          if (state.view === "breakpoints") breakpoints.move(step);
          else if (inTimeline) detail.moveMessage(step);
          else connections.move(step);
          return true;
        }
        case "f":
          return breakpointKey("forward");
        case "d":
          return breakpointKey("drop");
        case "e":
          return breakpointKey("edit");
        default:
          return false;
      }
    })();
    if (handled) event.preventDefault();
  });

  /** f/d/e act on the selected paused item, from any view (switching to Breakpoints). */
  function breakpointKey(name) {
    if (!state.pauses.size) return false;
    if (state.view !== "breakpoints") showView("breakpoints");
    return breakpoints.key(name);
  }
}
