"""``pipectl controller run``: take the lock, wire everything, serve the API, loop until SIGTERM.

An instance that finds another leader serves the standby API (``controller.api.standby``: /healthz
200, /readyz 503, nothing else) while it waits, so a second replica passes its startup and liveness
probes without leading; the full API replaces it on the same address once this instance leads and
is wired. An instance that leads at once serves only the full API, as before.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from controller.api.schema_registry import new_job_token
from controller.api.server import ApiServer
from controller.api.standby import create_standby_app
from controller.cli.access import AccessOptions, api_state
from controller.engine.controller import Controller, state_dir_of
from controller.engine.k8s_status import StatusMirror
from controller.engine.kube_source import KubeSource, KubeStatus
from controller.engine.kube_watch import DEFAULT_RESYNC_SECONDS, KubeWatch
from controller.engine.leader import LeadershipKeeper, elector_from_env
from controller.model.endpoints import REGISTRY_TOKEN_ENV
from controller.obs import memory, metrics
from controller.obs.events import EventType
from controller.obs.logging import configure_logging
from controller.source.git import GitSource
from controller.source.policy import Policy
from controller.wiring import Runtime, build_runtime


def run_controller(
    repo: str,
    branch: str,
    state: str,
    listen: str,
    interval: float,
    bake: float,
    log_format: str,
    *,
    workers: int = 4,
    events_kafka: tuple[str, str] | None = None,
    access: AccessOptions | None = None,
    policy: Policy | None = None,
    write_context: bool = False,
    namespaces: tuple[str, ...] | None = None,
    resync: float = DEFAULT_RESYNC_SECONDS,
) -> int:
    """Exit 0 after SIGTERM/SIGINT; non-zero only for fatal start-up errors (bad flags, an
    unreadable state store or git source at start). Errors after start never end the process.
    ``namespaces``, ``resync``: ``--source kubernetes`` (all namespaces when empty; engine/kube_watch.py)."""
    configure_logging(json=log_format == "json")
    log = structlog.get_logger("pipectl.controller")
    memory.set_up_process()  # arenas and GC, before any thread starts (controller/obs/memory.py)
    state_dir = state_dir_of(state)
    try:
        elector = elector_from_env(state_dir, state)
    except ValueError as e:
        log.error("cannot start", error=str(e), error_type=type(e).__name__)
        return 1
    stopping = threading.Event()

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal received; finishing the current action", signal=signum)
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    stop_standby = _serve_standby(elector, listen, log)
    if stop_standby is None:
        return 1
    if not _lead(elector, stopping, log):
        stop_standby()
        return 0
    try:
        rt = build_runtime(repo, state, branch=branch, bake_seconds=bake, requeue_waits=True,
                           events_kafka=events_kafka, share_live_state=True)
        source, watch = _source(rt, namespaces, resync)
    except Exception as e:
        log.error("cannot start", error=str(e), error_type=type(e).__name__)
        stop_standby()
        elector.release()
        return 1
    rt.wiring.job_env[REGISTRY_TOKEN_ENV] = new_job_token()  # its jobs' read-only registry token
    rt.store.fencing_token = elector.fencing_token  # journal writes check it (controller/store/fencing.py)
    rt.source.policy = policy  # environments from the policy repo (controller/source/policy.py)
    rt.store.fence_guard = getattr(elector, "check_held", None)  # LeaseElector: renewed in time
    ctl = Controller(source, rt.reconciler, interval=interval, workers=workers, stop=rt.reconciler.stop)
    _observe_status(rt, source)
    try:
        api_st = api_state(rt, ctl, _health(elector, ctl), access or AccessOptions(), state_dir)
        stop_standby()  # the full API takes its address over
        api = ApiServer(listen, api_st)
    except (OSError, ValueError) as e:
        log.error("cannot start the API", error=str(e), error_type=type(e).__name__)
        stop_standby()
        elector.release()
        return 1
    api.start()
    log.info("api listening", address=f"{api.address[0]}:{api.address[1]}", workers=workers)
    if write_context and not listen.endswith(":0"):  # a random port is nobody's context
        _record_context(repo, state, api.address, log)
    emit = rt.reconciler.ops.emit
    emit(EventType.CONTROLLER, "", None, message="controller started", detail={"workers": workers})
    try:
        _supervise(rt, ctl, elector, stopping, log, watch)
    finally:
        emit(EventType.CONTROLLER, "", None, message="controller stopped")
        api.stop()
        elector.release()
    return 0


def _record_context(repo: str, state: str, address: tuple[str, int], log: Any) -> None:
    """Remember this controller in the client config (``pipectl config get-contexts``); never fatal."""
    from controller.cli.config import ConfigError, config_path, record_controller_context

    try:
        name = record_controller_context(repo, state, address[0], address[1])
    except (OSError, ConfigError) as e:
        log.warning("context not recorded", error=str(e), path=str(config_path()))
        return
    if name:
        log.info("context recorded", context=name, path=str(config_path()))


def _serve_standby(elector: Any, listen: str, log: Any) -> Callable[[], None] | None:
    """When another instance leads, serve the standby API on ``listen`` while this one waits.

    Returns what stops it (nothing to stop when this instance leads at once), or None when it
    cannot listen.
    """
    if elector.acquire():
        return lambda: None
    try:
        standby = ApiServer(listen, None, app=create_standby_app())
        standby.start()
    except (OSError, ValueError, RuntimeError) as e:
        log.error("cannot start the API", error=str(e), error_type=type(e).__name__)
        return None
    log.info("standby api listening", address=f"{standby.address[0]}:{standby.address[1]}")
    return standby.stop


def _lead(elector: Any, stopping: threading.Event, log: Any) -> bool:
    """Wait until this instance leads; False when told to stop first."""
    waited = False
    while not elector.acquire():
        if not waited:
            holder = elector.holder() if hasattr(elector, "holder") else None
            log.info("another instance is leader; standing by", holder=holder)
            waited = True
        if stopping.wait(timeout=2.0):
            return False
    return True


def _source(rt: Runtime, namespaces: tuple[str, ...] | None,
            resync: float) -> tuple[GitSource | KubeSource, KubeWatch | None]:
    """The git source, or (``--source kubernetes``) objects on the API server beside it, read
    from a watch's cache."""
    if namespaces is None:
        return rt.source, None
    from controller.adapters.kube import KubeApi

    api = KubeApi.connect(namespaces)
    watch = KubeWatch(api, resync)
    watch.sync()  # the first LIST: fails the start without the CRD, API or permission
    source = KubeSource(rt.source, api, watch.cache)
    rt.ledger.annotate = source.annotate
    return source, watch


def _observe_status(rt: Runtime, source: GitSource | KubeSource) -> None:
    mirror = StatusMirror.from_env()
    on_object = KubeStatus(source, rt.reconciler.clock) if isinstance(source, KubeSource) else None

    def on_status(name: str, status: Any) -> None:
        for stage, st in status.stages.items():
            metrics.set_release_info(name, stage, st.version, str(st.phase))
        if on_object is not None:
            on_object(name, status)
        else:
            mirror.mirror(name, status)

    rt.reconciler.on_status = on_status


def _health(elector: Any, ctl: Controller) -> Callable[[], dict[str, Any]]:
    """Liveness; the API shows callers without a token only ``ok`` and ``leader``."""

    def health() -> dict[str, Any]:
        store_error = ctl.reconciler.store_error  # the last pass could not read or write the store
        return {
            "ok": elector.is_leader and ctl.last_error is None and store_error is None,
            "leader": elector.is_leader,
            "commit": ctl.last_commit,
            "error": ctl.last_error or store_error,
        }

    return health


STORE_PING_SECONDS = 10.0


def _check_store(rt: Runtime, log: Any) -> None:
    """Ask the state store for ``SELECT 1``: /healthz and ``pipectl_backend_up{backend="state"}``
    follow the store even while every pass is held up elsewhere (with the stack's shared PostgreSQL
    down, the Hive metastore hangs too, and a pass waits on a Hive call, not on the store)."""
    try:
        rt.store.ping()
    except Exception as e:
        text = str(e).splitlines()[0] if str(e) else ""
        msg = f"state store unavailable: {type(e).__name__}: {text}"
        if rt.reconciler.store_error is None:
            log.error("state store unavailable", error=msg)
        rt.reconciler.store_error = msg
        metrics.set_backend_up(metrics.STATE_BACKEND, False)
        return
    if rt.reconciler.store_error is not None:
        log.info("state store reachable again")
    rt.reconciler.store_error = None
    metrics.set_backend_up(metrics.STATE_BACKEND, True)


def _supervise(rt: Runtime, ctl: Controller, elector: Any, stopping: threading.Event, log: Any,
               watch: KubeWatch | None = None) -> None:
    """Run the controller until a signal or lost leadership; verify the audit chain every 5 min.
    ``watch`` (``--source kubernetes``) wakes the controller on an object's new spec, as
    ``POST /hooks/git`` does (``Controller.trigger``)."""

    def halt() -> None:
        ctl.stop.set()
        ctl.wake.set()

    def lost() -> None:
        log.error("lost leadership; stopping")
        halt()

    keeper = LeadershipKeeper(elector, on_lost=lost)
    keeper.start()
    worker = threading.Thread(target=ctl.run, name="pipectl-controller")
    if watch is not None:
        watch.start(ctl.trigger)
    worker.start()
    try:
        next_verify = next_ping = 0.0
        while worker.is_alive():
            if stopping.is_set():
                halt()
            if time.monotonic() >= next_ping:
                next_ping = time.monotonic() + STORE_PING_SECONDS
                _check_store(rt, log)
            if time.monotonic() >= next_verify:
                next_verify = time.monotonic() + 300
                try:
                    ok, msg = rt.ledger.verify()
                except Exception as e:  # a store outage must not end the process; look again soon
                    log.warning("audit chain not verified", error=f"{type(e).__name__}: {e}")
                    next_verify = time.monotonic() + 30
                    continue
                metrics.set_audit_chain_ok(ok)
                if not ok:
                    log.error("audit chain broken", detail=msg)
            worker.join(timeout=1)
    finally:
        keeper.stop()
        if watch is not None:
            watch.stop()
