#!/usr/bin/env node
// Start arlocal through its JS API, bound to 127.0.0.1 only.
//
// Usage: node tests/interop/start_arlocal.js [--port N] [--db DIR] [--logs]
//   --port N   port to listen on (default 0: the OS picks a free one)
//   --db DIR   arlocal's SQLite folder (default: inside a fresh temporary folder, removed on exit)
//   --logs     let arlocal print its request log
// Once listening it prints one JSON line on stdout: {"url": "http://127.0.0.1:PORT", "port": PORT}
// and runs until SIGINT/SIGTERM (or until its stdin closes when started with --stdin-lifetime).
"use strict";

const fs = require("fs");
const http = require("http");
const os = require("os");
const path = require("path");

const ArLocal = require("arlocal").default;

const HOST = "127.0.0.1";

/** Given argv, return {port, db, logs, stdinLifetime}. */
function parseArgs(argv) {
  const opts = { port: 0, db: null, logs: false, stdinLifetime: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--port") opts.port = Number(argv[++i]);
    else if (arg === "--db") opts.db = argv[++i];
    else if (arg === "--logs") opts.logs = true;
    else if (arg === "--stdin-lifetime") opts.stdinLifetime = true;
    else throw new Error(`unknown argument: ${arg}`);
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    throw new Error(`--port must be an integer 0..65535`);
  }
  return opts;
}

/**
 * Given an ArLocal instance and a port, make its start() listen on 127.0.0.1:port.
 * Security: ArLocal's constructor takes no host and start() calls koa's app.listen(port),
 * which binds every interface. Replacing listen on this instance (before start) means the
 * socket is only ever opened on loopback; it is never bound wider, even for a moment.
 * Returns a promise of the listening http.Server.
 */
function bindToLoopback(arlocal, port) {
  return new Promise((resolve, reject) => {
    arlocal.app.listen = function listenOnLoopback() {
      const server = http.createServer(this.callback());
      server.once("error", reject);
      server.listen(port, HOST, () => resolve(server));
      return server;
    };
  });
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  // arlocal appends a request log to ./logs; run it in a temporary folder so nothing lands
  // in the caller's tree (not inside the db folder: arlocal deletes and recreates that on start).
  const givenDb = opts.db === null ? null : path.resolve(opts.db);
  const workdir = fs.mkdtempSync(path.join(os.tmpdir(), "arlocal-"));
  process.chdir(workdir);
  const db = givenDb || path.join(workdir, "db");
  // The port given to the constructor only names arlocal's default db folder; we pass db.
  const arlocal = new ArLocal(opts.port || 1984, opts.logs, db, false);
  const listening = bindToLoopback(arlocal, opts.port);
  await arlocal.start();
  const server = await listening;
  const port = server.address().port;
  process.stdout.write(JSON.stringify({ url: `http://${HOST}:${port}`, port }) + "\n");

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    server.close();
    try { await arlocal.stop(); } catch (e) { /* best effort: the process exits anyway */ }
    // arlocal.stop() tears its db down in the background; give it a moment, then leave.
    setTimeout(() => {
      fs.rmSync(workdir, { recursive: true, force: true });
      process.exit(0);
    }, 300);
  };
  // Apollo Server (inside arlocal) installs its own SIGINT/SIGTERM handlers that stop it and then
  // re-raise the signal, killing us before arlocal's db and our temporary folder are cleaned up.
  // Ours replace them; stop() still stops Apollo through arlocal.stop().
  for (const signal of ["SIGINT", "SIGTERM"]) {
    process.removeAllListeners(signal);
    process.on(signal, stop);
  }
  if (opts.stdinLifetime) {
    // The parent holds our stdin open; when it dies the pipe closes and we stop too.
    process.stdin.on("end", stop);
    process.stdin.resume();
  }
}

main().catch((err) => {
  process.stderr.write(`start_arlocal: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
