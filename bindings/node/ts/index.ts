/**
 * Ferry for Node.js: end-to-end encrypted messaging (MLS) with archive backups and history
 * sync between a person's own installations. The names follow @xmtp/node-sdk: a `Client` with
 * `conversations`, `preferences`, device sync and archives; groups and DMs; async iterators
 * for streams; ids as hex strings; times as `bigint` nanoseconds since the Unix epoch.
 *
 * Every failure is a {@link FerryError}: a JS `Error` whose `code` is stable
 * (`GROUP_INACTIVE`, `WRONG_KEY`, `ARCHIVE_DAMAGED`, `NODE_UNREACHABLE`, ...) and whose
 * `message` is the Rust SDK's own.
 */
import * as native from "../native.js";

// ---------------------------------------------------------------------------------------------
// Errors

/** An error from Ferry: `code` names what went wrong, `message` says more. */
export class FerryError extends Error {
  /** A stable name for what went wrong, e.g. `GROUP_INACTIVE` or `WRONG_KEY`. */
  readonly code: string;

  constructor(code: string, message: string) {
    super(message);
    this.name = "FerryError";
    this.code = code;
  }
}

const CODED = /^\[([A-Z_]+)\] ([\s\S]*)$/;

function convertError(e: unknown): unknown {
  if (e instanceof Error) {
    const m = CODED.exec(e.message);
    if (m) {
      const err = new FerryError(m[1], m[2]);
      if (e.stack) {
        err.stack = `FerryError: ${m[2]}\n${e.stack.split("\n").slice(1).join("\n")}`;
      }
      return err;
    }
  }
  return e;
}

async function call<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw convertError(e);
  }
}

function callSync<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw convertError(e);
  }
}

// ---------------------------------------------------------------------------------------------
// Values

/** A consent decision. */
export enum ConsentState {
  Unknown = "unknown",
  Allowed = "allowed",
  Denied = "denied",
}

/** What a consent decision is about. */
export enum ConsentEntityType {
  /** A conversation, by its id. */
  GroupId = "conversation",
  /** An inbox, by its id. */
  InboxId = "inbox",
}

/** What an archive holds (XMTP's `BackupElementSelection`). */
export enum ArchiveElement {
  Messages = "messages",
  Consent = "consent",
}
/** XMTP's name for {@link ArchiveElement}. */
export const BackupElementSelection = ArchiveElement;

/** Whether a conversation is a group or a DM. */
export enum ConversationType {
  Group = "group",
  Dm = "dm",
}

/** How to reach the network and where the installation keeps its data. */
export interface ClientOptions {
  /** The delivery node, `http://host:port` (needed by `Client.create`). */
  nodeUrl?: string;
  /** The history server for history sync (left out: history sync off). */
  historySyncUrl?: string;
  /** The installation's data folder (Ferry keeps its SQLite store, `ferry.db`, in it). */
  dbPath: string;
  /** A CA certificate file (PEM) for `https://` servers with their own CA. */
  tlsCa?: string;
  /** Don't run the background worker (history requests go unanswered; streams only see
   * what this process syncs). */
  disableDeviceSync?: boolean;
  /** How often, at most, sending checks a conversation's members against their identity logs
   * (milliseconds; the SDK's default when left out). */
  sendCheckIntervalMs?: number;
  /** How often, at most, syncing does the same (milliseconds). */
  syncCheckIntervalMs?: number;
}

/** A content type id (XMTP's `ContentTypeId`). */
export interface ContentTypeId {
  authorityId: string;
  typeId: string;
  versionMajor: number;
  versionMinor: number;
}

/** Content to send. */
export interface EncodedContent {
  type: ContentTypeId;
  content: Uint8Array;
  fallback?: string;
  parameters?: Uint8Array;
}

/** The content type of plain text. */
export const ContentTypeText: ContentTypeId = {
  authorityId: "xmtp.org",
  typeId: "text",
  versionMajor: 1,
  versionMinor: 0,
};

/** A message held by this installation. */
export interface DecodedMessage {
  id: string;
  conversationId: string;
  senderInboxId: string;
  senderInstallationId: string;
  sentAtNs: bigint;
  /** `application`, or `membership_change` for the notices Ferry writes. */
  kind: string;
  contentType: ContentTypeId;
  /** The text: a text message's content, else its fallback (if any). */
  content: string | undefined;
  encodedContent: Uint8Array;
  fallback: string | undefined;
  referenceId: string | undefined;
  /** `unpublished`, `published` or `failed`. */
  deliveryStatus: string;
  /** When the message disappears (disappearing messages), or undefined. */
  expiresAtNs: bigint | undefined;
}

/** A conversation's disappearing messages: messages sent at or after `fromNs` are deleted on
 * every installation `inNs` nanoseconds after they were sent. */
export interface MessageDisappearingSettings {
  fromNs: bigint;
  inNs: bigint;
}

/** Which messages `messages()` returns. */
export interface ListMessagesOptions {
  sentAfterNs?: bigint;
  sentBeforeNs?: bigint;
  limit?: number;
}

/** Which conversations `list()` returns. */
export interface ListConversationsOptions {
  consentStates?: ConsentState[];
  /** Only active (true) or only restored, read-only (false) conversations. */
  active?: boolean;
  limit?: number;
}

/** Options of a new group. */
export interface CreateGroupOptions {
  name?: string;
  description?: string;
  /** Disappearing messages from the start. */
  messageDisappearingSettings?: MessageDisappearingSettings;
}

/** A member of a conversation. */
export interface GroupMember {
  inboxId: string;
  installationIds: string[];
}

/** An inbox as its verified identity log says. */
export interface InboxState {
  inboxId: string;
  installations: { id: string }[];
  revokedInstallations: { id: string }[];
}

/** A consent decision. */
export interface Consent {
  entityType: ConsentEntityType;
  entity: string;
  state: ConsentState;
}

/** A consent decision held, with when it was made. */
export interface ConsentRecord extends Consent {
  updatedAtNs: bigint;
}

/** What an archive holds: a time range and its elements. */
export interface ArchiveOptions {
  startNs?: bigint;
  endNs?: bigint;
  elements?: ArchiveElement[];
}

/** A 32-byte key, or a passphrase. */
export type ArchiveKey = Uint8Array | string;

/** What an archive holds, read from it. */
export interface ArchiveMetadata {
  format: string;
  formatVersion: string;
  createdAtNs: bigint;
  exportedAtNs: bigint;
  startNs?: bigint;
  endNs?: bigint;
  elements: ArchiveElement[];
  inboxId: string;
  installationId: string;
  conversationCount?: number;
  messageCount?: number;
  consentCount?: number;
  /** `valid`, `invalid` or `unsigned`. */
  signature: string;
}

/** What an import did. */
export interface ImportReport {
  conversationsAdded: number;
  conversationsMerged: number;
  messagesImported: number;
  messagesSkipped: number;
  consentApplied: number;
  consentSkipped: number;
}

/** A history archive sent to the inbox's sync group. */
export interface AvailableArchive {
  pin: string;
  senderInstallationId: string;
  sentAtNs: bigint;
  createdAtNs: bigint;
  conversationCount: number;
  messageCount: number;
  messages: boolean;
  consent: boolean;
  /** `new`, `pending`, `processed` or `failed`. */
  state: string;
}

/** What `syncAll` did. */
export interface SyncSummary {
  conversationsJoined: number;
  messagesProcessed: number;
  conversationsSynced: number;
  numSynced: number;
  historyImported: number;
}

/** A conversation's HMAC key for one period. */
export interface HmacKey {
  epoch: bigint;
  key: Uint8Array;
}

function buf(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

function key(k: ArchiveKey): Buffer | string {
  return typeof k === "string" ? k : buf(k);
}

function toMessage(m: native.Message): DecodedMessage {
  return {
    ...m,
    content: m.content ?? undefined,
    fallback: m.fallback ?? undefined,
    referenceId: m.referenceId ?? undefined,
    expiresAtNs: m.expiresAtNs ?? undefined,
  };
}

// ---------------------------------------------------------------------------------------------
// Streams

interface NativeStream<N> {
  next(): Promise<N | null>;
  end(): void;
}

/**
 * A stream of items as they happen: an async iterator (`for await (const m of stream)`).
 * It ends with `end()`, `return()` (a `break` out of the loop), or when the client closes.
 */
export class AsyncStream<T> implements AsyncIterableIterator<T> {
  #native: NativeStream<unknown>;
  #map: (n: any) => T;
  #done = false;

  /** @internal */
  constructor(n: NativeStream<unknown>, map: (n: any) => T) {
    this.#native = n;
    this.#map = map;
  }

  /** Whether the stream has ended. */
  get isDone(): boolean {
    return this.#done;
  }

  async next(): Promise<IteratorResult<T, undefined>> {
    if (this.#done) return { done: true, value: undefined };
    const item = await call(() => this.#native.next());
    if (item === null || item === undefined) {
      this.#done = true;
      return { done: true, value: undefined };
    }
    return { done: false, value: this.#map(item) };
  }

  async return(): Promise<IteratorResult<T, undefined>> {
    this.#done = true;
    this.#native.end();
    return { done: true, value: undefined };
  }

  /** Ends the stream; a pending `next()` resolves as done. */
  async end(): Promise<void> {
    await this.return();
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<T> {
    return this;
  }
}

// ---------------------------------------------------------------------------------------------
// Conversations

/** What groups and DMs have in common. */
export abstract class Conversation {
  /** @internal */
  protected readonly native: native.Conversation;

  /** @internal */
  constructor(n: native.Conversation) {
    this.native = n;
  }

  /** The conversation id (hex). */
  get id(): string {
    return this.native.id;
  }

  /** Whether this installation can send here: false for a conversation restored from an
   * archive until a member's installation re-adds this one. */
  isActive(): boolean {
    return callSync(() => this.native.isActive());
  }

  /** Turns on disappearing messages for every member (a commit): messages sent at or after
   * `fromNs` are deleted on every installation `inNs` after they were sent. */
  updateMessageDisappearingSettings(fromNs: bigint, inNs: bigint): Promise<void> {
    return call(() => this.native.updateMessageDisappearingSettings(fromNs, inNs));
  }

  /** Turns disappearing messages off for every member. */
  removeMessageDisappearingSettings(): Promise<void> {
    return call(() => this.native.removeMessageDisappearingSettings());
  }

  /** The disappearing-messages setting, or undefined when off. */
  messageDisappearingSettings(): MessageDisappearingSettings | undefined {
    return callSync(() => this.native.messageDisappearingSettings()) ?? undefined;
  }

  /** Whether messages sent here now disappear. */
  isMessageDisappearingEnabled(): boolean {
    return callSync(() => this.native.isMessageDisappearingEnabled());
  }

  /** Sends a text; resolves with the message id. */
  sendText(text: string): Promise<string> {
    return call(() => this.native.sendText(text));
  }

  /** Sends encoded content; resolves with the message id. */
  send(content: EncodedContent): Promise<string> {
    return call(() =>
      this.native.send({
        type: content.type,
        content: buf(content.content),
        fallback: content.fallback,
        parameters: content.parameters ? buf(content.parameters) : undefined,
      }),
    );
  }

  /** The messages held here, oldest first. */
  async messages(options?: ListMessagesOptions): Promise<DecodedMessage[]> {
    return callSync(() => this.native.messages(options)).map(toMessage);
  }

  /** Fetches and applies what the node holds for this conversation. */
  async sync(): Promise<void> {
    await call(() => this.native.sync());
  }

  /** The members: inboxes and their installations here. */
  async members(): Promise<GroupMember[]> {
    return callSync(() => this.native.members());
  }

  /** This conversation's consent. */
  consentState(): ConsentState {
    return callSync(() => this.native.consentState()) as ConsentState;
  }

  /** Sets this conversation's consent; it reaches the inbox's other installations. */
  updateConsentState(state: ConsentState): Promise<void> {
    return call(() => this.native.updateConsentState(state));
  }

  /** New messages of this conversation. */
  stream(): AsyncStream<DecodedMessage> {
    return new AsyncStream(this.native.stream(), toMessage);
  }
}

/** A group conversation. */
export class Group extends Conversation {
  /** The group's name. */
  get name(): string {
    return callSync(() => this.native.name);
  }

  /** The group's description. */
  get description(): string {
    return callSync(() => this.native.description);
  }

  /** Adds inboxes (each with all its installations). */
  addMembers(inboxIds: string[]): Promise<void> {
    return call(() => this.native.addMembers(inboxIds));
  }

  /** Removes inboxes. */
  removeMembers(inboxIds: string[]): Promise<void> {
    return call(() => this.native.removeMembers(inboxIds));
  }

  /** Renames the group. */
  updateName(name: string): Promise<void> {
    return call(() => this.native.updateName(name));
  }

  /** Changes the group's description. */
  updateDescription(description: string): Promise<void> {
    return call(() => this.native.updateDescription(description));
  }
}

/** A direct-message conversation with one other inbox. */
export class Dm extends Conversation {
  /** The other inbox. */
  get peerInboxId(): string {
    return callSync(() => this.native.peerInboxId) ?? "";
  }
}

function wrapConversation(n: native.Conversation): Group | Dm {
  return n.kind === "dm" ? new Dm(n) : new Group(n);
}

/** The client's conversations: create, find, list, sync and stream. */
export class Conversations {
  #native: native.Conversations;

  /** @internal */
  constructor(n: native.Conversations) {
    this.#native = n;
  }

  /** Creates a group with these inboxes. */
  async createGroup(inboxIds: string[], options?: CreateGroupOptions): Promise<Group> {
    return new Group(await call(() => this.#native.createGroup(inboxIds, options)));
  }

  /** Creates a DM with this inbox. */
  async createDm(inboxId: string): Promise<Dm> {
    return new Dm(await call(() => this.#native.createDm(inboxId)));
  }

  /** The DM with this inbox, created if there is none yet. */
  async findOrCreateDm(inboxId: string): Promise<Dm> {
    return new Dm(await call(() => this.#native.findOrCreateDm(inboxId)));
  }

  /** The conversation with this id, if this installation holds it. */
  async getConversationById(id: string): Promise<Group | Dm | undefined> {
    const n = callSync(() => this.#native.getConversationById(id));
    return n ? wrapConversation(n) : undefined;
  }

  /** The DM with this inbox, if there is one. */
  getDmByInboxId(inboxId: string): Dm | undefined {
    const n = callSync(() => this.#native.getDmByInboxId(inboxId));
    return n ? new Dm(n) : undefined;
  }

  /** Groups and DMs, newest activity first. */
  async list(options?: ListConversationsOptions): Promise<(Group | Dm)[]> {
    return callSync(() => this.#native.list(options)).map(wrapConversation);
  }

  /** Groups only. */
  listGroups(options?: ListConversationsOptions): Group[] {
    return callSync(() => this.#native.listGroups(options)).map((n) => new Group(n));
  }

  /** DMs only. */
  listDms(options?: ListConversationsOptions): Dm[] {
    return callSync(() => this.#native.listDms(options)).map((n) => new Dm(n));
  }

  /** Joins the conversations this installation was added to. */
  async sync(): Promise<void> {
    await call(() => this.#native.sync());
  }

  /** Joins new conversations and syncs every one (only those with these consent states,
   * when given). */
  syncAll(consentStates?: ConsentState[]): Promise<SyncSummary> {
    return call(() => this.#native.syncAll(consentStates));
  }

  /** New conversations as they appear. */
  stream(): AsyncStream<Group | Dm> {
    return new AsyncStream(this.#native.stream(), wrapConversation);
  }

  /** Every new message of every conversation. */
  streamAllMessages(): AsyncStream<DecodedMessage> {
    return new AsyncStream(this.#native.streamAllMessages(), toMessage);
  }
}

// ---------------------------------------------------------------------------------------------
// Preferences

/** Consent and HMAC keys: the same on every installation of the inbox. */
export class Preferences {
  #native: native.Preferences;

  /** @internal */
  constructor(n: native.Preferences) {
    this.#native = n;
  }

  /** Sets consent decisions; they reach the inbox's other installations. */
  setConsentStates(records: Consent[]): Promise<void> {
    return call(() => this.#native.setConsentStates(records));
  }

  /** The consent held for an entity (`unknown` if none). */
  async getConsentState(entityType: ConsentEntityType, entity: string): Promise<ConsentState> {
    return callSync(() => this.#native.getConsentState(entityType, entity)) as ConsentState;
  }

  /** Every consent decision held. */
  async consentList(): Promise<ConsentRecord[]> {
    return callSync(() => this.#native.consentList()) as ConsentRecord[];
  }

  /** This inbox's state (or another's): its installations, from its verified identity log. */
  fetchInboxState(inboxId?: string): Promise<InboxState> {
    return call(() => this.#native.fetchInboxState(inboxId));
  }

  /** XMTP's name: the states of these inboxes. */
  async inboxStateFromInboxIds(inboxIds: string[]): Promise<InboxState[]> {
    return Promise.all(inboxIds.map((i) => this.fetchInboxState(i)));
  }

  /** Sends this installation's preference changes and applies the other installations'. */
  async sync(): Promise<void> {
    await call(() => this.#native.sync());
  }

  /** Consent decisions as they change. */
  streamConsent(): AsyncStream<ConsentRecord> {
    return new AsyncStream(this.#native.streamConsent(), (c) => c as ConsentRecord);
  }

  /** The HMAC keys of every conversation (by conversation id), for push notifications. */
  getHmacKeys(): Promise<Record<string, HmacKey[]>> {
    return call(() => this.#native.getHmacKeys());
  }
}

// ---------------------------------------------------------------------------------------------
// Client

/** One installation of an inbox. */
export class Client {
  #native: native.Client;
  /** Conversations: create, find, list, sync and stream. */
  readonly conversations: Conversations;
  /** Consent and HMAC keys. */
  readonly preferences: Preferences;

  private constructor(n: native.Client) {
    this.#native = n;
    this.conversations = new Conversations(n.conversations);
    this.preferences = new Preferences(n.preferences);
  }

  /**
   * Registers a new installation: of a new inbox (`accountKey` null or left out: read the
   * new inbox's key from `client.accountKey` and keep it like a password), or of the inbox
   * this 32-byte account key controls.
   */
  static async create(
    accountKey: Uint8Array | null | undefined,
    options: ClientOptions,
  ): Promise<Client> {
    const k = accountKey ? buf(accountKey) : null;
    return new Client(await call(() => native.createClient(k, options)));
  }

  /**
   * Opens an installation registered before in `options.dbPath`. Takes `(options)` or, as
   * XMTP's `Client.build(identifier, options)`, `(anything, options)`.
   */
  static async build(a: ClientOptions | unknown, b?: ClientOptions): Promise<Client> {
    const options = (b ?? a) as ClientOptions;
    return new Client(await call(() => native.buildClient(options)));
  }

  /** The inbox id (hex). */
  get inboxId(): string {
    return this.#native.inboxId;
  }

  /** This installation's id (hex). */
  get installationId(): string {
    return this.#native.installationId;
  }

  /** The account key this client was created with or created (a built client has none). */
  get accountKey(): Uint8Array | undefined {
    return this.#native.accountKey ?? undefined;
  }

  /** The history server in use ('' when history sync is off). */
  get historySyncUrl(): string {
    return this.#native.historySyncUrl;
  }

  /** Stops the background worker and closes the client; its streams end. */
  close(): Promise<void> {
    return call(() => this.#native.close());
  }

  /** Revokes installations of this inbox (hex ids or bytes), signed with the inbox's account
   * key: the one given, else the one this client was created with. */
  revokeInstallations(
    installationIds: (string | Uint8Array)[],
    accountKey?: Uint8Array,
  ): Promise<void> {
    const ids = installationIds.map((i) => (typeof i === "string" ? i : Buffer.from(i).toString("hex")));
    return call(() => this.#native.revokeInstallations(ids, accountKey ? buf(accountKey) : undefined));
  }

  // Device sync

  /** Asks the inbox's other installations for history; resolves with the request's pin. */
  sendSyncRequest(options?: ArchiveOptions, serverUrl?: string): Promise<string> {
    return call(() => this.#native.sendSyncRequest(options, serverUrl));
  }

  /** Uploads an archive of this installation's history and announces it in the sync group
   * (as the answer to the request with this pin, when one is given); resolves with its pin. */
  sendSyncArchive(pin?: string, options?: ArchiveOptions, serverUrl?: string): Promise<string> {
    return call(() => this.#native.sendSyncArchive(pin, options, serverUrl));
  }

  /** Archives announced in the sync group in the last `daysCutoff` days. */
  listAvailableArchives(daysCutoff: number): Promise<AvailableArchive[]> {
    return call(() => this.#native.listAvailableArchives(daysCutoff));
  }

  /** Downloads and imports an announced archive (the newest when no pin is given). */
  processSyncArchive(pin?: string): Promise<ImportReport> {
    return call(() => this.#native.processSyncArchive(pin));
  }

  /** Syncs the sync groups and handles what arrived there; resolves with how many
   * messages were handled. */
  syncAllDeviceSyncGroups(): Promise<number> {
    return call(() => this.#native.syncAllDeviceSyncGroups());
  }

  // Archives

  /**
   * Writes an encrypted, signed archive of this installation's history to `path`. Takes
   * `(path, key, options?)`, or `(path, options, key)` in XMTP's order.
   */
  async createArchive(
    path: string,
    keyOrOptions: ArchiveKey | ArchiveOptions,
    optionsOrKey?: ArchiveOptions | ArchiveKey,
  ): Promise<ArchiveMetadata> {
    const [k, o] = isKey(keyOrOptions)
      ? [keyOrOptions, optionsOrKey as ArchiveOptions | undefined]
      : [optionsOrKey as ArchiveKey, keyOrOptions];
    return (await call(() => this.#native.createArchive(path, key(k), o))) as ArchiveMetadata;
  }

  /** What an archive holds (the key is needed: its metadata is encrypted too). */
  async archiveMetadata(path: string, k: ArchiveKey): Promise<ArchiveMetadata> {
    return (await call(() => this.#native.archiveMetadata(path, key(k)))) as ArchiveMetadata;
  }

  /** Imports an archive of this inbox, all or nothing and additively. Restored
   * conversations are inactive until a member's installation re-adds this one. */
  importArchive(path: string, k: ArchiveKey): Promise<ImportReport> {
    return call(() => this.#native.importArchive(path, key(k)));
  }

  /** `createArchive` into memory. */
  async createArchiveBytes(k: ArchiveKey, options?: ArchiveOptions): Promise<Uint8Array> {
    return call(() => this.#native.createArchiveBytes(key(k), options));
  }

  /** `archiveMetadata` of an archive in memory. */
  async archiveMetadataBytes(archive: Uint8Array, k: ArchiveKey): Promise<ArchiveMetadata> {
    return (await call(() =>
      this.#native.archiveMetadataBytes(buf(archive), key(k)),
    )) as ArchiveMetadata;
  }

  /** `importArchive` of an archive in memory. */
  importArchiveBytes(archive: Uint8Array, k: ArchiveKey): Promise<ImportReport> {
    return call(() => this.#native.importArchiveBytes(buf(archive), key(k)));
  }
}

function isKey(x: unknown): x is ArchiveKey {
  return typeof x === "string" || x instanceof Uint8Array;
}

/** Nanoseconds since the Unix epoch, now. */
export function nowNs(): bigint {
  return native.nowNs();
}
