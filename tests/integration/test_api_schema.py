"""Schemathesis against `/api/schema`: generated calls to every operation, never a 5xx.

Driven with plain hypothesis (`@given` over each operation's strategy) rather than
schemathesis's pytest plugin, which does not run on this pytest; bounded to a few dozen
examples per operation so the whole sweep stays well under two minutes.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.stack import Services

ADMIN = {"Authorization": "Bearer test-admin-token-0123456789"}
EXAMPLES = 40


def test_no_generated_call_to_any_operation_gets_a_server_error(stack: Services) -> None:
    schema = schemathesis.openapi.from_url(f"{stack.base_url}/api/schema")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def never_5xx(case: schemathesis.Case) -> None:
            response = case.call(base_url=stack.base_url, headers=ADMIN, timeout=20)
            case.validate_response(response, checks=[not_a_server_error])

        never_5xx()
