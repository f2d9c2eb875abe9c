#!/usr/bin/env node
// Ferry from Node.js: two inboxes chat, alice backs up her history, restores it onto a new
// installation (read-only until her other installation re-adds it), and the new installation
// sends again.
//
//   node examples/node/chat.mjs
//
// Needs the Node.js SDK built (`cd bindings/node && npm ci && npm run build`) and a delivery
// node: FERRY_NODE_URL, or one this script starts from the `ferry` binary (FERRY_BIN, else
// target/release/ferry or target/debug/ferry). Data goes to FERRY_DATA (else a temp folder).
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Client } from "../../bindings/node/dist/index.js";

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

async function nodeUrl() {
  if (process.env.FERRY_NODE_URL) return { url: process.env.FERRY_NODE_URL, stop() {} };
  const bin =
    process.env.FERRY_BIN ??
    ["release", "debug"].map((p) => path.join(repo, "target", p, "ferry")).find(existsSync);
  if (!bin) throw new Error("no ferry binary: cargo build --release -p ferry-cli (or set FERRY_NODE_URL)");
  const child = spawn(bin, ["node", "--listen", "127.0.0.1:0", "--in-memory"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const line = await new Promise((resolve) => child.stdout.once("data", (d) => resolve(String(d))));
  return { url: `http://${/listening on (\S+)/.exec(line)[1]}`, stop: () => child.kill() };
}

const node = await nodeUrl();
const dir = process.env.FERRY_DATA ?? mkdtempSync(path.join(tmpdir(), "ferry-example-"));
const opts = (name) => ({ nodeUrl: node.url, dbPath: path.join(dir, name), disableDeviceSync: true });

const alice = await Client.create(null, opts("alice-phone"));
const bob = await Client.create(null, opts("bob"));
console.log(`alice ${alice.inboxId.slice(0, 8)}…, bob ${bob.inboxId.slice(0, 8)}…`);

const group = await alice.conversations.createGroup([bob.inboxId], { name: "Weekend" });
await group.sendText("hi bob");
await bob.conversations.syncAll();
const bobGroup = await bob.conversations.getConversationById(group.id);
console.log(`bob reads "${bobGroup.name}": ${(await bobGroup.messages()).filter((m) => m.kind === "application").map((m) => m.content).join(", ")}`);
await bobGroup.sendText("hi alice");
await group.sync();
const last = (await group.messages()).at(-1);
console.log(`alice reads: ${last.content} (from ${last.senderInboxId === bob.inboxId ? "bob" : "?"})`);
console.log(`bob: hi alice`);

// Back up alice's phone, restore onto her new laptop.
const key = randomBytes(32);
const file = path.join(dir, "alice.ferry");
const meta = await alice.createArchive(file, key);
console.log(`backed up ${meta.messageCount} messages in ${meta.conversationCount} conversations (signature ${meta.signature})`);
const laptop = await Client.create(alice.accountKey, opts("alice-laptop"));
const report = await laptop.importArchive(file, key);
console.log(`the laptop imported ${report.messagesImported} messages`);
const restored = await laptop.conversations.getConversationById(group.id);
try {
  await restored.sendText("from the laptop");
} catch (e) {
  console.log(`restored "${restored.name}" is read-only: ${e.message} (${e.code})`);
}

// Alice's phone adds her new installation to her conversations: the laptop is a member again.
await alice.conversations.syncAll();
await laptop.conversations.syncAll();
await restored.sendText("from the laptop");
await group.sync();
console.log(`re-added: the new laptop sends again ("${(await group.messages()).at(-1).content}" at the phone)`);

await Promise.all([alice.close(), bob.close(), laptop.close()]);
node.stop();
