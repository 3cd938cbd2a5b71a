"""Task types, per-task negative counts and the reference's source-name lists, kept as data.

A source's task type decides how many hard negatives each query gets and whether the in-batch
loss applies; the released F2LLM data names its sources, so these lists reproduce the
reference's choice when no manifest says otherwise.
"""

from __future__ import annotations

from f2jax.errors import UserInputError

TASKS = ("retrieval", "clustering", "classification")

#: Hard negatives per query (retrieval 7 of 24, clustering 9 of 24, classification negative_1).
DEFAULT_NEGATIVES: dict[str, int] = {"retrieval": 7, "clustering": 9, "classification": 1}

#: Only retrieval sources use the in-batch loss.
INBATCH: dict[str, bool] = {"retrieval": True, "clustering": False, "classification": False}


def hard_negatives(task: str, overrides: dict[str, int] | None = None) -> int:
    """Hard negatives per query of a task type: the config's `data.negatives`, else the default."""
    return {**DEFAULT_NEGATIVES, **(overrides or {})}[task]


def top1_chance(task: str, overrides: dict[str, int] | None = None) -> float:
    """Top-1 accuracy of a random ranking of a query's positive among its hard negatives (the
    validation metric `acc_hard`): 1 / (1 + hard negatives), e.g. 0.125 retrieval, 0.5 classification."""
    return 1.0 / (1 + hard_negatives(task, overrides))

CLASSIFICATION_SOURCES = frozenset(
    [
        "amazon_counterfactual", "amazon_polarity", "imdb", "toxic_conversations", "cola",
        "mela", "waimai", "nordic_classification_danish", "nordic_classification_swedish",
        "nordic_classification_norwegian"
    ]
)

CLUSTERING_SOURCES = frozenset(
    [
        "amazon_reviews", "banking77", "emotion", "mtop_intent", "mtop_domain",
        "massive_scenario", "massive_intent", "tweet_sentiment_extraction",
        "arxiv_clustering_p2p", "arxiv_clustering_s2s", "biorxiv_clustering_p2p",
        "biorxiv_clustering_s2s", "medrxiv_clustering_p2p", "medrxiv_clustering_s2s",
        "reddit_clustering_p2p", "reddit_clustering_s2s", "stackexchange_clustering_p2p",
        "stackexchange_clustering_s2s", "twentynewsgroups", "sib200", "mlsum_clustering_de",
        "mlsum_clustering_es", "mlsum_clustering_fr", "mlsum_clustering_ru",
        "bactrianx_language_classification", "bactrianx_translation", "europarl",
        "xcodeeval_translation", "tnews", "thucnews", "csl", "cedr", "ru_sentiment"
    ]
)


def default_task(source: str) -> str:
    """The reference's task type for a released source name; everything else is retrieval."""
    if source in CLASSIFICATION_SOURCES:
        return "classification"
    if source in CLUSTERING_SOURCES:
        return "clustering"
    return "retrieval"


def check_task(task: str, where: str) -> str:
    if task not in TASKS:
        raise UserInputError(f"{where}: unknown task type {task!r}; expected one of {TASKS}")
    return task


def instruct(instruction: str | None, text: str) -> str:
    """The recipe's query prefix; documents never carry one."""
    if not instruction:
        return text
    return f"Instruct: {instruction}\nQuery: {text}"
