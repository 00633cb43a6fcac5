"""Embed the shared routing data's request texts once with the local MiniLM and cache the vectors outside the repo.

Run: nice python bench/embed_cache.py [--data routerbench] [--cache /work/cache/embeddings]
The request text is the part of the prompt after the last blank line (few-shot examples before it
are the same for every row of a source and would swamp the vector). One ``.npz`` per data set holds
the SHA-256 of each text and its vector; rows already in it are not embedded again.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# /work/main's sibling, or a worktree's grandparent's: wherever the shared routing data is.
DATA = next((p / "shared" / "data" for p in (ROOT.parent, ROOT.parent.parent) if (p / "shared" / "data").is_dir()),
            ROOT.parent / "shared" / "data")
CACHE = Path("/work/cache/embeddings")
sys.path.insert(0, str(ROOT))

from router_cli.classify.knn import request_text  # noqa: E402


def cached_hashes(name: str, cache: Path = CACHE) -> set[str]:
    """The text hashes already embedded for ``name`` (for a benchmark on what is ready)."""
    import numpy as np

    path = cache / f"{name}.minilm.npz"
    if not path.exists():
        return set()
    with np.load(path, allow_pickle=False) as z:
        return set(z["hashes"].tolist())


def load_vectors(name: str, texts: list[str], cache: Path = CACHE, chunk: int = 256):
    """Vectors for ``texts`` (rows in order), embedding only those the cache lacks."""
    import numpy as np

    from router_cli.classify.minilm import shared_model

    path = cache / f"{name}.minilm.npz"
    known: dict[str, object] = {}
    if path.exists():
        z = np.load(path, allow_pickle=False)
        known = dict(zip(z["hashes"].tolist(), z["vectors"]))
    hashes = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
    todo = [(h, t) for h, t in dict(zip(hashes, texts)).items() if h not in known]
    # A random order, so that a benchmark run on what is cached so far (--cached-only) sees every source.
    random.Random(0).shuffle(todo)
    if todo:
        model = shared_model()
        start = time.time()
        for i in range(0, len(todo), chunk):
            part = todo[i:i + chunk]
            for (h, _), v in zip(part, model.encode([t for _, t in part])):
                known[h] = v
            print(f"  {name}: {min(i + chunk, len(todo))}/{len(todo)} embedded, {time.time() - start:.0f}s",
                  file=sys.stderr, flush=True)
            if (i // chunk) % 4 == 3 or i + chunk >= len(todo):
                cache.mkdir(parents=True, exist_ok=True)
                np.savez(path, hashes=np.array(list(known)), vectors=np.stack(list(known.values())))
    return np.stack([known[h] for h in hashes])


def main() -> None:
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["routerbench", "routellm"], action="append")
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args()
    for name in args.data or ("routerbench", "routellm"):
        with open(DATA / f"{name}.train.jsonl", encoding="utf-8") as f:
            texts = [request_text(json.loads(line)["prompt"]) for line in f if line.strip()]
        vectors = load_vectors(name, texts, args.cache)
        print(f"{name}: {vectors.shape[0]} vectors cached in {args.cache}", file=sys.stderr)


if __name__ == "__main__":
    main()
