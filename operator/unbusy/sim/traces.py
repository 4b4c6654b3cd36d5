"""Load traces: request rate per second, from a CSV (`seconds,rps`) or a built-in shape.

Built-in shapes are multiples of a base rate (the caller picks it, e.g. from replica capacity):
- step: 5 min at base, a 10x step held 15 min, 15 min back at base (out, recover, scale in);
- diurnal: a day compressed into an hour, from base at night to 4x base at noon;
- flash: base with three flash crowds of 8x base, 2 min each, ramping up in 5 s;
- sawtooth: four 10-min ramps from base to 6x base, each dropping back at once;
- onoff: bursty on-off: 4x base for on-periods and base for off-periods of random length
  (exponential, 2 and 4 min on average; a fixed seed, so the trace is the same every run);
- onoff-tall, onoff-quick: the same process with other settings, made after the burst hold was
  tuned on onoff to test it on bursts it was not tuned on: 6x bursts of 1 min between lulls of
  8 min on average, two hours; 3x bursts of 30 s between lulls of 2.5 min, one hour;
- crowds, cron: bursts on a schedule, made for the pre-warm before a burst is due: flash's 8x crowds
  of 2 min every 15 min, six of them; a job's 4x load for 90 s every 5 min, give or take 20 s;
- diurnal2d: two days, each compressed into an hour: base at night, a morning rush to 5x base
  within a minute (faster than replicas start), a noon peak of 6x, an evening decline; the
  second day is 10% busier. A seasonal floor with a 3600 s period sees day 1 on day 2.
"""

from __future__ import annotations

import csv
import io
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Trace:
    name: str
    rps: tuple[float, ...]  # the request rate during each second

    @property
    def seconds(self) -> int:
        return len(self.rps)


def _step(base: float) -> list[float]:
    return [base] * 300 + [10 * base] * 900 + [base] * 900


def _diurnal(base: float) -> list[float]:
    day = 3600
    return [base * (1 + 3 * (1 - math.cos(2 * math.pi * t / day)) / 2) for t in range(day)]


def _flash(base: float, crowds: int = 3) -> list[float]:
    rates = [base] * (300 + 900 * crowds)
    for start in range(600, len(rates), 900):
        for t in range(start, start + 120):
            rates[t] = base * (1 + 7 * min(1.0, (t - start + 1) / 5))
    return rates


def _crowds(base: float) -> list[float]:
    return _flash(base, crowds=6)


def _cron(base: float) -> list[float]:
    rng, rates = random.Random(3), [base] * 3600
    for k in range(1, 12):
        start = 300 * k + rng.randint(-20, 20)
        rates[start : start + 90] = [4 * base] * len(rates[start : start + 90])
    return rates


def _sawtooth(base: float) -> list[float]:
    ramp = 600
    return [base * (1 + 5 * (t % ramp) / ramp) for t in range(4 * ramp)]


def _on_off(base: float, height: float, on_s: float, off_s: float, seconds: int, seed: int) -> list[float]:
    """`height` x base for on-periods and base for off-periods, of exponential lengths (means on_s, off_s)."""
    rng, rates, on = random.Random(seed), [], False
    while len(rates) < seconds:
        rates += [base * (height if on else 1)] * max(1, round(rng.expovariate(1 / (on_s if on else off_s))))
        on = not on
    return rates[:seconds]


def _onoff(base: float) -> list[float]:
    return _on_off(base, 4, 120, 240, 3600, seed=7)


def _onoff_tall(base: float) -> list[float]:
    return _on_off(base, 6, 60, 480, 7200, seed=11)


def _onoff_quick(base: float) -> list[float]:
    return _on_off(base, 3, 30, 150, 3600, seed=5)


def _day(base: float) -> list[float]:
    """One compressed day: night, a morning rush in 60 s, a noon peak, a gradual evening."""
    day, rush, noon, evening, night = 3600, 900, 1800, 2700, 3300

    def rate(t: int) -> float:
        if t < rush:
            return 1.0
        if t < rush + 60:
            return 1 + 4 * (t - rush) / 60
        if t < evening:
            return 5 + math.sin(math.pi * (t - rush) / (2 * (noon - rush))) ** 2  # 6x at noon
        return max(1.0, 5 - 4 * (t - evening) / (night - evening))

    return [base * rate(t) for t in range(day)]


def _diurnal2d(base: float) -> list[float]:
    return _day(base) + _day(1.1 * base)


SHAPES: dict[str, Callable[[float], list[float]]] = {
    "step": _step,
    "diurnal": _diurnal,
    "flash": _flash,
    "sawtooth": _sawtooth,
    "onoff": _onoff,
    "diurnal2d": _diurnal2d,
    "onoff-tall": _onoff_tall,
    "onoff-quick": _onoff_quick,
    "crowds": _crowds,
    "cron": _cron,
}


def builtin(name: str, base_rps: float) -> Trace:
    if name not in SHAPES:
        raise ValueError(f"unknown trace shape {name!r}; use one of {', '.join(SHAPES)} or a CSV file")
    return Trace(name, tuple(SHAPES[name](base_rps)))


def named(spec: str, base_rps: float) -> Trace:
    """The trace `spec` names: a built-in shape (at `base_rps`), or a CSV file's path."""
    if spec in SHAPES:
        return builtin(spec, base_rps)
    if not Path(spec).is_file():
        raise ValueError(f"--trace {spec}: neither a built-in shape ({', '.join(SHAPES)}) nor a CSV file")
    return parse_csv(Path(spec).read_text(), spec)


def parse_csv(text: str, name: str = "csv") -> Trace:
    """Rows `seconds,rps` (a header row is allowed), interpolated linearly to one rate per second.

    The trace starts at the first row's time and ends at the last's.
    """
    points: list[tuple[float, float]] = []
    for line, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or (line == 1 and row[0].strip() == "seconds"):
            continue
        try:
            seconds, rps = (float(cell) for cell in row)
        except ValueError:
            raise ValueError(
                f"{name}: line {line}: expected two numbers `seconds,rps`, got {','.join(row)!r}"
            ) from None
        if rps < 0 or not math.isfinite(rps) or not math.isfinite(seconds):
            raise ValueError(f"{name}: line {line}: rps must be a finite number >= 0")
        if points and seconds <= points[-1][0]:
            raise ValueError(f"{name}: line {line}: seconds must increase ({seconds:g} after {points[-1][0]:g})")
        points.append((seconds, rps))
    if len(points) < 2:
        raise ValueError(f"{name}: needs at least two rows `seconds,rps`")
    start, rates, i = points[0][0], [], 0
    for t in range(int(points[-1][0] - start)):
        at = start + t
        while points[i + 1][0] < at:
            i += 1
        (t0, r0), (t1, r1) = points[i], points[i + 1]
        rates.append(r0 + (r1 - r0) * (at - t0) / (t1 - t0))
    return Trace(name, tuple(rates))
