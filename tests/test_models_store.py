"""Model manifest, folder resolution, verify and fetch, on the shared OpenFace 2.2.0 folder and tmp copies."""
import errno
import http.server
import io
import json
import os
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

import gpuau
from gpuau.models import store
from gpuau.models.manifest import (AU_PREDICTORS, BASE_URL, LANDMARK_MODEL, MANIFEST_FILE, build_manifest, dumps,
                                   load_manifest)
from gpuau.models.store import LicenseNotAcceptedError, ModelStoreError
from media import read_frames

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = load_manifest()
EYES = MANIFEST.in_groups(["clnf-eyes"])  # 10 small files, 0.43 MB


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No model-folder variable set; the per-user data folder inside tmp_path (platformdirs honours XDG_DATA_HOME)."""
    monkeypatch.delenv("GPUAU_MODELS", raising=False)
    monkeypatch.delenv("OPENFACE_MODELS_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    return tmp_path


def layout(folder: Path) -> Path:
    (folder / LANDMARK_MODEL).mkdir(parents=True)
    return folder


def link_copy(src: Path, dst: Path, entries=MANIFEST.files, skip=()) -> Path:
    """``dst`` with a symlink to each manifest file of ``src`` (except ``skip``)."""
    for e in entries:
        if e.path in skip:
            continue
        (dst / e.path).parent.mkdir(parents=True, exist_ok=True)
        (dst / e.path).symlink_to(src / e.path)
    return dst


def mirror(src: Path, dst: Path, entries) -> Path:
    """A download mirror in repository layout holding real copies of ``entries``."""
    for e in entries:
        (dst / e.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / e.path, dst / e.path)
    return dst


def flip_byte(path: Path, at: int = 10) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.unlink()
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------- manifest


def test_manifest_is_the_closure_of_openface_configs_in_the_shared_folder(models_dir):
    """The committed JSON is exactly what the generator computes from the shared folder (sizes, digests, URLs)."""
    assert dumps(build_manifest(models_dir)) == MANIFEST_FILE.read_text(encoding="utf-8")


def test_manifest_lists_every_file_the_pipeline_needs(models_dir):
    paths = {e.path for e in MANIFEST.files}
    lm = LANDMARK_MODEL
    needed = {f"{lm}/main_clnf_general.txt", f"{lm}/clnf_general.txt", f"{lm}/pdms/In-the-wild_aligned_PDM_68.txt",
              f"{lm}/tris_68.txt", f"{lm}/haarAlign.txt", f"{lm}/detection_validation/validator_cnn.txt",
              f"{AU_PREDICTORS}/AU_all_best.txt", f"{AU_PREDICTORS}/tris_68_full.txt",
              f"{AU_PREDICTORS}/In-the-wild_aligned_PDM_68.txt"}
    needed |= {f"{lm}/patch_experts/ccnf_patches_{s}_general.txt" for s in ("0.25", "0.35", "0.5")}
    for sub in ("model_inner", "model_eye", "mtcnn_detector"):
        needed |= {p.relative_to(models_dir).as_posix() for p in (models_dir / lm / sub).rglob("*") if p.is_file()}
    for au_list, count in (("AU_all_best.txt", 35), ("AU_all_static.txt", 35)):  # video; images, -au_static
        models = (models_dir / AU_PREDICTORS / au_list).read_text().split()[::2]
        assert len(models) == count
        needed |= {f"{AU_PREDICTORS}/{au_list}"} | {f"{AU_PREDICTORS}/{p}" for p in models}
    assert needed <= paths
    assert len(paths) == len(MANIFEST.files) == 89
    assert all(e.url == BASE_URL + e.path for e in MANIFEST.files)
    assert BASE_URL == "https://raw.githubusercontent.com/TadasBaltrusaitis/OpenFace/OpenFace_2.2.0/"
    assert {e.group for e in MANIFEST.files} == set(MANIFEST.groups)


def test_a_folder_of_the_manifests_files_runs_every_kind_of_analysis(clean_env, models_dir, media_dir, monkeypatch):
    """What `gpuau models fetch` builds is enough for photos, multi-face video and -au_static too (their static
    AU models were once left out of the manifest: verify passed, the analysis failed)."""
    monkeypatch.setenv("GPUAU_CACHE", str(clean_env / "cache"))
    folder = link_copy(models_dir, clean_env / "models")
    assert store.verify(folder).ok
    analyzer = gpuau.Analyzer("cpu", models=folder, au_static=True)
    photo = analyzer.analyze_image(media_dir / "sample1.jpg")
    assert photo.faces_found == 1 and np.isfinite(photo.columns["AU12_r"]).all()
    video = analyzer.analyze_frames(read_frames(media_dir / "default.wmv", 3), fps=30)
    assert video.faces_found == 3 and np.isfinite(video.columns["AU12_r"]).all()


def test_top_level_manifest_is_the_package_data_file():
    top = ROOT / "models" / "openface-2.2.0.json"
    assert top.is_symlink() and top.resolve() == MANIFEST_FILE.resolve()
    assert json.loads(top.read_text())["tag"] == "OpenFace_2.2.0"


# --------------------------------------------------------------------------- resolution


def test_resolution_order(clean_env, monkeypatch):
    tmp = clean_env
    arg_dir, env_dir, user_dir = layout(tmp / "arg"), layout(tmp / "env"), layout(tmp / "xdg" / "gpuau" / "openface-2.2.0")
    of_root = tmp / "of"
    layout(of_root / "2.2.0" / "originals")

    assert store.locate_models_dir() == store.ModelsLocation(user_dir, "user data folder")
    assert store.resolve_models_dir() == user_dir
    monkeypatch.setenv("OPENFACE_MODELS_DIR", str(of_root))
    assert store.locate_models_dir().source == "OPENFACE_MODELS_DIR"
    assert store.resolve_models_dir() == of_root / "2.2.0" / "originals"
    monkeypatch.setenv("GPUAU_MODELS", str(env_dir))
    assert store.resolve_models_dir() == env_dir
    assert store.resolve_models_dir(arg_dir) == arg_dir
    assert store.locate_models_dir(arg_dir).source == "argument"


def test_openface_models_dir_layout_with_links_to_shared_files(clean_env, monkeypatch, models_dir):
    root = clean_env / "openface_models"
    link_copy(models_dir, root / "2.2.0" / "originals")
    monkeypatch.setenv("OPENFACE_MODELS_DIR", str(root))
    rel = f"{LANDMARK_MODEL}/pdms/In-the-wild_aligned_PDM_68.txt"
    assert store.model_file(rel) == root / "2.2.0" / "originals" / rel
    assert store.require_models() == root / "2.2.0" / "originals"
    assert store.verify().ok


def test_set_but_wrong_folder_is_an_error_with_a_one_line_fix(clean_env, monkeypatch, models_dir):
    monkeypatch.setenv("GPUAU_MODELS", str(models_dir / "lib" / "local"))
    with pytest.raises(ModelStoreError) as e:
        store.resolve_models_dir()
    assert "\n" not in str(e.value)
    assert str(e.value).endswith(f"Fix: export GPUAU_MODELS={models_dir}")

    missing = clean_env / "nowhere"
    monkeypatch.setenv("GPUAU_MODELS", str(missing))
    with pytest.raises(ModelStoreError, match=f"no such folder. Fix: check \\$GPUAU_MODELS, or download the model "
                                              f"files there: gpuau models fetch --dir {missing}$"):
        store.model_file(f"{LANDMARK_MODEL}/tris_68.txt")

    a_file = clean_env / "clip.avi"
    a_file.write_bytes(b"")
    monkeypatch.setenv("GPUAU_MODELS", str(a_file))
    with pytest.raises(ModelStoreError) as e:
        store.resolve_models_dir()
    assert str(e.value) == (f"{a_file} (from GPUAU_MODELS) is a file, not an OpenFace model folder. Fix: point "
                            f"$GPUAU_MODELS at the folder holding {LANDMARK_MODEL}, or run "
                            "`gpuau models fetch` to download the models into gpuau's own folder")

    monkeypatch.delenv("GPUAU_MODELS")
    with pytest.raises(ModelStoreError, match=r"from user data folder.*Fix: gpuau models fetch \(or, with OpenFace's "
                                              r"model files elsewhere: export GPUAU_MODELS=THAT_FOLDER\)$"):
        store.resolve_models_dir()


def test_incomplete_folder_names_every_missing_file_in_one_message(clean_env, models_dir):
    gone = {f"{LANDMARK_MODEL}/tris_68.txt", f"{AU_PREDICTORS}/tris_68_full.txt"}
    folder = link_copy(models_dir, clean_env / "models", skip=gone)
    with pytest.raises(ModelStoreError) as e:
        store.model_file(f"{LANDMARK_MODEL}/tris_68.txt", folder)
    msg = str(e.value)
    assert all(f"{p} (missing)" in msg for p in gone)
    assert "\n" not in msg and msg.endswith(f"Fix: gpuau models fetch --dir {folder}")
    with pytest.raises(ModelStoreError, match="tris_68_full.txt"):
        store.require_models(folder)
    assert store.require_models(folder, groups=["mtcnn"]) == folder
    assert store.model_file(f"{LANDMARK_MODEL}/clnf_general.txt", folder).is_file()


def test_a_damaged_file_of_the_right_size_is_refused_before_any_analysis(clean_env, models_dir, monkeypatch):
    monkeypatch.setenv("GPUAU_CACHE", str(clean_env / "cache"))
    damaged = f"{LANDMARK_MODEL}/pdms/In-the-wild_aligned_PDM_68.txt"
    folder = link_copy(models_dir, clean_env / "models", skip={damaged})
    (folder / damaged).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(models_dir / damaged, folder / damaged)
    assert store.require_models(folder) == folder  # digests computed once, then a stamp says so
    assert len(list((clean_env / "cache").glob("models-verified.*"))) == 1
    st = (folder / damaged).stat()
    with open(folder / damaged, "r+b") as f:  # rewritten in place, its modification time put back (rsync -t)
        f.seek(2000)
        digit = f.read(1)
        f.seek(2000)
        f.write(b"7" if digit != b"7" else b"3")
    os.utime(folder / damaged, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ModelStoreError) as e:
        store.require_models(folder)
    assert str(e.value) == (f"OpenFace model folder {folder} (from argument) has missing or damaged files: "
                            f"{damaged} (sha256 mismatch). Fix: gpuau models fetch --dir {folder}")
    with pytest.raises(ModelStoreError, match="sha256 mismatch"):
        gpuau.Analyzer("cpu", models=folder)


def test_the_folder_holding_the_model_folder_is_named_with_the_right_one(clean_env, models_dir):
    parent = clean_env / "models"
    parent.mkdir()
    (parent / store.USER_DATA_SUBDIR).symlink_to(models_dir, target_is_directory=True)
    with pytest.raises(ModelStoreError) as e:
        store.resolve_models_dir(parent)
    assert str(e.value).endswith(f"Fix: pass {parent / store.USER_DATA_SUBDIR} instead")


# --------------------------------------------------------------------------- verify


def test_verify_shared_folder(models_dir):
    report = store.verify(models_dir)
    assert report.ok and len(report.checked) == 89


def test_verify_names_the_corrupt_and_the_missing_file(tmp_path, models_dir):
    corrupt, missing = f"{LANDMARK_MODEL}/haarAlign.txt", f"{AU_PREDICTORS}/svm_combined/AU_1_dynamic.dat"
    folder = link_copy(models_dir, tmp_path / "m", skip={corrupt, missing})
    shutil.copyfile(models_dir / corrupt, folder / corrupt)
    flip_byte(folder / corrupt)
    report = store.verify(folder)
    assert not report.ok
    assert {(p.entry.path, p.problem) for p in report.problems} == {(corrupt, "sha256 mismatch"), (missing, "missing")}


# --------------------------------------------------------------------------- fetch


def test_fetch_from_file_url_downloads_verifies_and_then_has_nothing_to_do(tmp_path, models_dir):
    base = mirror(models_dir, tmp_path / "mirror", EYES).as_uri()
    target = tmp_path / "models"
    lines = []
    report = store.fetch(target, accept_license=True, base_url=base, groups=["clnf-eyes"], log=lines.append)
    assert [e.path for e in report.downloaded] == [e.path for e in EYES] and len(lines) == len(EYES)
    assert store.verify(target, groups=["clnf-eyes"]).ok
    assert not list(target.rglob("*" + store.PART_SUFFIX))
    # Complete: nothing is downloaded, so an unreachable source and no licence acceptance are fine.
    again = store.fetch(target, base_url="file:///nonexistent", groups=["clnf-eyes"])
    assert again.downloaded == () and again.already_present == len(EYES)


def test_fetch_replaces_a_corrupt_file(tmp_path, models_dir):
    base = mirror(models_dir, tmp_path / "mirror", EYES).as_uri()
    target = link_copy(models_dir, tmp_path / "models", EYES)
    victim = target / EYES[0].path
    victim.unlink()
    shutil.copyfile(models_dir / EYES[0].path, victim)
    flip_byte(victim)
    report = store.fetch(target, accept_license=True, base_url=base, groups=["clnf-eyes"])
    assert [e.path for e in report.downloaded] == [EYES[0].path]
    assert store.verify(target, groups=["clnf-eyes"]).ok


def test_fetch_sha_mismatch_names_the_file_and_keeps_nothing(tmp_path, models_dir):
    src = mirror(models_dir, tmp_path / "mirror", EYES)
    bad = EYES[3]
    flip_byte(src / bad.path)
    target = tmp_path / "models"
    with pytest.raises(ModelStoreError) as e:
        store.fetch(target, accept_license=True, base_url=src.as_uri(), groups=["clnf-eyes"])
    assert bad.path in str(e.value) and "sha256" in str(e.value) and "Fix:" in str(e.value)
    assert not (target / bad.path).exists()
    assert not (target / (bad.path + store.PART_SUFFIX)).exists()
    assert all((target / e.path).is_file() for e in EYES[:3])  # files fetched before the error are kept


def test_fetch_refuses_without_licence_acceptance(tmp_path, models_dir):
    target = tmp_path / "models"
    with pytest.raises(LicenseNotAcceptedError, match="--accept-license"):
        store.fetch(target, base_url=models_dir.as_uri(), groups=["clnf-eyes"])
    assert not target.exists()


def test_fetch_network_failure_names_file_and_fix(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ModelStoreError, match=r"network failure downloading .*clnf_left_synth.txt.*Fix: .*--accept-license"):
        store.fetch(tmp_path / "m", accept_license=True, base_url=f"http://127.0.0.1:{port}", groups=["clnf-eyes"])


def test_fetch_disk_full_names_file_and_fix(tmp_path, models_dir, monkeypatch):
    monkeypatch.setattr(store.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1, 1, 0))
    with pytest.raises(ModelStoreError, match=r"not enough disk space .*clnf_left_synth.txt.*Fix: .*--dir"):
        store.fetch(tmp_path / "m", accept_license=True, base_url=models_dir.as_uri(), groups=["clnf-eyes"])


def test_fetch_disk_full_while_writing_names_file_and_fix(tmp_path, models_dir, monkeypatch):
    class FullDisk(io.BytesIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store, "open", lambda path, mode: FullDisk(), raising=False)
    with pytest.raises(ModelStoreError, match=r"disk full while writing .*clnf_left_synth.txt.part.*rerun"):
        store.fetch(tmp_path / "m", accept_license=True, base_url=models_dir.as_uri(), groups=["clnf-eyes"])


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with HTTP Range support (``bytes=N-``); records each request's Range header."""

    requests: list = []

    def do_GET(self):
        self.requests.append((self.path, self.headers.get("Range")))
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = int(self.headers["Range"][6:-1]) if self.headers.get("Range") else 0
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def http_mirror(tmp_path, models_dir):
    root = mirror(models_dir, tmp_path / "mirror", EYES)
    _RangeHandler.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _RangeHandler(*a, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_fetch_resumes_a_partial_download_over_http(tmp_path, models_dir, http_mirror):
    base, _ = http_mirror
    entry = EYES[4]  # a 104 kB patch-expert file
    target = tmp_path / "models"
    part = target / (entry.path + store.PART_SUFFIX)
    part.parent.mkdir(parents=True)
    half = (models_dir / entry.path).read_bytes()[: entry.size // 2]
    part.write_bytes(half)
    store.fetch_file(entry, target, base_url=base)
    assert _RangeHandler.requests == [(f"/{entry.path}", f"bytes={len(half)}-")]
    assert (target / entry.path).read_bytes() == (models_dir / entry.path).read_bytes() and not part.exists()


def test_fetch_restarts_when_a_resumed_file_is_wrong(tmp_path, models_dir, http_mirror):
    base, _ = http_mirror
    entry = EYES[4]
    part = tmp_path / "models" / (entry.path + store.PART_SUFFIX)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 1000)  # a stale partial from another file
    store.fetch_file(entry, tmp_path / "models", base_url=base)
    assert [r for _, r in _RangeHandler.requests] == ["bytes=1000-", None]
    assert (tmp_path / "models" / entry.path).read_bytes() == (models_dir / entry.path).read_bytes()


def test_fetch_http_error_names_file(tmp_path, http_mirror):
    base, _ = http_mirror
    with pytest.raises(ModelStoreError, match=r"could not download .*mtcnn_detector.*HTTP 404"):
        store.fetch(tmp_path / "m", accept_license=True, base_url=base, groups=["mtcnn"])
    assert os.listdir(tmp_path / "m" / LANDMARK_MODEL / "mtcnn_detector") == []


def test_a_folder_missing_many_files_names_five_and_counts_the_rest(clean_env, models_dir):
    gone = [e.path for e in EYES[:7]]
    folder = link_copy(models_dir, clean_env / "models", skip=set(gone))
    with pytest.raises(ModelStoreError) as e:
        store.require_models(folder)
    msg = str(e.value)
    assert sum(f"{p} (missing)" in msg for p in gone) == 5
    assert msg.endswith(f" and 2 more. Fix: gpuau models fetch --dir {folder}") and "is incomplete" in msg


def test_a_truncated_file_and_a_missing_one_are_named_with_their_problems(clean_env, models_dir):
    cut, gone = f"{LANDMARK_MODEL}/tris_68.txt", f"{AU_PREDICTORS}/tris_68_full.txt"
    folder = link_copy(models_dir, clean_env / "models", skip={cut, gone})
    data = (models_dir / cut).read_bytes()
    (folder / cut).write_bytes(data[:100])  # a download cut short, renamed by hand
    expected = (f"OpenFace model folder {folder} (from argument) has missing or damaged files: "
                f"{cut} (size 100, expected {len(data)}), {gone} (missing). Fix: gpuau models fetch --dir {folder}")
    with pytest.raises(ModelStoreError) as e:
        store.model_file(cut, folder)
    assert str(e.value) == expected
    with pytest.raises(ModelStoreError) as e:
        store.require_models(folder)
    assert str(e.value) == expected


def test_fetch_counts_the_files_already_there(tmp_path, models_dir):
    base = mirror(models_dir, tmp_path / "mirror", EYES).as_uri()
    target = link_copy(models_dir, tmp_path / "models", EYES, skip={EYES[0].path})
    report = store.fetch(target, accept_license=True, base_url=base, groups=["clnf-eyes"])
    assert [e.path for e in report.downloaded] == [EYES[0].path]
    assert report.already_present == len(EYES) - 1


def test_the_openface_models_dir_root_given_as_the_model_folder_names_its_originals(clean_env, models_dir,
                                                                                    monkeypatch):
    root = clean_env / "openface_models"  # what $OPENFACE_MODELS_DIR is set to, given as $GPUAU_MODELS instead
    (root / "2.2.0").mkdir(parents=True)
    (root / store.OPENFACE_MODELS_SUBDIR).symlink_to(models_dir, target_is_directory=True)
    monkeypatch.setenv("GPUAU_MODELS", str(root))
    with pytest.raises(ModelStoreError) as e:
        store.resolve_models_dir()
    assert str(e.value).endswith(f"Fix: export GPUAU_MODELS={root / '2.2.0' / 'originals'}")


class _NoRangeHandler(_RangeHandler):
    """A server that ignores HTTP Range: every answer is the whole file with status 200."""

    def do_GET(self):
        self.requests.append((self.path, self.headers.get("Range")))
        data = Path(self.translate_path(self.path)).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def test_fetch_rewrites_a_partial_download_when_the_server_does_not_resume(tmp_path, models_dir):
    root = mirror(models_dir, tmp_path / "mirror", EYES)
    _RangeHandler.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _NoRangeHandler(*a, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        entry = EYES[4]
        part = tmp_path / "models" / (entry.path + store.PART_SUFFIX)
        part.parent.mkdir(parents=True)
        part.write_bytes((models_dir / entry.path).read_bytes()[: entry.size // 2])
        store.fetch_file(entry, tmp_path / "models", base_url=f"http://127.0.0.1:{server.server_address[1]}")
    finally:
        server.shutdown()
        server.server_close()
    # one request: the 200 answer replaced the partial file (appended to it, the file came twice)
    assert [r for _, r in _RangeHandler.requests] == [f"bytes={entry.size // 2}-"]
    assert (tmp_path / "models" / entry.path).read_bytes() == (models_dir / entry.path).read_bytes()
