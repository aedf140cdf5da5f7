// mockttp (HTTP Toolkit's intercepting engine) as a WebSocket reverse proxy, a bench target.
//
//   node mockttp_proxy.mjs '{"port":N,"upstream":"ws://127.0.0.1:ECHO"}'
//
// Listens on 127.0.0.1:N; every WebSocket is forwarded to `upstream` (mockttp's rules API:
// forAnyWebSocket().thenForwardTo), every message relayed by mockttp's own WebSocket code.
// recordTraffic is off so that mockttp keeps no copy of what it relays (its cheapest
// configuration). Prints {"event":"listening","port":N}; exits on SIGTERM/SIGINT (bench.py
// also sets PR_SET_PDEATHSIG, so it never outlives the driver).

import { getLocal } from 'mockttp';

const cfg = JSON.parse(process.argv[2] || '{}');
const server = getLocal({ cors: false, debug: false, recordTraffic: false, http2: false });

async function stop() {
  try { await server.stop(); } finally { process.exit(0); }
}

await server.start({ startPort: cfg.port, endPort: cfg.port });
await server.forAnyWebSocket().thenForwardTo(cfg.upstream);
process.stdout.write(JSON.stringify({ event: 'listening', port: server.port }) + '\n');
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
