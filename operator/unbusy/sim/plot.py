"""A PNG of load, replicas and p99 per minute; needs matplotlib, an optional extra."""

from __future__ import annotations

from unbusy.sim.stats import SimResult


def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_png(result: SimResult, title: str, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    from matplotlib import pyplot

    minutes = [m.minute for m in result.minutes]
    figure, (load, replicas, p99) = pyplot.subplots(3, 1, sharex=True, figsize=(10, 7))
    load.plot(minutes, [m.load_rps for m in result.minutes], label="offered")
    load.plot(minutes, [m.rejected / 60 for m in result.minutes], label="rejected", color="tab:red")
    load.set_ylabel("requests/s")
    load.legend()
    replicas.step(minutes, [m.replicas for m in result.minutes], where="post", label="holding a GPU")
    replicas.step(minutes, [m.ready for m in result.minutes], where="post", label="ready")
    replicas.set_ylabel("replicas")
    replicas.legend()
    p99.plot(minutes, [m.p99_ms for m in result.minutes])
    p99.set_ylabel("p99 ms (answered)")
    p99.set_xlabel("minute")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
