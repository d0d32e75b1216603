"""Power, thermal and throttling sources against fixture trees with the real layouts.

The fixtures under tests/fixtures are static; energy counters that move over time are
tested through the decoding functions with two readings (including a wrap-around).
"""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from harness.runner import bench_runner as br
from tests.suite_files import FIXTURES

VCGENCMD = FIXTURES / "pi5" / "bin" / "vcgencmd"


@pytest.fixture(scope="module", autouse=True)
def _vcgencmd_is_executable():
    mode = VCGENCMD.stat().st_mode
    if not mode & stat.S_IXUSR:  # a checkout that lost the bit
        VCGENCMD.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


# --- RAPL ---------------------------------------------------------------------------


def test_rapl_finds_package_domains_only():
    domains = br.rapl_domains(str(FIXTURES / "rapl"))
    # intel-rapl:0:0 (core), :0:1 (dram) are inside the package; intel-rapl-mmio:0
    # duplicates it; intel-rapl itself is the control type, with no counter.
    assert [d["name"] for d in domains] == ["package-0"]
    assert domains[0]["path"].endswith("intel-rapl:0/energy_uj")
    assert domains[0]["max_energy_range_uj"] == 262143328850
    source = br.find_power_source(str(FIXTURES / "rapl"), None)
    assert source.label == "measured:rapl" and source.read() == [48213594712.0]


def test_rapl_two_readings_and_a_wrap_around():
    domains = [{"name": "package-0", "max_energy_range_uj": 262143328850.0, "path": "-"}]
    # 12 J over 2 s: 6 W.
    assert br.rapl_power_w([1_000_000.0], [13_000_000.0], 2.0, domains) == pytest.approx(6.0)
    # The counter wrapped: 262143328850 - 262140000000 = 3328850 uJ, then 2671150 more.
    before, after = [262_140_000_000.0], [2_671_150.0]
    assert br.rapl_delta_uj(before[0], after[0], 262143328850.0) == pytest.approx(6_000_000)
    assert br.rapl_power_w(before, after, 0.5, domains) == pytest.approx(12.0)
    # Without the range a wrap cannot be decoded: no number rather than a wrong one.
    assert br.rapl_delta_uj(10.0, 5.0, None) is None
    # Two packages add up.
    two = [*domains, {"name": "package-1", "max_energy_range_uj": 1e12, "path": "-"}]
    assert br.rapl_power_w([0.0, 0.0], [1e6, 3e6], 1.0, two) == pytest.approx(4.0)


# --- Jetson INA3221 ---------------------------------------------------------------


def test_jetpack5_hwmon_prefers_the_board_input_rail():
    root = str(FIXTURES / "jetson-jp5")
    rails = br.ina3221_rails(root)
    # in7 ("sum of shunt voltages") has no current channel and is not a rail.
    assert [r["name"] for r in rails] == ["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"]
    source = br.find_power_source(root, None)
    assert source.label == "measured:ina3221"
    assert source.detail() == {"rails": ["VDD_IN"], "layout": "hwmon", "board_input": True}
    assert source.read() == pytest.approx(5.072 * 1.256)  # mV x mA


def test_jetpack4_iio_prefers_pom_5v_in():
    root = str(FIXTURES / "jetson-jp4")
    rails = br.ina3221_rails(root)
    assert [r["name"] for r in rails] == ["POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"]
    source = br.find_power_source(root, None)
    assert source.detail()["rails"] == ["POM_5V_IN"] and source.detail()["layout"] == "iio"
    assert source.read() == pytest.approx(3.144)  # in_power0_input is mW


def test_ina3221_without_an_input_rail_sums_every_rail(tmp_path):
    root = tmp_path / "jp5"
    shutil.copytree(FIXTURES / "jetson-jp5", root)
    hwmon = root / "sys/bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    (hwmon / "in1_label").write_text("NC\n")  # a channel that is not connected
    source = br.find_power_source(str(root), None)
    assert source.detail()["rails"] == ["VDD_CPU_GPU_CV", "VDD_SOC"]
    assert source.detail()["board_input"] is False
    assert source.read() == pytest.approx(5.064 * 0.312 + 5.068 * 0.488)


def test_jetpack4_voltage_and_current_when_no_power_file(tmp_path):
    root = tmp_path / "jp4"
    shutil.copytree(FIXTURES / "jetson-jp4", root)
    for path in root.rglob("in_power*_input"):
        path.unlink()
    source = br.find_power_source(str(root), None)
    assert source.read() == pytest.approx(5.008 * 0.628)


# --- Raspberry Pi 5 PMIC ----------------------------------------------------------


PMIC_PAIRS = {  # the fixture's rails: (V, A)
    "3V7_WL_SW": (3.694, 0.041232),
    "3V3_SYS": (3.312, 0.070185),
    "1V8_SYS": (1.806, 0.15874),
    "DDR_VDD2": (1.108, 0.1055),
    "DDR_VDDQ": (0.602, 0.0),
    "1V1_SYS": (1.104, 0.1892),
    "0V8_SW": (0.801, 0.3261),
    "VDD_CORE": (0.8809, 2.3154),
    "3V3_DAC": (3.305, 0.0001221),
    "3V3_ADC": (3.307, 0.0004274),
    "0V8_AON": (0.798, 0.0047619),
    "HDMI": (5.088, 0.018315),
}


def test_pmic_output_is_summed_over_rails_with_both_readings():
    text = br.run_command([str(VCGENCMD), "pmic_read_adc"])
    rails = br.parse_pmic_adc(text)
    assert set(rails) == set(PMIC_PAIRS)  # EXT5V_V and BATT_V have no current
    expected = sum(v * a for v, a in PMIC_PAIRS.values())
    assert sum(rails.values()) == pytest.approx(expected)
    source = br.find_power_source(str(FIXTURES / "pi5"), str(VCGENCMD))
    assert source.label == "measured:pmic" and source.read() == pytest.approx(expected)
    assert source.min_interval_s >= 1.0  # each reading forks vcgencmd


def test_pmic_parser_ignores_errors_and_noise():
    assert br.parse_pmic_adc('error=1 error_msg="Command not registered"') == {}
    assert br.parse_pmic_adc("") == {} and br.parse_pmic_adc(None) == {}
    assert br.parse_pmic_adc("  VDD_CORE_A current(7)=2.0A\n  VDD_CORE_V volt(15)=0.9V\n") == {
        "VDD_CORE": pytest.approx(1.8)
    }


def test_vcgencmd_auto_only_reads_the_real_system():
    assert br.resolve_vcgencmd("auto", str(FIXTURES / "pi5")) is None
    assert br.resolve_vcgencmd(None, "/") is None
    assert br.resolve_vcgencmd(str(VCGENCMD), "/x") == str(VCGENCMD)


def test_no_sensor_means_no_source(tmp_path):
    assert br.find_power_source(str(tmp_path), None) is None
    assert br.find_power_source(str(tmp_path), str(tmp_path / "missing-vcgencmd")) is None


# --- power meter and the power object ---------------------------------------------


class _Counter:
    label, cumulative, min_interval_s = "measured:rapl", True, 0.0

    def __init__(self):
        self.value = 0.0

    def read(self):
        self.value += 1e6  # 1 J per read
        return [self.value]

    def power(self, before, after, seconds):
        return (after[0] - before[0]) / 1e6 / seconds

    def detail(self):
        return {}


class _Instant:
    label, cumulative, min_interval_s = "measured:ina3221", False, 0.0

    def __init__(self):
        self.values = iter([4.0, 6.0, 8.0, 10.0, 12.0] + [9.0] * 1000)

    def read(self):
        return next(self.values)

    def detail(self):
        return {"rails": ["VDD_IN"]}


def test_meter_samples_start_middle_and_end_without_busy_polling():
    meter = br.PowerMeter(_Instant(), 0.05)
    meter.start()
    import time

    time.sleep(0.22)
    watts, readings = meter.stop()
    assert 4 <= readings <= 8  # start + ~4 timer readings + end, not thousands
    assert 4.0 < watts < 12.0


def test_meter_on_an_energy_counter_reads_both_ends():
    meter = br.PowerMeter(_Counter(), 0.1)
    meter.start()
    watts, readings = meter.stop()
    assert readings == 2 and watts > 0


def test_power_object_real_sensor_model_and_none():
    real = br._power_result(6.0, 5, 4.0, "measured", _Instant(), None, 0.5, 2.0)
    assert real["source"] == "measured:ina3221" and real["power_w"] == 6.0
    assert real["energy_mj"] == pytest.approx((6.0 - 4.0) * 2.0)  # W x ms = mJ
    model = {"idle_w": 5.0, "max_w": 25.0}
    modelled = br._power_result(None, 0, None, None, None, model, 0.5, 2.0)
    assert modelled["source"] == "modelled" and modelled["power_w"] == pytest.approx(15.0)
    assert modelled["energy_mj"] == pytest.approx(10.0 * 2.0)
    none = br._power_result(None, 0, None, None, None, None, 0.5, 2.0)
    assert none["source"] == "none" and none["power_w"] is None and none["energy_mj"] is None
    # A real sensor without an idle reading takes the model's idle figure.
    mixed = br._power_result(6.0, 2, None, None, _Instant(), model, 0.5, 1.0)
    assert mixed["idle_w"] == 5.0 and mixed["idle_source"] == "model"


# --- thermals and throttling ------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "now", "occurred"),
    [
        ("throttled=0x0", [], []),
        (
            "throttled=0x50005",
            ["under_voltage", "throttled"],
            ["under_voltage_occurred", "throttled_occurred"],
        ),
        (
            "throttled=0xe000e",
            ["arm_freq_capped", "throttled", "soft_temp_limit"],
            ["arm_freq_capped_occurred", "throttled_occurred", "soft_temp_limit_occurred"],
        ),
        ("throttled=0x80000", [], ["soft_temp_limit_occurred"]),
    ],
)
def test_throttled_decoder(text, now, occurred):
    decoded = br.decode_throttled(text)
    assert decoded["now"] == now and decoded["occurred"] == occurred
    assert decoded["raw"] == text.split("=")[1]


def test_throttled_decoder_rejects_other_output():
    assert br.decode_throttled('error=1 error_msg="Command not registered"') is None
    assert br.decode_throttled(None) is None


def test_thermal_snapshot_of_each_fixture():
    snap = br.thermal_snapshot(str(FIXTURES / "pi5"), str(VCGENCMD))
    assert snap["temps_c"] == {"cpu-thermal": 51.65}
    assert snap["freq_mhz"] == {f"cpu{i}": 2400.0 for i in range(4)}
    assert snap["throttled"]["raw"] == "0x50000" and snap["throttled"]["now"] == []
    jp5 = br.thermal_snapshot(str(FIXTURES / "jetson-jp5"), None)
    assert jp5["temps_c"]["tj-thermal"] == pytest.approx(48.093) and len(jp5["freq_mhz"]) == 6
    assert jp5["throttled"] is None
    rapl = br.thermal_snapshot(str(FIXTURES / "rapl"), None)
    assert rapl["throttle_count"] == 0 and rapl["temps_c"] == {"x86_pkg_temp": 52.0}
    assert br.environment(str(FIXTURES / "jetson-jp4"))["governor"] == "schedutil"


def test_throttling_verdict():
    def snap(raw=None, count=None):
        return {"throttled": br.decode_throttled(raw) if raw else None, "throttle_count": count}

    assert not br.throttling_seen(snap("throttled=0x50000"), snap("throttled=0x50000"))
    assert br.throttling_seen(snap("throttled=0x0"), snap("throttled=0x4"))  # now
    assert br.throttling_seen(snap("throttled=0x0"), snap("throttled=0x40000"))  # began
    assert br.throttling_seen(snap(count=3), snap(count=5))  # x86 counters moved
    assert not br.throttling_seen(snap(count=3), snap(count=3))


def test_cooldown_waits_by_sleeping_and_can_time_out():
    temps = iter([80.0, 75.0, 69.0])
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds

    info = br.cooldown_wait(70.0, 60.0, lambda: next(temps), 5.0, lambda: now[0], sleep)
    assert info["timed_out"] is False and info["end_c"] == 69.0 and info["waited_s"] == 10.0
    assert sleeps == [5.0, 5.0]

    now[0] = 0.0
    info = br.cooldown_wait(70.0, 12.0, lambda: 90.0, 5.0, lambda: now[0], sleep)
    assert info["timed_out"] is True and info["waited_s"] == pytest.approx(12.0)

    info = br.cooldown_wait(70.0, 12.0, lambda: None, 5.0, lambda: now[0], sleep)
    assert info["timed_out"] is False and "skipped" in info


def test_max_temp_reads_the_hottest_zone():
    assert br.max_temp_c(str(FIXTURES / "jetson-jp4")) == 100.0  # PMIC-Die reports 100
    assert br.max_temp_c(os.devnull) is None


# --- host load (proc/stat) ------------------------------------------------------------

HOST_LOAD = FIXTURES / "host-load"


def test_proc_stat_is_read_per_cpu_with_procs_running():
    stat = br.read_cpu_stat(str(HOST_LOAD / "idle"))
    assert stat["procs_running"] == 1
    # busy = user + nice + system + irq + softirq; idle = idle + iowait; then steal.
    assert stat["cpus"][0] == (196394 + 107 + 27896 + 0 + 169, 750507 + 4266, 2611)
    assert sorted(stat["cpus"]) == [0, 1]  # the aggregate "cpu" line is not a CPU
    assert br.read_cpu_stat(str(HOST_LOAD / "crowded"))["procs_running"] == 9
    assert br.read_loadavg(str(HOST_LOAD / "crowded")) == [8.40, 7.95, 6.10]
    assert br.read_cpu_stat(str(FIXTURES / "rapl")) is None  # no proc/stat there
    assert br.read_loadavg(str(FIXTURES / "rapl")) is None


def test_host_load_between_two_readings():
    before = br.read_cpu_stat(str(HOST_LOAD / "idle"))
    after = br.read_cpu_stat(str(HOST_LOAD / "stolen"))
    # 1 s later each CPU was busy 30 ticks (0.3 s) and lost 10 ticks (10%) to steal;
    # the runner itself used 0.2 s of CPU, so others used 0.6 - 0.2 = 0.4 CPUs.
    load = br.host_load(before, after, [0, 1], own_cpu_s=0.2, wall_s=1.0, ticks_per_s=100)
    assert load["cpus"] == [0, 1] and load["online_cpus"] == 2
    assert load["other_cpu"] == pytest.approx(0.4)
    assert load["steal_fraction"] == pytest.approx(0.10)
    assert load["procs_running"] == [1, 1] and load["others_runnable_per_cpu"] == 0.0
    # Only the CPUs the runner may use count for steal and busy time.
    one = br.host_load(before, after, [1, 7], own_cpu_s=0.0, wall_s=1.0, ticks_per_s=100)
    assert one["cpus"] == [1] and one["other_cpu"] == pytest.approx(0.3)
    # Runnable tasks: the smaller count of the two ends, less the runner, per CPU.
    crowded = br.read_cpu_stat(str(HOST_LOAD / "crowded"))
    load = br.host_load(crowded, crowded, [0, 1], own_cpu_s=0.0, wall_s=1.0)
    assert load["others_runnable_per_cpu"] == 4.0
    spike = br.host_load(before, crowded, [0, 1], own_cpu_s=0.0, wall_s=1.0)
    assert spike["others_runnable_per_cpu"] == 0.0  # one crowded end is not a crowd
    assert br.host_load(None, after, [0], 0.0, 1.0) is None
