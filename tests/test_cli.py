"""The ``gpuau`` command line: version, info, models fetch|verify|path, and the subcommand registry."""
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpuau import __version__, _deps, cli
from gpuau.models import store
from gpuau.models.manifest import LANDMARK_MODEL, load_manifest

EYES = load_manifest().in_groups(["clnf-eyes"])


def gpuau(*args, stdin=subprocess.DEVNULL, env=None):
    """Run ``python -m gpuau ARGS`` in a subprocess (the real entry point) and return the completed process."""
    return subprocess.run([sys.executable, "-m", "gpuau", *map(str, args)], capture_output=True, text=True,
                          stdin=stdin, env=env, timeout=120)


def copy_group(src: Path, dst: Path, entries=EYES) -> Path:
    for e in entries:
        (dst / e.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / e.path, dst / e.path)
    return dst


def test_version(capsys):
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out == f"gpuau {__version__}\n"


def test_entry_point_exits_with_mains_status_and_flushed_output(tmp_path, media_dir):
    """``python -m gpuau`` (``cli.console``) ends the process right after ``main``: its status, all of
    its output, and a finished analysis's CSV in place, complete."""
    assert (r := gpuau("version")).returncode == 0 and r.stdout == f"gpuau {__version__}\n"
    assert gpuau("analyze", tmp_path / "missing.mp4", "-o", tmp_path).returncode == 1
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copyfile(media_dir / "sample1.jpg", frames / "a.jpg")
    r = gpuau("analyze", frames, "-o", tmp_path / "out")
    assert r.returncode == 0 and "done             1" in r.stderr
    lines = (tmp_path / "out" / "frames.csv").read_text().splitlines()
    assert len(lines) == 2 and lines[0].startswith("frame, face_id")


def test_no_command_prints_help_and_exits_2(capsys):
    assert cli.main([]) == 2
    assert "models" in capsys.readouterr().err
    assert cli.main(["models"]) == 2


def test_models_verify_shared_folder_subprocess(models_dir):
    r = gpuau("models", "verify", models_dir)
    assert r.returncode == 0, r.stderr
    assert "all 89 files present and verified" in r.stdout
    assert r.stdout.count(" ok ") == len(load_manifest().groups)


def test_models_verify_broken_copy_names_both_files_subprocess(tmp_path, models_dir):
    folder = copy_group(models_dir, tmp_path / "m", load_manifest().files[:8])  # mtcnn + part of clnf
    corrupt = folder / load_manifest().files[0].path
    corrupt.write_bytes(corrupt.read_bytes().replace(b"Net", b"NeT"))
    missing = load_manifest().files[5].path
    (folder / missing).unlink()
    r = gpuau("models", "verify", folder)
    assert r.returncode == 1
    assert f"sha256 mismatch: {load_manifest().files[0].path}" in r.stdout
    assert f"missing: {missing}" in r.stdout
    assert f"Fix: gpuau models fetch --dir {folder}" in r.stderr


def test_models_fetch_subprocess_with_accept_license(tmp_path, models_dir):
    base = copy_group(models_dir, tmp_path / "mirror").as_uri()
    target = tmp_path / "models"
    r = gpuau("models", "fetch", "--dir", target, "--accept-license", "--base-url", base, "--group", "clnf-eyes")
    assert r.returncode == 0, r.stderr
    assert "ACADEMIC OR NON-PROFIT ORGANIZATION NONCOMMERCIAL RESEARCH USE ONLY" in r.stdout
    assert "OpenFace-license.txt" in r.stdout
    assert f"done: {len(EYES)} downloaded" in r.stdout
    assert store.verify(target, groups=["clnf-eyes"]).ok
    r = gpuau("models", "fetch", "--dir", target, "--group", "clnf-eyes")
    assert r.returncode == 0 and "nothing to download" in r.stdout


def test_models_fetch_refuses_without_stdin_subprocess(tmp_path, models_dir):
    target = tmp_path / "models"
    r = gpuau("models", "fetch", "--dir", target, "--base-url", models_dir.as_uri())
    assert r.returncode == 2
    assert "no answer on stdin" in r.stderr and "licence was not accepted" in r.stderr
    assert f"gpuau models fetch --dir {target} --accept-license" in r.stderr
    assert not target.exists()


@pytest.mark.parametrize("answer, code", [("YES\n", 0), ("no\n", 2)])
def test_models_fetch_prompt(answer, code, tmp_path, models_dir, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(answer))
    target = tmp_path / "models"
    assert cli.main(["models", "fetch", "--dir", str(target), "--base-url", models_dir.as_uri(),
                     "--group", "clnf-eyes"]) == code
    assert "Type YES" in capsys.readouterr().out
    assert store.verify(target, groups=["clnf-eyes"]).ok == (code == 0)


def test_models_fetch_error_is_one_line_and_exit_2(tmp_path, models_dir, capsys):
    src = copy_group(models_dir, tmp_path / "mirror")
    (src / EYES[0].path).write_bytes(b"not the model")
    assert cli.main(["models", "fetch", "--dir", str(tmp_path / "m"), "--accept-license", "--base-url", src.as_uri(),
                     "--group", "clnf-eyes"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpuau: error: ") and err.count("\n") == 1 and EYES[0].path in err


def test_models_path(models_dir, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("GPUAU_MODELS", str(models_dir))
    assert cli.main(["models", "path"]) == 0
    assert capsys.readouterr().out == f"{models_dir}\n"
    monkeypatch.setenv("GPUAU_MODELS", str(tmp_path / "empty"))
    assert cli.main(["models", "path"]) == 1
    out = capsys.readouterr()
    assert out.out == f"{tmp_path / 'empty'}\n" and out.err.endswith(
        f"no such folder. Fix: check $GPUAU_MODELS, or download the model files there: gpuau models fetch --dir "
        f"{tmp_path / 'empty'}\n")


def test_info_reports_versions_device_backends_models(models_dir, monkeypatch, capsys):
    monkeypatch.setenv("GPUAU_MODELS", str(models_dir))
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    for key in ("python", "numpy", "numba", "opencv", "pyav", "onnxruntime", "cupy", "NVRTC", "CUDA device", "backends"):
        assert f"\n{key} " in out
    onnxruntime = next(line for line in out.splitlines() if line.startswith("onnxruntime "))
    assert "; providers: " in onnxruntime and "CPUExecutionProvider" in onnxruntime
    nvrtc = _deps.installed(("nvidia-cuda-nvrtc-cu12", "nvidia-cuda-nvrtc"))  # the [nvrtc] extra, or none
    assert ("(nvidia-cuda-nvrtc" in out) if nvrtc else ("NVRTC        not installed (on a GPU CuPy compiles" in out)
    assert "cpu" in out and "all 89 files verified" in out
    monkeypatch.setenv("CXX", "no-such-c++")  # the emulator's compiler is GPUAU_EMU_CXX's, not CXX's
    assert cli.main(["info"]) == 0
    assert ", emulated, " in capsys.readouterr().out
    monkeypatch.setenv("GPUAU_EMU_CXX", "no-such-c++")
    assert cli.main(["info"]) == 0
    assert "emulated unavailable (no C++ compiler: set GPUAU_EMU_CXX)" in capsys.readouterr().out


def test_onnxruntime_conflict_is_one_error_with_the_fix(monkeypatch, capsys):
    versions = {"onnxruntime": "1.20.0", "onnxruntime-gpu": "1.20.0"}
    monkeypatch.setattr(_deps, "installed_version", versions.get)
    with pytest.raises(_deps.DependencyError) as e:
        _deps.check_onnxruntime()
    assert "onnxruntime 1.20.0, onnxruntime-gpu 1.20.0" in str(e.value)
    assert "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime" in str(e.value)
    assert cli.main(["info"]) == 0
    assert "onnxruntime  PROBLEM: several onnxruntime builds" in capsys.readouterr().out
    monkeypatch.setattr(_deps, "installed_version", {"onnxruntime-gpu": "1.20.0"}.get)
    assert _deps.check_onnxruntime() == "onnxruntime-gpu"
    monkeypatch.setattr(_deps, "installed_version", {}.get)
    with pytest.raises(_deps.DependencyError, match="Fix: pip install onnxruntime"):
        _deps.check_onnxruntime()


def test_info_reports_an_onnxruntime_that_does_not_import(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # installed, but its import fails (a build for another numpy)
    assert cli.main(["info"]) == 0
    assert "does not import (ModuleNotFoundError" in capsys.readouterr().out


def test_onnxruntime_of_this_environment_passes_the_check():
    assert _deps.check_onnxruntime() in _deps.ONNXRUNTIME_DISTRIBUTIONS


def test_a_new_subcommand_is_one_registered_function(monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMANDS", list(cli.COMMANDS))
    monkeypatch.setitem(cli.GROUPS, "demo", "demonstration group")

    @cli.command("demo run", "run the demo", cli.arg("video"), cli.arg("-n", type=int, default=1))
    def demo(args):
        print(args.video * args.n)
        return 3

    assert cli.main(["demo", "run", "ab", "-n", "2"]) == 3
    assert capsys.readouterr().out == "abab\n"
    assert "demonstration group" in cli.build_parser().format_help()


def test_models_file_errors_become_exit_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "COMMANDS", list(cli.COMMANDS))

    @cli.command("needs-models", "uses a model file")
    def needs_models(args):
        store.model_file(f"{LANDMARK_MODEL}/tris_68.txt", tmp_path)
        return 0

    assert cli.main(["needs-models"]) == 2
    assert capsys.readouterr().err == (f"gpuau: error: no OpenFace model folder at {tmp_path} (from argument): "
                                       f"it lacks {LANDMARK_MODEL}. Fix: gpuau models fetch --dir {tmp_path}\n")


def test_ci_runs_the_readme_test_command():
    root = Path(__file__).resolve().parents[1]
    readme, ci = (root / "README.md").read_text(), (root / ".ci" / "run").read_text()
    command = "python -m pytest -q"
    assert f'pip install -e ".[test,nvrtc]" && {command}' in readme
    assert f"\n{command}\n" in ci and 'pip install --quiet -e ".[test,nvrtc]"' in ci


def test_models_verify_on_a_subfolder_names_the_right_folder(models_dir, capsys):
    """A folder in the wrong layout gets the group table and the error naming the right folder, not a line for
    each of the 89 files it lacks."""
    assert cli.main(["models", "verify", str(models_dir / "lib")]) == 1  # the model files are not in order
    out, err = capsys.readouterr()
    assert err.endswith(f"but {models_dir} is. Fix: pass {models_dir} instead\n")
    assert "missing:" not in out and out.count(" BAD ") == len(load_manifest().groups)


@pytest.fixture
def gpuau_logger():
    """The ``gpuau`` logger, restored after the test (``--verbose`` sets its level and adds a handler)."""
    import logging

    logger = logging.getLogger("gpuau")
    level, handlers = logger.level, list(logger.handlers)
    yield logger
    logger.handlers[:] = handlers
    logger.setLevel(level)


def test_analyze_verbose_lines_and_summary(media_dir, tmp_path, capsys, gpuau_logger, monkeypatch):
    import gpuau.video

    serial = []  # the command owns its process: OpenCV's calls run on the calling thread
    monkeypatch.setattr(gpuau.video, "serial_opencv", lambda: serial.append(True))
    out, missing = tmp_path / "out", tmp_path / "missing.mp4"
    inputs = [str(media_dir / "sample1.jpg"), str(missing)]
    assert cli.main(["analyze", *inputs, "-o", str(out), "--device", "cpu", "--verbose"]) == 1
    assert serial == [True]
    err = capsys.readouterr().err
    assert "gpuau: device cpu, models " in err and "quality exact" in err
    done = (rf"done     {re.escape(str(media_dir / 'sample1.jpg'))}: 1 frames, 1 with a face, "
            rf"[\d.]+ s \([\d.]+ frames/s\)")
    assert re.search(rf"{done} -> {re.escape(str(out / 'sample1.csv'))}\n", err)
    assert f"failed   {missing}: no such file or folder" in err
    summary = err[err.index("\ninputs"):]
    for line in ("inputs           2", "done             1", "failed           1", "frames           1",
                 "faces            1", f"FAILED {missing}: no such file or folder"):
        assert line in summary
    assert "elapsed " in summary and " frames/s" in summary
    assert cli.main(["analyze", inputs[0], "-o", str(out), "-v"]) == 0
    assert f"skipped  {media_dir / 'sample1.jpg'}: {out / 'sample1.csv'} exists" in capsys.readouterr().err
    assert cli.main(["analyze", inputs[0], "-o", str(out), "-v", "-q"]) == 2
    assert "exclude each other" in capsys.readouterr().err


def test_half_a_camera_pair_is_refused_before_any_analysis(media_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["analyze", str(media_dir / "sample1.jpg"), "-o", str(out), "--fx", "600"]) == 2
    assert "give fx and fy together" in capsys.readouterr().err and not out.exists()
    assert cli.main(["analyze", str(media_dir / "sample1.jpg"), "-o", str(out), "--fx", "600", "--fy", "-5"]) == 2
    assert "focal lengths must be positive" in capsys.readouterr().err


def test_parquet_without_pyarrow_stops_before_any_analysis(media_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow raises ModuleNotFoundError
    assert cli.main(["analyze", str(media_dir / "sample1.jpg"), "-o", str(tmp_path), "--format", "parquet"]) == 2
    assert capsys.readouterr().err == ("gpuau: error: --format parquet: Parquet output needs pyarrow: "
                                       "pip install pyarrow\n")
    assert not list(tmp_path.iterdir())


def test_a_librarys_output_that_cannot_be_written_stops_before_any_analysis(media_dir, tmp_path, monkeypatch):
    import gpuau
    from gpuau.pipeline import Analyzer

    def no_analysis(*args, **kwargs):
        raise AssertionError("analysed")

    monkeypatch.setattr(Analyzer, "analyze_video", no_analysis)
    monkeypatch.setattr(Analyzer, "_analyze", no_analysis)
    video = media_dir / "default.wmv"
    (tmp_path / "taken.csv").mkdir()
    with pytest.raises(IsADirectoryError, match=f"a folder has the name of the file to write: '{tmp_path}/taken.csv'"):
        gpuau.analyze_video(video, device="cpu", output=tmp_path / "taken.csv")
    with pytest.raises(IsADirectoryError):
        Analyzer("cpu").write_video(video, tmp_path / "taken.csv")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ImportError, match="Parquet output needs pyarrow"):
        gpuau.analyze_video(video, device="cpu", output=tmp_path / "a.parquet", format="parquet")
    with pytest.raises(ImportError, match="Parquet output needs pyarrow"):
        Analyzer("cpu").write_video(video, tmp_path / "a.parquet", format="parquet")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.csv"]


def test_parquet_with_a_pyarrow_that_does_not_import_says_why(media_dir, tmp_path, monkeypatch, capsys):
    """A pyarrow built for numpy 2 in a numpy 1.x environment is installed, but its import fails: the error keeps
    pyarrow's reason instead of asking to install it."""
    class BrokenPyarrow:
        def find_spec(self, name, path=None, target=None):
            if name == "pyarrow":
                raise ImportError("pyarrow requires NumPy 2.0 or newer, found 1.26.4")

    monkeypatch.delitem(sys.modules, "pyarrow", raising=False)
    monkeypatch.delitem(sys.modules, "pyarrow.parquet", raising=False)
    monkeypatch.setattr(sys, "meta_path", [BrokenPyarrow(), *sys.meta_path])
    assert cli.main(["analyze", str(media_dir / "sample1.jpg"), "-o", str(tmp_path), "--format", "parquet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpuau: error: --format parquet: Parquet output needs pyarrow, which is installed but does "
                          "not import (pyarrow requires NumPy 2.0 or newer, found 1.26.4): ")
    assert "pip install 'pyarrow==17.*'" in err
    assert not list(tmp_path.iterdir())


def test_analyze_decode_nvdec_on_cpu_falls_back_to_opencv(media_dir, tmp_path, capsys, gpuau_logger):
    """--decode nvdec sends videos through the batched engine (one stream with --streams 1); on the CPU NVDEC
    does not apply: OpenCV decodes, a log line says so, and the file is --decode opencv's."""
    from media import read_frames, write_clip

    video = write_clip(tmp_path / "clip.avi", read_frames(media_dir / "changeLighting.wmv", 6), fps=15.0)
    common = ["-o", str(tmp_path / "out"), "--device", "cpu", "--overwrite"]
    assert cli.main(["analyze", str(video), *common, "-q"]) == 0
    opencv = (tmp_path / "out" / "clip.csv").read_bytes()
    assert cli.main(["analyze", str(video), *common, "-v", "--decode", "nvdec"]) == 0
    err = capsys.readouterr().err
    assert "streams 1, decode nvdec" in err and "decoding with OpenCV (NVDEC decodes for a CUDA device, not cpu)" in err
    assert (tmp_path / "out" / "clip.csv").read_bytes() == opencv


def test_analyze_orientation_of_a_rotated_video(tmp_path, capsys, gpuau_logger):
    """A video whose container asks for a turn: turned as OpenFace's reference build turns it by default, upright
    with --orientation display (the log line names the setting), and the outcome says which."""
    clip = Path(__file__).parent / "data" / "rotated_270.mp4"
    assert cli.build_parser().parse_args(["analyze", "x.mp4"]).orientation == "openface"
    common = [str(clip), "--device", "cpu", "--quality", "fast"]
    assert cli.main(["analyze", *common, "-o", str(tmp_path / "openface")]) == 0
    assert "turned 90 degrees clockwise as OpenFace's build with OpenCV 4.6 turns it" in capsys.readouterr().err
    assert cli.main(["analyze", *common, "-o", str(tmp_path / "display"), "--orientation", "display", "-v"]) == 0
    err = capsys.readouterr().err
    assert "orientation display" in err and "analysed upright (--orientation display" in err
    for name in ("openface", "display"):  # no face in it: a row per frame, each unsuccessful
        rows = (tmp_path / name / "rotated_270.csv").read_text().splitlines()[1:]
        assert len(rows) == 6 and all(r.split(", ")[4] == "0" for r in rows)


def test_analyze_decode_choices_and_refusals(media_dir, tmp_path, capsys):
    assert cli.build_parser().parse_args(["analyze", "x.mp4"]).decode == "opencv"
    with pytest.raises(SystemExit):
        cli.main(["analyze", "x.mp4", "--decode", "ffmpeg"])
    assert "invalid choice: 'ffmpeg'" in capsys.readouterr().err
    for extra in (["--multi-face"], ["--engine", "ray"]):
        image = str(media_dir / "sample1.jpg")
        assert cli.main(["analyze", image, "-o", str(tmp_path), "--decode", "nvdec", *extra]) == 2
        assert "--decode nvdec apply to the local batched engine" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_analyze_address_needs_the_ray_engine(media_dir, tmp_path, capsys):
    """A cluster address with the local engine would analyse on this machine, unasked: refused, nothing written."""
    image = str(media_dir / "sample1.jpg")
    assert cli.main(["analyze", image, "-o", str(tmp_path / "out"), "--address", "head:6379"]) == 2
    assert "--address head:6379 names a Ray cluster: add --engine ray" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("gpu, given, expected", [(False, [], 1), (True, [], None), (True, ["--streams", "1"], 1),
                                                  (False, ["--streams", "auto"], None), (True, ["--streams", "3"], 3)])
def test_analyze_streams_default_follows_the_device(gpu, given, expected, media_dir, tmp_path, monkeypatch):
    """Without --streams the batched engine picks its streams on a GPU (None: from free memory) and the CPU
    analyses one input at a time; a given --streams wins."""
    import gpuau.corpus
    import gpuau.pipeline
    from gpuau.corpus import CorpusReport
    from gpuau.device import Backend

    calls = []
    monkeypatch.setattr(gpuau.corpus, "run_corpus", lambda *a, **kw: calls.append(kw) or CorpusReport())
    real = gpuau.pipeline.resolve_device
    monkeypatch.setattr(gpuau.pipeline, "resolve_device",
                        lambda device: Backend("cuda", xp=np) if gpu else real(device))  # a CUDA device, never used here
    assert cli.main(["analyze", str(media_dir / "sample1.jpg"), "-o", str(tmp_path), "-q", *given]) == 0
    assert calls[0]["streams"] == expected


def test_command_collects_cyclic_garbage_rarely():
    """The ``gpuau`` process runs with gpuau._gc's collector thresholds (a library import leaves them alone)."""
    interpreter = subprocess.run([sys.executable, "-c", "import gc; print(gc.get_threshold())"],
                                 capture_output=True, text=True, check=True).stdout.strip()  # 3.13: (2000, 10, 10)
    code = ("import gc, sys; from gpuau import cli, _gc; default = gc.get_threshold(); "
            "cli.main = lambda: print(default, gc.get_threshold(), _gc.THRESHOLDS) or 0; cli.console()")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out == f"{interpreter} (10000, 50, 50) (10000, 50, 50)\n"


def test_help_states_the_exit_statuses(capsys):
    for argv in (["--help"], ["analyze", "--help"]):
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
        assert e.value.code == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "exit status: 0 done; 1 some inputs failed or a full disk stopped it (analyze;" in out
        assert "130 Ctrl-C, 143 SIGTERM" in out


def test_a_defect_exits_2_with_its_traceback(monkeypatch, capsys):
    """An exception main() does not handle is a defect: its traceback, and exit status 2, not 1 ("inputs failed")."""
    def defect(argv=None):
        raise RuntimeError("a defect")

    exits = []
    monkeypatch.setattr(cli, "main", defect)
    monkeypatch.setattr(cli, "collect_rarely", lambda: None)
    monkeypatch.setattr(cli._signals, "install", lambda: None)
    monkeypatch.setattr(cli.os, "_exit", exits.append)
    cli.console()
    assert exits == [2] and "RuntimeError: a defect" in capsys.readouterr().err


def test_an_unreadable_settings_log_stops_the_run(media_dir, tmp_path, capsys):
    (tmp_path / "gpuau-settings.jsonl").mkdir()
    assert cli.main(["analyze", str(media_dir / "sample1.jpg"), "-o", str(tmp_path), "--quiet"]) == 2
    assert f"gpuau: error: {tmp_path / 'gpuau-settings.jsonl'}: cannot be read (Is a directory) (make it a " \
           "readable file, or remove it" in capsys.readouterr().err


def test_a_run_with_other_settings_is_refused_while_one_writes_the_folder(media_dir, tmp_path, capsys, monkeypatch):
    """Runs with the same settings share an output folder; while one runs, a run with other settings and inputs to do
    stops before any analysis (their outputs would mix, each the last writer's); a lock left by a run that ended is
    removed; the same across processes with NFS's flock (POSIX locks: an exclusive one needs the file open for
    writing)."""
    import fcntl
    import json
    import subprocess
    import sys

    from gpuau.corpus import RUN_LOCK_PREFIX, CorpusRun, output_settings
    from gpuau.video import InputError

    image, out = media_dir / "sample1.jpg", tmp_path / "out"
    exact = output_settings(dict(quality="exact"))
    fast = output_settings(dict(quality="fast"))
    first = CorpusRun([image], out, progress=False, settings=exact)
    second = CorpusRun([image], out, progress=False, settings=exact)  # the same settings share the folder
    with pytest.raises(InputError, match=r"another gpuau analyze is writing into it with other settings: quality "
                                         r"'exact' \(this run: 'fast'\) \(let that run finish first"):
        CorpusRun([image], out, progress=False, settings=fast)
    assert cli.main(["analyze", str(image), "-o", str(out), "--device", "cpu", "--quality", "fast", "--quiet"]) == 2
    assert "another gpuau analyze is writing into it with other settings" in capsys.readouterr().err
    (out / "sample1.csv").write_text("face, confidence\n")
    CorpusRun([image], out, progress=False, settings=fast).finish()  # nothing to do: no claim on the folder
    (out / "sample1.csv").unlink()
    second.finish()
    assert len(list(out.glob(f"{RUN_LOCK_PREFIX}*"))) == 1  # the first run holds it still
    first.finish()
    assert list(out.glob(f"{RUN_LOCK_PREFIX}*")) == []
    CorpusRun([image], out, progress=False, settings=fast).finish()

    for lock in ("flock", "lockf"):  # a run in another process, then the lock file it leaves when killed
        monkeypatch.setattr(fcntl, "flock", getattr(fcntl, lock))
        holder = subprocess.Popen([sys.executable, "-c", f"import fcntl, json, sys\nfcntl.flock = fcntl.{lock}\n"
                                   "from pathlib import Path\nfrom gpuau.corpus import CorpusRun\n"
                                   f"run = CorpusRun([{str(image)!r}], Path({str(out)!r}), progress=False, "
                                   f"settings=json.loads({json.dumps(json.dumps(exact))}))\nprint('ready', flush=True)\n"
                                   "sys.stdin.readline()\nsys.exit(9)"],  # exits without finish()
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "ready"
            with pytest.raises(InputError, match="another gpuau analyze is writing into it"):
                CorpusRun([image], out, progress=False, settings=fast)
        finally:
            holder.communicate("\n", timeout=60)
        assert holder.returncode == 9 and len(list(out.glob(f"{RUN_LOCK_PREFIX}*"))) == 1
        CorpusRun([image], out, progress=False, settings=fast).finish()  # the lock of the run that ended: removed
        assert list(out.glob(f"{RUN_LOCK_PREFIX}*")) == []


def test_new_inputs_beside_outputs_of_other_settings_are_warned(media_dir, tmp_path, capsys):
    """A run adding outputs to a folder whose other outputs were made with other settings says so (once, on stderr),
    comparing each on the settings recorded for it; outputs no longer there do not count."""
    import json

    from gpuau.corpus import SETTINGS_LOG, CorpusRun, output_settings

    image, out = media_dir / "sample1.jpg", tmp_path / "out"
    out.mkdir()
    exact, fast = output_settings(dict(quality="exact")), output_settings(dict(quality="fast"))
    records = [("clip.csv", exact), ("gone.csv", exact), ("photo.csv", {"quality": "fast", "camera": None})]
    (out / SETTINGS_LOG).write_text("".join(json.dumps({"output": name, "input": f"/elsewhere/{name}", "settings": s})
                                            + "\n" for name, s in records))
    for name in ("clip.csv", "photo.csv"):
        (out / name).write_text("frame\n")
    CorpusRun([image], out, progress=False, settings=fast).finish()
    assert capsys.readouterr().err == (
        f"warning: {out}: clip.csv there was made with other settings, as {SETTINGS_LOG} records: quality 'exact' "
        "(this run: 'fast'); this run adds outputs of its own settings beside them (choose another output folder to "
        "keep the analyses apart)\n")
    CorpusRun([image], out, progress=False, settings=exact).finish()  # photo.csv's image settings differ too
    assert "photo.csv there was made with other settings" in capsys.readouterr().err


def test_analyze_models_option_reaches_the_workers(models_dir, media_dir, tmp_path, monkeypatch, capsys):
    """--models is the folder every analysis uses, in this process and in worker processes (whose environment says
    otherwise here); a folder that is not one stops the command with the fix."""
    monkeypatch.setenv("GPUAU_MODELS", str(tmp_path / "empty"))
    out = tmp_path / "out"
    images = [media_dir / "sample1.jpg", media_dir / "sample2.jpg"]
    argv = ["analyze", *map(str, images), "-o", str(out), "--device", "cpu", "--quiet", "--workers", "2"]
    assert cli.main([*argv, "--models", str(models_dir)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["gpuau-settings.jsonl", "sample1.csv", "sample2.csv"]
    capsys.readouterr()
    assert cli.main([*argv, "--models", str(tmp_path / "nowhere"), "--overwrite"]) == 2
    assert capsys.readouterr().err == (f"gpuau: error: no OpenFace model folder at {tmp_path / 'nowhere'} (from "
                                       f"argument): no such folder. Fix: check the models argument (--models), or "
                                       f"download the model files there: gpuau models fetch --dir "
                                       f"{tmp_path / 'nowhere'}\n")


def test_quiet_cli_run_on_a_ray_it_starts_prints_nothing(media_dir, tmp_path):
    """``-q`` on a Ray the command starts itself: Ray's notice that its token authentication is on (at every
    start) was the one line printed."""
    pytest.importorskip("ray")
    out = tmp_path / "out"
    env = {**os.environ, "RAY_ADDRESS": "local"}  # a Ray of its own, even beside one that `ray start` began
    done = subprocess.run([sys.executable, "-m", "gpuau", "analyze", str(media_dir / "sample2.jpg"), "-o", str(out),
                           "--engine", "ray", "--device", "cpu", "--workers", "1", "-q"],
                          capture_output=True, text=True, env=env, timeout=240)
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "")
    assert sorted(p.name for p in out.iterdir()) == ["gpuau-settings.jsonl", "sample2.csv"]


def test_models_fetch_prompt_takes_only_yes_in_capitals(tmp_path, models_dir, monkeypatch, capsys):
    """The licence prompt asks to type YES: the capitals are the deliberate acceptance, "yes" is no."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("yes\n"))
    target = tmp_path / "models"
    assert cli.main(["models", "fetch", "--dir", str(target), "--base-url", models_dir.as_uri(),
                     "--group", "clnf-eyes"]) == 2
    assert "licence was not accepted" in capsys.readouterr().err
    assert not store.verify(target, groups=["clnf-eyes"]).ok
