// Load generator and echo server for the wsproxy benchmark.
//
//   node loadgen.mjs echo '{"port":0,"compress":false}'
//       WebSocket echo server on 127.0.0.1: every message goes back with the same
//       opcode (text stays text, binary stays binary). Prints one JSON line
//       {"event":"listening","port":N} once it accepts connections. Exits when its
//       stdin closes (so it never outlives the driver) or on SIGTERM/SIGINT.
//       With "cert" and "key" (PEM files) it also serves wss:// on a second port,
//       printed as "tlsPort". compress:true accepts permessage-deflate when a client
//       offers it (a client that does not offer it gets plain frames). Requests for the
//       path /raw get the raw echo of bench/rawws.mjs instead (framing by hand, compressed
//       payloads sent back as they came), whatever compress says.
//
//   node loadgen.mjs <mode> '<json config>'
//       Load generator. Prints JSON lines on stdout: {"event":"ready",...} once it is
//       connected and warmed up, then waits for a line "go" on stdin, runs the
//       measurement, stops sending, waits for every message in flight to come back
//       and prints {"event":"done",...} with the results. Errors are printed as
//       {"event":"error","error":"..."} and exit with status 2.
//
// Modes (config keys in brackets, defaults below):
//   check     [rewritten] one connection: a 64-byte text echo and a 1 KiB binary echo,
//             compared byte for byte (with rewritten:true the text only by its length);
//             prints {"event":"done","ok":true}; no "go" needed.
//   pipeline  [conns, inflight, size, binary, duration, warmup, latency]
//             each connection keeps `inflight` messages outstanding: every echo that
//             comes back triggers the next send. Counts round trips (one message out,
//             its echo back). With latency:true records every round-trip time.
//   rawpipe   [conns, inflight, size, duration, warmup, rate, rewritten] pipeline's
//             measurement with the raw client of bench/rawws.mjs (the echo's /raw path), at
//             most `rate` round trips/s in all when rate > 0 (paced every ms): text
//             messages, a cycle of 64 distinct ones, pre-compressed with context takeover
//             when compress is on; every echo is inflated and compared byte for byte (with
//             rewritten:true, after the rewrite rule's change: first character X).
//   connect   [concurrency, duration, warmup] workers loop: open a WebSocket, echo one
//             64-byte message, close, wait for the close handshake.
//   idle      [conns, concurrency] opens `conns` WebSockets (each echoes one message so
//             the whole path is set up), prints ready, and on "go" closes them all.
//
// Common keys: url, compress (permessage-deflate on, threshold 0 so every message is
// compressed), ca (a PEM file to trust for wss:// URLs), timeout (s, watchdog for the
// whole process).

import { WebSocket, WebSocketServer } from 'ws';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createInterface } from 'node:readline';
import { rawConnect, rawEcho } from './rawws.mjs';

const MAX_PAYLOAD = 1024 * 1024 * 1024;
let trustedCa; // the "ca" config key, read once: what wss:// connections trust

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function fail(err) {
  out({ event: 'error', error: String(err && err.stack ? err.message : err) });
  // Give stdout a chance to flush before leaving.
  process.exitCode = 2;
  setTimeout(() => process.exit(2), 50).unref();
}

function deflateOpts(compress) {
  // threshold 0: compress every message, also the 64-byte ones (ws defaults to 1024).
  // level 1: the cheapest deflate, so that the Node side stays ahead of the proxy
  // (what a proxy pays to inflate hardly depends on the level).
  return compress ? { threshold: 0, zlibDeflateOptions: { level: 1 } } : false;
}

// ---------------------------------------------------------------- payloads

// Deterministic pseudo-random generator (xorshift32) for compressible payloads.
function xorshift(seed) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x;
  };
}

const WORDS = ('the quick brown fox jumps over lazy dog websocket proxy message frame ' +
  'opcode payload mask length deflate stream buffer socket client server echo ' +
  'value key id name time user event data type status ok true false null').split(' ');

// Text-like bytes (JSON-ish words) that deflate compresses roughly 3-4x.
function textBytes(n, seed) {
  const rnd = xorshift(seed);
  const parts = [];
  let len = 0;
  while (len < n) {
    const w = WORDS[rnd() % WORDS.length];
    const piece = (rnd() % 4 === 0) ? `"${w}":${rnd() % 10000},` : w + ' ';
    parts.push(piece);
    len += piece.length;
  }
  return Buffer.from(parts.join('').slice(0, n), 'latin1');
}

function makePayload(size, binary, compress) {
  if (compress) {
    const buf = textBytes(size, 12345 + size);
    return binary ? buf : buf.toString('latin1');
  }
  if (binary) return randomBytes(size);
  // Random ASCII letters: valid UTF-8, not compressible by much.
  const rb = randomBytes(size);
  const chars = new Array(size);
  for (let i = 0; i < size; i++) chars[i] = String.fromCharCode(97 + (rb[i] % 26));
  return chars.join('');
}

function payloadLength(p) {
  return typeof p === 'string' ? Buffer.byteLength(p) : p.length;
}

// ---------------------------------------------------------------- helpers

function waitForGo() {
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: process.stdin });
    rl.on('line', (line) => {
      if (line.trim() === 'go') { resolve(); rl.close(); }
    });
    rl.on('close', () => reject(new Error('stdin closed before "go"')));
  });
}

function openWs(url, compress, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      perMessageDeflate: deflateOpts(compress),
      maxPayload: MAX_PAYLOAD,
      handshakeTimeout: timeoutMs,
      ...(trustedCa ? { ca: trustedCa } : {}),
    });
    const timer = setTimeout(() => { ws.terminate(); reject(new Error(`open timeout ${url}`)); },
      timeoutMs);
    ws.once('open', () => { clearTimeout(timer); resolve(ws); });
    ws.once('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

function echoOnce(ws, payload, binary, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('echo timeout')), timeoutMs);
    ws.once('message', (data, isBinary) => {
      clearTimeout(timer);
      if (isBinary !== binary) reject(new Error('echo came back with another opcode'));
      else resolve(data);
    });
    ws.send(payload, { binary });
  });
}

function closeWs(ws, timeoutMs = 5000) {
  return new Promise((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) { resolve(); return; }
    const timer = setTimeout(() => { ws.terminate(); resolve(); }, timeoutMs);
    ws.once('close', () => { clearTimeout(timer); resolve(); });
    ws.close(1000);
  });
}

function percentile(sorted, q) {
  if (sorted.length === 0) return null;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[idx];
}

// ---------------------------------------------------------------- echo server

function echoOn(wss) {
  wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
    ws.on('error', () => ws.terminate());
  });
  wss.on('error', (e) => fail(e));
}

function runEcho(cfg) {
  const common = {
    perMessageDeflate: deflateOpts(!!cfg.compress),
    maxPayload: MAX_PAYLOAD,
    clientTracking: true,
  };
  // One HTTP server: /raw goes to the raw echo, every other path to ws.
  const http = createHttpServer();
  const wss = new WebSocketServer({ noServer: true, ...common });
  http.on('upgrade', (req, socket, head) => {
    if (req.url === '/raw' || req.url.startsWith('/raw?')) {
      rawEcho(req, socket, head);
    } else {
      wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
    }
  });
  http.on('error', (e) => fail(e));
  echoOn(wss);
  const servers = [wss];
  const listening = [new Promise((resolve) => http.listen(cfg.port ?? 0, '127.0.0.1', 4096, resolve))];
  let https;
  if (cfg.cert && cfg.key) {
    https = createHttpsServer({ cert: readFileSync(cfg.cert), key: readFileSync(cfg.key) });
    const tls = new WebSocketServer({ server: https, ...common });
    echoOn(tls);
    servers.push(tls);
    https.on('error', (e) => fail(e));
    listening.push(new Promise((resolve) => https.listen(0, '127.0.0.1', 4096, resolve)));
  }
  Promise.all(listening).then(() => out({
    event: 'listening',
    port: http.address().port,
    ...(https ? { tlsPort: https.address().port } : {}),
  }));
  const stop = () => {
    for (const s of servers) {
      for (const c of s.clients) c.terminate();
      s.close();
    }
    http.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdin.on('end', stop);
  process.stdin.on('error', stop);
  process.stdin.resume();
}

// ---------------------------------------------------------------- check

async function runCheck(cfg) {
  const ws = await openWs(cfg.url, !!cfg.compress);
  const text = 'check-' + 'x'.repeat(58);
  const got1 = await echoOnce(ws, text, false);
  // rewritten:true (a target whose plugin changes messages): the text echo may differ, but
  // must keep its length; the binary one is compared anyway.
  if (cfg.rewritten ? got1.length !== Buffer.byteLength(text) : got1.toString() !== text) {
    throw new Error('text echo differs');
  }
  const bin = randomBytes(1024);
  const got2 = await echoOnce(ws, bin, true);
  if (!Buffer.from(got2).equals(bin)) throw new Error('binary echo differs');
  await closeWs(ws);
  out({ event: 'done', ok: true });
}

// ---------------------------------------------------------------- pipeline

async function runPipeline(cfg) {
  const conns = cfg.conns ?? 1;
  const inflight = cfg.inflight ?? 1;
  const size = cfg.size ?? 64;
  const binary = !!cfg.binary;
  const latency = !!cfg.latency;
  const payload = makePayload(size, binary, !!cfg.compress);
  const plen = payloadLength(payload);

  const sockets = [];
  for (let i = 0; i < conns; i++) sockets.push(await openWs(cfg.url, !!cfg.compress));
  for (const ws of sockets) ws.on('error', (e) => fail(e));

  // One phase: every connection fills its window, keeps it full until `durationMs`,
  // then stops sending and the phase ends when everything in flight came back.
  function phase(durationMs, drainTimeoutMs) {
    return new Promise((resolve, reject) => {
      let roundTrips = 0;
      let outstanding = 0;
      let running = true;
      let lat = latency ? new Float64Array(1 << 16) : null;
      let nlat = 0;
      const states = sockets.map(() => ({ sent: [] }));
      const t0 = process.hrtime.bigint();
      let tStop = 0n;

      const finish = () => {
        const t1 = process.hrtime.bigint();
        for (const ws of sockets) ws.removeAllListeners('message');
        clearTimeout(drainTimer);
        let lats = null;
        if (latency) lats = Array.from(lat.subarray(0, nlat)).sort((a, b) => a - b);
        resolve({
          roundTrips,
          elapsed: Number(t1 - t0) / 1e9,
          sendElapsed: Number(tStop - t0) / 1e9,
          lats,
        });
      };
      let drainTimer = null;

      sockets.forEach((ws, i) => {
        const st = states[i];
        ws.on('message', (data, isBinary) => {
          const len = Array.isArray(data) ? data.reduce((a, b) => a + b.length, 0) : data.length;
          if (len !== plen || isBinary !== binary) {
            reject(new Error(`bad echo: ${len} bytes, binary=${isBinary}`));
            return;
          }
          roundTrips++;
          if (latency) {
            const ts = st.sent.shift();
            if (nlat === lat.length) {
              const bigger = new Float64Array(lat.length * 2);
              bigger.set(lat);
              lat = bigger;
            }
            lat[nlat++] = Number(process.hrtime.bigint() - ts) / 1e3; // µs
          }
          if (running) {
            if (latency) st.sent.push(process.hrtime.bigint());
            ws.send(payload, { binary });
          } else {
            outstanding--;
            if (outstanding === 0) finish();
          }
        });
      });

      setTimeout(() => {
        running = false;
        tStop = process.hrtime.bigint();
        outstanding = conns * inflight;
        drainTimer = setTimeout(() => reject(new Error('drain timeout: echoes missing')),
          drainTimeoutMs);
      }, durationMs);

      for (let i = 0; i < conns; i++) {
        for (let k = 0; k < inflight; k++) {
          if (latency) states[i].sent.push(process.hrtime.bigint());
          sockets[i].send(payload, { binary });
        }
      }
    });
  }

  const drainMs = (cfg.drainTimeout ?? 60) * 1000;
  if ((cfg.warmup ?? 0) > 0) await phase(cfg.warmup * 1000, drainMs);
  out({ event: 'ready', conns, inflight, size: plen });
  await waitForGo();
  const r = await phase((cfg.duration ?? 3) * 1000, drainMs);
  const res = {
    event: 'done',
    roundTrips: r.roundTrips,
    elapsed: r.elapsed,
    sendElapsed: r.sendElapsed,
    msgsPerSec: r.roundTrips / r.elapsed,
    payloadBytes: plen,
    bytesEchoed: r.roundTrips * plen,
    mibPerSec: (r.roundTrips * plen) / (1024 * 1024) / r.elapsed,
  };
  if (r.lats) {
    const l = r.lats;
    res.latency = {
      count: l.length,
      p50: percentile(l, 0.5),
      p90: percentile(l, 0.9),
      p99: percentile(l, 0.99),
      max: l.length ? l[l.length - 1] : null,
      mean: l.length ? l.reduce((a, b) => a + b, 0) / l.length : null,
    };
  }
  out(res);
  await Promise.all(sockets.map((ws) => closeWs(ws)));
}

// ---------------------------------------------------------------- rawpipe

async function runRawPipeline(cfg) {
  const conns = cfg.conns ?? 1;
  const inflight = cfg.inflight ?? 1;
  const size = cfg.size ?? 64;
  const compress = !!cfg.compress;
  const rewritten = !!cfg.rewritten;
  // JSON-ish words, 64 distinct messages (the same text whether compressed or not).
  const makeText = (i) => textBytes(size, 12345 + size + 7919 * i);
  const sockets = [];
  for (let i = 0; i < conns; i++) sockets.push(await rawConnect(cfg.url, compress, makeText));
  for (const c of sockets) {
    c.socket.on('error', (e) => fail(e));
    c.rewritten = rewritten;
  }

  // rate (round trips/s over all connections, 0: as fast as the echoes come back): a message
  // goes out when its connection has fewer than `inflight` outstanding and, with a rate, when
  // it falls due (sent so far < rate x time since the start): checked every millisecond, all
  // that is due in one write.
  const perConn = (cfg.rate ?? 0) / conns / 1e9; // messages per ns, per connection
  function phase(durationMs, drainTimeoutMs) {
    return new Promise((resolve, reject) => {
      let roundTrips = 0;
      let running = true;
      const t0 = process.hrtime.bigint();
      let tStop = 0n;
      let t1 = 0n;
      let drainTimer = null;
      let ticker = null;
      const state = sockets.map(() => ({ sent: 0, back: 0 }));
      const finish = () => {
        for (const c of sockets) c.onMessage = null;
        clearTimeout(drainTimer);
        resolve({ roundTrips, elapsed: Number(t1 - t0) / 1e9, sendElapsed: Number(tStop - t0) / 1e9 });
      };
      const top = (i, now) => {
        const st = state[i];
        let room = inflight - (st.sent - st.back);
        if (perConn > 0) room = Math.min(room, Math.floor(perConn * Number(now - t0)) - st.sent);
        for (; room > 0; room--, st.sent++) sockets[i].send();
      };
      const topAll = () => {
        const now = process.hrtime.bigint();
        sockets.forEach((c, i) => { top(i, now); c.flush(); });
      };
      const endIfDrained = () => {
        if (t1 === 0n && state.every((st) => st.back === st.sent)) {
          t1 = process.hrtime.bigint(); // the last echo: what follows is only its check
          Promise.all(sockets.map((c) => c.checked())).then(finish, reject);
        }
      };
      sockets.forEach((c, i) => {
        c.onMessage = () => {
          roundTrips++;
          state[i].back++;
          if (running) {
            // Flat out, each echo sends the next (flushed by the connection after its read);
            // paced, only the ticker sends, so every target gets the same writes of
            // rate/1000 messages each millisecond, whatever else wakes the load generator.
            if (perConn === 0) top(i, 0n);
          } else {
            endIfDrained();
          }
        };
        c.onError = (e) => { running = false; reject(e); };
        c.onClose = () => reject(new Error('the echo closed the connection'));
      });
      if (perConn > 0) ticker = setInterval(topAll, 1);
      setTimeout(() => {
        running = false;
        clearInterval(ticker);
        tStop = process.hrtime.bigint();
        drainTimer = setTimeout(() => reject(new Error('drain timeout: echoes missing')),
          drainTimeoutMs);
        endIfDrained(); // paced, nothing may be in flight
      }, durationMs);
      // The first messages: with a rate, the ticker sends them as they fall due.
      if (perConn === 0) topAll();
    });
  }

  const drainMs = (cfg.drainTimeout ?? 60) * 1000;
  if ((cfg.warmup ?? 0) > 0) await phase(cfg.warmup * 1000, drainMs);
  const wire = sockets[0].cycle.wire;
  const wireBytes = wire.reduce((a, b) => a + b.length, 0) / wire.length; // mean payload sent
  out({ event: 'ready', conns, inflight, size, rate: cfg.rate ?? 0, compressed: compress, wireBytes });
  await waitForGo();
  const r = await phase((cfg.duration ?? 3) * 1000, drainMs);
  out({
    event: 'done',
    roundTrips: r.roundTrips,
    elapsed: r.elapsed,
    sendElapsed: r.sendElapsed,
    msgsPerSec: r.roundTrips / r.elapsed,
    payloadBytes: size,
    bytesEchoed: r.roundTrips * size,
    mibPerSec: (r.roundTrips * size) / (1024 * 1024) / r.elapsed,
  });
  await Promise.all(sockets.map((c) => c.close()));
}

// ---------------------------------------------------------------- connect

async function runConnect(cfg) {
  const concurrency = cfg.concurrency ?? 1;
  const payload = makePayload(64, false, !!cfg.compress);

  async function one() {
    const ws = await openWs(cfg.url, !!cfg.compress);
    const got = await echoOnce(ws, payload, false);
    if (got.length !== payload.length) throw new Error('bad echo');
    await closeWs(ws);
  }

  async function phase(durationMs) {
    let done = 0;
    let errors = 0;
    let lastError = null;
    const times = [];
    const t0 = process.hrtime.bigint();
    const deadline = Date.now() + durationMs;
    async function worker() {
      while (Date.now() < deadline) {
        const s = process.hrtime.bigint();
        try {
          await one();
          done++;
          times.push(Number(process.hrtime.bigint() - s) / 1e3);
        } catch (e) {
          errors++;
          lastError = String(e.message || e);
          if (errors > 100) throw new Error(`too many connect errors: ${lastError}`);
        }
      }
    }
    await Promise.all(Array.from({ length: concurrency }, worker));
    const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
    times.sort((a, b) => a - b);
    return { done, errors, lastError, elapsed, times };
  }

  if ((cfg.warmup ?? 0) > 0) await phase(cfg.warmup * 1000);
  out({ event: 'ready', concurrency });
  await waitForGo();
  const r = await phase((cfg.duration ?? 3) * 1000);
  out({
    event: 'done',
    connections: r.done,
    errors: r.errors,
    lastError: r.lastError,
    elapsed: r.elapsed,
    connsPerSec: r.done / r.elapsed,
    p50: percentile(r.times, 0.5),
    p99: percentile(r.times, 0.99),
  });
}

// ---------------------------------------------------------------- idle

async function runIdle(cfg) {
  const n = cfg.conns ?? 1000;
  const concurrency = cfg.concurrency ?? 50;
  const payload = makePayload(64, false, !!cfg.compress);
  const sockets = [];
  let next = 0;
  let failed = 0;
  let lastError = null;
  async function worker() {
    while (next < n) {
      next++;
      try {
        const ws = await openWs(cfg.url, !!cfg.compress);
        ws.on('error', () => {});
        await echoOnce(ws, payload, false);
        sockets.push(ws);
      } catch (e) {
        failed++;
        lastError = String(e.message || e);
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker));
  out({ event: 'ready', opened: sockets.length, failed, lastError });
  await waitForGo();
  // Check they are all still alive, then close them.
  const alive = sockets.filter((ws) => ws.readyState === WebSocket.OPEN).length;
  await Promise.all(sockets.map((ws) => closeWs(ws)));
  out({ event: 'done', opened: sockets.length, aliveAtEnd: alive, failed });
}

// ---------------------------------------------------------------- main

const [mode, json] = process.argv.slice(2);
let cfg;
try {
  cfg = JSON.parse(json ?? '{}');
} catch (e) {
  fail(`bad JSON config: ${e.message}`);
}

if (cfg) {
  if (cfg.ca) trustedCa = readFileSync(cfg.ca);
  if (mode === 'echo') {
    runEcho(cfg);
  } else {
    const modes = {
      check: runCheck, pipeline: runPipeline, rawpipe: runRawPipeline, connect: runConnect, idle: runIdle,
    };
    const fn = modes[mode];
    if (!fn) {
      fail(`unknown mode ${mode}; use echo, check, pipeline, rawpipe, connect or idle`);
    } else {
      const watchdog = setTimeout(() => fail(`timeout after ${cfg.timeout ?? 120} s`),
        (cfg.timeout ?? 120) * 1000);
      watchdog.unref();
      // The driver holds our stdin: when it goes away, so do we.
      if (mode !== 'check') {
        process.stdin.on('end', () => { if (!process.exitCode) process.exit(3); });
      }
      fn(cfg).then(
        () => process.exit(0),
        (e) => fail(e),
      );
    }
  }
}
