"""schemathesis against a running coordinator's /openapi.json: every operation, with
generated data, signed as a member the way any client signs (examples/python/icn_http.py),
must get no server error and no response outside the document.

    ICN_API=http://127.0.0.1:7700 ICN_KEY=ana.key python3 -m pytest tests/python/test_openapi.py
"""

import os
import sys
from urllib.parse import urlsplit

import schemathesis
from hypothesis import HealthCheck, settings
from requests.auth import AuthBase
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "examples", "python"))
from icn_http import Member  # noqa: E402

API = os.environ["ICN_API"]
MEMBER = Member.from_file(os.environ["ICN_KEY"])
EXAMPLES = int(os.environ.get("ICN_SCHEMATHESIS_EXAMPLES", "60"))


class Sign(AuthBase):
    """Signs the request exactly as it goes out: its final path, query and body."""

    def __call__(self, request):
        url = urlsplit(request.url)
        target = url.path + ("?" + url.query if url.query else "")
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        request.headers.update(MEMBER.headers(request.method, target, body))
        return request


schema = schemathesis.openapi.from_url(API + "/openapi.json")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_within_its_schema(case):
    response = case.call(auth=Sign())
    case.validate_response(
        response,
        checks=[not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance],
    )


def test_an_unsigned_request_is_refused_with_a_documented_error():
    import requests

    response = requests.get(API + "/v1/queue", timeout=10)
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "unsigned"


def test_a_signed_request_is_answered_so_the_operations_above_ran_as_a_member():
    import requests

    response = requests.get(API + "/v1/queue", auth=Sign(), timeout=10)
    assert response.status_code == 200, response.text
    assert "scopes" in response.json()
