#!/usr/bin/env node
// @permaweb/aoconnect 0.0.98 (legacy mode, unmodified) against one node's AO units:
// GET /ao, spawn a llama process on a model by ID, message it (Action: Inference), result,
// results (both sorts, paged by cursor), dryrun (same seed: same text, nothing recorded),
// signMessage + sendSignedMessage, the
// Scheduler-Location lookup that aos and ao-scheduler-utils send to GraphQL, and errors
// (unknown action, wrong target) as aoconnect surfaces them.
// With --paid (a node charging for calls): a message without credit is refused with 402, then
// the signer is credited (POST /credits, a Credit-Notice) and the same call goes through.
//
// Usage: node aoconnect_flow.js BASE_URL MODEL_ID [--paid]
// Prints JSON: {process, owner, messages: [{id, text, gas}], results, dryrun, ...}.
"use strict";

const crypto = require("crypto");
const { connect, createDataItemSigner } = require("@permaweb/aoconnect");
const { check, run } = require("./lib");

const SYSTEM_PROMPT = "You are a terse assistant.";
const SCHEDULER_QUERY = `
    query GetSchedulerLocation ($owner: String!) {
      transactions (
        owners: [$owner]
        tags: [
          { name: "Data-Protocol", values: ["ao"] },
          { name: "Type", values: ["Scheduler-Location"] }
        ]
        # Only need the most recent Scheduler-Location
        sort: HEIGHT_DESC
        first: 1
      ) {
        edges { node { tags { name value } } }
      }
    }`;

/** Return a fresh 4096-bit Arweave JWK (aoconnect's signer needs a 512-byte owner). */
function newJwk() {
  const { privateKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 4096, publicExponent: 65537 });
  return privateKey.export({ format: "jwk" });
}

/** Given a JWK, return its Arweave address (base64url of sha256 of the modulus). */
function addressOf(jwk) {
  return crypto.createHash("sha256").update(Buffer.from(jwk.n, "base64url")).digest("base64url");
}

async function getJson(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  return { status: response.status, body };
}

/** Given a promise that should reject, return the rejection's message (fail if it resolves). */
async function rejection(promise, what) {
  try {
    await promise;
  } catch (err) {
    return String(err && err.message ? err.message : err);
  }
  throw new Error(`${what}: expected an error, got success`);
}

function inference(maxTokens, seed, extra = []) {
  return [
    { name: "Action", value: "Inference" },
    { name: "Max-Tokens", value: String(maxTokens) },
    { name: "Seed", value: String(seed) },
    ...extra,
  ];
}

async function schedulerLocation(baseUrl, scheduler) {
  const { status, body } = await getJson(`${baseUrl}/graphql`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ query: SCHEDULER_QUERY, variables: { owner: scheduler } }),
  });
  check(status === 200 && !body.errors, `Scheduler-Location query: ${status} ${JSON.stringify(body.errors)}`);
  const edges = body.data.transactions.edges;
  check(edges.length === 1, `Scheduler-Location: expected one record of ${scheduler}, got ${edges.length}`);
  return Object.fromEntries(edges[0].node.tags.map((t) => [t.name, t.value]));
}

async function spawnProcess(ao, units, modelId, signer) {
  return ao.spawn({
    module: units.module,
    scheduler: units.scheduler,
    signer,
    tags: [{ name: "Model", value: modelId }, { name: "System-Prompt", value: SYSTEM_PROMPT }],
  });
}

function checkResult(res, owner, what) {
  check(!res.Error && !res.error, `${what}: ${JSON.stringify(res).slice(0, 400)}`);
  check(typeof res.Output.data === "string" && res.Output.data.length > 0, `${what}: no Output.data`);
  check(Array.isArray(res.Spawns) && res.Spawns.length === 0, `${what}: Spawns must be []`);
  check(res.Messages.length === 1, `${what}: expected one reply message, got ${res.Messages.length}`);
  const reply = res.Messages[0];
  const action = reply.Tags.find((t) => t.name === "Action");
  check(action && action.value === "Inference-Response", `${what}: reply Action ${JSON.stringify(action)}`);
  check(reply.Target === owner && reply.Data === res.Output.data, `${what}: reply is not the text to the sender`);
  const usage = res.Output.usage;
  check(res.GasUsed === usage.prompt_tokens + usage.completion_tokens, `${what}: GasUsed is not the tokens`);
}

async function freeFlow(baseUrl, ao, units, modelId, signer, owner) {
  const location = await schedulerLocation(baseUrl, units.scheduler);
  check(location.Url === baseUrl, `Scheduler-Location Url ${location.Url}, expected ${baseUrl}`);
  const processId = await spawnProcess(ao, units, modelId, signer);
  const info = await getJson(`${baseUrl}/ao/cu/dry-run?process-id=${processId}`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ Target: processId, Tags: [{ name: "Action", value: "Info" }] }),
  });
  check(info.body.Output.owner === owner, `Info: owner ${info.body.Output.owner}, expected ${owner}`);
  const messages = [];
  for (const [prompt, seed] of [["Say hello.", 7], ["Count to three.", 8], ["Name a colour.", 9]]) {
    const id = await ao.message({ process: processId, signer, tags: inference(6, seed), data: prompt });
    const res = await ao.result({ message: id, process: processId });
    checkResult(res, owner, `result of ${id}`);
    messages.push({ id, prompt, seed, text: res.Output.data, gas: res.GasUsed, nonce: res.Output.nonce, record: res.Output.record });
  }
  check(messages.map((m) => m.nonce).join() === "1,2,3", `nonces ${messages.map((m) => m.nonce)}`);
  const again = await ao.result({ message: messages[0].id, process: processId });
  check(again.Output.data === messages[0].text, "result read twice differs");

  const ascending = await ao.results({ process: processId, sort: "ASC" });
  check(ascending.edges.length === 3, `results ASC: ${ascending.edges.length} edges`);
  check(ascending.edges.map((e) => e.node.Output.data).join("\u0000") === messages.map((m) => m.text).join("\u0000"),
        "results ASC: texts not in message order");
  const firstPage = await ao.results({ process: processId, sort: "DESC", limit: 2 });
  check(firstPage.edges.length === 2 && firstPage.edges[0].node.Output.data === messages[2].text,
        "results DESC limit 2: wrong page");
  const secondPage = await ao.results({ process: processId, sort: "DESC", limit: 2, from: firstPage.edges[1].cursor });
  check(secondPage.edges.length === 1 && secondPage.edges[0].node.Output.data === messages[0].text,
        "results DESC from cursor: wrong page");

  const dry = await ao.dryrun({ process: processId, tags: inference(6, messages[0].seed), data: messages[0].prompt });
  check(dry.Output.data === messages[0].text, `dryrun with the same seed gave ${JSON.stringify(dry.Output.data)}`);
  const afterDry = await ao.results({ process: processId, sort: "ASC" });
  check(afterDry.edges.length === 3, "a dryrun added a result");

  const signed = await ao.signMessage({ process: processId, signer, tags: inference(4, 5), data: "Signed apart." });
  const sentId = await ao.sendSignedMessage(signed);
  check(sentId === signed.id, `sendSignedMessage returned ${sentId}, not ${signed.id}`);
  const signedResult = await ao.result({ message: sentId, process: processId });
  checkResult(signedResult, owner, "result of a message signed apart");
  check(signedResult.Output.nonce === 4, `signed-apart message has nonce ${signedResult.Output.nonce}`);

  const chat = await chatTemplateProcess(ao, units, modelId, signer, owner);
  const bad = await badItems(ao, units, processId, signer);
  const unknownAction = await rejection(ao.message({ process: processId, signer, tags: [{ name: "Action", value: "Eval" }], data: "x" }), "unknown action");
  const wrongTarget = await rejection(ao.message({ process: units.module, signer, tags: inference(4, 1), data: "x" }), "message to the module");
  const missingResult = await ao.result({ message: units.module, process: processId });
  return { process: processId, owner, messages, results: ascending.edges.map((e) => e.cursor), dryrun: dry.Output.data,
           unknownAction, wrongTarget, missingResult, schedulerLocation: location, chat, ...bad };
}

/** Spawn with Chat-Template chatml (tags only, no data), message it, and read its settings back (Info). */
async function chatTemplateProcess(ao, units, modelId, signer, owner) {
  const processId = await ao.spawn({
    module: units.module, scheduler: units.scheduler, signer,
    tags: [{ name: "Model", value: modelId }, { name: "System-Prompt", value: SYSTEM_PROMPT },
           { name: "Chat-Template", value: "chatml" }],
  });
  const info = await ao.dryrun({ process: processId, tags: [{ name: "Action", value: "Info" }] });
  const id = await ao.message({ process: processId, signer, tags: inference(4, 2), data: "Hi." });
  const res = await ao.result({ message: id, process: processId });
  checkResult(res, owner, "result of a chatml process");
  return { process: processId, message: id, record: res.Output.record, template: info.Output.chat_template,
           systemPrompt: info.Output.system_prompt };
}

/** A tampered item (signed by aoconnect, one data byte flipped) and a message to an unknown process. */
async function badItems(ao, units, processId, signer) {
  const signed = await ao.signMessage({ process: processId, signer, tags: inference(4, 1), data: "Tamper me." });
  const tampered = Buffer.from(signed.raw);
  tampered[tampered.length - 1] ^= 1;
  // aoconnect checks the signature before sending, so the node only meets a tampered item sent apart.
  const tamperedByClient = await rejection(ao.sendSignedMessage({ id: signed.id, raw: tampered }), "tampered item");
  const tamperedPost = await getJson(units.mu, {
    method: "POST", headers: { "Content-Type": "application/octet-stream" }, body: tampered,
  });
  const tamperedResult = await ao.result({ message: signed.id, process: processId });
  const unknownProcess = await rejection(ao.message({ process: "A".repeat(43), signer, tags: inference(4, 1), data: "x" }),
                                         "message to an unknown process");
  const badDryrun = await ao.dryrun({ process: processId, tags: [{ name: "Action", value: "Eval" }], data: "x" });
  return { tamperedByClient, tamperedPost, tamperedResult, unknownProcess, badDryrun };
}

async function paidFlow(baseUrl, ao, units, modelId, signer, owner) {
  const processId = await spawnProcess(ao, units, modelId, signer);
  const tags = inference(4, 3);
  const noCredit = await rejection(ao.message({ process: processId, signer, tags, data: "Paid hello." }), "call without credit");
  const before = await ao.results({ process: processId, sort: "ASC" });
  check(before.edges.length === 0, "a refused call left a result");
  const credited = await getJson(`${baseUrl}/credits/${owner}`, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ amount: 100000 }),
  });
  check(credited.status === 200 && credited.body.credit_notice, `crediting: ${JSON.stringify(credited.body)}`);
  const id = await ao.message({ process: processId, signer, tags, data: "Paid hello." });
  const res = await ao.result({ message: id, process: processId });
  checkResult(res, owner, "paid result");
  const balance = (await getJson(`${baseUrl}/credits/${owner}`)).body.balance;
  const dry = await ao.dryrun({ process: processId, tags, data: "Paid hello." });
  return { process: processId, owner, noCredit, message: id, text: res.Output.data, balance,
           creditNotice: credited.body.credit_notice, dryrunError: dry.Error || null };
}

async function main(baseUrl, args) {
  const [modelId, mode] = args;
  check(modelId, "usage: aoconnect_flow.js BASE_URL MODEL_ID [--paid]");
  const units = (await getJson(`${baseUrl}/ao`)).body;
  check(units.mu === `${baseUrl}/ao/mu` && units.cu === `${baseUrl}/ao/cu`, `GET /ao: ${JSON.stringify(units)}`);
  const ao = connect({ MODE: "legacy", MU_URL: units.mu, CU_URL: units.cu, GATEWAY_URL: baseUrl });
  const jwk = newJwk();
  const signer = createDataItemSigner(jwk);
  const flow = mode === "--paid" ? paidFlow : freeFlow;
  return { units, ...(await flow(baseUrl, ao, units, modelId, signer, addressOf(jwk))) };
}

run(main);
