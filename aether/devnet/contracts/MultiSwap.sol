// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

interface IPairLike {
    function swap(uint256 amount0Out, uint256 amount1Out, address to, bytes calldata data) external;
}

interface IERC20Like {
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

interface IWETHLike {
    function deposit() external payable;
    function transfer(address to, uint256 amount) external returns (bool);
}

/// @title MultiSwap: a victim that calls Uniswap V2 pairs directly, as bots and aggregators do.
/// @notice Devnet only. No decoder in aether knows this calldata: aether can see its
/// swaps only through the pairs' own Sync events in a simulation. One call may chain
/// pairs of several DEXes (the output of each pair is sent straight to the next).
/// The caller computes each pair's output off-chain; a wrong one makes the pair
/// revert (UniswapV2: K), which is how the devnet sends failing direct victims.
contract MultiSwap {
    address public immutable weth;

    constructor(address weth_) {
        weth = weth_;
    }

    /// @param tokenIn what goes into pairs[0]: with ETH attached it must be WETH and equal amountIn.
    /// @param pairs the pairs, in order; pairs[i]'s output goes to pairs[i + 1], the last one's to `to`.
    /// @param amountsOut the output of each pair.
    /// @param zeroForOne per pair: true when token0 goes in (so token1 comes out).
    function swap(
        address tokenIn,
        uint256 amountIn,
        address[] calldata pairs,
        uint256[] calldata amountsOut,
        bool[] calldata zeroForOne,
        address to
    ) external payable {
        uint256 n = pairs.length;
        require(n > 0 && amountsOut.length == n && zeroForOne.length == n, "MultiSwap: lengths");
        if (msg.value > 0) {
            require(tokenIn == weth && msg.value == amountIn, "MultiSwap: value");
            IWETHLike(weth).deposit{value: msg.value}();
            require(IWETHLike(weth).transfer(pairs[0], amountIn), "MultiSwap: weth");
        } else {
            require(IERC20Like(tokenIn).transferFrom(msg.sender, pairs[0], amountIn), "MultiSwap: transferFrom");
        }
        for (uint256 i = 0; i < n; i++) {
            address next = i + 1 < n ? pairs[i + 1] : to;
            (uint256 a0, uint256 a1) = zeroForOne[i] ? (uint256(0), amountsOut[i]) : (amountsOut[i], uint256(0));
            IPairLike(pairs[i]).swap(a0, a1, next, new bytes(0));
        }
    }
}

/// @title SyncMimic: emits the Sync(uint112,uint112) signature without being a pair.
/// @notice Devnet and tests only: aether must ignore (and count) its logs, because its
/// address does not derive by CREATE2 from a configured factory. `relay` lies first,
/// then forwards the call (and its ETH) to a real target, so one transaction carries
/// both a real pair's Sync and the lie.
contract SyncMimic {
    event Sync(uint112 reserve0, uint112 reserve1);

    address public immutable token0;
    address public immutable token1;

    constructor(address token0_, address token1_) {
        token0 = token0_;
        token1 = token1_;
    }

    function relay(address target, bytes calldata data, uint112 fake0, uint112 fake1) external payable {
        emit Sync(fake0, fake1);
        (bool ok, bytes memory ret) = target.call{value: msg.value}(data);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
    }
}
