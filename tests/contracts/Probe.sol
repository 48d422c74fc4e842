// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// Reads the block environment, emits events, reverts and burns gas on request.
contract Probe {
    uint256 public counter;

    event Ping(address indexed from, uint256 indexed seq, uint256 value);

    function env() external view returns (uint256 number, uint256 timestamp, uint256 basefee, address coinbase) {
        return (block.number, block.timestamp, block.basefee, block.coinbase);
    }

    function ping(uint256 value) external returns (uint256) {
        counter += 1;
        emit Ping(msg.sender, counter, value);
        return counter;
    }

    function fail() external pure {
        revert("Probe: deliberate failure");
    }

    function burn(uint256 rounds) external returns (uint256 acc) {
        for (uint256 i = 0; i < rounds; i++) {
            acc = uint256(keccak256(abi.encode(acc, i)));
        }
        counter = acc;
    }
}
