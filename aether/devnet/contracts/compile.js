// Compiles one of the devnet's own contracts with the solc-js pinned in package.json
// and prints the artifact JSON on stdout. Run once by a developer (the artifacts are
// committed); the test suite runs it again to check that the committed bytecode matches.
//   node aether/devnet/contracts/compile.js > aether/devnet/contracts/DevToken6.json
//   node aether/devnet/contracts/compile.js MultiSwap.sol MultiSwap > aether/devnet/contracts/MultiSwap.json
//   node aether/devnet/contracts/compile.js MultiSwap.sol SyncMimic > aether/devnet/contracts/SyncMimic.json
//   node aether/devnet/contracts/compile.js DevPermit2.sol DevPermit2 > aether/devnet/contracts/DevPermit2.json
//   node aether/devnet/contracts/compile.js V3Probe.sol V3Probe > aether/devnet/contracts/V3Probe.json
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const file = process.argv[2] || "DevToken6.sol";
const name = process.argv[3] || "DevToken6";
const source = fs.readFileSync(path.join(__dirname, file), "utf8");
const settings = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "cancun",
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
};
const input = { language: "Solidity", sources: { [file]: { content: source } }, settings };
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  for (const e of errors) process.stderr.write(e.formattedMessage + "\n");
  process.exit(1);
}
const c = output.contracts[file][name];
const artifact = {
  contractName: name,
  source: file,
  compiler: "solc-js " + solc.version(),
  settings: { optimizer: settings.optimizer, evmVersion: settings.evmVersion },
  abi: c.abi,
  bytecode: "0x" + c.evm.bytecode.object,
};
process.stdout.write(JSON.stringify(artifact, null, 2) + "\n");
