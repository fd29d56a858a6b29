"""Programs built while the job's own local cluster starts.

A job that starts a private local cluster (no RAY_ADDRESS) runs its workers on this
node, so the programs its JAX workers would build can be built here, beside Ray's
start, in CPU-only processes (`cluster.builder_env`), instead of by build tasks once
a worker is up. Everything a program's key holds is known on the driver (the rows,
the run's batch size; programs are lowered for every platform), so nothing is sent
to the builders after their start. Each process takes its program's cache lock
(`ProgramCache.lock`) first, so a worker's build task for that program waits for it
and then finds the entries. A build that fails here is only noted: the worker's own
build task builds that row again and reports its error as usual.
"""

import multiprocessing
import os
import threading

from hrnet_eval import programs
from hrnet_eval.cluster import apply_env
from hrnet_eval.errors import one_line


def candidates(specs, rows, compile_cache, batch_size):
    """Rows of `specs` ({row: ModelSpec}) among `rows` (those with work left) whose program
    or folded-weights entry is not in `compile_cache`, grouped by program, in row order."""
    cache = programs.ProgramCache(compile_cache)
    groups = {}
    for row, spec in specs.items():
        keys = programs.weights_key(spec), programs.program_key(spec, batch_size)
        if row in rows and not all(cache.entry(key).exists() for key in keys):
            arch = programs.digest(programs.architecture_key(spec))
            groups.setdefault(arch, []).append(spec)
    return list(groups.values())


class EarlyBuilds:
    """Builder processes for `groups` (lists of ModelSpecs, one program each) under
    `compile_cache` for batches of `batch_size`, `processes` at most, started at once;
    `close()` returns {row: {step: seconds}} and stops what is still running."""

    def __init__(self, groups, compile_cache, batch_size, env, processes=None):
        processes = max(1, min(len(groups), processes or (os.cpu_count() or 2) // 2))
        self.processes = processes
        self.notes = []
        self._stopped = False
        self._lock = threading.Lock()
        context = multiprocessing.get_context("spawn")  # no fork of a threaded driver
        self._children = []
        for i in range(processes):
            ours, theirs = context.Pipe(duplex=False)  # what was built comes back
            child = context.Process(
                target=_build_groups,
                args=(env, str(compile_cache), batch_size, groups[i::processes], theirs),
                name=f"hrnet-eval-prebuild-{i}",
                daemon=True,
            )
            child.start()
            theirs.close()
            self._children.append((child, ours))

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
                    built.update({row: steps for row, steps in value.items() if steps})
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


def _build_groups(env, compile_cache, batch_size, groups, conn):
    """A builder process: each group's program and folded weights (`programs.build`);
    what it built, or why not, goes back on `conn`."""
    apply_env(env)  # before JAX is imported
    for specs in groups:
        try:
            conn.send(("built", programs.build(compile_cache, specs, batch_size)))
        except Exception as exc:
            why = f"{type(exc).__name__}: {one_line(exc)}"
            conn.send(("note", f"{specs[0].name}: not built early ({why})"))
