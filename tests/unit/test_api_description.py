"""Each service describes its RPC methods from the models that validate them (shared/api.py)."""
import inspect

import pytest

from shared.api import describe_service, method_model, rpc_methods
from services.evaluation.ratings.commands import SubmitEntries
from services.evaluation.service import EvaluationService
from services.notifications.service import NotificationsService
from services.organizations.application import CreateOrganization
from services.organizations.service import OrganizationsService

SERVICES = {"organizations": OrganizationsService, "evaluation": EvaluationService,
            "notifications": NotificationsService}
# Methods taking **payload that parse no Command (described as a free-form object).
FREE_FORM: set[str] = set()


@pytest.mark.parametrize("name", SERVICES)
def test_every_payload_method_is_described_by_the_command_it_parses(name):
    cls = SERVICES[name]
    described = describe_service(name, cls, cls.app.app_class)
    assert set(described["methods"]) == set(rpc_methods(cls)) and "describe_api" not in \
        described["methods"]
    for method, spec in described["methods"].items():
        takes_payload = any(p.kind == p.VAR_KEYWORD
                            for p in inspect.signature(getattr(cls, method)).parameters.values())
        if f"{name}.{method}" in FREE_FORM:
            assert spec["model"] is None
        else:
            assert spec["model"], f"{name}.{method} has no model"
            assert spec["input"]["additionalProperties"] is False
        if not takes_payload:
            # a query is described by the Query it checks its arguments with; one
            # without arguments by its (empty) signature
            params = set(inspect.signature(getattr(cls, method)).parameters) - {"self"}
            assert set(spec["input"].get("properties", {})) - {"command_id"} >= params
            assert params or spec["model"].endswith("Arguments")


def test_the_schema_is_the_models_own():
    cls = OrganizationsService
    assert method_model("organizations", cls, cls.app.app_class,
                        "create_organization") is CreateOrganization
    # found through the helper the entrypoint's application method calls (self._submit)
    assert method_model("evaluation", EvaluationService, EvaluationService.app.app_class,
                        "submit_review") is SubmitEntries
    described = describe_service("organizations", cls, cls.app.app_class)
    schema = described["methods"]["create_organization"]["input"]
    command_id = schema["properties"].pop("command_id")  # every command takes one
    assert command_id["pattern"] and schema == CreateOrganization.model_json_schema()
    queries = described["methods"]["get_tree"]["input"]["properties"]
    assert "command_id" not in queries


def test_queries_are_described_by_the_query_models_that_check_them():
    from services.organizations.application import OrgAsOf

    cls = OrganizationsService
    assert method_model("organizations", cls, cls.app.app_class, "get_organization") is OrgAsOf


def test_query_arguments_are_typed_like_the_commands_fields():
    described = describe_service("evaluation", EvaluationService, EvaluationService.app.app_class)
    college = described["methods"]["star_distribution"]["input"]["properties"]["college_id"]
    assert {"type": "string", "format": "uuid"} in college["anyOf"]  # a UUID, though annotated str
    scheme = described["methods"]["get_scheme"]["input"]
    assert scheme["properties"]["scheme_id"]["type"] == "string" and \
        "format" not in scheme["properties"]["scheme_id"]  # scheme ids are names
    assert scheme["required"] == ["scheme_id"]
