"""Writes minilm-reference.npy: sentence-transformers' fp32 vectors of the ONNX tests' texts.

The ONNX Runtime tests compare against this file, so they need no torch; the
``torch`` test `test_the_committed_reference_is_sentence_transformers_output`
recomputes it and fails when it is stale. Regenerate (needs the ``minilm`` extra,
e.g. in the `make test-torch` virtualenv) with:

    .venv-torch/bin/python tests/unit/data/make_minilm_reference.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from tests.unit.test_onnx_embedder import REFERENCE_FILE, TEXTS, sentence_transformers_vectors  # noqa: E402

if __name__ == "__main__":
    np.save(REFERENCE_FILE, sentence_transformers_vectors(TEXTS))
    print(f"wrote {REFERENCE_FILE} ({len(TEXTS)} vectors)")
