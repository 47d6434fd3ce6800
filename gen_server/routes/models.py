"""/v1/models: the catalog."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from gen_server.contract import examples
from gen_server.contract.catalog import Catalog, ModelEntry, ModelView
from gen_server.deps import catalog

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get(
    "",
    summary="Every model this server offers, with licence and capabilities",
    responses={200: {"content": examples.json_example(examples.MODEL_LIST)}},
)
def list_models(cat: Annotated[Catalog, Depends(catalog)]) -> dict[str, Any]:
    """OpenAI-style list (``object: list``) whose items carry Soundry's catalog fields.

    ``default: true`` marks the model a request of that kind gets when it names none (the catalog's
    one rule, :meth:`Catalog.default_for`); clients such as the web UI start on it.
    """
    defaults = {cat.default_for(kind).id for kind in {k for e in cat for k in (e.kind, *e.other_kinds)}}
    views = [ModelView(**e.model_dump(), owned_by=e.family, default=e.id in defaults) for e in cat]
    return {"object": "list", "data": [v.model_dump(mode="json") for v in views]}


@router.get("/{model_id}", response_model=ModelEntry, summary="One catalog entry")
def get_model(
    model_id: Annotated[str, Path(description="Catalog id", examples=["musicgen-small"])],
    cat: Annotated[Catalog, Depends(catalog)],
) -> ModelEntry:
    return cat.get(model_id, field="model_id")
