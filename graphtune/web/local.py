"""``graphtune ui``: the web view on a local database, without a LangGraph server.

The same token policy as the server (``graphtune.graphs.access``: ``GRAPHTUNE_AUTH``, token file)
guards every page; with auth off (a laptop) the approver recorded is ``GRAPHTUNE_ACTOR`` or the OS
user (``access.local_actor``), as for ``graphtune approve``. The controller runs in this process on the database's checkpoints.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, AuthenticationError, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse

from graphtune.graphs import access
from graphtune.web.app import Backend, Viewer, create_app
from graphtune.web.threads import LocalThreads


class TokenBackend(AuthenticationBackend):
    """Starlette authentication by graphtune's access policy (bearer tokens, or auth off)."""

    def __init__(self, policy: access.AccessPolicy):
        self.policy = policy

    async def authenticate(self, conn: HTTPConnection):
        try:
            principal = self.policy.authenticate(conn.headers.get("authorization"))
        except access.AuthenticationError as error:
            raise AuthenticationError(str(error)) from None
        identity = access.local_actor() if self.policy.mode == "off" else principal.identity
        return AuthCredentials(list(principal.permissions)), SimpleUser(identity)


def create_local_app(database_url: str, policy: access.AccessPolicy | None = None) -> Starlette:
    policy = policy or access.load_policy()

    def viewer_of(request: Request) -> Viewer:
        return Viewer(request.user.display_name, tuple(request.auth.scopes))

    def threads_for(request: Request, viewer: Viewer) -> LocalThreads:
        return LocalThreads(database_url, actor=viewer.identity)

    traces_url = os.environ.get("GRAPHTUNE_TRACES_URL") or database_url  # traces may live elsewhere (DESIGN.md)
    backend = Backend(threads_for=threads_for, database_url=lambda: database_url, traces_url=lambda: traces_url,
                      viewer_of=viewer_of)
    refuse = lambda conn, error: PlainTextResponse(f"401: {error}", status_code=401,  # noqa: E731
                                                   headers={"WWW-Authenticate": "Bearer"})
    return create_app(backend, middleware=[Middleware(AuthenticationMiddleware, backend=TokenBackend(policy), on_error=refuse)])
