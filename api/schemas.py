"""The request bodies the HTTP API accepts: pydantic models whose limits are the API's
first line of defence (a 422 naming the field, never a 500 further in)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from ..retriever.search import Filters

Question = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]
Mode = Literal["bm25", "dense", "hybrid"]


class FiltersIn(BaseModel):
    """Document metadata filters; all given ones must hold."""

    model_config = ConfigDict(extra="forbid")
    path_prefix: str | None = Field(None, max_length=4096,
                                    description="only documents whose path starts with this")
    title: str | None = Field(None, max_length=1000, description="only documents with this title")
    tags: list[Annotated[str, StringConstraints(max_length=200)]] = Field(
        default_factory=list, max_length=50, description="only documents with all these tags")

    @field_validator("path_prefix", "title")
    @classmethod
    def _no_nul(cls, value: str | None) -> str | None:
        if value is not None and "\x00" in value:
            raise ValueError("must not contain NUL characters")
        return value

    def to_filters(self) -> Filters | None:
        filters = Filters(path_prefix=self.path_prefix or None, title=self.title or None,
                          tags=tuple(t for t in self.tags if t))
        return filters or None


class AskIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: Question = Field(description="1 to 1000 characters (after stripping spaces)")
    top_k: int = Field(3, ge=1, le=20, strict=True, description="answers to return")
    retrieval_k: int | None = Field(None, ge=1, le=100, strict=True,
                                    description="passages to read (default: the server's)")
    mode: Mode | None = Field(None, description="retrieval mode (default: the server's)")
    filters: FiltersIn | None = None


class SearchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: Question
    top_k: int = Field(10, ge=1, le=100, strict=True)
    mode: Mode | None = None
    filters: FiltersIn | None = None


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: Question
    answer: str = Field(min_length=1, max_length=2000, description="the answer shown")
    passage_id: str = Field(min_length=1, max_length=200)
    start: int = Field(ge=0, strict=True, description="answer offsets in the passage text")
    end: int = Field(ge=1, strict=True)
    correct: bool = Field(strict=True)
    comment: str | None = Field(None, max_length=5000)

    @model_validator(mode="after")
    def _span(self) -> FeedbackIn:
        if self.end <= self.start:
            raise ValueError("end must be greater than start")
        return self
