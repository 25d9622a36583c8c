"""The live service against its own OpenAPI document: schemathesis generates requests from
/openapi.json (valid and invalid bodies, a bounded number per operation and mode) and
checks that none is a server error and every answer is a status and content type the
document lists.

The operations are driven here with Hypothesis rather than through schemathesis' pytest
plugin, which does not run under the pinned pytest.
"""

from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

EXAMPLES = 25  # per operation and mode: every operation is covered, the run stays short
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_generated_request_is_a_server_error(live_server, mode):
    schema = schemathesis.openapi.from_url(live_server.url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/search", "/recommend", "/rank", "/intent", "/feedback"}
    statuses: Counter[int] = Counter()
    for operation in operations:
        if mode is GenerationMode.NEGATIVE and operation.method.upper() == "GET":
            continue  # nothing to break: GETs take no body or parameters

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def run(case):
            response = case.call_and_validate(base_url=live_server.url, checks=CHECKS)
            statuses[response.status_code] += 1

        run()
    print(mode.value, "status counts:", dict(sorted(statuses.items())))
    assert statuses and not [code for code in statuses if code >= 500]
