"""What the API shows of an uploaded reference clip (``POST /v1/uploads``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from gen_server.contract import examples


class UploadView(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [examples.UPLOAD_VIEW]})

    id: str
    duration_s: float
    sample_rate: int
    channels: int
