"""AuthRunner: a thread stuck in botbuilder's blocking key fetch takes no new work."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from bot.teams.front import AuthRunner, AuthUnavailable


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # never leave a thread blocked after the test


async def blocked(release: threading.Event) -> str:
    release.wait(10)  # blocks the auth thread's loop, like requests.get without a timeout
    return "late"


async def quick() -> str:
    return "ok"


async def served_once_released(runner: AuthRunner) -> None:
    """The overdue work ends on its thread shortly after the release: then calls are served."""
    for _ in range(100):
        try:
            assert await runner.run(quick()) == "ok"
            return
        except AuthUnavailable:
            await asyncio.sleep(0.02)
    pytest.fail("no thread counted as free again")


async def test_stuck_threads_take_no_work_and_the_bound_answers_at_once(
    release: threading.Event,
) -> None:
    runner = AuthRunner(2, limit=0.2, max_size=3)
    try:
        for _ in range(3):  # two threads, then a third started in place of the stuck ones
            assert await runner.run(quick()) == "ok"
            with pytest.raises(TimeoutError):
                await runner.run(blocked(release))
        with pytest.raises(AuthUnavailable):  # every thread stuck, at the bound: no queueing
            await runner.run(quick())
        release.set()
        await served_once_released(runner)
        for _ in range(6):
            assert await runner.run(quick()) == "ok"
    finally:
        runner.close()


async def test_a_thread_is_free_again_once_its_overdue_work_ends(
    release: threading.Event,
) -> None:
    runner = AuthRunner(1, limit=0.2, max_size=1)
    try:
        with pytest.raises(TimeoutError):
            await runner.run(blocked(release))
        with pytest.raises(AuthUnavailable):
            await runner.run(quick())
        release.set()
        await served_once_released(runner)
    finally:
        runner.close()
