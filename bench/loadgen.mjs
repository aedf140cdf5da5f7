// Load generator and echo server for the wsproxy benchmark.
//
//   node loadgen.mjs echo '{"port":0,"compress":false}'
//       WebSocket echo server on 127.0.0.1: every message goes back with the same
//       opcode (text stays text, binary stays binary). Prints one JSON line
//       {"event":"listening","port":N} once it accepts connections. Exits when its
//       stdin closes (so it never outlives the driver) or on SIGTERM/SIGINT.
//       With "cert" and "key" (PEM files) it also serves wss:// on a second port,
//       printed as "tlsPort". compress:true accepts permessage-deflate when a client
//       offers it (a client that does not offer it gets plain frames).
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
import { createServer as createHttpsServer } from 'node:https';
import { createInterface } from 'node:readline';

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
  const wss = new WebSocketServer({ host: '127.0.0.1', port: cfg.port ?? 0, backlog: 4096, ...common });
  echoOn(wss);
  const servers = [wss];
  const listening = [new Promise((resolve) => wss.on('listening', resolve))];
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
    port: wss.address().port,
    ...(https ? { tlsPort: https.address().port } : {}),
  }));
  const stop = () => {
    for (const s of servers) {
      for (const c of s.clients) c.terminate();
      s.close();
    }
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
    const modes = { check: runCheck, pipeline: runPipeline, connect: runConnect, idle: runIdle };
    const fn = modes[mode];
    if (!fn) {
      fail(`unknown mode ${mode}; use echo, check, pipeline, connect or idle`);
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
