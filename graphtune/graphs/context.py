"""Runtime settings of the controller (``context_schema``): where things are stored, which model, how hard to search.

Nothing here is state: the run's results live in ``ControllerState``. Every field has a default
from the environment, so ``langgraph dev`` and the CLI need no arguments; the LangGraph server's
``context=`` and the CLI's options override them per run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable


def current_thread_id() -> str:
    """The LangGraph thread of the running node ("" outside a thread)."""
    from langgraph.config import get_config

    try:
        return str(get_config().get("configurable", {}).get("thread_id") or "")
    except RuntimeError:
        return ""


@dataclass(frozen=True)
class Caller:
    """Who started or resumed this run, as the LangGraph server's auth handler established it."""

    identity: str
    permissions: tuple[str, ...]

    @property
    def verified(self) -> bool:
        """False when the server runs with auth explicitly off (a laptop): the identity proves nothing."""
        from graphtune.graphs.access import AUTH_OFF

        return AUTH_OFF not in self.permissions

    def may(self, role: str) -> bool:
        return role in self.permissions


def authenticated_caller() -> Caller | None:
    """The server-authenticated caller of the running node; None outside the server (CLI, tests).

    The server writes ``langgraph_auth_user_id`` and ``langgraph_auth_permissions`` into the run's
    configurable itself and refuses them from clients, so a request cannot claim someone else's name.
    """
    from langgraph.config import get_config

    try:
        configurable = get_config().get("configurable", {})
    except RuntimeError:
        return None
    identity = configurable.get("langgraph_auth_user_id")
    if not identity:
        return None
    return Caller(identity=str(identity), permissions=tuple(configurable.get("langgraph_auth_permissions") or ()))


class WriteRefused(PermissionError):
    """The run's caller may not make this write; the message names who, what and the role it needs."""

    def ends_branch(self, node: str):
        """What a node returns instead of writing: this branch of the run ends, with a message and nothing else.

        Such a run usually arrives with ``Command(goto=...)`` while the thread still waits at its
        approval; that wait must stay intact for the approver's answer, so nothing but a message
        (``messages`` merges concurrent writes) is written beside it."""
        import logging

        from langchain_core.messages import AIMessage
        from langgraph.types import Command

        logging.getLogger("graphtune.controller").warning("refused on thread %s: %s", current_thread_id(), self)
        return Command(update={"messages": [AIMessage(f"Nothing changed: {self}.", name=node)]})


def actor_for(role: str, what: str, claimed: str) -> str:
    """The name a write (promotion, rejection, split, approval) is recorded under, checked as it happens.

    On a LangGraph server with auth this is the run's authenticated caller, who must hold ``role``:
    whoever parked or edited the state, the approver named there (``claimed``) counts for nothing, so
    a copied thread, an injected state update or a replayed checkpoint cannot write in someone else's
    name. ``claimed`` is used only where nobody is authenticated: auth explicitly off, or outside a
    server (the CLI acts for the local user). A served run without a caller is refused when the server
    requires tokens.
    """
    from graphtune.graphs.access import served_policy

    caller = authenticated_caller()
    policy = served_policy()
    tokens_required = policy is not None and policy.mode == "tokens"
    if caller is None:
        if tokens_required:
            raise WriteRefused(f"this run may not {what}: it has no authenticated caller, and that needs the {role} role")
        return claimed
    if not caller.verified and not tokens_required:
        return claimed
    if not caller.may(role):
        roles = ", ".join(p for p in caller.permissions if p in ("approver", "operator")) or "none"
        raise WriteRefused(f"{caller.identity} may not {what}: that needs the {role} role (theirs: {roles})")
    return caller.identity


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


@dataclass
class ControllerContext:
    # storage (DESIGN.md: one URL holds everything; traces may live elsewhere)
    database_url: str | None = field(default_factory=lambda: _env("GRAPHTUNE_DATABASE_URL"))
    traces_url: str | None = field(default_factory=lambda: _env("GRAPHTUNE_TRACES_URL"))
    # specs: name -> spec file, beside the bundled ones; a request may also name a spec file directly
    specs: dict[str, str] = field(default_factory=dict)
    # the run's models: the controller's own (intake, proposer, judge) and graphtune's own workflows'
    # (eval examples of the bundled example); None = GRAPHTUNE_MODEL, and offline when unset
    model: str | None = field(default_factory=lambda: _env("GRAPHTUNE_MODEL"))  # provider:model or an OpenAI-compatible name
    base_url: str | None = field(default_factory=lambda: _env("OPENAI_BASE_URL"))
    temperature: float = 0.2
    rate_limit: float | None = None  # model requests per second, shared by every call; None = the spec's rate_limit
    # search
    batch_size: int = 2  # two per round reached a good config in fewer example runs than four (benchmarks/tuning_efficiency.py); a batch of two does not race
    max_proposal_retries: int = 2
    eval_limit: int | None = None  # examples per candidate; None = the whole dataset
    concurrency: int | None = None  # one limit shared by every parallel eval; None = the spec's
    check_every: int = 10  # early-stopping check after this many fresh results
    race: bool = True  # candidates of a batch of three or more race (successive halving); False evaluates each fully
    seed: int = 0
    observe_window: str | None = None  # None = the spec's observe.window
    experiment_share: float = 0.1  # live traffic a candidate gets when the approver answers "experiment"
    actor: str | None = field(default_factory=lambda: _env("GRAPHTUNE_ACTOR"))  # who answers where nobody is authenticated; None = the OS user
    # tests and benchmarks plug in here; the product leaves them unset
    chat_model_factory: Callable[[], Any] | None = None  # builds the controller's chat model
    runner_factory: Callable[..., Any] | None = None  # builds an EvalRunner-compatible object for a spec

    def __post_init__(self) -> None:
        share = self.experiment_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 < share < 1.0:
            # 1.0 would turn an approver's "experiment" into a promotion they did not choose
            raise ValueError(f"context.experiment_share: expected a share of live traffic between 0 and 1 "
                             f"(both excluded), e.g. 0.1; got {share!r}")

    def has_model(self) -> bool:
        return self.chat_model_factory is not None or bool(self.model)

    def model_settings(self, spec=None):
        """What every model of this run is built with: this context's model, base URL and pace over the
        spec's ``rate_limit`` and the environment."""
        from graphtune.llm import ModelSettings

        return ModelSettings.for_run(model=self.model, base_url=self.base_url, requests_per_s=self.rate_limit, spec=spec)

    def workflow_has_model(self, spec=None) -> bool:
        """Whether graphtune's own workflows answer with a model in this run (tunables that need one count)."""
        return self.model_settings(spec).model is not None

    def build_chat_model(self, spec=None, **kwargs: Any):
        """The controller's chat model, built lazily inside a node (never at import)."""
        if self.chat_model_factory is not None:
            return self.chat_model_factory()
        from graphtune.llm import chat_model

        return chat_model(self.model, settings=self.model_settings(spec), **{"temperature": self.temperature, **kwargs})

    # -- stores, opened per use; call these through asyncio.to_thread from async nodes ---------
    def resolved_traces_url(self) -> str:
        from graphtune.backends.traces import traces_url_from_env

        return self.traces_url or self.database_url or traces_url_from_env()

    def resolved_database_url(self) -> str:
        from graphtune.backends.config_store import database_url_from_env

        return self.database_url or database_url_from_env()

    def trace_store(self):
        from graphtune.backends.traces import open_trace_store

        return open_trace_store(self.resolved_traces_url())

    def config_store(self):
        from graphtune.backends.config_store import open_config_store

        return open_config_store(self.resolved_database_url())

    def eval_cache(self):
        from graphtune.backends.eval_cache import open_eval_cache

        return open_eval_cache(self.resolved_database_url())

    def spec_source(self, name_or_path: str) -> str:
        """A spec name registered in ``specs`` resolves to its file; anything else is passed to load_spec."""
        return self.specs.get(name_or_path, name_or_path)
