"""The report: Markdown and one self-contained HTML page, its sections, its figures, the CLI and bad input."""
import base64
import json
import os
import re
import shutil
import subprocess

import pytest

from refbench.cli import main
from refbench.report.build import write_report
from tests.fixtures.report_records import CPU, conv_kernel, converge, ddp, matrix, softmax_kernel, throughput
from tests.records.test_analysis import COMMITTED

SECTIONS = ["machines-and-runs", "speed-up-and-throughput", "throughput-against-batch-size", "latency-distributions",
            "peak-memory", "compile-time-and-first-step", "energy-per-sample", "correctness", "convergence",
            "data-parallel-scaling", "kernels", "cells-that-did-not-give-a-measurement"]
_DATA_URI = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


def _everything():
    return [*matrix(), throughput("mlp", "cuda", 150_000, batch_size=256), throughput("mlp", "cudagraphs", 1_500_000,
                                                                                      batch_size=256),
            converge("mlp", parity={"base": "cuda", "delta": 0.004, "margin": 0.01, "ok": True}, seed=0),
            converge("mlp", "cuda+amp-bf16", reached=False),
            softmax_kernel("torch", 200.0), softmax_kernel("triton", 300.0), softmax_kernel("triton", 250.0, n=4096),
            softmax_kernel("torch", 220.0, n=4096), conv_kernel("cudnn", 20.0, roofline_fraction=0.5),
            conv_kernel("triton", 10.0, roofline_fraction=0.25),
            throughput("lenet5", "cuda", 10_000, mode="infer", unstable=True, threads=8,
                       noise={"load_average_1m": 3.5, "other_processes_cores": 0.4, "reasons": ["load average 3.5 on 2 cores"]}),
            throughput("convnet3", "cuda", 10_000, mode="infer", unstable=True),
            ddp("mlp", 1, 40_000, 1.0), ddp("mlp", 2, 24_000, 0.3)]


def _report(tmp_path, records, name="r.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return write_report([path], tmp_path / "out")


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The report of records of every kind, built once for the tests that read it."""
    return _report(tmp_path_factory.mktemp("full"), _everything())


def test_every_section_when_its_records_exist(full):
    written = full
    html = written.html.read_text()
    for anchor in SECTIONS:
        assert f'id="{anchor}"' in html, anchor
    md = written.markdown.read_text()
    assert "## Speed-up and throughput" in md and "### train, batch 128" in md


def test_sections_without_records_are_left_out(tmp_path):
    html = _report(tmp_path, [throughput("mlp", "cpu", 1000, env=CPU), throughput("mlp", "cpu+int8", 2000, env=CPU,
                                                                                  mode="train")]).html.read_text()
    for absent in ("energy-per-sample", "convergence", "kernels", "data-parallel-scaling", "cells-that-did-not-give-a-measurement",
                   "throughput-against-batch-size"):
        assert f'id="{absent}"' not in html
    assert 'id="speed-up-and-throughput"' in html and "cpu+int8 / cpu" in html


def test_ddp_records_give_the_scaling_section_and_stay_out_of_the_speed_ups(full):
    md = full.markdown.read_text()
    scaling = md.split("## Data-parallel scaling")[1].split("\n## ")[0]
    assert "| mlp cpu weak | 2 | 24,000 | 0.30 | 25% |" in scaling
    assert "world_size" not in md.split("## Data-parallel scaling")[0]


def test_the_numbers_in_the_tables(full):
    md = full.markdown.read_text()
    assert "| workload | cudagraphs / cuda | compile / cuda |" in md
    assert "| mlp | 8.00x | 0.50x |" in md                              # the order the run measured them
    assert "| rnn_rows | 2.00x† | - |" in md                         # the eager rnn_rows cell has a CV of 20%
    assert "| geomean | 4.00x over 2 | 0.50x over 1 |" in md
    assert "| mlp | 100,000 | 800,000 | 50,000 |" in md                # samples/s, the later mlp/cuda record
    assert "| mlp | 3.0 / 6.0 | 6.0 / 12.0 (2.00x) | 3.0 / 6.0 (1.00x) |" in md   # peak MiB, first step, ratio
    assert "| mlp | 50.0 ms | 50.0 ms | 50.0 ms (compile 12.5 s) |" in md   # first step, compile time
    assert "0.0002 J (350 W)" in md                                     # energy
    assert "| cuda | 7 | 6 | 86% | 0 | 20 | lenet5 train: grad:fc.weight |" in md
    assert "| mlp | cuda | fast | fashion-mnist | 128 | accuracy 0.9 | 0.91 | yes | 4.0 | 4.0 | 0 | ok vs cuda (delta 0.004, margin 0.01) |" in md
    assert "| mlp | cuda+amp-bf16 | fast | fashion-mnist | 128 | accuracy 0.9 | 0.85 | no | - |" in md
    assert "| lenet5 | cuda | infer | 128 | 12.800 | 12.672-12.928 | 1.0% | load average 3.5 on 2 cores |" in md
    assert "| rnn_rows | cuda | train | 128 | 2.133 | 1.707-2.560 | 20.0% | CV 20% > 10% |" in md
    assert "| convnet3 | cuda | infer | 128 | 12.800 | 12.672-12.928 | 1.0% | flagged by the run |" in md
    assert "torch CPU threads per cell: 8." in md
    assert "| float16 | M=4096, N=1024 | 200 (50%) | 300 (75%) |" in md  # softmax GB/s (share of copy bandwidth)
    assert "| bf16 | lenet5.features.0 n=128 | 20 (50%) | 10 (25%) |" in md  # conv2d TFLOP/s (share of roofline)
    assert "| lenet5 | cuda | train | 128 | failed | wrong answer: grad:fc.weight" in md
    assert ("| mlp | compile-max-autotune | train | 128 | timeout | no result within 600 s, killed; its last "
            "output: x … z |") in md


def test_the_html_is_one_self_contained_file_with_embedded_figures(full):
    html = full.html.read_text()
    images = _DATA_URI.findall(html)
    # heat-maps (train and infer at 128, train at 256), batch scaling, 3 latency figures, convergence,
    # data-parallel scaling, then one per kernel and direction: softmax fwd (two shapes, one figure), conv2d fwd.
    assert len(images) == 3 + 1 + 3 + 1 + 1 + 2
    assert all(base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n" for data in images)
    text = _DATA_URI.sub("", html)
    assert "http" not in text and "<script" not in text and "<link" not in text and "@import" not in text
    assert html.count("<img") == len(images)


def test_the_header_counts_corrupt_lines(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(throughput("mlp", "cuda", 1)) + "\n{broken\n")
    written = write_report([path], tmp_path / "out")
    assert written.warnings == [f"{path}:2: not JSON (Expecting property name enclosed in double quotes, column 2), "
                                "skipped"]
    assert f"1 corrupt lines skipped: {path}:2" in written.html.read_text()


def test_report_cli_writes_both_files_and_prints_its_summary(tmp_path, capsys):
    path = tmp_path / "r.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in matrix()) + "{broken\n")
    assert main(["report", str(path), "-o", str(tmp_path / "rep")]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert lines[0] == f"report written to {tmp_path}/rep/report.md and {tmp_path}/rep/report.html"
    assert lines[1].startswith("cells: 10") and "no measurement: backend channels-last (1 skipped)" in lines
    assert any(line.startswith("best backend: cudagraphs") for line in lines)
    assert err == f"refbench: warning: {path}:{len(matrix()) + 1}: not JSON (Expecting property name enclosed in " \
                  "double quotes, column 2), skipped\n"
    # Without -o the report goes next to the first result file.
    assert main(["report", str(path)]) == 0 and (tmp_path / "report.html").exists()


@pytest.mark.parametrize("setup, message", [
    (lambda d: [str(d / "missing.jsonl")], "no result file"),
    (lambda d: [_touch(d / "empty.jsonl")], "no records in"),
    (lambda d: [_touch(d / "junk.jsonl", "not json\n")], "(1 corrupt lines)"),
    (lambda d: [_touch(d / "alien.jsonl", '{"schema": 9, "name": "x"}\n')], "alien.jsonl:1: a record of schema 9"),
    (lambda d: [_touch(d / "r.jsonl", json.dumps(throughput("mlp", "cuda", 1)) + "\n"), "-o", "/proc/refbench"],
     "cannot write the report into /proc/refbench"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, setup, message):
    assert main(["report", *setup(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("refbench: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "report.html").exists()


def test_a_failed_write_is_one_line_and_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    import errno

    def full_disk(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    path = _touch(tmp_path / "r.jsonl", json.dumps(throughput("mlp", "cuda", 1)) + "\n")
    monkeypatch.setattr("refbench.report.build.os.replace", full_disk)
    assert main(["report", path, "-o", str(tmp_path / "rep")]) == 2
    assert "(No space left on device); free space or choose another directory" in capsys.readouterr().err
    assert list((tmp_path / "rep").iterdir()) == []


def _touch(path, text=""):
    path.write_text(text)
    return str(path)


def test_run_writes_the_report_into_a_directory(tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    argv = ["run", "--workloads", "mlp", "--modes", "infer", "--batch-sizes", "2", "--iters", "1", "--isolation",
            "inline", "--backends", "cpu,cuda", "--out", str(out)]
    assert main([*argv, "--report", "/proc/refbench"]) == 2 and out.read_text() == ""   # refused before running
    assert "cannot write the report into /proc/refbench" in capsys.readouterr().err
    assert main([*argv, "--report", str(tmp_path / "rep")]) == 0
    assert "report written to" in capsys.readouterr().out
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| mlp as_written=False | cuda | infer | 2 | skipped | no CUDA device on this machine |" in md


# Rendering in a real browser: headless Chromium (Debian's `chromium` package).

_CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                   "--disable-component-update", "--disable-sync", "--hide-scrollbars"]
# Loaded first in a copy of the page: notes every resource that fails to load and every broken image, and
# the width a reader must scroll through once loaded (the page's, or the window's plus the overflow of the
# widest table box), in attributes of <html> that --dump-dom prints.
_PROBE = """<script>
var failed = [];
window.addEventListener("error", function (e) { failed.push((e.target && (e.target.src || e.target.href)) || String(e.message)); }, true);
window.addEventListener("load", function () {
  for (var img of document.images) { if (!img.complete || img.naturalWidth === 0) failed.push("broken " + img.src.slice(0, 60)); }
  document.documentElement.setAttribute("data-failed", JSON.stringify(failed));
  var wide = Array.from(document.querySelectorAll(".scroll")).filter(function (b) { return b.scrollWidth > b.clientWidth; });
  document.documentElement.setAttribute("data-width", Math.max(document.documentElement.scrollWidth,
      document.documentElement.clientWidth + Math.max(0, ...wide.map(function (b) { return b.scrollWidth - b.clientWidth; }))));
});
</script>"""


def _chromium():
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("headless Chromium is not installed (Debian: apt-get install chromium)")
    return found


def render(html_path, tmp_path, *, width=1366, height=900, screenshot=None):
    """Load ``html_path`` (a probed copy) in headless Chromium: (resources that failed, page width, console lines)."""
    browser = _chromium()
    probed = tmp_path / f"probed-{html_path.name}"
    probed.write_text(html_path.read_text().replace("<head>", "<head>" + _PROBE, 1))
    flags = [*_CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={width},{height}",
             "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000"]
    done = subprocess.run([browser, *flags, "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=300)
    if screenshot is not None:
        subprocess.run([browser, *flags, f"--screenshot={screenshot}", html_path.as_uri()], capture_output=True,
                       timeout=300, check=True)
    failed = re.search(r'data-failed="([^"]*)"', done.stdout)
    page_width = re.search(r'data-width="(\d+)"', done.stdout)
    assert failed and page_width, f"the page did not finish loading: {done.stderr[-2000:]}"
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return json.loads(failed.group(1).replace("&quot;", '"')), int(page_width.group(1)), console


@pytest.mark.slow
@pytest.mark.parametrize("which", ["every section", "the committed sample"])
def test_the_report_renders_in_chromium_without_errors_or_sideways_scrolling(full, tmp_path, which):
    """Loads with no failed resource and no console message, fits 1280 px; REFBENCH_SCREENSHOT=PATH keeps the
    screenshot for a person to look at."""
    html = full.html if which == "every section" else COMMITTED.parent / "report.html"
    shot = tmp_path / "report.png"
    failed, width, console = render(html, tmp_path, width=1280, screenshot=shot)
    assert failed == [] and console == []
    assert width <= 1280, f"a reader scrolls through {width} px on a 1280 px screen"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("REFBENCH_SCREENSHOT"):
        shutil.copy(shot, os.environ["REFBENCH_SCREENSHOT"])


@pytest.mark.slow
def test_the_browser_check_catches_a_broken_page(tmp_path):
    """The faults the test above exists for: a resource from the network, a missing image, a page too wide."""
    page = tmp_path / "broken.html"
    page.write_text('<!DOCTYPE html><html><head></head><body><img src="missing.png">'
                    '<img src="http://127.0.0.1:9/x.png"><div style="width:3000px">wide</div></body></html>')
    failed, width, _ = render(page, tmp_path, width=1366)
    assert any("missing.png" in f for f in failed) and any("127.0.0.1" in f for f in failed)
    assert width > 1366
    boxed = tmp_path / "boxed.html"   # a table too wide for its scrolling box
    boxed.write_text('<!DOCTYPE html><html><head></head><body><div class="scroll" style="overflow-x:auto">'
                     '<table><tr><td style="min-width:3000px">wide</td></tr></table></div></body></html>')
    assert render(boxed, tmp_path, width=1366)[1] > 1366


@pytest.mark.slow
def test_a_report_of_a_real_kernel_sweep(tmp_path):
    """A real softmax sweep (the Triton kernel in the interpreter on CPU) through the kernels section."""
    from refbench.harness.machine import collect_env
    from refbench.kernelbench.softmax import run_sweep

    records = run_sweep(device="cpu", dtypes=["float32"], ops=["softmax"], directions=["fwd"], shapes="quick",
                        run_id="k", env=collect_env())
    md = _report(tmp_path, records).markdown.read_text()
    assert "## Kernels" in md and "ran in the interpreter" in md
    assert "*Figure (in report.html): roofline of softmax fwd*" in md


def test_report_of_the_committed_cpu_results(tmp_path):
    written = write_report([COMMITTED], tmp_path)
    md = written.markdown.read_text()
    assert "| mlp as_written=False | 8.4 ms | 10.6 s (compile) |" in md   # first train step: eager, then compiled
    assert ("| lenet5 activation=relu as_written=False | cpu+int8 | train | 16 | skipped | int8 dynamic quantization "
            "is inference only |") in md
    assert written.summary[:2] == ["cells: 84 on 1 machine, from 2 runs", "status: ok 62, skipped 22"]
    assert written.html.stat().st_size < 2_000_000


def test_a_seed_group_shows_its_mean_and_its_seeds_curves(tmp_path):
    """converge writes a record per seed (with its curve) and then the group's summary (the mean decides)."""
    seeds = [converge("mlp", seed=0, accuracy=0.90), converge("mlp", seed=1, accuracy=0.91)]
    summary = converge("mlp", seeds={"n": 2, "mean": 0.905, "std": 0.0071, "min": 0.90})
    del summary["metrics"]["curve"]
    md = _report(tmp_path, [*seeds, summary]).markdown.read_text()
    section = md[md.index("## Convergence"):]
    assert "*Figure (in report.html): convergence curves*" in section
    row = next(line for line in section.splitlines() if line.startswith("| mlp |"))
    assert "| 0.905 |" in row and "| 2, std 0.0071 |" in row


def test_a_workload_trained_under_two_recipes_is_two_rows(tmp_path):
    """`converge --as-written` trains under the target's recipe and the document's: neither hides the other."""
    fast = converge("mlp", recipe="fast")
    document = converge("mlp", recipe="document", reached=False)
    section = _report(tmp_path, [fast, document]).markdown.read_text().split("## Convergence")[1]
    rows = [line for line in section.splitlines() if line.startswith("| mlp |")]
    assert [row.split(" | ")[2] for row in rows] == ["fast", "document"]
    assert "| yes |" in rows[0] and "| no |" in rows[1]
