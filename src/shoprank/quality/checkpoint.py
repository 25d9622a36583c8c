"""Run the suites as one Great Expectations Checkpoint and build the Data Docs.

The context is ephemeral: suites are built in code on every run, nothing is read from
or written to a ``gx/`` project, the user's home or the working directory. The only
files Great Expectations writes are the Data Docs site, in the folder we give it.
Each table is a Parquet asset of a pandas data source, so one Checkpoint with one
Validation Definition per suite validates the whole batch; the Data Docs site is then
built once from the results the run stored in the context.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SITE = "shoprank"


@contextmanager
def quiet_gx() -> Iterator[None]:
    """No analytics, progress bars, info logs or warnings from Great Expectations."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"  # read when the context is created
    gx_logger = logging.getLogger("great_expectations")
    level = gx_logger.level
    gx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        gx_logger.setLevel(level)


def _context(site_dir: Path):
    """An in-memory context whose only Data Docs site is ``site_dir``."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        data_docs_sites={
            SITE: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(site_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
    )
    return gx.get_context(project_config=config, mode="ephemeral")


def run_checkpoint(name: str, files: dict[str, Path], suites: dict[str, list], site_dir: Path) -> list[dict]:
    """Validate ``files[suite]`` against ``suites[suite]``; JSON results, one per suite.

    Data Docs are written to ``site_dir`` (``index.html`` is the entry page).
    """
    import great_expectations as gx
    from great_expectations.core.run_identifier import RunIdentifier

    context = _context(site_dir)
    source = context.data_sources.add_pandas(name)
    definitions = []
    for suite_name, expectations in suites.items():
        asset = source.add_parquet_asset(suite_name, path=files[suite_name])
        batch = asset.add_batch_definition_whole_dataframe(suite_name)
        suite = context.suites.add(gx.ExpectationSuite(name=suite_name, expectations=expectations))
        definitions.append(
            context.validation_definitions.add(
                gx.ValidationDefinition(name=suite_name, data=batch, suite=suite)
            )
        )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=name,
            validation_definitions=definitions,
            actions=[],
            result_format="SUMMARY",
        )
    )
    result = checkpoint.run(run_id=RunIdentifier(run_name=name))
    # One build of the whole site after the run: UpdateDataDocsAction renders it result by
    # result (and the index each time), three times slower for our five suites.
    context.build_data_docs(site_names=[SITE])
    by_suite = {r.suite_name: r.to_json_dict() for r in result.run_results.values()}
    return [by_suite[s] for s in suites if s in by_suite]
