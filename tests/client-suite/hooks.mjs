// Mocha root hooks for the socket.io-client package's own test suite run against the Rust
// `client-fixture` example (scripts/client-suite.sh passes this file to `mocha --require`).
// They replace the suite's test/support/hooks.ts, which starts a Node server in-process: here
// the fixture binary named by CLIENT_FIXTURE_BIN is started before the first test and stopped
// after the last. CLIENT_FIXTURE_PORT (default 3210, the port the suite connects to) and
// CLIENT_FIXTURE_LOG (where the fixture's log goes) are optional.
import { spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { connect } from "node:net";

const bin = process.env.CLIENT_FIXTURE_BIN;
const port = Number(process.env.CLIENT_FIXTURE_PORT || 3210);
const logPath = process.env.CLIENT_FIXTURE_LOG || "client-fixture.log";
let fixture;
let exited;

function canConnect() {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on("error", () => resolve(false));
  });
}

async function logTail() {
  const text = await readFile(logPath, "utf8").catch(() => "");
  return text.split("\n").slice(-20).join("\n");
}

// The two "reconnect timeout" tests install fake timers and let them run while the previous
// test's client is still closing: the answers to its last requests, arriving meanwhile, queue
// fake timers that decide the test. With the suite's own in-process server they arrive after;
// with any server in another process (Node's own included) they sometimes arrive during, and
// the test fails, leaving its fake timers installed for every later test. So those two tests
// start once the previous test's traffic has settled (docs/official-suites.md).
const SETTLE_BEFORE = new Set(["reconnect timeout"]);
const SETTLE_MS = 100;

export const mochaHooks = {
  async beforeEach() {
    if (SETTLE_BEFORE.has(this.currentTest?.parent?.title)) {
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    }
  },

  async beforeAll() {
    this.timeout(15000);
    if (!bin) {
      throw new Error("CLIENT_FIXTURE_BIN is not set: run the suite with scripts/client-suite.sh");
    }
    if (await canConnect()) {
      throw new Error(`something already listens on 127.0.0.1:${port}: stop it and re-run`);
    }
    const log = createWriteStream(logPath);
    fixture = spawn(bin, ["--port", String(port)], { stdio: ["ignore", "inherit", "pipe"] });
    fixture.stderr.pipe(log);
    exited = new Promise((resolve) => fixture.once("exit", resolve));
    // Never leave the fixture behind, even when mocha ends without running afterAll.
    process.once("exit", () => fixture.kill("SIGKILL"));
    const deadline = Date.now() + 10000;
    while (!(await canConnect())) {
      if (fixture.exitCode !== null || fixture.signalCode !== null) {
        throw new Error(`the client fixture exited at start; its log:\n${await logTail()}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`the client fixture did not listen within 10 s; its log:\n${await logTail()}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  },
  async afterAll() {
    if (fixture && fixture.exitCode === null && fixture.signalCode === null) {
      fixture.kill("SIGINT");
      await exited;
    }
  },
};
