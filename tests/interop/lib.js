// Shared helpers for the interop scripts: argument parsing, assertions, clients, output.
"use strict";

const crypto = require("crypto");
const Arweave = require("arweave");

/** Given a message, throw an Error that the runner prints as one line and exits 1 on. */
function fail(message) {
  throw new Error(message);
}

/** Given a condition and a message, fail with the message when the condition is false. */
function check(condition, message) {
  if (!condition) fail(message);
}

/** Given two byte arrays, return true when they hold the same bytes. */
function sameBytes(a, b) {
  return Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
}

/** Given bytes, return their SHA-256 as hex. */
function sha256Hex(bytes) {
  return crypto.createHash("sha256").update(Buffer.from(bytes)).digest("hex");
}

/** Given a base URL such as http://127.0.0.1:1984, return an arweave-js client for it. */
function arweaveFor(baseUrl) {
  const url = new URL(baseUrl);
  return Arweave.init({
    host: url.hostname,
    port: Number(url.port || (url.protocol === "https:" ? 443 : 80)),
    protocol: url.protocol.replace(":", ""),
    timeout: 60000,
    logging: false,
  });
}

/** Given an arweave-js response, return a short description for error messages. */
function describe(response) {
  let body = response.data;
  if (body instanceof ArrayBuffer || ArrayBuffer.isView(body)) body = Buffer.from(body).toString("utf8");
  if (typeof body !== "string") body = JSON.stringify(body);
  return `HTTP ${response.status} ${String(body).slice(0, 300)}`;
}

/** Given an arweave-js client and a path, GET it as bytes and return {status, bytes, headers}. */
async function getBytes(arweave, path) {
  const response = await arweave.api.get(path, { responseType: "arraybuffer" });
  return { status: response.status, bytes: Buffer.from(response.data || []), headers: response.headers, response };
}

/** Given an arweave-js client, mine one block (arlocal's /mine) and check it answered 200. */
async function mine(arweave) {
  const response = await arweave.api.get("mine");
  check(response.status === 200, `GET /mine: expected 200, got ${describe(response)}`);
}

/** Given an arweave-js client, a JWK and an amount in winston, mint it (arlocal's /mint). */
async function mint(arweave, jwk, winston) {
  const address = await arweave.wallets.jwkToAddress(jwk);
  const response = await arweave.api.get(`mint/${address}/${winston}`);
  check(response.status === 200, `GET /mint/${address}/${winston}: expected 200, got ${describe(response)}`);
  return address;
}

/** Given an arweave-js client, a GraphQL query and variables, return `data` or fail with the errors. */
async function graphql(arweave, query, variables = {}) {
  const response = await arweave.api.post("graphql", { query, variables });
  check(response.status === 200, `POST /graphql: expected 200, got ${describe(response)}`);
  check(!response.data.errors, `POST /graphql: errors ${JSON.stringify(response.data.errors)}`);
  return response.data.data;
}

/** Given an async main(baseUrl, args), run it with argv, print its result as JSON, exit non-zero on failure. */
function run(main) {
  const [baseUrl, ...args] = process.argv.slice(2);
  if (!baseUrl) {
    process.stderr.write(`usage: node ${process.argv[1]} BASE_URL [args...]\n`);
    process.exit(2);
  }
  main(baseUrl, args).then(
    (result) => {
      process.stdout.write(JSON.stringify(result === undefined ? { ok: true } : result) + "\n");
      process.exit(0);
    },
    (err) => {
      process.stderr.write(`FAILED: ${err && err.message ? err.message : err}\n`);
      if (err && err.stack && process.env.INTEROP_TRACE) process.stderr.write(err.stack + "\n");
      process.exit(1);
    },
  );
}

module.exports = { fail, check, sameBytes, sha256Hex, arweaveFor, describe, getBytes, mine, mint, graphql, run };
