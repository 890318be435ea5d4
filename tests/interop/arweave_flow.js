#!/usr/bin/env node
// arweave-js end to end against one node: wallet, mint, small and chunked uploads (the chunked
// one resumed from a serialised uploader halfway), mine, get + verify, getData through
// /tx/{id}/offset and /chunk, getStatus, a path manifest, GraphQL by tag.
//
// Usage: node arweave_flow.js BASE_URL [CHUNKED_BYTES] [--arlocal]
//   --arlocal: tolerate arlocal's known departures from the Arweave node (listed in ARLOCAL_QUIRKS),
//              so the script itself can be proven against arlocal; our node gets the strict checks.
// Prints JSON: {run, address, small: {id, size, sha256}, chunked: {id, size, sha256}}.
"use strict";

const crypto = require("crypto");
const { check, sameBytes, sha256Hex, arweaveFor, describe, getBytes, mine, mint, graphql, run } = require("./lib");

const RUN_TAG = "Interop-Run";
const DEFAULT_CHUNKED_BYTES = 700 * 1024; // three 256 KiB chunks (the last two balanced)
const MINT_WINSTON = "1000000000000000";
// Where arlocal 1.1.66 answers differently from the Arweave node.
const ARLOCAL_QUIRKS = {
  pendingStatus200: "GET /tx/{id}/status answers 200 \"Pending\" where the node answers 202",
};
const MAX_UPLOAD_CALLS_PER_CHUNK = 1; // any non-200 chunk answer is a failure, not a retry

/** Given a client, key, bytes and tags, return a signed transaction carrying them. */
async function signedTransaction(arweave, jwk, data, tags) {
  const tx = await arweave.createTransaction({ data }, jwk);
  for (const [name, value] of tags) tx.addTag(name, value);
  await arweave.transactions.sign(tx, jwk);
  return tx;
}

/** Given a client and a signed small transaction, post it with its data inline. */
async function postInline(arweave, tx) {
  const response = await arweave.transactions.post(tx);
  check(response.status === 200, `POST /tx (inline ${tx.data_size} bytes): expected 200, got ${describe(response)}`);
}

/**
 * Given a client, a signed transaction and its data, upload it with getUploader one chunk per
 * call; halfway, serialise the uploader and resume from that JSON, as a restarted client does.
 */
async function postChunked(arweave, tx, data) {
  let uploader = await arweave.transactions.getUploader(tx, data);
  const maxCalls = 1 + uploader.totalChunks * MAX_UPLOAD_CALLS_PER_CHUNK;
  for (let calls = 0; !uploader.isComplete; calls++) {
    check(calls < maxCalls, `upload did not complete after ${calls} calls (${uploader.uploadedChunks}/${uploader.totalChunks})`);
    await uploader.uploadChunk();
    check(uploader.lastResponseStatus === 200,
      `upload chunk ${uploader.uploadedChunks}/${uploader.totalChunks}: got HTTP ${uploader.lastResponseStatus} ${uploader.lastResponseError}`);
    if (calls === 1 && !uploader.isComplete) {
      const saved = JSON.parse(JSON.stringify(uploader.toJSON()));
      uploader = await arweave.transactions.getUploader(saved, data);
    }
  }
  return uploader.totalChunks;
}

/** Given a client, an id and the expected status, check /tx/{id}/status and return the confirmation. */
async function expectStatus(arweave, id, expected, quirks = {}) {
  const status = await arweave.transactions.getStatus(id);
  if (expected === 202 && quirks.pendingStatus200 && status.status === 200 && status.confirmed === "Pending") {
    return null;
  }
  check(status.status === expected, `getStatus(${id}): expected ${expected}, got ${JSON.stringify(status)}`);
  return status.confirmed;
}

/** Given a confirmation object from getStatus, check its fields have the Arweave node's shapes. */
function checkConfirmation(id, confirmed) {
  check(confirmed && Number.isInteger(confirmed.block_height) && confirmed.block_height >= 0,
    `getStatus(${id}): block_height missing or not an integer: ${JSON.stringify(confirmed)}`);
  check(typeof confirmed.block_indep_hash === "string" && confirmed.block_indep_hash.length > 0,
    `getStatus(${id}): block_indep_hash missing: ${JSON.stringify(confirmed)}`);
  check(Number.isInteger(confirmed.number_of_confirmations) && confirmed.number_of_confirmations >= 0,
    `getStatus(${id}): number_of_confirmations missing: ${JSON.stringify(confirmed)}`);
}

/** Given a client, a posted tx and its original bytes, check get/verify/getData/chunks/raw bytes. */
async function checkReadBack(arweave, sent, data) {
  const id = sent.id;
  const fetched = await arweave.transactions.get(id);
  check(fetched.id === id, `transactions.get(${id}) returned id ${fetched.id}`);
  check(await arweave.transactions.verify(fetched), `transactions.verify(${id}) is false for the header the node served`);
  check(fetched.data_root === sent.data_root, `data_root served ${fetched.data_root}, signed ${sent.data_root}`);
  check(fetched.data_size === String(data.length), `data_size served ${fetched.data_size}, expected ${data.length}`);
  const sentTags = sent.tags.map((t) => [t.get("name", { decode: true, string: true }), t.get("value", { decode: true, string: true })]);
  const gotTags = fetched.tags.map((t) => [t.get("name", { decode: true, string: true }), t.get("value", { decode: true, string: true })]);
  check(JSON.stringify(gotTags) === JSON.stringify(sentTags), `tags served ${JSON.stringify(gotTags)}, signed ${JSON.stringify(sentTags)}`);

  // Through /tx/{id}/offset and /chunk only: downloadChunkedData has no fallback.
  const chunked = await arweave.chunks.downloadChunkedData(id);
  check(sameBytes(chunked, data), `chunks.downloadChunkedData(${id}): bytes differ (${chunked.length} vs ${data.length})`);
  // getData falls back to GET /{id} silently when chunks fail; catch that and call it a failure.
  const fallbacks = [];
  const warn = console.warn;
  console.warn = (...args) => fallbacks.push(args.join(" "));
  let viaGetData;
  try {
    viaGetData = await arweave.transactions.getData(id, { decode: true });
  } finally {
    console.warn = warn;
  }
  check(fallbacks.length === 0, `transactions.getData(${id}) fell back to the gateway cache: ${fallbacks.join("; ")}`);
  check(sameBytes(viaGetData, data), `transactions.getData(${id}, decode): bytes differ`);

  const raw = await getBytes(arweave, id);
  check(raw.status === 200, `GET /${id}: expected 200, got HTTP ${raw.status}`);
  check(sameBytes(raw.bytes, data), `GET /${id}: bytes differ (${raw.bytes.length} vs ${data.length})`);
}

/** Given a client, a pending tx id and its bytes, check GET /{id} already serves them. */
async function checkServedPending(arweave, id, data) {
  const raw = await getBytes(arweave, id);
  check(raw.status === 200, `GET /${id} before mining: expected 200, got HTTP ${raw.status}`);
  check(sameBytes(raw.bytes, data), `GET /${id} before mining: bytes differ (${raw.bytes.length} vs ${data.length})`);
}

/**
 * Given a client, a key and the two uploads, post a path manifest (arweave/paths 0.1.0) over them,
 * mine, and check paths, the index, the trailing-slash form and an unknown path; return its id.
 */
async function checkManifest(arweave, jwk, runId, small, smallData, chunked, chunkedData) {
  const manifest = {
    manifest: "arweave/paths",
    version: "0.1.0",
    index: { path: "index.txt" },
    paths: { "index.txt": { id: small.id }, "data/blob.bin": { id: chunked.id } },
  };
  const tx = await signedTransaction(arweave, jwk, Buffer.from(JSON.stringify(manifest)),
    [["Content-Type", "application/x.arweave-manifest+json"], [RUN_TAG, runId], ["Kind", "manifest"]]);
  await postInline(arweave, tx);
  await mine(arweave);
  const expectations = [
    [`${tx.id}/index.txt`, smallData],
    [`${tx.id}/data/blob.bin`, chunkedData],
    [`${tx.id}/`, smallData],
    [tx.id, smallData], // a redirect to the trailing slash, followed as a browser would
  ];
  for (const [path, data] of expectations) {
    const got = await getBytes(arweave, path);
    check(got.status === 200, `GET /${path} (manifest): expected 200, got HTTP ${got.status}`);
    check(sameBytes(got.bytes, data), `GET /${path} (manifest): bytes differ (${got.bytes.length} vs ${data.length})`);
  }
  const missing = await getBytes(arweave, `${tx.id}/no/such/path`);
  check(missing.status === 404, `GET /${tx.id}/no/such/path (manifest): expected 404, got HTTP ${missing.status}`);
  return tx.id;
}

/** Given a client and a run tag value, return the ids GraphQL finds for that tag. */
async function idsByTag(arweave, runId) {
  const query = `{ transactions(tags: [{name: "${RUN_TAG}", values: ["${runId}"]}], first: 10) {
    edges { cursor node { id tags { name value } data { size } } } } }`;
  const data = await graphql(arweave, query);
  return data.transactions.edges.map((edge) => edge.node);
}

async function main(baseUrl, args) {
  const arweave = arweaveFor(baseUrl);
  const quirks = args.includes("--arlocal") ? ARLOCAL_QUIRKS : {};
  const positional = args.filter((arg) => !arg.startsWith("--"));
  const chunkedBytes = Number(positional[0] || DEFAULT_CHUNKED_BYTES);
  const runId = crypto.randomBytes(8).toString("hex");

  const jwk = await arweave.wallets.generate();
  const address = await mint(arweave, jwk, MINT_WINSTON);
  const balance = await arweave.wallets.getBalance(address);
  check(balance === MINT_WINSTON, `balance after mint: expected ${MINT_WINSTON}, got ${balance}`);

  const smallData = Buffer.from(`hello permaweb ${runId}\n`, "utf8");
  const small = await signedTransaction(arweave, jwk, smallData,
    [["Content-Type", "text/plain"], [RUN_TAG, runId], ["Kind", "small"]]);
  await postInline(arweave, small);
  await expectStatus(arweave, small.id, 202, quirks);

  const chunkedData = crypto.randomBytes(chunkedBytes);
  const chunked = await signedTransaction(arweave, jwk, chunkedData,
    [["Content-Type", "application/octet-stream"], [RUN_TAG, runId], ["Kind", "chunked"]]);
  const totalChunks = await postChunked(arweave, chunked, chunkedData);
  if (chunkedBytes === DEFAULT_CHUNKED_BYTES) {
    check(totalChunks >= 3, `expected at least 3 chunks, arweave-js made ${totalChunks}`);
  }

  // Data is served once stored and verified, pending or not.
  await checkServedPending(arweave, small.id, smallData);
  await checkServedPending(arweave, chunked.id, chunkedData);

  await mine(arweave);
  const first = await expectStatus(arweave, small.id, 200);
  checkConfirmation(small.id, first);
  checkConfirmation(chunked.id, await expectStatus(arweave, chunked.id, 200));
  await mine(arweave);
  const second = await expectStatus(arweave, small.id, 200);
  check(second.number_of_confirmations === first.number_of_confirmations + 1,
    `confirmations did not grow with a new block: ${first.number_of_confirmations} then ${second.number_of_confirmations}`);

  await checkReadBack(arweave, small, smallData);
  await checkReadBack(arweave, chunked, chunkedData);

  const manifestId = await checkManifest(arweave, jwk, runId, small, smallData, chunked, chunkedData);

  const found = await idsByTag(arweave, runId);
  const foundIds = found.map((node) => node.id).sort();
  const expected = [small.id, chunked.id, manifestId].sort();
  check(JSON.stringify(foundIds) === JSON.stringify(expected),
    `GraphQL by tag ${RUN_TAG}=${runId}: expected ${expected}, found ${foundIds}`);
  const sizes = Object.fromEntries(found.map((node) => [node.id, String(node.data.size)]));
  check(sizes[chunked.id] === String(chunkedBytes), `GraphQL data.size for ${chunked.id}: ${sizes[chunked.id]}`);

  return {
    run: runId,
    tolerated: Object.values(quirks),
    address,
    manifest: manifestId,
    small: { id: small.id, size: smallData.length, sha256: sha256Hex(smallData) },
    chunked: { id: chunked.id, size: chunkedData.length, sha256: sha256Hex(chunkedData), chunks: totalChunks },
  };
}

run(main);
