#!/usr/bin/env python3
"""Fuzz the protocol decoder: many malformed inputs, zero crashes allowed.

Inputs are made from valid messages of every type (with arrays), then damaged: random bytes,
truncated or extended frames, flipped bytes, header fields replaced by random msgpack values of
every kind (nested maps and lists, binary, huge integers, floats, None), array tables lying about
dtype, shape or count, and frames added or removed. Each must decode to a message or raise
``ProtocolError``; anything else is a crash and is printed with the input that caused it.

    python scripts/fuzz_protocol.py --count 20000 --seed 1 --json out/fuzz.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

import msgpack
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout: evaluation/ is not installed

from evaluation.harness import write_json
from siren_recon.protocol import MESSAGE_TYPES, ProtocolError, decode, encode
from siren_recon.protocol.messages import JobSummary


def sample_messages(rng: np.random.Generator) -> list[list[bytes]]:
    """One valid encoding of every message type, arrays filled where the type has them."""
    out = []
    for cls in MESSAGE_TYPES.values():
        fields = {}
        for name in ("points", "normals", "colours", "vertices"):
            if name in cls.__dataclass_fields__:
                fields[name] = rng.normal(size=(5, 3)).astype(np.float32)
        if "faces" in cls.__dataclass_fields__:
            fields["faces"] = np.array([[0, 1, 2], [2, 3, 4]], np.uint32)
        if "jobs" in cls.__dataclass_fields__:
            fields["jobs"] = [JobSummary(job="a", tag="t", state="done", iteration=1, total=2)]
        out.append([bytes(f) for f in encode(cls(**fields))])
    return out


def random_value(rnd: random.Random, depth: int = 0):
    kinds = ["int", "bigint", "float", "str", "bytes", "none", "bool"] + (["list", "map"] if depth < 3 else [])
    kind = rnd.choice(kinds)
    if kind == "int":
        return rnd.randint(-1000, 1000)
    if kind == "bigint":
        return rnd.choice([2**63 - 1, -(2**63), 2**64 - 1, 2**31])
    if kind == "float":
        return rnd.choice([0.5, -1e308, float("nan"), float("inf"), 1e-300])
    if kind == "str":
        return "".join(rnd.choice("ab\x00é😀") for _ in range(rnd.randint(0, 8)))
    if kind == "bytes":
        return rnd.randbytes(rnd.randint(0, 8))
    if kind == "none":
        return None
    if kind == "bool":
        return rnd.random() < 0.5
    if kind == "list":
        return [random_value(rnd, depth + 1) for _ in range(rnd.randint(0, 4))]
    return {rnd.choice(["v", "type", "body", "arrays", "name", "dtype", "shape", "x"]): random_value(rnd, depth + 1)
            for _ in range(rnd.randint(0, 4))}


def mutate(rnd: random.Random, frames: list[bytes]) -> list[bytes]:
    frames = list(frames)
    op = rnd.randrange(9)
    if op == 0:  # random bytes
        return [rnd.randbytes(rnd.randint(0, 64)) for _ in range(rnd.randint(0, 4))]
    if op == 1:  # truncate a frame
        i = rnd.randrange(len(frames))
        frames[i] = frames[i][: rnd.randint(0, max(0, len(frames[i]) - 1))]
    elif op == 2:  # flip bytes
        i = rnd.randrange(len(frames))
        data = bytearray(frames[i])
        for _ in range(rnd.randint(1, 4)):
            if data:
                data[rnd.randrange(len(data))] = rnd.randrange(256)
        frames[i] = bytes(data)
    elif op == 3:  # extend a frame
        i = rnd.randrange(len(frames))
        frames[i] += rnd.randbytes(rnd.randint(1, 16))
    elif op == 4:  # drop or add frames
        if len(frames) > 1 and rnd.random() < 0.5:
            del frames[rnd.randrange(1, len(frames))]
        else:
            frames.append(rnd.randbytes(rnd.choice([0, 12, 60, 7])))
    else:  # rewrite the header with random values in random places
        head = msgpack.unpackb(frames[0], raw=False)
        target = head
        if op == 6 and isinstance(head.get("body"), dict) and head["body"]:
            target = head["body"]
        elif op == 7 and head.get("arrays"):
            target = rnd.choice(head["arrays"])
        key = rnd.choice(list(target) + ["extra"]) if target else "v"
        target[key] = random_value(rnd)
        if op == 8:
            head["v"] = rnd.choice(["1.1", "1.0", "2.0", "1", "1.x", "١.٠", "", 1.1])
        frames[0] = msgpack.packb(head, use_bin_type=True)
    return frames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    seeds = sample_messages(np.random.default_rng(args.seed))
    outcomes: Counter[str] = Counter()
    crashes = []
    started = time.perf_counter()
    for _ in range(args.count):
        frames = mutate(rnd, rnd.choice(seeds))
        try:
            decode(frames, max_bytes=1 << 20)
            outcomes["decoded"] += 1
        except ProtocolError as exc:
            outcomes[exc.code] += 1
        except Exception as exc:  # noqa: BLE001 - a crash is exactly what this looks for
            crashes.append((repr(exc), [f[:80].hex() for f in frames]))
    seconds = time.perf_counter() - started
    figures = {"inputs": args.count, "crashes": len(crashes), "seconds": round(seconds, 2),
               "outcomes": dict(sorted(outcomes.items())), "seed": args.seed}
    print(json.dumps(figures, indent=2))
    for error, frames in crashes[:10]:
        print("CRASH", error, frames, file=sys.stderr)
    write_json(args.json, figures)
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
