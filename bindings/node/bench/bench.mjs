#!/usr/bin/env node
// The Node.js SDK's overhead over Rust, measured in one run: the same work from Node (through
// the addon) and from Rust (`ferry bench ...`, the same binary's SDK), as ratios.
//
//   cd bindings/node && npm run build:release && FERRY_BIN=../../target/release/ferry npm run bench
//
// Sends: 1,000 texts from one installation into a group with one other installation of the
// same inbox (`ferry bench node --installations 2`, whose clients check members at most
// hourly: the Node clients are given the same intervals), and that installation's catch-up.
// Archive: `createArchive` of one installation's store holding 100,000 messages in 100
// conversations (`ferry dev seed`), timed from Node and by `ferry bench client-archive`
// (`Client::create_archive` from Rust) on the same store, in alternating order. Each side
// runs ROUNDS times; medians are compared.
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { Client } from "../dist/index.js";

const BIN = process.env.FERRY_BIN ?? path.resolve("../../target/release/ferry");
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const MESSAGES = 1000;
const ARCHIVE_MESSAGES = 100_000;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rust = (args) => JSON.parse(execFileSync(BIN, [...args, "--json"], { encoding: "utf8" }));

async function startNode(dir) {
  const child = spawn(BIN, ["node", "--listen", "127.0.0.1:0", "--db", path.join(dir, "node")], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const line = await new Promise((resolve) =>
    createInterface({ input: child.stdout }).once("line", resolve),
  );
  return { url: `http://${/listening on (\S+)/.exec(line)[1]}`, child };
}

async function nodeSends() {
  const dir = mkdtempSync(path.join(tmpdir(), "ferry-bench-js-"));
  const node = await startNode(dir);
  const hour = 3_600_000;
  const o = (name) => ({
    nodeUrl: node.url,
    dbPath: path.join(dir, name),
    disableDeviceSync: true,
    sendCheckIntervalMs: hour,
    syncCheckIntervalMs: hour,
  });
  const a = await Client.create(null, o("c0"));
  const b = await Client.create(a.accountKey, o("c1"));
  const group = await a.conversations.createGroup([]);
  await b.conversations.syncAll();
  let t = process.hrtime.bigint();
  for (let i = 0; i < MESSAGES; i++) {
    await group.sendText(`benchmark message ${i}: some words to make it a typical length`);
  }
  const sendS = Number(process.hrtime.bigint() - t) / 1e9;
  t = process.hrtime.bigint();
  const r = await b.conversations.syncAll();
  const deliverS = Number(process.hrtime.bigint() - t) / 1e9;
  if (r.messagesProcessed < MESSAGES) throw new Error(`delivered ${r.messagesProcessed}`);
  await a.close();
  await b.close();
  node.child.kill();
  rmSync(dir, { recursive: true, force: true });
  return { send: MESSAGES / sendS, deliver: MESSAGES / deliverS };
}

/** One round of the archive comparison: [node seconds, rust seconds]. */
async function archiveRound(rustFirst) {
  const dir = mkdtempSync(path.join(tmpdir(), "ferry-bench-js-"));
  const node = await startNode(dir);
  const home = path.join(dir, "alice");
  const made = await Client.create(null, { nodeUrl: node.url, dbPath: home, disableDeviceSync: true });
  await made.close();
  execFileSync(BIN, ["--home", home, "dev", "seed", "--conversations", "100", "--messages", String(ARCHIVE_MESSAGES)]);
  const c = await Client.build({ dbPath: home, disableDeviceSync: true });
  const fromNode = async () => {
    const t = process.hrtime.bigint();
    const meta = await c.createArchive(path.join(dir, "node.ferry"), randomBytes(32));
    const s = Number(process.hrtime.bigint() - t) / 1e9;
    if (meta.messageCount < ARCHIVE_MESSAGES) throw new Error(`archived ${meta.messageCount}`);
    return s;
  };
  const fromRust = () => {
    const r = rust(["bench", "client-archive", "--home", home, "--out", path.join(dir, "rust.ferry")]);
    if (r.messages < ARCHIVE_MESSAGES) throw new Error(`archived ${r.messages}`);
    return r.seconds;
  };
  let n, r;
  if (rustFirst) {
    r = fromRust();
    n = await fromNode();
  } else {
    n = await fromNode();
    r = fromRust();
  }
  await c.close();
  node.child.kill();
  rmSync(dir, { recursive: true, force: true });
  return [n, r];
}

const results = { rustSend: [], nodeSend: [], rustDeliver: [], nodeDeliver: [], rustArchive: [], nodeArchive: [] };
for (let i = 0; i < ROUNDS; i++) {
  const r = rust(["bench", "node", "--installations", "2", "--messages", String(MESSAGES), "--conversations", "1"]);
  results.rustSend.push(r.send_per_second);
  results.rustDeliver.push(r.deliver_per_second);
  const n = await nodeSends();
  results.nodeSend.push(n.send);
  results.nodeDeliver.push(n.deliver);
  const [na, ra] = await archiveRound(i % 2 === 1);
  results.nodeArchive.push(na);
  results.rustArchive.push(ra);
}
const m = Object.fromEntries(Object.entries(results).map(([k, v]) => [k, median(v)]));
const out = {
  rounds: ROUNDS,
  sends_per_second: { rust: m.rustSend, node: m.nodeSend, node_to_rust: m.nodeSend / m.rustSend },
  delivered_per_second: { rust: m.rustDeliver, node: m.nodeDeliver, node_to_rust: m.nodeDeliver / m.rustDeliver },
  archive_100k_create_seconds: { rust: m.rustArchive, node: m.nodeArchive, node_to_rust: m.nodeArchive / m.rustArchive },
};
console.log(JSON.stringify(out, null, 2));
