"""Single images (FaceLandmarkImg): static AU models on OpenFace's landmarks from the reference CSVs."""
from __future__ import annotations

import cv2
import numpy as np

from gpuau.au import predict_static_aus
from gpuau.au.predictors import StackedAUModels
from gpuau.models.au_file import load_au_models
from media import read_frames
from reference import landmarks_2d, read_reference


def test_sample_images_match_openface(media_dir, reference_dir):
    models = StackedAUModels.from_models(load_au_models(dynamic=False))
    err, agree, faces = [], [], 0
    for ref in sorted((reference_dir / "images").glob("sample*.csv")):
        df = read_reference(ref)
        image = cv2.imread(str(media_dir / f"{ref.stem}.jpg"))
        for i, lm in enumerate(landmarks_2d(df)):
            out = predict_static_aus(image, lm, models)
            assert list(out)[:2] == ["AU01_r", "AU02_r"] and len(out) == 35
            assert all(0.0 <= v <= 5.0 for c, v in out.items() if c.endswith("_r"))
            err += [abs(round(v, 2) - df.loc[i, c]) for c, v in out.items() if c.endswith("_r")]
            agree += [v == df.loc[i, c] for c, v in out.items() if c.endswith("_c")]
            faces += 1
    assert faces == 19
    # landmarks are only known to 0.1 px here (no PDM refinement for single images)
    assert np.mean(err) < 0.03 and np.max(err) < 0.25 and np.mean(agree) > 0.98


def test_multi_face_video_uses_static_models_per_face(media_dir, reference_dir):
    """FaceLandmarkVidMulti predicts every face of every frame with the static models, no
    post-processing, tracked or not (first 20 frames, 60 faces)."""
    models = StackedAUModels.from_models(load_au_models(dynamic=False))
    df = read_reference(reference_dir / "multi_face.csv")
    df = df[df["frame"] <= 20]
    frames = read_frames(media_dir / "multi_face.avi", 20)
    err, agree = [], []
    for (_, row), lm in zip(df.iterrows(), landmarks_2d(df)):
        out = predict_static_aus(frames[int(row["frame"]) - 1], lm, models)
        err += [abs(round(v, 2) - row[c]) for c, v in out.items() if c.endswith("_r")]
        agree += [v == row[c] for c, v in out.items() if c.endswith("_c")]
    assert len(agree) == 60 * 18
    assert np.mean(err) < 0.025 and np.mean(agree) > 0.98
