"""/v1/scenes: one request, a finished mix of speech, music and sound effects.

Validation errors of these routes name the item the way users write it, e.g.
``{"error": {"code": "invalid_input", "field": "tracks[1].items[0].start_s", "message": ...}}``.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from fastapi.routing import APIRoute

from gen_server.contract import examples
from gen_server.contract.scene import SceneRequest, SceneView
from gen_server.deps import caller, jobs_of
from gen_server.files import iter_chunks
from gen_server.jobs import Caller
from gen_server.scene_plan import validation_error
from gen_server.scenes import SceneService


class SceneRoute(APIRoute):
    """Turns request validation errors into the item-naming 422 of :func:`validation_error`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                raise validation_error(exc.errors(), exc.body) from exc

        return route


async def scene_service(request: Request) -> SceneService:
    return SceneService(jobs_of(request))


router = APIRouter(prefix="/v1/scenes", tags=["scenes"], route_class=SceneRoute)

Service = Annotated[SceneService, Depends(scene_service)]
Who = Annotated[Caller, Depends(caller)]
SceneId = Annotated[str, Path(description="The scene's id (its mix's job id)", examples=[examples.SCENE_ID])]


@router.post("", status_code=202, response_model=SceneView, summary="Queue a scene (a mixed track)")
def submit_scene(
    req: SceneRequest,
    service: Service,
    who: Who,
    idempotency_key: Annotated[
        str | None, Header(max_length=200, description="A repeat returns the same scene", examples=["ep42"])
    ] = None,
) -> SceneView:
    """Validate the timeline, queue every item as its own job (in parallel) and the mix after them.

    The answer is the scene's view: its id (also the id of the mixed track's job, so
    ``/v1/jobs/{id}/audio`` works once it succeeded) and each component's job id.
    """
    return service.submit(req, who, idempotency_key=idempotency_key)


@router.get("/{scene_id}", response_model=SceneView, summary="A scene's state, components and result")
def get_scene(scene_id: SceneId, service: Service, who: Who) -> SceneView:
    return service.get(scene_id, who)


@router.get(
    "/{scene_id}/export",
    summary="A scene's export: mix, stems, captions and editable timelines in one zip",
    response_class=StreamingResponse,
    responses={
        200: {"content": examples.binary("application/zip")},
        409: {"description": "The scene has not succeeded, or was made without export: true"},
    },
)
def scene_export(
    scene_id: SceneId,
    service: Service,
    who: Who,
    format: Annotated[
        Literal["zip"], Query(description="Bundle format (only zip)", examples=["zip"])
    ] = "zip",
) -> StreamingResponse:
    """The bundle of a scene submitted with ``export: true``, unpacking into one folder::

        <name>/mix.<fmt>                    the finished mix (as GET /v1/jobs/{id}/audio)
        <name>/stems/01-<track>.<fmt>       one per track: the mix's length and format, watermarked;
                                            item gains, pans, fades and ducking baked in
        <name>/captions.vtt, captions.srt   when the scene has speech
        <name>/timeline.otio                OpenTimelineIO: a clip per item on its stem, gains in metadata
        <name>/project.rpp                  Reaper: the stems at their track gains, the master gain
        <name>/manifest.json                components, levels, every file's sha256

    Both timelines play the stems at their track gains and the master gain; summed, that is the mix
    before mastering, brought to the scene's loudness target (the master's limiter, when it had to
    limit, is not in them).
    """
    spool, filename = service.export(scene_id, who)
    return StreamingResponse(
        iter_chunks(spool),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@router.delete(
    "/{scene_id}", response_model=SceneView, summary="Cancel a scene and its unfinished components"
)
def cancel_scene(scene_id: SceneId, service: Service, who: Who) -> SceneView:
    return service.cancel(scene_id, who)
