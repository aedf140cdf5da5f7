// The page's side of the UI server's contract (/work/notes/ui-api.md): the token, REST calls
// with "Authorization: Bearer", and the /api/updates push channel.

const TOKEN_KEY = "wsproxy-web-token";

/** The token: ?token= of this load (then kept for the tab's session and taken out of the
 * address bar, so it does not linger in history or screenshots), else the one kept. */
export function takeToken() {
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get("token");
  if (fromUrl) {
    sessionStorage.setItem(TOKEN_KEY, fromUrl);
    url.searchParams.delete("token");
    history.replaceState(null, "", url.pathname + url.search + url.hash);
    return fromUrl;
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

export function saveToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** An HTTP error from the UI server, with its JSON body's message (and column, for filters). */
export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
    this.column = this.body.column ?? null;
  }
}

export class Api {
  constructor(token, { onUnauthorized }) {
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  headers(extra = {}) {
    return { Authorization: `Bearer ${this.token}`, ...extra };
  }

  /** fetch with the token; a 401 anywhere sends the page to the token screen. */
  async raw(path, options = {}) {
    const response = await fetch(path, { ...options, headers: this.headers(options.headers) });
    if (response.status === 401) this.onUnauthorized();
    if (!response.ok) {
      let body = null;
      try {
        body = await response.json();
      } catch {
        body = null;
      }
      throw new ApiError(response.status, body);
    }
    return response;
  }

  async get(path) {
    return (await this.raw(path)).json();
  }

  async send(method, path, body) {
    const response = await this.raw(path, {
      method,
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body ?? {}),
    });
    return response.json();
  }

  connections(filter) {
    const query = filter ? `?filter=${encodeURIComponent(filter)}` : "";
    return this.get(`/api/connections${query}`);
  }

  connection(id) {
    return this.get(`/api/connections/${enc(id)}`);
  }

  messages(id, { after, limit, control }) {
    const query = new URLSearchParams({ after: String(after), limit: String(limit) });
    query.set("control", control ? "1" : "0");
    return this.get(`/api/connections/${enc(id)}/messages?${query}`);
  }

  contentUrl(id, seq) {
    return `/api/connections/${enc(id)}/messages/${seq}/content`;
  }

  /** The first `limit` bytes of a message's payload (the rest is not read), and whether
   * there was more. */
  async content(id, seq, limit) {
    const response = await this.raw(this.contentUrl(id, seq));
    const reader = response.body.getReader();
    const chunks = [];
    let size = 0;
    let more = false;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      size += value.length;
      if (size > limit) {
        more = true;
        await reader.cancel();
        break;
      }
    }
    const data = new Uint8Array(Math.min(size, limit));
    let at = 0;
    for (const chunk of chunks) {
      const part = chunk.subarray(0, data.length - at);
      data.set(part, at);
      at += part.length;
      if (at >= data.length) break;
    }
    return { data, more };
  }

  replay(id, seq) {
    return this.get(`/api/connections/${enc(id)}/messages/${seq}/replay`);
  }

  sendMessage(id, body) {
    return this.send("POST", `/api/connections/${enc(id)}/send`, body);
  }

  close(id, body) {
    return this.send("POST", `/api/connections/${enc(id)}/close`, body);
  }

  abort(id) {
    return this.send("POST", `/api/connections/${enc(id)}/abort`, {});
  }

  breakpoints() {
    return this.get("/api/breakpoints");
  }

  setBreakpoints(list) {
    return this.send("PUT", "/api/breakpoints", { breakpoints: list });
  }

  pauses() {
    return this.get("/api/pauses");
  }

  resolve(pauseId, action) {
    return this.send("POST", `/api/pauses/${enc(pauseId)}`, action);
  }

  exportUrl(format, { conn, filter } = {}) {
    const query = new URLSearchParams({ format });
    if (conn) query.set("conn", conn);
    else if (filter) query.set("filter", filter);
    return `/api/export?${query}`;
  }

  /** Download a URL of the API as a file: a plain link cannot carry the Bearer header. */
  async download(path, fallbackName) {
    const response = await this.raw(path);
    const disposition = response.headers.get("Content-Disposition") || "";
    const match = disposition.match(/filename\*?=(?:UTF-8'')?"?([^";]+)"?/i);
    const name = match ? decodeURIComponent(match[1]) : fallbackName;
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = name;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }
}

const enc = encodeURIComponent;

/** The push channel: reconnects with a growing delay, and tells `onOpen` each time so the
 * page refetches what it may have missed. */
export class Updates {
  constructor(token, { onHello, onBatch, onOpen, onDown }) {
    this.token = token;
    this.handlers = { onHello, onBatch, onOpen, onDown };
    this.delay = 500;
    this.stopped = false;
    this.socket = null;
  }

  start() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${scheme}//${location.host}/api/updates?token=${encodeURIComponent(this.token)}`;
    const socket = new WebSocket(url);
    this.socket = socket;
    socket.onopen = () => {
      this.delay = 500;
      this.handlers.onOpen();
    };
    socket.onmessage = (event) => {
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return; // not ours to judge: the server only sends JSON
      }
      if (data.type === "hello") this.handlers.onHello(data);
      else if (data.type === "batch") this.handlers.onBatch(data.events || []);
      else this.handlers.onBatch([data]);
    };
    socket.onclose = () => {
      if (this.socket !== socket || this.stopped) return;
      this.handlers.onDown();
      setTimeout(() => this.stopped || this.start(), this.delay);
      this.delay = Math.min(this.delay * 2, 10_000);
    };
  }

  stop() {
    this.stopped = true;
    if (this.socket) this.socket.close();
  }
}
