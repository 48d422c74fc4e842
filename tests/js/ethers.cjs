// ethers v6's default flows against a flashblock-aware node (driven by tests/it/clients.rs):
// ethers requires a non-null `blockHash` in receipts and logs (#28). In one block, before it
// seals: send + wait(), deploy a contract and call it, read receipts, logs, the pending block
// and the block a receipt names, then an event filter. Prints one JSON object with what each
// flow saw. CommonJS so that NODE_PATH finds ethers in ./tools/node_modules.
//
// usage: node ethers.cjs <rpc url> <chain id> <private key> <creation code hex>
"use strict";
const { ethers } = require("ethers");

const [rpc, chainId, key, bytecode] = process.argv.slice(2);
const abi = [
  "function counter() view returns (uint256)",
  "function ping(uint256 value) returns (uint256)",
  "event Ping(address indexed from, uint256 indexed seq, uint256 value)",
];
// ethers' defaults: a JsonRpcProvider (4 s polling) and a Wallet on it.
const provider = new ethers.JsonRpcProvider(rpc, Number(chainId), { staticNetwork: true });
const wallet = new ethers.Wallet(key, provider);

/** ethers answers an identical request from a 250 ms cache (AbstractProvider's perform
 * cache), so a send within 250 ms of the last one's pending-nonce read reuses that nonce:
 * with preconfirmations in ~200 ms an app can get there. Sends here wait it out. */
const settle = () => new Promise((r) => setTimeout(r, 300));

/** The canonical tip, asked directly (no cache). */
async function latest() {
  return Number(BigInt(await provider.send("eth_blockNumber", [])));
}

/** Polls getTransactionReceipt every 50 ms (the flow that sees preconfirmations). */
async function pollReceipt(hash) {
  for (let i = 0; i < 400; i++) {
    const receipt = await provider.getTransactionReceipt(hash);
    if (receipt) return receipt;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no receipt for ${hash}`);
}

/** What the test needs of a receipt, and the canonical tip right after it arrived. */
async function seen(receipt, started) {
  return {
    status: receipt.status,
    blockNumber: receipt.blockNumber,
    blockHash: receipt.blockHash,
    gasUsed: Number(receipt.gasUsed),
    logs: receipt.logs.length,
    ms: started ? Date.now() - started : null,
    latestAfter: await latest(),
    contractAddress: receipt.contractAddress ?? null,
  };
}

async function main() {
  const out = {};
  // Deploy with a ContractFactory; the deploy receipt by polling.
  const factory = new ethers.ContractFactory(abi, bytecode, wallet);
  const deployed = await factory.deploy();
  const deployReceipt = await pollReceipt(deployed.deploymentTransaction().hash);
  out.deploy = await seen(deployReceipt);
  const probe = new ethers.Contract(deployReceipt.contractAddress, abi, wallet);
  // The default write flow: send, then wait() once the transaction is preconfirmed (the
  // path that threw on `blockHash: null`).
  await settle();
  let started = Date.now();
  const ping = await probe.ping(7n);
  await pollReceipt(ping.hash);
  out.waitAfterPreconf = await seen(await ping.wait(), started);
  // The block the receipt names resolves while it is pending.
  const block = await deployReceipt.getBlock();
  out.receiptBlock = { number: block.number, hash: block.hash, txs: block.transactions.length };
  // getTransaction: the preconfirmed transaction with its block fields.
  const tx = await provider.getTransaction(ping.hash);
  out.transaction = { blockNumber: tx.blockNumber, blockHash: tx.blockHash, index: tx.index };
  // The pending block and the logs of the pending block, decoded with the contract's ABI.
  const pending = await provider.getBlock("pending");
  out.pendingBlock = { number: pending.number, hash: pending.hash, txs: pending.transactions.length };
  const logs = await provider.getLogs({
    address: await probe.getAddress(),
    fromBlock: "pending",
    toBlock: "pending",
  });
  out.pendingLogs = logs.map((l) => {
    const parsed = probe.interface.parseLog(l);
    return { blockHash: l.blockHash, blockNumber: l.blockNumber, seq: Number(parsed.args.seq) };
  });
  // The counter as the pending block has it (a contract call with blockTag pending).
  out.counterPending = Number(await probe.counter({ blockTag: "pending" }));
  // The straight flow: send, then wait() right away (resolves at the preconfirmation when the
  // receipt is already there, else when ethers next polls a new block number).
  await settle();
  started = Date.now();
  const transfer = await wallet.sendTransaction({ to: ethers.ZeroAddress, value: 1n });
  out.sendWait = await seen(await transfer.wait(), started);
  // An event filter (eth_newFilter + eth_getFilterChanges, polled on new blocks): the event
  // of a write sent now arrives once its block is sealed.
  const event = new Promise((resolve) => {
    probe.once("Ping", (from, seq, value, ev) => {
      resolve({ seq: Number(seq), value: Number(value), blockNumber: ev.log.blockNumber });
    });
  });
  await settle();
  const last = await probe.ping(11n);
  out.lastPing = await seen(await pollReceipt(last.hash));
  out.event = await Promise.race([
    event,
    new Promise((_, reject) => setTimeout(() => reject(new Error("no Ping event in 40 s")), 40_000)),
  ]);
  out.latestAtEnd = await latest();
  provider.destroy();
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
