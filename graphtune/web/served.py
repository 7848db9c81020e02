"""``http.app`` in langgraph.json: the web view inside the LangGraph server, behind the server's auth.

``enable_custom_route_auth`` makes the server authenticate every page request with graphtune's
auth handler (``graphtune/graphs/auth.py``) before the page runs; the page reads the caller from
the request and calls the server's own API with the caller's credentials, so every answer passes
the same authorization as an SDK call.
"""

from __future__ import annotations

from starlette.requests import Request

from graphtune.backends.config_store import database_url_from_env
from graphtune.backends.traces import traces_url_from_env
from graphtune.graphs.access import AUTH_OFF, load_policy, local_actor, served_policy
from graphtune.web.app import Backend, Viewer, create_app
from graphtune.web.threads import ServerThreads

FORWARDED = ("authorization", "x-api-key")  # the credentials an SDK call carries


def viewer_of(request: Request) -> Viewer:
    """The caller the server's auth middleware established. A server without auth on its custom
    routes passes requests through unauthenticated: then only a server with auth off shows pages."""
    user = request.scope.get("user")
    if user is not None and getattr(user, "is_authenticated", False):
        scopes = tuple(getattr(request.scope.get("auth"), "scopes", []) or [])
        if AUTH_OFF in scopes:  # the identity proves nothing: answers are recorded in the local actor's name
            return Viewer(local_actor(), scopes)
        return Viewer(getattr(user, "identity", None) or user.display_name, scopes)
    policy = served_policy() or load_policy()
    if policy.mode == "off":
        return Viewer(local_actor(), ("operator", "approver", AUTH_OFF))
    raise PermissionError("the web view needs the server's auth on its routes: set http.enable_custom_route_auth in langgraph.json")


def threads_for(request: Request, viewer: Viewer) -> ServerThreads:
    headers = {name: request.headers[name] for name in FORWARDED if name in request.headers}
    return ServerThreads(str(request.base_url).rstrip("/"), headers)


app = create_app(Backend(threads_for=threads_for, database_url=database_url_from_env, traces_url=traces_url_from_env,
                         viewer_of=viewer_of))
