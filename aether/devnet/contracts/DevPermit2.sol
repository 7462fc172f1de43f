// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title DevPermit2: the AllowanceTransfer subset of Uniswap's Permit2 that the Universal Router calls.
/// @notice Devnet only. Permit2's own bytecode is not published on npm (neither
/// the npm package `uniswap permit2` nor the Universal Router package ship it), so the devnet deploys
/// this stand-in at the router's `permit2` address. Same function signatures and the
/// same rules for what the router uses: `approve(token, spender, amount, expiration)`
/// by the owner, then `transferFrom(from, to, amount, token)` by the spender, which
/// spends the allowance (unless it is the maximum) and fails when expired or short.
/// Signature permits (`permit`, `PERMIT2_PERMIT`) are not implemented: devnet victims
/// approve on chain once, as many wallets do.
contract DevPermit2 {
    struct PackedAllowance {
        uint160 amount;
        uint48 expiration;
        uint48 nonce;
    }

    /// owner => token => spender => allowance, as Permit2's `allowance(owner, token, spender)`.
    mapping(address => mapping(address => mapping(address => PackedAllowance))) public allowance;

    event Approval(address indexed owner, address indexed token, address indexed spender, uint160 amount, uint48 expiration);

    error AllowanceExpired(uint256 deadline);
    error InsufficientAllowance(uint256 amount);

    function approve(address token, address spender, uint160 amount, uint48 expiration) external {
        PackedAllowance storage a = allowance[msg.sender][token][spender];
        a.amount = amount;
        a.expiration = expiration == 0 ? uint48(block.timestamp) : expiration;
        emit Approval(msg.sender, token, spender, amount, expiration);
    }

    function transferFrom(address from, address to, uint160 amount, address token) external {
        PackedAllowance storage a = allowance[from][token][msg.sender];
        if (block.timestamp > a.expiration) revert AllowanceExpired(a.expiration);
        if (a.amount != type(uint160).max) {
            if (amount > a.amount) revert InsufficientAllowance(a.amount);
            unchecked {
                a.amount -= amount;
            }
        }
        (bool ok, bytes memory ret) = token.call(abi.encodeWithSelector(0x23b872dd, from, to, uint256(amount)));
        require(ok && (ret.length == 0 || abi.decode(ret, (bool))), "TRANSFER_FROM_FAILED");
    }
}
