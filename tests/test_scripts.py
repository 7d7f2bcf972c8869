"""The command-line front doors: help texts, and one readable error line (no traceback) for bad input."""

import copy

import pytest
from conftest import ROOT, du, run_scripts
from speed import speed_up

SCRIPTS = ["train.py", "sample.py", "evaluate.py", "benchmark.py", "build_sprites.py"]
MISSING = [
    ("sample.py", ["--weights", "nowhere.pth"], "No weights file at nowhere.pth"),
    ("train.py", ["--resume", "nowhere/checkpoint.pt"], "No training checkpoint at nowhere/checkpoint.pt"),
    ("benchmark.py", ["--weights", "nowhere.pth"], "No weights file at nowhere.pth"),
]
DEVICE_SCRIPTS = ["sample.py", "evaluate.py", "train.py"]
BAD_STEPS = ["0", "-3", "two"]
BAD_OUTPUTS = [
    ("--out", "samples", "extension"),
    ("--out", "grid.txt", "extension"),
    ("--gif", "anim.mp4", ".gif"),
    ("--npy", "sprites.png", ".npy"),
]


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """Every command line these tests try, run once (in one child process: see conftest.run_scripts).

    Returns {case: CompletedProcess}; the cases are named by the tests that read them.
    """
    import json

    tmp = tmp_path_factory.mktemp("cli")
    weights = du.save_model(du.course_model(), tmp / "m.pth")
    plain = tmp / "plain"
    plain.mkdir()
    unconditional = du.save_model(du.course_model(), plain / "model_trained.pth")
    (plain / "run.json").write_text(json.dumps({"config": {"context": False}}))  # as train.py writes it
    conditional = tmp / "conditional"
    conditional.mkdir()
    du.save_model(du.course_model(), conditional / "model_trained.pth")
    (conditional / "run.json").write_text(json.dumps({"config": {"context": True}}))
    elsewhere = tmp / "elsewhere"
    elsewhere.mkdir()
    sample = ["--weights", weights, "--sampler", "ddim", "--steps", "3", "--n", "4", "--out", tmp / "g.png"]
    one_step = ["--sampler", "ddim", "--steps", "1", "--n", "1", "--no-progress", "--out", tmp / "g1.png"]
    guided = ["--context", "hero", "--guidance", "2"]
    cases = {
        **{f"help {s}": (s, ["--help"]) for s in SCRIPTS},
        **{f"missing {s}": (s, args) for s, args, _ in MISSING},
        "unknown class": ("sample.py", ["--weights", weights, "--context", "wizard", "--n", "2", "--steps", "2"]),
        "sample": ("sample.py", [*sample, "--npy", tmp / "s.npy", "--context", "1,0,1,0,0", "--no-progress"]),
        "skip speed": ("benchmark.py", ["--skip-speed"]),
        **{f"gpu {s}": (s, ["--device", "gpu"]) for s in DEVICE_SCRIPTS},
        **{f"cuda {s}": (s, ["--device", "cuda"]) for s in DEVICE_SCRIPTS},
        **{f"steps {v}": ("sample.py", ["--steps", v]) for v in BAD_STEPS},
        **{f"{o} {v}": ("sample.py", ["--weights", "nowhere.pth", o, v]) for o, v, _ in BAD_OUTPUTS},
        "unconditional guided": ("sample.py", ["--weights", unconditional, *one_step, *guided]),
        "conditional guided": ("sample.py", ["--weights", conditional / "model_trained.pth", *one_step, *guided]),
        "relative weights": ("sample.py", ["--weights", "weights/context_model_trained.pth"], elsewhere),
        "evaluate unconditional": ("evaluate.py", ["--weights", unconditional, "--data", tmp / "no-data"]),
        "evaluate nothing": ("evaluate.py", ["--weights", unconditional, "--no-fd", "--n-per-class", "0"]),
        "evaluate negative": ("evaluate.py", ["--n-per-class", "-1"]),
    }
    results = run_scripts(list(cases.values()), tmp)
    return {"tmp": tmp, "elsewhere": elsewhere, **dict(zip(cases, results, strict=True))}


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_explains_itself(cli, script):
    result = cli[f"help {script}"]
    assert result.returncode == 0 and "usage:" in result.stdout


@pytest.mark.parametrize("script, args, message", MISSING)
def test_missing_files_end_with_one_readable_line(cli, script, args, message):
    result = cli[f"missing {script}"]
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_class_name_is_one_readable_line(cli):
    result = cli["unknown class"]
    assert result.returncode != 0 and "unknown --context 'wizard'" in result.stderr
    assert "Traceback" not in result.stderr


def test_sample_writes_a_grid_and_uint8_array(cli):
    import numpy as np

    result = cli["sample"]
    assert result.returncode == 0, result.stderr
    arr = np.load(cli["tmp"] / "s.npy")
    assert (cli["tmp"] / "g.png").exists() and arr.shape == (4, 16, 16, 3) and arr.dtype == np.uint8


def test_sample_fast_asks_for_the_compiled_frozen_copy(tmp_path, monkeypatch):
    """--fast hands the model to speed_up with freeze=True (that the compiled copy draws the same
    sprites as the eager model is tested in test_speed, where the compiling is paid once)."""
    mod = _load_script("sample")
    asked = []
    monkeypatch.setattr(mod, "speed_up", lambda model, freeze=False: asked.append(freeze) or model)
    weights = du.save_model(du.course_model(), tmp_path / "m.pth")
    args = ["--weights", str(weights), "--sampler", "ddim", "--steps", "1", "--n", "1", "--no-progress"]
    for extra in ([], ["--fast"]):
        assert mod.main([*args, "--out", str(tmp_path / "g.png"), *extra]) in (0, None)
    assert asked == [False, True]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("hero", [1, 0, 0, 0, 0]),
        ("side-facing", [0, 0, 0, 0, 1]),
        ("2", [0, 0, 1, 0, 0]),
        ("1,0,1,0,0", [1, 0, 1, 0, 0]),
    ],
)
def test_context_argument_forms(text, expected):
    mod = _load_script("sample")
    assert mod.parse_context(text).tolist() == expected
    with pytest.raises(ValueError, match="5 comma-separated"):
        mod.parse_context("1,0")
    with pytest.raises(ValueError, match=r"index must be 0\.\.4"):
        mod.parse_context("7")


def _load_script(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"{name}_script", ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_measures_loops_and_breakdown_on_a_tiny_model(monkeypatch):
    bench = _load_script("benchmark")
    model = du.ContextUnet(3, 8, 5, 8)
    fast = speed_up(copy.deepcopy(model))  # channels_last; compiling is tested in test_speed
    # T = 50 keeps the test short: "ddpm500" then runs DDPM on all 50 steps, and the breakdown knows it
    schedule = du.DDPMSchedule(timesteps=50)
    monkeypatch.setitem(bench.OUR_STEPS, "ddpm500", 50)
    best, runs, first_call_s, peak_flop = bench.bench_sampling(
        model, fast, schedule, n_sample=2, repeat=2, peak=(2, 8, 8, 3), peak_reps=3
    )
    loops = {f"{s}_{tag}" for s in ("ddpm500", "ddim25", "dpm15") for tag in ("ours", "nhwc", "fast")}
    loops |= {"forwards", "forwards_nhwc", "forwards_fast"}
    assert set(best) == loops | {"ddpm500_course", "ddim25_course", "peak_conv"}
    assert all(len(v) == 2 and min(v) == best[k] > 0 for k, v in runs.items()) and first_call_s > 0
    assert peak_flop == 3 * 2 * 2 * 8 * 8 * 9 * 8 * 8  # reps x 2 x batch x c_in x c_out x k^2 x pixels
    small_peak = bench.dense_peak_gflops
    monkeypatch.setattr(bench, "dense_peak_gflops", lambda: small_peak((32, 64), ((2, 8, 8, 3),), seconds=0.01))
    br = bench.bench_breakdown(model, schedule, 2, best, runs, peak_flop, repeat=1)
    kernels = {"matmul 32", "matmul 64", "conv3x3 8ch 8x8 b2", "conv3x3 8ch 8x8 b2 NHWC"}
    assert set(br["dense_gflops_s_by_kernel"]) == kernels
    assert br["dense_peak_gflops_s"] == max(br["dense_gflops_s_by_kernel"].values()) > 0
    assert br["matmul_peak_gflops_s"] == max(br["dense_gflops_s_by_kernel"][k] for k in ("matmul 32", "matmul 64"))
    assert br["peak_conv_gflops_s"] == pytest.approx(peak_flop / best["peak_conv"] / 1e9)
    assert br["forward_ms"] > 0 and br["forward_fast_ms"] > 0 and br["model_gflop_per_forward"] > 0
    for sampler in ("ddpm500", "ddim25", "dpm15"):
        assert 0 < br[f"{sampler}_loop_only_s"]
        assert all(br[f"{sampler}_{tag}_overhead_pct"] < 100 for tag in ("ours", "nhwc", "fast"))
    assert br["forward_nhwc_ms"] > 0 and 0 < br["fraction_nhwc_of_peak"]


def test_benchmark_fraction_of_peak_is_the_median_of_the_rounds_ratios(monkeypatch):
    """Rounds 2 and 3 run the machine 2x and 3x slower for everything; in round 4 the peak kernel
    runs 2x faster and the model 5x slower. The ratio model rate / peak rate is r in the first
    three rounds, whatever the drift, so the median is r (best against best would give r / 2)."""
    bench = _load_script("benchmark")
    model = du.ContextUnet(3, 8, 5, 8)
    monkeypatch.setattr(bench, "dense_peak_gflops", lambda: (100.0, {"matmul 64": 40.0, "conv": 100.0}))
    monkeypatch.setattr(bench, "_our_loops", lambda *a, **kw: {f"{s}_null": lambda: None for s in bench.OUR_STEPS})
    flops = bench.model_flops(model, 2)
    peak_flop, fw, fw_fast, peak_s, step = 1e9, 0.5, 0.25, 0.1, 0.004  # fw: seconds for 100 forwards
    slow = [1, 2, 3, 1]
    runs = {"peak_conv": [peak_s * k for k in slow[:3]] + [peak_s / 2]}
    for name, forwards in (("forwards", fw), ("forwards_nhwc", fw), ("forwards_fast", fw_fast)):
        runs[name] = [forwards * k for k in slow[:3]] + [forwards * 5]
    for sampler, steps in bench.OUR_STEPS.items():
        for tag in ("ours", "nhwc", "fast"):
            runs[f"{sampler}_{tag}"] = [steps * step * k for k in slow]
    best = {k: min(v) for k, v in runs.items()}
    br = bench.bench_breakdown(model, du.DDPMSchedule(), 2, best, runs, peak_flop, repeat=1)
    peak_rate = peak_flop / peak_s  # FLOP/s
    assert br["fraction_of_peak"] == pytest.approx((100 * flops / fw) / peak_rate)
    assert br["fraction_fast_of_peak"] == pytest.approx((100 * flops / fw_fast) / peak_rate)
    assert br["ddpm500_fast_fraction_of_peak"] == pytest.approx((flops / step) / peak_rate)
    assert br["fraction_fast_of_matmul_peak"] == pytest.approx(flops / (fw_fast / 100) / 1e9 / 40.0)
    assert br["peak_conv_gflops_s"] == pytest.approx(2 * peak_rate / 1e9)  # its best round


def test_benchmark_speed_report_fills_every_row_on_a_tiny_model(monkeypatch):
    bench = _load_script("benchmark")
    model = du.ContextUnet(3, 8, 5, 8)
    small_peak = bench.dense_peak_gflops
    monkeypatch.setattr(bench, "dense_peak_gflops", lambda: small_peak((32,), ((2, 8, 8, 3),), seconds=0.01))
    monkeypatch.setattr(bench, "bench_training", lambda *a: {"course_img_s": 100.0, "ours_img_s": 150.0})
    monkeypatch.setattr(bench, "bench_data_parallel", lambda *a: {"1_process_img_s": 150.0, "2_process_img_s": 120.0})
    monkeypatch.setattr(bench, "PEAK_CONV", (2, 8, 8, 3))
    monkeypatch.setattr(bench, "PEAK_REPS", 2)
    monkeypatch.setattr(bench, "speed_up", lambda m, **kw: copy.deepcopy(m))  # no compiling here
    monkeypatch.setitem(bench.OUR_STEPS, "ddpm500", 50)
    args = bench.argparse.Namespace(n=2, repeat=1, train_steps=1, data=None)
    report = {}
    lines = bench.speed_report(model, du.DDPMSchedule(timesteps=50), args, report)
    table = "\n".join(lines)
    for label in ("DDPM-500, 2 sprites", "DDIM-25, 2 sprites", "DPM-Solver++-15, 2 sprites", "1.50x faster",
                  "1 process 150 images/s, 2 processes 120 images/s (0.80x)"):  # fmt: skip
        assert label in table
    header = lines[0].split("|")
    ddpm = next(line for line in lines if line.startswith("| DDPM-500")).split("|")
    assert len(ddpm) == len(header) == 9 and all(cell.strip() for cell in ddpm[1:-1])  # every column filled
    assert {"sampling_s", "training", "data_parallel", "breakdown", "fast_first_call_s"} <= set(report)


def test_benchmark_skip_speed_needs_quality(cli):
    result = cli["skip speed"]
    assert result.returncode != 0 and "--skip-speed" in result.stderr and "Traceback" not in result.stderr


# -- bad command lines fail early with one line that says what to do ---------------------------


def error_line(result) -> str:
    """The line of stderr that carries the error (argparse prints its usage line first)."""
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if "error" in line]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("script", DEVICE_SCRIPTS)
def test_an_unknown_device_is_one_clear_line(cli, script):
    line = error_line(cli[f"gpu {script}"])
    assert "'gpu'" in line and "cpu" in line and "cuda" in line


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("script", DEVICE_SCRIPTS)
def test_cuda_without_a_gpu_is_one_clear_line(cli, script):
    line = error_line(cli[f"cuda {script}"])
    assert "no CUDA GPU" in line and "cpu" in line


@pytest.mark.parametrize("steps", BAD_STEPS)
def test_sample_steps_must_be_a_positive_whole_number(cli, steps):
    line = error_line(cli[f"steps {steps}"])
    assert "--steps" in line


@pytest.mark.parametrize("option, value, expected", BAD_OUTPUTS)
def test_output_names_are_checked_before_anything_is_loaded_or_sampled(cli, option, value, expected):
    # the weights do not exist: a check that ran after loading (or sampling) would report them instead
    line = error_line(cli[f"{option} {value}"])
    assert option in line and expected in line and "nowhere.pth" not in line


def test_context_and_guidance_on_unconditional_weights_warn(cli):
    result = cli["unconditional guided"]
    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr and "without context" in result.stderr and "run.json" in result.stderr
    quiet = cli["conditional guided"]
    assert quiet.returncode == 0 and "warning" not in quiet.stderr


def test_evaluate_warns_that_a_model_without_context_follows_no_class(cli):
    warned = cli["evaluate unconditional"]  # warned first, then stopped by the missing data folder
    assert "warning" in warned.stderr and "--n-per-class 0 skips it" in warned.stderr
    assert "no-data" in error_line(warned)
    assert "nothing to measure" in error_line(cli["evaluate nothing"])
    assert "--n-per-class" in error_line(cli["evaluate negative"]) and ">= 0" in error_line(cli["evaluate negative"])


def test_the_shipped_model_trained_is_the_context_model_and_gets_no_warning():
    """weights/model_trained.pth is byte-identical to the context model (MANIFEST.json): guidance works."""
    mod = _load_script("sample")
    record = mod.training_record(du.WEIGHTS_DIR / "model_trained.pth")
    assert record["context"] is True and "MANIFEST.json" in record["source"]


def test_a_relative_weights_path_from_another_folder_is_explained(cli):
    line = error_line(cli["relative weights"])
    assert "git checkout" not in line and str(cli["elsewhere"]) in line


def test_scripts_write_committed_docs_only_when_asked(cli):
    assert "docs/" not in cli["help sample.py"].stdout
    bench_help = cli["help benchmark.py"].stdout
    assert "default docs/" not in bench_help and "default runs/benchmark/" in bench_help
