"""The retrieval set: queries with known answers over the bench corpus, and their scores.

Three kinds of query, all deterministic:

- ``known_item``: a sentence copied word for word from one chunk;
- ``reordered``: the same sentence with every fourth word dropped and two
  neighbouring words swapped, as people half-remember what they read;
- ``question``: a question written for one of :data:`FACTS`, short paragraphs
  added to the haystack as documents of their own, each beside a distractor on
  the same subject that does not answer it.

A query's answers are every chunk that holds its sentence (overlapping chunks
can share one) or its fact; scores are recall@1, recall@10 and the mean
reciprocal rank (first answer within the top 10, else 0). :func:`rank_in_memory`
ranks by cosine over vectors held in memory, so an embedder's quality can be
measured without a database (the int8 model against fp32, for one).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ragstream.settings import Settings

KINDS = ("known_item", "reordered", "question")
TOP = 10

# (fact, distractor on the same subject, question only the fact answers)
FACTS: tuple[tuple[str, str, str], ...] = (
    (
        "In January the harbour of Velmora freezes over, so the ferry to Ostrand leaves from "
        "the southern pier until the ice breaks in March.",
        "In summer the ferry to Ostrand leaves from the northern pier, next to the fish "
        "market, and crosses in forty minutes.",
        "Where does the ferry to Ostrand depart from in winter?",
    ),
    (
        "The Kestrel bridge was closed in 2019 after engineers found cracks in two of its "
        "steel cables; it reopened for cyclists only.",
        "The Kestrel bridge was painted green in 2015 to match the park on the eastern bank "
        "of the river.",
        "Why was the Kestrel bridge closed?",
    ),
    (
        "Ansel Brook keeps the village library open on Sundays by running it with twelve "
        "volunteers who take turns at the desk.",
        "The village library bought three hundred new children's books with money raised "
        "at the spring fair.",
        "Who staffs the library on Sundays?",
    ),
    (
        "Our backup job copies the database to a second data centre every night at two "
        "o'clock and keeps thirty daily copies.",
        "The database server has 256 gigabytes of memory and runs on solid state disks in a "
        "mirrored pair.",
        "How long are the nightly database backups kept?",
    ),
    (
        "To reset a forgotten password, open the sign-in page, choose 'Forgot password' and "
        "follow the link sent to your e-mail address within one hour.",
        "Passwords must be at least twelve characters long and may not repeat any of the "
        "last five passwords.",
        "What should I do when I forget my password?",
    ),
    (
        "The orchard's apple harvest was poor this year because a late frost in April killed "
        "most of the blossom.",
        "The orchard grows nine kinds of apple and sells cider at the gate on Saturdays.",
        "What caused the bad apple harvest?",
    ),
    (
        "Mira learned to play the cello at the age of forty, taking lessons every Tuesday "
        "evening from a retired orchestra player.",
        "Mira's cello was built in Cremona in 1921 and was restored last year.",
        "When did Mira start learning the cello?",
    ),
    (
        "The mountain pass is open to cars only from June to October; in the other months "
        "snow blocks the road above the tree line.",
        "The mountain pass reaches 2,400 metres, and its hotel serves soup to walkers.",
        "In which months can you drive over the mountain pass?",
    ),
    (
        "Invoices are paid thirty days after they are received, unless the supplier agreed "
        "to an early-payment discount of two percent.",
        "Invoices must show the purchase order number and the supplier's tax identifier.",
        "How soon are supplier invoices paid?",
    ),
    (
        "The clinic moved its vaccination days to Thursday mornings because the waiting room "
        "was too crowded on Mondays.",
        "The clinic has four doctors, two nurses and a pharmacy on the ground floor.",
        "Why did the clinic change its vaccination day?",
    ),
    (
        "A consumer that stops sending heartbeats for longer than the session timeout is "
        "removed from its group, and its partitions are given to the others.",
        "Consumers in one group can read from different topics, each with its own number of "
        "partitions.",
        "What happens to a consumer that misses its heartbeats?",
    ),
    (
        "The river flooded the lower town in 1952, after six days of rain melted the snow in "
        "the hills all at once.",
        "The river is crossed by seven bridges, the oldest of them built of stone in 1740.",
        "What caused the flood of 1952?",
    ),
    (
        "Tomas grows tomatoes in a greenhouse heated by the warm water that leaves the "
        "bakery's ovens next door.",
        "Tomas sells his tomatoes at the Saturday market in the square by the church.",
        "How is the tomato greenhouse heated?",
    ),
    (
        "The museum is free on the first Sunday of every month, and children under twelve "
        "never pay.",
        "The museum's collection of clocks was given to the town by a watchmaker's widow.",
        "When can adults visit the museum without paying?",
    ),
    (
        "Our laptops are replaced every four years, or sooner when a repair would cost more "
        "than half the price of a new one.",
        "Laptops are delivered with the disk encrypted and the office printer installed.",
        "How often are laptops replaced?",
    ),
    (
        "The choir rehearses in the school gym because the church roof is being repaired "
        "until the end of the year.",
        "The choir sings four concerts a year and is looking for tenors.",
        "Why does the choir rehearse in the gym?",
    ),
    (
        "Beekeepers in the valley lost a third of their hives last winter to a mite that "
        "arrived with bees bought from abroad.",
        "Honey from the valley tastes of lime blossom and is sold in glass jars.",
        "Why did the valley's beekeepers lose so many hives?",
    ),
    (
        "Refunds are made to the card used for the purchase within ten working days of the "
        "returned item reaching our warehouse.",
        "Items can be returned within sixty days if they are unused and in their box.",
        "How long does a refund take after a return arrives?",
    ),
    (
        "The night train to Halden was cancelled because too few people booked sleeping "
        "cars after the new motorway opened.",
        "The night train to Halden had a restaurant car that served trout from the lake.",
        "Why was the night train to Halden stopped?",
    ),
    (
        "Nadia fixed the leaking roof herself, using slate tiles saved from the barn that "
        "was pulled down in the spring.",
        "Nadia's house has a blue door and a walnut tree in the garden.",
        "Where did the tiles for the roof repair come from?",
    ),
    (
        "The search index is rebuilt every Sunday night, so documents changed during the "
        "week may rank by their old text until then.",
        "The search index holds about two million documents in eleven languages.",
        "When is the search index rebuilt?",
    ),
    (
        "The lighthouse keeper left in 1987, when the light was made automatic and run "
        "from the harbour office by radio.",
        "The lighthouse is forty metres tall, and its light can be seen from thirty "
        "kilometres away.",
        "Why did the lighthouse no longer need a keeper?",
    ),
    (
        "The bakery starts at three in the morning so that the bread is cool enough to "
        "slice when the shop opens at seven.",
        "The bakery's rye bread uses a sourdough starter kept alive since 1968.",
        "Why does the bakery begin work so early?",
    ),
    (
        "Students who miss an exam through illness can sit it in August if they send a "
        "doctor's note within a week.",
        "Exams take place in the great hall, and phones must be left at the door.",
        "What can a student do after missing an exam because of illness?",
    ),
)


@dataclass(frozen=True)
class Query:
    kind: str
    text: str
    answers: frozenset[int]  # indexes of the chunks that answer it


def fact_texts() -> list[str]:
    """The facts and their distractors, as documents of their own in the haystack."""
    return [text for fact, distractor, _ in FACTS for text in (fact, distractor)]


_SENTENCE = re.compile(r"[^.!?]+[.!?]")


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text) if len(s.split()) >= 8]


def reorder(sentence: str) -> str:
    """Every fourth word dropped, then two neighbours in the middle swapped."""
    words = [w for i, w in enumerate(sentence.split()) if i % 4 != 3]
    middle = len(words) // 2
    if len(words) >= 4:
        words[middle - 1], words[middle] = words[middle], words[middle - 1]
    return " ".join(words)


def make_queries(texts: Sequence[str], *, per_kind: int = 50, seed: int = 0) -> list[Query]:
    """The three kinds over ``texts`` (the haystack's chunk texts, facts included)."""
    rng = random.Random(f"retrieval:{seed}")
    facts = {text: i for i, text in enumerate(texts)}
    fact_chunks = {facts[f] for f, _, _ in FACTS if f in facts}
    candidates = [i for i in range(len(texts)) if i not in fact_chunks and _sentences(texts[i])]
    picked = rng.sample(candidates, min(per_kind, len(candidates)))
    queries: list[Query] = []
    for i in picked:
        sentence = rng.choice(_sentences(texts[i]))
        answers = frozenset(j for j, t in enumerate(texts) if sentence in t)
        queries.append(Query("known_item", sentence, answers))
        queries.append(Query("reordered", reorder(sentence), answers))
    for fact, _, question in FACTS[:per_kind]:
        if fact in facts:
            queries.append(Query("question", question, frozenset({facts[fact]})))
    return queries


def score(queries: Sequence[Query], rankings: Iterable[Sequence[int]]) -> dict[str, Any]:
    """recall@1, recall@10 and MRR@10 per kind, from each query's ranked chunk indexes."""
    sums: dict[str, list[float]] = {kind: [0.0, 0.0, 0.0, 0.0] for kind in KINDS}
    for query, ranking in zip(queries, rankings, strict=True):
        top = list(ranking)[:TOP]
        first = next((rank for rank, i in enumerate(top, 1) if i in query.answers), None)
        totals = sums[query.kind]
        totals[0] += 1
        totals[1] += first == 1
        totals[2] += first is not None
        totals[3] += 1 / first if first is not None else 0.0
    return {
        kind: {
            "queries": int(n),
            "recall_at_1": round(hit1 / n, 4),
            "recall_at_10": round(hit10 / n, 4),
            "mrr": round(rr / n, 4),
        }
        for kind, (n, hit1, hit10, rr) in sums.items()
        if n
    }


def rank_in_memory(
    chunk_vectors: npt.NDArray[np.float32], query_vectors: npt.NDArray[np.float32]
) -> list[list[int]]:
    """Each query's top chunks by cosine (the vectors are unit length)."""
    similarity = query_vectors.astype(np.float32) @ chunk_vectors.astype(np.float32).T
    top = np.argsort(-similarity, axis=1, kind="stable")[:, :TOP]
    return [[int(i) for i in row] for row in top]


def embed_all(
    embed: Callable[[Sequence[str]], list[list[float]]], texts: Sequence[str], batch: int = 32
) -> npt.NDArray[np.float32]:
    vectors: list[list[float]] = []
    for start in range(0, len(texts), batch):
        vectors.extend(embed(texts[start : start + batch]))
    return np.asarray(vectors, dtype=np.float32)


def cosines(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Row-wise cosine of two sets of vectors of the same texts."""
    x, y = a.astype(np.float64), b.astype(np.float64)
    return np.asarray((x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)))


def quality(
    variants: dict[str, Settings],
    texts: Sequence[str],
    *,
    per_kind: int = 50,
    max_chunks: int = 2000,
) -> dict[str, Any]:
    """Each embedder's scores on one haystack (the first ``max_chunks`` chunks, plus the facts),
    and the int8 model's cosine to fp32 on every chunk when both are measured."""
    from ragstream.embedding import make_embedder

    haystack = [*texts[:max_chunks], *fact_texts()]
    queries = make_queries(haystack, per_kind=per_kind)
    scores: dict[str, Any] = {}
    vectors: dict[str, npt.NDArray[np.float32]] = {}
    for name, settings in variants.items():
        embedder = make_embedder(settings)
        try:
            started = time.perf_counter()
            chunk_vectors = embed_all(embedder.embed, haystack)
            seconds = time.perf_counter() - started
            query_vectors = embed_all(embedder.embed, [q.text for q in queries])
        finally:
            embedder.close()
        scores[name] = {
            **score(queries, rank_in_memory(chunk_vectors, query_vectors)),
            "chunks_per_s": round(len(haystack) / seconds, 2) if seconds > 0 else None,
        }
        vectors[name] = chunk_vectors
    result: dict[str, Any] = {
        "chunks": len(haystack),
        "queries": {kind: sum(1 for q in queries if q.kind == kind) for kind in KINDS},
        "by_model": scores,
        "int8_cosine_to_fp32": None,
    }
    if "onnx_fp32" in vectors and "onnx_int8" in vectors:
        agreement = cosines(vectors["onnx_int8"], vectors["onnx_fp32"])
        result["int8_cosine_to_fp32"] = {
            "mean": round(float(agreement.mean()), 5),
            "min": round(float(agreement.min()), 5),
        }
    return result
