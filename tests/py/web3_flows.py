"""web3.py's default flows against a flashblock-aware node (driven by tests/it/clients.rs).

In one block, before it seals: send + wait_for_transaction_receipt, deploy a contract and call
it, read receipts, logs and the pending block, then an event filter. Prints one JSON object with
what each flow saw. scripts/install-test-tools.sh installs web3.py into ./tools/py.

usage: python web3_flows.py <rpc url> <private key> <creation code hex>
"""

import json
import sys
import time

from web3 import Web3

ABI = [
    {"type": "function", "name": "counter", "stateMutability": "view", "inputs": [],
     "outputs": [{"name": "", "type": "uint256"}]},
    {"type": "function", "name": "ping", "stateMutability": "nonpayable",
     "inputs": [{"name": "value", "type": "uint256"}],
     "outputs": [{"name": "", "type": "uint256"}]},
    {"type": "event", "name": "Ping", "anonymous": False, "inputs": [
        {"name": "from", "type": "address", "indexed": True},
        {"name": "seq", "type": "uint256", "indexed": True},
        {"name": "value", "type": "uint256", "indexed": False}]},
]


def main():
    rpc, key, code = sys.argv[1:4]
    w3 = Web3(Web3.HTTPProvider(rpc, request_kwargs={"timeout": 30}))
    account = w3.eth.account.from_key(key)
    w3.eth.default_account = account.address
    # web3.py sends `latest` explicitly for eth_call and eth_estimateGas (its default_block):
    # an estimate for a contract deployed in the block being built would not see it (the write
    # runs out of gas and reverts). The one setting a web3.py app changes, as viem's
    # `experimental_preconfirmationTime` does for viem:
    w3.eth.default_block = "pending"

    def latest():
        return w3.eth.block_number

    def send(tx):
        """Fills and signs as web3.py does by default, with the pending nonce."""
        tx.setdefault("from", account.address)
        tx["nonce"] = w3.eth.get_transaction_count(account.address, "pending")
        tx["chainId"] = w3.eth.chain_id
        tx["gas"] = w3.eth.estimate_gas(tx)
        tx["maxFeePerGas"] = w3.eth.gas_price * 2
        tx["maxPriorityFeePerGas"] = 1
        signed = account.sign_transaction(tx)
        return w3.eth.send_raw_transaction(signed.raw_transaction)

    def seen(receipt, started=None):
        return {
            "status": receipt["status"],
            "blockNumber": receipt["blockNumber"],
            "blockHash": receipt["blockHash"].to_0x_hex(),
            "gasUsed": receipt["gasUsed"],
            "logs": len(receipt["logs"]),
            "ms": None if started is None else int((time.monotonic() - started) * 1000),
            "latestAfter": latest(),
            "contractAddress": receipt.get("contractAddress"),
        }

    out = {}
    # Deploy, then wait_for_transaction_receipt (polls every 0.1 s by default).
    factory = w3.eth.contract(abi=ABI, bytecode=code)
    started = time.monotonic()
    deploy_hash = send(factory.constructor().build_transaction({"from": account.address}))
    deployed = w3.eth.wait_for_transaction_receipt(deploy_hash, timeout=30)
    out["deploy"] = seen(deployed, started)
    probe = w3.eth.contract(address=deployed["contractAddress"], abi=ABI)
    # A filter for the contract's events, installed before the writes.
    event_filter = probe.events.Ping.create_filter(from_block="latest")
    # Call the contract deployed in the same (pending) block.
    started = time.monotonic()
    ping_hash = send(probe.functions.ping(7).build_transaction({"from": account.address}))
    receipt = w3.eth.wait_for_transaction_receipt(ping_hash, timeout=30)
    out["ping"] = seen(receipt, started)
    out["pingEvent"] = probe.events.Ping().process_receipt(receipt)[0]["args"]["value"]
    # The preconfirmed transaction, the pending block, and the logs of the pending block.
    tx = w3.eth.get_transaction(ping_hash)
    out["transaction"] = {"blockNumber": tx["blockNumber"], "blockHash": tx["blockHash"].to_0x_hex()}
    pending = w3.eth.get_block("pending")
    out["pendingBlock"] = {"number": pending["number"], "hash": pending["hash"].to_0x_hex()}
    by_hash = w3.eth.get_block(receipt["blockHash"])
    out["receiptBlock"] = {"number": by_hash["number"], "hash": by_hash["hash"].to_0x_hex()}
    logs = w3.eth.get_logs({"address": probe.address, "fromBlock": "pending", "toBlock": "pending"})
    out["pendingLogs"] = [{"blockHash": l["blockHash"].to_0x_hex(), "blockNumber": l["blockNumber"]}
                          for l in logs]
    out["counterPending"] = probe.functions.counter().call(block_identifier="pending")
    # The event filter reports the write once its block is sealed.
    deadline = time.monotonic() + 40
    events = []
    while not events and time.monotonic() < deadline:
        events = event_filter.get_new_entries()
        time.sleep(0.2)
    out["filterEvents"] = [{"value": e["args"]["value"], "blockNumber": e["blockNumber"]} for e in events]
    out["latestAtEnd"] = latest()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
