"""A smoke-size ``ragstream bench`` on the real broker and database: is the report complete?

Times are not checked (the machine is shared); that every figure is there, is
consistent with the others and comes from real work, is.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ragstream.benchmark import REQUIRED_KEYS
from ragstream.benchmark.limits import BATCH_SIZES
from ragstream.settings import Settings

pytestmark = pytest.mark.integration

STAGES = {"parse", "chunk", "embed", "finalize"}


def _bench(settings: Settings, out: Path) -> tuple[dict[str, Any], float]:
    env = {
        **os.environ,
        "RAGSTREAM_KAFKA_BOOTSTRAP": settings.bootstrap,
        "RAGSTREAM_DATABASE_URL": settings.db_url,
        "RAGSTREAM_DATA_DIR": str(out / "data"),
        "RAGSTREAM_PARTITIONS": "3",
        "RAGSTREAM_PDF_PART_PAGES": "4",  # the 12-page PDF is parsed in 3 parts
    }
    args = [
        *("--docs", "6", "--embedder", "hash", "--max-doc-mb", "0.05", "--scaling", "1"),
        *("--memory-pdf-pages", "12", "--memory-text-mb", "0.5", "--latency-docs", "3"),
        *("--retrieval-scale", "2000"),
        *("--out", str(out), "--json"),
    ]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ragstream.cli", "bench", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout), elapsed


def _ordered(p: dict[str, Any]) -> bool:
    return 0 < p["p50"] <= p["p95"] <= p["p99"]


@pytest.mark.timeout(900)
def test_smoke_bench_report_is_complete_and_consistent(settings: Settings, tmp_path: Path) -> None:
    report, elapsed = _bench(settings, tmp_path)
    print(f"smoke bench: {elapsed:.0f}s")

    assert set(REQUIRED_KEYS) <= set(report), set(REQUIRED_KEYS) - set(report)
    assert report["embedder"] == "hash" and report["workers_per_stage"] == 1
    assert report["embed_workers"] == 1 and report["embed_workers_comparison"] is None
    assert report["batch_size"] in BATCH_SIZES

    # The run: every document through, as many chunks as the chunker alone makes.
    assert report["documents"] == report["complete"] == 6 and report["failed"] == 0
    assert report["chunks"] == report["corpus"]["chunks"] > 0
    assert report["truncated_chunks"] == 0
    assert report["chunks_per_s"] > report["documents_per_s"] > 0
    assert report["chunks_per_s"] == pytest.approx(report["chunks"] / report["wall_s"], rel=0.01)
    assert _ordered(report["latency_s"]) and _ordered(report["latency_10kb_s"])
    assert report["latency_10kb_s"]["documents"] == 3

    # Limits, and the ratios computed from them.
    limits = report["limits"]
    assert {"parse", "chunk", "model", "transport"} <= set(limits)
    assert limits["transport"]["received"] == limits["transport"]["messages"] > 0
    assert report["transport_limit_msgs_per_s"] == limits["transport"]["msgs_per_s"] > 0
    assert set(limits["model"]["by_batch_size"]) == {str(b) for b in BATCH_SIZES}
    assert report["model_limit_chunks_per_s"] > 0
    # Measured before and after the pipeline runs; the higher one is the limit.
    before, after = limits["model"]["chunks_per_s_measured"]
    assert report["model_limit_chunks_per_s"] == pytest.approx(max(before, after), rel=0.01)
    assert report["ratio_to_model_limit"] == pytest.approx(
        report["chunks_per_s"] / report["model_limit_chunks_per_s"], rel=0.01, abs=0.002
    )
    slowest = report["slowest_stage_limit"]
    assert report["slowest_stage_limit_chunks_per_s"] == min(
        report["stage_limits_chunks_per_s"].values()
    )
    assert slowest in report["stage_limits_chunks_per_s"]

    # Stages: all four worked, their shares of the busy time add up.
    assert set(report["stages"]) == STAGES
    assert all(s["messages"] > 0 and s["busy_s"] > 0 for s in report["stages"].values())
    assert sum(s["time_share"] for s in report["stages"].values()) == pytest.approx(1, abs=0.01)
    assert report["stages"]["embed"]["messages"] == report["chunks"]

    # Where the cores went: every stage, the database and the broker worked; with
    # what was idle and what others used, the shares cover the machine.
    cpu = report["cpu_share"]
    assert STAGES | {"postgres", "kafka", "bench", "other", "idle"} <= set(cpu)
    assert all(cpu[part] > 0 for part in (*STAGES, "postgres", "kafka"))
    assert sum(cpu.values()) == pytest.approx(1, abs=0.1)

    # Re-ingest: one document edited, only its changed chunks embedded.
    reingest = report["reingest"]
    assert reingest["edited_documents"] == 1 and reingest["complete"] == 1
    assert reingest["changed_chunks"] > 0
    assert reingest["embedded_texts"] == reingest["changed_chunks"]
    assert reingest["only_changed_embedded"] is True
    assert report["reingest_speedup"] == reingest["speedup"] > 0

    # Memory: peak RSS of real worker processes; the large inputs went through.
    assert set(report["peak_rss_mb"]) == STAGES
    assert all(20 < mb < 2000 for mb in report["peak_rss_mb"].values())
    for item in ("pdf", "text"):
        assert report["memory"][item]["status"] == "complete", report["memory"][item]
        assert report["memory"][item]["parse_peak_rss_mb"] > 20
    assert report["scaling"]["1"]["speedup"] == 1
    fanout = report["pdf_fanout"]
    assert (fanout["pages"], fanout["part_pages"]) == (12, 4)
    assert all(fanout["parse_seconds"][k] > 0 for k in ("1", "2"))
    for k in ("1", "2"):  # the median of the repeats
        each = fanout["parse_seconds_each"][k]
        assert len(each) == 3 and fanout["parse_seconds"][k] == sorted(each)[1]
    assert report["pdf_fanout_speedup"] == fanout["speedup"] > 0

    # The runtime the pipeline ran with is the one its limit was measured on; the
    # local runtimes' comparison is for minilm only. The retrieval set, ranked in
    # memory by the run's embedder.
    assert report["pipeline_runtime"] == "hash"
    assert report["runtime_limits_chunks_per_s"] is None
    assert report["ratio_to_fp32_torch_limit"] is None
    assert report["ratio_to_runtime_limit"] == report["ratio_to_model_limit"]
    retrieval = report["retrieval"]
    assert set(retrieval["by_model"]) == {"hash"}
    assert retrieval["queries"]["known_item"] == retrieval["queries"]["reordered"] > 0
    scores = retrieval["by_model"]["hash"]
    assert {"known_item", "reordered", "question"} <= set(scores)
    assert scores["known_item"]["recall_at_10"] >= 0.5
    assert all(
        0 <= s["mrr"] <= s["recall_at_10"] <= 1 for k, s in scores.items() if k != "chunks_per_s"
    )
    # ... and through the real search in each mode, with its latency at scale.
    searched = retrieval["search"]
    assert set(searched["by_embedder"]) == {"hash"}
    assert set(searched["by_embedder"]["hash"]) >= {"vector", "keyword", "hybrid"}
    assert searched["targets"]["known_item_target_met"], searched["targets"]
    assert searched["at_scale"]["chunks"] >= 2000
    assert _ordered(searched["at_scale"]["latency_ms"]["hybrid"])

    # The peer ran when LlamaIndex is installed, and said why not otherwise.
    if importlib.util.find_spec("llama_index") is not None:
        assert report["peer_chunks_per_s"] > 0 and report["peer_documents_per_s"] > 0
        assert 0 <= report["peer_truncated_share"] <= 1
        assert report["ratio_to_peer"] == pytest.approx(
            report["documents_per_s"] / report["peer_documents_per_s"], rel=0.01, abs=0.002
        )
        same = report["peer"]["same_chunk_size"]["documents_per_s"]
        assert report["ratio_to_peer_same_chunking"] == pytest.approx(
            report["documents_per_s"] / same, rel=0.01, abs=0.002
        )
        at_limit = report["model_limit_chunks_per_s"] * report["documents"] / report["chunks"]
        assert report["ratio_to_peer_at_model_limit"] == pytest.approx(
            at_limit / report["peer_documents_per_s"], rel=0.01, abs=0.002
        )
    else:
        assert "skipped" in report["peer"] and report["ratio_to_peer"] is None
        assert report["ratio_to_peer_same_chunking"] is None

    assert all({"value", "bound", "met"} == set(t) for t in report["targets"].values())
    assert {"start", "end"} <= set(report["machine"]["load_average"])
    assert json.loads((tmp_path / "bench.json").read_text()) == report
    assert "| ratio to model limit |" in (tmp_path / "bench.md").read_text()
