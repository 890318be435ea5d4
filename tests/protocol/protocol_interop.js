// Protocol interop with the real npm clients: arbundles signs and verifies data items
// and bundles, arweave-js computes data roots/proofs and signs and verifies transactions.
// Reads one JSON request on stdin, writes one JSON answer on stdout.
"use strict";

const fs = require("fs");
const path = require("path");

const modules = path.join(__dirname, "..", "interop", "node_modules");
const need = (name) => require(path.join(modules, name));
const arbundles = need("arbundles");
const bs58 = need("bs58");
const Arweave = need("arweave");
const merkle = need("arweave/node/lib/merkle");
const Transaction = need("arweave/node/lib/transaction").default;

const b64 = (buf) => Buffer.from(buf).toString("base64url");
const unb64 = (text) => Buffer.from(text, "base64url");

/** Given a signer spec from the request, return the arbundles signer. */
function signerFor(spec) {
  if (spec.type === 1) return new arbundles.ArweaveSigner(spec.jwk);
  if (spec.type === 2) return new arbundles.SolanaSigner(bs58.encode(Buffer.from(spec.secret_hex, "hex")));
  if (spec.type === 3) return new arbundles.EthereumSigner(spec.key_hex);
  throw new Error(`unknown signer type ${spec.type}`);
}

/** Given item specs, return each item signed by arbundles, base64url. */
async function signItems(request) {
  const out = [];
  for (const spec of request.items) {
    const signer = signerFor(spec.signer);
    const item = arbundles.createData(unb64(spec.data), signer, {
      tags: spec.tags,
      target: spec.target || undefined,
      anchor: spec.anchor || undefined,
    });
    await item.sign(signer);
    out.push({ id: item.id, raw: b64(item.getRaw()) });
  }
  return { items: out };
}

/** Given items (base64url), return whether arbundles verifies each and the ID it reads. */
async function verifyItems(request) {
  const out = [];
  for (const raw of request.items) {
    const buf = unb64(raw);
    let ok = false;
    try {
      ok = await arbundles.DataItem.verify(buf);
    } catch (e) {
      ok = false;
    }
    const item = new arbundles.DataItem(buf);
    out.push({ ok, id: ok ? item.id : null, tags: ok ? item.tags : null });
  }
  return { items: out };
}

/** Given a bundle (base64url), return arbundles' item IDs and whether the bundle verifies. */
async function readBundle(request) {
  const bundle = arbundles.unbundleData(unb64(request.bundle));
  return { ok: await bundle.verify(), ids: bundle.getIds() };
}

/** Given data files, return arweave-js's data_root and every chunk's proof. */
async function dataRoots(request) {
  const out = [];
  for (const file of request.files) {
    const data = fs.readFileSync(file);
    const chunks = await merkle.generateTransactionChunks(data);
    out.push({
      data_root: b64(chunks.data_root),
      chunks: chunks.chunks.map((c) => [b64(c.dataHash), c.minByteRange, c.maxByteRange]),
      proofs: chunks.proofs.map((p) => [p.offset, b64(p.proof)]),
    });
  }
  return { files: out };
}

/** Given tx JSON objects, return whether arweave-js verifies each. */
async function verifyTxs(request) {
  const arweave = Arweave.init({});
  const out = [];
  for (const obj of request.txs) out.push(await arweave.transactions.verify(new Transaction(obj)));
  return { ok: out };
}

/** Given a JWK and tx fields, return the format-2 tx arweave-js signs (data inline). */
async function signTx(request) {
  const arweave = Arweave.init({});
  const tx = await arweave.createTransaction(
    { data: unb64(request.data), last_tx: request.last_tx, reward: request.reward, target: request.target, quantity: request.quantity },
    request.jwk
  );
  for (const [name, value] of request.tags) tx.addTag(name, value);
  await arweave.transactions.sign(tx, request.jwk);
  return { tx: tx.toJSON() };
}

const handlers = { signItems, verifyItems, readBundle, dataRoots, verifyTxs, signTx };

(async () => {
  const request = JSON.parse(fs.readFileSync(0, "utf8"));
  const answer = await handlers[request.op](request);
  process.stdout.write(JSON.stringify(answer));
})().catch((e) => {
  process.stderr.write(`protocol_interop: ${e.message}\n`);
  process.exit(1);
});
