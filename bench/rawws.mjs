// Raw WebSocket peers for the benchmark's `deflate` and `deflate-off` scenarios: a client and an
// echo that frame by hand (RFC 6455) on plain `net` sockets, so that permessage-deflate (RFC 7692)
// costs them almost nothing and the proxy in the middle, not its peers, sets the pace.
//
// Why not `ws`: with compression it inflates and deflates every message in Node's zlib thread
// pool, a thread hop per message each way; at 64 bytes that holds a run to ~1,600 round trips/s,
// so the proxy wakes for every message and its CPU per round trip is not comparable with pipe1's.
//
// The client (loadgen.mjs mode `rawpipe`) offers what browsers and `ws` offer,
// `permessage-deflate; client_max_window_bits`, and honours whatever the answer agrees (window
// bits 9..15, context takeover or not). Its messages are compressed once, before the run: a cycle
// of CYCLE distinct text messages deflated one after the other by ONE compressor (context
// takeover: each message refers back into the ones before it, as a real sender's do), each ended
// with Z_SYNC_FLUSH and the 00 00 ff ff tail stripped (RFC 7692 7.2.1). The cycle is replayed over
// and over: its first message was compressed with an empty window, so it refers to nothing before
// it, and every later one refers back only as far as the cycle's start, which the receiver has
// always just seen in the same order; so the replayed stream is exactly a valid context-takeover
// stream, and a receiver must keep its running inflate context to read it. Every echo is inflated
// with the client's own running context and compared byte for byte with what was sent (or, with
// `rewritten`, with the rewrite rule applied: first character X). That check runs beside the
// pipeline, not in it: the echoes of one read go to the inflate stream (Node's zlib thread pool)
// in one write, and its output is compared with the expected text as it comes; the next messages
// go out at once. So the client never waits for zlib, and its zlib work is one job per read, not
// per message. The client supports context takeover from the server only (what the echo
// answers); server_no_context_takeover is refused.
//
// The echo (the `/raw` path of loadgen.mjs mode `echo`) answers an offer of permessage-deflate
// with plain `permessage-deflate` (what `ws` answers by default: context takeover both ways,
// 15-bit windows) and sends every message back with its compressed payload as it came. That is
// a valid server stream: messages go back one for one, in order, so the server-to-client
// stream equals the client-to-server one, whose validity the client's check above proves. An
// offer with other parameters than client_max_window_bits is declined (no extension): the echo
// cannot reflect a stream under parameters it did not receive it with.

import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import { connect } from 'node:net';
import zlib from 'node:zlib';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const TAIL = Buffer.from([0x00, 0x00, 0xff, 0xff]);
export const CYCLE = 64; // distinct messages before the cycle starts again
const OFFER = 'permessage-deflate; client_max_window_bits';

function acceptKey(key) {
  return createHash('sha1').update(key + GUID).digest('base64');
}

// permessage-deflate parameters of one offer or answer element (RFC 7692 7.1): null when the
// header names no permessage-deflate.
export function parseDeflate(header) {
  if (!header) return null;
  for (const element of header.split(',')) {
    const [name, ...params] = element.split(';').map((s) => s.trim());
    if (name.toLowerCase() !== 'permessage-deflate') continue;
    const out = {};
    for (const p of params) {
      const [k, v] = p.split('=').map((s) => s.trim().replace(/^"|"$/g, ''));
      out[k.toLowerCase()] = v === undefined ? true : Number(v);
    }
    return out;
  }
  return null;
}

// Frames one after the other from a byte stream; `onFrame(first, payload)` per whole frame
// (`first`: the FIN/RSV/opcode byte; payload unmasked). Returns the feed function.
function frameParser(masked, onFrame) {
  let buffer = Buffer.alloc(0);
  return (chunk) => {
    buffer = buffer.length ? Buffer.concat([buffer, chunk]) : chunk;
    let pos = 0;
    for (;;) {
      if (buffer.length - pos < 2) break;
      const first = buffer[pos];
      const second = buffer[pos + 1];
      if (((second & 0x80) !== 0) !== masked) throw new Error('frame masking is wrong');
      let len = second & 0x7f;
      let head = 2;
      if (len === 126) {
        if (buffer.length - pos < 4) break;
        len = buffer.readUInt16BE(pos + 2);
        head = 4;
      } else if (len === 127) {
        if (buffer.length - pos < 10) break;
        len = Number(buffer.readBigUInt64BE(pos + 2));
        head = 10;
      }
      const keyAt = pos + head;
      if (masked) head += 4;
      if (buffer.length - pos < head + len) break;
      const payload = buffer.subarray(pos + head, pos + head + len);
      if (masked) {
        const key = buffer.subarray(keyAt, keyAt + 4);
        for (let i = 0; i < len; i++) payload[i] ^= key[i & 3];
      }
      pos += head + len;
      onFrame(first, payload);
    }
    buffer = pos === buffer.length ? Buffer.alloc(0) : buffer.subarray(pos);
  };
}

// A frame's header: FIN/RSV/opcode byte, length, and (from a client) room for the mask key.
function header(first, len, masked) {
  const m = masked ? 0x80 : 0;
  if (len < 126) return Buffer.from([first, m | len]);
  if (len < 65536) {
    const h = Buffer.alloc(4);
    h[0] = first; h[1] = m | 126; h.writeUInt16BE(len, 2);
    return h;
  }
  const h = Buffer.alloc(10);
  h[0] = first; h[1] = m | 127; h.writeBigUInt64BE(BigInt(len), 2);
  return h;
}

// ---------------------------------------------------------------- echo (server side)

// The `/raw` echo for one upgrade request of an http server: answers the handshake itself and
// reflects every data frame (opcode, FIN, RSV1 and payload as they came), pongs pings, and
// echoes the close frame.
export function rawEcho(req, socket, head) {
  const key = req.headers['sec-websocket-key'];
  if (!key) {
    socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    return;
  }
  const offer = parseDeflate(req.headers['sec-websocket-extensions']);
  const accepted = offer !== null && Object.keys(offer).every((k) => k === 'client_max_window_bits');
  socket.setNoDelay(true);
  socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Accept: ${acceptKey(key)}\r\n` +
    (accepted ? 'Sec-WebSocket-Extensions: permessage-deflate\r\n' : '') + '\r\n');
  let out = [];
  let closed = false;
  const feed = frameParser(true, (first, payload) => {
    if (closed) return;
    const opcode = first & 0x0f;
    if (opcode === 0x9) {
      out.push(header(0x8a, payload.length, false), Buffer.from(payload));
    } else if (opcode === 0x8) {
      out.push(header(0x88, payload.length, false), Buffer.from(payload));
      closed = true;
    } else if (opcode !== 0xa) {
      out.push(header(first, payload.length, false), Buffer.from(payload));
    }
  });
  const onData = (chunk) => {
    try {
      feed(chunk);
    } catch {
      socket.destroy();
      return;
    }
    if (out.length) {
      socket.write(out.length === 1 ? out[0] : Buffer.concat(out));
      out = [];
    }
    if (closed) socket.end();
  };
  socket.on('data', onData);
  socket.on('error', () => socket.destroy());
  if (head && head.length) onData(head);
}

// ---------------------------------------------------------------- client

// The messages of one connection, ready to frame: the plain cycle, and (compressed) its
// payloads as negotiated. Compressed at set-up, in order, by one deflate stream (a fresh one per
// message with client_no_context_takeover): each message written, then a sync flush, then its
// output read (the stream is paused, so what one write produced is all buffered by its callback).
async function messageCycle(makeText, agreed) {
  const plain = [];
  for (let i = 0; i < CYCLE; i++) plain.push(makeText(i));
  if (agreed === null) return { plain, wire: plain, rsv1: 0 };
  const bits = agreed.client_max_window_bits === undefined || agreed.client_max_window_bits === true
    ? 15 : agreed.client_max_window_bits;
  if (bits < 9) throw new Error(`client_max_window_bits=${bits}: Node's zlib cannot compress below 9`);
  if (agreed.server_no_context_takeover) throw new Error('server_no_context_takeover: not supported');
  let deflater = null;
  const wire = [];
  for (const text of plain) {
    if (deflater === null || agreed.client_no_context_takeover) {
      deflater = zlib.createDeflateRaw({ windowBits: bits });
    }
    deflater.write(text);
    await new Promise((resolve) => deflater.flush(zlib.constants.Z_SYNC_FLUSH, resolve));
    const out = deflater.read();
    if (!out.subarray(out.length - 4).equals(TAIL)) throw new Error('sync flush without its tail');
    wire.push(Buffer.from(out.subarray(0, out.length - 4)));
  }
  return { plain, wire, rsv1: 0x40 };
}

// Opens one raw WebSocket: resolves to a connection object once the 101 came and was checked.
export function rawConnect(url, compress, makeText, timeoutMs = 10000) {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(u.port), u.hostname);
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`open timeout ${url}`)); },
      timeoutMs);
    const key = randomBytes(16).toString('base64');
    let got = Buffer.alloc(0);
    socket.setNoDelay(true);
    socket.once('error', (e) => { clearTimeout(timer); reject(e); });
    socket.on('connect', () => socket.write(
      `GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\n` +
      `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
      (compress ? `Sec-WebSocket-Extensions: ${OFFER}\r\n` : '') + '\r\n'));
    const onHead = (chunk) => {
      got = Buffer.concat([got, chunk]);
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onHead);
      clearTimeout(timer);
      const lines = got.subarray(0, end).toString('latin1').split('\r\n');
      const headers = {};
      for (const line of lines.slice(1)) {
        const colon = line.indexOf(':');
        const name = line.slice(0, colon).trim().toLowerCase();
        const value = line.slice(colon + 1).trim();
        headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
      }
      try {
        if (!/^HTTP\/1\.1 101 /.test(lines[0])) throw new Error(`handshake answered ${lines[0]}`);
        if (headers['sec-websocket-accept'] !== acceptKey(key)) throw new Error('wrong Sec-WebSocket-Accept');
        const agreed = parseDeflate(headers['sec-websocket-extensions']);
        if (compress && agreed === null) throw new Error('permessage-deflate was not accepted');
        if (!compress && agreed !== null) throw new Error('permessage-deflate accepted unasked');
        const rest = got.subarray(end + 4);
        messageCycle(makeText, agreed).then(
          (cycle) => resolve(new RawConnection(socket, cycle, agreed, rest)),
          (e) => { socket.destroy(); reject(e); });
      } catch (e) {
        socket.destroy();
        reject(e);
      }
    };
    socket.on('data', onHead);
  });
}

class RawConnection {
  constructor(socket, cycle, agreed, rest) {
    this.socket = socket;
    this.cycle = cycle;
    this.sent = 0; // messages sent: the next one is cycle[sent % CYCLE]
    this.received = 0;
    // Per whole message received: called with no argument; the content check runs apart
    // (`verify`), and its first failure goes to onError.
    this.onMessage = null;
    this.onClose = null;
    this.onError = null;
    this.rewritten = false;
    this.out = [];
    this.keys = Buffer.alloc(0);
    this.keyPos = 0;
    this.checkedBytes = 0; // inflated bytes compared so far
    this.expectedQueue = []; // texts whose inflated echo has not all been compared yet
    this.expectedAt = 0; // offset in expectedQueue[0]
    this.toInflate = [];
    this.inflater = null;
    if (agreed !== null) {
      this.inflater = zlib.createInflateRaw({ windowBits: 15 });
      this.inflater.on('data', (data) => this.compare(data));
      this.inflater.on('error', (e) => this.error(new Error(`echo does not inflate: ${e.message}`)));
    }
    let parts = [];
    let compressed = false;
    const feed = frameParser(false, (first, payload) => {
      const opcode = first & 0x0f;
      if (opcode >= 0x8) {
        if (opcode === 0x8 && this.onClose) this.onClose(payload);
        return;
      }
      if (opcode !== 0) compressed = (first & 0x40) !== 0;
      parts.push(payload);
      if (!(first & 0x80)) return;
      const whole = parts.length === 1 ? parts[0] : Buffer.concat(parts);
      parts = [];
      const want = this.expected(this.received);
      this.received++;
      if (compressed) {
        if (this.inflater === null) this.error(new Error('RSV1 set without permessage-deflate'));
        this.toInflate.push(whole, TAIL);
        this.expectedQueue.push(want);
      } else if (whole.length !== want.length || !this.matches(whole, want, 0)) {
        this.error(new Error(`bad echo of message ${this.received - 1}: ` +
          JSON.stringify(whole.toString('latin1'))));
      }
      if (this.onMessage) this.onMessage();
    });
    const onData = (chunk) => {
      try {
        feed(chunk);
      } catch (e) {
        this.error(e);
        return;
      }
      this.inflateReceived();
      this.flush();
    };
    socket.on('data', onData);
    if (rest.length) setImmediate(() => onData(rest));
  }

  // The compressed echoes of this read to the inflate stream, in one write.
  inflateReceived() {
    if (this.toInflate.length) {
      this.inflater.write(Buffer.concat(this.toInflate));
      this.toInflate = [];
    }
  }

  error(e) {
    if (this.onError) this.onError(e);
    this.onError = null;
  }

  // Inflated echo bytes against the texts expected, in order.
  compare(data) {
    let pos = 0;
    while (pos < data.length) {
      const want = this.expectedQueue[0];
      if (want === undefined) {
        this.error(new Error('an echo inflates to more than was sent'));
        return;
      }
      const n = Math.min(want.length - this.expectedAt, data.length - pos);
      const got = data.subarray(pos, pos + n);
      if (!this.matches(got, want, this.expectedAt)) {
        this.error(new Error(`bad echo after ${this.checkedBytes + pos} inflated bytes: ` +
          JSON.stringify(got.toString('latin1'))));
        return;
      }
      pos += n;
      this.expectedAt += n;
      if (this.expectedAt === want.length) {
        this.expectedQueue.shift();
        this.expectedAt = 0;
      }
    }
    this.checkedBytes += data.length;
  }

  // Whether `got` is what the echo of `want` holds from `offset` on: the same bytes, or with
  // `rewritten` the rewrite rule's change (the first character becomes X).
  matches(got, want, offset) {
    if (got.equals(want.subarray(offset, offset + got.length))) return true;
    return this.rewritten && offset === 0 && got.length > 0 && got[0] === 0x58 &&
      got.subarray(1).equals(want.subarray(1, got.length));
  }

  // Resolves once every echo received so far has been inflated and compared.
  checked() {
    if (this.inflater === null) return Promise.resolve();
    this.inflateReceived(); // called from onMessage: the read's echoes are not written yet
    return new Promise((resolve, reject) => {
      this.inflater.flush(zlib.constants.Z_SYNC_FLUSH, () => setImmediate(() => {
        if (this.expectedQueue.length) reject(new Error(`${this.expectedQueue.length} echoes inflate to less than was sent`));
        else resolve();
      }));
    });
  }

  // The plain text of the n-th message this connection sends (what its echo must hold).
  expected(n) {
    return this.cycle.plain[n % CYCLE];
  }

  maskKey() {
    if (this.keyPos + 4 > this.keys.length) {
      this.keys = randomFillSync(Buffer.alloc(4096));
      this.keyPos = 0;
    }
    const key = this.keys.subarray(this.keyPos, this.keyPos + 4);
    this.keyPos += 4;
    return key;
  }

  frame(first, payload) {
    const key = this.maskKey();
    const body = Buffer.allocUnsafe(payload.length);
    for (let i = 0; i < payload.length; i++) body[i] = payload[i] ^ key[i & 3];
    this.out.push(header(first, payload.length, true), key, body);
  }

  // Queue the next message of the cycle (written at the next flush: once per read).
  send() {
    this.frame(0x81 | this.cycle.rsv1, this.cycle.wire[this.sent % CYCLE]);
    this.sent++;
  }

  flush() {
    if (this.out.length) {
      this.socket.write(Buffer.concat(this.out));
      this.out = [];
    }
  }

  close(timeoutMs = 5000) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => { this.socket.destroy(); resolve(); }, timeoutMs);
      const done = () => { clearTimeout(timer); this.socket.destroy(); resolve(); };
      this.onClose = done;
      this.onError = null;
      if (this.inflater !== null) this.inflater.destroy();
      this.socket.once('close', done);
      this.frame(0x88, Buffer.from([0x03, 0xe8]));
      this.flush();
    });
  }
}
