"""Shared block `sending`: what run.py and the uploader do alike around a POST
that must land once: the delivery's lock held for the work, a POST whose answer
was lost left uncertain and settled by looking in the store, and the failures
reported (those never sent, in one line), all by named states, never by text.

An item is anything with the attributes `outcome`, `reason`, `problem` and `sent`
(a product of run.py, a picture of the uploader).

Every script that needs it carries a copy of the part below the marker, between
its fences. Edit it here, then run `make blocks` (python tools/sync_blocks.py);
tests/test_scripts.py fails while a copy differs. Above the marker: what the
copies find in their script.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from http import StoreDown, StoreError, Unanswered  # blocks/http.py, not the standard library
from pathlib import Path
from typing import Any

import requests
from cli import STOPPING, sleep_in_steps
from lock import DeliveryBusy, hold_delivery_lock

EXIT_USAGE = 2
log = logging.getLogger("store")

# --- block ---
FAILED, UNCERTAIN = "failed", "uncertain"  # the outcomes both scripts share
# Problems (CONTRACT.md, the record's codes) of an item that failed or is uncertain
# through the store or a stop, never through what the supplier sent:
STORE_UNREACHABLE = "store_unreachable"  # not sent: the store stopped answering
INTERRUPTED = "interrupted"  # not sent: the run was stopped
UNCONFIRMED = "unconfirmed"  # sent, no answer, not confirmed since
NOT_SENT = (STORE_UNREACHABLE, INTERRUPTED)


def under_delivery_lock(delivery: Path, wait: float, work: Callable[[], int]) -> int:
    """work(), holding the delivery's lock; another run holding it longer than
    `wait` seconds is a usage error that names it."""
    try:
        held = hold_delivery_lock(delivery, wait)
    except DeliveryBusy as error:
        log.error("%s", error)
        return EXIT_USAGE
    with held:
        return work()


def fail(item: Any, error: Exception, problem: str) -> None:
    """item failed, error saying why; one that the store's stop or a stop signal
    kept from being sent gets that problem instead (report() says those in one line)."""
    item.outcome, item.reason, item.problem = FAILED, str(error), problem
    if isinstance(error, StoreDown):
        item.problem = INTERRUPTED if STOPPING.is_set() else STORE_UNREACHABLE
        item.reason = f"not sent: {error}"


def post_once(item: Any, post: Callable[[], requests.Response]) -> requests.Response | None:
    """post()'s answer; None when it was lost after the request may have reached
    the store: item is then uncertain (settle() looks for it), never sent blindly
    again. Journal the `sending` line before calling this."""
    item.sent = time.monotonic()
    try:
        return post()
    except Unanswered as error:
        if not error.maybe_sent:
            raise
        item.outcome, item.problem = UNCERTAIN, UNCONFIRMED
        item.reason = f"sent, but no answer came ({error}); the next run looks for it"
        return None


def settle(
    items: Sequence[Any],
    grace: float,
    store: Any,
    noun: str,
    look_again: Callable[[Any, bool], None],
    look_in_store: Callable[[], None] = lambda: None,
) -> None:
    """Items whose POST lost its answer: GRACE seconds after the last went out,
    look_in_store() reads what the store holds and look_again(item, last) decides;
    one not there is sent once more (last is False), then looked for again."""
    for last in (False, True):
        pending = [item for item in items if item.outcome == UNCERTAIN and item.sent]
        if not pending or store.stopped:
            return
        wait = max(0.0, grace - (time.monotonic() - max(item.sent for item in pending)))
        log.info("%s lost their answer; looking in %.0f s", counted(len(pending), noun), wait)
        sleep_in_steps(wait)
        try:
            look_in_store()
        except StoreError as error:
            for item in pending:
                item.reason = f"sent, but the store could not be asked again ({error})"
            return
        for item in pending:
            look_again(item, last)


def report(items: Sequence[Any], describe: Callable[[Any], str], noun: str) -> None:
    """An error line per item that failed or is uncertain; those the store's stop
    or a stop signal kept from being sent, a line per reason."""
    unsent = [item for item in items if item.problem in NOT_SENT]
    for item in items:
        if item.outcome in (FAILED, UNCERTAIN) and item.problem not in NOT_SENT:
            log.error("%s", describe(item))
    for reason in dict.fromkeys(item.reason for item in unsent):
        log.error("%s %s", counted(sum(i.reason == reason for i in unsent), noun), reason)


def counted(count: int, noun: str) -> str:
    """'1 product', '2 products': noun is the plural."""
    return f"{count} {noun if count != 1 else noun.removesuffix('s')}"
