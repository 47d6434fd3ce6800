"""The contract: the schemas of what crosses Soundry's boundaries (HTTP, the queue, Redis), torch-free.

API, UI, batch runner and workers all use these; nothing here talks to Redis or storage or loads weights.

- :mod:`~gen_server.contract.spec`: job requests (input) and job specs (what travels on the queue),
  with :func:`~gen_server.contract.spec.build_spec`, the catalog rules turning one into the other.
- :mod:`~gen_server.contract.result`: job results, errors and views; the API's error response.
- :mod:`~gen_server.contract.scene`: scene requests, plans and views (planning a scene is
  :mod:`gen_server.scene_plan`).
- :mod:`~gen_server.contract.catalog`: the model catalog (plain data).
- :mod:`~gen_server.contract.examples`: the OpenAPI examples of the models above.
"""
