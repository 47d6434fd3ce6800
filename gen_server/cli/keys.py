"""``soundry keys create|list|revoke``: API keys, stored hashed in the data folder."""

from __future__ import annotations

import argparse
import sys

from gen_server.settings import Settings


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    """Create, list or revoke API keys (stored hashed in the data folder)."""
    from gen_server.auth import KeyStore, keys_path

    store = KeyStore(keys_path(settings.data_dir))
    if args.keys_cmd == "create":
        secret, record = store.create(
            args.name, admin=args.admin, rate_per_min=args.rate, max_concurrent_jobs=args.max_jobs
        )
        print(f"created key {record.id} ({record.name}{', admin' if record.admin else ''}); shown once:")
        print(secret)
    elif args.keys_cmd == "list":
        for k in store.all():
            print(
                f"{k.id}  {k.name:20} admin={k.admin} rate={k.rate_per_min}/min jobs={k.max_concurrent_jobs}"
            )
    elif args.keys_cmd == "revoke":
        if not store.revoke(args.key_id):
            print(f"soundry: no key with id {args.key_id}", file=sys.stderr)
            return 1
        print(f"revoked {args.key_id}")
    return 0
