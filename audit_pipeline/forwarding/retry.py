"""The retry policy: exponential backoff with full jitter, at least the sink's ``Retry-After``,
and a pass that gives up after ``retry.give_up_seconds``; built on :mod:`tenacity`.

Full jitter (each wait drawn from ``[0, min(max_seconds, initial_seconds * 2**attempt)]``)
keeps several forwarders that failed together from retrying together.  The clock and the sleep
are injected so that tests run the policy without waiting, and the sleep keeps the lease alive.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception, wait_random_exponential

from audit_pipeline.config.sections.forwarding import RetrySettings
from audit_pipeline.core.errors import first_line

T = TypeVar("T")


class RetryLater(Exception):
    """An attempt left work to retry: ``reason`` is the last real failure, ``retry_after`` the sink's wish."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class GaveUp(Exception):
    """Retrying stopped after ``give_up_seconds``; ``last`` is the final attempt's failure."""

    def __init__(self, last: BaseException, seconds: float) -> None:
        super().__init__(str(last))
        self.last = last
        self.seconds = seconds


class RetryPolicy:
    """Runs an attempt until it succeeds, retrying :class:`RetryLater` (and ``also`` exceptions)."""

    def __init__(
        self,
        settings: RetrySettings,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._sleep = sleep
        self._log = log or (lambda _message: None)
        self._jitter = wait_random_exponential(multiplier=settings.initial_seconds, max=settings.max_seconds)
        #: Called before every wait for a retry (the follower's metrics and liveness).
        self.on_retry: Callable[[], None] = lambda: None

    def wait(self, state: RetryCallState) -> float:
        """Full jitter, but never less than what the sink asked for (``Retry-After``)."""
        delay = self._jitter(state)
        error = state.outcome.exception() if state.outcome is not None else None
        asked = error.retry_after if isinstance(error, RetryLater) else None
        return max(delay, asked or 0.0)

    def call(self, attempt: Callable[[], T], what: str, transient: Callable[[BaseException], bool] | None = None) -> T:
        """``attempt()`` until it returns; :class:`GaveUp` once the next wait would pass ``give_up_seconds``.

        :class:`RetryLater` is always retried; other exceptions only when ``transient`` says so.
        """

        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, RetryLater) or (transient is not None and transient(exc))

        started = self._clock()
        give_up = self.settings.give_up_seconds

        def stop(state: RetryCallState) -> bool:
            return self._clock() - started + state.upcoming_sleep > give_up

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            reason = error.reason if isinstance(error, RetryLater) else f"{type(error).__name__}: {first_line(error)}" if error else "?"
            self._log(f"{what} to retry in {state.upcoming_sleep:.1f}s ({reason})")
            self.on_retry()

        retrying = Retrying(
            retry=retry_if_exception(retryable),
            wait=self.wait,
            stop=stop,
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except Exception as exc:
            if retryable(exc):
                raise GaveUp(exc, self._clock() - started) from None
            raise
