// toxiproxy-node-client, used as its README shows, against `aioecho proxy --api` in front of
// redis-server: node scenario.js API_URL REDIS_PORT. Prints one line per step; exits non-zero
// on the first step that does not hold.
"use strict";
const net = require("net");
const assert = require("assert");
const { Toxiproxy } = require("toxiproxy-node-client");

const [api, redisPort] = process.argv.slice(2);

// One inline redis command on a fresh connection: resolves {reply, ms} or {error, ms}.
function redis(port, command, waitMs = 3000) {
  return new Promise((resolve) => {
    const started = Date.now();
    const socket = net.connect(port, "127.0.0.1");
    let reply = "";
    const done = (result) => {
      socket.destroy();
      resolve({ ...result, ms: Date.now() - started });
    };
    socket.setTimeout(waitMs, () => done({ error: "timeout" }));
    socket.on("connect", () => socket.write(command + "\r\n"));
    socket.on("data", (data) => {
      reply += data.toString();
      if (reply.endsWith("\r\n")) done({ reply: reply.trim() });
    });
    socket.on("error", (err) => done({ error: err.code || String(err) }));
    socket.on("end", () => done(reply ? { reply: reply.trim(), closed: true } : { error: "closed" }));
  });
}

function port(proxy) {
  return Number(proxy.listen.split(":").pop());
}

async function main() {
  const toxiproxy = new Toxiproxy(api);
  const version = await toxiproxy.getVersion();
  assert.match(version, /version/);
  console.log("version ok");

  const proxy = await toxiproxy.createProxy({
    listen: "127.0.0.1:0",
    name: "redis",
    upstream: `127.0.0.1:${redisPort}`,
  });
  assert.strictEqual(proxy.enabled, true);
  assert.notStrictEqual(port(proxy), 0);
  let answer = await redis(port(proxy), "PING");
  assert.strictEqual(answer.reply, "+PONG");
  console.log("create ok");

  const latency = await proxy.addToxic({ type: "latency", attributes: { latency: 300 } });
  assert.strictEqual(latency.name, "latency_downstream");
  assert.strictEqual(latency.stream, "downstream");
  assert.strictEqual(latency.toxicity, 1);
  answer = await redis(port(proxy), "PING");
  assert.strictEqual(answer.reply, "+PONG");
  assert.ok(answer.ms >= 300, `a PING took ${answer.ms} ms under 300 ms of latency`);
  console.log(`latency ok ${answer.ms}`);

  const updated = await latency.update({ attributes: { latency: 10 }, toxicity: 1 });
  assert.strictEqual(updated.attributes.latency, 10);
  const fetched = await proxy.getToxic("latency_downstream");
  assert.strictEqual(fetched.attributes.latency, 10);
  await fetched.remove();
  console.log("update and remove ok");

  const bandwidth = await proxy.addToxic({ type: "bandwidth", attributes: { rate: 1 } });
  answer = await redis(port(proxy), `ECHO ${"x".repeat(2000)}`);
  assert.ok(answer.reply && answer.reply.length > 2000, JSON.stringify(answer).slice(0, 80));
  assert.ok(answer.ms >= 1500, `2 KB at 1 KB/s took ${answer.ms} ms`);
  await bandwidth.remove();
  console.log(`bandwidth ok ${answer.ms}`);

  const timeout = await proxy.addToxic({ type: "timeout", attributes: { timeout: 0 } });
  answer = await redis(port(proxy), "PING", 500);
  assert.strictEqual(answer.error, "timeout");
  await timeout.remove();
  console.log("timeout ok");

  const reset = await proxy.addToxic({ type: "reset_peer", attributes: { timeout: 0 } });
  answer = await redis(port(proxy), "PING");
  assert.strictEqual(answer.error, "ECONNRESET");
  await reset.remove();
  console.log("reset_peer ok");

  const limit = await proxy.addToxic({ type: "limit_data", attributes: { bytes: 3 } });
  answer = await redis(port(proxy), "PING");
  assert.strictEqual(answer.reply, "+PO");
  assert.strictEqual(answer.closed, true);
  await limit.remove();
  console.log("limit_data ok");

  const disabled = await proxy.update({ enabled: false, listen: proxy.listen, upstream: proxy.upstream });
  assert.strictEqual(disabled.enabled, false);
  answer = await redis(port(proxy), "PING");
  assert.strictEqual(answer.error, "ECONNREFUSED");
  const enabled = await proxy.update({ enabled: true, listen: proxy.listen, upstream: proxy.upstream });
  assert.strictEqual(enabled.enabled, true);
  answer = await redis(port(proxy), "PING");
  assert.strictEqual(answer.reply, "+PONG");
  console.log("disable and enable ok");

  await proxy.addToxic({ type: "latency", attributes: { latency: 1000 } });
  await toxiproxy.reset();
  const all = await toxiproxy.getAll();
  assert.deepStrictEqual(Object.keys(all), ["redis"]);
  const again = await toxiproxy.get("redis");
  assert.strictEqual(again.enabled, true);
  answer = await redis(port(proxy), "PING");
  assert.ok(answer.ms < 1000, `a PING took ${answer.ms} ms after reset`);
  console.log("reset ok");

  const populated = await toxiproxy.populate([
    { name: "redis2", listen: "127.0.0.1:0", upstream: `127.0.0.1:${redisPort}` },
  ]);
  assert.ok(populated.redis2);
  answer = await redis(port(populated.redis2), "PING");
  assert.strictEqual(answer.reply, "+PONG");
  await populated.redis2.remove();
  await proxy.remove();
  assert.deepStrictEqual(Object.keys(await toxiproxy.getAll()), []);
  answer = await redis(port(proxy), "PING");
  assert.strictEqual(answer.error, "ECONNREFUSED");
  console.log("populate and delete ok");
}

main().then(
  () => console.log("all ok"),
  (err) => {
    console.error(err && err.stack ? err.stack : String(err));
    process.exit(1);
  },
);
