// The README's "Use from Node.js" example, run as written (with the package import pointed
// at this build) against a real node.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { startNet } from "./net.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "..", "..", "..");

let net;
before(async () => {
  net = await startNet();
});
after(async () => {
  await net?.stop();
});

/** The first ```js block after the heading "## Use from Node.js". */
function readmeExample() {
  const readme = readFileSync(path.join(repo, "README.md"), "utf8");
  const at = readme.indexOf("## Use from Node.js");
  assert.ok(at >= 0, "README.md has a section \"Use from Node.js\"");
  const m = /```js\n([\s\S]*?)```/.exec(readme.slice(at));
  assert.ok(m, "the section has a js example");
  return m[1];
}

test("the README's Node.js example runs", async () => {
  const code = readmeExample();
  const lines = code.trim().split("\n").length;
  assert.ok(lines <= 25, `the example stays short (${lines} lines)`);
  const sdk = pathToFileURL(path.join(here, "..", "dist", "index.js")).href;
  const file = path.join(net.dir, "readme-example.mjs");
  writeFileSync(file, code.replaceAll('"@ferry/node-sdk"', JSON.stringify(sdk)));
  const { stdout } = await promisify(execFile)(process.execPath, [file], {
    env: { ...process.env, FERRY_NODE_URL: net.nodeUrl, FERRY_DATA: path.join(net.dir, "readme") },
    timeout: 120_000,
  });
  assert.match(stdout, /bob read: hello from Node/);
  assert.match(stdout, /archived \d+ messages/);
});

test("examples/node/chat.mjs runs: chat, back up, restore", async () => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [path.join(repo, "examples", "node", "chat.mjs")],
    {
      env: { ...process.env, FERRY_NODE_URL: net.nodeUrl, FERRY_DATA: path.join(net.dir, "example") },
      timeout: 180_000,
    },
  );
  assert.match(stdout, /bob: hi alice/);
  assert.match(stdout, /restored .* read-only: Group is inactive \(GROUP_INACTIVE\)/);
  assert.match(stdout, /re-added: the new laptop sends again/);
});
