#!/usr/bin/env node
// arbundles end to end against one node: data items signed with Arweave (RSA-4096), ed25519 and
// Ethereum keys (the Ethereum one 5 MiB), posted raw (POST /tx, application/octet-stream) and
// read back byte for byte;
// a bundle of fresh items (one of 600 KiB, so the bundle goes up in chunks) posted as an L1
// transaction, each item then served under its own ID;
// a tampered item refused on its own and inside a bundle.
//
// Usage: node arbundles_flow.js BASE_URL [--arlocal]
//   --arlocal: arlocal has no raw item upload, /raw route or item verification; skip those steps
//              (listed in ARLOCAL_QUIRKS) so the bundle steps can be proven against arlocal itself.
// Prints JSON: {run, items: [{id, type, size, sha256}], bundle: {id, items: [...]}}.
"use strict";

const crypto = require("crypto");
const { createData, bundleAndSignData, Bundle, ArweaveSigner, SolanaSigner, EthereumSigner } = require("arbundles");
const { check, sameBytes, sha256Hex, arweaveFor, describe, getBytes, mine, mint, graphql, run } = require("./lib");

const RUN_TAG = "Interop-Run";
const MINT_WINSTON = "1000000000000000";
const ARLOCAL_QUIRKS = {
  noRawItemPost: "POST /tx with an octet-stream data item is not supported",
  noRawRoute: "GET /raw/{id} is not supported",
  noItemVerification: "bundled items are stored without checking their signatures",
  bundledInAlsoMatchesL1: "GraphQL bundledIn also returns unbundled L1 transactions",
};

// One raw item above the store's 4 MiB small-object limit, so it takes the large-object path.
const LARGE_RAW_ITEM_BYTES = 5 * 1024 * 1024;
const MAX_INLINE_BYTES = 256 * 1024; // larger bundles are posted header first, then chunks
const SMALL_ITEM_BYTES = 1000;
// One bundled item this large makes the bundle go up in chunks (getUploader), as bundlers post them.
const LARGE_ITEM_BYTES = 600 * 1024;

const BASE58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/** Given bytes, return their base58 (Bitcoin alphabet) text, as Solana secret keys are written. */
function base58(bytes) {
  let n = BigInt("0x" + (Buffer.from(bytes).toString("hex") || "0"));
  let out = "";
  while (n > 0n) {
    out = BASE58_ALPHABET[Number(n % 58n)] + out;
    n /= 58n;
  }
  for (const byte of bytes) {
    if (byte !== 0) break;
    out = "1" + out;
  }
  return out;
}

/** Given nothing, return an arbundles ed25519 signer (signature type 2) for a fresh key. */
function newEd25519Signer() {
  const { privateKey, publicKey } = crypto.generateKeyPairSync("ed25519");
  const seed = Buffer.from(privateKey.export({ format: "jwk" }).d, "base64url");
  const pub = Buffer.from(publicKey.export({ format: "jwk" }).x, "base64url");
  return new SolanaSigner(base58(Buffer.concat([seed, pub])));
}

/** Given nothing, return an arbundles Ethereum signer (signature type 3) for a fresh key. */
function newEthereumSigner() {
  return new EthereumSigner(crypto.randomBytes(32).toString("hex"));
}

/** Given a signer, a label and a run id, return a signed, valid data item with fresh random data. */
async function signedItem(signer, label, runId, options = {}, randomBytes = SMALL_ITEM_BYTES) {
  const data = Buffer.concat([Buffer.from(`${label} ${runId} `), crypto.randomBytes(randomBytes)]);
  const tags = [
    { name: "Content-Type", value: "application/x-interop" },
    { name: RUN_TAG, value: runId },
    { name: "Signer", value: label },
  ];
  const item = createData(data, signer, { tags, ...options });
  await item.sign(signer);
  check(await item.isValid(), `arbundles says the ${label} item it just signed is invalid`);
  const expectedId = crypto.createHash("sha256").update(item.rawSignature).digest("base64url");
  check(item.id === expectedId, `${label} item id ${item.id} is not sha256(signature) ${expectedId}`);
  return { item, data, label, type: item.signatureType };
}

/**
 * Given a base URL and raw item bytes, POST them as an upload service takes them; return
 * {status, data}. Plain fetch, because arweave-js's api.post always sends JSON.
 */
async function postRawItem(baseUrl, raw) {
  const response = await fetch(new URL("tx", baseUrl), {
    method: "POST",
    headers: { "Content-Type": "application/octet-stream", Accept: "application/json" },
    body: Buffer.from(raw),
  });
  const text = await response.text();
  let data = text;
  try { data = JSON.parse(text); } catch (e) { /* not JSON: keep the text for the message */ }
  return { status: response.status, data };
}

/** Given a client, a signed item record and the quirks, check the node serves its data byte for byte. */
async function checkServed(arweave, { item, data, label }, quirks) {
  const plain = await getBytes(arweave, item.id);
  check(plain.status === 200, `GET /${item.id} (${label} item): expected 200, got HTTP ${plain.status} ${plain.bytes.toString().slice(0, 200)}`);
  check(sameBytes(plain.bytes, data), `GET /${item.id} (${label} item): bytes differ (${plain.bytes.length} vs ${data.length})`);
  const contentType = plain.headers.get ? plain.headers.get("content-type") : plain.headers["content-type"];
  check(String(contentType).startsWith("application/x-interop"),
    `GET /${item.id} (${label} item): Content-Type ${contentType}, the item's tag says application/x-interop`);
  if (!quirks.noRawRoute) {
    const raw = await getBytes(arweave, `raw/${item.id}`);
    check(raw.status === 200, `GET /raw/${item.id} (${label} item): expected 200, got HTTP ${raw.status}`);
    check(sameBytes(raw.bytes, data), `GET /raw/${item.id} (${label} item): bytes differ`);
  }
}

/** Given a client and an item record, check GraphQL knows the item with its owner and tags. */
async function checkIndexed(arweave, { item, label }) {
  const query = `{ transaction(id: "${item.id}") { id owner { key } recipient anchor tags { name value } } }`;
  const data = await graphql(arweave, query);
  const node = data.transaction;
  check(node && node.id === item.id, `GraphQL transaction(${item.id}) (${label} item): ${JSON.stringify(node)}`);
  check(node.owner.key === item.owner, `GraphQL owner.key of ${label} item: ${node.owner.key}, signed by ${item.owner}`);
  check(node.recipient === item.target, `GraphQL recipient of ${label} item: ${JSON.stringify(node.recipient)}, signed ${JSON.stringify(item.target)}`);
  check(node.anchor === item.anchor, `GraphQL anchor of ${label} item: ${JSON.stringify(node.anchor)}, signed ${JSON.stringify(item.anchor)}`);
  const want = item.tags.map((t) => `${t.name}=${t.value}`).join(",");
  const got = node.tags.map((t) => `${t.name}=${t.value}`).join(",");
  check(got === want, `GraphQL tags of ${label} item: ${got}, signed ${want}`);
}

/** Given raw item bytes, return a copy with the last data byte flipped (its signature no longer holds). */
function tampered(raw) {
  const copy = Buffer.from(raw);
  copy[copy.length - 1] ^= 0x01;
  return copy;
}

/** Given signed items and a key, return the arbundles Bundle of them (items keep their signatures). */
async function bundleOf(items, jwk) {
  check(items.every((item) => item.isSigned()), "bundleOf: every item must be signed, or arbundles re-signs it");
  return bundleAndSignData(items, new ArweaveSigner(jwk));
}

/** Given a bundle, return a copy with its last byte flipped: the last item's data no longer matches its signature. */
function withLastItemTampered(bundle) {
  const binary = tampered(bundle.getRaw());
  return new Bundle(binary);
}

/** Given a client, a key, a bundle and tags, post it as an L1 tx tagged as an ANS-104 bundle; return {tx, response}. */
async function postBundle(arweave, jwk, bundle, tags) {
  const tx = await bundle.toTransaction({}, arweave, jwk);
  for (const [name, value] of tags) tx.addTag(name, value);
  await arweave.transactions.sign(tx, jwk);
  if (tx.data.byteLength <= MAX_INLINE_BYTES) {
    const response = await arweave.transactions.post(tx);
    return { tx, response };
  }
  const uploader = await arweave.transactions.getUploader(tx);
  while (!uploader.isComplete) {
    await uploader.uploadChunk();
    if (uploader.lastResponseStatus !== 200) break;
  }
  return { tx, response: { status: uploader.lastResponseStatus, data: uploader.lastResponseError } };
}

async function main(baseUrl, args) {
  const arweave = arweaveFor(baseUrl);
  const quirks = args.includes("--arlocal") ? ARLOCAL_QUIRKS : {};
  const runId = crypto.randomBytes(8).toString("hex");
  const jwk = await arweave.wallets.generate();
  await mint(arweave, jwk, MINT_WINSTON);
  const signers = [
    ["arweave", new ArweaveSigner(jwk)],
    ["ed25519", newEd25519Signer()],
    ["ethereum", newEthereumSigner()],
  ];
  // arbundles takes the target as base64url of 32 bytes and the anchor as the 32 raw bytes as a string.
  const withTargetAndAnchor = { target: crypto.randomBytes(32).toString("base64url"), anchor: crypto.randomBytes(16).toString("hex") };

  // Each signature type, posted raw as an upload service receives it.
  const posted = [];
  if (!quirks.noRawItemPost) {
    for (const [label, signer] of signers) {
      const options = label === "ed25519" ? withTargetAndAnchor : {};
      const size = label === "ethereum" ? LARGE_RAW_ITEM_BYTES : SMALL_ITEM_BYTES;
      const record = await signedItem(signer, label, runId, options, size);
      const response = await postRawItem(baseUrl, record.item.getRaw());
      check(response.status >= 200 && response.status < 300, `POST /tx (${label} item, octet-stream): expected 2xx, got ${describe(response)}`);
      if (response.data && typeof response.data === "object" && response.data.id !== undefined) {
        check(response.data.id === record.item.id, `POST /tx (${label} item): node says id ${response.data.id}, item id is ${record.item.id}`);
      }
      await checkServed(arweave, record, quirks);
      await checkIndexed(arweave, record);
      posted.push(record);
    }
    // A flipped data byte breaks the signature: refused with 4xx, and nothing is served under the id.
    const victim = await signedItem(signers[1][1], "tampered", runId);
    const response = await postRawItem(baseUrl, tampered(victim.item.getRaw()));
    check(response.status >= 400 && response.status < 500, `POST /tx (tampered item): expected 4xx, got ${describe(response)}`);
    const after = await getBytes(arweave, victim.item.id);
    check(after.status === 404, `GET /${victim.item.id} after a refused tampered item: expected 404, got HTTP ${after.status}`);
  }

  // Fresh items of each type in one bundle, posted as an L1 transaction and mined.
  const bundled = [];
  for (const [label, signer] of signers) {
    const size = label === "ed25519" ? LARGE_ITEM_BYTES : SMALL_ITEM_BYTES;
    bundled.push(await signedItem(signer, `bundled-${label}`, runId, {}, size));
  }
  const bundle = await bundleOf(bundled.map((r) => r.item), jwk);
  check(await bundle.verify(), "arbundles says the bundle it just built does not verify");
  const { tx: bundleTx, response } = await postBundle(arweave, jwk, bundle, [[RUN_TAG, runId]]);
  check(response.status === 200, `POST /tx (bundle of ${bundled.length} items): expected 200, got ${describe(response)}`);
  await mine(arweave);
  for (const record of bundled) {
    await checkServed(arweave, record, quirks);
    await checkIndexed(arweave, record);
  }
  const inBundle = await graphql(arweave, `{ transactions(bundledIn: ["${bundleTx.id}"], first: 10) { edges { node { id bundledIn { id } } } } }`);
  const wantIds = bundled.map((r) => r.item.id).sort();
  let foundIds = inBundle.transactions.edges.map((edge) => edge.node.id).sort();
  if (quirks.bundledInAlsoMatchesL1) foundIds = foundIds.filter((id) => wantIds.includes(id));
  check(JSON.stringify(foundIds) === JSON.stringify(wantIds), `GraphQL bundledIn ${bundleTx.id}: expected ${wantIds}, found ${foundIds}`);

  // A bundle holding a tampered item: either the whole tx is refused, or that item is never served.
  let tamperedBundle = "skipped (arlocal does not verify items)";
  if (!quirks.noItemVerification) {
    const good = await signedItem(signers[0][1], "bundle-good", runId);
    const bad = await signedItem(signers[2][1], "bundle-bad", runId);
    const badBundle = withLastItemTampered(await bundleOf([good.item, bad.item], jwk));
    // The tampered copy keeps both IDs and sizes; only the bad item's signature stops holding.
    check(JSON.stringify(badBundle.getIds()) === JSON.stringify([good.item.id, bad.item.id]), "tampering changed the bundle index: the test is broken");
    check(await badBundle.get(0).isValid(), "the good item no longer verifies in the tampered bundle: the test is broken");
    check(!(await badBundle.get(1).isValid()), "arbundles still calls the tampered item valid: the test is broken");
    const { response: badResponse } = await postBundle(arweave, jwk, badBundle, [[RUN_TAG, runId]]);
    if (badResponse.status >= 400 && badResponse.status < 500) {
      tamperedBundle = `refused: HTTP ${badResponse.status}`;
    } else {
      check(badResponse.status === 200, `POST /tx (bundle with a tampered item): expected 200 or 4xx, got ${describe(badResponse)}`);
      await mine(arweave);
      const served = await getBytes(arweave, bad.item.id);
      check(served.status === 404 || (served.status >= 400 && served.status < 500),
        `GET /${bad.item.id} (tampered item inside a bundle): expected 404, got HTTP ${served.status} (${served.bytes.length} bytes)`);
      await checkServed(arweave, good, quirks);
      tamperedBundle = `accepted, bad item not served (HTTP ${served.status}), good item served`;
    }
  }

  const summary = (r) => ({ id: r.item.id, label: r.label, type: r.type, size: r.data.length, sha256: sha256Hex(r.data) });
  return {
    run: runId,
    tolerated: Object.values(quirks),
    items: posted.map(summary),
    bundle: { id: bundleTx.id, items: bundled.map(summary) },
    tampered_bundle: tamperedBundle,
  };
}

run(main);
