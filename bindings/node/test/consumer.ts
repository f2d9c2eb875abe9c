// Compiled (not run) by scripts/test-node with `tsc --noEmit -p test/tsconfig.json`: an app
// written against the published types, so a change that breaks them fails the tests.
import {
  ArchiveElement,
  Client,
  ConsentEntityType,
  ConsentState,
  Dm,
  FerryError,
  Group,
  type DecodedMessage,
  type InboxState,
} from "../dist/index.js";

export async function app(nodeUrl: string): Promise<string[]> {
  const alice: Client = await Client.create(null, { nodeUrl, dbPath: "alice" });
  const group: Group = await alice.conversations.createGroup(["00"], { name: "n" });
  const id: string = await group.sendText("hi");
  const all: (Group | Dm)[] = await alice.conversations.list({ consentStates: [ConsentState.Allowed] });
  const dm: Dm | undefined = alice.conversations.getDmByInboxId("00");
  const peer: string | undefined = dm?.peerInboxId;
  const msgs: DecodedMessage[] = await group.messages({ sentAfterNs: 0n, limit: 10 });
  const ns: bigint = msgs[0].sentAtNs;
  await alice.preferences.setConsentStates([
    { entityType: ConsentEntityType.InboxId, entity: "00", state: ConsentState.Denied },
  ]);
  const state: InboxState = await alice.preferences.fetchInboxState();
  const meta = await alice.createArchive("a.ferry", new Uint8Array(32), {
    elements: [ArchiveElement.Messages],
    startNs: ns,
  });
  const count: number | undefined = meta.messageCount;
  const stream = alice.conversations.streamAllMessages();
  for await (const m of stream) {
    if (m.content === "stop") break;
  }
  try {
    await group.sendText("x");
  } catch (e) {
    if (e instanceof FerryError && e.code === "GROUP_INACTIVE") return [];
  }
  await alice.close();
  return [id, String(all.length), peer ?? "", String(count), state.inboxId];
}
