// Formatting of sizes, times, payloads (hex, UTF-8, JSON) and of connection facts.

export function bytes(n) {
  if (n === null || n === undefined) return "–";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(n < 10240 ? 1 : 0)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

const two = (n) => String(n).padStart(2, "0");

/** Wall-clock time of a Unix timestamp (seconds), to the millisecond. */
export function clock(ts) {
  if (!ts) return "";
  const d = new Date(ts * 1000);
  const ms = String(d.getMilliseconds()).padStart(3, "0");
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${ms}`;
}

/** The arrow of a message's direction: who sent it, toward whom. */
export function arrow(from) {
  return from === "client" ? "→" : from === "server" ? "←" : "·";
}

export function directionText(from) {
  return from === "client" ? "client to server" : from === "server" ? "server to client" : "proxy";
}

/** Classic hex dump: offset, 16 bytes in hex, the printable ASCII beside. */
export function hexDump(data, limit = 65536) {
  const shown = data.subarray(0, limit);
  const lines = [];
  for (let offset = 0; offset < shown.length; offset += 16) {
    const row = shown.subarray(offset, offset + 16);
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, "0"));
    const ascii = Array.from(row, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : "."));
    lines.push(
      `${offset.toString(16).padStart(8, "0")}  ${hex.slice(0, 8).join(" ").padEnd(23)}  ` +
        `${hex.slice(8).join(" ").padEnd(23)}  ${ascii.join("")}`,
    );
  }
  return lines.join("\n");
}

/** Bytes as spaced hex pairs ("48 69"), the editable form of a binary message. */
export function toHex(data) {
  return Array.from(data, (b) => b.toString(16).padStart(2, "0")).join(" ");
}

/** Hex text (spaces, newlines and 0x prefixes allowed) to bytes; throws with the reason. */
export function fromHex(text) {
  const clean = text.replace(/0x/gi, "").replace(/[\s,:]/g, "");
  if (/[^0-9a-f]/i.test(clean)) {
    const bad = clean.match(/[^0-9a-f]/i)[0];
    throw new Error(`not hex: ${JSON.stringify(bad)}`);
  }
  if (clean.length % 2) throw new Error("odd number of hex digits");
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.substr(i * 2, 2), 16);
  return out;
}

export function toBase64(data) {
  let binary = "";
  for (let i = 0; i < data.length; i += 0x8000) {
    binary += String.fromCharCode(...data.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

export function fromBase64(text) {
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

/** UTF-8 text of bytes; invalid sequences become U+FFFD (the page shows, it does not judge). */
export function utf8(data) {
  return new TextDecoder("utf-8", { fatal: false }).decode(data);
}

/** Pretty JSON of text, or an Error saying why it is not JSON. */
export function prettyJson(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch (e) {
    return new Error(`not JSON: ${e.message}`);
  }
}

export function closeText(close) {
  if (!close) return "";
  return close.reason ? `${close.code} "${close.reason}"` : String(close.code);
}

/** One line about how a connection ended: codes each way and who closed. */
export function closeSummary(conn) {
  const close = conn.close;
  if (!close) return "";
  const parts = [];
  if (close.client) parts.push(`client ${closeText(close.client)}`);
  if (close.server) parts.push(`server ${closeText(close.server)}`);
  if (close.closed_by) parts.push(`closed by ${close.closed_by}`);
  return parts.join(", ");
}

export function counts(conn, side) {
  const c = (conn.counts && conn.counts[side]) || { messages: 0, bytes: 0 };
  return `${c.messages} msg ${bytes(c.bytes)}`;
}
