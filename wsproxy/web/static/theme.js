// Light and dark themes: the system's preference unless the toggle chose one (kept in
// localStorage). The toggle cycles automatic -> light -> dark.

const KEY = "wsproxy-web-theme";
const ORDER = ["auto", "light", "dark"];

function apply(theme) {
  const root = document.documentElement;
  if (theme === "auto") root.removeAttribute("data-theme");
  else root.dataset.theme = theme;
  const button = document.getElementById("theme-toggle");
  const label = { auto: "automatic", light: "light", dark: "dark" }[theme];
  button.setAttribute("aria-label", `Theme: ${label}`);
  button.textContent = { auto: "◐", light: "☀", dark: "☾" }[theme];
}

export function installTheme() {
  let theme = localStorage.getItem(KEY) || "auto";
  if (!ORDER.includes(theme)) theme = "auto";
  apply(theme);
  document.getElementById("theme-toggle").addEventListener("click", () => cycleTheme());
}

export function cycleTheme() {
  const now = localStorage.getItem(KEY) || "auto";
  const next = ORDER[(ORDER.indexOf(now) + 1) % ORDER.length];
  localStorage.setItem(KEY, next);
  apply(next);
}
