// Archives and history sync from Node.js against a real node and history server: a round
// trip into a new installation (restored conversations read-only until re-added), wrong keys
// and damaged files, bytes in memory, and a new installation that gets its history by itself.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ArchiveElement, Client, Group } from "../dist/index.js";
import { startNet, eventually, texts } from "./net.mjs";

let net;
before(async () => {
  net = await startNet();
});
after(async () => {
  await net?.stop();
});

async function aliceAndBobChat(opts = {}) {
  const alice = await Client.create(null, {
    nodeUrl: net.nodeUrl,
    dbPath: net.dbPath("alice"),
    ...opts,
  });
  const bob = await Client.create(null, { nodeUrl: net.nodeUrl, dbPath: net.dbPath("bob") });
  const group = await alice.conversations.createGroup([bob.inboxId], { name: "Book club" });
  for (const t of ["one", "two", "three"]) await group.sendText(t);
  return { alice, bob, group };
}

test("archive round trip: restored conversations are read-only until re-added", async () => {
  const { alice, bob, group } = await aliceAndBobChat({ disableDeviceSync: true });
  const key = randomBytes(32);
  const file = path.join(net.dir, "alice.ferry");

  const meta = await alice.createArchive(file, key, {
    elements: [ArchiveElement.Messages, ArchiveElement.Consent],
  });
  assert.equal(meta.inboxId, alice.inboxId);
  assert.equal(meta.signature, "valid");
  assert.deepEqual(meta.elements, ["messages", "consent"]);
  assert.equal(typeof meta.createdAtNs, "bigint");
  const read = await alice.archiveMetadata(file, key);
  assert.equal(read.messageCount, meta.messageCount);
  assert.ok(read.messageCount >= 3);

  // A new installation of alice's inbox imports it.
  const restored = await Client.create(alice.accountKey, {
    nodeUrl: net.nodeUrl,
    dbPath: net.dbPath("alice-new"),
    disableDeviceSync: true,
  });
  await assert.rejects(restored.importArchive(file, randomBytes(32)), {
    name: "FerryError",
    code: "WRONG_KEY",
  });
  await assert.rejects(restored.archiveMetadata(file, "not the passphrase"), {
    code: "WRONG_KEY",
  });
  const report = await restored.importArchive(file, key);
  assert.equal(report.conversationsAdded, 1);
  assert.equal(report.messagesImported, meta.messageCount);

  const copy = await restored.conversations.getConversationById(group.id);
  assert.ok(copy instanceof Group);
  assert.equal(copy.name, "Book club");
  assert.equal(copy.isActive(), false);
  assert.deepEqual(await texts(copy), ["one", "two", "three"]);
  await assert.rejects(copy.sendText("hello?"), {
    code: "GROUP_INACTIVE",
    message: "Group is inactive",
  });
  assert.equal((await restored.conversations.list({ active: false })).length, 1);

  // Importing again adds nothing.
  const again = await restored.importArchive(file, key);
  assert.equal(again.messagesImported, 0);

  // Alice's first installation adds the new one to her conversations: it turns active.
  await alice.conversations.syncAll();
  await eventually(async () => {
    await restored.conversations.syncAll();
    return copy.isActive();
  }, "the restored group to be reactivated");
  await copy.sendText("back");
  await eventually(async () => {
    await group.sync();
    return (await texts(group)).includes("back");
  }, "the restored installation's message at alice");
  await Promise.all([alice, bob, restored].map((c) => c.close()));
});

test("damaged archives, archives in memory, passphrases", async () => {
  const { alice, bob } = await aliceAndBobChat({ disableDeviceSync: true });
  const other = await Client.create(alice.accountKey, {
    nodeUrl: net.nodeUrl,
    dbPath: net.dbPath("alice-other"),
    disableDeviceSync: true,
  });

  const key = randomBytes(32);
  const bytes = await alice.createArchiveBytes(key);
  assert.ok(bytes instanceof Uint8Array);
  const meta = await other.archiveMetadataBytes(bytes, key);
  assert.equal(meta.inboxId, alice.inboxId);

  const damaged = Buffer.from(bytes);
  damaged[Math.floor(damaged.length / 2)] ^= 0xff;
  await assert.rejects(other.importArchiveBytes(damaged, key), { code: "ARCHIVE_DAMAGED" });
  await assert.rejects(other.importArchiveBytes(bytes.subarray(0, bytes.length - 40), key), {
    code: "ARCHIVE_DAMAGED",
  });
  assert.equal((await other.conversations.list()).length, 0, "a failed import writes nothing");

  const file = path.join(net.dir, "pass.ferry");
  // XMTP's argument order (path, options, key) works too.
  await alice.createArchive(file, { elements: [ArchiveElement.Messages] }, "correct horse");
  writeFileSync(path.join(net.dir, "copy.ferry"), readFileSync(file));
  await assert.rejects(other.importArchive(file, "wrong horse"), { code: "WRONG_KEY" });
  const r = await other.importArchive(path.join(net.dir, "copy.ferry"), "correct horse");
  assert.equal(r.conversationsAdded, 1);
  assert.equal(r.consentApplied, 0);

  const report = await other.importArchiveBytes(bytes, key);
  assert.equal(report.messagesImported, 0, "already imported from the file");
  await Promise.all([alice, bob, other].map((c) => c.close()));
});

test("a new installation gets its history through device sync", async () => {
  const { alice, bob, group } = await aliceAndBobChat({ historySyncUrl: net.historyUrl });
  assert.equal(alice.historySyncUrl, net.historyUrl);

  // The new installation asks for history when it registers; alice's first installation
  // (its worker) answers with an archive on the history server.
  const watch = await Client.create(alice.accountKey, {
    nodeUrl: net.nodeUrl,
    historySyncUrl: net.historyUrl,
    dbPath: net.dbPath("alice-watch"),
  });
  const copy = await eventually(async () => {
    const g = await watch.conversations.getConversationById(group.id);
    return g && (await texts(g)).length === 3 ? g : undefined;
  }, "the history at the new installation");
  assert.deepEqual(await texts(copy), ["one", "two", "three"]);
  const archives = await watch.listAvailableArchives(1);
  assert.ok(archives.some((a) => a.state === "processed" && a.messages));

  // By hand: another request, answered by the worker, then processed explicitly.
  const pin = await watch.sendSyncRequest({ elements: [ArchiveElement.Consent] });
  const answer = await eventually(async () => {
    await watch.syncAllDeviceSyncGroups();
    return (await watch.listAvailableArchives(1)).find((a) => a.pin === pin);
  }, "the answer to the explicit request");
  assert.equal(answer.consent, true);
  assert.equal(answer.messages, false);
  const report = await watch.processSyncArchive(pin);
  assert.equal(report.messagesImported, 0);

  await Promise.all([alice, bob, watch].map((c) => c.close()));
});
