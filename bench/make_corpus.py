"""Write the bench corpus to a directory, to look at it or to feed another pipeline.

    .venv/bin/python -m bench.make_corpus --docs 30 --seed 0 --out /tmp/corpus

The documents are the ones ``ragstream bench`` ingests with the same options
(see ``ragstream/benchmark/corpus.py``); ``--edited`` writes the re-ingest
variant, ``--big`` adds the long PDF and the large text of the memory phase.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ragstream.benchmark import corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-doc-mb", type=float, default=2.0)
    parser.add_argument("--edited", action="store_true", help="the corpus with 10%% edited")
    parser.add_argument("--big", action="store_true", help="add a 200-page PDF and 50 MB of text")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    docs = corpus.make_corpus(args.docs, seed=args.seed, max_doc_mb=args.max_doc_mb)
    if args.edited:
        docs = corpus.edit(docs, seed=args.seed, max_doc_mb=args.max_doc_mb)
    if args.big:
        docs += [corpus.big_pdf(200, seed=args.seed), corpus.big_text(50, seed=args.seed)]
    for path in corpus.write(docs, args.out):
        print(f"{path.stat().st_size:>10}  {path}")


if __name__ == "__main__":
    main()
