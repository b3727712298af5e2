"""Build the binary samples in this folder: a three-page PDF and a DOCX.

Run from the repository root with the development dependencies installed:

    .venv/bin/python examples/make_samples.py

The PDF is written with reportlab's invariant mode, so rebuilding it gives
the same bytes. The text is original and dedicated to the public domain
(CC0-1.0), like every sample here.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import docx
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import cm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer

HERE = Path(__file__).resolve().parent

# (kind, text): "title", "h1", "h2" or "p".
FIELD_GUIDE: list[tuple[str, str]] = [
    ("title", "A Field Guide to Stream Processing"),
    (
        "p",
        "Most data starts life as a stream. A sensor reports a temperature, a customer "
        "clicks a button, a payment clears, a document is uploaded. Batch systems wait "
        "until enough of these facts pile up and then process the pile; stream processors "
        "handle each fact shortly after it happens. This guide walks through the ideas "
        "that make stream processing work in practice, from the log at the bottom of the "
        "stack to the windows and state that sit at the top.",
    ),
    ("h1", "1. Events and Logs"),
    (
        "p",
        "An event is a record of something that happened: it has a time, a subject and a "
        "few facts about the change. Events are immutable. If a customer changes their "
        "address, we do not edit the old event; we append a new one that says the address "
        "changed. This discipline sounds wasteful, but it pays for itself the first time "
        "someone asks what the system believed last Tuesday.",
    ),
    (
        "p",
        "A log is the simplest possible home for events: an ordered, append-only sequence "
        "in which every entry has a position, called its offset. Writers only ever add to "
        "the end. Readers keep track of the offset they have reached and move forward at "
        "their own pace. Because the log does not forget an entry the moment it is read, "
        "many independent readers can consume the same events, and a reader that crashes "
        "can resume from the last offset it recorded.",
    ),
    ("h2", "1.1 Why an append-only log scales"),
    (
        "p",
        "Appending to the end of a file is the cheapest thing a disk can do, and reading "
        "sequentially is the second cheapest. A log turns every write into an append and "
        "most reads into sequential scans, so a single machine can absorb hundreds of "
        "megabytes per second. Retention is equally simple: old segments of the log are "
        "deleted, or compacted so that only the latest event for each key survives.",
    ),
    ("h1", "2. Partitions and Ordering"),
    (
        "p",
        "One log on one machine eventually runs out of room. The usual answer is to split "
        "a topic into partitions, each an independent log that can live on a different "
        "server. A producer chooses the partition for each event, normally by hashing a "
        "key such as a customer number or a document identifier. All events with the same "
        "key land in the same partition and therefore stay in order relative to each "
        "other.",
    ),
    (
        "p",
        "Ordering across partitions is not guaranteed, and trying to restore it is "
        "expensive. The practical lesson is to choose keys so that the events which must "
        "be ordered share a key. Events about one bank account need a strict order; events "
        "about two different accounts almost never do.",
    ),
    ("h2", "2.1 Consumer groups"),
    (
        "p",
        "Consumers that cooperate on a topic form a group. The partitions are divided "
        "among the members, so that each partition is read by exactly one member at a "
        "time. Adding a member spreads the work; losing one hands its partitions to the "
        "survivors after a short pause called a rebalance. The number of partitions is "
        "therefore the ceiling on parallelism within a group, and it is worth choosing "
        "generously at the start.",
    ),
    ("h1", "3. Delivery Guarantees"),
    (
        "p",
        "Networks drop messages and processes crash at inconvenient moments, so every "
        "streaming system has to decide what happens to an event caught in the middle. "
        "At-most-once delivery commits the offset before doing the work: nothing is ever "
        "processed twice, but a crash can lose an event. At-least-once delivery does the "
        "work first and commits afterwards: nothing is lost, but a crash between the two "
        "steps means the event is processed again after a restart.",
    ),
    (
        "p",
        "Exactly-once processing is at-least-once delivery plus idempotent effects. If "
        "writing the result twice has the same effect as writing it once, for example an "
        "upsert keyed by a deterministic identifier, then redelivery is harmless. Most "
        "robust pipelines are built this way: they accept duplicates on the wire and make "
        "sure duplicates cannot change the outcome.",
    ),
    ("h2", "3.1 Dead-letter queues"),
    (
        "p",
        "Some events can never be processed: a corrupt file, a malformed message, a "
        "reference to something that does not exist. Retrying them forever blocks the "
        "partition behind them. A dead-letter queue is a separate topic where such events "
        "are parked together with the reason they failed, so that the main flow continues "
        "and a person can inspect, fix and replay them later. The important design choice "
        "is to tell permanent failures apart from temporary ones: a database that is "
        "briefly unreachable deserves a retry, a truncated PDF does not.",
    ),
    ("h1", "4. State, Time and Windows"),
    (
        "p",
        "Many questions about a stream need memory: how many orders arrived in the last "
        "five minutes, what is the running balance of an account, has this document been "
        "seen before. A stream processor keeps such state locally for speed and backs it "
        "up to a changelog so that it can be rebuilt on another machine after a failure.",
    ),
    (
        "p",
        "Time is subtler than it looks. Event time is when something happened; processing "
        "time is when the system got around to it. The two drift apart whenever a phone "
        "goes offline or a queue backs up. Aggregations are grouped into windows: tumbling "
        "windows of fixed size that do not overlap, hopping windows that overlap, and "
        "session windows that close after a gap of inactivity. A watermark is the "
        "processor's estimate of how far event time has progressed, and it decides when a "
        "window is complete enough to report.",
    ),
    ("h2", "4.1 Late events"),
    (
        "p",
        "Some events arrive after their window has closed. A system can drop them, update "
        "the result and emit a correction, or hold windows open longer at the cost of "
        "slower answers. There is no universally right choice; the right one depends on "
        "whether a consumer of the results prefers speed or completeness.",
    ),
    ("h1", "5. Backpressure and Operations"),
    (
        "p",
        "A pipeline is only as fast as its slowest stage. When a downstream service slows "
        "down, something must give: either the upstream stages slow down too, which is "
        "backpressure, or data piles up somewhere. Logs make the second option safe, "
        "because the pile is simply unread offsets on disk. Consumer lag, the distance "
        "between the newest offset and the one a group has committed, is therefore the "
        "single most useful health signal of a streaming system.",
    ),
    (
        "p",
        "Good operations follow from a few habits. Make every stage restartable at any "
        "moment. Give every event a stable identifier so that duplicates can be "
        "recognised. Record why failures happened, not only that they happened. Measure "
        "lag and error rates per stage. With those habits in place, a stream processing "
        "system becomes one of the calmer parts of an architecture: when something goes "
        "wrong, the log remembers, and the work can simply be done again.",
    ),
    ("h1", "6. A Worked Example: Document Ingestion"),
    (
        "p",
        "Consider a pipeline that prepares documents for a search assistant. An upload "
        "service stores the file and publishes an event naming it. A parsing stage "
        "reads the event, detects the file type from its content, extracts text with "
        "its headings and page numbers, and publishes the result. A chunking stage cuts "
        "the text into passages of a few hundred tokens, and an embedding stage turns "
        "each passage into a vector that is written to a database.",
    ),
    (
        "p",
        "Every idea from this guide appears in that small pipeline. The document "
        "identifier is the partition key, so all events about one document stay in "
        "order. Each stage commits only after its output is durable, and its writes are "
        "upserts keyed by stable identifiers, so a restart repeats work without "
        "duplicating it. A document that cannot be parsed goes to a dead-letter topic "
        "with a readable reason, while a brief outage of the embedding service merely "
        "pauses the stage and lets lag grow until the service returns.",
    ),
]

HANDBOOK: list[tuple[str, str]] = [
    ("title", "Event Sourcing Handbook"),
    (
        "p",
        "This handbook introduces event sourcing for engineers who have built ordinary "
        "database applications and wonder whether storing history instead of current "
        "state is worth the trouble. It covers the core pattern, the read side, schema "
        "changes and the situations in which the pattern is a poor fit.",
    ),
    ("h1", "The Core Idea"),
    (
        "p",
        "A conventional application stores the current state of each entity and "
        "overwrites it on every change. An event-sourced application stores the sequence "
        "of changes instead and derives the current state by replaying them. The account "
        "balance is not a column; it is the sum of all deposits and withdrawals recorded "
        "for the account.",
    ),
    (
        "p",
        "Because nothing is overwritten, the history is complete by construction. Audits "
        "become queries, bugs can be reproduced by replaying the exact events that "
        "triggered them, and new features can be computed retroactively over years of "
        "past activity.",
    ),
    ("h2", "Commands and Events"),
    (
        "p",
        "A command expresses an intention, such as withdraw fifty euros, and may be "
        "rejected. An event records a decision that has already been made, such as fifty "
        "euros withdrawn, and is never rejected after the fact. Keeping the two apart "
        "clarifies where validation belongs: in the code that turns commands into events.",
    ),
    ("h1", "The Read Side"),
    (
        "p",
        "Replaying every event for every query would be slow, so event-sourced systems "
        "maintain projections: read models that are updated as events arrive. One "
        "projection might hold current balances for a dashboard, another a search index, "
        "a third a monthly report. Each can be rebuilt from scratch by replaying the log, "
        "which makes it safe to change or add projections later.",
    ),
    ("h2", "Eventual Consistency"),
    (
        "p",
        "Projections lag slightly behind the log. A user who has just submitted a change "
        "may not see it reflected on the next screen for a moment. Interfaces deal with "
        "this by showing the result of the command directly, or by waiting until the "
        "projection has caught up with the position of the event the user produced.",
    ),
    ("h1", "Changing Event Schemas"),
    (
        "p",
        "Events live forever, so their format must evolve without rewriting history. "
        "Common techniques include adding optional fields with defaults, introducing a "
        "new event type alongside the old one, and upcasting: converting old events to "
        "the current shape as they are read. A schema registry that checks compatibility "
        "before a producer may publish a new version catches mistakes early.",
    ),
    ("h1", "When Not to Use It"),
    (
        "p",
        "Event sourcing adds moving parts. Simple applications with little need for "
        "history, reporting or integration are usually better served by a plain database "
        "table and an audit column. The pattern shines where the history itself is "
        "valuable: finance, logistics, collaborative editing and document pipelines in "
        "which every stage must be able to explain what it did and why.",
    ),
]

SUMMARY_TABLE = [
    ("Term", "Meaning"),
    ("Event", "An immutable record of a decision that was made"),
    ("Projection", "A read model derived from events"),
    ("Upcasting", "Converting old events to the current schema when reading"),
]


def build_pdf(path: Path) -> None:
    base = getSampleStyleSheet()
    body = ParagraphStyle("Body", parent=base["BodyText"], fontSize=10, leading=14)
    styles = {
        "title": ParagraphStyle(
            "GuideTitle",
            parent=base["Title"],
            fontSize=22,
            leading=27,
            alignment=TA_CENTER,
            spaceAfter=14,
        ),
        "h1": ParagraphStyle("H1", parent=base["Heading1"], fontSize=15, leading=19),
        "h2": ParagraphStyle("H2", parent=base["Heading2"], fontSize=12, leading=15),
        "p": ParagraphStyle("P", parent=body, spaceAfter=6),
    }
    story = [Spacer(1, 0.5 * cm)]
    for kind, text in FIELD_GUIDE:
        story.append(Paragraph(text, styles[kind]))
    document = SimpleDocTemplate(
        str(path),
        pagesize=A4,
        leftMargin=3 * cm,
        rightMargin=3 * cm,
        topMargin=2.5 * cm,
        bottomMargin=2.5 * cm,
        title="A Field Guide to Stream Processing",
        author="ragstream examples (CC0-1.0)",
        invariant=1,
    )
    document.build(story)


def build_docx(path: Path) -> None:
    document = docx.Document()
    properties = document.core_properties
    properties.title = "Event Sourcing Handbook"
    properties.author = "ragstream examples (CC0-1.0)"
    properties.created = properties.modified = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    for kind, text in HANDBOOK:
        if kind == "title":
            document.add_heading(text, 0)
        elif kind == "h1":
            document.add_heading(text, 1)
        elif kind == "h2":
            document.add_heading(text, 2)
        else:
            document.add_paragraph(text)
    document.add_heading("Glossary", 1)
    table = document.add_table(rows=len(SUMMARY_TABLE), cols=2)
    for row, cells in zip(table.rows, SUMMARY_TABLE, strict=True):
        for cell, text in zip(row.cells, cells, strict=True):
            cell.text = text
    document.save(str(path))


def main() -> None:
    build_pdf(HERE / "documents" / "stream-processing-field-guide.pdf")
    build_docx(HERE / "documents" / "event-sourcing-handbook.docx")


if __name__ == "__main__":
    main()
