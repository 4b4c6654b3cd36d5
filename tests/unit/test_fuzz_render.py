"""`unbusy render` on generated InferenceServices, valid and invalid (tests/fuzz_specs.py): a
clear error naming the broken field, or objects that round-trip through YAML and that the
Kubernetes schema accepts; never a traceback."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout

import yaml
from hypothesis import HealthCheck, given, settings

import schemas
from fuzz_specs import RENDER_CASES, Case, cases
from unbusy.cli import main


def render(case: Case, tmp_path) -> tuple[int, str, str]:
    """`unbusy render -f <file>` in this process: any exception but its own usage errors escapes."""
    path = tmp_path / f"{case.name}.yaml"
    path.write_text(yaml.safe_dump(case.manifest))
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["render", "-f", str(path)])
    return code, out.getvalue(), err.getvalue()


@settings(
    max_examples=RENDER_CASES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=cases())
def test_render_names_the_broken_field_or_renders_valid_objects(case: Case, tmp_path):
    code, out, err = render(case, tmp_path)
    if case.field is not None:
        assert code == 1, f"{case.why}: rendered instead of refused"
        assert err.startswith("error: ") and case.field in err, f"{case.why}: {err}"
        assert "Traceback" not in err
        return
    assert code == 0, f"a valid spec refused: {err}"
    manifests = list(yaml.safe_load_all(out))
    assert manifests and all(m["metadata"]["namespace"] == "default" for m in manifests)
    for manifest in manifests:
        schemas.validate(manifest)
