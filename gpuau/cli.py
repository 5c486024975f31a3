"""``gpuau`` command line: one function per subcommand, registered with :func:`command`.

Adding a subcommand is one decorated function (imports of heavy modules go inside it, so
``gpuau --help`` and ``gpuau version`` stay instant)::

    @command("plot", "plot the AU intensities of an OpenFace CSV",
             arg("csv"), arg("-o", "--output", default="aus.png"))
    def plot(args) -> int:
        import matplotlib.pyplot as plt
        ...
        return 0

Names with a space (``"models fetch"``) become nested subcommands; a group's help is in :data:`GROUPS`.
Errors that the user can fix (missing models, conflicting packages, unusable device, a bad input of a command with
one) print one line on stderr and exit with :data:`EXIT_ERROR`.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gpuau import __version__, _signals
from gpuau._gc import collect_rarely
from gpuau._signals import Terminated
from gpuau.corpus import say
from gpuau.video import ORIENTATIONS, TIMESTAMPS


@dataclass(frozen=True)
class Command:
    """A registered subcommand: its words, its function, its help and its argparse arguments."""

    words: tuple
    run: Callable[[argparse.Namespace], int]
    help: str
    arguments: tuple


COMMANDS: list = []
GROUPS = {"models": "OpenFace model files: fetch, verify, path"}


def arg(*flags, **kwargs) -> tuple:
    """One ``add_argument(*flags, **kwargs)`` call, recorded for :func:`command`."""
    return flags, kwargs


def command(name: str, help: str, *arguments: tuple):
    """Register the decorated ``fn(args) -> int`` as subcommand ``name`` (words separated by spaces)."""

    def register(fn):
        COMMANDS.append(Command(tuple(name.split()), fn, help, arguments))
        return fn

    return register


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of every registered command."""
    parser = argparse.ArgumentParser(
        prog="gpuau", description="OpenFace 2.2 facial Action Units from video, on GPU (CuPy) or CPU (Numba).",
        epilog=EXIT_STATUS_HELP)
    parser.set_defaults(_parser=parser)
    parser.add_argument("-V", "--version", action="version", version=f"gpuau {__version__}")
    subparsers = {(): parser.add_subparsers(metavar="COMMAND")}
    for cmd in COMMANDS:
        for depth in range(1, len(cmd.words)):
            words = cmd.words[:depth]
            if words not in subparsers:
                text = GROUPS.get(" ".join(words), "")
                group = subparsers[words[:-1]].add_parser(words[-1], help=text, description=text)
                group.set_defaults(_parser=group)
                subparsers[words] = group.add_subparsers(metavar="COMMAND")
        sub = subparsers[cmd.words[:-1]].add_parser(cmd.words[-1], help=cmd.help, description=cmd.help,
                                                    epilog=EXIT_STATUS_HELP)
        for flags, kwargs in cmd.arguments:
            sub.add_argument(*flags, **kwargs)
        sub.set_defaults(_run=cmd.run, _parser=sub)
    return parser


EXIT_INPUTS_FAILED = 1
"""Exit status of ``gpuau analyze`` when some inputs failed (the others are done) or a full disk stopped it, of
``models verify`` when a model file is missing or corrupt, and of ``models path`` when the folder is missing or not
in OpenFace's layout."""
EXIT_ERROR = 2
"""Exit status of a command that an error stopped before or instead of its work (as argparse's usage errors): options
that exclude each other, settings other than those of the outputs to resume or of a run writing the same folder, no
input found, an output folder that cannot be written, the models, the device, no worker that could start; ``render``
and ``plot`` failing."""


EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143
"""Exit statuses after Ctrl-C and SIGTERM (128 + the signal's number, as a shell reports a process it killed)."""


EXIT_STATUS_HELP = (f"exit status: 0 done; {EXIT_INPUTS_FAILED} some inputs failed or a full disk stopped it (analyze; "
                    f"the others are done: rerun once there is space), or the model files (models verify) or folder "
                    f"(models path) are not in order; {EXIT_ERROR} an error stopped the command (options, settings, "
                    f"models, device, output folder; render and plot failing); {EXIT_INTERRUPTED} Ctrl-C, "
                    f"{EXIT_TERMINATED} SIGTERM (finished outputs are kept: rerun to resume)")


def _stopped_batch(interrupt: BaseException) -> str:
    """What an interrupted ``gpuau analyze`` had done (its report rides on the interrupt: run_corpus), in words."""
    report = getattr(interrupt, "report", None)
    if report is None:
        return ""
    ended = len(report.outcomes)
    return (f" after {ended} of {ended + len(report.not_started)} inputs (their outputs are kept; the same command "
            f"does the rest)")


class UsageError(Exception):
    """What a command refuses or cannot do, said as ``gpuau: error: MESSAGE`` with exit status ``status``."""

    def __init__(self, message: str, status: int = EXIT_ERROR):
        super().__init__(message)
        self.status = status


def _user_errors() -> tuple:
    from gpuau._deps import DependencyError
    from gpuau.device import DeviceError
    from gpuau.models.store import ModelStoreError
    from gpuau.video import InputError

    return ModelStoreError, DependencyError, DeviceError, InputError


def main(argv: "list[str] | None" = None) -> int:
    """Run ``gpuau`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    args = build_parser().parse_args(argv)
    run = getattr(args, "_run", None)
    if run is None:
        args._parser.print_help(sys.stderr)
        return 2
    try:
        return int(run(args) or 0)
    except (KeyboardInterrupt, Terminated) as e:
        interrupted = isinstance(e, KeyboardInterrupt)
        print(f"gpuau: {'interrupted' if interrupted else 'terminated'}{_stopped_batch(e)}", file=sys.stderr)
        return EXIT_INTERRUPTED if interrupted else EXIT_TERMINATED
    except Exception as e:
        if not isinstance(e, (UsageError, *_user_errors())):
            raise
        print(f"gpuau: error: {e}", file=sys.stderr)
        return e.status if isinstance(e, UsageError) else EXIT_ERROR


def console() -> None:
    """The ``gpuau`` command (and ``python -m gpuau``): :func:`main`, then the process exits without the
    interpreter's teardown, which spends ~0.15 s finalising Numba's, onnxruntime's and OpenCV's objects
    after the work is done.  Every output is closed by then (written atomically, Ray shut down), and
    standard output, standard error and the log handlers are flushed first.  An exception :func:`main`
    does not handle (a defect) prints its traceback and exits with :data:`EXIT_ERROR`, so that status 1 keeps
    meaning that inputs failed.
    """
    _signals.install()
    collect_rarely()
    try:
        status = main()
    except Exception:  # a defect: its traceback, and the status of a command an error stopped (not "inputs failed")
        traceback.print_exc()
        status = EXIT_ERROR
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


# --------------------------------------------------------------------------- version, info


@command("version", "print gpuau's version")
def version(args) -> int:
    print(f"gpuau {__version__}")
    return 0


def _distribution_of(import_name: str) -> str:
    """``version (distribution)`` of the installed package(s) providing ``import_name``, from metadata."""
    from importlib import metadata

    names = metadata.packages_distributions().get(import_name, [])
    if not names:
        return "not installed"
    return ", ".join(f"{metadata.version(n)} ({n})" for n in dict.fromkeys(names))


def _cuda_state() -> "tuple[bool, str]":
    from gpuau.device import cuda_unavailable_reason

    reason = cuda_unavailable_reason()
    if reason:
        return False, f"not usable ({reason})"
    import cupy

    n = cupy.cuda.runtime.getDeviceCount()
    names = [cupy.cuda.runtime.getDeviceProperties(i)["name"].decode() for i in range(n)]
    return True, f"usable: {n} device(s): " + ", ".join(f"cuda:{i} {name}" for i, name in enumerate(names))


def _backends(cuda_ok: bool) -> str:
    from importlib.util import find_spec

    found = []
    from gpuau.kernels.emulator import EmulatorError, compiler

    found.append("cpu" if find_spec("numba") else "cpu unavailable (numba missing)")
    try:
        compiler()
        found.append("emulated")
    except EmulatorError:
        found.append("emulated unavailable (no C++ compiler: set GPUAU_EMU_CXX)")
    found.append("cuda" if cuda_ok else "cuda unavailable (no usable GPU)")
    return ", ".join(found)


def _models_state() -> str:
    from gpuau.models import store

    report = store.verify()
    where = report.location.describe()
    if report.ok:
        return f"{where}: all {len(report.checked)} files verified"
    return (f"{where}: {len(report.problems)} of {len(report.checked)} files missing or corrupt; "
            f"fix: {report.location.fetch_command}")


@command("info", "versions, CUDA device, available backends and model folder state")
def info(args) -> int:
    from gpuau._deps import DependencyError, check_onnxruntime, installed

    try:
        check_onnxruntime()
        import onnxruntime

        ort = f"{_distribution_of('onnxruntime')}; providers: {', '.join(onnxruntime.get_available_providers())}"
    except DependencyError as e:
        ort = f"PROBLEM: {e}"
    except Exception as e:  # installed, but it does not import (a build for another numpy)
        ort = f"PROBLEM: {_distribution_of('onnxruntime')} does not import ({type(e).__name__}: {e})"
    nvrtc = ", ".join(f"{v} ({n})" for n, v in installed(("nvidia-cuda-nvrtc-cu12", "nvidia-cuda-nvrtc")).items())
    cuda_ok, cuda_text = _cuda_state()
    rows = [
        ("gpuau", __version__),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("platform", platform.platform()),
        ("numpy", _distribution_of("numpy")),
        ("numba", _distribution_of("numba")),
        ("opencv", _distribution_of("cv2")),
        ("pyav", _distribution_of("av")),
        ("onnxruntime", ort),
        ("cupy", _distribution_of("cupy")),
        ("NVRTC", nvrtc or "not installed (on a GPU CuPy compiles the kernels, flushing float32 subnormals)"),
        ("CUDA device", cuda_text),
        ("backends", _backends(cuda_ok)),
        ("models", _models_state()),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


# --------------------------------------------------------------------------- models


def _confirm_license() -> bool:
    """Ask for ``YES`` on stdin; False (with a message) when there is no answer to read."""
    try:
        answer = input("Type YES to accept these terms and download: ")
    except (EOFError, OSError, RuntimeError):
        print("\ngpuau: no answer on stdin (not interactive)", file=sys.stderr)
        return False
    return answer.strip() == "YES"


@command("models fetch", "download OpenFace 2.2.0's model files that are missing or corrupt (asks to accept its licence)",
         arg("--dir", metavar="D", help="target folder (default: GPUAU_MODELS, OPENFACE_MODELS_DIR/2.2.0/originals, "
                                        "or the per-user data folder)"),
         arg("--accept-license", action="store_true", help="accept OpenFace's licence without a prompt"),
         arg("--base-url", metavar="URL", help="a mirror in OpenFace's repository layout (default: GitHub at tag "
                                               "OpenFace_2.2.0)"),
         arg("--group", action="append", metavar="G", help="only this manifest group (repeatable)"))
def models_fetch(args) -> int:
    from gpuau.models import store
    from gpuau.models.manifest import load_manifest

    manifest = load_manifest()
    loc = store.locate_models_dir(args.dir)
    entries = manifest.in_groups(args.group)
    todo = store.check_files(loc.path, entries)
    if not todo:
        print(f"all {len(entries)} OpenFace model files present and verified in {loc.describe()}; nothing to download")
        return 0
    size = sum(p.entry.size for p in todo) / 1e6
    print(f"{len(todo)} of {len(entries)} OpenFace 2.2.0 model files ({size:.1f} MB) to download into {loc.describe()}"
          f"\nfrom {args.base_url or manifest.base_url}\n"
          f"\nLicence: {manifest.license_summary}\nFull text: {manifest.license_url}\n")
    if not args.accept_license and not _confirm_license():
        raise UsageError(f"OpenFace's licence was not accepted; nothing downloaded. To accept it "
                         f"non-interactively: {loc.fetch_command} --accept-license")
    report = store.fetch(args.dir, accept_license=True, base_url=args.base_url, groups=args.group, log=print)
    print(f"done: {len(report.downloaded)} downloaded, {report.already_present} already present; "
          f"all verified in {report.location.path}")
    return 0


@command("models verify", "check size and sha256 of every OpenFace model file; exit 1 if any is missing or corrupt",
         arg("dir", nargs="?", metavar="DIR", help="model folder (default: the resolved one, see `gpuau models path`)"))
def models_verify(args) -> int:
    from gpuau.models import store
    from gpuau.models.manifest import load_manifest

    manifest = load_manifest()
    report = store.verify(args.dir)
    print(f"OpenFace 2.2.0 model files in {report.location.describe()}:")
    width = max(len(g) for g in manifest.groups)
    for group, text in manifest.groups.items():
        n = sum(e.group == group for e in report.checked)
        bad = sum(p.entry.group == group for p in report.problems)
        print(f"  {'ok' if not bad else 'BAD':<3}  {group:<{width}}  {n - bad:>2}/{n:<2}  {text}")
    if len(report.problems) == len(report.checked):  # a folder in the wrong layout (none of the files): its error
        try:                                            # names the right one, not 89 files
            store.resolve_models_dir(args.dir)
        except store.ModelStoreError as e:
            raise UsageError(str(e), status=EXIT_INPUTS_FAILED) from e
    for p in report.problems:
        print(f"  {p.problem}: {p.entry.path}")
    if report.ok:
        print(f"all {len(report.checked)} files present and verified (size and sha256)")
        return 0
    raise UsageError(f"{len(report.problems)} of {len(report.checked)} files missing or corrupt. "
                     f"Fix: {report.location.fetch_command}", status=EXIT_INPUTS_FAILED)


@command("models path", "print the model folder gpuau uses (exit 1 if it is not set up)")
def models_path(args) -> int:
    from gpuau.models import store

    loc = store.locate_models_dir()
    print(loc.path)
    try:
        store.resolve_models_dir()
    except store.ModelStoreError as e:
        raise UsageError(str(e), status=EXIT_INPUTS_FAILED) from e
    return 0


@command("warmup", "compile the CPU kernels into Numba's cache now, in child processes (else the first CPU run "
                   "does it; for install scripts and container images)",
         arg("--models", default=None, help="OpenFace model folder (default: see `gpuau models path`)"))
def warmup(args) -> int:
    from gpuau.warmup import is_warm, warm_up

    _log_to_stderr()
    if is_warm():
        print("gpuau: the CPU kernels are compiled already, for this version of gpuau and this CPU", file=sys.stderr)
        return 0
    return 0 if warm_up(args.models) else EXIT_ERROR


# --------------------------------------------------------------------------- analyze


class _StderrLogHandler(logging.Handler):
    """Log records as ``gpuau: message`` lines on stderr, printed above the progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        say(f"gpuau: {self.format(record)}")


def _quiet_native_logs() -> None:
    """FFmpeg's and OpenCV's own lines name no file ("moov atom not found", "backend is generally available but can't
    be used to capture by name"): off unless set in the environment, as gpuau names each file it cannot read.  Before
    OpenCV is imported (it reads them once)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")


def _log_to_stderr() -> None:
    """``--verbose``: gpuau's INFO messages (and above) on stderr."""
    logger = logging.getLogger("gpuau")
    if not any(isinstance(h, _StderrLogHandler) for h in logger.handlers):
        logger.addHandler(_StderrLogHandler())
    logger.setLevel(logging.INFO)


def _column_groups(text: str) -> tuple:
    """An argparse type: ``--columns``' groups (:func:`gpuau.io.column_groups`)."""
    from gpuau.io.openface_csv import COLUMN_GROUPS, column_groups

    try:
        return column_groups(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a comma-separated list of {', '.join(COLUMN_GROUPS)}") from None


def _count_or_auto(what: str, auto):
    """An argparse type: a positive number of ``what``, or ``auto`` (read as ``auto``)."""

    def parse(text: str):
        if text == "auto":
            return auto
        if not text.isdigit() or int(text) < 1:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number of {what} or 'auto'")
        return int(text)

    return parse


CAMERA_ARGS = (
    arg("--fx", type=float, metavar="F",
        help="the camera's focal length in pixels along x, with --fy (default: OpenFace's guess, 500 at 640x480, "
             "for the pose, 3D landmarks and gaze)"),
    arg("--fy", type=float, metavar="F", help="the focal length along y, with --fx"),
    arg("--cx", type=float, metavar="X",
        help="the optical centre's x in pixels, with --cy (default: the image centre)"),
    arg("--cy", type=float, metavar="Y", help="the optical centre's y, with --cx"),
)
"""FeatureExtraction's -fx -fy -cx -cy, for the commands that analyse or draw in camera space (:func:`_camera`)."""


def _aligned(args):
    """``write_aligned`` of the aligned-face options (False without them): any ``--aligned-*`` option implies
    ``--aligned``; ValueError for a size or scale out of range."""
    given = (args.aligned_size is not None or args.aligned_scale is not None or args.aligned_unmasked
             or args.aligned_gray or args.aligned_tracked_only)
    if not (args.aligned or given):
        return False
    from gpuau.io import AlignedFaces

    try:
        return AlignedFaces(112 if args.aligned_size is None else args.aligned_size, args.aligned_scale,
                            masked=not args.aligned_unmasked, gray=args.aligned_gray,
                            failed=not args.aligned_tracked_only)
    except ValueError as e:
        raise ValueError(f"--aligned-size / --aligned-scale: {e}") from None


def _camera(args) -> "tuple | None":
    """The camera of :data:`CAMERA_ARGS` (None when none is given); ValueError, worded for the command line, for half
    a pair or a value out of range."""
    camera = (args.fx, args.fy, args.cx, args.cy)
    if all(v is None for v in camera):
        return None
    from gpuau.video import check_camera

    try:
        return check_camera(camera)
    except ValueError as e:
        raise ValueError(f"--fx --fy --cx --cy: {e}".replace("camera: ", "")) from None


@command("analyze", "OpenFace CSV (landmarks, head pose, gaze, Action Units) for each video, image or image folder",
         arg("inputs", nargs="+", metavar="INPUT",
             help="video files, images, folders of images (one sequence), folders searched for videos (not earlier "
                  "outputs), or .txt / .lst lists of paths"),
         arg("-o", "--output", default="out", metavar="OUTDIR", help="output folder (default: out); one file per input"),
         arg("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)"),
         arg("--format", default="csv", choices=("csv", "parquet"), help="output format (default: csv)"),
         arg("--models", default=None, metavar="DIR", help="OpenFace model folder (default: see `gpuau models path`)"),
         arg("--overwrite", action="store_true", help="redo inputs whose output exists (default: skip them, i.e. resume)"),
         arg("--multi-face", action="store_true",
             help="track up to 4 faces per video as OpenFace's FaceLandmarkVidMulti (a row per face and frame, "
                  "face_id = tracking slot, static AU models); single images always get every face"),
         arg("--engine", default="local", choices=("local", "ray"),
             help="local: this machine (this process, or --workers processes); ray: workers on a Ray cluster (one "
                  "per GPU), OUTDIR on shared storage (pip install ray; see docs/distributed.md)"),
         arg("--address", default=None, metavar="ADDR",
             help="with --engine ray: the cluster (auto, HOST:6379, ray://HOST:10001; default: a Ray on this machine)"),
         arg("--workers", default=None, type=_count_or_auto("workers", None), metavar="N",
             help="worker processes, each analysing one input at a time: N, or auto. Local engine: on this machine "
                  "(default auto: one per CPU core that the free memory allows, at most one per input, on the CPU; "
                  "1 on a GPU, where --streams batches); --engine ray: on the cluster (default: one per GPU, or "
                  "one per 4 CPU cores; more workers than GPUs share them, docs/distributed.md)"),
         arg("--streams", default=None, type=_count_or_auto("streams", "auto"), metavar="N",
             help="videos analysed together in lockstep by the batched engine (gpuau.engine): N, or auto (from free "
                  "GPU memory on CUDA, 4 on CPU); default: auto on a GPU, 1 (one input at a time) on the CPU"),
         arg("--decode", default="opencv", choices=("opencv", "nvdec"),
             help="opencv: FFmpeg on the CPU, as OpenFace (default); nvdec: NVIDIA's decoder on the GPU through the "
                  "batched engine (pip install PyNvVideoCodec; --device cuda; pixel values, so outputs, may differ "
                  "slightly), else OpenCV with a log line"),
         arg("--timestamps", default="openface", choices=TIMESTAMPS,
             help="openface: frame index * (1 / fps) as OpenFace writes it (default); container: each frame's "
                  "presentation time from the container (exact for variable frame rate)"),
         arg("--orientation", default="openface", choices=ORIENTATIONS,
             help="a video whose container asks for a rotation (phone footage): openface: turned as the OpenFace "
                  "build of the reference CSVs (OpenCV 4.6, FFmpeg 5) turns it, identical CSVs, a 90-degree video "
                  "upside down (default); display: upright, as players show it; stored: as stored (README: "
                  "Rotated videos)"),
         arg("--quality", default="exact", choices=("exact", "fast"),
             help="exact: OpenFace's landmark fit, identical output (default); fast: the main CLNF model without the "
                  "inner-face and eye models (so no gaze columns), ~2x faster landmarks for <1 px landmark error "
                  "(README: Quality)"),
         arg("--detect-every", default=None, type=int, metavar="N",
             help="also re-run face detection every N frames, while tracking succeeds and before a face is first "
                  "found (default: only when tracking fails, and every 12 frames until a face is found, as OpenFace "
                  "does)"),
         *CAMERA_ARGS,
         arg("--au-static", action="store_true",
             help="FeatureExtraction's -au_static: AUs from the static models, without person calibration (short "
                  "videos, many people); --multi-face and images always use them"),
         arg("--columns", type=_column_groups, default=None, metavar="GROUPS",
             help="only these column groups after frame..success, as FeatureExtraction's output flags: a comma-"
                  "separated list of gaze, pose, 2Dfp, 3Dfp, pdmparams, aus (--columns aus: -aus, a twentieth of "
                  "the bytes; without aus, and no --hog / --aligned, the AU stage does not run); default all"),
         arg("--hog", action="store_true",
             help="FeatureExtraction's -hogalign: also OUTDIR/<name>.hog, each frame's FHOG of the aligned face in "
                  "OpenFace's binary format (an image's and --multi-face's: each face's)"),
         arg("--aligned", action="store_true",
             help="FeatureExtraction's -simalign: also OUTDIR/<name>_aligned/frame_det_00_NNNNNN.bmp, each frame's "
                  "112x112 aligned, masked face, black where no face was tracked (--multi-face: "
                  "frame_det_<face_id>_NNNNNN.bmp per tracked face; an image's faces: face_det_NNNNNN.bmp)"),
         arg("--aligned-size", type=int, default=None, metavar="N",
             help="-simsize: aligned faces of N x N pixels (default 112; implies --aligned), at scale 0.7 * N / 112 "
                  "unless --aligned-scale"),
         arg("--aligned-scale", type=float, default=None, metavar="S",
             help="-simscale: the aligned faces' scale, pixels per PDM mean-shape unit (default 0.7; implies "
                  "--aligned)"),
         arg("--aligned-unmasked", action="store_true",
             help="-nomask: the whole warped square, not masked to the face (implies --aligned)"),
         arg("--aligned-gray", action="store_true", help="-g: grey aligned faces (implies --aligned)"),
         arg("--aligned-tracked-only", action="store_true",
             help="-nobadaligned: no aligned face for a frame without a tracked face (implies --aligned)"),
         arg("-q", "--quiet", action="store_true", help="no progress bars or summary"),
         arg("-v", "--verbose", action="store_true",
             help="also a line per input as it finishes (frames, faces, time, output; or why it failed or was "
                  "skipped), the settings in use and gpuau's log messages"))
def analyze(args) -> int:
    if args.quiet and args.verbose:
        raise UsageError("--quiet and --verbose exclude each other")
    if args.verbose:
        _log_to_stderr()
    else:
        _quiet_native_logs()
    if args.format == "parquet":
        from gpuau.io.openface_csv import require_pyarrow

        try:
            require_pyarrow()
        except ImportError as e:
            raise UsageError(f"--format parquet: {e}") from e
    out = Path(args.output)
    if out.suffix.lower() in (".csv", ".parquet") and not out.is_dir():
        raise UsageError(f"-o {args.output}: -o names the output folder, where each input's table is named after the "
                         f"input (clip.mp4 -> clip.csv), not a file: give a folder, e.g. -o {out.with_suffix('')}")
    try:
        camera, aligned = _camera(args), _aligned(args)
    except ValueError as e:
        raise UsageError(str(e)) from e
    if args.detect_every is not None and (args.detect_every < 1 or args.multi_face):
        raise UsageError("--detect-every needs N >= 1 and one face per video (not --multi-face)")
    if (args.streams not in (None, 1) or args.decode != "opencv") and (args.engine == "ray" or args.multi_face):
        raise UsageError("--streams and --decode nvdec apply to the local batched engine's one-face analysis (not "
                         "with --engine ray or --multi-face)")
    if args.workers not in (None, 1) and (args.streams not in (None, 1) or args.decode != "opencv"):
        raise UsageError("--workers N (processes, one input each) and --streams N / --decode nvdec (one process "
                         "batching inputs) exclude each other; choose one")
    if args.address is not None and args.engine != "ray":
        raise UsageError(f"--address {args.address} names a Ray cluster: add --engine ray (the local engine "
                         "analyses on this machine)")
    if args.engine == "ray":
        from gpuau.distributed import ClusterError, analyze_corpus

        # Ray's notice, at every start, that its token authentication is on (its default): for -v only
        notice = logging.getLogger("ray._private.authentication.authentication_token_setup")
        level = notice.level
        if not args.verbose:
            notice.setLevel(logging.ERROR)
        try:
            report = analyze_corpus(args.inputs, args.output, address=args.address, device=args.device,
                                    fmt=args.format, overwrite=args.overwrite, progress=not args.quiet,
                                    models=args.models, multi_face=args.multi_face, timestamps=args.timestamps,
                                    quality=args.quality, detect_every=args.detect_every, verbose=args.verbose,
                                    workers=args.workers, orientation=args.orientation, au_static=args.au_static,
                                    camera=camera, write_hog=args.hog, write_aligned=aligned, columns=args.columns)
        except (ClusterError, ValueError) as e:  # ValueError: a device the cluster's workers cannot take
            raise UsageError(str(e)) from e
        finally:
            notice.setLevel(level)
    else:
        from gpuau.corpus import run_corpus
        from gpuau.pipeline import Analyzer
        from gpuau.video import serial_opencv
        from gpuau.workers import WorkerError

        serial_opencv()
        try:
            analyzer = Analyzer(args.device, models=args.models, multi_face=args.multi_face,
                                timestamps=args.timestamps, quality=args.quality, detect_every=args.detect_every,
                                orientation=args.orientation, au_static=args.au_static, camera=camera,
                                write_hog=args.hog, write_aligned=aligned, columns=args.columns)
        except ValueError as e:  # settings that do not go together (--columns gaze with --quality fast)
            raise UsageError(str(e)) from e
        backend = analyzer.backend
        # batching is what a GPU needs to be busy; on the CPU, processes side by side (README: Speed)
        if args.streams is not None:
            streams = args.streams
        else:  # a GPU batches streams in one process unless worker processes were asked for
            streams = "auto" if backend.is_gpu and args.workers in (None, 1) else 1
        workers = 1 if streams != 1 or args.decode != "opencv" else args.workers
        logging.getLogger("gpuau").info(
            "device %s, models %s, quality %s, detection %s, timestamps %s, orientation %s, camera %s, %s, "
            "AU models %s, streams %s, decode %s, workers %s, .hog %s, aligned faces %s, columns %s",
            backend.spec, analyzer.models, analyzer.quality.name,
            f"every {args.detect_every} frames" if args.detect_every else "when tracking fails", args.timestamps,
            args.orientation, "fx, fy, cx, cy = %s" % (camera,) if camera else "guessed from the frame size",
            "up to 4 faces" if args.multi_face else "one face",
            "static" if args.au_static or args.multi_face else "dynamic (static for single images)", streams, args.decode, workers or "auto",
            "yes" if args.hog else "no", aligned or "no", ", ".join(args.columns) if args.columns else "all")
        try:
            report = run_corpus(args.inputs, args.output, analyzer=analyzer, fmt=args.format,
                                overwrite=args.overwrite, progress=not args.quiet,
                                streams=None if streams == "auto" else streams, workers=workers, verbose=args.verbose,
                                decode=args.decode)
        except WorkerError as e:
            raise UsageError(f"{e} (--workers 1 analyses in this process)") from e
    if not args.quiet:
        print(report.summary(), file=sys.stderr)
    return EXIT_INPUTS_FAILED if report.failed or report.stopped else 0


# --------------------------------------------------------------------------- pictures


@command("render", "annotated video: landmarks, head-pose axes, eyes and gaze, AU bars drawn on the frames",
         arg("video", help="the analysed video (or image folder)"),
         arg("csv", nargs="?", default=None, help="its OpenFace CSV (default: analyse the video first)"),
         arg("-o", "--output", required=True, help="annotated video to write (.mp4 or .avi)"),
         arg("--face-id", type=int, default=0, help="which face of a multi-face CSV (default 0)"),
         arg("--device", default="auto", help="device for the analysis when no CSV is given"),
         arg("--orientation", default="openface", choices=ORIENTATIONS,
             help="how a rotated video was analysed (as for gpuau analyze; default openface)"),
         *CAMERA_ARGS)
def render(args) -> int:
    import tempfile
    from pathlib import Path

    _quiet_native_logs()
    from gpuau.viz import render_video

    try:
        camera = _camera(args)  # the analysis's, which the pose axes and gaze lines are projected with
    except ValueError as e:
        raise UsageError(str(e)) from e
    csv = args.csv
    if csv is None and args.face_id != 0:
        raise UsageError(f"--face-id {args.face_id}: without a CSV, render analyses the video's one face (face 0); "
                         "give it the CSV of `gpuau analyze --multi-face`")
    with tempfile.TemporaryDirectory() as tmp:
        if csv is None:
            from gpuau.pipeline import Analyzer

            csv = Path(tmp) / "analysis.csv"
            Analyzer(args.device, orientation=args.orientation, camera=camera).write_video(args.video, csv)
        try:
            out = render_video(args.video, csv, args.output, face_id=args.face_id, orientation=args.orientation,
                               camera=camera)
        except (OSError, ValueError, ImportError) as e:
            raise UsageError(str(e)) from e
    print(out)
    return 0


@command("plot", "plot AU intensities over time from an OpenFace CSV (needs matplotlib: pip install matplotlib)",
         arg("csv"), arg("-o", "--output", required=True, help="image to write (.png, .svg, .pdf)"),
         arg("--face-id", type=int, default=0, help="which face of a multi-face CSV (default 0)"))
def plot(args) -> int:
    from gpuau.viz import plot_aus

    try:
        print(plot_aus(args.csv, args.output, face_id=args.face_id))
    except (OSError, ValueError, ImportError) as e:
        raise UsageError(str(e)) from e
    return 0
