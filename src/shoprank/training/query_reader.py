"""The query reader the pipeline's steps derive the query-understanding inputs with.

Training, evaluation and drift read the same heads (the understand step's artifact) and the
same lexicon (the validated batch's items, as `package` ships them to serving) through
:func:`pipeline_reader`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from shoprank.inputs.understood import QueryReader
from shoprank.logs import log

if TYPE_CHECKING:
    from shoprank.config import Params

logger = logging.getLogger(__name__)


def pipeline_reader(params: Params) -> QueryReader:
    """The query reader of the pipeline's steps (train, evaluate, drift): the understand step's
    heads and the lexicon of the validated batch's items, as `package` ships them to serving.

    A head the understand step did not write (no labels, too few clicks, or the step not run)
    is None, and without a validated catalogue the lexicon is empty: their inputs are then
    neutral, never an error.
    """
    from shoprank.inputs.lexical import Lexicon, batch_items
    from shoprank.models.query_category import load_query_category
    from shoprank.models.understanding import ARTIFACT, load_understanding
    from shoprank.quality import current_batch

    models = Path(params.paths.models)
    try:
        understanding, _ = load_understanding(models)
    except FileNotFoundError as exc:
        log(
            logger, "no understanding heads: their inputs are neutral", reason=str(exc), level=logging.WARNING
        )
        understanding = None
    category = load_query_category(models / ARTIFACT)
    try:
        lexicon = Lexicon.of(batch_items(params.paths.features, current_batch(params.paths.validated)))
    except FileNotFoundError as exc:  # no validated catalogue to match against: neutral, as a missing head
        log(logger, "no items for the lexical inputs", reason=str(exc), level=logging.WARNING)
        lexicon = Lexicon.build([], [])
    log(logger, "query reader", category_head=category is not None, intent_head=understanding is not None,
        lexicon_items=len(lexicon))  # fmt: skip
    return QueryReader(category, understanding.intent if understanding is not None else None, lexicon)
