import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Serve a simulated Dynamics 365 organization and its Entra ID tenant over HTTPS with a "
        "certificate from a local CA (the dataverse_sim package). It prints its organization "
        "URI, authority host, tenant, client id and secret, CA file, control URL and token; "
        "--info-file also writes them as one JSON object (organization_uri, authority_host, "
        "tenant_id, client_id, client_secret, ca_bundle, control_url, control_token). "
        "The control API (loopback only, 'Authorization: Bearer <control token>') under "
        "<control URL>/: users (POST; GET/PATCH/DELETE users/<id>; POST users/<id>/disable or "
        "/enable), throttling (PUT limits), faults (POST: 429/500/503 with Retry-After, reset "
        "connections, slow answers, truncated or malformed JSON, for the next N requests), "
        "tokens/expire, secret/rotate|revoke|expire, certificates, privileges (PUT "
        '{"table": "systemuser", "read": false}), clock/advance, requests (the log), reset. '
        "`python -m dataverse_sim --help` details each one."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8443)
        parser.add_argument("--users", type=int, default=250)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--info-file", default=None)
        parser.add_argument(
            "--state-dir",
            default=None,
            help="Where its CA and keys live (default: <data dir>/simulator).",
        )

    def handle(self, *args, host, port, users, seed, info_file, state_dir, **options):
        argv = [
            sys.executable,
            "-m",
            "dataverse_sim",
            "--host",
            host,
            "--port",
            str(port),
            "--users",
            str(users),
            "--seed",
            str(seed),
            "--state-dir",
            state_dir or str(settings.DATA_DIR / "simulator"),
        ]
        if info_file:
            argv += ["--info-file", info_file]
        sys.stdout.flush()
        # The simulator is a separate program; the product never imports it.
        os.execv(sys.executable, argv)
