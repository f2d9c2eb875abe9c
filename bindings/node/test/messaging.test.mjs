// Messaging from Node.js against a real node: DMs both ways with streams, groups of three
// with adds and removes, and consent that follows the inbox to its other installation.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  Client,
  ConsentEntityType,
  ConsentState,
  Dm,
  Group,
} from "../dist/index.js";
import { startNet, eventually, texts } from "./net.mjs";

let net;
before(async () => {
  net = await startNet();
});
after(async () => {
  await net?.stop();
});

/** The next item of a stream, or a failure after `ms`. */
async function nextWithin(stream, ms = 30_000) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error("stream delivered nothing")), ms);
  });
  try {
    return await Promise.race([stream.next(), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

test("two inboxes chat both ways and a stream delivers", async () => {
  const alice = await Client.create(null, { nodeUrl: net.nodeUrl, dbPath: net.dbPath("alice") });
  const bob = await Client.create(null, { nodeUrl: net.nodeUrl, dbPath: net.dbPath("bob") });
  assert.match(alice.inboxId, /^[0-9a-f]{64}$/);
  assert.match(alice.installationId, /^[0-9a-f]{64}$/);
  assert.equal(alice.accountKey.length, 32);
  assert.notEqual(alice.inboxId, bob.inboxId);

  const bobStream = bob.conversations.streamAllMessages();
  const dm = await alice.conversations.createDm(bob.inboxId);
  assert.ok(dm instanceof Dm);
  assert.equal(dm.peerInboxId, bob.inboxId);
  const sentId = await dm.sendText("hi bob");
  assert.match(sentId, /^[0-9a-f]{64}$/);

  // Bob's worker joins the DM from its welcome and the stream hands over the message.
  let first;
  do {
    first = await nextWithin(bobStream);
    assert.equal(first.done, false);
  } while (first.value.kind !== "application");
  assert.equal(first.value.content, "hi bob");
  assert.equal(first.value.id, sentId);
  assert.equal(first.value.senderInboxId, alice.inboxId);
  assert.equal(typeof first.value.sentAtNs, "bigint");
  assert.equal(first.value.conversationId, dm.id);

  const bobDm = await bob.conversations.getConversationById(dm.id);
  assert.ok(bobDm instanceof Dm);
  assert.equal(bobDm.peerInboxId, alice.inboxId);
  assert.equal(bob.conversations.getDmByInboxId(alice.inboxId)?.id, dm.id);
  await bobDm.sendText("hi alice");

  await eventually(async () => {
    await dm.sync();
    return (await texts(dm)).includes("hi alice");
  }, "bob's reply at alice");
  assert.deepEqual(await texts(dm), ["hi bob", "hi alice"]);

  // A `for await` loop over a conversation's stream, left with `break` (return()).
  const aliceStream = dm.stream();
  const got = (async () => {
    for await (const m of aliceStream) {
      if (m.kind === "application") return m.content;
    }
    return undefined;
  })();
  await bobDm.sendText("streamed");
  assert.equal(await got, "streamed");
  assert.equal(aliceStream.isDone, true);

  // Bob's stream holds his own sends too; once ended, next() is done at once.
  await bobStream.end();
  assert.equal(bobStream.isDone, true);
  assert.deepEqual(await bobStream.next(), { done: true, value: undefined });

  // end() resolves a next() that is still waiting (nothing more is sent) as done.
  const idle = bob.conversations.streamAllMessages();
  const pending = idle.next();
  await idle.end();
  assert.deepEqual(await pending, { done: true, value: undefined });

  // Push HMAC keys: one inbox secret, the same keys on both sides of the DM's conversation id.
  const keys = await alice.preferences.getHmacKeys();
  assert.ok(keys[dm.id]?.length >= 1, "alice has HMAC keys for the DM");
  for (const k of keys[dm.id]) {
    assert.equal(k.key.length, 32);
    assert.equal(typeof k.epoch, "bigint");
  }

  assert.equal((await alice.conversations.list()).length, 1);
  assert.equal(alice.conversations.listDms().length, 1);
  assert.equal(alice.conversations.listGroups().length, 0);
  await alice.close();
  await bob.close();
});

test("a group of three: create, add, remove; members and names agree", async () => {
  const [alice, bob, carol] = await Promise.all(
    ["alice", "bob", "carol"].map((n) =>
      Client.create(null, { nodeUrl: net.nodeUrl, dbPath: net.dbPath(n) }),
    ),
  );
  const group = await alice.conversations.createGroup([bob.inboxId], {
    name: "Trip",
    description: "planning",
  });
  assert.ok(group instanceof Group);
  assert.equal(group.name, "Trip");
  assert.equal(group.description, "planning");
  await group.sendText("who is in?");

  await group.addMembers([carol.inboxId]);
  const members = await group.members();
  assert.deepEqual(
    members.map((m) => m.inboxId).sort(),
    [alice.inboxId, bob.inboxId, carol.inboxId].sort(),
  );
  for (const m of members) assert.ok(m.installationIds.length >= 1);

  await carol.conversations.syncAll();
  const carolGroup = await eventually(
    async () => {
      await carol.conversations.sync();
      return carol.conversations.getConversationById(group.id);
    },
    "carol's welcome",
  );
  assert.ok(carolGroup instanceof Group);
  assert.equal(carolGroup.name, "Trip");
  assert.equal(carolGroup.isActive(), true);
  await carolGroup.sendText("me!");

  await group.removeMembers([bob.inboxId]);
  assert.deepEqual(
    (await group.members()).map((m) => m.inboxId).sort(),
    [alice.inboxId, carol.inboxId].sort(),
  );
  await group.updateName("Trip (2 of us)");

  await eventually(async () => {
    await group.sync();
    return (await texts(group)).includes("me!");
  }, "carol's message at alice");
  await eventually(async () => {
    await carolGroup.sync();
    return carolGroup.name === "Trip (2 of us)";
  }, "the rename at carol");

  // Bob is out: his copy turns inactive and sending there fails with GROUP_INACTIVE.
  const bobGroup = await eventually(async () => {
    await bob.conversations.syncAll();
    const g = await bob.conversations.getConversationById(group.id);
    return g && !g.isActive() ? g : undefined;
  }, "bob's removal");
  await assert.rejects(bobGroup.sendText("still here?"), {
    name: "FerryError",
    code: "GROUP_INACTIVE",
    message: "Group is inactive",
  });

  // A DM has no members to add.
  const dm = await alice.conversations.findOrCreateDm(carol.inboxId);
  assert.equal((await alice.conversations.findOrCreateDm(carol.inboxId)).id, dm.id);
  await Promise.all([alice, bob, carol].map((c) => c.close()));
});

test("disappearing messages: the setting reaches the peer and messages vanish on both", async () => {
  const [alice, bob] = await Promise.all(
    ["alice-d", "bob-d"].map((n) =>
      Client.create(null, { nodeUrl: net.nodeUrl, dbPath: net.dbPath(n) }),
    ),
  );
  const dm = await alice.conversations.createDm(bob.inboxId);
  await dm.sendText("kept");
  assert.equal(dm.isMessageDisappearingEnabled(), false);
  assert.equal(dm.messageDisappearingSettings(), undefined);
  const fromNs = BigInt(Date.now()) * 1_000_000n;
  const inNs = 2_000_000_000n;
  await dm.updateMessageDisappearingSettings(fromNs, inNs);
  assert.deepEqual(dm.messageDisappearingSettings(), { fromNs, inNs });
  // A duration that is not positive is refused with a stable code.
  await assert.rejects(dm.updateMessageDisappearingSettings(fromNs, 0n), {
    code: "INVALID_ARGUMENT",
  });

  const bobDm = await eventually(async () => {
    await bob.conversations.syncAll();
    const c = await bob.conversations.getConversationById(dm.id);
    return c && c.isMessageDisappearingEnabled() ? c : undefined;
  }, "the setting at bob");
  assert.deepEqual(bobDm.messageDisappearingSettings(), { fromNs, inNs });
  await bobDm.sendText("gone soon");
  const vanishing = await eventually(async () => {
    await dm.sync();
    return (await dm.messages()).find((m) => m.content === "gone soon");
  }, "bob's message at alice");
  assert.equal(vanishing.expiresAtNs, vanishing.sentAtNs + inNs);
  const kept = (await dm.messages()).find((m) => m.content === "kept");
  assert.equal(kept.expiresAtNs, undefined);

  // Each client's worker deletes it once its time has come; "kept" stays.
  for (const c of [dm, bobDm]) {
    await eventually(async () => {
      const t = await texts(c);
      return !t.includes("gone soon") && t.includes("kept");
    }, "the expired message gone");
  }
  await dm.removeMessageDisappearingSettings();
  assert.equal(dm.isMessageDisappearingEnabled(), false);
  await Promise.all([alice, bob].map((c) => c.close()));
});

test("consent set on one installation reaches the inbox's other installation", async () => {
  const phone = await Client.create(null, { nodeUrl: net.nodeUrl, dbPath: net.dbPath("phone") });
  const bob = await Client.create(null, { nodeUrl: net.nodeUrl, dbPath: net.dbPath("bob") });
  const laptop = await Client.create(phone.accountKey, {
    nodeUrl: net.nodeUrl,
    dbPath: net.dbPath("laptop"),
  });
  assert.equal(laptop.inboxId, phone.inboxId);
  assert.notEqual(laptop.installationId, phone.installationId);
  const state = await phone.preferences.fetchInboxState();
  assert.deepEqual(
    state.installations.map((i) => i.id).sort(),
    [phone.installationId, laptop.installationId].sort(),
  );

  const laptopConsent = laptop.preferences.streamConsent();
  await phone.preferences.setConsentStates([
    { entityType: ConsentEntityType.InboxId, entity: bob.inboxId, state: ConsentState.Denied },
  ]);
  assert.equal(
    await phone.preferences.getConsentState(ConsentEntityType.InboxId, bob.inboxId),
    ConsentState.Denied,
  );

  await eventually(async () => {
    await laptop.preferences.sync();
    await phone.preferences.sync();
    return (
      (await laptop.preferences.getConsentState(ConsentEntityType.InboxId, bob.inboxId)) ===
      ConsentState.Denied
    );
  }, "the consent at the laptop");
  for (;;) {
    const r = await nextWithin(laptopConsent);
    assert.equal(r.done, false);
    if (r.value.entity === bob.inboxId) {
      assert.equal(r.value.state, ConsentState.Denied);
      assert.equal(r.value.entityType, ConsentEntityType.InboxId);
      break;
    }
  }
  await laptopConsent.end();

  // The phone revokes the laptop with the account key it was created with.
  await phone.revokeInstallations([laptop.installationId]);
  const after = await phone.preferences.fetchInboxState();
  assert.deepEqual(after.installations.map((i) => i.id), [phone.installationId]);
  assert.deepEqual(after.revokedInstallations.map((i) => i.id), [laptop.installationId]);
  // Another inbox's key, or no key of 32 bytes, revokes nothing.
  await assert.rejects(phone.revokeInstallations([phone.installationId], bob.accountKey), {
    code: "INVALID_ARGUMENT",
  });
  await assert.rejects(phone.revokeInstallations([phone.installationId], new Uint8Array(5)), {
    code: "INVALID_ARGUMENT",
  });
  assert.deepEqual(
    (await phone.preferences.fetchInboxState()).installations.map((i) => i.id),
    [phone.installationId],
  );
  await Promise.all([phone, bob, laptop].map((c) => c.close()));
});

test("errors carry a stable code and the SDK's message", async () => {
  await assert.rejects(
    Client.create(null, { nodeUrl: "http://127.0.0.1:9", dbPath: net.dbPath("nowhere") }),
    (e) => e.code === "NODE_UNREACHABLE" && e instanceof Error,
  );
  const alice = await Client.create(null, { nodeUrl: net.nodeUrl, dbPath: net.dbPath("alice") });
  await assert.rejects(
    alice.conversations.createGroup(["zz"]),
    (e) => e.code === "INVALID_ARGUMENT",
  );
  assert.equal(await alice.conversations.getConversationById("00".repeat(32)), undefined);
  await assert.rejects(
    Client.build({ dbPath: net.dbPath("never-made") }),
    (e) => e.code === "NOT_REGISTERED",
  );
  await alice.close();
});
