"""Property-based API test over the app's own OpenAPI schema: no 5xx, no response off the schema.

Runs against every endpoint the schema lists, so it grows with the API."""

import tempfile

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.demo import write_demo_weights
from app.main import create_app
from app.settings import Settings

# On demo weights, so the service is ready (/readyz answers 200, not its documented 503) and weight
# names, voices and synthesis are real. The folder lives as long as the test process.
_DEMO = tempfile.TemporaryDirectory(prefix="gsv-schemathesis-")
write_demo_weights(_DEMO.name, seed=0)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(Settings(weights_root=_DEMO.name)))


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_never_errors_and_follows_its_schema(case):
    # Checks: no 5xx, status codes and bodies conform to the documented responses. Schema-valid input
    # may still be refused with a documented 4xx on meaning (no speakable text, an unknown weight
    # name), so "positive data must be accepted" does not apply to this API.
    case.call_and_validate(excluded_checks=[positive_data_acceptance])
