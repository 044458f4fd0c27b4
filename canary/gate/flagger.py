"""``POST /v1/flagger/{hook}``: Flagger's webhook payload in, the status code Flagger acts on out.

Flagger counts any non-2xx answer of a pre-rollout, rollout or confirm-promotion hook as a
failed check, and rolls back when a rollback hook answers 2xx (specs/gate.md has the table).
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from canary.errors import ConfigError
from canary.gate.analyses import AnalysisRequest
from canary.gate.verdict import Verdict

Hook = Literal["pre-rollout", "rollout", "confirm-promotion", "rollback"]
HOOKS: tuple[str, ...] = get_args(Hook)
# Flagger >= 1.x sends more fields over time; only these are read, the rest are ignored.
REQUIRED_METADATA = ("stable_url", "canary_url", "transactions")


class FlaggerPayload(BaseModel):
    """Flagger's webhook body: ``{name, namespace, phase, checksum, metadata}``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1, max_length=253)
    namespace: str = Field(min_length=1, max_length=253)
    phase: str = ""
    checksum: str = Field(min_length=1, max_length=128)
    metadata: dict[str, str] = Field(default_factory=dict)

    def request(self) -> AnalysisRequest:
        missing = [k for k in REQUIRED_METADATA if not self.metadata.get(k, "").strip()]
        if missing:
            raise ConfigError(
                "\n".join(f"metadata.{k}: is required (in the webhook's metadata)" for k in missing)
            )
        names = tuple(t.strip() for t in self.metadata["transactions"].split(",") if t.strip())
        return AnalysisRequest(
            key=f"flagger\0{self.namespace}\0{self.name}\0{self.checksum}",
            name=f"{self.namespace}-{self.name}",
            service=self.metadata.get("service") or self.name,
            stable_url=self.metadata["stable_url"].strip(),
            canary_url=self.metadata["canary_url"].strip(),
            transactions=names,
        )


def status_for(hook: str, verdict: Verdict | None) -> int:
    """The HTTP status Flagger reads for ``hook`` given the analysis (None: never started)."""
    if hook == "rollback":
        return 200 if verdict is not None and verdict.verdict == "fail" else 404
    assert verdict is not None, "every hook but rollback starts the analysis"
    if verdict.verdict == "fail":
        return 403
    if hook == "pre-rollout":
        # Still checking: not a pass; Flagger tries again at its next interval.
        return 200 if verdict.isolated == "passed" else 425
    if hook == "confirm-promotion":
        return 200 if verdict.verdict == "pass" else 425
    return 200
