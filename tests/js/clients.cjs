// viem's default flows against a flashblock-aware node (driven by tests/it/clients.rs):
// deploy a contract, then read and write it before the block seals, with viem's defaults.
// Prints one JSON object with what each flow saw. CommonJS so that NODE_PATH finds viem in
// ./tools/node_modules (scripts/install-test-tools.sh installs it there).
//
// usage: node clients.cjs <rpc url> <chain id> <private key> <creation code hex> <preconf|plain>
"use strict";
const {
  createPublicClient,
  createWalletClient,
  defineChain,
  http,
  parseAbi,
} = require("viem");
const { privateKeyToAccount } = require("viem/accounts");

const [rpc, chainId, key, bytecode, kind] = process.argv.slice(2);
const abi = parseAbi([
  "function counter() view returns (uint256)",
  "function ping(uint256 value) returns (uint256)",
]);
// As viem defines Base: `blockTime`, and for `preconf` the `experimental_preconfirmationTime`
// of viem's `basePreconf` (which makes `pending` the default tag of reads).
const chain = defineChain({
  id: Number(chainId),
  name: "flashnode dev",
  nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
  rpcUrls: { default: { http: [rpc] } },
  blockTime: 8_000,
  ...(kind === "preconf" ? { experimental_preconfirmationTime: 200 } : {}),
});
const account = privateKeyToAccount(key);
const publicClient = createPublicClient({ chain, transport: http(rpc) });
const wallet = createWalletClient({ account, chain, transport: http(rpc) });

/** The canonical tip, asked directly (no cache). */
async function latest() {
  const hex = await publicClient.request({ method: "eth_blockNumber", params: [] });
  return Number(BigInt(hex));
}

/** Polls eth_getTransactionReceipt every 50 ms (the flow that sees preconfirmations). */
async function pollReceipt(hash) {
  for (let i = 0; i < 400; i++) {
    const receipt = await publicClient.getTransactionReceipt({ hash }).catch(() => null);
    if (receipt) return receipt;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`no receipt for ${hash}`);
}

/** What the test needs of a receipt, and the canonical tip right after it arrived. */
async function seen(receipt) {
  return {
    status: receipt.status,
    blockNumber: Number(receipt.blockNumber),
    gasUsed: Number(receipt.gasUsed),
    latestAfter: await latest(),
    contractAddress: receipt.contractAddress ?? null,
  };
}

async function readCounter(address) {
  try {
    return { value: Number(await publicClient.readContract({ address, abi, functionName: "counter" })) };
  } catch (e) {
    return { error: e.shortMessage ?? String(e) };
  }
}

async function main() {
  const out = { kind };
  // Deploy, and poll for the (preconfirmed) receipt.
  const deployHash = await wallet.deployContract({ abi, bytecode });
  const deployed = await pollReceipt(deployHash);
  out.deploy = await seen(deployed);
  const address = deployed.contractAddress;
  // A read with viem's default block tag.
  out.readBefore = await readCounter(address);
  // writeContract with viem's defaults (its eth_estimateGas carries no block tag), then
  // poll eth_getTransactionReceipt.
  const hash = await wallet.writeContract({ address, abi, functionName: "ping", args: [7n] });
  out.write = await seen(await pollReceipt(hash));
  // writeContractSync: eth_sendRawTransactionSync answers with the receipt.
  out.writeSync = await seen(
    await wallet.writeContractSync({ address, abi, functionName: "ping", args: [8n] }),
  );
  // writeContract, then waitForTransactionReceipt (re-reads only when eth_blockNumber moves).
  const waited = await wallet.writeContract({ address, abi, functionName: "ping", args: [9n] });
  out.waitForReceipt = await seen(await publicClient.waitForTransactionReceipt({ hash: waited }));
  out.readAfter = await readCounter(address);
  out.latestAtEnd = await latest();
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
