"""Generated requests from the OpenAPI document: no input makes the service answer 500."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

from .conftest import Service


def test_no_generated_request_gets_a_500(service: Service) -> None:
    """Every operation, a few dozen generated cases each, with a valid key: always < 500."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", service.client.app)
    failures: list[str] = []
    statuses: list[int] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7
    for operation in operations:

        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            response = case.call(headers={"Authorization": f"Bearer {service.acme}"})
            statuses.append(response.status_code)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}")

        check()
    assert not failures, "\n".join(failures[:10])
    assert len(statuses) >= 100  # the cases really ran
    assert any(400 <= s < 500 for s in statuses)  # and included bad input
