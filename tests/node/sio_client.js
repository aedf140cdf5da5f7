// A Socket.IO JavaScript client for tests/integration/test_decoder_peers.py: connects to the
// URL given (over WebSocket only), sends an event with an ack, a binary event and an event in
// the /admin namespace, then prints what it got back as one JSON line and exits.
const { io } = require("socket.io-client");

const url = process.argv[2];
const options = { transports: ["websocket"], reconnection: false, timeout: 10000 };
const main = io(url, options);
const admin = io(url + "/admin", options);
const fail = (why) => { console.error(String(why)); process.exit(1); };
setTimeout(() => fail("timed out"), 20000);
main.on("connect_error", fail);

main.on("connect", async () => {
  const ack = await main.timeout(10000).emitWithAck("chat", { text: "from js" }, 2);
  const sizes = await main.timeout(10000).emitWithAck("upload", "js.bin", Buffer.from([7, 8, 9]));
  admin.emit("kick", "bob");
  const kicked = await new Promise((resolve) => admin.once("kicked", resolve));
  console.log(JSON.stringify({ ack, sizes, kicked }));
  main.close();
  admin.close();
  process.exit(0);
});
