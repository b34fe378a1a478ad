"""Command line entry point: ``python -m dataverse_sim``."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from .routing import Latency
from .server import Simulator

CONTROL_HELP = """\
control API (same server, loopback clients only, header "Authorization: Bearer <control token>",
JSON bodies):
  GET    /_control/info                    connection details, user count, clock
  POST   /_control/users                   create a user from systemuser columns, e.g.
                                           {"firstname": "Ada", "lastname": "Lovelace",
                                            "internalemailaddress": "ada@contoso.com"}
                                           -> 201 {"systemuserid": "...", "user": {...}}
  GET    /_control/users/<id>              the full record
  PATCH  /_control/users/<id>              change columns (bumps versionnumber, modifiedon)
  POST   /_control/users/<id>/disable      isdisabled = true (also /enable)
  POST   /_control/users/<id>/entra        the person's account in the Entra tenant, apart
                                           from Dynamics: {"account": "enabled"|"disabled"|
                                           "unknown"} (unknown = no longer in the tenant)
                                           -> 200 {"systemuserid": "...", "account": "..."}
                                           (GET: the current state; 404 for an unknown id;
                                           reset makes every account enabled again).
                                           authorize with that person's login_hint redirects
                                           back with error=access_denied, state kept, and
                                           error_description "AADSTS50057: The user account
                                           is disabled. Trace ID: ..." or "AADSTS50034: The
                                           user account <hint> does not exist in the <tenant
                                           domain> directory. To sign into this application,
                                           the account must be added to the directory. ...";
                                           the token endpoint refuses their codes and refresh
                                           tokens: 400 invalid_grant AADSTS50057 / AADSTS50034
  DELETE /_control/users/<id>              delete (reported by change tracking)
  PUT    /_control/privileges              {"table": "systemuser", "read": false}: the
                                           application user loses Read on the table (403)
  GET|PUT /_control/throttling             {"requests": 6000, "window_seconds": 300,
                                            "concurrency": 52, "execution_ms": 1200000}
  GET|PUT /_control/latency                {"per_request_ms": 400, "per_row_ms": 0.2}: every
                                           Web API response waits per_request_ms plus
                                           per_row_ms for each record it returns (Entra ID
                                           and the control API never wait); an omitted field
                                           keeps its value; 400 for another field or a value
                                           that is not a number in 0-600000 / 0-1000.
                                           DELETE: no latency; reset: the start-up values
  POST   /_control/faults                  fault for the next Web API requests:
                                           {"kind": "status", "status": 429|500|503,
                                            "count": N, "retry_after": S}
                                           {"kind": "reset"}  (connection reset)
                                           {"kind": "slow", "seconds": S}
                                           {"kind": "truncated"}  (body cut short)
                                           {"kind": "malformed"}  (invalid JSON body)
                                           {"kind": "redirect", "status": 301|302|303|307|308,
                                            "location": URL}  (default 307 to
                                            https://localhost:<port>/redirected<path>, which
                                            answers 404 but is logged)
                                           optional "count" and "path_contains" on every kind;
                                           a huge "count" (1000000000) lasts until DELETE
                                           "target": "entra" aims status (Entra's error shape;
                                           429 AADSTS90055 with Retry-After: retry_after or 1,
                                           500 AADSTS90033, 502-504 AADSTS90006), reset, slow,
                                           truncated, malformed and redirect at the discovery,
                                           keys, token and authorize endpoints instead
                                           ("target": "webapi" is the default); these kinds
                                           are Entra-only (target entra implied):
                                           {"kind": "discovery_elsewhere", "token_endpoint":
                                            URL}  (openid-configuration points token_endpoint
                                            and authorization_endpoint elsewhere, default
                                            https://localhost:<port>/<tenant>/oauth2/v2.0/token;
                                            the issuer stays)
                                           {"kind": "tenant_not_found"}  (400 AADSTS90002)
                                           {"kind": "app_disabled"}  (token requests: 400
                                            unauthorized_client AADSTS7000112)
                                           {"kind": "user_disabled"}  (authorization_code and
                                            refresh_token grants: 400 invalid_grant
                                            AADSTS50057)
                                           {"kind": "id_token", "claims": {"iss": "...",
                                            "nonce": null, ...}, "signature": "foreign",
                                            "times": N}  (authorization_code grants only: the
                                            next N ID tokens carry these claims over the real
                                            ones, null removes a claim; "signature": "foreign"
                                            signs with a key that is not in the JWKS, same
                                            kid; "times" = "count"; claims or signature is
                                            required, other fields are refused with 400)
                                           connection level: the next "count" new TCP
                                           connections, whatever they are for ("target" and
                                           "path_contains" are ignored; nothing is logged):
                                           {"kind": "refuse"}  (TCP reset before TLS)
                                           {"kind": "untrusted_certificate"}  (a certificate
                                            for the same host from a CA nobody trusts:
                                            CERTIFICATE_VERIFY_FAILED)
  GET|DELETE /_control/faults              list / clear pending faults
  POST   /_control/tokens/expire           every access token issued so far stops working
  POST   /_control/tokens                  mint a token {"audience": ..., "lifetime": S}
  POST   /_control/secret/rotate           new client secret {"keep_old": false}
                                           -> {"client_secret": "..."}
  POST   /_control/secret/revoke           no secret is valid any more (AADSTS7000215)
  POST   /_control/secret/expire           the secret is expired (AADSTS7000222)
  POST   /_control/certificates            {"certificate": "<PEM>"} accept client assertions
  POST   /_control/clock/advance           {"seconds": S} move the clock forward
  GET|DELETE /_control/requests            request log (method, path, host as sent, status,
                                           timestamp, kind, fault; for Entra and unrouted
                                           paths "credential": "client_secret",
                                           "client_assertion" or null, never the value)
  POST   /_control/reset                   back to the initial state (also forgets the
                                           webhook registrations and settings)
  POST   /_control/contacts                contact columns -> 201 {"contactid": "..."}
  PATCH  /_control/contacts/<id>           change columns of a contact
  GET    /_control/webhooks                {"serviceendpoints": [...],
                                            "sdkmessageprocessingsteps": [...],
                                            "settings": {...}} (authvalue never shown)
  PUT    /_control/webhooks/settings       {"retry_delay_seconds": 10, "timeout_seconds":
                                            60, "ca_bundle": "<PEM file>"}: the delay before
                                           the one retry after 502/503/504, the POST timeout,
                                           and the only CA trusted for https endpoints (none
                                           by default)
  PUT    /_control/webhooks/privileges     {"register": false}: the application user lacks
                                           prvCreateServiceEndpoint and
                                           prvCreateSdkMessageProcessingStep (POSTs answer 403
                                           0x80040220); {"deny": ["prvCreate..."]}: exactly
                                           these; {"register": true}: all granted again
  GET|DELETE /_control/webhooks/deliveries each POST made to an endpoint: url (no query),
                                           message, entity, record_id, attempt, status,
                                           error, statuscode (30 succeeded, 31 failed, 0
                                           retry pending)

webhooks: serviceendpoints (contract 8, authtype 4 WebhookKey -> ?code=<authvalue>, 5
HttpHeader / 6 HttpQueryString -> <settings><setting name= value= /></settings>) and
sdkmessageprocessingsteps (eventhandler_serviceendpoint@odata.bind, sdkmessageid@odata.bind,
sdkmessagefilterid@odata.bind, stage, mode, filteringattributes) are created, listed and
deleted through the Web API; sdkmessages and sdkmessagefilters can be read. When a user
(create, PATCH, disable, enable, delete) or a contact (create, PATCH) changes through the
control API, each matching step's endpoint gets a RemoteExecutionContext JSON POST from a
background thread, at once; 502/503/504 get exactly one retry, anything else non-2xx fails.
Outgoing https trusts no CA unless ca_bundle is set; plain http goes to loopback addresses
only (a simulator's relaxation: Dataverse requires port 443 or 80, which registration
enforces except on loopback).
"""

DESCRIPTION = """\
A local simulator of a Microsoft Dynamics 365 (Dataverse) organization and its Entra ID
tenant, served over HTTPS by one server:

  Entra ID    /<tenant>/v2.0/.well-known/openid-configuration, /<tenant>/discovery/v2.0/keys,
              POST /<tenant>/oauth2/v2.0/token (client credentials with a secret or a
              certificate, authorization code + PKCE, refresh tokens),
              /<tenant>/oauth2/v2.0/authorize
  Web API     /api/data/v9.2/ and /api/data/v8.2/: service document, WhoAmI,
              EntityDefinitions, systemusers, businessunits ($select, $filter, $orderby,
              $top, $count, paging cookies, change tracking)

The CA certificate to trust is written to the state directory (printed at start-up).

Latency: by default the simulator answers at once. --latency-per-request-ms and
--latency-per-row-ms (or PUT /_control/latency) make each Web API response wait a fixed time
plus a time per record it returns, as a model of a real organization (a page of 5,000 users
takes seconds there). Real figures vary by environment (region, tier, plug-ins, what the
query asks for) and by load: measure yours before relying on any.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dataverse_sim",
        description=DESCRIPTION,
        epilog=CONTROL_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8443, help="port (8443; 0 picks a free one)")
    parser.add_argument("--users", type=int, default=250, help="number of system users (250)")
    parser.add_argument("--seed", type=int, default=1, help="seed for the generated data (1)")
    parser.add_argument(
        "--state-dir",
        default="./data/simulator",
        help="directory for the CA, server certificate and signing key (./data/simulator)",
    )
    parser.add_argument(
        "--info-file",
        help="write the connection details as one JSON object to this file once listening",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=6000,
        help="service protection: requests per window per client (6000)",
    )
    parser.add_argument(
        "--window",
        type=float,
        default=300,
        help="service protection: sliding window in seconds (300)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=52,
        help="service protection: concurrent requests per client (52)",
    )
    parser.add_argument(
        "--no-change-tracking",
        action="store_true",
        help="report ChangeTrackingEnabled=false and refuse odata.track-changes",
    )
    parser.add_argument(
        "--latency-per-request-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="latency model: every Web API response waits MS milliseconds (0; e.g. 400)",
    )
    parser.add_argument(
        "--latency-per-row-ms",
        type=float,
        default=0.0,
        metavar="MS",
        help="latency model: and MS more per record it returns (0; e.g. 0.2). Real figures "
        "vary by environment and load",
    )
    args = parser.parse_args(argv)
    try:  # before generating the users
        Latency(args.latency_per_request_ms, args.latency_per_row_ms)
    except ValueError as exc:
        parser.error(str(exc))

    started = time.perf_counter()
    sim = Simulator(
        users=args.users,
        seed=args.seed,
        host=args.host,
        port=args.port,
        state_dir=args.state_dir,
        requests_per_window=args.requests,
        window_seconds=args.window,
        concurrency=args.concurrency,
        change_tracking=not args.no_change_tracking,
        latency_per_request_ms=args.latency_per_request_ms,
        latency_per_row_ms=args.latency_per_row_ms,
    )
    try:
        sim.start()
    except OSError as exc:
        print(f"dataverse_sim: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    info = sim.info
    if args.info_file:
        sim.write_info_file(args.info_file)
    elapsed = time.perf_counter() - started
    print(f"dataverse_sim ready in {elapsed:.1f}s with {sim.store.count_users()} users", flush=True)
    print(f"  organization URI : {info['organization_uri']}")
    print(f"  authority host   : {info['authority_host']}")
    print(f"  tenant           : {info['tenant_id']} ({sim.tenant_domain})")
    print(f"  client id        : {info['client_id']}")
    print(f"  client secret    : {info['client_secret']}")
    print(f"  CA file          : {info['ca_bundle']}")
    print(f"  control URL      : {info['control_url']}")
    print(f"  control token    : {info['control_token']}", flush=True)

    stop = threading.Event()

    def on_signal(signum, frame) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    while not stop.is_set():
        stop.wait(0.5)
    sim.stop()
    print("dataverse_sim stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
