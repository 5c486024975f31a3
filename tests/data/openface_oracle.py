"""Build a ``tests/data/*.cpp`` oracle against OpenFace's own compiled objects (the generators' shared step)."""
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build_oracle(source: str, openface: str, objects: str, exe: Path) -> Path:
    """Compile ``HERE/source`` and link it with every ``.o`` of ``objects`` but FeatureExtraction's own
    (``-O3 -march=native``, OpenCV 4, OpenBLAS, as OpenFace's build), OpenFace's headers from ``openface``."""
    objs = sorted(str(o) for o in Path(objects).glob("*.o") if o.name != "FeatureExtraction.o")
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "opencv4"], capture_output=True, text=True,
                           check=True).stdout.split()
    local = f"{openface}/lib/local"
    subprocess.run(["g++", "-O3", "-march=native", "-std=c++14", "-w", "-DNDEBUG",
                    f"-I{local}/LandmarkDetector/include", f"-I{local}/Utilities/include",
                    "-I/usr/include/x86_64-linux-gnu/openblas-pthread",
                    str(HERE / source), *objs, "-o", str(exe), *flags, "-lopenblas", "-ltbb",
                    "-ldlib", "-lboost_filesystem", "-lboost_system", "-lpthread"], check=True)
    return exe
