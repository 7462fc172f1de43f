// SPDX-License-Identifier: UNLICENSED
// Devnet-only helper for the Uniswap V3 pools: exact swap deltas without
// changing state, and positions minted with an exact liquidity.
//
// probe(): calls pool.swap and, inside the swap callback (after the pool has
// updated slot0 and liquidity, before it checks payment), reverts with the
// deltas and the post-swap state; probe() catches that revert and returns it.
// Called with eth_call it is a read: nothing is paid, nothing persists.
//
// mint(): pool.mint with an exact liquidity, paid from this contract's own
// token balance (funded by the deployer). The mint callback only pays the
// pool that mint() is currently minting into.
pragma solidity ^0.8.20;

interface IV3Pool {
    function swap(address recipient, bool zeroForOne, int256 amountSpecified, uint160 sqrtPriceLimitX96, bytes calldata data)
        external returns (int256, int256);
    function mint(address recipient, int24 tickLower, int24 tickUpper, uint128 amount, bytes calldata data)
        external returns (uint256, uint256);
    function slot0() external view returns (uint160, int24, uint16, uint16, uint16, uint8, bool);
    function liquidity() external view returns (uint128);
    function token0() external view returns (address);
    function token1() external view returns (address);
}

interface IERC20Min {
    function transfer(address to, uint256 amount) external returns (bool);
}

contract V3Probe {
    address private minting;

    function probe(address pool, bool zeroForOne, int256 amountSpecified, uint160 sqrtPriceLimitX96)
        external
        returns (int256 amount0, int256 amount1, uint160 sqrtPriceX96, int24 tick, uint128 liquidity)
    {
        try IV3Pool(pool).swap(address(this), zeroForOne, amountSpecified, sqrtPriceLimitX96, "") {
            revert("V3Probe: swap returned");
        } catch (bytes memory reason) {
            if (reason.length != 160) {
                assembly {
                    revert(add(reason, 32), mload(reason))
                }
            }
            (amount0, amount1, sqrtPriceX96, tick, liquidity) = abi.decode(reason, (int256, int256, uint160, int24, uint128));
        }
    }

    function uniswapV3SwapCallback(int256 amount0, int256 amount1, bytes calldata) external view {
        (uint160 sqrtPriceX96, int24 tick,,,,,) = IV3Pool(msg.sender).slot0();
        uint128 liquidity = IV3Pool(msg.sender).liquidity();
        bytes memory out = abi.encode(amount0, amount1, sqrtPriceX96, tick, liquidity);
        assembly {
            revert(add(out, 32), mload(out))
        }
    }

    function mint(address pool, int24 tickLower, int24 tickUpper, uint128 amount) external {
        minting = pool;
        IV3Pool(pool).mint(msg.sender, tickLower, tickUpper, amount, "");
        minting = address(0);
    }

    function uniswapV3MintCallback(uint256 owed0, uint256 owed1, bytes calldata) external {
        require(msg.sender == minting, "V3Probe: not minting");
        if (owed0 > 0) require(IERC20Min(IV3Pool(msg.sender).token0()).transfer(msg.sender, owed0), "V3Probe: pay0");
        if (owed1 > 0) require(IERC20Min(IV3Pool(msg.sender).token1()).transfer(msg.sender, owed1), "V3Probe: pay1");
    }
}
