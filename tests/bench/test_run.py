"""The benchmarks' record of the machine they ran on."""
from bench.run import cpu_record, machine

CPUINFO = """processor\t: 0
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni
processor\t: 1
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx2 fma avx512f avx512_vnni
"""


def test_cpu_record_names_the_flags_that_decide_int8_speed():
    assert cpu_record(CPUINFO) == {"cpu": "AMD EPYC",
                                   "cpu_features": ["avx2", "fma", "avx512f", "avx512_vnni"]}
    avx2_only = cpu_record(CPUINFO.replace(" avx512f avx512_vnni", ""))
    assert avx2_only["cpu_features"] == ["avx2", "fma"]
    assert cpu_record("") == {}


def test_machine_records_this_cpu():
    info = machine()
    assert info["cores"] >= 1 and info["torch"].startswith("2.13")
    assert "cpu_features" in info   # Linux: read from /proc/cpuinfo
