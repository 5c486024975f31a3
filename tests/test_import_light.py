"""``import gpuau`` (and the command line's modules) must not load any heavy library."""
import subprocess
import sys

HEAVY = ("numba", "cupy", "onnxruntime", "cv2", "onnx")


def loaded_heavy(code: str) -> list:
    probe = f"{code}\nimport sys\nprint('HEAVY:', *(m for m in {HEAVY!r} if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()[-1].split()[1:]


def test_import_gpuau_is_light():
    assert loaded_heavy("import gpuau") == []


def test_subpackages_and_errors_reach_from_a_plain_import():
    code = ("import gpuau\nassert callable(gpuau.video.serial_opencv) and callable(gpuau.io.read_hog)\n"
            "assert all(issubclass(e, Exception) for e in (gpuau.InputError, gpuau.DeviceError, gpuau.ModelStoreError))")
    assert loaded_heavy(code) == []


def test_command_line_modules_and_version_are_light():
    code = ("import gpuau.cli, gpuau.device, gpuau.models.store, gpuau.models.manifest, gpuau._deps\n"
            "gpuau.cli.main(['version'])\ngpuau.cli.main(['models', 'path'])")
    assert loaded_heavy(code) == []


def test_the_probe_sees_a_heavy_import():
    assert loaded_heavy("import cv2") == ["cv2"]


def test_analyze_off_a_terminal_draws_no_bars_and_imports_no_tqdm(tmp_path, media_dir):
    """Progress bars are drawn only on a terminal; elsewhere (a log file, a pipe) the command does not import tqdm,
    ~45 ms of its start-up, and its messages still reach stderr."""
    image, out = str(media_dir / "sample1.jpg"), str(tmp_path / "out")
    code = (f"import sys, gpuau.cli\nassert gpuau.cli.main(['analyze', {image!r}, '-o', {out!r}, '--device', 'cpu', "
            f"'--verbose']) == 0\nassert 'tqdm' not in sys.modules, 'tqdm imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "sample1.jpg" in r.stderr and "\r" not in r.stderr  # the --verbose line, no bar redraws


def test_analyze_on_a_terminal_draws_its_bars(tmp_path, media_dir):
    """On a terminal (a pseudo-terminal here) the corpus and video bars are drawn on stderr."""
    import fcntl
    import os
    import pty
    import struct
    import termios

    image, out = str(media_dir / "sample1.jpg"), str(tmp_path / "out")
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a terminal 120 columns wide
    with os.fdopen(leader, "rb", buffering=0) as terminal:
        proc = subprocess.Popen([sys.executable, "-m", "gpuau", "analyze", image, "-o", out, "--device", "cpu"],
                                stdout=subprocess.DEVNULL, stderr=follower)
        os.close(follower)
        drawn = b""
        while True:
            try:
                chunk = terminal.read(4096)
            except OSError:  # the terminal closed: the command ended
                break
            if not chunk:
                break
            drawn += chunk
        assert proc.wait(timeout=300) == 0
    assert b"corpus: 100%" in drawn and b"1/1" in drawn and b"\r" in drawn
