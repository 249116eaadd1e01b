"""Rule work waits for the commit of the transaction that caused it, per database alias.

Inside ``atomic()``, the work of each savepoint level is gathered in one part that registers one
``on_commit(..., using=alias, robust=True)`` hook, so Django itself drops the work of a rolled-back
savepoint or transaction. At commit each part is sent once per dispatcher group, skipping what an
earlier part of the same commit already sent. Outside a transaction the work is sent at once, and
so is, inside one, the work of a dispatcher that writes into the transaction itself
(`Dispatcher.runs_in_transaction`, the ``db`` queue).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from typing import Any

from asgiref.sync import SyncToAsync
from django.db import connections
from django.db import transaction as db_transaction

from cachewire import get_settings
from cachewire.dispatch import dispatch_stats, dispatcher_class, resolve_raise_exception
from cachewire.rules import ChangeBatch, Rule, work_identity
from cachewire.wire import WireArguments

__all__ = ["caller_loop", "identity", "submit"]

logger = logging.getLogger("cachewire.django")

Work = Sequence[tuple[Rule, dict[str, Any]]]


#: What makes two invalidations the same work: the core's rule, the one ChangeBatch uses.
identity = work_identity


def caller_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop of the code that made the change: the running one, or (in a thread that
    ``sync_to_async`` runs, as ``asave()`` does) the loop that awaits that thread."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        pass
    local = SyncToAsync.threadlocal
    if getattr(local, "main_event_loop_pid", None) != os.getpid():
        return None
    loop = getattr(local, "main_event_loop", None)
    return loop if isinstance(loop, asyncio.AbstractEventLoop) else None


def _dispatcher_name(rule: Rule) -> str:
    spec = rule.dispatcher if rule.dispatcher is not None else get_settings().default_dispatcher
    return str(getattr(spec, "name", spec))


def _runs_in_transaction(rule: Rule) -> bool:
    """Whether the rule's dispatcher writes into the transaction itself (the ``db`` queue):
    its work is sent during the transaction, to commit or roll back with the change."""
    spec = rule.dispatcher if rule.dispatcher is not None else get_settings().default_dispatcher
    return bool(dispatcher_class(spec).runs_in_transaction)


def _report(work: Work, exc: Exception, when: str) -> None:
    """Log and count an error; raise it when the rules' error policy says so."""
    dispatch_stats.bump("dispatch_errors")
    logger.error("cachewire: %s failed for rules %s: %s", when, [r.id for r, _ in work], exc)
    rules = [rule for rule, _ in work]
    names = {_dispatcher_name(rule) for rule in rules}
    if any(resolve_raise_exception(rules, name) for name in names):
        raise exc


class _Part:
    """The work of one savepoint level of one transaction."""

    def __init__(self, txn: _Transaction, loop: asyncio.AbstractEventLoop | None) -> None:
        self.txn = txn
        self.loop = loop
        self.work: dict[tuple[str, str], tuple[Rule, dict[str, Any]]] = {}
        self.hook = self.commit  # one bound method, so Django's list can be searched for it

    def commit(self) -> None:
        """Django calls this after the commit: send what no earlier part of it sent."""
        self.txn.forget(self)
        batch = ChangeBatch(origin="django", using=self.txn.using, loop=self.loop)
        for key, (rule, kwargs) in self.work.items():
            if key not in self.txn.sent:
                self.txn.sent.add(key)
                batch.add(rule, kwargs)
        self.work = {}
        if len(batch):
            batch.flush()


class _Transaction:
    """The parts of one connection's current transaction, keyed by savepoint ids."""

    def __init__(self, using: str, hooks: list[Any]) -> None:
        self.using = using
        self.hooks = hooks
        self.parts: dict[tuple[str, ...], _Part] = {}
        self.sent: set[tuple[str, str]] = set()

    def forget(self, part: _Part) -> None:
        for sids, known in list(self.parts.items()):
            if known is part:
                del self.parts[sids]

    def prune(self, hooks: list[Any]) -> None:
        """Django replaced its list of hooks (a savepoint rollback): drop the dead parts."""
        alive = {id(entry[1]) for entry in hooks}
        self.parts = {s: p for s, p in self.parts.items() if id(p.hook) in alive}
        self.hooks = hooks


_ATTRIBUTE = "_cachewire_transaction"


def _transaction(using: str, connection: Any) -> _Transaction:
    hooks = connection.run_on_commit
    txn: _Transaction | None = getattr(connection, _ATTRIBUTE, None)
    if txn is None:
        txn = _Transaction(using, hooks)
        setattr(connection, _ATTRIBUTE, txn)
    elif txn.hooks is not hooks:
        txn.prune(hooks)
    return txn


def _defer_to_commit(using: str, connection: Any, work: Work) -> None:
    txn = _transaction(using, connection)
    sids = tuple(connection.savepoint_ids)
    part = txn.parts.get(sids)
    if part is None:
        if not txn.parts:
            txn.sent.clear()  # nothing of an earlier commit is pending any more
        part = txn.parts[sids] = _Part(txn, caller_loop())
        db_transaction.on_commit(part.hook, using=using, robust=True)
        txn.hooks = connection.run_on_commit
    for rule, kwargs in work:
        # Encoded once: the text is the identity here and travels as it is at the commit.
        arguments = WireArguments.encode(kwargs, rule_id=rule.id)
        part.work.setdefault((rule.id, arguments.wire), (rule, arguments))


def submit(using: str, work: Work) -> None:
    """Queue ``work`` for the commit of ``using``'s transaction, or send it now outside one.

    An error (an argument that cannot travel, a dispatcher that fails outside a transaction) is
    logged and counted, and raised only when the rules' error policy says so. After a commit,
    Django's robust on-commit handling logs a failing dispatch instead of raising it.
    """
    if not work:
        return
    batch: ChangeBatch | None = None
    try:
        connection = connections[using]
        if connection.in_atomic_block:
            # Work for a dispatcher that writes into this transaction goes now; the rest waits
            # for the commit.
            now = [(rule, kwargs) for rule, kwargs in work if _runs_in_transaction(rule)]
            later = [(rule, kwargs) for rule, kwargs in work if not _runs_in_transaction(rule)]
            if later:
                _defer_to_commit(using, connection, later)
        else:
            now = list(work)
        if now:
            batch = ChangeBatch(origin="django", using=using, loop=caller_loop())
            for rule, kwargs in now:
                batch.add(rule, kwargs)
    except Exception as exc:
        _report(work, exc, "queuing invalidations")
        return
    if batch is not None:
        batch.flush()  # logs, counts and raises by the error policy itself
