"""Training precision: bfloat16 only where the hardware computes it."""

import pytest

from training.precision import cpu_flags, resolve_precision

MILAN = "fpu sse sse2 avx avx2 fma f16c bmi2 sha_ni vaes"  # AMD EPYC 7xx3: no bfloat16
GENOA = MILAN + " avx512f avx512bw avx512_bf16"  # AMD EPYC 9xx4
SAPPHIRE = MILAN + " avx512f amx_tile amx_bf16 amx_int8"  # Intel Xeon 4th gen


@pytest.mark.parametrize("flags, gpu, expected", [
    (MILAN, False, "float32"),
    (GENOA, False, "mixed_bfloat16"),
    (SAPPHIRE, False, "mixed_bfloat16"),
    (MILAN, True, "mixed_bfloat16"),
    ("", False, "float32"),  # flags unknown (not Linux): the safe choice
])
def test_auto_takes_bfloat16_only_where_it_is_native(flags, gpu, expected):
    policy, why = resolve_precision("auto", flags=flags.split(), gpu=gpu)
    assert policy == expected
    assert why.startswith("auto: ")


@pytest.mark.parametrize("requested", ["float32", "mixed_bfloat16"])
def test_an_explicit_policy_is_kept_on_any_machine(requested):
    assert resolve_precision(requested, flags=GENOA.split(), gpu=False) == (requested, "as requested")
    assert resolve_precision(requested, flags=MILAN.split(), gpu=True) == (requested, "as requested")
    assert resolve_precision(requested, flags=MILAN.split(), gpu=False)[0] == requested


def test_bfloat16_asked_of_a_cpu_without_it_says_what_it_costs():
    _, why = resolve_precision("mixed_bfloat16", flags=MILAN.split(), gpu=False)
    assert "no bfloat16 instructions" in why and "auto would take float32" in why
    assert resolve_precision("float32", flags=MILAN.split(), gpu=False)[1] == "as requested"


def test_an_unknown_policy_names_what_was_received():
    with pytest.raises(ValueError, match="received 'bf16'"):
        resolve_precision("bf16")


def test_cpu_flags_are_read_from_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()
    assert resolve_precision("auto", flags=cpu_flags(info), gpu=False)[0] == "mixed_bfloat16"
