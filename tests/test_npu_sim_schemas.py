"""The torch_npu stand-in's kernels have the signatures the real torch_npu 2.14.0 publishes.

The real wheel (about 43 MB) is fetched once into the cache with pip, like the vLLM wheels of the
main2main tests, and read without importing it (it needs Ascend CANN). Skipped, with the download
error as the reason, when the package index cannot be reached.
"""

from __future__ import annotations

import zipfile

import pytest
from torch_npu_schemas import (
    ATB_HEADER,
    META,
    NO_DEFAULT,
    YAML,
    Opaque,
    atb_prototypes,
    meta_registrations,
    python_params,
    yaml_schemas,
)

from ascend_overlay.main2main.sources import FetchError, fetch_wheel
from ascend_overlay.npu.sim import kernels

pytestmark = pytest.mark.network

TORCH_NPU = "2.14.0"
STAND_IN = {**kernels.KERNELS, **kernels.NOT_SIMULATED}


@pytest.fixture(scope="module")
def published() -> dict[str, str]:
    try:
        wheel = fetch_wheel(TORCH_NPU, "torch_npu")
    except FetchError as exc:
        pytest.skip(f"cannot fetch the torch_npu {TORCH_NPU} wheel (registry unreachable?): {exc}")
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name).decode("utf-8") for name in (YAML, META, ATB_HEADER)}


def test_every_stand_in_kernel_is_published_by_torch_npu(published):
    yaml, atb = yaml_schemas(published[YAML]), atb_prototypes(published[ATB_HEADER])
    unpublished = [name for name in STAND_IN if name not in yaml and name not in atb]
    assert not unpublished, f"kernels torch_npu {TORCH_NPU} does not publish: {unpublished}"
    assert set(kernels.KERNELS) == {"npu_swiglu", "npu_rms_norm", "npu_add_rms_norm", "_npu_rotary_embedding",
                                    "npu_mrope", "_npu_reshape_and_cache", "_npu_paged_attention",
                                    "npu_fused_infer_attention_score"}


@pytest.mark.parametrize("name", sorted(n for n in STAND_IN if not n.startswith("_npu_")))
def test_native_function_schema_matches(published, name):
    schemas = yaml_schemas(published[YAML])[name]
    ours = python_params(STAND_IN[name])
    for schema in schemas:  # a function may be listed more than once; each listing must match
        assert ours == schema, f"{name}: stand-in {ours} != published {schema}"


@pytest.mark.parametrize("name", sorted(n for n in STAND_IN if not n.startswith("_npu_")))
def test_meta_kernel_agrees_where_torch_npu_has_one(published, name):
    """Meta kernels receive positional arguments by position (their names are free: ``x`` for
    ``self``) and keyword-only ones by name, in any order: those names and all defaults must agree."""
    meta = meta_registrations(published[META])
    if name not in meta:
        pytest.skip(f"torch_npu {TORCH_NPU} has no Python meta kernel for {name}")
    ours, theirs = python_params(STAND_IN[name]), meta[name]
    assert [p.default for p in ours if not p.keyword_only] == [p.default for p in theirs if not p.keyword_only]
    ours_kw = {p.name: p.default for p in ours if p.keyword_only}
    theirs_kw = {p.name: p.default for p in theirs if p.keyword_only}
    assert set(ours_kw) == set(theirs_kw), f"{name}: keyword-only parameters differ"
    for key, default in theirs_kw.items():
        if default is not NO_DEFAULT and not isinstance(default, Opaque):
            assert ours_kw[key] == default, f"{name}.{key}: default {ours_kw[key]!r} != {default!r}"


@pytest.mark.parametrize("name", sorted(n for n in STAND_IN if n.startswith("_npu_")))
def test_atb_kernel_parameters_match_the_prototype(published, name):
    prototype = atb_prototypes(published[ATB_HEADER])[name]
    assert [p.name for p in python_params(STAND_IN[name])] == prototype
