#!/usr/bin/env python3
"""Replay every candidate of a devnet run on the chain; see docs/validation/replay.md.

    .venv/bin/python scripts/replay_candidates.py --duration 600 --seed 1

Exit 0 when every replayed candidate realised exactly its predicted gross
profit, 1 when one did not (or none was found), 2 on a bad argument.
"""

from __future__ import annotations

import sys

from aether.devnet import replay_main

if __name__ == "__main__":
    sys.exit(replay_main(sys.argv[1:]))
