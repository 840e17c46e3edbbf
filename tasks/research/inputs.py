"""What a research job takes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_QUESTION = 2000


class ResearchInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    question: str = Field(min_length=1, max_length=MAX_QUESTION, description="The research question.")
    max_steps: int = Field(40, ge=4, le=1000, description="Step budget: reasoning and tool steps together.")
    corpus: str = Field("stdlib", min_length=1, max_length=200, description="Which corpus to research.")
    notify_url: str | None = Field(None, max_length=4096, description="Webhook told when the report is ready.")
    approve: bool = Field(False, description="publish_report and notify wait for `steplog approve` first.")

    @field_validator("question")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v.strip()
