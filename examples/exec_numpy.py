# Profile exec: a plain script with full Python; cwd is a private scratch dir.
#   jailrun --profile exec examples/exec_numpy.py -- 1000
import sys

import numpy as np

n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
walk = np.cumsum(np.random.default_rng(7).standard_normal(n))
with open("walk.txt", "w") as f:  # lands in the scratch dir, gone afterwards
    f.write("\n".join(f"{x:.4f}" for x in walk))
print(f"{n} steps, last {walk[-1]:.4f}, max {walk.max():.4f}")
