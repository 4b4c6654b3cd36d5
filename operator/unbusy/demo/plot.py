"""The demo's PNG: requests per second by outcome, the main variant's replicas and the fallback's
weight over the load step; needs matplotlib (`make demo` installs the `plot` extra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from unbusy.demo.playback import Phase, Roles, Sample

SMOOTH_S = 5  # rates are means over this many seconds: Poisson arrivals make single seconds noisy


def _smoothed(values: Sequence[float]) -> list[float]:
    return [
        sum(values[max(0, i - SMOOTH_S + 1) : i + 1]) / len(values[max(0, i - SMOOTH_S + 1) : i + 1])
        for i in range(len(values))
    ]


def write_png(samples: Sequence[Sample], phases: Sequence[Phase], roles: Roles, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    from matplotlib import pyplot

    seconds = [s.second for s in samples]
    figure, (rates, replicas, weight) = pyplot.subplots(
        3, 1, sharex=True, figsize=(10, 7.5), gridspec_kw={"height_ratios": [3, 1.4, 1.4]}
    )
    series = [
        ("offered", [s.offered for s in samples], "black"),
        (f"answered by {roles.variant}", [s.answered for s in samples], "tab:blue"),
        (f"answered by {roles.fallback} (fallback)", [s.fallback_answered for s in samples], "tab:green"),
        ("rejected (503)", [s.rejected for s in samples], "tab:red"),
    ]
    for label, values, color in series:
        rates.plot(seconds, _smoothed(values), label=label, color=color)
    rates.set_ylabel(f"requests/s ({SMOOTH_S} s mean)")
    rates.legend(loc="upper right", fontsize="small")
    replicas.step(seconds, [s.desired for s in samples], where="post", label="desired", color="tab:gray")
    replicas.step(seconds, [s.ready for s in samples], where="post", label="ready", color="tab:blue")
    replicas.axhline(roles.max_replicas, linestyle=":", color="tab:gray", label="maxReplicas")
    replicas.set_ylabel(f"{roles.variant} replicas")
    replicas.set_ylim(0, roles.max_replicas + 1)
    replicas.legend(loc="upper right", fontsize="small")
    weight.step(seconds, [s.fallback_weight for s in samples], where="post", color="tab:green")
    weight.set_ylabel(f"% on {roles.fallback}")
    weight.set_xlabel("seconds since the load began")
    start = 0
    for phase in phases[:-1]:
        start += phase.seconds
        for axis in (rates, replicas, weight):
            axis.axvline(start, color="tab:gray", linewidth=0.8, linestyle="--")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
