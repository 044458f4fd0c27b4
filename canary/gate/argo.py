"""``POST /v1/verdicts``: the start-or-poll body of Argo Rollouts' ``web`` metric provider."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from canary.gate.analyses import AnalysisRequest
from canary.rollout.config import SLOSpec


class VerdictBody(BaseModel):
    """The request body (specs/gate.md); unknown fields are refused, so typos are not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=253)
    service: str | None = Field(default=None, min_length=1, max_length=63)
    stable_url: str
    canary_url: str
    transactions: list[str] = Field(min_length=1, max_length=50)
    slo: SLOSpec | None = None

    @field_validator("transactions", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        # Template args are strings: "a.yaml,b.yaml" is accepted as well as a JSON list.
        if isinstance(v, str):
            return [part.strip() for part in v.split(",") if part.strip()]
        return v

    def request(self) -> AnalysisRequest:
        return AnalysisRequest(
            key=f"verdicts\0{self.name}",
            name=self.name,
            service=self.service,
            stable_url=self.stable_url,
            canary_url=self.canary_url,
            transactions=tuple(self.transactions),
            slo=self.slo,
        )
