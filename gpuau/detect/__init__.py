"""Face detection: OpenFace's MTCNN (PNet -> RNet -> ONet) as ONNX graphs on onnxruntime.

Importing this package imports neither onnx nor onnxruntime; sessions are built by :class:`MTCNN`.
"""
from gpuau.detect.mtcnn import MTCNN, Detections, select_box, select_face

__all__ = ["MTCNN", "Detections", "select_box", "select_face"]
