"""The synthetic-transaction language as pydantic models: fields, defaults and per-field rules."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from canary.transactions import expressions
from canary.transactions.headers import check_header_name, check_header_value
from canary.transactions.templating import RESERVED, is_var_name

DEFAULT_SLA = 99.0
DEFAULT_ERROR_BUDGET = 5
DEFAULT_TIMEOUT_S = 10.0
MAX_TIMEOUT_S = 300.0
RetryOn = Literal["connect_error", "timeout", "5xx", "429"]
RETRY_CONDITIONS: tuple[RetryOn, ...] = ("connect_error", "timeout", "5xx", "429")
NAME_CHARS = "letters, digits, '-', '_' and '.'"
SUBJECTS = ("status", "header", "jsonpath", "regex", "response_time_ms", "body_size", "json_schema")
VALUE_OPS = ("eq", "equals", "ne", "lt", "le", "gt", "ge", "contains", "matches", "exists", "count")


def _check_name(value: str) -> str:
    if (
        not value
        or len(value) > 128
        or not all(c.isascii() and (c.isalnum() or c in "-_.") for c in value)
    ):
        raise ValueError(f"must be 1 to 128 {NAME_CHARS}, got {value!r}")
    return value


def _check_var(value: str) -> str:
    if not is_var_name(value):
        raise ValueError(
            f"variable names are letters, digits and '_', not starting with a digit: {value!r}"
        )
    if value in RESERVED:
        raise ValueError(f"{value!r} is reserved for a built-in; choose another name")
    return value


def _code_text(value: Any) -> Any:
    # ``when: [5xx, 429]``: YAML reads the bare 429 as a number.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _valid_jsonpath(v: str) -> str:
    expressions.jsonpath(v)
    return v


def _valid_regex(v: str) -> str:
    expressions.regex(v)
    return v


def _valid_codes(v: Any) -> Any:
    codes = [v] if isinstance(v, int) else v if isinstance(v, list) else []
    for c in codes:
        if not 100 <= c <= 599:
            raise ValueError(f"must be an HTTP status code (100-599), got {c}")
    if isinstance(v, list) and not v:
        raise ValueError("give at least one status code")
    return v


def _valid_schema(v: dict[str, Any]) -> dict[str, Any]:
    from canary.transactions.jsonschema_check import check_schema

    check_schema(v)
    return v


Number = Annotated[float, Field(allow_inf_nan=False)]
JsonPath = Annotated[str, AfterValidator(_valid_jsonpath)]
Regex = Annotated[str, AfterValidator(_valid_regex)]
Codes = Annotated[int | list[int], AfterValidator(_valid_codes)]
HeaderName = Annotated[str, AfterValidator(check_header_name)]
# Templates render at run time, where the rendered value is checked again.
HeaderValue = Annotated[str, AfterValidator(check_header_value)]
Headers = dict[HeaderName, HeaderValue]
SafeName = Annotated[
    str,
    AfterValidator(_check_name),
    Field(json_schema_extra={"pattern": "^[A-Za-z0-9_.-]{1,128}$"}),
]


def _check_group(pattern: str, group: int | str) -> None:
    """A regex group named by number or name must exist in the pattern."""
    count, names = expressions.regex_groups(pattern)
    if isinstance(group, int) and not 0 <= group <= count:
        raise ValueError(f"group {group} does not exist: the pattern has {count} group(s)")
    if isinstance(group, str) and group not in names:
        raise ValueError(f"the pattern has no group named {group!r}")


class Model(BaseModel):
    """Strict, closed, immutable; dumps only what was written (so dumps round-trip exactly)."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        serialize_by_alias=True,
        validate_by_alias=True,
        validate_by_name=False,
    )

    @model_serializer(mode="wrap")
    def _dump_set_fields(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if not isinstance(data, dict):
            return data
        fields = type(self).model_fields
        keep = {fields[n].alias or n for n in self.model_fields_set if n in fields}
        return {k: v for k, v in data.items() if k in keep}

    def given(self, name: str) -> bool:
        """Whether the user wrote this field (``equals: null`` differs from no ``equals``)."""
        return name in self.model_fields_set


class Compare(Model):
    """Numeric comparisons; every one given must hold."""

    eq: Number | None = None
    ne: Number | None = None
    lt: Number | None = None
    le: Number | None = None
    gt: Number | None = None
    ge: Number | None = None

    @model_validator(mode="after")
    def _some(self) -> Compare:
        if not self.model_fields_set:
            raise ValueError("give at least one of eq, ne, lt, le, gt, ge")
        return self


class Assertion(Model):
    """One check on a response: a subject (status, header, jsonpath...) and operators."""

    status: Codes | Compare | None = Field(None, description="status code, list, or comparisons")
    header: str | None = Field(
        None, min_length=1, description="response header name (case-insensitive)"
    )
    jsonpath: JsonPath | None = Field(
        None, description="JSONPath (jsonpath-ng extended) into the JSON body"
    )
    regex: Regex | None = Field(None, description="RE2 pattern searched (not anchored) in the body")
    response_time_ms: Number | Compare | None = Field(None, description="this request's duration")
    body_size: int | Compare | None = Field(None, description="body size in bytes")
    json_schema: Annotated[dict[str, Any], AfterValidator(_valid_schema)] | None = Field(
        None, description="JSON Schema the body must satisfy"
    )
    group: int | str | None = Field(
        None, description="regex: compare this group instead of the match"
    )
    eq: Any = Field(None, description="a value equals this (JSON comparison: 42 != '42')")
    equals: Any = Field(None, description="same as eq (the seed's spelling)")
    ne: Any = Field(None, description="no value equals this")
    lt: Number | None = None
    le: Number | None = None
    gt: Number | None = None
    ge: Number | None = None
    contains: Any = Field(None, description="substring, list element or object key")
    matches: Regex | None = Field(None, description="RE2 pattern a string value must contain")
    exists: bool | None = Field(None, description="whether there is any value")
    count: int | Compare | None = Field(None, description="how many values (JSONPath matches...)")

    @model_validator(mode="after")
    def _shape(self) -> Assertion:
        subjects = [s for s in SUBJECTS if self.given(s)]
        ops = [o for o in VALUE_OPS if self.given(o)]
        if len(subjects) != 1:
            found = f" (found {', '.join(subjects)})" if subjects else ""
            raise ValueError(f"each check needs exactly one of {', '.join(SUBJECTS)}{found}")
        subject = subjects[0]
        if subject in ("status", "response_time_ms", "body_size", "json_schema") and ops:
            raise ValueError(
                f"{', '.join(ops)} cannot sit beside {subject}; write e.g. {subject}: {{lt: 500}}"
                if subject != "json_schema"
                else f"{', '.join(ops)} cannot be combined with json_schema"
            )
        if self.given("group") and subject != "regex":
            raise ValueError("group only applies to regex")
        if self.given("eq") and self.given("equals"):
            raise ValueError("give eq or equals, not both")
        if self.regex is not None and self.group is not None:
            _check_group(self.regex, self.group)
        return self

    @property
    def subject(self) -> str:
        return next(s for s in SUBJECTS if self.given(s))


class Capture(Model):
    """Where a variable's value comes from in a response."""

    jsonpath: JsonPath | None = None
    regex: Regex | None = None
    header: str | None = Field(None, min_length=1)
    cookie: str | None = Field(None, min_length=1)
    group: int | str | None = Field(
        None, description="regex group (default: 1 if any, else the match)"
    )
    secret: bool = Field(False, description="redact the captured value in results and logs")
    default: Any = Field(None, description="used when nothing is found (otherwise the step fails)")

    @model_validator(mode="after")
    def _one(self) -> Capture:
        sources = [s for s in ("jsonpath", "regex", "header", "cookie") if self.given(s)]
        if len(sources) != 1:
            raise ValueError("a capture needs exactly one of jsonpath, regex, header, cookie")
        if self.given("group") and self.regex is None:
            raise ValueError("group only applies to regex")
        if self.regex is not None and self.group is not None:
            _check_group(self.regex, self.group)
        return self


def _capture_shorthand(value: Any) -> Any:
    # ``token: $.token`` is the common case; spell it out for the model.
    if isinstance(value, dict):
        return {k: {"jsonpath": v} if isinstance(v, str) else v for k, v in value.items()}
    return value


VarName = Annotated[str, AfterValidator(_check_var)]


class BasicAuth(Model):
    username: str
    password: str


class Auth(Model):
    """HTTP authentication: exactly one of basic or bearer (both may use templates)."""

    basic: BasicAuth | None = None
    bearer: HeaderValue | None = Field(
        None, min_length=1, description="token sent as 'Authorization: Bearer'"
    )

    @model_validator(mode="after")
    def _one(self) -> Auth:
        if (self.basic is None) == (self.bearer is None):
            raise ValueError("give exactly one of basic or bearer")
        return self


class Retry(Model):
    """Retries of one request with exponential backoff and jitter; each attempt is recorded."""

    attempts: int = Field(3, ge=1, le=10, description="total attempts, including the first")
    # Not ``on``: YAML 1.1 reads a bare ``on`` key as the boolean true.
    when: list[
        Annotated[
            RetryOn, BeforeValidator(_code_text, json_schema_input_type=RetryOn | Literal[429])
        ]
    ] = Field(
        default_factory=lambda: list(RETRY_CONDITIONS), min_length=1, description="retry on these"
    )
    backoff: Number = Field(0.2, ge=0, le=60, description="seconds before the 2nd attempt; doubles")
    max_backoff: Number = Field(5.0, ge=0, le=300, description="cap on one wait, seconds")


RedirectPolicyName = Literal["same-origin", "any", "none"]


def _redirect_policy(value: Any) -> Any:
    # true/false were the first spelling: true followed redirects, false did not.
    if value is True:
        return "same-origin"
    if value is False:
        return "none"
    return value


RedirectPolicy = Annotated[
    RedirectPolicyName,
    BeforeValidator(_redirect_policy, json_schema_input_type=RedirectPolicyName | bool),
]

_METHOD = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
_METHOD_ANY_CASE = Literal[
    "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS",
    "get", "post", "put", "patch", "delete", "head", "options",
]  # fmt: skip
Method = Annotated[_METHOD, BeforeValidator(_upper, json_schema_input_type=_METHOD_ANY_CASE)]
QueryValue = str | int | float | bool


class Step(Model):
    """One HTTP request of a transaction, its checks and what it captures."""

    name: SafeName | None = None
    method: Method
    url: str = Field(min_length=1, description="relative to the target, or absolute")
    query: dict[str, QueryValue | list[QueryValue]] = Field(default_factory=dict)
    headers: Headers = Field(default_factory=dict)
    auth: Auth | None = None
    payload_type: Literal["json", "form", "xml", "raw"] | None = None
    payload: Any = Field(
        None, description="mapping/list → JSON; form: mapping of strings; xml/raw: string"
    )
    expected_response_code: Codes | None = None
    response_validation: list[Assertion] = Field(default_factory=list)
    capture: Annotated[
        dict[VarName, Capture],
        BeforeValidator(_capture_shorthand, json_schema_input_type=dict[str, Capture | str]),
    ] = Field(default_factory=dict)
    timeout: Number | None = Field(None, gt=0, le=MAX_TIMEOUT_S, description="seconds")
    retry: Retry | None = None
    delay: Number = Field(0.0, ge=0, le=MAX_TIMEOUT_S, description="seconds to wait before sending")
    follow_redirects: RedirectPolicy = Field(
        "same-origin",
        description="same-origin (default; true means the same): a redirect elsewhere fails the "
        "step; any: follow, sending nothing from the definition to another origin; none (false)",
    )

    @field_validator("payload")
    @classmethod
    def _payload(cls, v: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("payload_type")
        if v is None:
            return v
        if kind == "form":
            if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
                raise ValueError('a form payload is a mapping of strings (quote numbers: "5")')
        elif kind in ("xml", "raw") and not isinstance(v, str):
            raise ValueError(f"a {kind} payload is a string")
        try:
            json.dumps(v, allow_nan=False)
        except (TypeError, ValueError):
            raise ValueError(
                "payload must be plain data (strings, numbers, lists, mappings)"
            ) from None
        return v

    def body_kind(self) -> str | None:
        """The payload type actually used: explicit, else json for data, raw for a string."""
        if self.payload is None:
            return None
        if self.payload_type:
            return self.payload_type
        return "raw" if isinstance(self.payload, str) else "json"

    def accepted(self, status: int) -> bool:
        codes = self.expected_response_code
        if codes is None:
            return 200 <= status <= 299
        return status in codes if isinstance(codes, list) else status == codes


class Include(Model):
    """Steps from another file (a mapping with ``steps``), relative to the including file."""

    include: str = Field(min_length=1)


def _step_or_include(value: Any) -> str:
    return "<include>" if isinstance(value, dict) and "include" in value else "<step>"


StepOrInclude = Annotated[
    Annotated[Step, Tag("<step>")] | Annotated[Include, Tag("<include>")],
    Discriminator(_step_or_include),
]


class TransactionBase(Model):
    transaction_name: SafeName = Field(
        max_length=128, description=f"unique identifier: {NAME_CHARS}"
    )
    description: str | None = None
    entrypoint_url: str = Field(min_length=1, description="GET first; must answer below 400")
    sla_success_threshold: Number = Field(DEFAULT_SLA, gt=0, le=100, description="percent")
    error_budget: int = Field(DEFAULT_ERROR_BUDGET, ge=0)
    variables: dict[VarName, Any] = Field(default_factory=dict, description="initial variables")
    headers: Headers = Field(default_factory=dict, description="sent with every request")
    auth: Auth | None = None
    timeout: Number = Field(DEFAULT_TIMEOUT_S, gt=0, le=MAX_TIMEOUT_S, description="per request, s")
    retry: Retry | None = Field(None, description="default retry policy of every request")
    verify_tls: bool = Field(True, description="false accepts self-signed certificates")

    @field_validator("entrypoint_url")
    @classmethod
    def _entrypoint(cls, v: str) -> str:
        if not (v.startswith(("http://", "https://", "/")) or "{{" in v):
            raise ValueError("must be an absolute http(s) URL or a path starting with '/'")
        return v

    @property
    def name(self) -> str:
        return self.transaction_name


class TransactionFile(TransactionBase):
    """A definition as written in a file: steps may include shared step files."""

    steps: list[StepOrInclude] = Field(min_length=1)
    finally_: list[StepOrInclude] = Field(
        default_factory=list, alias="finally", description="teardown steps that always run"
    )


class StepsFile(Model):
    """A shared step file pulled in by ``include``."""

    description: str | None = None
    steps: list[StepOrInclude] = Field(min_length=1)


class Transaction(TransactionBase):
    """A loaded definition, includes expanded: what workers receive and run."""

    steps: list[Step] = Field(min_length=1)
    finally_: list[Step] = Field(default_factory=list, alias="finally")
