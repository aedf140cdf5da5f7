// A virtual list: only the rows in view (plus a few either side) exist in the DOM, so a list
// of 100,000 messages costs as much to draw as one of 40. Rows have one fixed height (the CSS
// variable --row-height), which makes the row under any scroll offset a division away.

const OVERSCAN = 8;

export class VirtualList {
  /**
   * @param {HTMLElement} viewport a scrolling element (overflow: auto) with a fixed height
   * @param {{count: () => number, row: (index: number) => HTMLElement,
   *          onRange?: (first: number, last: number) => void}} source
   */
  constructor(viewport, source) {
    this.viewport = viewport;
    this.source = source;
    this.spacer = document.createElement("div");
    this.spacer.className = "vlist-spacer";
    this.spacer.setAttribute("role", "presentation");
    this.rows = document.createElement("div");
    this.rows.className = "vlist-rows";
    this.rows.setAttribute("role", "presentation");
    viewport.append(this.spacer, this.rows);
    this.follow = true; // keep the newest row in view while the user is at the bottom
    this.queued = false;
    viewport.addEventListener("scroll", () => {
      const bottom = viewport.scrollHeight - viewport.clientHeight;
      this.follow = viewport.scrollTop >= bottom - this.rowHeight();
      this.refresh();
    });
    new ResizeObserver(() => this.refresh()).observe(viewport);
  }

  rowHeight() {
    if (!this.height) {
      const value = getComputedStyle(this.viewport).getPropertyValue("--row-height");
      this.height = parseFloat(value) || 28;
    }
    return this.height;
  }

  /** Redraw at the next animation frame (many changes in one batch draw once). */
  refresh() {
    if (this.queued) return;
    this.queued = true;
    requestAnimationFrame(() => {
      this.queued = false;
      this.draw();
    });
  }

  /** Rows were added in front (older pages): keep the rows the user looks at where they are. */
  prepended(count) {
    this.spacer.style.height = `${this.source.count() * this.rowHeight()}px`;
    this.viewport.scrollTop += count * this.rowHeight();
    this.draw();
  }

  scrollToEnd() {
    this.follow = true;
    this.draw();
  }

  /** Bring row `index` into view (for keyboard moves). */
  reveal(index) {
    const height = this.rowHeight();
    const top = index * height;
    const view = this.viewport;
    if (top < view.scrollTop) view.scrollTop = top;
    else if (top + height > view.scrollTop + view.clientHeight) {
      view.scrollTop = top + height - view.clientHeight;
    }
    this.draw();
  }

  draw() {
    const count = this.source.count();
    const height = this.rowHeight();
    const view = this.viewport;
    this.spacer.style.height = `${count * height}px`;
    if (this.follow) view.scrollTop = view.scrollHeight;
    const first = Math.max(0, Math.floor(view.scrollTop / height) - OVERSCAN);
    const last = Math.min(count, Math.ceil((view.scrollTop + view.clientHeight) / height) + OVERSCAN);
    const rows = [];
    for (let index = first; index < last; index++) {
      const row = this.source.row(index);
      row.style.transform = `translateY(${index * height}px)`;
      rows.push(row);
    }
    this.rows.replaceChildren(...rows);
    if (this.source.onRange) this.source.onRange(first, last);
  }

  /** How many DOM rows exist now (the tests check it stays small). */
  renderedRows() {
    return this.rows.childElementCount;
  }
}
