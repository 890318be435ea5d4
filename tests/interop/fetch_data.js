#!/usr/bin/env node
// Fetch IDs from a node with arweave-js's HTTP client, as an application would by gateway URL.
//
// Usage: node fetch_data.js BASE_URL ID [ID...]
// Prints JSON: {ID: {status, size, sha256}} for each ID (status whatever the node answered),
// so the caller compares the bytes with what was uploaded elsewhere.
"use strict";

const { sha256Hex, arweaveFor, getBytes, run } = require("./lib");

async function main(baseUrl, ids) {
  const arweave = arweaveFor(baseUrl);
  const result = {};
  for (const id of ids) {
    const { status, bytes } = await getBytes(arweave, id);
    result[id] = { status, size: bytes.length, sha256: sha256Hex(bytes) };
  }
  return result;
}

run(main);
