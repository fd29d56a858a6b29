"""Programs built while the job's own local cluster starts.

A job that starts a private local cluster (no RAY_ADDRESS) runs its workers on this
node, so the programs its JAX workers would build can be built here, beside Ray's
start, in CPU-only processes (`cluster.builder_env`), instead of by build tasks once
a worker is up. Each process takes its program's cache lock (`ProgramCache.lock`)
first, so a worker's build task for that program waits for it and then finds the
entries. The program's target (platform and device kind) is the first worker's,
sent once its device is up (`feed`). A build that fails here is only noted: the
worker's own build task builds that row again and reports its error as usual.
"""

import dataclasses
import multiprocessing
import os
import threading

from hrnet_eval import programs
from hrnet_eval.errors import one_line
from hrnet_eval.worker import TARGET_WAIT_S, apply_env


def candidates(specs, pending, cache_dir):
    """Rows of `specs` ({row: ModelSpec}) with work in `pending` ({row: [Unit]}) whose
    folded-weights entry is not in `cache_dir`, grouped by program, in row order."""
    cache = programs.ProgramCache(cache_dir)
    groups = {}
    for row, spec in specs.items():
        if pending.get(row) and not cache.entry(programs.weights_key(spec)).exists():
            arch = programs.digest(programs.architecture_key(spec))
            groups.setdefault(arch, []).append(spec)
    return list(groups.values())


class EarlyBuilds:
    """Builder processes for `groups` (lists of ModelSpecs, one program each) under
    `cache_dir`, `processes` at most, started at once; `feed(actor)` gives them a worker's
    target, `close()` returns {row: {step: seconds}} and stops what is still running."""

    def __init__(self, groups, cache_dir, env, processes=None):
        processes = max(1, min(len(groups), processes or (os.cpu_count() or 2) // 2))
        self.processes = processes
        self.notes = []
        self._fed = self._stopped = False
        self._lock = threading.Lock()
        context = multiprocessing.get_context("spawn")  # no fork of a threaded driver
        self._children = []
        for i in range(processes):
            ours, theirs = context.Pipe()
            child = context.Process(
                target=_build_groups,
                args=(env, str(cache_dir), groups[i::processes], theirs),
                name=f"hrnet-eval-prebuild-{i}",
                daemon=True,
            )
            child.start()
            theirs.close()
            self._children.append((child, ours))

    def feed(self, actor):
        """Send the target of `actor` (an `EvalWorker` handle) to the builders, from a
        thread, the first time only; a worker that cannot say it stops them."""
        with self._lock:
            if self._fed or self._stopped:
                return
            self._fed = True

        def ask():
            import ray

            try:
                self.send(ray.get(actor.target.remote(), timeout=TARGET_WAIT_S))
            except Exception as exc:  # its build tasks then build, and report, themselves
                self.notes.append(f"no target from the first worker ({type(exc).__name__})")
                self.stop()

        threading.Thread(target=ask, name="prebuild-target", daemon=True).start()

    def send(self, target):
        """Give every builder `target` (a `programs.Target`)."""
        with self._lock:
            for child, conn in [] if self._stopped else self._children:
                try:
                    conn.send(dataclasses.asdict(target))
                except OSError:  # it ended already
                    pass

    def close(self):
        """{row: {step: seconds}} of the rows built; builders still running are stopped
        (a stopped builder leaves no entry: entries appear by one rename)."""
        built = {}
        with self._lock:
            children = [] if self._stopped else self._children
        for child, conn in children:
            while conn.poll():
                try:
                    kind, value = conn.recv()
                except (EOFError, OSError):
                    break
                if kind == "built":
                    built.update(value)
                else:
                    self.notes.append(value)
        self.stop()
        return built

    def stop(self):
        """Stop every builder still running (its cache lock goes with it)."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        for child, conn in self._children:
            if child.is_alive():
                child.terminate()
            child.join(5)
            conn.close()


def _build_groups(env, cache_dir, groups, conn):
    """A builder process: each group's program and folded weights (`programs.build`),
    with the target from `conn`; what it built, or why not, goes back on `conn`."""
    apply_env(env)  # before JAX is imported
    known = []

    def target():
        if not known:
            if not conn.poll(TARGET_WAIT_S):
                raise TimeoutError("no worker's target came")
            known.append(programs.Target(**conn.recv()))
        return known[0]

    for specs in groups:
        try:
            conn.send(("built", programs.build(cache_dir, specs, target)))
        except Exception as exc:
            why = f"{type(exc).__name__}: {one_line(exc)}"
            conn.send(("note", f"{specs[0].name}: not built early ({why})"))
