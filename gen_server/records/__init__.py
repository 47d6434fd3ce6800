"""Soundry's records in Redis: every key name (:mod:`.keys`) and the job record (:mod:`.jobs`).

The API and the workers share these and nothing else about Redis' layout: a key is built only by
:mod:`gen_server.records.keys`, and a job's state changes only through :mod:`gen_server.records.jobs`.
"""
