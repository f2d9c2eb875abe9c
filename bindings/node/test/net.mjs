// Test setup: a real `ferry node` and `ferry history-server`, started on loopback (port 0)
// from the workspace's `ferry` binary (FERRY_BIN, else target/debug/ferry; `scripts/test`
// builds it first), and a temp folder per test file.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createInterface } from "node:readline";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..", "..", "..");

export function ferryBin() {
  const bin = process.env.FERRY_BIN ?? path.join(repo, "target", "debug", "ferry");
  if (!existsSync(bin)) {
    throw new Error(`no ferry binary at ${bin}: run \`cargo build -p ferry-cli\` first (or set FERRY_BIN)`);
  }
  return bin;
}

function startServer(args) {
  const child = spawn(ferryBin(), args, { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    const timer = setTimeout(() => reject(new Error(`ferry ${args[0]} did not start`)), 30_000);
    lines.once("line", (line) => {
      clearTimeout(timer);
      const m = /^listening on (\S+)$/.exec(line);
      if (!m) return reject(new Error(`unexpected first line from ferry ${args[0]}: ${line}`));
      // Keep reading so the pipe never fills.
      lines.on("line", () => {});
      resolve({ child, url: `http://${m[1]}` });
    });
    child.once("exit", (code) => reject(new Error(`ferry ${args[0]} exited with ${code}`)));
  });
}

/** A node, a history server and a temp folder; `stop()` ends them all. */
export async function startNet() {
  const dir = mkdtempSync(path.join(tmpdir(), "ferry-node-sdk-"));
  const node = await startServer(["node", "--listen", "127.0.0.1:0", "--in-memory"]);
  const history = await startServer([
    "history-server",
    "--listen",
    "127.0.0.1:0",
    "--dir",
    path.join(dir, "history"),
  ]);
  let n = 0;
  return {
    dir,
    nodeUrl: node.url,
    historyUrl: history.url,
    /** A fresh installation folder. */
    dbPath(name) {
      n += 1;
      return path.join(dir, `${name}-${n}`);
    },
    async stop() {
      for (const s of [node, history]) {
        s.child.kill("SIGTERM");
      }
      await Promise.all(
        [node, history].map(
          (s) => new Promise((r) => (s.child.exitCode !== null ? r() : s.child.once("exit", r))),
        ),
      );
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Polls `f` until it returns a truthy value (or throws after `ms`). */
export async function eventually(f, what, ms = 60_000) {
  const start = Date.now();
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() - start > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The texts of a conversation's application messages, oldest first. */
export async function texts(conversation) {
  return (await conversation.messages())
    .filter((m) => m.kind === "application")
    .map((m) => m.content);
}
