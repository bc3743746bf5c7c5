import os
import sys
from pathlib import Path

# Tests import fasflow from this checkout and helpers (celeba_tree) from tests/.
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).parent))
# One thread per test process: the machine has two cores and tests must not fight over them.
os.environ.setdefault("OMP_NUM_THREADS", "1")
