"""What the API shows of a batch (``/v1/batches``): the views the routes answer with and the client reads."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gen_server.contract import examples
from gen_server.contract.result import JobError

ItemState = Literal["pending", "queued", "running", "succeeded", "failed", "cancelled"]
"""A batch item's state: ``pending`` until its job is queued, then its job's state."""

BatchState = Literal["running", "succeeded", "failed", "cancelled"]


class BatchItemView(BaseModel):
    """One file of a batch: its item (line in the file), variation, job and state."""

    model_config = ConfigDict(json_schema_extra={"examples": [examples.BATCH_ITEM]})

    item_id: str
    line: int
    index: int
    name: str
    variation: int
    seed: int
    file: str
    job_id: str | None = None
    state: ItemState
    error: JobError | None = None


class BatchView(BaseModel):
    """A batch as the API shows it; ``state`` is ``failed`` when it ended with any job failed."""

    model_config = ConfigDict(json_schema_extra={"examples": [examples.BATCH_VIEW]})

    id: str
    name: str
    source: str
    created_at: float
    state: BatchState
    total: int
    counts: dict[str, int]
    items: list[BatchItemView] = Field(default_factory=list)
    links: dict[str, str] = Field(default_factory=dict)


class BatchSummaryView(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [examples.BATCH_SUMMARY]})

    id: str
    name: str
    source: str
    created_at: float
    total: int
    links: dict[str, str] = Field(default_factory=dict)
