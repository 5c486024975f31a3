"""Face detection: OpenFace's MTCNN (PNet -> RNet -> ONet) as ONNX graphs on onnxruntime.

Importing this package imports neither onnx nor onnxruntime; sessions are built by :class:`MTCNN`.
"""
from gpuau.detect.mtcnn import MTCNN, Detections, select_face
from gpuau.detect.sessions import DetectorError

__all__ = ["MTCNN", "Detections", "DetectorError", "select_face"]
