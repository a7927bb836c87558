"""How the handlers reach kopf: `handlers.register` fills a registry of its own, with
the resync interval of the options the process was started with. No server needed."""

from __future__ import annotations

import subprocess
import sys

import kopf

from finetune_operator import handlers, runtime
from finetune_operator.settings import Settings

# The ids kopf keeps in the jobs' progress annotations and names the indexes by:
# they must stay the functions' names across this refactoring and any later one.
HANDLER_IDS = {"login", "startup", "shutdown", "job_phases", "jobs_by_namespace", "job_seen",
               "job_appeared", "job_changed", "resync", "rayjob_event", "job_deleted"}


def _registered(resync_seconds: float) -> kopf.OperatorRegistry:
    options = runtime.RuntimeOptions(resync_seconds=resync_seconds)
    return handlers.register(kopf.OperatorRegistry(), options, Settings())


def _all_handlers(registry: kopf.OperatorRegistry) -> list:
    return [handler
            for kind in (registry._activities, registry._indexing, registry._watching,
                         registry._changing, registry._spawning)
            for handler in kind.get_all_handlers()]


def test_the_timer_runs_at_the_resync_interval_of_the_options():
    (timer,) = _registered(7.5)._spawning.get_all_handlers()
    assert timer.id == "resync"
    assert (timer.interval, timer.initial_delay) == (7.5, 7.5)
    assert timer.fn.keywords == {"resync_seconds": 7.5}
    assert timer.requires_finalizer is False


def test_handler_ids_are_the_function_names():
    assert {handler.id for handler in _all_handlers(_registered(15))} == HANDLER_IDS


def test_the_startup_handler_gets_the_options_and_settings_it_was_registered_with():
    options = runtime.RuntimeOptions(resync_seconds=3, metrics_port=0)
    settings = Settings()
    registry = handlers.register(kopf.OperatorRegistry(), options, settings)
    (startup,) = [h for h in registry._activities.get_all_handlers() if h.id == "startup"]
    assert startup.fn.keywords["options"] is options
    assert startup.fn.keywords["operator_settings"] is settings


def test_importing_the_handlers_registers_nothing():
    """No import-time side effect: kopf's default registry stays empty of our handlers."""
    probe = ("import kopf, finetune_operator.handlers; r = kopf.get_default_registry(); "
             "print(len(r._changing.get_all_handlers()) + len(r._spawning.get_all_handlers()))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "0"
